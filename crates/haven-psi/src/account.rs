//! The account's voucher secret and what is derived from it.
//!
//! One 32-byte secret per account, the same on every device of the account (it travels with the
//! account's end-to-end encrypted device sync, never to the server). Everything else is derived
//! deterministically, so all devices of an account produce shares of one polynomial:
//!
//! ```text
//! s        = wide_reduce(HKDF(salt = ACCOUNT_SALT, acct_secret, "s"))            the Shamir secret
//! a_i      = wide_reduce(HKDF(ACCOUNT_SALT, acct_secret, "coef" ‖ u16 t ‖ u16 i))  1 ≤ i < t
//! f(X)     = s + a_1 X + … + a_{t−1} X^{t−1}  over F_ℓ
//! fkey     = HKDF(ACCOUNT_SALT, acct_secret, "fkey")
//! adkey    = HKDF(ACCOUNT_SALT, s, "adkey")                                      what f(0) unlocks
//! ad key   = HKDF(ACCOUNT_SALT, adkey, "adct" ‖ db_id ‖ voucher id)               one per voucher
//! ```
//!
//! Per image (keyed by the SHA-256 of the image's plaintext bytes, `digest`):
//!
//! ```text
//! x         = wide_reduce(HKDF(ACCOUNT_SALT, fkey, "x" ‖ digest))    (1 if it were 0)
//! synthetic = BE32(HKDF(ACCOUNT_SALT, fkey, "syn" ‖ digest)) < synthetic_rate
//! y         = f(x)  if real;  wide_reduce(HKDF(ACCOUNT_SALT, fkey, "syn-y" ‖ digest)) if synthetic
//! ```
//!
//! `t` is part of the coefficients' derivation: the database names the threshold, and a change
//! of threshold starts a new polynomial (the server keeps shares per threshold).

use curve25519_dalek::scalar::Scalar;
use rand::{CryptoRng, RngCore};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::primitives::{kdf, kdf_scalar, ACCOUNT_SALT};

/// An account's voucher secret. Redacted in `Debug`; zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AccountSecret([u8; 32]);

impl std::fmt::Debug for AccountSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccountSecret(..)")
    }
}

impl AccountSecret {
    /// A fresh secret (made once, on the account's first device).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The secret as stored and synced between the account's devices.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes to store or sync (end-to-end encrypted only).
    pub fn to_bytes(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0)
    }

    /// The Shamir secret `s = f(0)`.
    pub(crate) fn s(&self) -> Scalar {
        kdf_scalar(ACCOUNT_SALT, &self.0, &[b"s"])
    }

    fn fkey(&self) -> Zeroizing<[u8; 32]> {
        kdf(ACCOUNT_SALT, &self.0, &[b"fkey"])
    }

    /// `f(x)` for the polynomial of threshold `t` (Horner's rule).
    pub(crate) fn f(&self, t: u16, x: &Scalar) -> Scalar {
        let mut acc = Scalar::ZERO;
        for i in (1..t).rev() {
            let a_i = kdf_scalar(
                ACCOUNT_SALT,
                &self.0,
                &[b"coef", &t.to_be_bytes(), &i.to_be_bytes()],
            );
            acc = acc * x + a_i;
        }
        acc * x + self.s()
    }

    /// The per-image values: `x`, whether the image's voucher is synthetic, and the share `y`.
    pub(crate) fn image_share(&self, t: u16, synthetic_rate: u32, digest: &[u8; 32]) -> ImageShare {
        let fkey = self.fkey();
        let mut x = kdf_scalar(ACCOUNT_SALT, fkey.as_slice(), &[b"x", digest]);
        if x == Scalar::ZERO {
            // Probability 2^-252; f(0) is the secret, so 0 is never an x.
            x = Scalar::ONE;
        }
        let coin = kdf(ACCOUNT_SALT, fkey.as_slice(), &[b"syn", digest]);
        let [c0, c1, c2, c3, c4, ..] = *coin;
        let draw = u32::from_be_bytes([c0, c1, c2, c3]);
        let synthetic = draw < synthetic_rate;
        let y = if synthetic {
            kdf_scalar(ACCOUNT_SALT, fkey.as_slice(), &[b"syn-y", digest])
        } else {
            self.f(t, &x)
        };
        // How many key pairs a synthetic voucher makes decrypt (see `voucher`), drawn from the
        // same per-image coin so repeats of the image look the same.
        ImageShare {
            x,
            y,
            synthetic,
            coin: c4,
        }
    }
}

/// One image's share and its synthetic coin.
pub(crate) struct ImageShare {
    pub x: Scalar,
    pub y: Scalar,
    pub synthetic: bool,
    pub coin: u8,
}

/// `adkey` from the Shamir secret: what reconstruction unlocks.
pub(crate) fn adkey_from_s(s: &Scalar) -> Zeroizing<[u8; 32]> {
    kdf(ACCOUNT_SALT, s.as_bytes(), &[b"adkey"])
}

/// The key of one voucher's associated-data ciphertext.
pub(crate) fn ad_key(adkey: &[u8; 32], db_id: &[u8; 16], id: &[u8; 16]) -> Zeroizing<[u8; 32]> {
    kdf(ACCOUNT_SALT, adkey, &[b"adct", db_id, id])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f_at_zero_is_the_secret_and_threshold_changes_the_polynomial() {
        let acct = AccountSecret::from_bytes([3u8; 32]);
        assert_eq!(acct.f(30, &Scalar::ZERO), acct.s());
        let x = Scalar::from(5u64);
        assert_ne!(acct.f(30, &x), acct.f(31, &x));
        // t = 1 is the constant polynomial.
        assert_eq!(acct.f(1, &x), acct.s());
    }

    #[test]
    fn image_shares_are_deterministic_and_rate_zero_is_never_synthetic() {
        let acct = AccountSecret::from_bytes([9u8; 32]);
        let a = acct.image_share(3, 0, &[1u8; 32]);
        let b = acct.image_share(3, 0, &[1u8; 32]);
        assert_eq!(a.x, b.x);
        assert_eq!(a.y, b.y);
        assert!(!a.synthetic);
        assert_eq!(a.y, acct.f(3, &a.x));
        let all = acct.image_share(3, u32::MAX, &[1u8; 32]);
        assert_eq!(all.x, a.x);
        // u32::MAX is "every draw below it": all but one value in 2^32.
        assert!(all.synthetic);
        assert_ne!(all.y, a.y);
        assert_ne!(acct.image_share(3, 0, &[2u8; 32]).x, a.x);
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", AccountSecret::from_bytes([1; 32])),
            "AccountSecret(..)"
        );
    }
}
