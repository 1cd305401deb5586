//! Meta's reference values for the PDQ test images (`vectors/pdq/` at the repository root, see
//! its README), plus decoder robustness: tiny images, corrupt and truncated files, oversize headers.

// Test helpers outside #[test] functions panic on bad vector files by design.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};

use haven_pdq::decode::{decode_bytes, decode_file, DecodeError, Format, Limits};
use haven_pdq::{hash_file, hash_file_dihedral, hash_rgb, Dihedral, PdqHash, RgbView};

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors/pdq");

fn vectors() -> PathBuf {
    PathBuf::from(VECTORS)
}

fn image(name: &str) -> PathBuf {
    vectors().join("images").join(name)
}

/// `(file, pdq, quality, compare)` rows of expected.csv.
fn expected() -> Vec<(String, PdqHash, u8, String)> {
    let text = std::fs::read_to_string(vectors().join("expected.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,pdq,quality,compare"));
    let rows: Vec<_> = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 4, "{l}");
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].to_string(),
            )
        })
        .collect();
    assert!(rows.len() >= 40, "expected.csv has {} rows", rows.len());
    rows
}

fn lossless_sibling(name: &str) -> Option<PathBuf> {
    let stem = Path::new(name).file_stem()?.to_str()?;
    let p = image(&format!("{stem}.lossless.png"));
    p.exists().then_some(p)
}

#[test]
fn exact_rows_match_bit_for_bit() {
    let mut n = 0;
    for (file, pdq, quality, compare) in expected() {
        if compare != "exact" {
            continue;
        }
        let r = hash_file(&image(&file), &Limits::default()).unwrap();
        assert_eq!(r.hash, pdq, "{file}: {} bits differ", r.hash.distance(&pdq));
        assert_eq!(r.quality, quality, "{file} quality");
        n += 1;
    }
    assert!(n >= 18, "only {n} exact rows");
}

#[test]
fn decoder_rows_match_exactly_from_pillow_pixels_and_closely_from_our_decoder() {
    let mut with_sibling = 0;
    let mut n = 0;
    for (file, pdq, quality, compare) in expected() {
        if compare != "decoder" {
            continue;
        }
        n += 1;
        // The lossless PNG beside a JPEG holds the pixels Pillow decoded: exact.
        if let Some(sibling) = lossless_sibling(&file) {
            let r = hash_file(&sibling, &Limits::default()).unwrap();
            assert_eq!(r.hash, pdq, "{file} via lossless PNG");
            assert_eq!(r.quality, quality, "{file} via lossless PNG quality");
            with_sibling += 1;
        }
        // Our own JPEG/WebP decoder: within 10 bits.
        let r = hash_file(&image(&file), &Limits::default()).unwrap();
        let d = r.hash.distance(&pdq);
        assert!(
            d <= 10,
            "{file}: our decoder gives {} ({d} bits off)",
            r.hash
        );
        if quality >= 50 {
            assert!(
                r.quality.abs_diff(quality) <= 5,
                "{file} quality {}",
                r.quality
            );
        }
    }
    assert!(
        n >= 15 && with_sibling >= 10,
        "{n} decoder rows, {with_sibling} with PNG"
    );
}

fn dihedral_expected() -> (String, Vec<(String, PdqHash)>) {
    let text = std::fs::read_to_string(vectors().join("dihedral.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("file,variant,pdq"));
    let mut file = String::new();
    let rows = lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            file = f[0].to_string();
            (f[1].to_string(), f[2].parse().unwrap())
        })
        .collect();
    (file, rows)
}

#[test]
fn dihedral_rows_exact_from_lossless_pixels() {
    let (file, rows) = dihedral_expected();
    assert_eq!(file, "bridge-aaa-orig.jpg");
    let names: Vec<&str> = Dihedral::ALL.iter().map(|d| d.name()).collect();
    let got_names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(got_names, names, "variant order");

    // dihedral.csv was computed from Pillow's pixels of bridge-aaa-orig.jpg, which has no
    // .lossless.png beside it. mode-L.png is the same photograph in 8-bit grey, losslessly
    // stored; the reference (pdqhash 0.2.8) gives it the identical eight hashes, and
    // expected.csv records its original hash as equal to the JPEG's. So it is the exact check.
    let (_, orig, _, _) = expected()
        .into_iter()
        .find(|(f, ..)| f == "bridge-aaa-orig.jpg")
        .unwrap();
    let (_, mode_l, _, _) = expected()
        .into_iter()
        .find(|(f, ..)| f == "mode-L.png")
        .unwrap();
    assert_eq!(orig, mode_l);
    for lossless in ["mode-L.png", "mode-LA.png"] {
        let d = hash_file_dihedral(&image(lossless), &Limits::default()).unwrap();
        for ((name, want), (variant, got)) in rows.iter().zip(d.iter()) {
            assert_eq!(&got, want, "{lossless} {name} ({variant:?})");
        }
        assert_eq!(d.quality, 100);
    }

    // And decoding the JPEG ourselves: every variant within 10 bits.
    let d = hash_file_dihedral(&image(&file), &Limits::default()).unwrap();
    for ((name, want), (_, got)) in rows.iter().zip(d.iter()) {
        assert!(
            got.distance(want) <= 10,
            "{name}: {} bits",
            got.distance(want)
        );
    }
}

#[test]
fn dihedral_original_equals_plain_hash_for_every_exact_row() {
    for (file, pdq, _, compare) in expected() {
        if compare == "exact" {
            let d = hash_file_dihedral(&image(&file), &Limits::default()).unwrap();
            assert_eq!(d.get(Dihedral::Original), pdq, "{file}");
        }
    }
}

#[test]
fn tiny_images_hash_to_zero_with_quality_zero() {
    for (w, h) in [(4usize, 4usize), (4, 500), (500, 4), (1, 1), (0, 0)] {
        let px = vec![200u8; w * h * 3];
        let r = hash_rgb(RgbView::new(w, h, &px).unwrap());
        assert_eq!(r.hash, PdqHash::ZERO, "{w}x{h}");
        assert_eq!(r.quality, 0);
    }
    // Through the decoder too: a 4x3 PPM.
    let mut ppm = b"P6\n4 3\n255\n".to_vec();
    ppm.extend((0..36).map(|i| (i * 7) as u8));
    let img = decode_bytes(&ppm, &Limits::default()).unwrap();
    let r = hash_rgb(img.view());
    assert_eq!((r.hash, r.quality), (PdqHash::ZERO, 0));
}

#[test]
fn truncated_and_corrupt_vector_files_are_errors_not_panics() {
    let mut checked = 0;
    for name in [
        "bridge-square-128x128.jpg",
        "wee.lossless.png",
        "mode-F.webp",
        "mode-P.png",
        "small.jpg",
    ] {
        let bytes = std::fs::read(image(name)).unwrap();
        // Truncations at many points: either a clean error or (for formats that tolerate
        // a missing tail, like progressive JPEG) a decoded image; never a panic.
        for cut in [
            1,
            8,
            16,
            33,
            64,
            100,
            bytes.len() / 3,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let r = decode_bytes(&bytes[..cut.min(bytes.len())], &Limits::default());
            if cut <= 16 {
                assert!(r.is_err(), "{name} cut at {cut} decoded");
            }
            checked += 1;
        }
        // Corruption: overwrite bytes throughout the body.
        for step in [7usize, 31, 97] {
            let mut c = bytes.clone();
            for i in (20..c.len()).step_by(step) {
                c[i] ^= 0x5a;
            }
            let _ = decode_bytes(&c, &Limits::default()).map(|img| hash_rgb(img.view()));
            checked += 1;
        }
    }
    assert!(checked > 40);
    // A PNG truncated inside its pixel data is reported as malformed PNG.
    let png = std::fs::read(image("wee.lossless.png")).unwrap();
    match decode_bytes(&png[..png.len() / 2], &Limits::default()) {
        Err(DecodeError::Malformed {
            format: Format::Png,
            ..
        }) => {}
        other => panic!("expected Malformed PNG, got {other:?}"),
    }
}

#[test]
fn oversize_header_refused_before_decoding() {
    // A real file's header, with the dimensions patched to 20000 x 20000 (400 MP): refused from
    // the header alone, so the error names the declared size.
    let mut png = std::fs::read(image("wee.lossless.png")).unwrap();
    png[16..20].copy_from_slice(&20_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    // Fix the IHDR CRC so the decoder gets as far as the dimensions.
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    match decode_bytes(&png, &Limits::default()) {
        Err(DecodeError::TooManyPixels {
            width: 20_000,
            height: 20_000,
            ..
        }) => {}
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    // A file over the size limit is refused before it is read.
    let tight = Limits {
        max_file_bytes: 1000,
        ..Limits::default()
    };
    assert!(matches!(
        decode_file(&image("wee.lossless.png"), &tight),
        Err(DecodeError::FileTooLarge { limit: 1000 })
    ));
    // A missing file is an I/O error.
    assert!(matches!(
        decode_file(&image("no-such-file.png"), &Limits::default()),
        Err(DecodeError::Io(_))
    ));
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

/// The pixels `tests/data/gen_edge.py` hashes with the reference.
fn edge_pixels(w: usize, h: usize) -> Vec<u8> {
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            px.extend([
                ((3 * x + y) % 256) as u8,
                ((5 * y) % 256) as u8,
                ((7 * (x ^ y)) % 256) as u8,
            ]);
        }
    }
    px
}

#[test]
fn edge_sizes_match_reference_plain_and_dihedral() {
    let csv = include_str!("data/edge.csv");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("width,height,variant,pdq,quality"));
    let mut checked = 0;
    let mut current: Option<(
        (usize, usize),
        haven_pdq::PdqResult,
        haven_pdq::DihedralResult,
    )> = None;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        let (w, h): (usize, usize) = (f[0].parse().unwrap(), f[1].parse().unwrap());
        let want: PdqHash = f[3].parse().unwrap();
        let quality: u8 = f[4].parse().unwrap();
        if current.as_ref().map(|c| c.0) != Some((w, h)) {
            let px = edge_pixels(w, h);
            let view = RgbView::new(w, h, &px).unwrap();
            current = Some(((w, h), hash_rgb(view), haven_pdq::hash_rgb_dihedral(view)));
        }
        let (_, plain, dihedral) = current.as_ref().unwrap();
        let (got, got_q) = if f[2] == "plain" {
            (plain.hash, plain.quality)
        } else {
            let v = Dihedral::ALL
                .into_iter()
                .find(|v| v.name() == f[2])
                .unwrap();
            (dihedral.get(v), dihedral.quality)
        };
        assert_eq!(got, want, "{w}x{h} {}", f[2]);
        assert_eq!(got_q, quality, "{w}x{h} {} quality", f[2]);
        checked += 1;
    }
    assert_eq!(checked, 16 * 9);
}
