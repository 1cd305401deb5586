//! End-to-end tests of `haven match` and `haven hashlist`, running the built binary.

// clippy.toml allows these inside #[test] functions; the helpers below are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use haven_pdq::PdqHash;

fn haven(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(args)
        .output()
        .expect("run haven")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("match_cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A hash `bits` bits away from `h` (flipping the lowest bits of the last bytes).
fn near(h: &str, bits: usize) -> String {
    let mut p: PdqHash = h.parse().unwrap();
    for i in 0..bits {
        p.0[31 - i / 8] ^= 1 << (i % 8);
    }
    p.to_string()
}

const A: &str = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22";
const B: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const C: &str = "ffffffffffffffffffffffffffffffff00000000000000000000000000000000";

#[test]
fn list_with_invalid_line_and_hash_inputs() {
    let dir = tmpdir("list");
    let list = dir.join("list.txt");
    std::fs::write(&list, format!("{A}\n{B}\nnot-a-hash\n{C}\n{A}\n")).unwrap();
    let q = near(A, 5);
    let far = near(C, 40);
    let o = haven(&["match", "--list", list.to_str().unwrap(), &q, &far, B]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{q},{A},5,\n{B},{B},0,\n"));
    let err = stderr(&o);
    assert!(err.contains("line 3: invalid hash"), "{err}");
    assert!(err.contains("1 duplicates merged"), "{err}");

    // Radius is honoured at its edge.
    let o = haven(&[
        "match",
        "--list",
        list.to_str().unwrap(),
        "--radius",
        "4",
        &q,
    ]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    let o = haven(&[
        "match",
        "--list",
        list.to_str().unwrap(),
        "--radius",
        "40",
        &far,
    ]);
    assert_eq!(stdout(&o), format!("{far},{C},40,\n"));

    // The same list is fatal under --on-invalid fail, naming the line.
    let o = haven(&[
        "match",
        "--list",
        list.to_str().unwrap(),
        "--on-invalid",
        "fail",
        &q,
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("line 3"), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
}

#[test]
fn csv_snapshot_build_info_and_match() {
    let dir = tmpdir("snap");
    let csv = dir.join("list.csv");
    std::fs::write(
        &csv,
        format!("hash,label\n{A},known-1\n{C},\"with, comma\"\n{A},known-2\n{B}x,bad\n"),
    )
    .unwrap();
    let snap = dir.join("list.snap");
    let o = haven(&[
        "hashlist",
        "build",
        "--in",
        csv.to_str().unwrap(),
        "--out",
        snap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("2 entries, 3 labels"), "{}", stdout(&o));
    assert!(stderr(&o).contains("line 5"), "{}", stderr(&o));

    let o = haven(&["hashlist", "info", snap.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = stdout(&o);
    assert!(
        info.contains("entries: 2\n") && info.contains("labels: 3\n"),
        "{info}"
    );
    assert!(info.contains("checksum: ok"), "{info}");

    let queries = dir.join("queries.txt");
    std::fs::write(
        &queries,
        format!("# comment\n{}\n\n{}\n", near(A, 31), near(C, 32)),
    )
    .unwrap();
    let o = haven(&[
        "match",
        "--index",
        snap.to_str().unwrap(),
        "--queries",
        queries.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("{},{A},31,known-1;known-2\n", near(A, 31))
    );

    let o = haven(&[
        "match",
        "--index",
        snap.to_str().unwrap(),
        "--json",
        "--radius",
        "32",
        &near(C, 32),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["matched_hash"], C);
    assert_eq!(v["distance"], 32);
    assert_eq!(v["labels"], serde_json::json!(["with, comma"]));

    // A flipped bit or a truncation is an error, not a panic and not a silent empty match.
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    let bad = dir.join("bad.snap");
    std::fs::write(&bad, &bytes).unwrap();
    let o = haven(&["match", "--index", bad.to_str().unwrap(), A]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("checksum"), "{}", stderr(&o));
    std::fs::write(&bad, &bytes[..mid]).unwrap();
    let o = haven(&["hashlist", "info", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("truncated"), "{}", stderr(&o));
}

/// Writes a 96×80 binary PPM of pseudo-random 8×8 blocks, optionally mirrored left-right.
/// (Not 64×64: the reference skips the blur for exactly 64×64 in the plain hash only, so there
/// the plain hash and the dihedral 'original' differ.)
fn write_ppm(path: &Path, mirrored: bool, flat: bool) {
    let (w, h) = (96usize, 80usize);
    let mut px = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            let sx = if mirrored { w - 1 - x } else { x };
            let block = (y / 8) * 12 + sx / 8;
            let v = if flat {
                128
            } else {
                ((block * 2_654_435_761usize) >> 7) as u8
            };
            px.extend_from_slice(&[v, v.wrapping_mul(3), 255 - v]);
        }
    }
    let mut data = format!("P6\n{w} {h}\n255\n").into_bytes();
    data.extend(px);
    std::fs::write(path, data).unwrap();
}

#[test]
fn image_inputs_dihedral_quality_and_errors() {
    let dir = tmpdir("img");
    let img = dir.join("blocks.ppm");
    let mirror = dir.join("mirror.ppm");
    let flat = dir.join("flat.ppm");
    write_ppm(&img, false, false);
    write_ppm(&mirror, true, false);
    write_ppm(&flat, false, true);
    let limits = haven_pdq::decode::Limits::default();
    let h = haven_pdq::decode::hash_file(&img, &limits).unwrap();
    let hm = haven_pdq::decode::hash_file(&mirror, &limits).unwrap();
    let hf = haven_pdq::decode::hash_file(&flat, &limits).unwrap();
    assert!(h.quality >= 50, "test image should be of good quality");
    assert!(
        h.hash.distance(&hm.hash) > 31,
        "mirror should not match without --dihedral"
    );
    assert!(hf.quality < 50, "flat image should be of low quality");
    let hd = haven_pdq::decode::hash_file_dihedral(&img, &limits).unwrap();
    assert_eq!(
        hd.hashes[0], h.hash,
        "the dihedral 'original' variant must equal the plain hash"
    );
    assert_eq!(hd.quality, h.quality);

    let list = dir.join("list.txt");
    std::fs::write(&list, format!("{}\n{}\n", h.hash, hf.hash)).unwrap();
    let l = list.to_str().unwrap();
    let (i, m, f) = (
        img.to_str().unwrap(),
        mirror.to_str().unwrap(),
        flat.to_str().unwrap(),
    );

    let o = haven(&["match", "--list", l, i, m]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{i},{},0,\n", h.hash));

    let o = haven(&["match", "--list", l, "--dihedral", i, m]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.starts_with(&format!("{i},{},0,\n{m},{},", h.hash, h.hash)),
        "{out}"
    );

    // A low-quality image matches nothing by default, and says so; --min-quality 0 allows it.
    let o = haven(&["match", "--list", l, f]);
    assert!(o.status.success());
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).contains("below --min-quality 50"),
        "{}",
        stderr(&o)
    );
    let o = haven(&["match", "--list", l, "--min-quality", "0", f]);
    assert_eq!(stdout(&o), format!("{f},{},0,\n", hf.hash));

    // An unreadable input is an error line; the other inputs are still matched; exit non-zero.
    let missing = dir.join("missing.jpg");
    let o = haven(&["match", "--list", l, missing.to_str().unwrap(), i]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("missing.jpg"), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{i},{},0,\n", h.hash));

    // No list at all, or no inputs: usage errors.
    assert!(!haven(&["match", i]).status.success());
    assert!(!haven(&["match", "--list", l]).status.success());
}
