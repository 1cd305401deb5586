//! Decoding untrusted image files into 8-bit RGB, with limits checked before decoding.
//!
//! Formats: JPEG, PNG, WebP, GIF (first frame), BMP, TIFF and PNM (the `image` crate's pure-Rust
//! decoders; JPEG is zune-jpeg). The format is sniffed from the bytes, never the file name.
//!
//! Limits are enforced in two places: the file size before reading (and again while reading,
//! in case the file grows), and the pixel count from the header, before any pixel buffer is
//! allocated. The `image` crate's own allocation limit is set as well, as a backstop for
//! decoders that allocate before reporting dimensions.
//!
//! Pixels become RGB the way Pillow's `convert("RGB")` does for the test vectors: grey is
//! replicated into R, G and B; palettes are expanded; alpha is dropped, not composited; CMYK
//! JPEGs are converted by the JPEG decoder; 16-bit samples keep their high byte (as Pillow
//! reads 16-bit RGB PNGs); float samples are clamped to 0–1 and scaled.

use std::io::{Cursor, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::hash::{hash_rgb, hash_rgb_dihedral, DihedralResult, PdqResult, RgbView};

/// Default largest file accepted: 256 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;
/// Default largest image accepted: 64 megapixels.
pub const DEFAULT_MAX_PIXELS: u64 = 64_000_000;

/// Resource limits for decoding one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest file, in bytes.
    pub max_file_bytes: u64,
    /// Largest `width × height`.
    pub max_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_pixels: DEFAULT_MAX_PIXELS,
        }
    }
}

/// The image formats Haven decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG (baseline and progressive; grey, YCbCr, CMYK).
    Jpeg,
    /// PNG (first frame of APNG).
    Png,
    /// WebP (lossy or lossless; first frame).
    WebP,
    /// GIF (first frame).
    Gif,
    /// Windows bitmap.
    Bmp,
    /// TIFF (first page).
    Tiff,
    /// PBM, PGM, PPM, PAM.
    Pnm,
}

impl Format {
    fn from_image(f: image::ImageFormat) -> Option<Format> {
        Some(match f {
            image::ImageFormat::Jpeg => Format::Jpeg,
            image::ImageFormat::Png => Format::Png,
            image::ImageFormat::WebP => Format::WebP,
            image::ImageFormat::Gif => Format::Gif,
            image::ImageFormat::Bmp => Format::Bmp,
            image::ImageFormat::Tiff => Format::Tiff,
            image::ImageFormat::Pnm => Format::Pnm,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Jpeg => "JPEG",
            Format::Png => "PNG",
            Format::WebP => "WebP",
            Format::Gif => "GIF",
            Format::Bmp => "BMP",
            Format::Tiff => "TIFF",
            Format::Pnm => "PNM",
        })
    }
}

/// Why an image could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    // --- storage ---
    /// The file could not be read.
    #[error("cannot read file: {0}")]
    Io(#[from] std::io::Error),

    // --- limits (checked before decoding) ---
    /// The file is larger than [`Limits::max_file_bytes`].
    #[error("file is over the size limit of {limit} bytes")]
    FileTooLarge {
        /// The limit.
        limit: u64,
    },
    /// The header declares more pixels than [`Limits::max_pixels`].
    #[error("image is {width}x{height}, over the limit of {limit} pixels")]
    TooManyPixels {
        /// Declared width.
        width: u32,
        /// Declared height.
        height: u32,
        /// The limit.
        limit: u64,
    },
    /// A decoder needed more memory than the limits allow (for formats whose header does not
    /// settle the allocation, e.g. many frames or huge metadata).
    #[error("decoding needs more memory than allowed: {detail}")]
    DecoderLimit {
        /// What the decoder said.
        detail: String,
    },

    // --- malformed or unsupported input ---
    /// Not one of the supported formats (or not an image at all).
    #[error("unrecognised or unsupported image format")]
    UnsupportedFormat,
    /// The format is supported but this file uses a feature the decoder does not.
    #[error("unsupported {format} feature: {detail}")]
    UnsupportedFeature {
        /// The container format.
        format: Format,
        /// What the decoder said.
        detail: String,
    },
    /// The header or the data is corrupt or truncated.
    #[error("malformed {format} image: {detail}")]
    Malformed {
        /// The container format.
        format: Format,
        /// What the decoder said.
        detail: String,
    },
}

/// An image decoded to 8-bit RGB, row-major, 3 bytes per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    width: usize,
    height: usize,
    format: Format,
    pixels: Vec<u8>,
}

impl DecodedImage {
    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }
    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }
    /// The container format it was decoded from.
    pub fn format(&self) -> Format {
        self.format
    }
    /// The RGB bytes.
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }
    /// A view for the hasher.
    pub fn view(&self) -> RgbView<'_> {
        // `to_rgb` is the only constructor and always makes `width × height × 3` bytes.
        RgbView::new_trusted(self.width, self.height, &self.pixels)
    }
}

/// Reads and decodes an image file.
pub fn decode_file(path: &Path, limits: &Limits) -> Result<DecodedImage, DecodeError> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge {
            limit: limits.max_file_bytes,
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(limits.max_file_bytes.saturating_add(1))
        .read_to_end(&mut bytes)?;
    decode_bytes(&bytes, limits)
}

/// Decodes an image held in memory.
pub fn decode_bytes(bytes: &[u8], limits: &Limits) -> Result<DecodedImage, DecodeError> {
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limits.max_file_bytes {
        return Err(DecodeError::FileTooLarge {
            limit: limits.max_file_bytes,
        });
    }
    let sniffed = image::guess_format(bytes).map_err(|_| DecodeError::UnsupportedFormat)?;
    let format = Format::from_image(sniffed).ok_or(DecodeError::UnsupportedFormat)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), sniffed);
    let mut backstop = image::Limits::default();
    // 16 bytes per pixel covers the widest buffer a decoder makes (RGBA f32), plus slack.
    backstop.max_alloc = Some(limits.max_pixels.saturating_mul(16).saturating_add(1 << 24));
    reader.limits(backstop);
    let decoder = reader
        .into_decoder()
        .map_err(|e| map_image_error(e, format))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DecodeError::TooManyPixels {
            width,
            height,
            limit: limits.max_pixels,
        });
    }
    let img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, format))?;
    Ok(to_rgb(img, format))
}

fn map_image_error(e: image::ImageError, format: Format) -> DecodeError {
    use image::error::{ImageError, LimitErrorKind};
    match e {
        ImageError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Malformed {
                format,
                detail: "truncated".into(),
            }
        }
        ImageError::IoError(io) => DecodeError::Malformed {
            format,
            detail: io.to_string(),
        },
        ImageError::Limits(l) => match l.kind() {
            LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory => {
                DecodeError::DecoderLimit {
                    detail: l.to_string(),
                }
            }
            _ => DecodeError::UnsupportedFeature {
                format,
                detail: l.to_string(),
            },
        },
        ImageError::Unsupported(u) => DecodeError::UnsupportedFeature {
            format,
            detail: u.to_string(),
        },
        other => DecodeError::Malformed {
            format,
            detail: other.to_string(),
        },
    }
}

/// Pillow-compatible conversion to 8-bit RGB (see the module docs).
fn to_rgb(img: DynamicImage, format: Format) -> DecodedImage {
    let (width, height) = (img.width() as usize, img.height() as usize);
    let hi = |v: u16| (v >> 8) as u8;
    let pixels: Vec<u8> = match img {
        DynamicImage::ImageRgb8(b) => b.into_raw(),
        DynamicImage::ImageLuma16(b) => b.into_raw().into_iter().flat_map(|v| [hi(v); 3]).collect(),
        DynamicImage::ImageLumaA16(b) => b
            .into_raw()
            .chunks_exact(2)
            .flat_map(|p| [hi(p.first().copied().unwrap_or(0)); 3])
            .collect(),
        DynamicImage::ImageRgb16(b) => b.into_raw().into_iter().map(hi).collect(),
        DynamicImage::ImageRgba16(b) => b
            .into_raw()
            .chunks_exact(4)
            .flat_map(|p| p.iter().take(3).map(|v| hi(*v)).collect::<Vec<_>>())
            .collect(),
        // 8-bit grey, grey+alpha, RGBA and float: the `image` crate replicates grey, drops alpha
        // and clamps floats, which is what we want.
        other => other.into_rgb8().into_raw(),
    };
    DecodedImage {
        width,
        height,
        format,
        pixels,
    }
}

/// Decodes a file and hashes it (the helper `haven hash` and `haven match` share).
pub fn hash_file(path: &Path, limits: &Limits) -> Result<PdqResult, DecodeError> {
    let img = decode_file(path, limits)?;
    Ok(hash_rgb(img.view()))
}

/// Decodes a file and computes its eight dihedral hashes.
pub fn hash_file_dihedral(path: &Path, limits: &Limits) -> Result<DihedralResult, DecodeError> {
    let img = decode_file(path, limits)?;
    Ok(hash_rgb_dihedral(img.view()))
}

/// Decodes bytes and hashes them.
pub fn hash_bytes(bytes: &[u8], limits: &Limits) -> Result<PdqResult, DecodeError> {
    let img = decode_bytes(bytes, limits)?;
    Ok(hash_rgb(img.view()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_header(width: u32, height: u32) -> Vec<u8> {
        // Signature + IHDR with a correct CRC, then a (bogus) IDAT: enough for the header read.
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        let crc = crc32(&ihdr);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(13u32.to_be_bytes());
        out.extend(&ihdr);
        out.extend(crc.to_be_bytes());
        out.extend(0u32.to_be_bytes());
        out.extend(b"IDAT");
        out.extend(crc32(b"IDAT").to_be_bytes());
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn oversize_pixel_count_is_refused_from_the_header() {
        let bytes = png_header(100_000, 100_000);
        match decode_bytes(&bytes, &Limits::default()) {
            Err(DecodeError::TooManyPixels {
                width: 100_000,
                height: 100_000,
                limit: DEFAULT_MAX_PIXELS,
            }) => {}
            other => panic!("expected TooManyPixels, got {other:?}"),
        }
        // Just over a custom limit.
        let small = Limits {
            max_pixels: 99,
            ..Limits::default()
        };
        assert!(matches!(
            decode_bytes(&png_header(10, 10), &small),
            Err(DecodeError::TooManyPixels {
                width: 10,
                height: 10,
                limit: 99
            })
        ));
    }

    #[test]
    fn file_size_limit_is_checked_first() {
        let l = Limits {
            max_file_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            decode_bytes(&png_header(10, 10), &l),
            Err(DecodeError::FileTooLarge { limit: 10 })
        ));
    }

    #[test]
    fn garbage_is_unsupported_and_truncated_is_malformed() {
        assert!(matches!(
            decode_bytes(b"hello world, not an image", &Limits::default()),
            Err(DecodeError::UnsupportedFormat)
        ));
        assert!(matches!(
            decode_bytes(&[], &Limits::default()),
            Err(DecodeError::UnsupportedFormat)
        ));
        // A header that promises pixels but has no image data.
        assert!(matches!(
            decode_bytes(&png_header(10, 10), &Limits::default()),
            Err(DecodeError::Malformed {
                format: Format::Png,
                ..
            })
        ));
    }

    #[test]
    fn ppm_decodes_to_rgb() {
        let mut ppm = b"P6\n2 1\n255\n".to_vec();
        ppm.extend([1, 2, 3, 4, 5, 6]);
        let img = decode_bytes(&ppm, &Limits::default()).unwrap();
        assert_eq!(
            (img.width(), img.height(), img.format()),
            (2, 1, Format::Pnm)
        );
        assert_eq!(img.pixels(), &[1, 2, 3, 4, 5, 6]);
        // Grey PGM is replicated into R, G, B.
        let mut pgm = b"P5\n2 1\n255\n".to_vec();
        pgm.extend([7, 9]);
        let img = decode_bytes(&pgm, &Limits::default()).unwrap();
        assert_eq!(img.pixels(), &[7, 7, 7, 9, 9, 9]);
    }

    /// Small synthetic images in every format the `image` crate can encode here.
    fn encoded_samples() -> Vec<Vec<u8>> {
        let img = image::RgbImage::from_fn(23, 17, |x, y| {
            image::Rgb([(x * 11) as u8, (y * 13) as u8, ((x + y) * 5) as u8])
        });
        let mut out = Vec::new();
        for f in [
            image::ImageFormat::Png,
            image::ImageFormat::Bmp,
            image::ImageFormat::Gif,
            image::ImageFormat::Tiff,
            image::ImageFormat::Pnm,
            image::ImageFormat::Jpeg,
            image::ImageFormat::WebP,
        ] {
            let mut buf = Cursor::new(Vec::new());
            if image::DynamicImage::ImageRgb8(img.clone())
                .write_to(&mut buf, f)
                .is_ok()
            {
                out.push(buf.into_inner());
            }
        }
        assert!(out.len() >= 5, "only {} encoders available", out.len());
        out
    }

    #[test]
    fn every_encoded_sample_decodes() {
        for bytes in encoded_samples() {
            let img = decode_bytes(&bytes, &Limits::default()).unwrap();
            assert_eq!((img.width(), img.height()), (23, 17));
        }
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Random bytes, with a real signature in front half the time: an error or a hash,
        /// never a panic.
        #[test]
        fn random_bytes_never_panic(prefix in 0usize..8, body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let sigs: [&[u8]; 8] = [
                b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\0",
                b"P6\n", b"RIFF\0\0\0\0WEBPVP8 ",
            ];
            let mut bytes = sigs[prefix].to_vec();
            bytes.extend(body);
            let limits = Limits { max_file_bytes: 1 << 20, max_pixels: 1 << 20 };
            if let Ok(img) = decode_bytes(&bytes, &limits) {
                prop_assert_eq!(img.pixels().len(), img.width() * img.height() * 3);
                let _ = crate::hash::hash_rgb_dihedral(img.view());
            }
        }

        /// Valid files with bytes flipped, cut or spliced: an error or a hash, never a panic.
        #[test]
        fn mutated_files_never_panic(
            which in 0usize..7,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..16),
            cut in any::<prop::sample::Index>(),
            truncate: bool,
        ) {
            let samples = encoded_samples();
            let mut bytes = samples[which % samples.len()].clone();
            for (i, v) in flips {
                let i = i.index(bytes.len());
                bytes[i] ^= v;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            let limits = Limits { max_file_bytes: 1 << 20, max_pixels: 1 << 20 };
            if let Ok(img) = decode_bytes(&bytes, &limits) {
                prop_assert_eq!(img.pixels().len(), img.width() * img.height() * 3);
                let _ = crate::hash::hash_rgb(img.view());
            }
        }
    }
}
