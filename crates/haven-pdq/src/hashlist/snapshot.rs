//! The binary snapshot of a [`HashList`]: compact, versioned and checksummed, for loading
//! large lists fast.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic        8 bytes   "HVNPDQL\0"  (doubles as the checksum's domain-separation label)
//! version      u32       1
//! flags        u32       0 (reserved; non-zero is rejected)
//! n_entries    u64       distinct hashes
//! n_refs       u64       (entry, label) pairs
//! n_labels     u64       distinct label strings
//! label_bytes  u64       total UTF-8 bytes of the label strings
//! body:
//!   hashes     n_entries × 32 bytes, each in the 64-hex-digit text's byte order
//!   quality    n_entries × u8 (0–100, or 255 for unknown)
//!   ref_count  n_entries × u32 (labels of each entry; they sum to n_refs)
//!   refs       n_refs × u32 (each < n_labels)
//!   label_len  n_labels × u32 (each ≤ MAX_LABEL_BYTES; they sum to label_bytes)
//!   labels     label_bytes bytes of UTF-8
//! digest       32 bytes  SHA-256 of everything before it
//! ```
//!
//! The reader checks the header, the counts against their limits and the exact file length
//! implied by the counts (with overflow-checked arithmetic) *before* allocating anything, then
//! the digest, then every field's range; a truncated, extended, corrupted or hostile snapshot is
//! rejected with a [`SnapshotError`], never a panic, and allocations never exceed the input's
//! size. The snapshot stores the list, not the matching index: building the index from a loaded
//! list is a few counting-sort passes (see `BENCHMARKS.md` for the time at 10 M hashes), which
//! keeps the format small and independent of the index's tuning.

use sha2::{Digest, Sha256};

use super::{HashList, MAX_ENTRIES, MAX_LABEL_BYTES, NO_QUALITY};

/// The snapshot's magic bytes.
pub const MAGIC: [u8; 8] = *b"HVNPDQL\0";
/// The snapshot format version this code writes and reads.
pub const VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 4 + 8 * 4;
const DIGEST_LEN: usize = 32;

/// Why a snapshot was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Shorter than a header and digest, or not matching the length its counts imply.
    #[error(
        "snapshot is truncated or has trailing data (expected {expected} bytes, got {actual})"
    )]
    Length {
        /// Length implied by the header (0 when even the header is missing).
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// Not a Haven hash-list snapshot.
    #[error("not a Haven hash-list snapshot (bad magic)")]
    Magic,
    /// A version this code does not read.
    #[error("unsupported snapshot version {0} (this build reads version {VERSION})")]
    Version(u32),
    /// Reserved flags set.
    #[error("unsupported snapshot flags {0:#x}")]
    Flags(u32),
    /// A count beyond the format's limits.
    #[error("snapshot header count out of range: {0}")]
    Count(&'static str),
    /// The SHA-256 digest does not match: the file is corrupted.
    #[error("snapshot checksum mismatch (file corrupted)")]
    Checksum,
    /// A field out of range although the checksum matched (a hostile or buggy writer).
    #[error("snapshot content invalid: {0}")]
    Content(&'static str),
}

/// The snapshot's header, readable without loading the body (for `haven hashlist info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Format version.
    pub version: u32,
    /// Distinct hashes.
    pub entries: u64,
    /// (entry, label) pairs.
    pub label_refs: u64,
    /// Distinct labels.
    pub labels: u64,
    /// Bytes of label text.
    pub label_bytes: u64,
}

impl SnapshotInfo {
    /// Total snapshot length these counts imply, or `None` on overflow.
    fn total_len(&self) -> Option<u64> {
        let body = self
            .entries
            .checked_mul(32 + 1 + 4)?
            .checked_add(self.label_refs.checked_mul(4)?)?
            .checked_add(self.labels.checked_mul(4)?)?
            .checked_add(self.label_bytes)?;
        body.checked_add((HEADER_LEN + DIGEST_LEN) as u64)
    }
}

/// Serialises `list` into snapshot bytes.
pub fn to_bytes(list: &HashList) -> Vec<u8> {
    let n = list.words.len();
    let label_bytes: usize = list.labels.iter().map(String::len).sum();
    let cap = HEADER_LEN
        + n * 37
        + list.label_refs.len() * 4
        + list.labels.len() * 4
        + label_bytes
        + DIGEST_LEN;
    let mut out = Vec::with_capacity(cap);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for count in [n, list.label_refs.len(), list.labels.len(), label_bytes] {
        out.extend_from_slice(&(count as u64).to_le_bytes());
    }
    for w in &list.words {
        for word in w {
            out.extend_from_slice(&word.to_be_bytes());
        }
    }
    out.extend_from_slice(&list.quality);
    for pair in list.label_start.windows(2) {
        if let [a, b] = pair {
            out.extend_from_slice(&b.saturating_sub(*a).to_le_bytes());
        }
    }
    for r in &list.label_refs {
        out.extend_from_slice(&r.to_le_bytes());
    }
    for l in &list.labels {
        out.extend_from_slice(&(l.len() as u32).to_le_bytes());
    }
    for l in &list.labels {
        out.extend_from_slice(l.as_bytes());
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    out
}

/// A cursor over validated-length bytes; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotError> {
        if n > self.rest.len() {
            return Err(SnapshotError::Content("field runs past the end"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
}

/// Reads and checks the header of snapshot bytes (which may be just a prefix of the file,
/// at least the header long), returning the counts and the length they imply.
pub fn read_info(bytes: &[u8]) -> Result<(SnapshotInfo, u64), SnapshotError> {
    let mut r = Reader { rest: bytes };
    let header_err = |_| SnapshotError::Length {
        expected: (HEADER_LEN + DIGEST_LEN) as u64,
        actual: bytes.len() as u64,
    };
    let magic: [u8; 8] = r.array().map_err(header_err)?;
    if magic != MAGIC {
        return Err(SnapshotError::Magic);
    }
    let version = r.u32().map_err(header_err)?;
    if version != VERSION {
        return Err(SnapshotError::Version(version));
    }
    let flags = r.u32().map_err(header_err)?;
    if flags != 0 {
        return Err(SnapshotError::Flags(flags));
    }
    let info = SnapshotInfo {
        version,
        entries: r.u64().map_err(header_err)?,
        label_refs: r.u64().map_err(header_err)?,
        labels: r.u64().map_err(header_err)?,
        label_bytes: r.u64().map_err(header_err)?,
    };
    if info.entries > MAX_ENTRIES as u64 {
        return Err(SnapshotError::Count("entries"));
    }
    if info.label_refs > u64::from(u32::MAX) {
        return Err(SnapshotError::Count("label references"));
    }
    if info.labels > u64::from(u32::MAX) {
        return Err(SnapshotError::Count("labels"));
    }
    if info.label_bytes > info.labels.saturating_mul(MAX_LABEL_BYTES as u64) {
        return Err(SnapshotError::Count("label bytes"));
    }
    let total = info
        .total_len()
        .ok_or(SnapshotError::Count("length overflows"))?;
    Ok((info, total))
}

/// Parses snapshot bytes into a list, checking everything (see the module docs).
pub fn from_bytes(bytes: &[u8]) -> Result<HashList, SnapshotError> {
    let (info, total) = read_info(bytes)?;
    if total != bytes.len() as u64 {
        return Err(SnapshotError::Length {
            expected: total,
            actual: bytes.len() as u64,
        });
    }
    let (content, digest) = bytes.split_at(bytes.len().saturating_sub(DIGEST_LEN));
    if Sha256::digest(content).as_slice() != digest {
        return Err(SnapshotError::Checksum);
    }
    // Counts now fit in the input (checked above), so the conversions and allocations below
    // are bounded by the input's length.
    let to_usize = |v: u64| usize::try_from(v).map_err(|_| SnapshotError::Count("too large"));
    let n = to_usize(info.entries)?;
    let n_refs = to_usize(info.label_refs)?;
    let n_labels = to_usize(info.labels)?;
    let label_bytes = to_usize(info.label_bytes)?;
    let mut r = Reader {
        rest: content.get(HEADER_LEN..).unwrap_or_default(),
    };

    let hashes = r.take(n * 32)?;
    let words: Vec<[u64; 4]> = hashes
        .chunks_exact(32)
        .map(|c| {
            let mut w = [0u64; 4];
            for (slot, b) in w.iter_mut().zip(c.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                *slot = u64::from_be_bytes(a);
            }
            w
        })
        .collect();

    let quality = r.take(n)?.to_vec();
    if quality.iter().any(|&q| q > 100 && q != NO_QUALITY) {
        return Err(SnapshotError::Content("quality out of range"));
    }

    let mut label_start = Vec::with_capacity(n + 1);
    let mut acc = 0u64;
    label_start.push(0u32);
    for c in r.take(n * 4)?.chunks_exact(4) {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        acc = acc.saturating_add(u64::from(u32::from_le_bytes(a)));
        if acc > info.label_refs {
            return Err(SnapshotError::Content(
                "label counts exceed the reference count",
            ));
        }
        label_start.push(u32::try_from(acc).map_err(|_| SnapshotError::Content("label count"))?);
    }
    if acc != info.label_refs {
        return Err(SnapshotError::Content(
            "label counts do not sum to the reference count",
        ));
    }

    let mut label_refs = Vec::with_capacity(n_refs);
    for c in r.take(n_refs * 4)?.chunks_exact(4) {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        let l = u32::from_le_bytes(a);
        if u64::from(l) >= info.labels {
            return Err(SnapshotError::Content("label reference out of range"));
        }
        label_refs.push(l);
    }

    let mut lens = Vec::with_capacity(n_labels);
    let mut sum = 0u64;
    for c in r.take(n_labels * 4)?.chunks_exact(4) {
        let mut a = [0u8; 4];
        a.copy_from_slice(c);
        let len = u32::from_le_bytes(a);
        if len as usize > MAX_LABEL_BYTES {
            return Err(SnapshotError::Content("label too long"));
        }
        sum = sum.saturating_add(u64::from(len));
        lens.push(len as usize);
    }
    if sum != info.label_bytes {
        return Err(SnapshotError::Content(
            "label lengths do not sum to the label bytes",
        ));
    }
    let mut text = r.take(label_bytes)?;
    let mut labels = Vec::with_capacity(n_labels);
    for len in lens {
        let (s, rest) = text.split_at(len.min(text.len()));
        text = rest;
        let s = std::str::from_utf8(s).map_err(|_| SnapshotError::Content("label not UTF-8"))?;
        labels.push(s.to_owned());
    }
    if !r.rest.is_empty() {
        return Err(SnapshotError::Content("trailing bytes in body"));
    }
    Ok(HashList {
        words,
        quality,
        label_start,
        label_refs,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hashlist::HashListBuilder;
    use crate::PdqHash;
    use proptest::prelude::*;

    fn build(entries: &[([u8; 32], Option<u8>, Vec<String>)]) -> HashList {
        let mut b = HashListBuilder::new();
        for (h, q, labels) in entries {
            b.add(PdqHash(*h), *q, labels.iter().map(String::as_str))
                .unwrap();
        }
        b.finish()
    }

    fn entry() -> impl Strategy<Value = ([u8; 32], Option<u8>, Vec<String>)> {
        (
            // Few distinct first bytes so duplicates (and merging) happen.
            (0u8..4, any::<[u8; 31]>()).prop_map(|(a, rest)| {
                let mut h = [0u8; 32];
                h[0] = a;
                h[1..].copy_from_slice(&rest);
                if a == 0 {
                    h[1..].fill(0);
                }
                h
            }),
            proptest::option::of(0u8..=100),
            proptest::collection::vec("[a-z é,\"]{1,12}", 0..3),
        )
    }

    proptest! {
        #[test]
        fn round_trip(entries in proptest::collection::vec(entry(), 0..40)) {
            let list = build(&entries);
            let bytes = to_bytes(&list);
            let back = from_bytes(&bytes).unwrap();
            prop_assert_eq!(&back, &list);
            let (info, total) = read_info(&bytes).unwrap();
            prop_assert_eq!(info.entries as usize, list.len());
            prop_assert_eq!(total as usize, bytes.len());
        }

        #[test]
        fn flipped_bit_fails(entries in proptest::collection::vec(entry(), 1..20), pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let list = build(&entries);
            let mut bytes = to_bytes(&list);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            prop_assert!(from_bytes(&bytes).is_err());
        }

        #[test]
        fn truncated_or_extended_fails(entries in proptest::collection::vec(entry(), 1..20), cut in any::<prop::sample::Index>()) {
            let bytes = to_bytes(&build(&entries));
            let n = cut.index(bytes.len());
            prop_assert!(from_bytes(&bytes[..n]).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(from_bytes(&longer).is_err());
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
            if magic && bytes.len() >= 16 {
                bytes[..8].copy_from_slice(&MAGIC);
                bytes[8..12].copy_from_slice(&VERSION.to_le_bytes());
                bytes[12..16].fill(0);
            }
            prop_assert!(from_bytes(&bytes).is_err());
        }
    }

    /// Re-seals a tampered body with a valid digest, as a hostile writer could.
    fn reseal(mut bytes: Vec<u8>) -> Vec<u8> {
        let n = bytes.len() - DIGEST_LEN;
        let d = Sha256::digest(&bytes[..n]);
        bytes[n..].copy_from_slice(&d);
        bytes
    }

    #[test]
    fn hostile_headers_rejected_before_allocating() {
        let list = build(&[([7u8; 32], Some(80), vec!["x".into()])]);
        let good = to_bytes(&list);
        // Huge entry count: rejected by the limit, no allocation attempted.
        let mut b = good.clone();
        b[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(from_bytes(&b), Err(SnapshotError::Count("entries")));
        // Plausible but larger-than-file count: a length error.
        let mut b = good.clone();
        b[16..24].copy_from_slice(&1000u64.to_le_bytes());
        assert!(matches!(from_bytes(&b), Err(SnapshotError::Length { .. })));
        // Counts that overflow when multiplied.
        let mut b = good.clone();
        b[32..40].copy_from_slice(&u64::from(u32::MAX).to_le_bytes());
        b[40..48].copy_from_slice(&u64::from(u32::MAX).to_le_bytes());
        assert!(from_bytes(&b).is_err());
        // Wrong magic, version, flags.
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(from_bytes(&b), Err(SnapshotError::Magic));
        let mut b = good.clone();
        b[8] = 2;
        assert_eq!(from_bytes(&b), Err(SnapshotError::Version(2)));
        let mut b = good.clone();
        b[12] = 1;
        assert_eq!(from_bytes(&b), Err(SnapshotError::Flags(1)));
        assert_eq!(from_bytes(&good).unwrap(), list);
    }

    #[test]
    fn hostile_bodies_with_valid_digest_rejected() {
        let list = build(&[
            ([7u8; 32], Some(80), vec!["x".into()]),
            ([8u8; 32], None, vec![]),
        ]);
        let good = to_bytes(&list);
        let body = HEADER_LEN;
        let quality_at = body + 2 * 32;
        let counts_at = quality_at + 2;
        let refs_at = counts_at + 8;
        let lens_at = refs_at + 4;
        let text_at = lens_at + 4;

        let mut b = good.clone();
        b[quality_at] = 101;
        assert_eq!(
            from_bytes(&reseal(b)),
            Err(SnapshotError::Content("quality out of range"))
        );
        let mut b = good.clone();
        b[counts_at] = 0;
        b[counts_at + 4] = 1;
        assert_eq!(
            from_bytes(&reseal(b.clone()))
                .ok()
                .map(|l| l.labels(1).count()),
            Some(1)
        );
        b[counts_at + 4] = 2;
        assert!(from_bytes(&reseal(b)).is_err());
        let mut b = good.clone();
        b[refs_at] = 1;
        assert_eq!(
            from_bytes(&reseal(b)),
            Err(SnapshotError::Content("label reference out of range"))
        );
        let mut b = good.clone();
        b[text_at] = 0xff;
        assert_eq!(
            from_bytes(&reseal(b)),
            Err(SnapshotError::Content("label not UTF-8"))
        );
        let mut b = good.clone();
        b[lens_at] = 0;
        assert!(from_bytes(&reseal(b)).is_err());
    }
}
