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
