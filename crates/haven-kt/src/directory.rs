//! The key directory, pure: the server's signed epoch roots, the wire encodings of akd's
//! proofs, and their verification (both sides use this module; the server's directory itself,
//! with its storage, is `haven-server`'s `kt` capability).
//!
//! **What the directory holds.** facebook/akd 0.13 (the directory WhatsApp deploys, after
//! SEEMless, CCS 2019, and Parakeet, NDSS 2023): label = the user name (UTF-8), value = the
//! user's current account-signed device list in its canonical encoding
//! ([`crate::SignedDeviceList::encode`], magic `HDL1`: versioned and domain-separated). akd
//! hashes under [`KtConfig`], akd's experimental configuration with Haven's domain label
//! [`DOMAIN_LABEL`], so no proof made for another akd deployment verifies here.
//!
//! **Signed roots.** After each publish the server signs the epoch's root hash with its KT key
//! (Ed25519, RFC 8032) over `ROOT_CONTEXT || epoch (u64 BE) || root (32 bytes)`
//! ([`SignedRoot`]). Clients pin the KT key and akd's VRF key ([`KtKeys`]) on registration. A
//! root signature makes an equivocating server accountable: two signed roots for one epoch are
//! a proof of misbehaviour anyone can check.
//!
//! **Verification** (each function below takes bytes straight from the network):
//! - [`verify_lookup`]: a lookup proof of one user at a signed root → the user's current value,
//!   its version and the epoch it was published in.
//! - [`verify_history`]: a history proof (every value the user ever had) at a signed root.
//! - [`verify_audit`]: an append-only proof between consecutive signed roots (akd's auditor):
//!   the directory from one epoch to the next only added leaves.
//!
//! **Trust assumptions.** The verifier trusts the pinned keys and nothing the server says
//! beyond them. akd's proofs bind a value to a root; the root signature binds the root to the
//! server's key and an epoch; the audit proof binds consecutive roots. What the server can
//! still do: withhold (fail to answer), delay publishing, and show different users different
//! signed roots — the last is caught only when clients compare roots (split-view detection:
//! the client puts its latest verified root in its messages, `haven_client::kt_roots`) or
//! when an auditor sees two signatures for one epoch ([`check_same_epoch`]).
//!
//! **Wire formats.** Proofs travel as akd's own protobuf encodings (`akd_core::proto`); a
//! signed root as the fixed 104 bytes `epoch (8, BE) || root (32) || signature (64)`.
//! Decoders refuse anything longer than [`MAX_PROOF_BYTES`] before parsing.

use akd_core::configuration::Configuration;
use akd_core::proto::specs::types as pb;
use akd_core::verify::history::{HistoryParams, HistoryVerificationParams};
use akd_core::{AkdLabel, AppendOnlyProof, HistoryProof, LookupProof};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use protobuf::Message;

/// akd's domain separation label for Haven's directory.
pub const DOMAIN_LABEL: &[u8] = b"haven kt v1";
/// The signing context of an epoch root.
pub const ROOT_CONTEXT: &[u8] = b"haven kt root v1\0";
/// The largest proof this module decodes (a lookup proof is a few kB, a history proof grows
/// with the user's updates, an audit proof with the epoch's updates; 16 MiB bounds all of them
/// far above what a directory of millions of users produces per epoch).
pub const MAX_PROOF_BYTES: usize = 16 << 20;
/// The length of an encoded [`SignedRoot`].
pub const SIGNED_ROOT_LEN: usize = 8 + 32 + 64;

/// Haven's akd domain label.
#[derive(Clone, Copy, Debug)]
pub struct HavenLabel;

impl akd_core::DomainLabel for HavenLabel {
    fn domain_label() -> &'static [u8] {
        DOMAIN_LABEL
    }
}

/// The akd configuration of Haven's directory (akd's experimental configuration — BLAKE3
/// hashes, the current node encoding — under Haven's label).
pub type KtConfig = akd_core::ExperimentalConfiguration<HavenLabel>;

/// Why a directory object did not verify or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// Bytes that are not an encoding of the expected object.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// The object.
        what: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// An epoch root whose signature is not the pinned KT key's.
    #[error("the root of epoch {epoch} is not signed by the pinned key-transparency key")]
    BadRootSignature {
        /// The epoch.
        epoch: u64,
    },
    /// A proof that does not verify against the root it was given for.
    #[error("{what} of {subject} does not verify at epoch {epoch}: {detail}")]
    BadProof {
        /// Lookup, history or audit proof.
        what: &'static str,
        /// The user (lookup, history) or the epoch range (audit).
        subject: String,
        /// The epoch of the root.
        epoch: u64,
        /// akd's reason.
        detail: String,
    },
    /// Two signed roots for one epoch with different hashes: the server equivocated.
    #[error("split view: two roots signed for epoch {epoch} ({a} and {b})")]
    SplitView {
        /// The epoch.
        epoch: u64,
        /// One root (hex).
        a: String,
        /// The other root (hex).
        b: String,
    },
    /// Roots that go backwards or skip (an audit needs consecutive epochs).
    #[error("epoch {got} does not follow epoch {after}")]
    NotConsecutive {
        /// The earlier epoch.
        after: u64,
        /// The epoch that came next.
        got: u64,
    },
}

/// The keys a client pins on registration: the server's KT signing key (roots) and akd's VRF
/// public key (labels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KtKeys {
    /// Ed25519 public key that signs epoch roots.
    pub root_key: [u8; 32],
    /// akd's VRF public key (ECVRF-EDWARDS25519-SHA512-TAI, RFC 9381).
    pub vrf_key: [u8; 32],
}

/// An epoch's root hash with the server's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedRoot {
    /// The epoch (1 for the first publish).
    pub epoch: u64,
    /// akd's root hash at that epoch.
    pub root: [u8; 32],
    /// Ed25519 signature over [`SignedRoot::message`].
    pub signature: [u8; 64],
}

impl SignedRoot {
    /// The signed message: `ROOT_CONTEXT || epoch (u64 BE) || root`.
    pub fn message(epoch: u64, root: &[u8; 32]) -> Vec<u8> {
        let mut m = ROOT_CONTEXT.to_vec();
        m.extend_from_slice(&epoch.to_be_bytes());
        m.extend_from_slice(root);
        m
    }

    /// Signs `root` at `epoch` with the KT key.
    pub fn sign(key: &SigningKey, epoch: u64, root: [u8; 32]) -> Self {
        let signature = key.sign(&Self::message(epoch, &root)).to_bytes();
        SignedRoot {
            epoch,
            root,
            signature,
        }
    }

    /// Checks the signature against the pinned KT key.
    pub fn verify(&self, keys: &KtKeys) -> Result<(), DirectoryError> {
        let bad = DirectoryError::BadRootSignature { epoch: self.epoch };
        let key = VerifyingKey::from_bytes(&keys.root_key).map_err(|_| bad.clone())?;
        key.verify_strict(
            &Self::message(self.epoch, &self.root),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| bad)
    }

    /// The fixed 104-byte encoding.
    pub fn encode(&self) -> [u8; SIGNED_ROOT_LEN] {
        let mut out = [0u8; SIGNED_ROOT_LEN];
        let (e, rest) = out.split_at_mut(8);
        let (r, s) = rest.split_at_mut(32);
        e.copy_from_slice(&self.epoch.to_be_bytes());
        r.copy_from_slice(&self.root);
        s.copy_from_slice(&self.signature);
        out
    }

    /// Decodes [`SignedRoot::encode`] (exactly 104 bytes). Does not check the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DirectoryError> {
        let malformed = |detail: String| DirectoryError::Malformed {
            what: "signed root",
            detail,
        };
        if bytes.len() != SIGNED_ROOT_LEN {
            return Err(malformed(format!(
                "{} bytes, expected {SIGNED_ROOT_LEN}",
                bytes.len()
            )));
        }
        let (e, rest) = bytes.split_at(8);
        let (r, s) = rest.split_at(32);
        let epoch = u64::from_be_bytes(e.try_into().map_err(|_| malformed("epoch".into()))?);
        Ok(SignedRoot {
            epoch,
            root: r.try_into().map_err(|_| malformed("root".into()))?,
            signature: s.try_into().map_err(|_| malformed("signature".into()))?,
        })
    }
}

/// One value of a user, as a verified proof shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedValue {
    /// The epoch the value was published in.
    pub epoch: u64,
    /// akd's version of the label (1 for the first value, +1 per update).
    pub version: u64,
    /// The value (a signed device list's encoding).
    pub value: Vec<u8>,
}

fn check_len(what: &'static str, bytes: &[u8]) -> Result<(), DirectoryError> {
    if bytes.len() > MAX_PROOF_BYTES {
        return Err(DirectoryError::Malformed {
            what,
            detail: format!("{} bytes, more than {MAX_PROOF_BYTES}", bytes.len()),
        });
    }
    Ok(())
}

fn parse<M: Message, T>(
    what: &'static str,
    bytes: &[u8],
    convert: impl FnOnce(&M) -> Result<T, akd_core::proto::ConversionError>,
) -> Result<T, DirectoryError> {
    check_len(what, bytes)?;
    let malformed = |detail: String| DirectoryError::Malformed { what, detail };
    let msg = M::parse_from_bytes(bytes).map_err(|e| malformed(e.to_string()))?;
    convert(&msg).map_err(|e| malformed(e.to_string()))
}

/// Encodes a lookup proof (akd's protobuf).
pub fn encode_lookup_proof(proof: &LookupProof) -> Vec<u8> {
    pb::LookupProof::from(proof)
        .write_to_bytes()
        .unwrap_or_default()
}

/// Decodes a lookup proof.
pub fn decode_lookup_proof(bytes: &[u8]) -> Result<LookupProof, DirectoryError> {
    parse("lookup proof", bytes, |m: &pb::LookupProof| {
        LookupProof::try_from(m)
    })
}

/// Encodes a history proof (akd's protobuf).
pub fn encode_history_proof(proof: &HistoryProof) -> Vec<u8> {
    pb::HistoryProof::from(proof)
        .write_to_bytes()
        .unwrap_or_default()
}

/// Decodes a history proof.
pub fn decode_history_proof(bytes: &[u8]) -> Result<HistoryProof, DirectoryError> {
    parse("history proof", bytes, |m: &pb::HistoryProof| {
        HistoryProof::try_from(m)
    })
}

/// Encodes an append-only (audit) proof (akd's protobuf).
pub fn encode_audit_proof(proof: &AppendOnlyProof) -> Vec<u8> {
    pb::AppendOnlyProof::from(proof)
        .write_to_bytes()
        .unwrap_or_default()
}

/// Decodes an append-only (audit) proof.
pub fn decode_audit_proof(bytes: &[u8]) -> Result<AppendOnlyProof, DirectoryError> {
    parse("audit proof", bytes, |m: &pb::AppendOnlyProof| {
        AppendOnlyProof::try_from(m)
    })
}

/// Verifies a lookup proof of `user` against `root` (whose signature is checked here too):
/// the user's current value in the directory at that epoch.
pub fn verify_lookup(
    keys: &KtKeys,
    root: &SignedRoot,
    user: &str,
    proof: &[u8],
) -> Result<VerifiedValue, DirectoryError> {
    root.verify(keys)?;
    let proof = decode_lookup_proof(proof)?;
    let r = akd_core::verify::lookup_verify::<KtConfig>(
        &keys.vrf_key,
        root.root,
        root.epoch,
        AkdLabel::from(user),
        proof,
    )
    .map_err(|e| DirectoryError::BadProof {
        what: "lookup proof",
        subject: user.to_string(),
        epoch: root.epoch,
        detail: e.to_string(),
    })?;
    if r.epoch > root.epoch {
        return Err(DirectoryError::BadProof {
            what: "lookup proof",
            subject: user.to_string(),
            epoch: root.epoch,
            detail: format!("value published at epoch {} in the future", r.epoch),
        });
    }
    Ok(VerifiedValue {
        epoch: r.epoch,
        version: r.version,
        value: r.value.0,
    })
}

/// Verifies a complete history proof of `user` against `root`: every value the user ever had,
/// newest first, each with the epoch it was published in.
pub fn verify_history(
    keys: &KtKeys,
    root: &SignedRoot,
    user: &str,
    proof: &[u8],
) -> Result<Vec<VerifiedValue>, DirectoryError> {
    root.verify(keys)?;
    let proof = decode_history_proof(proof)?;
    let bad = |detail: String| DirectoryError::BadProof {
        what: "history proof",
        subject: user.to_string(),
        epoch: root.epoch,
        detail,
    };
    let results = akd_core::verify::key_history_verify::<KtConfig>(
        &keys.vrf_key,
        root.root,
        root.epoch,
        AkdLabel::from(user),
        proof,
        HistoryVerificationParams::Default {
            history_params: HistoryParams::Complete,
        },
    )
    .map_err(|e| bad(e.to_string()))?;
    // A complete history runs from the newest version down to version 1 without gaps.
    let mut expected = results.first().map(|r| r.version).unwrap_or(0);
    for r in &results {
        if r.version != expected || r.epoch > root.epoch {
            return Err(bad(format!(
                "version {} at epoch {} out of order",
                r.version, r.epoch
            )));
        }
        expected = expected.saturating_sub(1);
    }
    if expected != 0 {
        return Err(bad(format!(
            "the history stops before version 1 (next would be {expected})"
        )));
    }
    Ok(results
        .into_iter()
        .map(|r| VerifiedValue {
            epoch: r.epoch,
            version: r.version,
            value: r.value.0,
        })
        .collect())
}

/// Verifies an append-only proof over `roots`, signed roots of consecutive epochs (at least
/// two; each signature is checked): every epoch only added leaves to the one before. Await it
/// inside a Tokio runtime: akd's auditor rebuilds the tree with spawned tasks.
pub async fn verify_audit(
    keys: &KtKeys,
    roots: &[SignedRoot],
    proof: &[u8],
) -> Result<(), DirectoryError> {
    let (Some(first), Some(last)) = (roots.first(), roots.last()) else {
        return Err(DirectoryError::Malformed {
            what: "audit",
            detail: "no roots".into(),
        });
    };
    if roots.len() < 2 {
        return Err(DirectoryError::Malformed {
            what: "audit",
            detail: "an audit needs two roots".into(),
        });
    }
    for w in roots.windows(2) {
        if let [a, b] = w {
            if b.epoch != a.epoch.saturating_add(1) {
                return Err(DirectoryError::NotConsecutive {
                    after: a.epoch,
                    got: b.epoch,
                });
            }
        }
    }
    for r in roots {
        r.verify(keys)?;
    }
    let proof = decode_audit_proof(proof)?;
    let subject = format!("epochs {}..{}", first.epoch, last.epoch);
    let bad = |detail: String| DirectoryError::BadProof {
        what: "audit proof",
        subject: subject.clone(),
        epoch: last.epoch,
        detail,
    };
    // akd's auditor pairs proof i with roots i and i+1 and proof.epochs[i] + 1 as the later
    // epoch: the epochs inside the proof must be the ones the signed roots name.
    let claimed: Vec<u64> = roots
        .iter()
        .take(roots.len() - 1)
        .map(|r| r.epoch)
        .collect();
    if proof.epochs != claimed {
        return Err(bad(format!(
            "the proof covers epochs {:?}, the roots {:?}",
            proof.epochs, claimed
        )));
    }
    if proof.proofs.len() != claimed.len() {
        return Err(bad(format!(
            "{} proofs for {} steps",
            proof.proofs.len(),
            claimed.len()
        )));
    }
    // One step at a time, so a failure names the epoch it reached.
    for (i, step) in proof.proofs.into_iter().enumerate() {
        let (Some(a), Some(b), Some(&e)) = (roots.get(i), roots.get(i + 1), proof.epochs.get(i))
        else {
            return Err(bad("more proofs than steps".into()));
        };
        let one = AppendOnlyProof {
            proofs: vec![step],
            epochs: vec![e],
        };
        akd::auditor::audit_verify::<KtConfig>(vec![a.root, b.root], one)
            .await
            .map_err(|err| DirectoryError::BadProof {
                what: "audit proof",
                subject: format!("epochs {}..{}", a.epoch, b.epoch),
                epoch: b.epoch,
                detail: err.to_string(),
            })?;
    }
    Ok(())
}

/// Two signed roots for the same epoch must be the same root; different ones, both signed by
/// the pinned key, prove the server equivocated.
pub fn check_same_epoch(
    keys: &KtKeys,
    a: &SignedRoot,
    b: &SignedRoot,
) -> Result<(), DirectoryError> {
    if a.epoch != b.epoch || a.root == b.root {
        return Ok(());
    }
    a.verify(keys)?;
    b.verify(keys)?;
    Err(DirectoryError::SplitView {
        epoch: a.epoch,
        a: hex_of(&a.root),
        b: hex_of(&b.root),
    })
}

/// akd's VRF private key held as bytes (the server's directory key; the public half is what
/// clients pin as [`KtKeys::vrf_key`]). No I/O: the server loads the bytes from its key file.
#[derive(Clone)]
pub struct VrfSecret(pub [u8; 32]);

impl VrfSecret {
    /// The VRF public key (what clients pin).
    pub fn public_key(&self) -> Result<[u8; 32], DirectoryError> {
        let sk = akd_core::ecvrf::VRFPrivateKey::try_from(&self.0[..]).map_err(|e| {
            DirectoryError::Malformed {
                what: "VRF key",
                detail: e.to_string(),
            }
        })?;
        let pk = akd_core::ecvrf::VRFPublicKey::from(&sk);
        Ok(*pk.as_bytes())
    }
}

#[async_trait::async_trait]
impl akd_core::ecvrf::VRFKeyStorage for VrfSecret {
    async fn retrieve(&self) -> Result<Vec<u8>, akd_core::ecvrf::VrfError> {
        Ok(self.0.to_vec())
    }
}

/// The root hash of an empty directory (epoch 0) under [`KtConfig`].
pub fn empty_root() -> [u8; 32] {
    KtConfig::compute_root_hash_from_val(&KtConfig::empty_root_value())
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests;
