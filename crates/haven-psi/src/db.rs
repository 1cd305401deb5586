//! The blinded match database: built by the server from the enabled hash banks, signed, and
//! served to clients, who see only blinded points.
//!
//! **Format** (version 1; integers big-endian; decoding refuses anything but this exact shape):
//!
//! ```text
//! Header   = db_id[16] | u64 release | u16 threshold | u8 keys_per_voucher
//!          | u32 synthetic_rate | u32 n_slots | seed_1[16] | seed_2[16] | L[32]
//! Database = "HPD1" | Header | n_slots × P[32]                    (compressed ristretto255)
//! root     = SHA-256("haven psi db v1" 0x00 | Database)
//! Release  = "HPR1" | Header | root[32] | Ed25519 signature[64]
//! signed   = "haven psi release v1" 0x00 | Header | root
//! ```
//!
//! `synthetic_rate` is the probability that an image's voucher is synthetic, in units of 2^-32.
//! The cuckoo positions of a match key `y` are `h_i(y) = LE64(SHA-256("haven psi cuckoo v1" 0x00
//! | seed_i | y)[..8]) mod n_slots` (the research note's construction, with a label).
//!
//! **Size.** Two hash functions with one slot per bucket need a load below 1/2; the table has
//! `⌈2.2 n⌉` slots (load 0.45) and the builder retries with fresh seeds if an insertion cycles.
//! 32 bytes per slot: about 70 MB per million distinct keys.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::primitives::hash_to_group;
use crate::{MatchKey, PsiError, MAX_KEYS_PER_VOUCHER};

/// The database encoding's magic prefix.
pub const DB_MAGIC: &[u8; 4] = b"HPD1";
/// The release encoding's magic prefix.
pub const RELEASE_MAGIC: &[u8; 4] = b"HPR1";
/// Bytes of an encoded [`DbHeader`].
pub const HEADER_LEN: usize = 16 + 8 + 2 + 1 + 4 + 4 + 16 + 16 + 32;
/// Bytes of an encoded [`SignedRelease`].
pub const RELEASE_LEN: usize = 4 + HEADER_LEN + 32 + 64;
/// Most slots a database may have: 16 Mi slots, 512 MiB (about 7 million distinct keys).
pub const MAX_SLOTS: u32 = 1 << 24;
/// Fewest slots (an empty or tiny database still has some, all random).
pub const MIN_SLOTS: u32 = 16;
/// Highest threshold a database may name.
pub const MAX_THRESHOLD: u16 = 1024;

const ROOT_CONTEXT: &[u8] = b"haven psi db v1\0";
const RELEASE_CONTEXT: &[u8] = b"haven psi release v1\0";
const CUCKOO_CONTEXT: &[u8] = b"haven psi cuckoo v1\0";
const MAX_KICKS: usize = 2000;
const MAX_SEED_TRIES: usize = 32;

/// What a database release fixes for the vouchers made against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Distinct images an account must match before any is revealed.
    pub threshold: u16,
    /// Match keys every voucher carries (each gives two (Q, ct) pairs).
    pub keys_per_voucher: u8,
    /// Probability that an image's voucher is synthetic, in units of 2^-32.
    pub synthetic_rate: u32,
}

impl Params {
    fn check(&self) -> Result<(), PsiError> {
        if self.threshold == 0 || self.threshold > MAX_THRESHOLD {
            return Err(PsiError::Malformed("threshold out of range"));
        }
        if self.keys_per_voucher == 0 || usize::from(self.keys_per_voucher) > MAX_KEYS_PER_VOUCHER {
            return Err(PsiError::Malformed("keys per voucher out of range"));
        }
        Ok(())
    }
}

/// A database release's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbHeader {
    /// Random per release: binds every voucher to the release it was made for.
    pub db_id: [u8; 16],
    /// Release number, increasing.
    pub release: u64,
    /// The voucher parameters.
    pub params: Params,
    /// Slots in the cuckoo table.
    pub n_slots: u32,
    /// The two cuckoo hash seeds.
    pub seeds: [[u8; 16]; 2],
    /// `L = α·G`, compressed.
    pub blinding_public: [u8; 32],
}

impl DbHeader {
    /// The canonical encoding ([`HEADER_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&self.db_id);
        out.extend_from_slice(&self.release.to_be_bytes());
        out.extend_from_slice(&self.params.threshold.to_be_bytes());
        out.push(self.params.keys_per_voucher);
        out.extend_from_slice(&self.params.synthetic_rate.to_be_bytes());
        out.extend_from_slice(&self.n_slots.to_be_bytes());
        out.extend_from_slice(&self.seeds[0]);
        out.extend_from_slice(&self.seeds[1]);
        out.extend_from_slice(&self.blinding_public);
        out
    }

    /// Decodes and checks ranges; `L` must be a valid, non-identity point.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        let header = Self {
            db_id: r.array()?,
            release: u64::from_be_bytes(r.array()?),
            params: Params {
                threshold: u16::from_be_bytes(r.array()?),
                keys_per_voucher: r.array::<1>()?[0],
                synthetic_rate: u32::from_be_bytes(r.array()?),
            },
            n_slots: u32::from_be_bytes(r.array()?),
            seeds: [r.array()?, r.array()?],
            blinding_public: r.array()?,
        };
        r.finish()?;
        header.params.check()?;
        if !(MIN_SLOTS..=MAX_SLOTS).contains(&header.n_slots) {
            return Err(PsiError::Malformed("slot count out of range"));
        }
        header.blinding_point()?;
        Ok(header)
    }

    pub(crate) fn blinding_point(&self) -> Result<RistrettoPoint, PsiError> {
        let p = CompressedRistretto(self.blinding_public)
            .decompress()
            .ok_or(PsiError::Malformed("L is not a ristretto255 point"))?;
        if p == RistrettoPoint::default() {
            return Err(PsiError::Malformed("L is the identity"));
        }
        Ok(p)
    }

    /// The two cuckoo positions of a key.
    pub fn positions(&self, key: &MatchKey) -> [u32; 2] {
        self.seeds
            .map(|seed| cuckoo_hash(&seed, key.as_bytes(), self.n_slots))
    }
}

fn cuckoo_hash(seed: &[u8; 16], key: &[u8], n_slots: u32) -> u32 {
    let digest = Sha256::new()
        .chain_update(CUCKOO_CONTEXT)
        .chain_update(seed)
        .chain_update(key)
        .finalize();
    let mut word = [0u8; 8];
    if let Some(head) = digest.first_chunk::<8>() {
        word = *head;
    }
    // n_slots ≥ MIN_SLOTS > 0, so the remainder is defined; it is below n_slots, so it fits.
    (u64::from_le_bytes(word) % u64::from(n_slots.max(1))) as u32
}

/// The server's secret for one release: `α` and the release it belongs to. Zeroized on drop;
/// stored by the server at rest, never served.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ServerKey {
    pub(crate) db_id: [u8; 16],
    pub(crate) alpha: Scalar,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKey")
            .field("db_id", &self.db_id)
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// `db_id ‖ α` (48 bytes), for the server's own storage.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(48));
        out.extend_from_slice(&self.db_id);
        out.extend_from_slice(self.alpha.as_bytes());
        out
    }

    /// Reads [`ServerKey::to_bytes`] back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        let db_id = r.array()?;
        let alpha: [u8; 32] = r.array()?;
        r.finish()?;
        let alpha = Option::<Scalar>::from(Scalar::from_canonical_bytes(alpha))
            .ok_or(PsiError::Malformed("α is not a canonical scalar"))?;
        Ok(Self { db_id, alpha })
    }

    /// The release this key opens vouchers for.
    pub fn db_id(&self) -> [u8; 16] {
        self.db_id
    }
}

/// A database as the client holds it (after [`VerifiedRelease::accept`]) or the server built it.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicDb {
    header: DbHeader,
    slots: Vec<[u8; 32]>,
}

impl std::fmt::Debug for PublicDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicDb")
            .field("header", &self.header)
            .field("slots", &self.slots.len())
            .finish()
    }
}

/// The outcome of a build: the public database and the server's secret for it.
pub struct Built {
    /// What clients download.
    pub db: PublicDb,
    /// What only the server keeps.
    pub key: ServerKey,
    /// Distinct match keys placed in the table.
    pub distinct_keys: usize,
}

impl PublicDb {
    /// Builds a release from the match keys of every accepted bank entry (duplicates count
    /// once). `release` is the caller's release counter.
    pub fn build<R: RngCore + CryptoRng>(
        keys: &[MatchKey],
        params: Params,
        release: u64,
        rng: &mut R,
    ) -> Result<Built, PsiError> {
        params.check()?;
        let mut distinct: Vec<&MatchKey> = keys.iter().collect();
        distinct.sort();
        distinct.dedup();
        let n = distinct.len();
        let n_slots = u32::try_from(n.saturating_mul(22).div_ceil(10))
            .ok()
            .filter(|s| *s <= MAX_SLOTS)
            .ok_or(PsiError::TooLarge(
                "too many distinct match keys for one database",
            ))?
            .max(MIN_SLOTS);
        let mut db_id = [0u8; 16];
        rng.fill_bytes(&mut db_id);
        let (seeds, table) = (0..MAX_SEED_TRIES)
            .find_map(|_| {
                let mut seeds = [[0u8; 16]; 2];
                rng.fill_bytes(&mut seeds[0]);
                rng.fill_bytes(&mut seeds[1]);
                cuckoo_insert(&distinct, &seeds, n_slots).map(|t| (seeds, t))
            })
            .ok_or(PsiError::Internal(
                "cuckoo insertion failed with every seed",
            ))?;
        let alpha = Scalar::random(rng);
        let blinding_public = RistrettoPoint::mul_base(&alpha).compress().to_bytes();
        let mut slots = Vec::with_capacity(table.len());
        for entry in &table {
            let point = match entry.and_then(|i| distinct.get(i)) {
                Some(key) => alpha * hash_to_group(key.as_bytes())?,
                None => {
                    let mut filler = [0u8; 32];
                    rng.fill_bytes(&mut filler);
                    hash_to_group(&filler)?
                }
            };
            slots.push(point.compress().to_bytes());
        }
        let header = DbHeader {
            db_id,
            release,
            params,
            n_slots,
            seeds,
            blinding_public,
        };
        Ok(Built {
            db: PublicDb { header, slots },
            key: ServerKey { db_id, alpha },
            distinct_keys: n,
        })
    }

    /// The header.
    pub fn header(&self) -> &DbHeader {
        &self.header
    }

    /// The encoding clients download ([`DB_MAGIC`] ‖ header ‖ slots).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + HEADER_LEN + 32 * self.slots.len());
        out.extend_from_slice(DB_MAGIC);
        out.extend_from_slice(&self.header.encode());
        for s in &self.slots {
            out.extend_from_slice(s);
        }
        out
    }

    /// SHA-256 over the context and the whole encoding: the value the release signs.
    pub fn root(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ROOT_CONTEXT);
        h.update(DB_MAGIC);
        h.update(self.header.encode());
        for s in &self.slots {
            h.update(s);
        }
        h.finalize().into()
    }

    /// Signs this database as a release.
    pub fn sign(&self, key: &SigningKey) -> SignedRelease {
        let root = self.root();
        let signature = key.sign(&release_message(&self.header, &root));
        SignedRelease {
            header: self.header.clone(),
            root,
            signature: signature.to_bytes(),
        }
    }

    /// Slot `j` as a point. A slot that is not a valid encoding is an error: the signed release
    /// itself is malformed, and the client refuses it.
    pub(crate) fn slot(&self, j: u32) -> Result<RistrettoPoint, PsiError> {
        let bytes = usize::try_from(j)
            .ok()
            .and_then(|j| self.slots.get(j))
            .ok_or(PsiError::Internal("cuckoo position beyond the table"))?;
        CompressedRistretto(*bytes)
            .decompress()
            .ok_or(PsiError::Malformed(
                "a database slot is not a ristretto255 point",
            ))
    }
}

/// The generator, for callers that build `γ·G`.
pub(crate) fn generator() -> RistrettoPoint {
    RISTRETTO_BASEPOINT_POINT
}

fn release_message(header: &DbHeader, root: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RELEASE_CONTEXT.len() + HEADER_LEN + 32);
    m.extend_from_slice(RELEASE_CONTEXT);
    m.extend_from_slice(&header.encode());
    m.extend_from_slice(root);
    m
}

/// Cuckoo hashing with two tables-in-one (Pagh & Rodler, "Cuckoo hashing", J. Algorithms
/// 2004): each key sits at one of its two positions. `None` if an insertion cycles.
fn cuckoo_insert(
    keys: &[&MatchKey],
    seeds: &[[u8; 16]; 2],
    n_slots: u32,
) -> Option<Vec<Option<usize>>> {
    let mut table: Vec<Option<usize>> = vec![None; usize::try_from(n_slots).ok()?];
    let positions: Vec<[usize; 2]> = keys
        .iter()
        .map(|k| seeds.map(|seed| cuckoo_hash(&seed, k.as_bytes(), n_slots) as usize))
        .collect();
    for start in 0..keys.len() {
        let mut current = start;
        let mut pos = positions.get(current)?[0];
        let mut placed = false;
        for _ in 0..MAX_KICKS {
            let slot = table.get_mut(pos)?;
            match slot.replace(current) {
                None => {
                    placed = true;
                    break;
                }
                Some(evicted) => {
                    current = evicted;
                    let [a, b] = *positions.get(current)?;
                    pos = if a == pos { b } else { a };
                }
            }
        }
        if !placed {
            return None;
        }
    }
    Some(table)
}

/// A release as received: decoded, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRelease {
    header: DbHeader,
    root: [u8; 32],
    signature: [u8; 64],
}

impl SignedRelease {
    /// The encoding ([`RELEASE_LEN`] bytes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RELEASE_LEN);
        out.extend_from_slice(RELEASE_MAGIC);
        out.extend_from_slice(&self.header.encode());
        out.extend_from_slice(&self.root);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Decodes a release (untrusted bytes).
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != *RELEASE_MAGIC {
            return Err(PsiError::Malformed("not a voucher database release"));
        }
        let header = DbHeader::decode(r.take(HEADER_LEN)?)?;
        let root = r.array()?;
        let signature = r.array()?;
        r.finish()?;
        Ok(Self {
            header,
            root,
            signature,
        })
    }

    /// The header, unverified.
    pub fn header(&self) -> &DbHeader {
        &self.header
    }

    /// The root, unverified.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// Checks the signature under the server's pinned database key.
    pub fn verify(self, key: &VerifyingKey) -> Result<VerifiedRelease, PsiError> {
        let signature = Signature::from_bytes(&self.signature);
        key.verify(&release_message(&self.header, &self.root), &signature)
            .map_err(|_| PsiError::BadSignature)?;
        Ok(VerifiedRelease(self))
    }
}

/// A release whose signature verified: the only way to accept a database download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelease(SignedRelease);

impl VerifiedRelease {
    /// The verified header.
    pub fn header(&self) -> &DbHeader {
        &self.0.header
    }

    /// The verified root.
    pub fn root(&self) -> [u8; 32] {
        self.0.root
    }

    /// Decodes a downloaded database and accepts it only if it is this release: same header,
    /// same root. Every slot must be a valid point (checked here, once).
    pub fn accept(&self, bytes: &[u8]) -> Result<PublicDb, PsiError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != *DB_MAGIC {
            return Err(PsiError::Malformed("not a voucher database"));
        }
        let header = DbHeader::decode(r.take(HEADER_LEN)?)?;
        if header != self.0.header {
            return Err(PsiError::WrongDatabase);
        }
        let n = usize::try_from(header.n_slots).map_err(|_| PsiError::Malformed("slot count"))?;
        if r.remaining() != n.saturating_mul(32) {
            return Err(PsiError::Malformed(
                "database length does not match its slot count",
            ));
        }
        let mut slots = Vec::with_capacity(n);
        for _ in 0..n {
            let s: [u8; 32] = r.array()?;
            slots.push(s);
        }
        r.finish()?;
        let db = PublicDb { header, slots };
        if db.root() != self.0.root {
            return Err(PsiError::WrongDatabase);
        }
        for j in 0..db.header.n_slots {
            db.slot(j)?;
        }
        Ok(db)
    }
}

/// A bounds-checked reader over untrusted bytes.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], PsiError> {
        let (head, rest) = self
            .bytes
            .split_at_checked(n)
            .ok_or(PsiError::Malformed("truncated"))?;
        self.bytes = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], PsiError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn finish(self) -> Result<(), PsiError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(PsiError::Malformed("trailing bytes"))
        }
    }
}
