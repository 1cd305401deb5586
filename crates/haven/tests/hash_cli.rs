//! `haven hash` end to end: output format, order, dihedral, JSON, failures and exit codes.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

const IMAGES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../vectors/pdq/images");

fn haven(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn img(name: &str) -> String {
    PathBuf::from(IMAGES).join(name).display().to_string()
}

#[test]
fn prints_reference_line_format_in_input_order() {
    let names = [
        "wee.lossless.png",
        "small.lossless.png",
        "pen-and-coaster.png",
    ];
    let paths: Vec<String> = names.iter().map(|n| img(n)).collect();
    let mut args = vec!["hash", "--jobs", "2"];
    args.extend(paths.iter().map(String::as_str));
    let (code, out, err) = haven(&args);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d,100,{}",
                paths[0]
            ),
            format!(
                "0007001f003f003f007f00ff00ff00ff01ff01ff01ff03ff03ff03ff03ff03ff,0,{}",
                paths[1]
            ),
            format!(
                "1f811b9d267fbc6693c0c7f30e041f9df49b836303e10f067fcdfc12c02d01f9,100,{}",
                paths[2]
            ),
        ]
    );
}

#[test]
fn directory_walk_is_sorted_and_parallelism_does_not_change_output() {
    let (code1, out1, _) = haven(&["hash", "--jobs", "1", IMAGES]);
    let (code4, out4, _) = haven(&["hash", "--jobs", "4", IMAGES]);
    assert_eq!((code1, code4), (0, 0));
    assert_eq!(out1, out4);
    let paths: Vec<&str> = out1
        .lines()
        .map(|l| l.splitn(3, ',').nth(2).unwrap())
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    assert!(paths.len() >= 40);
}

#[test]
fn dihedral_prints_eight_lines_per_image() {
    let p = img("mode-L.png");
    let (code, out, _) = haven(&["hash", "--dihedral", &p]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(
        lines[1],
        format!(
            "30a10efd71c83f429013d48d0ffffc52e34e0e17ada952a9d29685211ea9e5af,100,{p},rotate90"
        )
    );
    assert!(lines[7].ends_with(",flip_minus1"));
}

#[test]
fn json_is_one_object_per_line() {
    let p = img("wee.lossless.png");
    let (code, out, _) = haven(&["hash", "--json", &p, &p]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2);
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(v["path"], p.as_str());
    assert_eq!(v["quality"], 100);
    assert_eq!(
        v["pdq"],
        "6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d"
    );
}

#[test]
fn failures_are_reported_and_the_rest_go_on() {
    let dir = std::env::temp_dir().join(format!("haven-hash-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("broken.jpg");
    std::fs::write(&bad, b"\xff\xd8\xff\xe0 truncated").unwrap();
    let good = img("wee.lossless.png");
    let missing = dir.join("missing.png");
    let (code, out, err) = haven(&[
        "hash",
        bad.to_str().unwrap(),
        &good,
        missing.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(out.lines().count(), 1);
    assert!(out.contains("wee.lossless.png"));
    assert!(err.contains("broken.jpg"), "{err}");
    assert!(err.contains("missing.png"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
