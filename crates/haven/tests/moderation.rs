//! Reporting and moderation end to end: a `haven server` process on a loopback port, and the
//! `haven` command as reporters, reported users and moderators run it. Each test starts its own
//! server and profiles.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::ADULT_BIRTH_DATE;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server in a temporary directory, and profiles beside it.
struct World {
    dir: tempfile::TempDir,
    server: Option<Server>,
    url: String,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(env!("CARGO_BIN_EXE_haven"))
            .args([
                "server",
                "--report-contact",
                "safety@haven.example",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data",
            ])
            .arg(dir.path().join("data"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        World {
            dir,
            server: Some(Server(child)),
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn home(&self, who: &str) -> PathBuf {
        self.dir.path().join("homes").join(who)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, who: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_haven"))
            .arg("--home")
            .arg(self.home(who))
            .args(args)
            .env("HAVEN_SERVER", &self.url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, who: &str, args: &[&str]) -> String {
        ok(self.run(who, args))
    }

    fn fails(&self, who: &str, args: &[&str], needle: &str) -> String {
        fails(self.run(who, args), needle)
    }

    fn register(&self, who: &str) {
        self.ok(who, &["register", who, "--birth-date", ADULT_BIRTH_DATE]);
    }

    /// `haven admin --data DIR role grant USER ROLE`, on the running server's store.
    fn grant(&self, user: &str, role: &str) {
        let out = Command::new(env!("CARGO_BIN_EXE_haven"))
            .arg("admin")
            .arg("--data")
            .arg(self.data())
            .args(["role", "grant", user, role])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        ok(out);
    }

    fn json(&self, who: &str, args: &[&str]) -> Value {
        serde_json::from_str(self.ok(who, args).trim()).unwrap()
    }

    /// The open cases `moderator` sees.
    fn queue(&self, moderator: &str) -> Vec<Value> {
        self.json(moderator, &["mod", "queue", "--json"])["cases"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn case(&self, moderator: &str, case: &str) -> Value {
        self.json(moderator, &["mod", "show", case, "--json"])
    }

    fn stop_server(&mut self) {
        self.server = None;
    }
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

fn fails(out: Output, needle: &str) -> String {
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.to_lowercase().contains(&needle.to_lowercase()),
        "stderr {err:?} lacks {needle:?}"
    );
    err
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn marker() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Texts of the message lines of `sync --json` / `history --json` output.
fn texts(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.get("text").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn notices<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l.get("notice").and_then(Value::as_str) == Some(kind))
        .collect()
}

/// alice, bob and the moderator mod1; alice and bob have a direct chat.
fn world() -> World {
    let w = World::new();
    for u in ["alice", "bob", "mod1"] {
        w.register(u);
    }
    w.grant("mod1", "moderator");
    w.ok("alice", &["contacts", "add", "bob"]);
    w.ok("bob", &["contacts", "accept", "alice"]);
    w
}

/// alice sends `text` to bob, bob syncs; returns the message id.
fn alice_to_bob(w: &World, text: &str) -> String {
    let id = w.ok("alice", &["send", "bob", text]).trim().to_owned();
    w.ok("bob", &["sync"]);
    id
}

/// Bob reports alice's `text` message (no context); returns the case id.
fn filed_case(w: &World, text: &str) -> String {
    let id = alice_to_bob(w, text);
    let filed = w.json(
        "bob",
        &[
            "report",
            &id,
            "--reason",
            "harassment",
            "--context",
            "0",
            "--json",
        ],
    );
    filed["case"].as_str().unwrap().to_owned()
}

#[test]
fn a_text_report_with_context_verifies_end_to_end() {
    let w = world();
    alice_to_bob(&w, "context one from alice");
    w.ok("bob", &["send", "alice", "context two from bob"]);
    w.ok("alice", &["sync"]);
    alice_to_bob(&w, "context three from alice");
    let reported = alice_to_bob(&w, "the reported message");

    // Nothing to see before the report.
    assert!(w.queue("mod1").is_empty());
    let filed = w.json(
        "bob",
        &[
            "report",
            &reported,
            "--reason",
            "harassment",
            "--context",
            "3",
            "--note",
            "she keeps at it",
            "--json",
        ],
    );
    let case = filed["case"].as_str().unwrap();
    assert_eq!(filed["verified_messages"], 4, "{filed}");
    assert_eq!(filed["files"], 0);

    let queue = w.queue("mod1");
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0]["case"], case);
    assert_eq!(queue[0]["reported_user"], "alice");
    assert_eq!(queue[0]["reporter"], "bob");
    assert_eq!(queue[0]["reason"], "harassment");

    let d = w.case("mod1", case);
    assert_eq!(d["note"], "she keeps at it");
    let ev = d["evidence"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = ev
        .iter()
        .map(|e| {
            (
                e["role"].as_str().unwrap(),
                e["sender"]["user"].as_str().unwrap(),
                e["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("reported", "alice", "the reported message"),
            ("context", "alice", "context one from alice"),
            ("context", "bob", "context two from bob"),
            ("context", "alice", "context three from alice"),
        ]
    );
    assert!(ev.iter().all(|e| e["verified"] == true), "{ev:?}");
    assert_eq!(d["account"]["user"], "alice");

    // The human form shows the same.
    let human = w.ok("mod1", &["mod", "show", case]);
    assert!(human.contains("verified: true"), "{human}");
    assert!(human.contains("text: the reported message"), "{human}");
    assert!(human.contains("note: she keeps at it"), "{human}");

    // Refused locally: one's own message, too much context.
    let own = w
        .ok("bob", &["send", "alice", "bob's own"])
        .trim()
        .to_owned();
    w.fails("bob", &["report", &own, "--reason", "spam"], "your own");
    w.fails(
        "bob",
        &["report", &reported, "--reason", "spam", "--context", "11"],
        "at most 10",
    );
}

/// A small PNG (a gradient with a square), as bytes.
fn png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(64, 64, |x, y| {
        if (16..48).contains(&x) && (16..48).contains(&y) {
            image::Rgb([250, 20, 20])
        } else {
            image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
        }
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn an_attachment_report_keeps_the_file_with_its_hashes() {
    let w = world();
    let bytes = png();
    let file = w.path("picture.png");
    std::fs::write(&file, &bytes).unwrap();
    let id = w
        .ok("alice", &["send-file", "bob", file.to_str().unwrap()])
        .trim()
        .to_owned();
    w.ok("bob", &["sync"]);
    let filed = w.json(
        "bob",
        &[
            "report",
            &id,
            "--reason",
            "other",
            "--context",
            "0",
            "--json",
        ],
    );
    assert_eq!(filed["files"], 1, "{filed}");
    let case = filed["case"].as_str().unwrap();

    let d = w.case("mod1", case);
    let att = &d["evidence"][0]["attachment"];
    assert_eq!(att["status"], "kept", "{d}");
    assert_eq!(att["name"], "picture.png");
    assert_eq!(att["size"], bytes.len() as u64);
    let sha = hex::encode(sha2::Sha256::digest(&bytes));
    assert_eq!(att["sha256"], sha.as_str());
    assert_eq!(att["md5"].as_str().unwrap().len(), 32);
    assert_eq!(att["pdq"].as_str().unwrap().len(), 64);

    let human = w.ok("mod1", &["mod", "show", case]);
    assert!(human.contains(&format!("sha256 {sha}")), "{human}");
    assert!(human.contains("md5 "), "{human}");
    assert!(human.contains("pdq "), "{human}");

    let file_id = att["file_id"].as_str().unwrap();
    let out = w.path("evidence.png");
    let out_s = out.to_str().unwrap();
    w.ok("mod1", &["mod", "evidence", case, file_id, out_s]);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // An existing path is never overwritten.
    w.fails("mod1", &["mod", "evidence", case, file_id, out_s], "exists");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
}

#[test]
fn a_dry_run_bundle_can_be_filed_and_a_tampered_one_is_refused() {
    let w = world();
    alice_to_bob(&w, "before it");
    let id = alice_to_bob(&w, "tamper-me if you can");
    let printed = w.ok(
        "bob",
        &["report", &id, "--reason", "spam", "--dry-run", "--json"],
    );
    let bundle: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(bundle["v"], 1);
    assert_eq!(bundle["context"].as_array().unwrap().len(), 1);
    // A dry run sends nothing.
    assert!(w.queue("mod1").is_empty());

    // One character of the text changed: the commitment no longer opens.
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut tampered = bundle.clone();
    let mut content = b64
        .decode(tampered["reported"]["content"].as_str().unwrap())
        .unwrap();
    let at = content
        .windows(9)
        .position(|w| w == b"tamper-me")
        .expect("the text is in the content bytes");
    content[at] = b'T';
    tampered["reported"]["content"] = Value::String(b64.encode(&content));
    let bad = w.path("tampered.json");
    std::fs::write(&bad, serde_json::to_vec(&tampered).unwrap()).unwrap();
    let err = w.fails(
        "bob",
        &[
            "report",
            "--evidence",
            bad.to_str().unwrap(),
            "--reason",
            "spam",
        ],
        "commitment",
    );
    assert!(err.contains("reported message"), "{err}");
    assert!(w.queue("mod1").is_empty());

    let good = w.path("bundle.json");
    std::fs::write(&good, &printed).unwrap();
    let filed = w.json(
        "bob",
        &[
            "report",
            "--evidence",
            good.to_str().unwrap(),
            "--reason",
            "spam",
            "--note",
            "from a file",
            "--json",
        ],
    );
    assert_eq!(filed["verified_messages"], 2);
    let queue = w.queue("mod1");
    assert_eq!(queue.len(), 1);
    assert_eq!(queue[0]["case"], filed["case"]);
}

#[test]
fn a_warning_reaches_the_user_and_the_outcome_the_reporter() {
    let w = world();
    let case = filed_case(&w, "warn me");
    w.ok(
        "mod1",
        &[
            "mod",
            "action",
            &case,
            "warn",
            "--reason",
            "mind your words",
        ],
    );
    let alice = json_lines(&w.ok("alice", &["sync", "--json"]));
    let n = notices(&alice, "action");
    assert_eq!(n.len(), 1, "{alice:?}");
    assert_eq!(n[0]["reason"], "mind your words");
    assert_eq!(n[0]["action"], "warn");
    assert_eq!(n[0]["case"], case.as_str());
    let bob = json_lines(&w.ok("bob", &["sync", "--json"]));
    let n = notices(&bob, "report_outcome");
    assert_eq!(n.len(), 1, "{bob:?}");
    assert_eq!(n[0]["outcome"], "action_taken");
    // The reporter never sees the statement of reasons.
    assert!(n[0]["reason"].is_null());
    // A closed case is no longer in the queue.
    assert!(w.queue("mod1").is_empty());
    // A warned (not suspended) account appeals with its session, once.
    w.ok("alice", &["appeal", &case, "I was quoting someone"]);
    w.fails("alice", &["appeal", &case, "again"], "already appealed");
    // Bob has no action against him on this case to appeal.
    w.fails("bob", &["appeal", &case, "me too"], "appealable action");
}

#[test]
fn suspension_appeal_and_reversal() {
    let w = world();
    w.register("mod2");
    w.grant("mod2", "moderator");
    let case = filed_case(&w, "suspend me");
    let queued = marker();
    w.ok("bob", &["send", "alice", &queued]);
    assert!(w.case("mod1", &case)["actions"]
        .as_array()
        .unwrap()
        .is_empty());
    w.ok(
        "mod1",
        &[
            "mod",
            "action",
            &case,
            "suspend",
            "--reason",
            "repeated abuse",
        ],
    );
    let action_id = w.case("mod1", &case)["actions"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Suspended: no login, no sending, and the error says why and how to appeal.
    let err = w.fails("alice", &["send", "bob", "still here?"], "suspended");
    assert!(err.contains("repeated abuse"), "{err}");
    assert!(err.contains("haven appeal"), "{err}");
    w.fails("alice", &["sync"], "suspended");
    // Others may still write to her; it waits in her queue.
    let during = marker();
    w.ok("bob", &["send", "alice", &during]);

    // The appeal goes through without a session (a device proof).
    w.ok("alice", &["appeal", &case, "it was a misunderstanding"]);
    // One appeal per action.
    w.fails("alice", &["appeal", &case, "again"], "already appealed");
    // The moderator who acted cannot decide it, and does not see it listed.
    let listed = w.json("mod1", &["mod", "appeals", "--json"]);
    assert!(listed["appeals"].as_array().unwrap().is_empty(), "{listed}");
    w.fails(
        "mod1",
        &["mod", "decide", &action_id, "reverse", "--reason", "fine"],
        "other than the one",
    );
    w.fails("alice", &["sync"], "suspended");
    let listed = w.json("mod2", &["mod", "appeals", "--json"]);
    assert_eq!(listed["appeals"][0]["id"], action_id.as_str(), "{listed}");
    assert_eq!(
        listed["appeals"][0]["appeal"]["text"],
        "it was a misunderstanding"
    );
    w.ok(
        "mod2",
        &[
            "mod",
            "decide",
            &action_id,
            "reverse",
            "--reason",
            "context shows a joke",
        ],
    );

    // Lifted: alice logs in again and gets what was queued for her, and both notices.
    let lines = json_lines(&w.ok("alice", &["sync", "--json"]));
    let got = texts(&lines);
    assert!(got.contains(&queued), "{lines:?}");
    assert!(got.contains(&during), "{lines:?}");
    assert_eq!(notices(&lines, "action").len(), 1, "{lines:?}");
    let decided = notices(&lines, "appeal_decision");
    assert_eq!(decided.len(), 1, "{lines:?}");
    assert_eq!(decided[0]["outcome"], "reversed");
    w.ok("alice", &["send", "bob", "back again"]);
    // Decided and lifted: nothing left to appeal on this case.
    w.fails("alice", &["appeal", &case, "again"], "appealable action");
}

#[test]
fn a_restricted_account_keeps_its_conversations_but_starts_none() {
    let w = world();
    w.register("carol");
    let case = filed_case(&w, "restrict me");
    w.ok(
        "mod1",
        &[
            "mod",
            "action",
            &case,
            "restrict",
            "--days",
            "1",
            "--reason",
            "cool down",
        ],
    );
    w.fails("alice", &["send", "carol", "hi"], "restricted");
    // Again: the refused attempt did not leave a conversation to send in.
    w.fails("alice", &["send", "carol", "hi"], "restricted");
    w.fails(
        "alice",
        &["group", "create", "fresh", "--members", "bob"],
        "restricted",
    );
    // The existing conversation still works.
    w.ok("alice", &["send", "bob", "still talking"]);
    let bob = json_lines(&w.ok("bob", &["sync", "--json"]));
    assert!(texts(&bob).contains(&"still talking".to_owned()), "{bob:?}");
    // The refused attempts left no direct chat with carol behind.
    let convs = w.ok("alice", &["conversations", "--json"]);
    assert!(
        json_lines(&convs)
            .iter()
            .all(|c| c["state"] != "active" || !c.to_string().contains("carol")),
        "{convs}"
    );
    // restrict needs --days.
    w.fails(
        "mod1",
        &["mod", "action", &case, "restrict", "--reason", "again"],
        "days",
    );
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn found_in(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            std::fs::read(p)
                .map(|b| b.windows(needle.len()).any(|w| w == needle))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn reported_content_is_sealed_at_rest_on_the_server() {
    let mut w = world();
    let text_marker = marker();
    let file_marker = marker();
    alice_to_bob(&w, &format!("secret words {text_marker}"));
    let file = w.path("notes.bin");
    std::fs::write(&file, format!("file bytes {file_marker} end").as_bytes()).unwrap();
    let id = w
        .ok("alice", &["send-file", "bob", file.to_str().unwrap()])
        .trim()
        .to_owned();
    w.ok("bob", &["sync"]);
    let filed = w.json(
        "bob",
        &[
            "report",
            &id,
            "--reason",
            "other",
            "--context",
            "1",
            "--json",
        ],
    );
    assert_eq!(filed["verified_messages"], 2, "{filed}");
    assert_eq!(filed["files"], 1, "{filed}");
    let case = filed["case"].as_str().unwrap().to_owned();
    // The moderator reads both in the clear…
    let d = w.case("mod1", &case);
    assert!(d["evidence"][1]["text"]
        .as_str()
        .unwrap()
        .contains(&text_marker));
    let out = w.path("file.out");
    let file_id = d["evidence"][0]["attachment"]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    w.ok(
        "mod1",
        &["mod", "evidence", &case, &file_id, out.to_str().unwrap()],
    );
    assert!(String::from_utf8(std::fs::read(&out).unwrap())
        .unwrap()
        .contains(&file_marker));
    w.stop_server();

    // …but neither is anywhere in the server's data directory (database, WAL, blobs, keys).
    for m in [&text_marker, &file_marker] {
        let hits = found_in(&w.data(), m.as_bytes());
        assert!(hits.is_empty(), "marker {m} found in {hits:?}");
    }
    // The search does find what is there: bob's profile keeps the text he received.
    assert!(!found_in(&w.home("bob"), text_marker.as_bytes()).is_empty());
}

#[test]
fn an_account_report_has_no_evidence_and_the_queue_is_for_moderators() {
    let w = world();
    let filed = w.json(
        "bob",
        &[
            "report-user",
            "alice",
            "--reason",
            "harassment",
            "--note",
            "in every group",
            "--json",
        ],
    );
    let case = filed["case"].as_str().unwrap();
    assert_eq!(filed["verified_messages"], 0);
    let d = w.case("mod1", case);
    assert_eq!(d["summary"]["source"], "account_report");
    assert_eq!(d["summary"]["reported_user"], "alice");
    assert!(d["evidence"].as_array().unwrap().is_empty());
    assert_eq!(d["note"], "in every group");
    // Not a moderator: refused.
    w.fails("alice", &["mod", "queue"], "403");
    w.fails("bob", &["mod", "show", case], "403");
    // A moderator cannot handle a case they are in.
    w.grant("bob", "moderator");
    w.fails("bob", &["mod", "show", case], "403");
    // Unknown reasons are refused by the command line.
    w.fails(
        "bob",
        &["report-user", "alice", "--reason", "csam"],
        "invalid value",
    );
}

/// Bob reports alice's PNG; returns (case, the PNG's bytes).
fn image_case(w: &World) -> (String, Vec<u8>) {
    let bytes = png();
    let file = w.path("picture.png");
    std::fs::write(&file, &bytes).unwrap();
    let id = w
        .ok("alice", &["send-file", "bob", file.to_str().unwrap()])
        .trim()
        .to_owned();
    w.ok("bob", &["sync"]);
    let filed = w.json(
        "bob",
        &[
            "report",
            &id,
            "--reason",
            "grooming",
            "--context",
            "0",
            "--json",
        ],
    );
    (filed["case"].as_str().unwrap().to_owned(), bytes)
}

#[test]
fn escalation_refuses_a_directory_that_is_not_empty() {
    let w = world();
    let (case, _) = image_case(&w);
    let out = w.path("escalation");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"mine").unwrap();
    w.fails(
        "mod1",
        &[
            "mod",
            "escalate",
            &case,
            "--out",
            out.to_str().unwrap(),
            "--reason",
            "reviewed",
        ],
        "not empty",
    );
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1);
    // Nothing was asked of the server: the case is still open.
    assert_eq!(w.queue("mod1").len(), 1);
}

#[test]
fn escalation_writes_the_report_the_details_and_the_evidence() {
    let w = world();
    let (case, bytes) = image_case(&w);
    let out = w.path("escalation");
    let escalate = |w: &World| {
        w.run(
            "mod1",
            &[
                "mod",
                "escalate",
                &case,
                "--out",
                out.to_str().unwrap(),
                "--reason",
                "reviewed: grooming",
            ],
        )
    };
    // Not before a person has opened the case and looked at its file.
    fails(escalate(&w), "before escalating");
    let file_id = w.case("mod1", &case)["evidence"][0]["attachment"]["file_id"]
        .as_str()
        .unwrap()
        .to_owned();
    fails(escalate(&w), "view evidence file");
    let viewed = w.path("viewed.png");
    w.ok(
        "mod1",
        &["mod", "evidence", &case, &file_id, viewed.to_str().unwrap()],
    );
    ok(escalate(&w));
    let report = std::fs::read_to_string(out.join("report.xml")).unwrap();
    assert!(report.contains("<report"), "{report}");
    assert!(
        report
            .contains("<incidentType>Online Enticement of Children for Sexual Act</incidentType>"),
        "{report}"
    );
    assert!(
        report.contains("<espIdentifier>alice</espIdentifier>"),
        "{report}"
    );
    assert!(report.contains("safety@haven.example"), "{report}");
    let details = std::fs::read_to_string(out.join(format!("{file_id}.details.xml"))).unwrap();
    assert!(
        details.contains("<fileViewedByEsp>true</fileViewedByEsp>"),
        "{details}"
    );
    assert!(details.contains("MD5"), "{details}");
    let written: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(written.len(), 3, "{written:?}");
    let evidence = written
        .iter()
        .find(|n| n.ends_with("picture.png"))
        .expect("the evidence file");
    assert_eq!(std::fs::read(out.join(evidence)).unwrap(), bytes);
    assert_eq!(w.case("mod1", &case)["summary"]["state"], "escalated");

    // Submission is the operator's explicit step, here to a local server that follows the
    // Reporting API's documentation: submit, upload, fileinfo, finish.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt
        .block_on(haven_cybertip::testing::server::TestServer::start(
            "esp", "s3cret",
        ))
        .unwrap();
    let password = w.path("cybertip-password");
    std::fs::write(&password, "s3cret\n").unwrap();
    let submit = || {
        Command::new(env!("CARGO_BIN_EXE_haven"))
            .args(["admin", "cybertip", "submit"])
            .arg(&out)
            .args([
                "--url",
                &api.base_url(),
                "--username",
                "esp",
                "--password-file",
            ])
            .arg(&password)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let id = ok(submit()).trim().to_owned();
    let stored = api
        .report(&haven_cybertip::ReportId::new(id.clone()).unwrap())
        .unwrap();
    assert!(stored.finished);
    assert_eq!(stored.xml, report);
    assert_eq!(stored.files.len(), 1);
    assert_eq!(stored.files[0].bytes, bytes);
    let sent_details = stored.files[0].details_xml.as_deref().unwrap();
    assert!(
        sent_details.contains(&format!("<reportId>{id}</reportId>")),
        "{sent_details}"
    );
    // A failure after submit retracts the report.
    api.inject(
        haven_cybertip::client::Endpoint::FileInfo,
        haven_cybertip::testing::server::Fault::Respond(haven_cybertip::ResponseCode::ServerError),
    );
    let err = fails(submit(), "retracted");
    assert!(err.contains("fileinfo"), "{err}");
    assert_eq!(api.retracted().len(), 1);
    drop(rt);
}
