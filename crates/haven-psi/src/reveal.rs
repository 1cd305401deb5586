//! The server's per-account step: from the shares its vouchers opened, recover the account's
//! secret once enough distinct matching images are there, and read exactly those images'
//! associated data.

use std::collections::HashSet;

use curve25519_dalek::scalar::Scalar;
use zeroize::Zeroizing;

use crate::shamir::berlekamp_welch;
use crate::voucher::{open_payload, OpenedShare};

/// Most shares one reconstruction looks at (Berlekamp–Welch is cubic in it). A server holding
/// more for one account has long been able to reconstruct; it passes the newest ones.
pub const MAX_RECONSTRUCT_SHARES: usize = 512;

/// One image revealed by reconstruction.
#[derive(Clone, PartialEq, Eq)]
pub struct RevealedImage {
    /// The voucher it came in.
    pub id: [u8; 16],
    /// The release the voucher was made for.
    pub db_id: [u8; 16],
    /// The associated data the sender sealed (media key, blob id, PDQ hash).
    pub payload: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for RevealedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevealedImage")
            .field("id", &self.id)
            .field("payload_len", &self.payload.len())
            .finish()
    }
}

/// The outcome of [`reconstruct`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconstruction {
    /// Not enough matching images yet (or too many synthetic shares among them to decode
    /// uniquely): nothing is learnt. `distinct` is the number of distinct images whose vouchers
    /// opened, real and synthetic together — what the server already knew.
    Below {
        /// Distinct x-coordinates among the shares.
        distinct: usize,
    },
    /// Over the threshold: the matching images, and the vouchers that turned out synthetic or
    /// whose sealed data did not open (a modified client's garbage).
    Revealed {
        /// The matching images' associated data.
        images: Vec<RevealedImage>,
        /// Ids of vouchers that opened but are not on the account's polynomial.
        synthetic: Vec<[u8; 16]>,
        /// Ids of vouchers on the polynomial whose sealed data did not open.
        unreadable: Vec<[u8; 16]>,
    },
}

/// Tries to recover the account's secret from its opened shares for threshold `t`.
///
/// Shares with an x-coordinate already seen are the same image again (the x is derived from
/// the image's digest) and count once; the first is kept. With `n` distinct shares of which
/// `r` are real, decoding succeeds when `r ≥ t + (n − r)`, i.e. `n ≥ t + 2e` for `e` synthetic
/// shares (see the crate docs: synthetic shares raise the effective threshold by their number).
pub fn reconstruct(threshold: u16, shares: &[OpenedShare]) -> Reconstruction {
    let mut seen = HashSet::new();
    let distinct: Vec<&OpenedShare> = shares.iter().filter(|s| seen.insert(s.x_bytes())).collect();
    let n = distinct.len();
    let t = usize::from(threshold);
    if t == 0 || n < t {
        return Reconstruction::Below { distinct: n };
    }
    let window: Vec<&OpenedShare> = distinct
        .iter()
        .skip(n.saturating_sub(MAX_RECONSTRUCT_SHARES))
        .copied()
        .collect();
    let points: Vec<(Scalar, Scalar)> = window.iter().map(|s| (s.x, s.y)).collect();
    let Some(f) = berlekamp_welch(&points, t) else {
        return Reconstruction::Below { distinct: n };
    };
    let Some(s) = f.first().copied() else {
        return Reconstruction::Below { distinct: n };
    };
    let s = Zeroizing::new(s);
    let mut images = Vec::new();
    let mut synthetic = Vec::new();
    let mut unreadable = Vec::new();
    // Every voucher on the polynomial is revealed, repeats of an image included (each is its
    // own upload); only the count is per image.
    for share in shares {
        if crate::shamir::eval(&f, &share.x) != share.y {
            synthetic.push(share.id);
            continue;
        }
        match open_payload(&s, share) {
            Some(payload) => images.push(RevealedImage {
                id: share.id,
                db_id: share.db_id,
                payload,
            }),
            None => unreadable.push(share.id),
        }
    }
    if images.is_empty() {
        // A polynomial every share agrees with but under which nothing opens is not the
        // account's: report nothing.
        return Reconstruction::Below { distinct: n };
    }
    Reconstruction::Revealed {
        images,
        synthetic,
        unreadable,
    }
}
