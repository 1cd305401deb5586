//! Haven's safety vouchers: threshold private set intersection with associated data (tPSI-AD)
//! on ristretto255, after "The Apple PSI System" (Bhowmick, Boneh, Myers, Talwar, Tarbe, 2021),
//! as written out for Haven in `shared/research/safety-tech.md` §3.2. Pure: no I/O, no clock;
//! randomness comes in as an argument.
//!
//! # Data flow
//!
//! ```text
//! server (hash banks)                       client (sender's device)
//!  keys X ──► cuckoo table T, α ──► PublicDb{header, P_j = α·H2G(T[j])} ──signed──►  verify, keep
//!                                                                  image ──► Voucher::make
//!  ServerKey::open(voucher) ◄────────────── voucher with the upload ◄────────────────┘
//!    no pair opens: nothing learnt (almost every image)
//!    a pair opens:  OpenedShare{x, y, sealed payload} kept per account
//!  reconstruct(t, shares): below t distinct images → nothing; at t (+ synthetic) →
//!    the account's secret s, and exactly the matching images' payloads
//! ```
//!
//! - [`PublicDb::build`] blinds every match key of the enabled banks with the release's secret
//!   `α` into a cuckoo table; the client holds only blinded points and cannot test a hash against
//!   them (that needs `α`).
//! - [`Voucher::make`] (client): for each of the image's match keys, two (Q, ct) pairs — one per
//!   cuckoo position — each sealing the voucher's random `rkey` under a key the server can
//!   derive only if that position holds that key. `rkey` opens the inner layer: the image's
//!   Shamir share `(x, f(x))` of the account's secret and the payload sealed under a key derived
//!   from that secret.
//! - [`ServerKey::open`] (server): learns for each voucher only whether some pair opened, and
//!   then only the share and the sealed payload.
//! - [`reconstruct`] (server): Reed–Solomon decoding of the account's shares; with `t` real
//!   shares (plus two for every synthetic one among them) it yields `s`, and with it the
//!   payloads of the vouchers whose shares lie on the polynomial — the matching ones.
//!
//! # Trust assumptions and what this does not protect
//!
//! - The server is honest-but-curious towards the protocol: it builds the database it says it
//!   builds. Nothing cryptographic stops it putting hashes of anything into the database; the
//!   mitigation is policy and publication (the release's signed root, the bank policy of at
//!   least two independent sources, the transparency log of issue 13).
//! - The client is honest about *which* images it vouches for. A modified client can send
//!   garbage vouchers (they open for nothing); the server enforces only that every image
//!   upload carries a well-formed voucher set.
//! - Leakage: the server learns, per voucher, whether a pair opened (the noisy match count,
//!   hidden below the threshold by synthetic vouchers), and with several keys per image it can
//!   count how many pairs opened; a synthetic voucher opens a uniformly chosen `1..=m`, which
//!   is not the distribution of real matches (see "Departures").
//! - Matching is exact on each key: a near-duplicate matches only through keys that are equal
//!   (the fuzzy keys are the caller's design; see issue 12's measurements).
//!
//! # Departures from the paper and the research note, and why
//!
//! 1. **Account-level derivations are not salted with the release id.** The note salts every
//!    HKDF with `db_id`; that would give each weekly release its own polynomial, so shares would
//!    never add up across releases and the threshold would silently reset. Account derivations
//!    use a fixed salt; each voucher is bound to its release through the AEAD's associated data
//!    and the outer keys' salt.
//! 2. **One key per voucher for the associated data.** The note seals every payload under one
//!    `adkey` with nonce 0 — a nonce reuse across vouchers, fatal for ChaCha20-Poly1305. Each
//!    voucher's payload key is `HKDF(adkey, "adct" ‖ db_id ‖ id)`.
//! 3. **One share per image.** `x`, the synthetic coin and a synthetic `y` derive from the
//!    image's SHA-256, not the voucher id: sending one image many times (forwards) is one share,
//!    counted once, and a repeat looks exactly like the first send (real or synthetic), so
//!    repeats reveal nothing beyond the repeat itself — and only for vouchers that opened.
//! 4. **Several keys per image.** The paper has one hash per image; here every key (the file's
//!    SHA-256, the exact PDQ, fuzzy PDQ keys) gets its own two pairs, all sealing the same
//!    `rkey`, so however many keys match the image gives one share.
//! 5. **Reconstruction** uses Berlekamp–Welch decoding (the note's choice) instead of the
//!    paper's detectable hash function. Consequence, stated rather than hidden: with `e`
//!    synthetic shares among an account's opened ones, it takes `t + e` real matches to
//!    decode; the synthetic rate in the release is what an operator tunes against that.
//! 6. **Synthetic payloads carry nothing.** A synthetic voucher seals zeros of the payload's
//!    length under a random key, so even a later key compromise reveals nothing about the
//!    image it came with. A real match whose voucher happens to be synthetic is missed; the
//!    probability is the synthetic rate.
//! 7. **Key-committing AEAD** by key derivation (see [`primitives::seal`]), because "a pair
//!    opens" is the match signal and must not be forgeable by a ciphertext that opens under
//!    two keys.
//!
//! Formats: [`db`] (database, release) and [`voucher`] (voucher, opened share). Test vectors:
//! `vectors/psi-v1.json`, written by `examples/gen_vectors.rs` and recomputed independently by
//! `vectors/crosscheck.py` (Python with libsodium).

#![forbid(unsafe_code)]

pub mod account;
pub mod db;
pub mod keys;
pub mod primitives;
pub mod reveal;
mod shamir;
pub mod voucher;

pub use account::AccountSecret;
pub use db::{Built, DbHeader, Params, PublicDb, ServerKey, SignedRelease, VerifiedRelease};
pub use reveal::{reconstruct, Reconstruction, RevealedImage};
pub use voucher::{Image, OpenedShare, Voucher};

/// Most match keys one voucher carries.
pub const MAX_KEYS_PER_VOUCHER: usize = 16;
/// Most bytes of associated data one voucher carries.
pub const MAX_PAYLOAD: usize = 1024;
/// Longest match key.
pub const MAX_KEY_LEN: usize = 64;

/// Why an operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PsiError {
    /// The bytes are not a canonical encoding, or a value is out of range.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// A size limit was exceeded.
    #[error("too large: {0}")]
    TooLarge(&'static str),
    /// The voucher or download is for another database release.
    #[error("not this database release")]
    WrongDatabase,
    /// The release's signature does not verify under the pinned key.
    #[error("the voucher database's signature does not verify")]
    BadSignature,
    /// A voucher pair opened but its inner layer did not: the sender built it wrongly.
    #[error("the voucher's inner layer does not open under the key its pair sealed")]
    BadVoucher,
    /// The caller passed arguments that cannot work.
    #[error("{0}")]
    Misuse(&'static str),
    /// A bug: an internal invariant failed.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A match key: a kind and its bytes, encoded `kind ‖ ":" ‖ bytes` (the note's `"sha256:"‖32B`).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MatchKey(Vec<u8>);

impl std::fmt::Debug for MatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind_len = self.0.iter().position(|b| *b == b':').unwrap_or(0);
        let (kind, rest) = self.0.split_at(kind_len);
        write!(
            f,
            "MatchKey({}{})",
            String::from_utf8_lossy(kind),
            rest.iter().map(|b| format!("{b:02x}")).collect::<String>()
        )
    }
}

impl MatchKey {
    /// `kind` is a short ASCII label without `:` (`sha256`, `md5`, `pdq`, `pdq-band3`…).
    pub fn new(kind: &str, bytes: &[u8]) -> Result<Self, PsiError> {
        if kind.is_empty()
            || !kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(PsiError::Malformed("match key kind"));
        }
        let mut v = Vec::with_capacity(kind.len() + 1 + bytes.len());
        v.extend_from_slice(kind.as_bytes());
        v.push(b':');
        v.extend_from_slice(bytes);
        if v.len() > MAX_KEY_LEN {
            return Err(PsiError::TooLarge("match key"));
        }
        Ok(Self(v))
    }

    /// The SHA-256 of a file.
    pub fn sha256(digest: &[u8; 32]) -> Self {
        Self([&b"sha256:"[..], digest].concat())
    }

    /// The MD5 of a file.
    pub fn md5(digest: &[u8; 16]) -> Self {
        Self([&b"md5:"[..], digest].concat())
    }

    /// An exact 256-bit PDQ hash.
    pub fn pdq(hash: &[u8; 32]) -> Self {
        Self([&b"pdq:"[..], hash].concat())
    }

    /// The encoded bytes (what is hashed to the group).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}
