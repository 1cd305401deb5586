//! The account-signed device list, and the link proof that lets a device into it.
//!
//! **Format** (version 1; all integers big-endian; the encoding is canonical, and decoding
//! refuses anything else, so one list has exactly one encoding and one hash):
//!
//! ```text
//! DeviceList    = "HDL1" | u8 len | user | u64 version | prev[32] | u16 n | n × Device
//! Device        = u8 len | device_id | mls_key[32]            (sorted by device_id, unique)
//! SignedList    = DeviceList | u8 len | signer | signature[64]
//! signed bytes  = "haven device list v1" 0x00 | DeviceList
//! ```
//!
//! `prev` is the SHA-256 of the previous version's `SignedList` (32 zero bytes for version 1),
//! so versions form a hash chain; `signature` is Ed25519 (RFC 8032) by `signer`'s MLS signature
//! key (the key of its MLS credential, the cipher suite's Ed25519 key, signing with the same
//! raw Ed25519 as openmls does).
//!
//! **Rules** ([`SignedDeviceList::verify_first`], [`SignedDeviceList::verify_successor`]):
//! - version 1 holds exactly one device, which signs it (the registering device);
//! - version `n + 1` names the hash of version `n`, is signed by a device of version `n` with
//!   its key there, and that device is still in version `n + 1` with the same key (a device does
//!   not sign itself out; another device removes it);
//! - every list is self-consistent ([`SignedDeviceList::verify_self`]): its signer is in it and
//!   the signature verifies under the signer's listed key.
//!
//! The server enforces the rules on upload; the account's own devices check them over the
//! directory history on every sync; other clients check a list's self-consistency and take
//! the chain from the directory (its history is auditable, and the owner watches it).
//!
//! **Link proof.** The device that links a new one makes a secret ([`LINK_SECRET_LEN`] bytes)
//! and shows it with the server's one-time code; the new device answers with
//! [`link_proof`] — HMAC-SHA-256 (RFC 2104) keyed by the secret over a context, the server code
//! and the new device's two public keys — which the server forwards but cannot make: it never
//! sees the secret. The existing device signs the new device into the list only if the proof
//! verifies for the keys the server reports ([`check_link_proof`]). The secret has 100 bits
//! and lives 10 minutes (the code's lifetime), so guessing it online or offline within that
//! time is out of reach.

use ed25519_dalek::{Signature, VerifyingKey};
use haven_proto::{DeviceId, UserName};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// The encoding's magic prefix (format version 1).
pub const MAGIC: &[u8; 4] = b"HDL1";
/// What a list signature signs before the list's encoding.
pub const SIGNING_CONTEXT: &[u8] = b"haven device list v1\0";
/// The link proof's HMAC context.
pub const LINK_PROOF_CONTEXT: &[u8] = b"haven link proof v1\0";
/// Most devices in one list (the server's cap per account is lower).
pub const MAX_DEVICES: usize = 256;
/// Bytes of the link secret (shown as [`LINK_SECRET_CHARS`] characters of the code alphabet).
pub const LINK_SECRET_LEN: usize = 20;
/// The code alphabet (no 0/O, 1/I/L, U): the server's codes use it too.
pub const CODE_ALPHABET: &[u8; 30] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
/// Characters of the secret part of a link code: 20 of 30 symbols, about 98 bits.
pub const LINK_SECRET_CHARS: usize = 20;

/// Why a device list or link proof is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceListError {
    /// The bytes are not a canonical encoding.
    #[error("malformed device list: {0}")]
    Malformed(&'static str),
    /// The signature does not verify.
    #[error("the device list's signature by {signer} does not verify")]
    BadSignature {
        /// The named signer.
        signer: DeviceId,
    },
    /// The signer is not a device of the list that had to contain it.
    #[error("the device list is signed by {signer}, which is not a trusted device of {user}")]
    UnknownSigner {
        /// The account.
        user: UserName,
        /// The named signer.
        signer: DeviceId,
    },
    /// The list breaks a chain rule (user, version, previous hash, first-list shape).
    #[error("device list of {user} version {version}: {problem}")]
    Chain {
        /// The account.
        user: UserName,
        /// The offending version.
        version: u64,
        /// What is wrong.
        problem: &'static str,
    },
}

/// One device of a list.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListedDevice {
    /// The device id (as the server assigned it and the MLS credential names it).
    pub device_id: DeviceId,
    /// The device's MLS signature key (Ed25519 public key).
    pub mls_key: [u8; 32],
}

/// An account's devices at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    /// The account.
    pub user: UserName,
    /// 1 for the first list, +1 for each change.
    pub version: u64,
    /// SHA-256 of the previous version's signed encoding (zeros for version 1).
    pub prev: [u8; 32],
    /// The devices, sorted by id, unique.
    devices: Vec<ListedDevice>,
}

impl DeviceList {
    /// A list of `devices` (sorted here; duplicate ids or too many devices are refused).
    pub fn new(
        user: UserName,
        version: u64,
        prev: [u8; 32],
        mut devices: Vec<ListedDevice>,
    ) -> Result<Self, DeviceListError> {
        devices.sort();
        if devices.is_empty() {
            return Err(DeviceListError::Malformed("no devices"));
        }
        if devices.len() > MAX_DEVICES {
            return Err(DeviceListError::Malformed("too many devices"));
        }
        if devices.windows(2).any(|w| match w {
            [a, b] => a.device_id == b.device_id,
            _ => false,
        }) {
            return Err(DeviceListError::Malformed("a device is listed twice"));
        }
        if version == 0 {
            return Err(DeviceListError::Malformed("version 0"));
        }
        Ok(DeviceList {
            user,
            version,
            prev,
            devices,
        })
    }

    /// The first list of an account: its registering device alone.
    pub fn first(user: UserName, device: ListedDevice) -> Self {
        DeviceList {
            user,
            version: 1,
            prev: [0; 32],
            devices: vec![device],
        }
    }

    /// The version after `prev` with `devices`.
    pub fn successor(
        prev: &SignedDeviceList,
        devices: Vec<ListedDevice>,
    ) -> Result<Self, DeviceListError> {
        let version = prev
            .list
            .version
            .checked_add(1)
            .ok_or(DeviceListError::Malformed("version overflow"))?;
        DeviceList::new(prev.list.user.clone(), version, prev.hash(), devices)
    }

    /// The devices, sorted by id.
    pub fn devices(&self) -> &[ListedDevice] {
        &self.devices
    }

    /// The listed key of `device`, if it is in the list.
    pub fn key_of(&self, device: &DeviceId) -> Option<&[u8; 32]> {
        self.devices
            .iter()
            .find(|d| &d.device_id == device)
            .map(|d| &d.mls_key)
    }

    /// Whether `device` is listed with exactly `key`.
    pub fn contains(&self, device: &DeviceId, key: &[u8]) -> bool {
        self.key_of(device).is_some_and(|k| k.as_slice() == key)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 1 + 64 + 8 + 32 + 2 + self.devices.len() * 66);
        out.extend_from_slice(MAGIC);
        put_str(&mut out, self.user.as_str());
        out.extend_from_slice(&self.version.to_be_bytes());
        out.extend_from_slice(&self.prev);
        // At most MAX_DEVICES (checked by every constructor and the decoder).
        let n = u16::try_from(self.devices.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for d in &self.devices {
            put_str(&mut out, d.device_id.as_str());
            out.extend_from_slice(&d.mls_key);
        }
        out
    }

    /// What a signature over this list signs: [`SIGNING_CONTEXT`] then the encoding.
    pub fn signing_message(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.encode());
        m
    }
}

/// A device list with the signature of one of the account's devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedDeviceList {
    /// The list.
    pub list: DeviceList,
    /// The device that signed it.
    pub signer: DeviceId,
    /// Ed25519 signature by the signer's MLS key over [`DeviceList::signing_message`].
    pub signature: [u8; 64],
}

impl SignedDeviceList {
    /// Signs `list` as `signer`, with `sign` producing the raw Ed25519 signature of the MLS key
    /// (openmls's `Signer::sign` on the device's signature key pair). The result is checked
    /// ([`SignedDeviceList::verify_self`]), so a wrong key or signer is caught here.
    pub fn sign<E>(
        list: DeviceList,
        signer: DeviceId,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Result<Self, DeviceListError>, E> {
        let sig = sign(&list.signing_message())?;
        let Ok(signature) = <[u8; 64]>::try_from(sig.as_slice()) else {
            return Ok(Err(DeviceListError::BadSignature { signer }));
        };
        let signed = SignedDeviceList {
            list,
            signer,
            signature,
        };
        Ok(signed.verify_self().map(|()| signed))
    }

    /// The canonical encoding (this is the key directory's value for the account).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.list.encode();
        put_str(&mut out, self.signer.as_str());
        out.extend_from_slice(&self.signature);
        out
    }

    /// SHA-256 of [`SignedDeviceList::encode`]: what the next version's `prev` names.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(self.encode()).into()
    }

    /// Decodes a canonical encoding; anything else (trailing bytes, unsorted or repeated
    /// devices, invalid names) is refused. Does not check the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, DeviceListError> {
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(DeviceListError::Malformed("not a device list (magic)"));
        }
        let user = UserName::new(r.str()?).map_err(|_| DeviceListError::Malformed("user name"))?;
        let version = u64::from_be_bytes(r.array()?);
        let prev: [u8; 32] = r.array()?;
        let n = usize::from(u16::from_be_bytes(r.array()?));
        if n > MAX_DEVICES {
            return Err(DeviceListError::Malformed("too many devices"));
        }
        let mut devices = Vec::with_capacity(n);
        for _ in 0..n {
            let device_id =
                DeviceId::new(r.str()?).map_err(|_| DeviceListError::Malformed("device id"))?;
            let mls_key: [u8; 32] = r.array()?;
            devices.push(ListedDevice { device_id, mls_key });
        }
        let canonical = devices.windows(2).all(|w| match w {
            [a, b] => a.device_id < b.device_id,
            _ => true,
        });
        if !canonical {
            return Err(DeviceListError::Malformed("devices not sorted or repeated"));
        }
        let list = DeviceList::new(user, version, prev, devices)?;
        let signer =
            DeviceId::new(r.str()?).map_err(|_| DeviceListError::Malformed("signer id"))?;
        let signature: [u8; 64] = r.array()?;
        if !r.0.is_empty() {
            return Err(DeviceListError::Malformed("trailing bytes"));
        }
        Ok(SignedDeviceList {
            list,
            signer,
            signature,
        })
    }

    /// The signer is in the list and the signature verifies under its listed key.
    pub fn verify_self(&self) -> Result<(), DeviceListError> {
        let key = self
            .list
            .key_of(&self.signer)
            .ok_or_else(|| DeviceListError::UnknownSigner {
                user: self.list.user.clone(),
                signer: self.signer.clone(),
            })?;
        self.verify_with(key)
    }

    /// Checks this list as an account's first: version 1, no previous hash, exactly the
    /// signing device, self-signed.
    pub fn verify_first(&self) -> Result<(), DeviceListError> {
        let chain = |problem| DeviceListError::Chain {
            user: self.list.user.clone(),
            version: self.list.version,
            problem,
        };
        if self.list.version != 1 {
            return Err(chain("a first list has version 1"));
        }
        if self.list.prev != [0; 32] {
            return Err(chain("a first list names no previous list"));
        }
        match self.list.devices.as_slice() {
            [only] if only.device_id == self.signer => {}
            _ => return Err(chain("a first list holds exactly the device that signs it")),
        }
        self.verify_self()
    }

    /// Checks `next` as the version after `self`: same user, version + 1, names this list's
    /// hash, signed by a device of this list with its key here, which stays in `next` with the
    /// same key.
    pub fn verify_successor(&self, next: &SignedDeviceList) -> Result<(), DeviceListError> {
        let chain = |problem| DeviceListError::Chain {
            user: next.list.user.clone(),
            version: next.list.version,
            problem,
        };
        if next.list.user != self.list.user {
            return Err(chain("the list is another account's"));
        }
        if Some(next.list.version) != self.list.version.checked_add(1) {
            return Err(chain("the version does not follow the previous list's"));
        }
        if next.list.prev != self.hash() {
            return Err(chain("the list does not name the previous list's hash"));
        }
        let key = self
            .list
            .key_of(&next.signer)
            .ok_or_else(|| DeviceListError::UnknownSigner {
                user: next.list.user.clone(),
                signer: next.signer.clone(),
            })?;
        if next.list.key_of(&next.signer) != Some(key) {
            return Err(chain("the signing device is not in the list it signs"));
        }
        next.verify_with(key)
    }

    fn verify_with(&self, key: &[u8; 32]) -> Result<(), DeviceListError> {
        let bad = || DeviceListError::BadSignature {
            signer: self.signer.clone(),
        };
        let vk = VerifyingKey::from_bytes(key).map_err(|_| bad())?;
        let sig = Signature::from_bytes(&self.signature);
        vk.verify_strict(&self.list.signing_message(), &sig)
            .map_err(|_| bad())
    }

    /// The devices added and removed from `self` to `next` (by id and key).
    pub fn changes_to(&self, next: &SignedDeviceList) -> (Vec<ListedDevice>, Vec<ListedDevice>) {
        let added = next
            .list
            .devices
            .iter()
            .filter(|d| !self.list.devices.contains(d))
            .cloned()
            .collect();
        let removed = self
            .list
            .devices
            .iter()
            .filter(|d| !next.list.devices.contains(d))
            .cloned()
            .collect();
        (added, removed)
    }
}

/// Checks a whole chain, oldest first: the first element either is version 1
/// ([`SignedDeviceList::verify_first`]) or, when `anchor` is given, the successor of `anchor`
/// (a list verified earlier); each next one is the successor of the one before.
pub fn verify_chain(
    anchor: Option<&SignedDeviceList>,
    lists: &[SignedDeviceList],
) -> Result<(), DeviceListError> {
    let mut prev = anchor;
    for l in lists {
        match prev {
            None => l.verify_first()?,
            Some(p) => p.verify_successor(l)?,
        }
        prev = Some(l);
    }
    Ok(())
}

type HmacSha256 = Hmac<Sha256>;

fn link_mac(secret: &[u8], server_code: &str, auth_key: &[u8], mls_key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as Mac>::new(&Default::default()));
    mac.update(LINK_PROOF_CONTEXT);
    for part in [server_code.as_bytes(), auth_key, mls_key] {
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        mac.update(&len.to_be_bytes());
        mac.update(part);
    }
    mac
}

/// The new device's proof that it holds the link secret: HMAC-SHA-256 keyed by the secret over
/// [`LINK_PROOF_CONTEXT`], then the server code, the authentication key and the MLS key, each
/// with a 32-bit length.
pub fn link_proof(secret: &[u8], server_code: &str, auth_key: &[u8], mls_key: &[u8]) -> [u8; 32] {
    link_mac(secret, server_code, auth_key, mls_key)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a [`link_proof`] in constant time.
pub fn check_link_proof(
    secret: &[u8],
    server_code: &str,
    auth_key: &[u8],
    mls_key: &[u8],
    proof: &[u8],
) -> bool {
    link_mac(secret, server_code, auth_key, mls_key)
        .verify_slice(proof)
        .is_ok()
}

/// Encodes a link secret as [`LINK_SECRET_CHARS`] characters of [`CODE_ALPHABET`] (each byte
/// mod 30 is not uniform, so the secret is drawn by the caller as characters: see
/// [`secret_from_chars`]).
pub fn secret_from_chars(chars: &str) -> Result<Vec<u8>, DeviceListError> {
    let s: String = chars
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.len() != LINK_SECRET_CHARS || !s.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        return Err(DeviceListError::Malformed(
            "the link secret is 20 characters of the code alphabet",
        ));
    }
    // The key is the normalised characters themselves (HMAC keys can be any bytes).
    Ok(s.into_bytes())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Names and ids are at most 64 bytes (haven_proto::ids).
    let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(s.as_bytes().get(..usize::from(len)).unwrap_or_default());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DeviceListError> {
        if self.0.len() < n {
            return Err(DeviceListError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DeviceListError> {
        let b = self.take(N)?;
        <[u8; N]>::try_from(b).map_err(|_| DeviceListError::Malformed("truncated"))
    }

    fn str(&mut self) -> Result<&'a str, DeviceListError> {
        let [len] = self.array::<1>()?;
        let b = self.take(usize::from(len))?;
        std::str::from_utf8(b).map_err(|_| DeviceListError::Malformed("not UTF-8"))
    }
}

#[cfg(test)]
mod tests;
