//! The operator's safety commands end to end: `haven admin … age` corrects an account's band
//! (audited) and the account's next request sees it; `haven admin … policy` prints what the
//! running server recorded. A `haven server` process on a loopback port.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::{born_years_ago, spawn_server, ADULT_BIRTH_DATE};

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn haven(dir: &Path, url: &str, who: Option<&str>, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_haven"));
    if let Some(w) = who {
        c.arg("--home").arg(dir.join("homes").join(w));
    }
    c.args(args)
        .env("HAVEN_SERVER", url)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(out: Output, needle: &str) {
    assert!(!out.status.success(), "unexpected success");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

fn admin(dir: &Path, args: &[&str]) -> Output {
    let data: PathBuf = dir.join("data");
    let mut all = vec!["admin", "--data", data.to_str().unwrap()];
    all.extend_from_slice(args);
    haven(dir, "", None, &all)
}

#[test]
fn the_operator_corrects_a_band_and_reads_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_server, url) = spawn_server(&d.join("data"), &[], Stdio::null(), Stdio::null());
    let teen = born_years_ago(14);
    ok(haven(
        d,
        &url,
        Some("mia"),
        &["register", "mia", "--birth-date", &teen],
    ));
    ok(haven(
        d,
        &url,
        Some("dad"),
        &["register", "dad", "--birth-date", ADULT_BIRTH_DATE],
    ));
    let me: Value =
        serde_json::from_str(&ok(haven(d, &url, Some("mia"), &["me", "--json"]))).unwrap();
    assert_eq!(me["age_band"], "13-15");
    assert_eq!(me["age_source"], "self-declared");
    // Refused corrections change nothing.
    fails(admin(d, &["age", "mia", "--band", "child"]), "unknown band");
    fails(
        admin(
            d,
            &[
                "age",
                "mia",
                "--band",
                "adult",
                "--changes-on",
                "2099-01-01",
            ],
        ),
        "does not change",
    );
    fails(
        admin(
            d,
            &[
                "age",
                "mia",
                "--band",
                "16-17",
                "--changes-on",
                "2000-01-01",
            ],
        ),
        "after today",
    );
    fails(
        admin(d, &["age", "nobody", "--band", "adult"]),
        "no account named nobody",
    );
    // The operator checked: mia is an adult (say, her date was mistyped).
    let out = ok(admin(d, &["age", "mia", "--band", "adult", "--verified"]));
    assert!(out.contains("mia: adult (verified)"), "{out}");
    let me: Value =
        serde_json::from_str(&ok(haven(d, &url, Some("mia"), &["me", "--json"]))).unwrap();
    assert_eq!(me["age_band"], "adult");
    assert_eq!(me["age_source"], "verified");
    // The correction is on the audit log, once.
    let audit = ok(admin(d, &["audit", "--json"]));
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["action"] == "age.set")
        .collect();
    assert_eq!(lines.len(), 1, "{audit}");
    assert_eq!(lines[0]["actor"], "admin-cli");
    assert!(lines[0]["detail"].as_str().unwrap().contains("mia"));

    let policy: Value = serde_json::from_str(&ok(admin(d, &["policy", "--json"]))).unwrap();
    assert_eq!(policy["version"], 1);
    let ids: Vec<&str> = policy["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    for id in [
        "min-age",
        "minor-contact-connections-only",
        "block",
        "risk-case-pause",
    ] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    assert_eq!(policy["config"]["limits"]["per_day"], 50);
    let text = ok(admin(d, &["policy"]));
    assert!(
        text.contains("new contacts per day: 50 (20 toward minors)"),
        "{text}"
    );
    assert!(text.contains("friction at 30, case at 60"), "{text}");
    assert!(text.contains("minor_contacts_1h"), "{text}");
}

#[test]
fn the_server_runs_with_the_safety_configuration_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A configuration that does not validate keeps the server from starting, and says why.
    for (name, text, needle) in [
        ("bad.json", "{not json", "--safety-config"),
        ("unknown.json", r#"{"limits":{"per_dya":3}}"#, "per_dya"),
        (
            "order.json",
            r#"{"risk":{"friction_threshold":80,"case_threshold":60}}"#,
            "friction",
        ),
    ] {
        let path = d.join(name);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_haven"))
            .args(["server", "--listen", "127.0.0.1:0", "--data"])
            .arg(d.join(format!("data-{name}")))
            .arg("--safety-config")
            .arg(&path)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        fails(out, needle);
    }
    // A valid one (missing fields keep their defaults) is what the server records and applies.
    let path = d.join("tight.json");
    std::fs::write(&path, r#"{"limits":{"per_day":2}}"#).unwrap();
    let (_server, url) = spawn_server(
        &d.join("data"),
        &["--safety-config", path.to_str().unwrap()],
        Stdio::null(),
        Stdio::null(),
    );
    let policy: Value = serde_json::from_str(&ok(admin(d, &["policy", "--json"]))).unwrap();
    assert_eq!(policy["config"]["limits"]["per_day"], 2);
    assert_eq!(policy["config"]["limits"]["per_day_to_minors"], 20);
    for who in ["ann", "a1", "a2", "a3"] {
        ok(haven(
            d,
            &url,
            Some(who),
            &["register", who, "--birth-date", ADULT_BIRTH_DATE],
        ));
    }
    // A new account gets half of 2: one new contact a day.
    ok(haven(d, &url, Some("ann"), &["contacts", "add", "a1"]));
    fails(
        haven(d, &url, Some("ann"), &["contacts", "add", "a2"]),
        "try again after",
    );
}
