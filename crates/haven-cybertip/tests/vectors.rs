//! The committed vectors `vectors/report.xml` and `vectors/file-details.xml` are what the writer
//! produces for the shared sample, byte for byte. `HAVEN_REGEN_VECTORS=1` rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use haven_cybertip::{FileId, ReportId};
use std::path::PathBuf;

fn check(name: &str, produced: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(name);
    if std::env::var("HAVEN_REGEN_VECTORS").as_deref() == Ok("1") {
        std::fs::write(&path, produced).unwrap();
        return;
    }
    let stored = std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with HAVEN_REGEN_VECTORS=1", path.display()));
    assert!(
        stored == produced.as_bytes(),
        "{name} differs from the writer's output; regenerate and review the diff"
    );
    // The vector is a well-formed document.
    roxmltree::Document::parse(std::str::from_utf8(&stored).unwrap()).unwrap();
}

#[test]
fn report_vector() {
    check(
        "report.xml",
        &common::full_report().validate().unwrap().to_xml(),
    );
}

#[test]
fn file_details_vector() {
    let d = common::file_info("evidence-1.jpg")
        .validate()
        .unwrap()
        .with_ids(
            ReportId::new("4564654").unwrap(),
            FileId::new("b0754af766b426f2928a02c651ed4b99").unwrap(),
        );
    check("file-details.xml", &d.to_xml());
}
