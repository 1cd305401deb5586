//! Haven's match-key scheme: which keys a bank entry puts in the database and which keys a
//! file's voucher carries, so that the two sides meet. Both sides call this module; a release
//! fixes `keys_per_voucher`, and every voucher carries exactly that many keys, real ones first,
//! then random padding, so the server cannot tell an image from another file, nor a file whose
//! PDQ could not be computed from one whose could.
//!
//! Scheme 1 (this one) matches exactly: the file's SHA-256 (byte-identical forwards), its MD5
//! (the clearing house's lists) and its exact PDQ hash. It catches every byte-identical copy and
//! every copy whose PDQ is unchanged; near-duplicates whose PDQ moved need fuzzy keys derived
//! from PDQ (issue 12, "Fuzziness"), which are not part of this scheme yet.

use rand::{CryptoRng, RngCore};

use crate::{MatchKey, PsiError, MAX_KEYS_PER_VOUCHER};

/// The real keys scheme 1 gives one file (SHA-256, MD5, PDQ): the least `keys_per_voucher` a
/// release for it may have.
pub const SCHEME_1_KEYS: u8 = 3;

/// What a bank entry is a hash of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryHash<'a> {
    /// SHA-256 of a file.
    Sha256(&'a [u8; 32]),
    /// MD5 of a file.
    Md5(&'a [u8; 16]),
    /// A PDQ hash.
    Pdq(&'a [u8; 32]),
}

/// The database keys of one bank entry.
pub fn entry_keys(entry: EntryHash<'_>) -> Vec<MatchKey> {
    match entry {
        EntryHash::Sha256(d) => vec![MatchKey::sha256(d)],
        EntryHash::Md5(d) => vec![MatchKey::md5(d)],
        EntryHash::Pdq(h) => vec![MatchKey::pdq(h)],
    }
}

/// What a client knows of a file it is about to send.
#[derive(Debug, Clone, Copy)]
pub struct FileHashes<'a> {
    /// SHA-256 of the plaintext.
    pub sha256: &'a [u8; 32],
    /// MD5 of the plaintext.
    pub md5: &'a [u8; 16],
    /// Its PDQ hash, when it is an image PDQ could hash.
    pub pdq: Option<&'a [u8; 32]>,
}

/// The voucher keys of one file: its real keys, then random padding up to `keys_per_voucher`.
pub fn file_keys<R: RngCore + CryptoRng>(
    file: &FileHashes<'_>,
    keys_per_voucher: u8,
    rng: &mut R,
) -> Result<Vec<MatchKey>, PsiError> {
    let m = usize::from(keys_per_voucher);
    if !(usize::from(SCHEME_1_KEYS)..=MAX_KEYS_PER_VOUCHER).contains(&m) {
        return Err(PsiError::Misuse(
            "this release asks for a number of keys the key scheme cannot give",
        ));
    }
    let mut keys = vec![MatchKey::sha256(file.sha256), MatchKey::md5(file.md5)];
    if let Some(p) = file.pdq {
        keys.push(MatchKey::pdq(p));
    }
    while keys.len() < m {
        let mut pad = [0u8; 32];
        rng.fill_bytes(&mut pad);
        keys.push(MatchKey::new("pad", &pad)?);
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn both_sides_meet_and_padding_fills() {
        let (s, m, p) = ([1u8; 32], [2u8; 16], [3u8; 32]);
        let mut rng = rand::rngs::OsRng;
        let with_pdq = FileHashes {
            sha256: &s,
            md5: &m,
            pdq: Some(&p),
        };
        let keys = file_keys(&with_pdq, 5, &mut rng).unwrap();
        assert_eq!(keys.len(), 5);
        for e in [
            EntryHash::Sha256(&s),
            EntryHash::Md5(&m),
            EntryHash::Pdq(&p),
        ] {
            for k in entry_keys(e) {
                assert!(keys.contains(&k), "{k:?}");
            }
        }
        let no_pdq = FileHashes {
            pdq: None,
            ..with_pdq
        };
        let keys2 = file_keys(&no_pdq, 5, &mut rng).unwrap();
        assert_eq!(keys2.len(), 5);
        assert!(!keys2.contains(&MatchKey::pdq(&p)));
        // Padding is fresh each time.
        assert_ne!(keys2[2..], file_keys(&no_pdq, 5, &mut rng).unwrap()[2..]);
        assert!(file_keys(&with_pdq, 2, &mut rng).is_err());
        assert!(file_keys(&with_pdq, 17, &mut rng).is_err());
    }
}
