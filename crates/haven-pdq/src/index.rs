//! Exact Hamming-range search over PDQ hashes.
//!
//! [`Index::search`] returns exactly the entries a brute-force scan returns: every entry whose
//! Hamming distance to the query (or, for dihedral queries, to any of the query's variants) is
//! at most the radius, each once with its smallest distance. Two strategies give that set:
//!
//! * **Scan** — a linear pass computing four 64-bit popcounts per entry, written so that LLVM
//!   vectorises it. Best for small lists and for large radii.
//! * **Multi-index hashing** (Norouzi, Punjani and Fleet, "Fast Search in Hamming Space with
//!   Multi-Index Hashing", CVPR 2012 / TPAMI 2014). The 256 bits are cut into `m` contiguous
//!   substrings. With `r = q·m + a` (`0 ≤ a < m`), a hash within distance `r` of the query agrees
//!   with it within `q` bits on one of the first `a + 1` substrings or within `q − 1` bits on one
//!   of the others (otherwise the distance would be at least `(a+1)(q+1) + (m−a−1)q = r + 1`).
//!   So for each substring `k` we enumerate every key within its radius `r_k` of the query's
//!   substring, look the keys up in that substring's table, and check each candidate's full
//!   distance with popcounts.
//!
//! Layout, for memory: one table per substring, each a CSR array. The top `p` bits of a
//! substring key (`p ≈ log2(n) − 3`) select a bucket through an offsets array of `2^p + 1` u32;
//! the bucket holds `u32` slots packing the entry id above the key's remaining low bits, so a
//! probe reads one offset pair and scans a handful of adjacent slots. At 10 M hashes and 11
//! substrings this is 40 MB of slots and 8 MB of offsets per substring, beside 320 MB of hashes.
//!
//! Candidate de-duplication costs no memory: a candidate found in table `k` is reported only if
//! no earlier table `j < k` would also have found it (its substring distance there exceeds
//! `r_j`), which is decided from the XOR with the query already computed for the distance check.
//! Tables are probed in order and enumeration within a table visits each key once, so each
//! matching entry is reported exactly once per query hash.
//!
//! [`Strategy::Auto`] compares the expected cost of the probes and candidates with the cost of a
//! scan for the given list size and radius, so MIH is used where it wins (radius 31 on large
//! lists) and the scan where MIH's enumeration grows combinatorially (radius ≳ 64), with the
//! same result either way.
//!
//! # Quality
//!
//! PDQ's quality score says how much structure an image has; hashes of near-flat images collide
//! easily, so by default neither side of a match may be of low quality: a query whose quality is
//! known and below [`SearchOptions::min_quality`] (default 50) matches nothing, and list entries
//! whose quality is known and below it are excluded unless
//! [`SearchOptions::filter_list_quality`] is off. Hashes of unknown quality (hex inputs, lists
//! without a quality column) are not filtered.

use rayon::prelude::*;

use crate::hashlist::{HashList, NO_QUALITY};
use crate::PdqHash;

/// The default search radius (the threshold hash-sharing programmes use for PDQ).
pub const DEFAULT_RADIUS: u32 = 31;
/// The default minimum quality for a hash to take part in a match.
pub const DEFAULT_MIN_QUALITY: u8 = 50;
/// Lists smaller than this get no MIH tables by default (a scan of them is already fast).
pub const DEFAULT_MIH_MIN_ENTRIES: usize = 100_000;

/// How to search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Pick by expected cost.
    #[default]
    Auto,
    /// Linear scan.
    Scan,
    /// Multi-index hashing (falls back to a scan when the index has no tables).
    Mih,
}

/// Options for one search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchOptions {
    /// Largest Hamming distance that matches (values over 256 act as 256).
    pub radius: u32,
    /// Hashes of known quality below this take no part in matches.
    pub min_quality: u8,
    /// Whether list entries of known quality below `min_quality` are excluded too.
    pub filter_list_quality: bool,
    /// How to search (the result is the same set either way).
    pub strategy: Strategy,
}

impl Default for SearchOptions {
    fn default() -> Self {
        SearchOptions {
            radius: DEFAULT_RADIUS,
            min_quality: DEFAULT_MIN_QUALITY,
            filter_list_quality: true,
            strategy: Strategy::Auto,
        }
    }
}

/// Options for building an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexOptions {
    /// Number of MIH substrings (9..=64); `None` picks about `256 / log2(n)`.
    pub substrings: Option<usize>,
    /// Lists with fewer entries than this get no MIH tables (searches scan).
    pub mih_min_entries: usize,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            substrings: None,
            mih_min_entries: DEFAULT_MIH_MIN_ENTRIES,
        }
    }
}

/// Why an index could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    /// Substring count outside 9..=64.
    #[error("MIH substring count must be 9..=64, got {0}")]
    Substrings(usize),
    /// More entries than ids can address.
    #[error("too many entries for the index ({0})")]
    TooManyEntries(usize),
}

/// A query: one hash, or the eight dihedral variants of an image's hash.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The hash or its variants; an entry matches when any is within the radius.
    pub hashes: &'a [PdqHash],
    /// The query's quality, when it was computed from an image.
    pub quality: Option<u8>,
}

/// One matching entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    /// The smallest distance from any query hash to the entry.
    pub distance: u32,
    /// The entry's id in the [`HashList`].
    pub id: u32,
}

/// One MIH table.
#[derive(Debug, Clone)]
struct Table {
    /// First bit of the substring (0 = most significant bit of the hex text).
    start: u32,
    /// Substring length in bits (≤ 29).
    bits: u32,
    /// Low key bits stored in each slot beside the id.
    residual_bits: u32,
    /// `offsets[b]..offsets[b + 1]` are bucket `b`'s slots; length `2^(bits − residual_bits) + 1`.
    offsets: Vec<u32>,
    /// `(id << residual_bits) | (key & residual_mask)`, grouped by bucket, ids ascending.
    slots: Vec<u32>,
    /// The substring's bits within the hash words (for de-duplication).
    mask: [u64; 4],
}

/// An exact Hamming-range index over a [`HashList`].
#[derive(Debug, Clone)]
pub struct Index {
    list: HashList,
    tables: Vec<Table>,
}

#[inline(always)]
fn distance(a: &[u64; 4], b: &[u64; 4]) -> u32 {
    let [a0, a1, a2, a3] = *a;
    let [b0, b1, b2, b3] = *b;
    (a0 ^ b0).count_ones()
        + (a1 ^ b1).count_ones()
        + (a2 ^ b2).count_ones()
        + (a3 ^ b3).count_ones()
}

#[inline(always)]
fn masked_weight(x: &[u64; 4], m: &[u64; 4]) -> u32 {
    let [x0, x1, x2, x3] = *x;
    let [m0, m1, m2, m3] = *m;
    (x0 & m0).count_ones()
        + (x1 & m1).count_ones()
        + (x2 & m2).count_ones()
        + (x3 & m3).count_ones()
}

#[inline(always)]
fn xor(a: &[u64; 4], b: &[u64; 4]) -> [u64; 4] {
    let [a0, a1, a2, a3] = *a;
    let [b0, b1, b2, b3] = *b;
    [a0 ^ b0, a1 ^ b1, a2 ^ b2, a3 ^ b3]
}

/// Bits `start..start + len` of the hash (bit 0 = most significant of word 0), `1 ≤ len ≤ 32`.
#[inline(always)]
fn extract(w: &[u64; 4], start: u32, len: u32) -> u32 {
    let i = (start / 64) as usize;
    let hi = w.get(i).copied().unwrap_or(0);
    let lo = w.get(i + 1).copied().unwrap_or(0);
    let window = (u128::from(hi) << 64) | u128::from(lo);
    ((window << (start % 64)) >> (128 - len.clamp(1, 32))) as u32
}

fn substring_mask(start: u32, len: u32) -> [u64; 4] {
    let mut m = [0u64; 4];
    for bit in start..start + len {
        if let Some(word) = m.get_mut((bit / 64) as usize) {
            *word |= 1u64 << (63 - bit % 64);
        }
    }
    m
}

fn ceil_log2(n: usize) -> u32 {
    usize::BITS - n.saturating_sub(1).leading_zeros()
}

/// Sum of C(bits, i) for i ≤ radius, as f64 (a cost estimate, so no overflow concerns).
fn ball_size(bits: u32, radius: i64) -> f64 {
    let mut total = 0.0;
    let mut c = 1.0;
    for i in 0..=radius.min(i64::from(bits)) {
        if i > 0 {
            c = c * f64::from(bits + 1 - i as u32) / i as f64;
        }
        total += c;
    }
    total
}

/// Per-table radii from the pigeonhole bound: `r = q·m + a` gives `q` for the first `a + 1`
/// tables and `q − 1` for the rest (−1 meaning the table need not be probed).
fn table_radii(radius: u32, m: usize) -> impl Iterator<Item = i64> {
    let m64 = m.max(1) as i64;
    let r = i64::from(radius);
    let (q, a) = (r / m64, r % m64);
    (0..m64).map(move |k| if k <= a { q } else { q - 1 })
}

// Cost model constants, in nanoseconds, fitted to the measurements in BENCHMARKS.md: a probe
// (offsets read and a short bucket scan, usually two cache misses), a candidate (a random read
// of its hash), and one entry of a scan, which depends on whether the build may use the POPCNT
// instruction (the default x86-64 target may not, and the scan then uses SSE2 bit tricks).
const PROBE_NS: f64 = 150.0;
const CANDIDATE_NS: f64 = 100.0;
const SCAN_NS_PER_ENTRY: f64 = if cfg!(target_feature = "popcnt") {
    SCAN_NS_POPCNT
} else {
    7.5
};
const SCAN_NS_POPCNT: f64 = 2.5;

impl Index {
    /// Builds an index over `list` (MIH tables when the list is large enough).
    pub fn build(list: HashList, opts: IndexOptions) -> Result<Index, IndexError> {
        let n = list.len();
        if n > crate::hashlist::MAX_ENTRIES {
            return Err(IndexError::TooManyEntries(n));
        }
        if let Some(m) = opts.substrings {
            if !(9..=64).contains(&m) {
                return Err(IndexError::Substrings(m));
            }
        }
        if n < opts.mih_min_entries.max(1) {
            return Ok(Index {
                list,
                tables: Vec::new(),
            });
        }
        let m = opts.substrings.unwrap_or_else(|| {
            let lg = f64::from(ceil_log2(n).max(1));
            ((256.0 / lg).round() as usize).clamp(9, 64)
        });
        let base = 256 / m as u32;
        let extra = 256 % m as u32;
        let mut specs = Vec::with_capacity(m);
        let mut start = 0u32;
        for k in 0..m as u32 {
            let bits = base + u32::from(k < extra);
            specs.push((start, bits));
            start += bits;
        }
        let words = list.words();
        let tables = specs
            .into_par_iter()
            .map(|(start, bits)| build_table(words, start, bits))
            .collect();
        Ok(Index { list, tables })
    }

    /// The list the index was built over.
    pub fn list(&self) -> &HashList {
        &self.list
    }

    /// Takes the list back.
    pub fn into_list(self) -> HashList {
        self.list
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of MIH substrings (0 when searches always scan).
    pub fn substrings(&self) -> usize {
        self.tables.len()
    }

    /// Heap bytes held by the index and its list (approximately).
    pub fn heap_bytes(&self) -> usize {
        self.list.heap_bytes()
            + self
                .tables
                .iter()
                .map(|t| t.offsets.capacity() * 4 + t.slots.capacity() * 4)
                .sum::<usize>()
    }

    /// The strategy [`Strategy::Auto`] picks for `radius` and `variants` query hashes.
    pub fn choose(&self, radius: u32, variants: usize) -> Strategy {
        if self.tables.is_empty() {
            return Strategy::Scan;
        }
        let n = self.len() as f64;
        let mut mih = 0.0;
        for (t, rk) in self
            .tables
            .iter()
            .zip(table_radii(radius.min(256), self.tables.len()))
        {
            if rk < 0 {
                continue;
            }
            let probes = ball_size(t.bits, rk);
            mih += probes * (PROBE_NS + CANDIDATE_NS * n / 2f64.powi(t.bits as i32));
        }
        // A scan handles all variants in one pass; MIH pays per variant.
        let scan = n * SCAN_NS_PER_ENTRY * (1.0 + 0.1 * variants.saturating_sub(1) as f64);
        if mih * variants.max(1) as f64 <= scan {
            Strategy::Mih
        } else {
            Strategy::Scan
        }
    }

    /// Every entry within the radius of any of the query's hashes, each once with its smallest
    /// distance, sorted by (distance, id). Empty when the query's quality is below the minimum.
    pub fn search(&self, query: &Query<'_>, opts: &SearchOptions) -> Vec<Match> {
        if query.quality.is_some_and(|q| q < opts.min_quality) || query.hashes.is_empty() {
            return Vec::new();
        }
        let radius = opts.radius.min(256);
        let strategy = match opts.strategy {
            Strategy::Auto => self.choose(radius, query.hashes.len()),
            Strategy::Mih if self.tables.is_empty() => Strategy::Scan,
            s => s,
        };
        let min_q = if opts.filter_list_quality {
            opts.min_quality
        } else {
            0
        };
        let qwords: Vec<[u64; 4]> = query.hashes.iter().map(PdqHash::words).collect();
        let mut out = Vec::new();
        match strategy {
            Strategy::Mih => {
                for q in &qwords {
                    self.mih_search(q, radius, min_q, &mut out);
                }
                if qwords.len() > 1 {
                    // Keep each entry once, with its smallest distance.
                    out.sort_unstable_by_key(|m| (m.id, m.distance));
                    out.dedup_by_key(|m| m.id);
                }
            }
            _ => scan(
                self.list.words(),
                self.list.quality_bytes(),
                &qwords,
                radius,
                min_q,
                &mut out,
            ),
        }
        out.sort_unstable();
        out
    }

    /// [`Index::search`] over many queries in parallel (rayon), results in query order.
    pub fn search_batch(&self, queries: &[Query<'_>], opts: &SearchOptions) -> Vec<Vec<Match>> {
        queries.par_iter().map(|q| self.search(q, opts)).collect()
    }

    #[inline]
    fn mih_search(&self, q: &[u64; 4], radius: u32, min_q: u8, out: &mut Vec<Match>) {
        let words = self.list.words();
        let quality = self.list.quality_bytes();
        let radii: Vec<i64> = table_radii(radius, self.tables.len()).collect();
        for (k, (t, &rk)) in self.tables.iter().zip(&radii).enumerate() {
            if rk < 0 {
                continue;
            }
            let key = extract(q, t.start, t.bits);
            let res_mask = (1u32 << t.residual_bits) - 1;
            let mut check = |probe: u32| {
                let bucket = (probe >> t.residual_bits) as usize;
                let (Some(&lo), Some(&hi)) = (t.offsets.get(bucket), t.offsets.get(bucket + 1))
                else {
                    return;
                };
                let want = probe & res_mask;
                for &slot in t.slots.get(lo as usize..hi as usize).unwrap_or_default() {
                    if slot & res_mask != want {
                        continue;
                    }
                    let id = slot >> t.residual_bits;
                    let Some(w) = words.get(id as usize) else {
                        continue;
                    };
                    let x = xor(w, q);
                    let d = x.iter().map(|v| v.count_ones()).sum::<u32>();
                    if d > radius {
                        continue;
                    }
                    let qual = quality.get(id as usize).copied().unwrap_or(NO_QUALITY);
                    if qual != NO_QUALITY && qual < min_q {
                        continue;
                    }
                    // Reported by an earlier table already?
                    let earlier =
                        self.tables.iter().zip(&radii).take(k).any(|(tj, &rj)| {
                            rj >= 0 && i64::from(masked_weight(&x, &tj.mask)) <= rj
                        });
                    if !earlier {
                        out.push(Match { distance: d, id });
                    }
                }
            };
            enumerate_ball(key, t.bits, rk, &mut check);
        }
    }
}

/// Calls `f(key ^ mask)` for every `bits`-bit mask of popcount ≤ `radius` (Gosper's hack).
fn enumerate_ball(key: u32, bits: u32, radius: i64, f: &mut impl FnMut(u32)) {
    let limit = 1u64 << bits;
    for i in 0..=radius.min(i64::from(bits)) {
        if i == 0 {
            f(key);
            continue;
        }
        let mut mask: u64 = (1u64 << i) - 1;
        while mask < limit {
            f(key ^ mask as u32);
            let c = mask & mask.wrapping_neg();
            let r = mask + c;
            mask = (((r ^ mask) >> 2) / c) | r;
        }
    }
}

fn build_table(words: &[[u64; 4]], start: u32, bits: u32) -> Table {
    let n = words.len();
    // About 4–8 slots per bucket; the rest of the key lives in the slot beside the id.
    let prefix_bits = ceil_log2(n).saturating_sub(3).clamp(1, bits);
    let residual_bits = bits - prefix_bits;
    let res_mask = (1u32 << residual_bits) - 1;
    let buckets = 1usize << prefix_bits;
    let mut offsets = vec![0u32; buckets + 1];
    for w in words {
        let b = (extract(w, start, bits) >> residual_bits) as usize;
        if let Some(c) = offsets.get_mut(b + 1) {
            *c += 1;
        }
    }
    let mut acc = 0u32;
    for o in offsets.iter_mut() {
        acc += *o;
        *o = acc;
    }
    let mut fill: Vec<u32> = offsets.clone();
    let mut slots = vec![0u32; n];
    for (id, w) in words.iter().enumerate() {
        let key = extract(w, start, bits);
        let b = (key >> residual_bits) as usize;
        if let Some(pos) = fill.get_mut(b) {
            if let Some(slot) = slots.get_mut(*pos as usize) {
                // id < 2^28 ≤ 2^(32 − residual_bits) since residual_bits ≤ 3 + bits − log2(n)
                *slot = ((id as u32) << residual_bits) | (key & res_mask);
            }
            *pos += 1;
        }
    }
    Table {
        start,
        bits,
        residual_bits,
        offsets,
        slots,
        mask: substring_mask(start, bits),
    }
}

/// The scan kernel: distances for a block of entries at once (a loop LLVM vectorises), then
/// the few survivors checked for quality.
fn scan(
    words: &[[u64; 4]],
    quality: &[u8],
    queries: &[[u64; 4]],
    radius: u32,
    min_q: u8,
    out: &mut Vec<Match>,
) {
    const BLOCK: usize = 64;
    let mut dist = [0u32; BLOCK];
    for (b, block) in words.chunks(BLOCK).enumerate() {
        dist.fill(u32::MAX);
        for q in queries {
            min_distances(block, q, &mut dist);
        }
        for (i, &d) in dist.iter().enumerate().take(block.len()) {
            if d <= radius {
                let id = b * BLOCK + i;
                let qual = quality.get(id).copied().unwrap_or(NO_QUALITY);
                if qual == NO_QUALITY || qual >= min_q {
                    out.push(Match {
                        distance: d,
                        id: id as u32,
                    });
                }
            }
        }
    }
}

#[inline(always)]
fn min_distances(block: &[[u64; 4]], q: &[u64; 4], dist: &mut [u32; 64]) {
    for (d, w) in dist.iter_mut().zip(block) {
        *d = (*d).min(distance(w, q));
    }
}

/// Brute force over any slice of hashes (a reference for tests and small one-off searches).
pub fn brute_force(hashes: &[PdqHash], query: &[PdqHash], radius: u32) -> Vec<Match> {
    let mut out: Vec<Match> = hashes
        .iter()
        .enumerate()
        .filter_map(|(id, h)| {
            let d = query.iter().map(|q| q.distance(h)).min()?;
            (d <= radius).then_some(Match {
                distance: d,
                id: id as u32,
            })
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    fn rand_hash(rng: &mut impl Rng) -> PdqHash {
        let mut h = [0u8; 32];
        rng.fill(&mut h);
        PdqHash(h)
    }

    fn flip(h: PdqHash, bits: usize, rng: &mut impl Rng) -> PdqHash {
        let mut w = h.words();
        let mut flipped = std::collections::HashSet::new();
        while flipped.len() < bits.min(256) {
            flipped.insert(rng.gen_range(0..256usize));
        }
        for b in flipped {
            w[b / 64] ^= 1 << (b % 64);
        }
        PdqHash::from_words(w)
    }

    /// `n` hashes near a few centres (each within `spread` bits), or uniformly random.
    fn dataset(seed: u64, n: usize, centres: usize, spread: usize) -> Vec<PdqHash> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        if centres == 0 {
            return (0..n).map(|_| rand_hash(&mut rng)).collect();
        }
        let cs: Vec<PdqHash> = (0..centres).map(|_| rand_hash(&mut rng)).collect();
        (0..n)
            .map(|i| {
                let k = rng.gen_range(0..=spread);
                flip(cs[i % centres], k, &mut rng)
            })
            .collect()
    }

    fn index_of(hashes: &[PdqHash], m: usize) -> (Index, Vec<PdqHash>) {
        let list = HashList::from_hashes(hashes.iter().copied()).unwrap();
        let distinct: Vec<PdqHash> = (0..list.len() as u32)
            .map(|i| list.hash(i).unwrap())
            .collect();
        let idx = Index::build(
            list,
            IndexOptions {
                substrings: Some(m),
                mih_min_entries: 1,
            },
        )
        .unwrap();
        (idx, distinct)
    }

    fn check_all(idx: &Index, distinct: &[PdqHash], queries: &[Vec<PdqHash>], radius: u32) {
        for q in queries {
            let expect = brute_force(distinct, q, radius);
            for strategy in [Strategy::Scan, Strategy::Mih, Strategy::Auto] {
                let opts = SearchOptions {
                    radius,
                    strategy,
                    ..SearchOptions::default()
                };
                let got = idx.search(
                    &Query {
                        hashes: q,
                        quality: None,
                    },
                    &opts,
                );
                assert_eq!(got, expect, "strategy {strategy:?} radius {radius}");
            }
        }
    }

    fn queries_near(
        data: &[PdqHash],
        seed: u64,
        count: usize,
        variants: usize,
    ) -> Vec<Vec<PdqHash>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..count)
            .map(|i| {
                (0..variants)
                    .map(|_| {
                        if i % 3 == 0 || data.is_empty() {
                            rand_hash(&mut rng)
                        } else {
                            let base = data[rng.gen_range(0..data.len())];
                            let k = rng.gen_range(0..70);
                            flip(base, k, &mut rng)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn mih_equals_brute_force_random(seed in any::<u64>(), n in 0usize..3000, m in 11usize..20, variants in 1usize..3) {
            let data = dataset(seed, n, 0, 0);
            let (idx, distinct) = index_of(&data, m);
            let qs = queries_near(&distinct, seed ^ 1, 12, variants);
            for r in [0, 31, 64] {
                check_all(&idx, &distinct, &qs, r);
            }
        }

        #[test]
        fn mih_equals_brute_force_clustered(seed in any::<u64>(), n in 1usize..3000, centres in 1usize..6, spread in 0usize..48, m in 11usize..16) {
            let data = dataset(seed, n, centres, spread);
            let (idx, distinct) = index_of(&data, m);
            let qs = queries_near(&distinct, seed ^ 2, 12, 1);
            for r in [0, 31, 64] {
                check_all(&idx, &distinct, &qs, r);
            }
            // Dihedral-style: 8 variants, some near members.
            let qs8 = queries_near(&distinct, seed ^ 3, 4, 8);
            check_all(&idx, &distinct, &qs8, 31);
        }
    }

    #[test]
    fn exact_member_found_at_radius_zero_and_every_radius_edge() {
        let data = dataset(7, 5000, 0, 0);
        let (idx, distinct) = index_of(&data, 11);
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        for d in [0usize, 1, 30, 31, 32, 63, 64, 65] {
            let q = flip(distinct[17], d, &mut rng);
            for r in [0u32, 31, 64] {
                check_all(&idx, &distinct, &[vec![q]], r);
                let got = idx.search(
                    &Query {
                        hashes: &[q],
                        quality: None,
                    },
                    &SearchOptions {
                        radius: r,
                        strategy: Strategy::Mih,
                        ..Default::default()
                    },
                );
                assert_eq!(got.iter().any(|m| m.id == 17), d as u32 <= r);
            }
        }
    }

    #[test]
    fn quality_filters_query_and_entries() {
        let mut b = crate::hashlist::HashListBuilder::new();
        let h = PdqHash([0x5a; 32]);
        let g = flip(h, 3, &mut rand::rngs::StdRng::seed_from_u64(1));
        b.add(h, Some(40), ["low"]).unwrap();
        b.add(g, None, ["unknown"]).unwrap();
        let idx = Index::build(b.finish(), IndexOptions::default()).unwrap();
        let q = |quality| Query {
            hashes: std::slice::from_ref(&h),
            quality,
        };
        let ids = |v: Vec<Match>| v.into_iter().map(|m| m.id).collect::<Vec<_>>();
        let opts = SearchOptions::default();
        assert_eq!(
            ids(idx.search(&q(None), &opts)),
            vec![1],
            "entry of quality 40 excluded"
        );
        assert_eq!(
            ids(idx.search(&q(Some(49)), &opts)),
            Vec::<u32>::new(),
            "low-quality query"
        );
        assert_eq!(ids(idx.search(&q(Some(50)), &opts)), vec![1]);
        let keep = SearchOptions {
            filter_list_quality: false,
            ..opts
        };
        assert_eq!(ids(idx.search(&q(Some(90)), &keep)), vec![0, 1]);
        let lower = SearchOptions {
            min_quality: 40,
            ..opts
        };
        assert_eq!(ids(idx.search(&q(Some(40)), &lower)), vec![0, 1]);
    }

    #[test]
    fn auto_scans_at_large_radius_and_uses_mih_at_31_on_large_lists() {
        let data = dataset(9, 200_000, 0, 0);
        let (idx, _) = index_of(&data, 11);
        assert_eq!(idx.choose(31, 1), Strategy::Mih);
        assert_eq!(idx.choose(128, 1), Strategy::Scan);
        let small = Index::build(
            HashList::from_hashes(data[..10].iter().copied()).unwrap(),
            IndexOptions::default(),
        )
        .unwrap();
        assert_eq!(small.substrings(), 0);
        assert_eq!(small.choose(31, 1), Strategy::Scan);
    }

    #[test]
    fn batch_matches_single_and_bad_options_rejected() {
        let data = dataset(11, 4000, 3, 20);
        let (idx, distinct) = index_of(&data, 12);
        let qs = queries_near(&distinct, 12, 20, 1);
        let queries: Vec<Query<'_>> = qs
            .iter()
            .map(|h| Query {
                hashes: h,
                quality: None,
            })
            .collect();
        let opts = SearchOptions::default();
        let batch = idx.search_batch(&queries, &opts);
        for (q, got) in queries.iter().zip(&batch) {
            assert_eq!(got, &idx.search(q, &opts));
        }
        assert!(batch.iter().any(|r| !r.is_empty()));
        let err = Index::build(
            HashList::default(),
            IndexOptions {
                substrings: Some(3),
                ..Default::default()
            },
        );
        assert_eq!(err.unwrap_err(), IndexError::Substrings(3));
        let empty = Index::build(HashList::default(), IndexOptions::default()).unwrap();
        assert!(empty.search(&queries[0], &opts).is_empty());
    }

    #[test]
    fn extract_and_masks_agree() {
        let h = rand_hash(&mut rand::rngs::StdRng::seed_from_u64(3));
        let w = h.words();
        for (start, len) in [(0, 24), (40, 24), (60, 23), (233, 23), (250, 6)] {
            let v = extract(&w, start, len);
            for i in 0..len {
                let bit = start + i; // bit 0 = MSB of the hex text = reference bit 255
                let expect = h.bit(255 - bit as usize);
                assert_eq!((v >> (len - 1 - i)) & 1 == 1, expect);
            }
            assert_eq!(
                masked_weight(&w, &substring_mask(start, len)),
                v.count_ones()
            );
        }
    }
}
