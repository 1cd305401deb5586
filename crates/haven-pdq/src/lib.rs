//! PDQ perceptual hashing and exact Hamming-range matching.
//!
//! PDQ is the 256-bit image hash that hash-sharing programmes for known abuse imagery exchange,
//! so Haven computes it exactly as Meta's reference core (facebook/ThreatExchange, `pdq/cpp/`)
//! does, on the RGB pixels a decoder yields. Modules: [`decode`] turns untrusted files into RGB
//! with limits checked before decoding; [`hash`] is the hasher (plain and the eight dihedral
//! variants from one DCT); `index` and `hashlist` hold matching and hash lists. No I/O happens
//! here beyond reading the file a caller names.
//!
//! # What bit-exactness depends on
//!
//! Each bit compares a DCT coefficient with the median coefficient, so any arithmetic
//! difference, however small, can flip a bit whose coefficient sits near the median. Every step
//! below therefore reproduces the reference's floating-point operations one for one:
//!
//! - **Luma.** The canonical values (and the test vectors) come from the `pdqhash` Python
//!   binding, which computes `R*0.299 + G*0.587 + B*0.114` in *f64* (NumPy promotes the `u8`
//!   array), adds left to right and only then rounds to f32. The C++ core's own RGB path does
//!   the same sum in f32 and gives different low bits; we follow the binding.
//! - **Box filter.** Two passes of horizontal-then-vertical running-sum box filters (Jarosz),
//!   window `ceil(dim / 128)` per axis (the row window comes from the width, the column window
//!   from the height), in f32, in the reference's four phases: the window grows from
//!   `half = (w + 2) / 2` elements, then `sum += in[right]` *before* `sum -= in[left]`, then
//!   shrinks, each output being `sum / count` by true division. A running sum's rounding
//!   depends on its whole history, so the order of adds and subtracts along each row and
//!   column must match exactly; we reorder only *which* rows or columns advance together.
//! - **Decimation.** Sample `(int)(((k + 0.5) * n) / 64)`, computed in f64, of the filtered
//!   image. An image of exactly 64×64 is used unfiltered by the plain hash, but filtered by the
//!   dihedral entry point — both as in the reference.
//! - **Quality.** `(int)(((u - v) * 100) / 255)` in f32, truncated toward zero, summed as
//!   absolute values over vertical then horizontal neighbours of the 64×64 buffer, divided by 90
//!   (integer), capped at 100.
//! - **DCT.** The 16×64 matrix is `(float)(sqrt(2/64) as float * cos(π/128 · (i+1) · (2j+1)))`
//!   with the cosine in f64; `B = D·A·Dᵀ` with every output accumulated in f32 from 0 over
//!   k = 0..63 in order. No fused multiply-add anywhere (Rust never contracts; the reference
//!   is built without FMA), and no reassociation: we vectorise across outputs, never across k.
//! - **Median.** The reference's Torben median over the 256 coefficients returns the lower
//!   median (the 128th smallest); a bit is set when its coefficient is strictly greater.
//! - **Bit order.** Coefficient `(i, j)` sets bit `16·i + j`, i.e. `w[i] |= 1 << j` in the
//!   reference's sixteen 16-bit words, printed `w[15]` first as 64 hex digits
//!   (see [`PdqHash`]). Dihedral variants permute and negate coefficients as the reference's
//!   `dct16OriginalTo*` functions do, and take their own median.
//! - **Small images.** Fewer than 5 rows or columns: all-zero hash, quality 0.
//!
//! Decoders are the other source of difference: JPEG and WebP decoders legitimately differ by
//! a pixel level here and there, which moves a few bits; lossless formats match exactly.

pub mod decode;
pub mod hash;
pub mod hashlist;
pub mod index;
mod types;

pub use types::{ParseHashError, PdqHash, HASH_BITS, HASH_BYTES};

pub use decode::{hash_bytes, hash_file, hash_file_dihedral, DecodeError, Limits};
pub use hash::{hash_rgb, hash_rgb_dihedral, Dihedral, DihedralResult, PdqResult, RgbView};
