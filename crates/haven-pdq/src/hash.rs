//! PDQ hashing of decoded RGB pixels, bit-exact with Meta's reference core.
//!
//! The pipeline is the reference's (see the crate docs for why each detail matters): luma, a
//! two-pass Jarosz (box) filter at full resolution, decimation to 64×64, the quality metric on
//! that 64×64 buffer, a 16×64 · 64×64 · 64×16 partial DCT, and one bit per coefficient that is
//! above the lower median.
//!
//! What differs from the reference is only the *schedule*, never the arithmetic: every f32
//! running sum sees exactly the same additions, subtractions and divisions in the same order, so
//! results are identical, but
//!
//! - luma and the first horizontal box pass run on blocks of eight rows held lane-interleaved
//!   (`[x][row]`), so the serial running sums of eight rows advance together in one SIMD
//!   register instead of one latency-bound chain per row;
//! - the vertical passes run row by row over whole rows (vectorised across columns) from a ring
//!   buffer of `window + 9` rows, so the full-resolution float image is never materialised and
//!   nothing walks memory column-wise;
//! - the second pair of passes divides only where decimation samples: the second horizontal pass
//!   keeps its running sums everywhere but divides only at the 64 sampled columns, and the
//!   second vertical pass is run only for those 64 columns and divides only at the 64 sampled
//!   rows.

use std::sync::LazyLock;

use crate::PdqHash;

/// Images with fewer rows or columns than this hash to all zeros with quality 0, as in the
/// reference.
pub const MIN_HASHABLE_DIM: usize = 5;

/// A PDQ hash with its quality score (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PdqResult {
    /// The 256-bit hash.
    pub hash: PdqHash,
    /// The reference's image-domain quality metric, 0 to 100.
    pub quality: u8,
}

/// The eight dihedral transformations, in the reference's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dihedral {
    /// The image as given.
    Original,
    /// Rotated 90°.
    Rotate90,
    /// Rotated 180°.
    Rotate180,
    /// Rotated 270°.
    Rotate270,
    /// Mirrored about the horizontal axis.
    FlipX,
    /// Mirrored about the vertical axis.
    FlipY,
    /// Transposed about the main diagonal.
    FlipPlus1,
    /// Transposed about the anti-diagonal.
    FlipMinus1,
}

impl Dihedral {
    /// All eight, in the reference's order (the order of [`DihedralResult::hashes`]).
    pub const ALL: [Dihedral; 8] = [
        Dihedral::Original,
        Dihedral::Rotate90,
        Dihedral::Rotate180,
        Dihedral::Rotate270,
        Dihedral::FlipX,
        Dihedral::FlipY,
        Dihedral::FlipPlus1,
        Dihedral::FlipMinus1,
    ];

    /// The name used in the test vectors and in `haven hash --dihedral` output.
    pub fn name(self) -> &'static str {
        match self {
            Dihedral::Original => "original",
            Dihedral::Rotate90 => "rotate90",
            Dihedral::Rotate180 => "rotate180",
            Dihedral::Rotate270 => "rotate270",
            Dihedral::FlipX => "flipx",
            Dihedral::FlipY => "flipy",
            Dihedral::FlipPlus1 => "flip_plus1",
            Dihedral::FlipMinus1 => "flip_minus1",
        }
    }

    /// Maps a DCT coefficient `a[i][j]` of the original to `(row, col, negate)` in this
    /// variant's coefficient matrix (the reference's `dct16OriginalTo*`).
    fn map(self, i: usize, j: usize) -> (usize, usize, bool) {
        let odd = |n: usize| n & 1 == 1;
        match self {
            Dihedral::Original => (i, j, false),
            Dihedral::Rotate90 => (j, i, !odd(j)),
            Dihedral::Rotate180 => (i, j, odd(i + j)),
            Dihedral::Rotate270 => (j, i, !odd(i)),
            Dihedral::FlipX => (i, j, !odd(i)),
            Dihedral::FlipY => (i, j, !odd(j)),
            Dihedral::FlipPlus1 => (j, i, false),
            Dihedral::FlipMinus1 => (j, i, odd(i + j)),
        }
    }
}

/// The eight dihedral hashes of one image, from one DCT, with the shared quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DihedralResult {
    /// Hashes in the order of [`Dihedral::ALL`].
    pub hashes: [PdqHash; 8],
    /// Quality of the image (the same for every variant).
    pub quality: u8,
}

impl DihedralResult {
    /// The hash of one variant.
    pub fn get(&self, variant: Dihedral) -> PdqHash {
        let i = Dihedral::ALL
            .iter()
            .position(|v| *v == variant)
            .unwrap_or(0);
        self.hashes.get(i).copied().unwrap_or(PdqHash::ZERO)
    }

    /// `(variant, hash)` pairs in the reference's order.
    pub fn iter(&self) -> impl Iterator<Item = (Dihedral, PdqHash)> + '_ {
        Dihedral::ALL.into_iter().zip(self.hashes.iter().copied())
    }
}

/// Why a pixel buffer cannot be viewed as an RGB image (a caller error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelBufferError {
    /// `width × height × 3` overflows `usize`.
    #[error("image dimensions {width}x{height} overflow")]
    Overflow {
        /// Claimed width.
        width: usize,
        /// Claimed height.
        height: usize,
    },
    /// The buffer is not `width × height × 3` bytes long.
    #[error("RGB buffer for {width}x{height} must be {expected} bytes, got {actual}")]
    Length {
        /// Claimed width.
        width: usize,
        /// Claimed height.
        height: usize,
        /// `width × height × 3`.
        expected: usize,
        /// Actual length.
        actual: usize,
    },
}

/// A borrowed, row-major, 8-bit RGB image (3 bytes per pixel, no padding).
#[derive(Debug, Clone, Copy)]
pub struct RgbView<'a> {
    width: usize,
    height: usize,
    pixels: &'a [u8],
}

impl<'a> RgbView<'a> {
    /// Checks that `pixels` holds exactly `width × height` RGB pixels.
    pub fn new(width: usize, height: usize, pixels: &'a [u8]) -> Result<Self, PixelBufferError> {
        let expected = width
            .checked_mul(height)
            .and_then(|n| n.checked_mul(3))
            .ok_or(PixelBufferError::Overflow { width, height })?;
        if pixels.len() != expected {
            return Err(PixelBufferError::Length {
                width,
                height,
                expected,
                actual: pixels.len(),
            });
        }
        Ok(RgbView {
            width,
            height,
            pixels,
        })
    }

    /// For buffers whose length the crate itself guarantees; falls back to an empty (0×0)
    /// image rather than panicking if that guarantee were ever broken.
    pub(crate) fn new_trusted(width: usize, height: usize, pixels: &'a [u8]) -> Self {
        match RgbView::new(width, height, pixels) {
            Ok(v) => v,
            Err(_) => RgbView {
                width: 0,
                height: 0,
                pixels: &[],
            },
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The raw RGB bytes.
    pub fn pixels(&self) -> &'a [u8] {
        self.pixels
    }
}

/// PDQ hash and quality of an RGB image, as the reference's `pdqHash256FromFloatLuma`.
///
/// Like the reference, an image of exactly 64×64 pixels is used as the 64×64 buffer directly,
/// without the box filter.
pub fn hash_rgb(img: RgbView<'_>) -> PdqResult {
    match dct_of(img, false) {
        None => PdqResult {
            hash: PdqHash::ZERO,
            quality: 0,
        },
        Some((dct, quality)) => PdqResult {
            hash: bits_of(&dct, Dihedral::Original),
            quality,
        },
    }
}

/// The eight dihedral hashes from one DCT, as the reference's
/// `pdqDihedralHash256esFromFloatLuma` (which always filters, even a 64×64 image).
pub fn hash_rgb_dihedral(img: RgbView<'_>) -> DihedralResult {
    match dct_of(img, true) {
        None => DihedralResult {
            hashes: [PdqHash::ZERO; 8],
            quality: 0,
        },
        Some((dct, quality)) => DihedralResult {
            hashes: Dihedral::ALL.map(|v| bits_of(&dct, v)),
            quality,
        },
    }
}

type Buf64 = [[f32; 64]; 64];
type Buf16 = [[f32; 16]; 16];

/// Downsample, quality and DCT; `None` for images too small to hash.
fn dct_of(img: RgbView<'_>, always_filter: bool) -> Option<(Buf16, u8)> {
    if img.width < MIN_HASHABLE_DIM || img.height < MIN_HASHABLE_DIM {
        return None;
    }
    let mut buf = [[0f32; 64]; 64];
    if img.width == 64 && img.height == 64 && !always_filter {
        for (row, px) in buf.iter_mut().zip(img.pixels.chunks_exact(64 * 3)) {
            for (v, p) in row.iter_mut().zip(px.chunks_exact(3)) {
                *v = luma(p);
            }
        }
    } else {
        downsample(img, &mut buf);
    }
    let quality = quality_of(&buf);
    Some((dct64_to_16(&buf), quality))
}

// ---------------------------------------------------------------------------------------------
// Luma

/// `x * coefficient` in f64 for every byte value and each of R, G, B.
static LUMA_LUT: LazyLock<[[f64; 256]; 3]> = LazyLock::new(|| {
    let coeff = [0.299f64, 0.587, 0.114];
    let mut t = [[0f64; 256]; 3];
    for (table, c) in t.iter_mut().zip(coeff) {
        for (v, slot) in table.iter_mut().enumerate() {
            *slot = v as f64 * c;
        }
    }
    t
});

/// Luma as the `pdqhash` binding computes it: `R*0.299 + G*0.587 + B*0.114` in f64, summed
/// left to right, then rounded to f32.
#[inline]
#[allow(clippy::indexing_slicing)] // a u8 index into a 256-entry table cannot be out of range
fn luma(p: &[u8]) -> f32 {
    let [lr, lg, lb] = &*LUMA_LUT;
    match p {
        [r, g, b, ..] => (lr[usize::from(*r)] + lg[usize::from(*g)] + lb[usize::from(*b)]) as f32,
        _ => 0.0,
    }
}

// ---------------------------------------------------------------------------------------------
// The box filter

/// One 1-D box (the reference's `box1DFloat`) over a sequence of `len` values with window
/// `win`. For output `o` the reference first adds `in[o + half - 1]` (while it exists), then
/// subtracts `in[o - lead]` (once the window is full), then writes `sum / count`.
#[derive(Debug, Clone, Copy)]
struct BoxPlan {
    len: usize,
    win: usize,
    half: usize,
    /// Outputs written before the first subtraction (`win - half + 1`).
    lead: usize,
}

impl BoxPlan {
    fn new(len: usize, win: usize) -> BoxPlan {
        let half = (win + 2) / 2;
        BoxPlan {
            len,
            win,
            half,
            lead: win + 1 - half,
        }
    }

    /// `(add, sub, count)` for output `o`.
    fn step(&self, o: usize) -> (Option<usize>, Option<usize>, f32) {
        if o < self.lead {
            (Some(o + self.half - 1), None, (o + self.half) as f32)
        } else if o + self.half <= self.len {
            (
                Some(o + self.half - 1),
                Some(o - self.lead),
                self.win as f32,
            )
        } else {
            let shrink = o + self.half - self.len;
            (None, Some(o - self.lead), (self.win - shrink) as f32)
        }
    }
}

/// The reference's window size: `ceil(old / (2 * new))` for a 64-wide output.
fn window(dim: usize) -> usize {
    dim.div_ceil(128)
}

/// Rows per lane-interleaved block.
const LANES: usize = 8;
/// Columns per tile when interleaving rows into lanes (8 KiB of `[f32; 8]`).
const TILE: usize = 256;
type Lanes = [f32; LANES];

#[inline(always)]
fn add_lanes(s: &mut Lanes, v: &Lanes) {
    for (a, b) in s.iter_mut().zip(v) {
        *a += b;
    }
}

#[inline(always)]
fn sub_lanes(s: &mut Lanes, v: &Lanes) {
    for (a, b) in s.iter_mut().zip(v) {
        *a -= b;
    }
}

#[inline(always)]
fn div_lanes(s: &Lanes, c: f32) -> Lanes {
    let mut out = [0f32; LANES];
    for (o, a) in out.iter_mut().zip(s) {
        *o = a / c;
    }
    out
}

/// The 1-D box along `x` for eight rows at once (lanes are rows). With `DIVIDE` it writes the
/// box averages; without, the running sums (the caller divides where it samples).
fn box_lanes<const DIVIDE: bool>(input: &[Lanes], out: &mut [Lanes], plan: BoxPlan) {
    let BoxPlan {
        len,
        win,
        half,
        lead,
    } = plan;
    // Each phase below is a zip over sub-slices obtained with `get`, so no index can be out of
    // range; the ranges are the reference's four phases (half ≥ 1, lead ≥ 1, win ≤ len).
    let (Some(input), Some(out)) = (input.get(..len), out.get_mut(..len)) else {
        return;
    };
    let mut s = [0f32; LANES];
    for v in input.iter().take(half - 1) {
        add_lanes(&mut s, v);
    }
    let emit = |s: &Lanes, c: f32| if DIVIDE { div_lanes(s, c) } else { *s };
    // Phase 2: grow the window.
    let adds = input.get(half - 1..).unwrap_or(&[]);
    for (o, (slot, a)) in out.iter_mut().zip(adds).take(lead).enumerate() {
        add_lanes(&mut s, a);
        *slot = emit(&s, (o + half) as f32);
    }
    // Phase 3: full window.
    let c = win as f32;
    let out3 = out.get_mut(lead..len + 1 - half).unwrap_or(&mut []);
    let adds3 = input.get(win..).unwrap_or(&[]);
    for ((slot, a), b) in out3.iter_mut().zip(adds3).zip(input) {
        add_lanes(&mut s, a);
        sub_lanes(&mut s, b);
        *slot = emit(&s, c);
    }
    // Phase 4: shrink the window.
    let out4 = out.get_mut(len + 1 - half..).unwrap_or(&mut []);
    let subs4 = input.get(len - win..).unwrap_or(&[]);
    for (k, (slot, b)) in out4.iter_mut().zip(subs4).enumerate() {
        sub_lanes(&mut s, b);
        *slot = emit(&s, (win - 1 - k) as f32);
    }
}

/// Sampling positions of the reference's `decimateFloat`: `(int)(((k + 0.5) * n) / 64)`.
fn sample_positions(n: usize) -> [usize; 64] {
    let mut out = [0usize; 64];
    for (k, slot) in out.iter_mut().enumerate() {
        *slot = (((k as f64 + 0.5) * n as f64) / 64.0) as usize;
    }
    out
}

/// Blur (two Jarosz passes) and decimate to 64×64, streaming (see the module docs).
#[allow(clippy::indexing_slicing)]
fn downsample(img: RgbView<'_>, buf: &mut Buf64) {
    // Index bounds: rows are produced into `ring` at `y % ring_rows` for y < h; `BoxPlan::step`
    // yields indices < its `len` (h here); every row slice is `w` long and `w * 3` bytes of
    // pixels exist per row (RgbView's invariant); sampled positions are < their dimension
    // because (k + 0.5) / 64 < 1.
    let (w, h) = (img.width, img.height);
    let row_plan = BoxPlan::new(w, window(w));
    let col_plan = BoxPlan::new(h, window(h));
    let cols = sample_positions(w);
    let rows = sample_positions(h);

    // First horizontal pass output, by row, in a ring of enough rows for the vertical window
    // plus one block being produced.
    let ring_rows = col_plan.win + LANES + 1;
    let mut ring = vec![0f32; ring_rows * w];
    let mut luma_block = vec![[0f32; LANES]; w];
    let mut p1_block = vec![[0f32; LANES]; w];
    let mut produced = 0usize; // rows of the first pass available in `ring`

    let mut produce_block = |start: usize, ring: &mut [f32]| {
        let n = LANES.min(h - start);
        // Lane-interleaving is done in column tiles small enough to stay in L1 while the eight
        // rows are written into them.
        for x0 in (0..w).step_by(TILE) {
            let x1 = (x0 + TILE).min(w);
            for lane in 0..n {
                let y = start + lane;
                let px = &img.pixels[(y * w + x0) * 3..(y * w + x1) * 3];
                for (slot, p) in luma_block[x0..x1].iter_mut().zip(px.chunks_exact(3)) {
                    slot[lane] = luma(p);
                }
            }
        }
        box_lanes::<true>(&luma_block, &mut p1_block, row_plan);
        for x0 in (0..w).step_by(TILE) {
            let x1 = (x0 + TILE).min(w);
            for lane in 0..n {
                let r = (start + lane) % ring_rows;
                let dst = &mut ring[r * w + x0..r * w + x1];
                for (d, v) in dst.iter_mut().zip(&p1_block[x0..x1]) {
                    *d = v[lane];
                }
            }
        }
        start + n
    };

    // First vertical pass, row by row; its rows go lane-interleaved into `q1_block`, and each
    // full block runs the second horizontal pass (sums only) then divides at sampled columns.
    let mut col_sum = vec![0f32; w];
    let mut q1_rows = vec![0f32; LANES * w];
    let mut q1_block = vec![[0f32; LANES]; w];
    let mut p2_sums = vec![[0f32; LANES]; w];
    let mut p2 = vec![[0f32; 64]; h]; // second horizontal pass at the sampled columns

    let mut ensure = |upto: usize, produced: &mut usize, ring: &mut [f32]| {
        while *produced <= upto {
            *produced = produce_block(*produced, ring);
        }
    };

    for y in 0..col_plan.half - 1 {
        ensure(y, &mut produced, &mut ring);
        let src = &ring[(y % ring_rows) * w..(y % ring_rows + 1) * w];
        for (s, v) in col_sum.iter_mut().zip(src) {
            *s += v;
        }
    }
    for o in 0..h {
        let (add, sub, count) = col_plan.step(o);
        if let Some(a) = add {
            ensure(a, &mut produced, &mut ring);
        }
        let row = |y: usize| &ring[(y % ring_rows) * w..(y % ring_rows + 1) * w];
        let lane = o % LANES;
        let q_out = &mut q1_rows[lane * w..(lane + 1) * w];
        // One pass per output row: add, then subtract, then divide, per column (the reference's
        // order for each column's running sum).
        match (add, sub) {
            (Some(a), Some(b)) => {
                for (((s, q), va), vb) in col_sum.iter_mut().zip(q_out).zip(row(a)).zip(row(b)) {
                    *s += va;
                    *s -= vb;
                    *q = *s / count;
                }
            }
            (Some(a), None) => {
                for ((s, q), va) in col_sum.iter_mut().zip(q_out).zip(row(a)) {
                    *s += va;
                    *q = *s / count;
                }
            }
            (None, Some(b)) => {
                for ((s, q), vb) in col_sum.iter_mut().zip(q_out).zip(row(b)) {
                    *s -= vb;
                    *q = *s / count;
                }
            }
            (None, None) => {
                for (s, q) in col_sum.iter().zip(q_out) {
                    *q = s / count;
                }
            }
        }
        if lane == LANES - 1 || o == h - 1 {
            for x0 in (0..w).step_by(TILE) {
                let x1 = (x0 + TILE).min(w);
                for l in 0..=lane {
                    let src = &q1_rows[l * w + x0..l * w + x1];
                    for (d, q) in q1_block[x0..x1].iter_mut().zip(src) {
                        d[l] = *q;
                    }
                }
            }
            box_lanes::<false>(&q1_block, &mut p2_sums, row_plan);
            let start = o - lane;
            for (c, &x) in cols.iter().enumerate() {
                let (_, _, cnt) = row_plan.step(x);
                let sums = &p2_sums[x];
                for l in 0..=lane {
                    p2[start + l][c] = sums[l] / cnt;
                }
            }
        }
    }

    // Second vertical pass, only for the sampled columns, dividing only at sampled rows.
    let mut s64 = [0f32; 64];
    for src in p2.iter().take(col_plan.half - 1) {
        for (s, v) in s64.iter_mut().zip(src) {
            *s += v;
        }
    }
    let mut next = 0usize;
    for o in 0..h {
        let (add, sub, count) = col_plan.step(o);
        if let Some(a) = add {
            for (s, v) in s64.iter_mut().zip(&p2[a]) {
                *s += v;
            }
        }
        if let Some(b) = sub {
            for (s, v) in s64.iter_mut().zip(&p2[b]) {
                *s -= v;
            }
        }
        while next < 64 && rows[next] == o {
            for (d, s) in buf[next].iter_mut().zip(&s64) {
                *d = s / count;
            }
            next += 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Quality, DCT, bits

/// The reference's `pdqImageDomainQualityMetric`: the sum of quantised vertical and horizontal
/// gradients of the 64×64 buffer, divided by 90, capped at 100.
fn quality_of(buf: &Buf64) -> u8 {
    let grad = |u: f32, v: f32| -> i32 { (((u - v) * 100.0) / 255.0) as i32 };
    let mut sum: i32 = 0;
    for (r0, r1) in buf.iter().zip(buf.iter().skip(1)) {
        for (u, v) in r0.iter().zip(r1) {
            sum += grad(*u, *v).abs();
        }
    }
    for row in buf {
        for (u, v) in row.iter().zip(row.iter().skip(1)) {
            sum += grad(*u, *v).abs();
        }
    }
    u8::try_from((sum / 90).min(100)).unwrap_or(100)
}

/// The 16×64 DCT matrix, as the reference builds it (float scale factor, cosine in double,
/// product rounded to float), and its transpose.
struct DctMatrix {
    d: [[f32; 64]; 16],
    dt: [[f32; 16]; 64],
}

static DCT: LazyLock<DctMatrix> = LazyLock::new(|| {
    let scale = (2.0f64 / 64.0).sqrt() as f32;
    let mut d = [[0f32; 64]; 16];
    let mut dt = [[0f32; 16]; 64];
    for (i, row) in d.iter_mut().enumerate() {
        for (j, slot) in row.iter_mut().enumerate() {
            let arg = (std::f64::consts::PI / 2.0 / 64.0) * (i + 1) as f64 * (2 * j + 1) as f64;
            *slot = (f64::from(scale) * arg.cos()) as f32;
        }
    }
    for (i, row) in d.iter().enumerate() {
        for (j, v) in row.iter().enumerate() {
            if let Some(slot) = dt.get_mut(j).and_then(|r| r.get_mut(i)) {
                *slot = *v;
            }
        }
    }
    DctMatrix { d, dt }
});

/// `B = D A Dᵀ`, each output accumulated in f32 over k = 0..63 in order, as the reference does
/// (vectorised across the output row, which keeps every element's summation order).
fn dct64_to_16(a: &Buf64) -> Buf16 {
    let m = &*DCT;
    let mut t = [[0f32; 64]; 16];
    for (t_row, d_row) in t.iter_mut().zip(&m.d) {
        for (dk, a_row) in d_row.iter().zip(a) {
            for (tv, av) in t_row.iter_mut().zip(a_row) {
                *tv += dk * av;
            }
        }
    }
    let mut b = [[0f32; 16]; 16];
    for (b_row, t_row) in b.iter_mut().zip(&t) {
        for (tk, dt_row) in t_row.iter().zip(&m.dt) {
            for (bv, dv) in b_row.iter_mut().zip(dt_row) {
                *bv += tk * dv;
            }
        }
    }
    b
}

/// One bit per coefficient of the variant: set when above the lower median (the 128th smallest
/// of 256, which is what the reference's Torben median returns).
fn bits_of(dct: &Buf16, variant: Dihedral) -> PdqHash {
    let mut m = [[0f32; 16]; 16];
    for (i, row) in dct.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (r, c, neg) = variant.map(i, j);
            if let Some(slot) = m.get_mut(r).and_then(|row| row.get_mut(c)) {
                *slot = if neg { -v } else { v };
            }
        }
    }
    let mut flat = [0f32; 256];
    for (slot, v) in flat.iter_mut().zip(m.iter().flatten()) {
        *slot = *v;
    }
    let mut sorted = flat;
    let (_, median, _) = sorted.select_nth_unstable_by(127, f32::total_cmp);
    let median = *median;
    let mut hash = PdqHash::ZERO;
    for (k, v) in flat.iter().enumerate() {
        if *v > median {
            hash.set_bit(k);
        }
    }
    hash
}

#[cfg(test)]
#[allow(clippy::needless_range_loop)] // the oracle transcribes the reference's index loops
mod tests {
    //! The fast schedule checked against a direct transcription of the reference's loops.
    use super::*;
    use proptest::prelude::*;

    /// The reference's `box1DFloat`, transcribed loop for loop.
    fn box1d(input: &[f32], out: &mut [f32], len: usize, stride: usize, win: usize) {
        let half = (win + 2) / 2;
        let (p1, p2, p3, p4) = (half - 1, win - half + 1, len - win, half - 1);
        let (mut li, mut ri, mut oi) = (0, 0, 0);
        let mut sum = 0f32;
        let mut cur = 0usize;
        for _ in 0..p1 {
            sum += input[ri];
            cur += 1;
            ri += stride;
        }
        for _ in 0..p2 {
            sum += input[ri];
            cur += 1;
            out[oi] = sum / cur as f32;
            ri += stride;
            oi += stride;
        }
        for _ in 0..p3 {
            sum += input[ri];
            sum -= input[li];
            out[oi] = sum / cur as f32;
            li += stride;
            ri += stride;
            oi += stride;
        }
        for _ in 0..p4 {
            sum -= input[li];
            cur -= 1;
            out[oi] = sum / cur as f32;
            li += stride;
            oi += stride;
        }
    }

    fn reference_downsample(img: RgbView<'_>) -> Buf64 {
        let (w, h) = (img.width, img.height);
        let mut b1: Vec<f32> = img.pixels.chunks_exact(3).map(luma).collect();
        let mut b2 = vec![0f32; w * h];
        let (wr, wc) = (window(w), window(h));
        for _ in 0..2 {
            for y in 0..h {
                box1d(&b1[y * w..], &mut b2[y * w..], w, 1, wr);
            }
            for x in 0..w {
                box1d(&b2[x..], &mut b1[x..], h, w, wc);
            }
        }
        let mut out = [[0f32; 64]; 64];
        for i in 0..64 {
            let ii = (((i as f64 + 0.5) * h as f64) / 64.0) as usize;
            for j in 0..64 {
                let jj = (((j as f64 + 0.5) * w as f64) / 64.0) as usize;
                out[i][j] = b1[ii * w + jj];
            }
        }
        out
    }

    fn reference_dct(a: &Buf64) -> Buf16 {
        let d = &DCT.d;
        let mut t = [[0f32; 64]; 16];
        for i in 0..16 {
            for j in 0..64 {
                let mut s = 0f32;
                for k in 0..64 {
                    s += d[i][k] * a[k][j];
                }
                t[i][j] = s;
            }
        }
        let mut b = [[0f32; 16]; 16];
        for i in 0..16 {
            for j in 0..16 {
                let mut s = 0f32;
                for k in 0..64 {
                    s += t[i][k] * d[j][k];
                }
                b[i][j] = s;
            }
        }
        b
    }

    /// Devillard's Torben median as the reference has it.
    fn torben(m: &[f32]) -> f32 {
        let n = m.len();
        let (mut min, mut max) = (m[0], m[0]);
        for &v in m {
            min = min.min(v);
            max = max.max(v);
        }
        loop {
            let guess = (min + max) / 2.0;
            let (mut less, mut greater, mut equal) = (0, 0, 0);
            let (mut maxlt, mut mingt) = (min, max);
            for &v in m {
                if v < guess {
                    less += 1;
                    if v > maxlt {
                        maxlt = v;
                    }
                } else if v > guess {
                    greater += 1;
                    if v < mingt {
                        mingt = v;
                    }
                } else {
                    equal += 1;
                }
            }
            if less <= n.div_ceil(2) && greater <= n.div_ceil(2) {
                return if less >= n.div_ceil(2) {
                    maxlt
                } else if less + equal >= n.div_ceil(2) {
                    guess
                } else {
                    mingt
                };
            } else if less > greater {
                max = maxlt;
            } else {
                min = mingt;
            }
        }
    }

    fn image(w: usize, h: usize, seed: u64, smooth: bool) -> Vec<u8> {
        let mut x = seed | 1;
        let mut v = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for c in 0..w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if smooth {
                    let base = ((c * 7 + y * 3) % 256) as u8;
                    v.extend([base, base.wrapping_add((x % 8) as u8), (y % 256) as u8]);
                } else {
                    v.extend([(x >> 8) as u8, (x >> 16) as u8, (x >> 24) as u8]);
                }
            }
        }
        v
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn fast_downsample_matches_reference_loops(
            w in 5usize..400, h in 5usize..400, seed: u64, smooth: bool,
        ) {
            let px = image(w, h, seed, smooth);
            let img = RgbView::new(w, h, &px).unwrap();
            let mut fast = [[0f32; 64]; 64];
            downsample(img, &mut fast);
            let slow = reference_downsample(img);
            for i in 0..64 {
                for j in 0..64 {
                    prop_assert_eq!(fast[i][j].to_bits(), slow[i][j].to_bits(), "at {},{}", i, j);
                }
            }
        }

        #[test]
        fn fast_dct_and_median_match_reference(seed: u64) {
            let px = image(64, 64, seed, false);
            let mut a = [[0f32; 64]; 64];
            for (k, p) in px.chunks_exact(3).enumerate() {
                a[k / 64][k % 64] = luma(p);
            }
            let fast = dct64_to_16(&a);
            let slow = reference_dct(&a);
            for i in 0..16 {
                for j in 0..16 {
                    prop_assert_eq!(fast[i][j].to_bits(), slow[i][j].to_bits());
                }
            }
            let flat: Vec<f32> = slow.iter().flatten().copied().collect();
            let mut sorted = flat.clone();
            sorted.sort_by(f32::total_cmp);
            prop_assert_eq!(torben(&flat), sorted[127]);
        }
    }

    #[test]
    fn large_window_sizes_match_reference_loops() {
        // Windows of several sizes in both directions, including a dimension equal to a multiple
        // of 128 and tall/narrow shapes.
        for &(w, h) in &[(1030, 7), (7, 1030), (640, 257), (129, 900), (256, 256)] {
            let px = image(w, h, (w * h) as u64, true);
            let img = RgbView::new(w, h, &px).unwrap();
            let mut fast = [[0f32; 64]; 64];
            downsample(img, &mut fast);
            let slow = reference_downsample(img);
            assert_eq!(fast, slow, "{w}x{h}");
        }
    }

    #[test]
    fn tiny_images_hash_to_zero() {
        for &(w, h) in &[(0, 0), (4, 100), (100, 4), (1, 1), (4, 4)] {
            let px = image(w, h, 7, false);
            let img = RgbView::new(w, h, &px).unwrap();
            let r = hash_rgb(img);
            assert_eq!(r.hash, PdqHash::ZERO);
            assert_eq!(r.quality, 0);
            let d = hash_rgb_dihedral(img);
            assert_eq!(d.hashes, [PdqHash::ZERO; 8]);
            assert_eq!(d.quality, 0);
        }
        // 5x5 is hashable.
        let px = image(5, 5, 7, false);
        assert_ne!(
            hash_rgb(RgbView::new(5, 5, &px).unwrap()).hash,
            PdqHash::ZERO
        );
    }

    #[test]
    fn buffer_length_is_checked() {
        assert!(matches!(
            RgbView::new(2, 2, &[0; 11]),
            Err(PixelBufferError::Length {
                expected: 12,
                actual: 11,
                ..
            })
        ));
        assert!(matches!(
            RgbView::new(usize::MAX, 2, &[]),
            Err(PixelBufferError::Overflow { .. })
        ));
    }

    #[test]
    fn dihedral_original_equals_plain_hash_and_variants_differ() {
        let px = image(120, 90, 3, false);
        let img = RgbView::new(120, 90, &px).unwrap();
        let d = hash_rgb_dihedral(img);
        let p = hash_rgb(img);
        assert_eq!(d.get(Dihedral::Original), p.hash);
        assert_eq!(d.quality, p.quality);
        for v in &Dihedral::ALL[1..] {
            assert_ne!(d.get(*v), p.hash, "{v:?}");
        }
    }
}
