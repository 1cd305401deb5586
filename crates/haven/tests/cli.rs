//! The `haven` command end to end: a `haven server` process on a loopback port and `haven`
//! client invocations, as a user would run them (the README's quick start).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::ADULT_BIRTH_DATE;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(data: &Path) -> (Server, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (Server(child), format!("http://127.0.0.1:{port}"))
}

fn haven(home: &Path, server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_haven"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("HAVEN_SERVER", server)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `haven register NAME --birth-date ADULT EXTRA…`.
fn register(home: &Path, server: &str, name: &str, extra: &[&str]) -> Output {
    let mut args = vec!["register", name, "--birth-date", ADULT_BIRTH_DATE];
    args.extend_from_slice(extra);
    haven(home, server, &args)
}

/// `a` (profile `a_home`) asks `b` to connect and `b` accepts: between connections, 1:1 chats
/// need no request.
fn connect(a_home: &Path, a: &str, b_home: &Path, b: &str, server: &str) {
    ok(haven(a_home, server, &["contacts", "add", b]));
    ok(haven(b_home, server, &["contacts", "accept", a]));
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
    assert!(
        !out.status.success(),
        "unexpected success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "stderr {err:?} lacks {needle:?}");
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn quick_start_as_a_user_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let (a, b, c) = (
        dir.path().join("alice"),
        dir.path().join("bob"),
        dir.path().join("carol"),
    );
    ok(register(&a, &url, "alice", &[]));
    ok(register(&b, &url, "bob", &["--server", &url]));
    ok(register(&c, &url, "carol", &[]));
    ok(haven(&a, &url, &["contacts", "add", "bob"]));
    ok(haven(&b, &url, &["contacts", "accept", "alice"]));
    // carol is added to bob's group below: a connection's add is no group request.
    ok(haven(&b, &url, &["contacts", "add", "carol"]));
    ok(haven(&c, &url, &["contacts", "accept", "bob"]));

    let id = ok(haven(&a, &url, &["send", "bob", "hello bob"]));
    let msgs = json_lines(&ok(haven(&b, &url, &["sync", "--json"])));
    let texts: Vec<&Value> = msgs
        .iter()
        .filter(|m| m.get("text").is_some_and(|t| !t.is_null()))
        .collect();
    assert_eq!(texts.len(), 1, "{msgs:?}");
    assert_eq!(texts[0]["text"], "hello bob");
    assert_eq!(texts[0]["from"], "alice");
    assert_eq!(texts[0]["conversation"], "alice");
    assert_eq!(texts[0]["id"], id.trim());
    assert!(texts[0]["sent_at"].as_u64().unwrap() > 0);
    // A second sync shows nothing new.
    assert!(json_lines(&ok(haven(&b, &url, &["sync", "--json"])))
        .iter()
        .all(|m| m["text"].is_null()));

    ok(haven(
        &b,
        &url,
        &["group", "create", "friends", "--members", "alice,carol"],
    ));
    ok(haven(&b, &url, &["send", "#friends", "hello friends"]));
    ok(haven(&a, &url, &["sync"]));
    let hist = json_lines(&ok(haven(&a, &url, &["history", "#friends", "--json"])));
    assert_eq!(hist.len(), 1);
    assert_eq!(hist[0]["text"], "hello friends");

    // Files.
    let file = dir.path().join("photo.bin");
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &bytes).unwrap();
    let fid = ok(haven(
        &a,
        &url,
        &["send-file", "#friends", file.to_str().unwrap()],
    ));
    let msgs = json_lines(&ok(haven(&c, &url, &["sync", "--json"])));
    let att = msgs
        .iter()
        .find(|m| m.get("attachment").is_some())
        .expect("attachment message");
    assert_eq!(att["id"], fid.trim());
    assert_eq!(att["attachment"]["name"], "photo.bin");
    let out = dir.path().join("got.bin");
    ok(haven(
        &c,
        &url,
        &["get-file", fid.trim(), out.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // Remove and leave.
    ok(haven(&b, &url, &["group", "remove", "friends", "carol"]));
    ok(haven(&b, &url, &["send", "#friends", "carol is gone"]));
    let csync = ok(haven(&c, &url, &["sync"]));
    assert!(!csync.contains("carol is gone"), "{csync}");
    ok(haven(&a, &url, &["group", "leave", "friends"]));
    ok(haven(&b, &url, &["sync"]));
    let members = ok(haven(&b, &url, &["group", "members", "friends"]));
    assert_eq!(members.lines().count(), 1, "{members}");

    // Errors: clear message, non-zero exit, nothing changed.
    fails(haven(&a, &url, &["send", "nobody", "x"]), "unknown user");
    fails(
        haven(&a, &url, &["send", "#nogroup", "x"]),
        "no group named",
    );
    fails(
        haven(&a, &url, &["send", "Not A Name", "x"]),
        "not a user name",
    );
    fails(
        haven(&a, &url, &["group", "add", "friends", "carol"]),
        "no group named",
    );
    fails(
        haven(&dir.path().join("nobody"), &url, &["sync"]),
        "no Haven profile",
    );
    fails(
        register(
            &a,
            "http://127.0.0.1:9",
            "zed",
            &["--server", "http://127.0.0.1:9"],
        ),
        "a Haven profile already exists",
    );
    fails(
        register(
            &dir.path().join("zed"),
            &url,
            "zed",
            &["--server", "http://127.0.0.1:9"],
        ),
        "unreachable",
    );
    fails(
        register(&dir.path().join("alice2"), &url, "alice", &[]),
        "already exists",
    );
    // A date of birth is required, and must be one; nothing is created without it.
    fails(
        haven(&dir.path().join("nobirth"), &url, &["register", "nobirth"]),
        "--birth-date",
    );
    fails(
        haven(
            &dir.path().join("badbirth"),
            &url,
            &["register", "badbirth", "--birth-date", "1990-02-30"],
        ),
        "YYYY-MM-DD",
    );
    assert!(!dir.path().join("badbirth").join("haven.db").exists());
    let convs = ok(haven(&a, &url, &["conversations"]));
    assert_eq!(convs.lines().count(), 2, "{convs}");
}

#[test]
fn device_link_via_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let (a1, a2, b) = (
        dir.path().join("a1"),
        dir.path().join("a2"),
        dir.path().join("b"),
    );
    ok(register(&a1, &url, "alice", &[]));
    ok(register(&b, &url, "bob", &[]));
    connect(&a1, "alice", &b, "bob", &url);
    ok(haven(&b, &url, &["send", "alice", "first"]));
    ok(haven(&a1, &url, &["sync"]));
    let code = ok(haven(&a1, &url, &["device", "link"]));
    ok(haven(&a2, &url, &["link", code.trim(), "--server", &url]));
    fails(
        haven(
            &dir.path().join("a3"),
            &url,
            &["link", code.trim(), "--server", &url],
        ),
        "link code",
    );
    ok(haven(&a1, &url, &["sync"]));
    ok(haven(&a2, &url, &["sync"]));
    ok(haven(&b, &url, &["send", "alice", "to both"]));
    assert!(ok(haven(&a2, &url, &["sync"])).contains("to both"));
    assert!(ok(haven(&a1, &url, &["sync"])).contains("to both"));
    assert_eq!(ok(haven(&a1, &url, &["device", "list"])).lines().count(), 2);
    // The laptop signed the phone in: version 2 of alice's list has both, and nobody has an
    // alarm.
    let keys = ok(haven(&a2, &url, &["keys"]));
    assert!(keys.contains("alice: device list version 2"), "{keys}");
    assert_eq!(
        keys.lines().filter(|l| l.contains(" key ")).count(),
        2,
        "{keys}"
    );
    assert!(
        keys.contains("(this device)") && keys.contains("no alarms"),
        "{keys}"
    );
    let shown: Value =
        serde_json::from_str(&ok(haven(&b, &url, &["keys", "show", "alice", "--json"]))).unwrap();
    assert_eq!(shown["version"], 2);
    assert_eq!(shown["devices"].as_array().unwrap().len(), 2);
    // bob checked version 2 against the key directory, and the directory audits clean.
    assert!(shown["directory_epoch"].as_u64().unwrap() >= 2, "{shown}");
    assert!(
        keys.contains("checked against the directory at epoch"),
        "{keys}"
    );
    let audit: Value = serde_json::from_str(&ok(haven(
        &b,
        &url,
        &["kt", "audit", "--server", &url, "--json"],
    )))
    .unwrap();
    assert_eq!(audit["ok"], true, "{audit}");
    assert!(audit["epochs"].as_array().unwrap().len() >= 3, "{audit}");
    let text = ok(haven(
        &b,
        &url,
        &["kt", "audit", "--server", &url, "--from", "1"],
    ));
    assert!(text.contains("epochs verified"), "{text}");
    let all: Value =
        serde_json::from_str(&ok(haven(&b, &url, &["keys", "--json", "--all"]))).unwrap();
    assert_eq!(all["alarms"], serde_json::json!([]));
    fails(haven(&b, &url, &["keys", "ack", "1"]), "no open alarm 1");
    // A code typed without its secret is refused before anything is sent.
    fails(
        haven(
            &dir.path().join("a4"),
            &url,
            &["link", "ABCD-EFGH-JKMN", "--server", &url],
        ),
        "the server's code and the secret",
    );
    assert!(!dir.path().join("a4").join("haven.db").exists());
}

#[test]
fn demo_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .arg("demo")
        .output()
        .unwrap();
    let stdout = ok(out);
    assert!(
        stdout.contains("plaintext found in server data: false"),
        "{stdout}"
    );
    assert!(stdout.contains("bob downloads and decrypts it"));
    assert!(
        stdout.contains("carol writes to mia: refused: server refused (403): mia only accepts messages from their contacts"),
        "{stdout}"
    );
    assert!(
        stdout.contains("[alice] alice: hi mia, it's your aunt"),
        "{stdout}"
    );
}

#[test]
fn chat_sends_typed_lines_and_shows_incoming_live() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(register(&a, &url, "alice", &[]));
    ok(register(&b, &url, "bob", &[]));
    connect(&a, "alice", &b, "bob", &url);
    ok(haven(&a, &url, &["send", "bob", "hello"]));

    // Bob opens a chat with Alice; his typed line is sent, and Alice's reply shows up live.
    let mut chat = Command::new(env!("CARGO_BIN_EXE_haven"))
        .arg("--home")
        .arg(&b)
        .args(["chat", "alice"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = chat.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let wait_for = |needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chat never printed {needle:?}"));
            if line.contains(needle) {
                return line;
            }
        }
    };
    assert_eq!(wait_for("hello"), "[alice] alice: hello");
    let mut stdin = chat.stdin.take().unwrap();
    writeln!(stdin, "typed in chat").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = ok(haven(&a, &url, &["sync"]));
        if out.contains("typed in chat") {
            break;
        }
        assert!(Instant::now() < deadline, "alice never got the chat line");
        std::thread::sleep(Duration::from_millis(200));
    }
    ok(haven(&a, &url, &["send", "bob", "live reply"]));
    assert_eq!(wait_for("live reply"), "[alice] alice: live reply");
    drop(stdin); // Ctrl-D ends the session.
    let status = chat.wait().unwrap();
    assert!(status.success());
}

#[test]
fn messages_stored_by_any_command_are_shown_once_by_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(register(&a, &url, "alice", &[]));
    ok(register(&b, &url, "bob", &[]));
    ok(haven(&a, &url, &["send", "bob", "while you were away"]));
    // Bob's `send` syncs first (storing Alice's message) without printing it…
    ok(haven(&b, &url, &["send", "alice", "replying blind"]));
    // …so the next `sync` shows it, once, and not Bob's own message.
    let out = ok(haven(&b, &url, &["sync"]));
    assert_eq!(out.matches("while you were away").count(), 1, "{out}");
    assert!(!out.contains("replying blind"), "{out}");
    assert!(!ok(haven(&b, &url, &["sync"])).contains("while you were away"));
    assert!(ok(haven(&a, &url, &["sync"])).contains("replying blind"));
}

/// Conversations by id, ambiguous names refused with the candidates, consent to a re-add, and
/// scoped message ids — as a user runs them.
#[test]
fn ids_ambiguity_consent_and_scoped_get_file_via_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, url) = start(&dir.path().join("data"));
    let (a, b) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(register(&a, &url, "alice", &[]));
    ok(register(&b, &url, "bob", &[]));

    // `conversations` shows each conversation's short id and members; `id:` addresses it.
    ok(haven(
        &a,
        &url,
        &["group", "create", "fam", "--members", "bob"],
    ));
    let joined = json_lines(&ok(haven(&b, &url, &["sync", "--json"])));
    assert!(
        joined
            .iter()
            .any(|e| e["event"] == "joined" && e["by"] == "alice"),
        "{joined:?}"
    );
    let convs = ok(haven(&b, &url, &["conversations"]));
    let line = convs.lines().find(|l| l.contains("#fam")).unwrap();
    assert!(line.starts_with("id:"), "{line}");
    assert!(line.ends_with("members alice bob"), "{line}");
    let id = line.split_whitespace().next().unwrap().to_owned();
    let listed = json_lines(&ok(haven(&b, &url, &["conversations", "--json"])));
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["state"], "active");
    ok(haven(&b, &url, &["send", &id, "by id"]));
    let got = json_lines(&ok(haven(&a, &url, &["sync", "--json"])));
    let m = got.iter().find(|m| m["text"] == "by id").unwrap();
    assert_eq!(m["conversation"], "#fam");
    assert!(id.ends_with(&m["conversation_id"].as_str().unwrap()[..8]));
    fails(
        haven(&b, &url, &["send", "id:12", "x"]),
        "not a conversation id",
    );

    // Two groups we left with the same name: the name is refused, listing both ids.
    for _ in 0..2 {
        ok(haven(&a, &url, &["group", "create", "dup"]));
        ok(haven(&a, &url, &["group", "leave", "dup"]));
    }
    let out = haven(&a, &url, &["history", "#dup"]);
    fails(out.clone(), "#dup matches 2 conversations");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("id:").count(), 3, "{err}");

    // Consent: bob leaves, alice adds him back: an invitation he must accept.
    ok(haven(&b, &url, &["group", "leave", "fam"]));
    ok(haven(&a, &url, &["sync"]));
    ok(haven(&a, &url, &["group", "add", "fam", "bob"]));
    ok(haven(&a, &url, &["send", "#fam", "while invited"]));
    let ev = json_lines(&ok(haven(&b, &url, &["sync", "--json"])));
    assert!(
        ev.iter()
            .any(|e| e["event"] == "invited" && e["by"] == "alice"),
        "{ev:?}"
    );
    let m = ev.iter().find(|m| m["text"] == "while invited").unwrap();
    assert_eq!(m["invitation"], true);
    fails(haven(&b, &url, &["send", "#fam", "x"]), "invitation");
    assert!(ok(haven(&b, &url, &["history", "#fam"])).contains("(invitation id:"));
    assert!(ok(haven(&b, &url, &["accept", "#fam"])).starts_with("accepted #fam"));
    ok(haven(&b, &url, &["send", "#fam", "back again"]));
    assert!(ok(haven(&a, &url, &["sync"])).contains("back again"));

    // get-file: scoped forms; a scope that excludes the message finds nothing.
    let file = dir.path().join("f.bin");
    std::fs::write(&file, b"scoped").unwrap();
    let fid = ok(haven(
        &a,
        &url,
        &["send-file", "#fam", file.to_str().unwrap()],
    ));
    ok(haven(&b, &url, &["sync"]));
    let out = dir.path().join("got.bin");
    let o = out.to_str().unwrap();
    ok(haven(
        &b,
        &url,
        &["get-file", fid.trim(), o, "--from", "alice", "--in", "#fam"],
    ));
    assert_eq!(std::fs::read(&out).unwrap(), b"scoped");
    fails(
        haven(&b, &url, &["get-file", fid.trim(), o, "--from", "bob"]),
        "no message",
    );
}

/// The README's device, logout and admin commands, as a user and an operator run them.
#[test]
fn device_remove_logout_and_frank_key_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, url) = start(&data);
    let (laptop, phone) = (dir.path().join("laptop"), dir.path().join("phone"));
    ok(register(
        &laptop,
        &url,
        "alice",
        &["--device-name", "laptop"],
    ));
    let code = ok(haven(&laptop, &url, &["device", "link"]));
    ok(haven(
        &phone,
        &url,
        &["link", code.trim(), "--device-name", "phone"],
    ));
    let list = ok(haven(&laptop, &url, &["device", "list"]));
    assert_eq!(list.lines().count(), 2, "{list}");
    ok(haven(&laptop, &url, &["logout"]));
    // Logged out, the next command logs in again with the device key.
    ok(haven(&laptop, &url, &["sync"]));
    let out = ok(haven(&laptop, &url, &["logout", "--all"]));
    assert!(out.contains("revoked 2 sessions"), "{out}");
    fails(
        haven(&laptop, &url, &["device", "remove", "tablet"]),
        "no device tablet",
    );
    let out = ok(haven(&laptop, &url, &["device", "remove", "phone"]));
    assert!(out.starts_with("removed device"), "{out}");
    fails(haven(&phone, &url, &["sync"]), "not found");
    let list = ok(haven(&laptop, &url, &["device", "list"]));
    assert_eq!(list.lines().count(), 1, "{list}");
    drop(server);

    let admin = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_haven"))
            .args(["admin", "--data"])
            .arg(&data)
            .args(args)
            .output()
            .unwrap()
    };
    let keys = ok(admin(&["frank-key", "list"]));
    assert_eq!(keys.lines().count(), 1, "{keys}");
    assert!(keys.starts_with("1 ") && keys.contains("current"), "{keys}");
    assert_eq!(ok(admin(&["frank-key", "rotate"])).trim(), "2");
    let keys = ok(admin(&["frank-key", "list"]));
    assert_eq!(keys.lines().count(), 2, "{keys}");
    assert!(
        keys.lines().nth(1).unwrap().starts_with("2 ")
            && keys.lines().nth(1).unwrap().ends_with("current"),
        "{keys}"
    );
    // The key itself is never printed.
    let file = std::fs::read_to_string(data.join("frank-keys")).unwrap();
    let key_hex = file
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .nth(3)
        .unwrap();
    assert!(!keys.contains(key_hex));
    fails(
        Command::new(env!("CARGO_BIN_EXE_haven"))
            .args(["admin", "--data"])
            .arg(dir.path().join("nowhere"))
            .args(["frank-key", "list"])
            .output()
            .unwrap(),
        "no franking key file",
    );
}
