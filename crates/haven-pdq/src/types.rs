//! The 256-bit PDQ hash value and its text form.

use std::fmt;
use std::str::FromStr;

/// Number of bits in a PDQ hash.
pub const HASH_BITS: u32 = 256;
/// Number of bytes in a PDQ hash.
pub const HASH_BYTES: usize = 32;

/// A 256-bit PDQ hash.
///
/// Bytes are in the order of the reference's 64-hex-digit text form: `bytes[0]` is the first two
/// hex digits. In the reference's word layout (sixteen 16-bit words, `w[15]` printed first), bit
/// `i` of the hash (0 ≤ i < 256, as set by `hash[i/16] |= 1 << (i%16)`) lives in
/// `bytes[31 - i/8]`, bit `i % 8`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PdqHash(pub [u8; HASH_BYTES]);

impl PdqHash {
    /// The all-zero hash (what images under 5 pixels on a side hash to).
    pub const ZERO: PdqHash = PdqHash([0; HASH_BYTES]);

    /// Hamming distance between two hashes.
    pub fn distance(&self, other: &PdqHash) -> u32 {
        let mut d = 0;
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            d += (a ^ b).count_ones();
        }
        d
    }

    /// The hash as four little-endian-agnostic 64-bit words (for fast popcount).
    pub fn words(&self) -> [u64; 4] {
        let mut w = [0u64; 4];
        for (i, chunk) in self.0.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            if let Some(slot) = w.get_mut(i) {
                *slot = u64::from_be_bytes(b);
            }
        }
        w
    }

    /// Builds a hash from the words returned by [`PdqHash::words`].
    pub fn from_words(w: [u64; 4]) -> PdqHash {
        let mut out = [0u8; HASH_BYTES];
        for (chunk, word) in out.chunks_exact_mut(8).zip(w.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        PdqHash(out)
    }

    /// Bit `i` in the reference's numbering (see the type docs).
    pub fn bit(&self, i: usize) -> bool {
        match self.0.get(31usize.wrapping_sub(i / 8)) {
            Some(byte) if i < 256 => (byte >> (i % 8)) & 1 == 1,
            _ => false,
        }
    }

    /// Sets bit `i` in the reference's numbering; out-of-range indices are ignored.
    pub fn set_bit(&mut self, i: usize) {
        if i < 256 {
            if let Some(byte) = self.0.get_mut(31 - i / 8) {
                *byte |= 1 << (i % 8);
            }
        }
    }

    /// The 64-hex-digit lower-case text form.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for PdqHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PdqHash({self})")
    }
}

/// Why a string is not a PDQ hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseHashError {
    /// Not exactly 64 characters.
    #[error("a PDQ hash is 64 hex digits, got {0} characters")]
    Length(usize),
    /// A character that is not a hex digit.
    #[error("invalid hex digit {0:?} in PDQ hash")]
    Digit(char),
}

impl FromStr for PdqHash {
    type Err = ParseHashError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(ParseHashError::Length(s.chars().count()));
        }
        let mut out = [0u8; HASH_BYTES];
        let bytes = s.as_bytes();
        for (i, slot) in out.iter_mut().enumerate() {
            let hi = hex_val(bytes.get(2 * i).copied().unwrap_or(b'?'))?;
            let lo = hex_val(bytes.get(2 * i + 1).copied().unwrap_or(b'?'))?;
            *slot = (hi << 4) | lo;
        }
        Ok(PdqHash(out))
    }
}

fn hex_val(c: u8) -> Result<u8, ParseHashError> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(ParseHashError::Digit(c as char)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_distance() {
        let s = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
        let h: PdqHash = s.parse().unwrap();
        assert_eq!(h.to_string(), s);
        assert_eq!(h.distance(&h), 0);
        let mut g = h;
        g.0[0] ^= 0b1010_0000;
        assert_eq!(h.distance(&g), 2);
        assert_eq!(PdqHash::from_words(h.words()), h);
        assert!("zz".parse::<PdqHash>().is_err());
        assert!(s.replace('f', "g").parse::<PdqHash>().is_err());
    }

    #[test]
    fn bit_numbering_matches_reference_layout() {
        // Bit 0 is the lowest bit of the last hex byte; bit 255 the highest of the first.
        let mut h = PdqHash::ZERO;
        h.set_bit(0);
        assert_eq!(h.to_string(), format!("{}01", "0".repeat(62)));
        let mut h = PdqHash::ZERO;
        h.set_bit(255);
        assert_eq!(h.to_string(), format!("80{}", "0".repeat(62)));
        assert!(h.bit(255) && !h.bit(0));
    }
}
