//! Safety vouchers: made by the sender's device for every image it sends, opened by the server
//! only where a match key is in the database.
//!
//! **Format** (version 1; integers big-endian):
//!
//! ```text
//! Voucher     = "HPV1" | db_id[16] | id[16] | u8 n_pairs | n_pairs × Pair | u16 len | rct
//! Pair        = Q[32] | ct[80]            ct = AEADc(outer key, aad, rkey[32])
//! rct         = AEADc(rkey, "rct" | db_id | id, Inner)
//! Inner       = u16 len | adct | x[32] | y[32]
//! adct        = AEADc(ad key, "adct" | db_id | id, payload)
//! aad (pairs) = "outer" | db_id | id
//! outer key   = HKDF(salt = db_id, S | Q, "outer")
//! ```
//!
//! `n_pairs = 2 × keys_per_voucher` of the release, shuffled. For a real voucher and each key
//! `y` with cuckoo positions `w_1, w_2`: `Q_i = β_i·H2G(y) + γ_i·G` and `S_i = β_i·P_{w_i} +
//! γ_i·L` with fresh secret `β_i, γ_i`. The server computes `α·Q_i`, which equals `S_i` exactly
//! when `P_{w_i} = α·H2G(y)`, i.e. when `y` is in the table; otherwise `S_i` is uniformly random
//! to it and `ct_i` does not open. A synthetic voucher makes `d ∈ [1, keys_per_voucher]` pairs
//! open (`Q = γ·G`, `S = γ·L`) and the rest random; its share is a random point and its `adct`
//! seals zeros under a random key, so nothing about the image is in it.

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use rand::seq::SliceRandom;
use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::account::{ad_key, adkey_from_s, AccountSecret};
use crate::db::{generator, PublicDb, Reader, ServerKey};
use crate::primitives::{hash_to_group, kdf, open, seal, AEAD_OVERHEAD};
use crate::{MatchKey, PsiError, MAX_KEYS_PER_VOUCHER, MAX_PAYLOAD};

/// The voucher encoding's magic prefix.
pub const VOUCHER_MAGIC: &[u8; 4] = b"HPV1";
/// Bytes of one pair's ciphertext: the sealed 32-byte `rkey`.
pub const PAIR_CT_LEN: usize = 32 + AEAD_OVERHEAD;
/// Bytes of one encoded pair.
pub const PAIR_LEN: usize = 32 + PAIR_CT_LEN;
/// Largest encoded voucher.
pub const MAX_VOUCHER_LEN: usize =
    4 + 16 + 16 + 1 + 2 * MAX_KEYS_PER_VOUCHER * PAIR_LEN + 2 + MAX_RCT_LEN;
const MAX_RCT_LEN: usize = AEAD_OVERHEAD + 2 + AEAD_OVERHEAD + MAX_PAYLOAD + 64;

/// One image to make a voucher for.
#[derive(Debug, Clone, Copy)]
pub struct Image<'a> {
    /// SHA-256 of the image's plaintext bytes: the same file is one image however often it is
    /// sent (one share, counted once).
    pub digest: [u8; 32],
    /// Its match keys, exactly `keys_per_voucher` of the release.
    pub keys: &'a [MatchKey],
    /// What the server may read once the account is over the threshold and this image matched
    /// (the attachment's media key, blob id, PDQ hash), at most [`MAX_PAYLOAD`] bytes.
    pub payload: &'a [u8],
}

/// A voucher as sent or received (untrusted until the server opens it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voucher {
    db_id: [u8; 16],
    id: [u8; 16],
    pairs: Vec<([u8; 32], [u8; PAIR_CT_LEN])>,
    rct: Vec<u8>,
}

fn pair_aad(db_id: &[u8; 16], id: &[u8; 16]) -> Vec<u8> {
    [&b"outer"[..], db_id, id].concat()
}

fn rct_aad(db_id: &[u8; 16], id: &[u8; 16]) -> Vec<u8> {
    [&b"rct"[..], db_id, id].concat()
}

fn adct_aad(db_id: &[u8; 16], id: &[u8; 16]) -> Vec<u8> {
    [&b"adct"[..], db_id, id].concat()
}

fn outer_key(db_id: &[u8; 16], s: &RistrettoPoint, q: &[u8; 32]) -> Zeroizing<[u8; 32]> {
    kdf(db_id, &[s.compress().to_bytes(), *q].concat(), &[b"outer"])
}

fn seal_pair(
    db_id: &[u8; 16],
    aad: &[u8],
    q: &RistrettoPoint,
    s: &RistrettoPoint,
    rkey: &[u8; 32],
) -> Result<([u8; 32], [u8; PAIR_CT_LEN]), PsiError> {
    let q = q.compress().to_bytes();
    let ct = seal(&outer_key(db_id, s, &q), aad, rkey)?;
    let ct: [u8; PAIR_CT_LEN] = ct
        .try_into()
        .map_err(|_| PsiError::Internal("pair ciphertext length"))?;
    Ok((q, ct))
}

fn random_pair<R: RngCore + CryptoRng>(
    rng: &mut R,
    aad: &[u8],
) -> Result<([u8; 32], [u8; PAIR_CT_LEN]), PsiError> {
    let q = RistrettoPoint::mul_base(&Scalar::random(rng))
        .compress()
        .to_bytes();
    let mut key = Zeroizing::new([0u8; 32]);
    rng.fill_bytes(key.as_mut_slice());
    let mut junk = [0u8; 32];
    rng.fill_bytes(&mut junk);
    let ct: [u8; PAIR_CT_LEN] = seal(&key, aad, &junk)?
        .try_into()
        .map_err(|_| PsiError::Internal("pair ciphertext length"))?;
    Ok((q, ct))
}

impl Voucher {
    /// Makes the voucher for one image against a verified database (the client's side).
    pub fn make<R: RngCore + CryptoRng>(
        db: &PublicDb,
        account: &AccountSecret,
        image: &Image<'_>,
        rng: &mut R,
    ) -> Result<Self, PsiError> {
        let header = db.header();
        let params = header.params;
        let m = usize::from(params.keys_per_voucher);
        if image.keys.len() != m {
            return Err(PsiError::Misuse(
                "the image has a different number of match keys than the database asks for",
            ));
        }
        if image.payload.len() > MAX_PAYLOAD {
            return Err(PsiError::TooLarge("voucher payload"));
        }
        let db_id = header.db_id;
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        let share = account.image_share(params.threshold, params.synthetic_rate, &image.digest);

        let adct = if share.synthetic {
            let mut key = Zeroizing::new([0u8; 32]);
            rng.fill_bytes(key.as_mut_slice());
            seal(
                &key,
                &adct_aad(&db_id, &id),
                &vec![0u8; image.payload.len()],
            )?
        } else {
            let adkey = adkey_from_s(&account.s());
            seal(
                &ad_key(&adkey, &db_id, &id),
                &adct_aad(&db_id, &id),
                image.payload,
            )?
        };
        let adct_len =
            u16::try_from(adct.len()).map_err(|_| PsiError::TooLarge("voucher payload"))?;
        let mut inner = Zeroizing::new(Vec::with_capacity(2 + adct.len() + 64));
        inner.extend_from_slice(&adct_len.to_be_bytes());
        inner.extend_from_slice(&adct);
        inner.extend_from_slice(share.x.as_bytes());
        inner.extend_from_slice(share.y.as_bytes());
        let mut rkey = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(rkey.as_mut_slice());
        let rct = seal(&rkey, &rct_aad(&db_id, &id), &inner)?;

        let l = header.blinding_point()?;
        let g = generator();
        let aad = pair_aad(&db_id, &id);
        let mut pairs = Vec::with_capacity(2 * m);
        if share.synthetic {
            let d = 1 + usize::from(share.coin) % m;
            for _ in 0..d {
                let gamma = Zeroizing::new(Scalar::random(rng));
                let q = g * *gamma;
                let s = l * *gamma;
                pairs.push(seal_pair(&db_id, &aad, &q, &s, &rkey)?);
            }
            while pairs.len() < 2 * m {
                pairs.push(random_pair(rng, &aad)?);
            }
        } else {
            for key in image.keys {
                let h = hash_to_group(key.as_bytes())?;
                for w in header.positions(key) {
                    let p = db.slot(w)?;
                    let beta = Zeroizing::new(Scalar::random(rng));
                    let gamma = Zeroizing::new(Scalar::random(rng));
                    let q = h * *beta + g * *gamma;
                    let s = p * *beta + l * *gamma;
                    pairs.push(seal_pair(&db_id, &aad, &q, &s, &rkey)?);
                }
            }
        }
        pairs.shuffle(rng);
        Ok(Self {
            db_id,
            id,
            pairs,
            rct,
        })
    }

    /// The release this voucher was made for.
    pub fn db_id(&self) -> [u8; 16] {
        self.db_id
    }

    /// The voucher's random id (the server ties it to the upload it came with).
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// Number of (Q, ct) pairs.
    pub fn pairs(&self) -> usize {
        self.pairs.len()
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(4 + 16 + 16 + 1 + self.pairs.len() * PAIR_LEN + 2 + self.rct.len());
        out.extend_from_slice(VOUCHER_MAGIC);
        out.extend_from_slice(&self.db_id);
        out.extend_from_slice(&self.id);
        // At most 2 × MAX_KEYS_PER_VOUCHER pairs, checked on make and decode.
        out.push(u8::try_from(self.pairs.len()).unwrap_or(u8::MAX));
        for (q, ct) in &self.pairs {
            out.extend_from_slice(q);
            out.extend_from_slice(ct);
        }
        out.extend_from_slice(
            &u16::try_from(self.rct.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.rct);
        out
    }

    /// Decodes untrusted bytes. Checks shape and bounds only; whether it is well formed for a
    /// release is [`ServerKey::open`]'s to say (it knows the release's `keys_per_voucher`).
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        if bytes.len() > MAX_VOUCHER_LEN {
            return Err(PsiError::TooLarge("voucher"));
        }
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != *VOUCHER_MAGIC {
            return Err(PsiError::Malformed("not a safety voucher"));
        }
        let db_id = r.array()?;
        let id = r.array()?;
        let n = usize::from(r.array::<1>()?[0]);
        if n == 0 || n % 2 != 0 || n > 2 * MAX_KEYS_PER_VOUCHER {
            return Err(PsiError::Malformed("voucher pair count"));
        }
        let mut pairs = Vec::with_capacity(n);
        for _ in 0..n {
            pairs.push((r.array()?, r.array()?));
        }
        let len = usize::from(u16::from_be_bytes(r.array()?));
        if !(AEAD_OVERHEAD + 2 + AEAD_OVERHEAD + 64..=MAX_RCT_LEN).contains(&len) {
            return Err(PsiError::Malformed("voucher inner ciphertext length"));
        }
        let rct = r.take(len)?.to_vec();
        r.finish()?;
        Ok(Self {
            db_id,
            id,
            pairs,
            rct,
        })
    }
}

/// What the server learns from a voucher that opened: the image's share and its sealed
/// associated data (readable only after reconstruction).
#[derive(Clone, PartialEq, Eq)]
pub struct OpenedShare {
    /// The release the voucher was made for.
    pub db_id: [u8; 16],
    /// The voucher id.
    pub id: [u8; 16],
    pub(crate) x: Scalar,
    pub(crate) y: Scalar,
    pub(crate) adct: Vec<u8>,
}

impl std::fmt::Debug for OpenedShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedShare")
            .field("db_id", &self.db_id)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The stored encoding's magic prefix.
pub const SHARE_MAGIC: &[u8; 4] = b"HPS1";

impl OpenedShare {
    /// The x-coordinate's bytes (one share per image: the server keeps the first per x).
    pub fn x_bytes(&self) -> [u8; 32] {
        self.x.to_bytes()
    }

    /// `"HPS1" | db_id | id | x | y | u16 len | adct`, for the server's per-account store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 16 + 16 + 64 + 2 + self.adct.len());
        out.extend_from_slice(SHARE_MAGIC);
        out.extend_from_slice(&self.db_id);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(self.x.as_bytes());
        out.extend_from_slice(self.y.as_bytes());
        out.extend_from_slice(
            &u16::try_from(self.adct.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.adct);
        out
    }

    /// Reads [`OpenedShare::encode`] back.
    pub fn decode(bytes: &[u8]) -> Result<Self, PsiError> {
        let mut r = Reader::new(bytes);
        if r.array::<4>()? != *SHARE_MAGIC {
            return Err(PsiError::Malformed("not an opened share"));
        }
        let db_id = r.array()?;
        let id = r.array()?;
        let (x, y, adct) = read_share_tail(&mut r)?;
        r.finish()?;
        Ok(Self {
            db_id,
            id,
            x,
            y,
            adct,
        })
    }
}

fn scalar(bytes: [u8; 32]) -> Result<Scalar, PsiError> {
    Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes))
        .ok_or(PsiError::Malformed("share is not a canonical scalar"))
}

/// `x | y | u16 len | adct` in the stored form; `u16 len | adct | x | y` inside `rct`.
fn read_share_tail(r: &mut Reader<'_>) -> Result<(Scalar, Scalar, Vec<u8>), PsiError> {
    let x = scalar(r.array()?)?;
    let y = scalar(r.array()?)?;
    let len = usize::from(u16::from_be_bytes(r.array()?));
    if len > MAX_PAYLOAD + AEAD_OVERHEAD {
        return Err(PsiError::Malformed("sealed payload length"));
    }
    let adct = r.take(len)?.to_vec();
    if x == Scalar::ZERO {
        return Err(PsiError::Malformed("a share at x = 0"));
    }
    Ok((x, y, adct))
}

fn parse_inner(inner: &[u8]) -> Result<(Scalar, Scalar, Vec<u8>), PsiError> {
    let mut r = Reader::new(inner);
    let len = usize::from(u16::from_be_bytes(r.array()?));
    if len > MAX_PAYLOAD + AEAD_OVERHEAD {
        return Err(PsiError::Malformed("sealed payload length"));
    }
    let adct = r.take(len)?.to_vec();
    let x = scalar(r.array()?)?;
    let y = scalar(r.array()?)?;
    r.finish()?;
    if x == Scalar::ZERO {
        return Err(PsiError::Malformed("a share at x = 0"));
    }
    Ok((x, y, adct))
}

impl ServerKey {
    /// Tries every pair of a voucher (the server's side). `Ok(None)`: no match key of it is in
    /// the database — what the server learns about almost every image. `Ok(Some(share))`: a pair
    /// opened (a match, or a synthetic voucher; the server cannot tell which). `Err`: the voucher
    /// is not well formed for this release (wrong release, pair count, a point that does not
    /// decode, or a pair that opened onto an inner layer that does not).
    pub fn open(
        &self,
        keys_per_voucher: u8,
        voucher: &Voucher,
    ) -> Result<Option<OpenedShare>, PsiError> {
        if voucher.db_id != self.db_id {
            return Err(PsiError::WrongDatabase);
        }
        if voucher.pairs.len() != 2 * usize::from(keys_per_voucher) {
            return Err(PsiError::Malformed(
                "voucher pair count does not match the release",
            ));
        }
        let mut points = Vec::with_capacity(voucher.pairs.len());
        for (q, _) in &voucher.pairs {
            let point = CompressedRistretto(*q)
                .decompress()
                .ok_or(PsiError::Malformed(
                    "a voucher point is not a ristretto255 point",
                ))?;
            points.push(point);
        }
        let aad = pair_aad(&voucher.db_id, &voucher.id);
        for ((q, ct), point) in voucher.pairs.iter().zip(points.iter()) {
            let s = self.alpha * point;
            let Some(rkey) = open(&outer_key(&self.db_id, &s, q), &aad, ct) else {
                continue;
            };
            let rkey: [u8; 32] = rkey.as_slice().try_into().map_err(|_| {
                PsiError::Malformed("a voucher pair sealed a key of the wrong length")
            })?;
            let rkey = Zeroizing::new(rkey);
            let inner = open(&rkey, &rct_aad(&voucher.db_id, &voucher.id), &voucher.rct)
                .ok_or(PsiError::BadVoucher)?;
            let (x, y, adct) = parse_inner(&inner)?;
            return Ok(Some(OpenedShare {
                db_id: voucher.db_id,
                id: voucher.id,
                x,
                y,
                adct,
            }));
        }
        Ok(None)
    }
}

/// Opens one revealed share's associated data with the recovered secret.
pub(crate) fn open_payload(s: &Scalar, share: &OpenedShare) -> Option<Zeroizing<Vec<u8>>> {
    let adkey = adkey_from_s(s);
    open(
        &ad_key(&adkey, &share.db_id, &share.id),
        &adct_aad(&share.db_id, &share.id),
        &share.adct,
    )
}
