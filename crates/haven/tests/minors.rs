//! Safety by design for minors, end to end: a `haven server` process on a loopback port (its
//! stdout and stderr kept in files) and the `haven` command as minors and adults run it.
//! Birth dates are computed from today's date, so the accounts keep their ages.
//!
//! What is checked: an adult cannot reach a minor outside their contacts by any path (1:1,
//! contact request, group create, group add, raw HTTP), and the refusal reads like any other
//! ("NAME only accepts messages from their contacts", no word about age); a minor's own contact
//! request lets the adult in once accepted; message requests between minors (one message, then
//! refused until accepted; accept and decline); blocks, restricts and message settings; the
//! daily limit on new contacts; and that the server's output never holds a date of birth, an
//! age band's name or a risk score.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Value};
use support::{born_years_ago, spawn_server, ServerProcess, ADULT_BIRTH_DATE};

/// A server in a temporary directory (its output in `server.out` and `server.err`), and
/// profiles beside it. Registration and write bursts are raised: these tests register many
/// accounts from one address.
struct World {
    dir: tempfile::TempDir,
    _server: ServerProcess,
    url: String,
    /// Every date of birth registered, for [`World::assert_server_output_clean`].
    birth_dates: std::cell::RefCell<Vec<String>>,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let out = File::create(dir.path().join("server.out")).unwrap();
        let err = File::create(dir.path().join("server.err")).unwrap();
        let (server, url) = spawn_server(
            &dir.path().join("data"),
            &["--auth-burst", "100000", "--write-burst", "100000"],
            Stdio::from(out),
            Stdio::from(err),
        );
        World {
            dir,
            _server: server,
            url,
            birth_dates: Default::default(),
        }
    }

    fn home(&self, who: &str) -> PathBuf {
        self.dir.path().join("homes").join(who)
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
        let out = self.run(who, args);
        assert!(
            out.status.success(),
            "{who} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    fn fails(&self, who: &str, args: &[&str]) -> String {
        let out = self.run(who, args);
        assert!(
            !out.status.success(),
            "{who} {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn register(&self, who: &str, birth_date: &str) {
        self.birth_dates.borrow_mut().push(birth_date.to_owned());
        self.ok(who, &["register", who, "--birth-date", birth_date]);
    }

    fn adult(&self, who: &str) {
        self.register(who, ADULT_BIRTH_DATE);
    }

    /// `a` asks `b` to connect and `b` accepts.
    fn connect(&self, a: &str, b: &str) {
        self.ok(a, &["contacts", "add", b]);
        self.ok(b, &["contacts", "accept", a]);
    }

    fn sync(&self, who: &str) -> Vec<Value> {
        json_lines(&self.ok(who, &["sync", "--json"]))
    }

    fn json(&self, who: &str, args: &[&str]) -> Value {
        serde_json::from_str(self.ok(who, args).trim()).unwrap()
    }

    /// The session token `who`'s device holds (for raw API calls as that device).
    fn token(&self, who: &str) -> String {
        let engine = haven_client::Engine::open(&self.home(who)).unwrap();
        engine.session_token().unwrap().unwrap().token.clone()
    }

    /// The server's stdout and stderr, and any log file in its data directory, hold no date of
    /// birth registered, no age band's name and no risk score.
    fn assert_server_output_clean(&self) {
        let mut texts = vec![
            std::fs::read_to_string(self.dir.path().join("server.out")).unwrap(),
            std::fs::read_to_string(self.dir.path().join("server.err")).unwrap(),
        ];
        for path in files_under(&self.dir.path().join("data")) {
            if path.extension().is_some_and(|e| e == "log") {
                texts.push(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
            }
        }
        let dates = self.birth_dates.borrow();
        for text in &texts {
            for needle in dates
                .iter()
                .map(String::as_str)
                .chain(["13-15", "16-17", "under-13", "score"])
            {
                assert!(
                    !text.to_lowercase().contains(needle),
                    "the server's output holds {needle:?}:\n{text}"
                );
            }
        }
        // No file the server keeps holds a date of birth either (it keeps the band only).
        for path in files_under(&self.dir.path().join("data")) {
            let bytes = std::fs::read(&path).unwrap();
            let text = String::from_utf8_lossy(&bytes);
            for d in dates.iter() {
                assert!(
                    !text.contains(d.as_str()),
                    "{} holds the date of birth {d}",
                    path.display()
                );
            }
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn json_lines(s: &str) -> Vec<Value> {
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Message lines of `sync --json` output: (from, text, marked as a request).
fn messages(lines: &[Value]) -> Vec<(String, String, bool)> {
    lines
        .iter()
        .filter(|l| l.get("from_device").is_some())
        .map(|l| {
            (
                l["from"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap_or("").to_owned(),
                l.get("request") == Some(&json!(true)),
            )
        })
        .collect()
}

/// The refusal a command printed: its stderr holds `expected` exactly, and what the server
/// said says nothing about age.
fn assert_neutral_refusal(stderr: &str, expected: &str) {
    assert!(
        stderr.contains(expected),
        "stderr {stderr:?} lacks {expected:?}"
    );
    assert_no_age_words(stderr);
}

/// No word about age: not "minor", "teen", "child", "age", "13" or "15" (as words; "messages"
/// is fine), nor a band's name.
fn assert_no_age_words(text: &str) {
    let mut lower = text.to_lowercase();
    // A retry time ("try again after 2026-12-04 13:15 UTC (in 1440 min)") holds clock numbers,
    // not ages: it is left out of the word check.
    if let Some(i) = lower.find("try again after") {
        let end = lower[i..].find(')').map_or(lower.len(), |j| i + j + 1);
        lower.replace_range(i..end, "try again after");
    }
    for s in ["minor", "teen", "child", "13-15", "16-17", "under-13"] {
        assert!(!lower.contains(s), "{text:?} says {s:?}");
    }
    for w in lower.split(|c: char| !c.is_ascii_alphanumeric()) {
        assert!(
            !["age", "13", "15", "ages", "aged"].contains(&w),
            "{text:?} says {w:?}"
        );
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A raw, authenticated JSON call; (status, body).
fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    runtime().block_on(async {
        let c = reqwest::Client::new();
        let mut rb = match method {
            "GET" => c.get(url),
            "PUT" => c.put(url),
            "DELETE" => c.delete(url),
            _ => c.post(url),
        };
        if let Some(t) = token {
            rb = rb.header("Authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            rb = rb
                .header("Content-Type", "application/json")
                .body(b.to_string());
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

/// Registers an account with raw HTTP only (no profile, no key packages): a target for
/// contact requests.
fn raw_register(url: &str, user: &str, birth_date: &str) {
    let auth = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let mls = SigningKey::from_bytes(&rand::random::<[u8; 32]>())
        .verifying_key()
        .to_bytes();
    let sig = auth.sign(&haven_proto::api::mls_key_message(&mls));
    let (st, v) = call(
        "POST",
        &format!("{url}/v1/register"),
        None,
        Some(json!({
            "user": user,
            "device_name": "test",
            "auth_key": B64.encode(auth.verifying_key().to_bytes()),
            "mls_key": B64.encode(mls),
            "mls_key_signature": B64.encode(sig.to_bytes()),
            "birth_date": birth_date,
        })),
    );
    assert_eq!(st, 200, "{v}");
}

#[test]
fn adults_cannot_reach_minors_outside_their_contacts() {
    let w = World::new();
    let mia_born = born_years_ago(14);
    w.register("mia", &mia_born);
    w.adult("adam");
    w.adult("ed");
    w.adult("cora");
    let me = w.json("mia", &["me", "--json"]);
    assert_eq!(me["age_band"], "13-15", "{me}");
    assert_eq!(me["messages"], "requests", "{me}");

    let refusal = "mia only accepts messages from their contacts";
    // 1:1.
    assert_neutral_refusal(&w.fails("adam", &["send", "mia", "hi mia"]), refusal);
    // A contact request.
    assert_neutral_refusal(&w.fails("adam", &["contacts", "add", "mia"]), refusal);
    // A group created with her.
    assert_neutral_refusal(
        &w.fails("adam", &["group", "create", "club", "--members", "mia"]),
        refusal,
    );
    // Added to an existing group.
    w.connect("adam", "ed");
    w.ok("adam", &["group", "create", "chess", "--members", "ed"]);
    assert_neutral_refusal(&w.fails("adam", &["group", "add", "chess", "mia"]), refusal);
    // Raw HTTP as adam's device, past any client.
    let (st, v) = call(
        "POST",
        &format!("{}/v1/contacts/requests", w.url),
        Some(&w.token("adam")),
        Some(json!({"user": "mia"})),
    );
    assert_eq!(st, 403, "{v}");
    assert_eq!(v["code"], "forbidden", "{v}");
    assert_eq!(v["message"], refusal, "{v}");
    assert_no_age_words(&v.to_string());
    // A device adam links now is adam: the rules are the account's, not the device's.
    let code = w.ok("adam", &["device", "link"]);
    w.ok("adam-phone", &["link", code.trim(), "--server", &w.url]);
    assert_neutral_refusal(
        &w.fails("adam-phone", &["send", "mia", "hi from my phone"]),
        refusal,
    );
    assert_neutral_refusal(&w.fails("adam-phone", &["contacts", "add", "mia"]), refusal);
    // Nothing reached her.
    let lines = w.sync("mia");
    assert!(messages(&lines).is_empty(), "{lines:?}");
    assert!(w.json("mia", &["requests", "--json"])["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    assert!(w.json("mia", &["contacts", "list", "--json"])["incoming"]
        .as_array()
        .unwrap()
        .is_empty());

    // An adult who takes messages from contacts only gets the same refusal.
    w.ok("cora", &["settings", "messages", "contacts-only"]);
    assert_eq!(
        w.json("cora", &["me", "--json"])["messages"],
        "contacts-only"
    );
    assert_neutral_refusal(
        &w.fails("adam", &["send", "cora", "hi cora"]),
        "cora only accepts messages from their contacts",
    );

    // The minor asks the adult; once he accepts, he can write to her.
    w.ok("mia", &["contacts", "add", "adam"]);
    let list = w.json("adam", &["contacts", "list", "--json"]);
    assert_eq!(list["incoming"][0]["user"], "mia", "{list}");
    assert_eq!(
        w.json("mia", &["contacts", "list", "--json"])["outgoing"][0]["user"],
        "adam"
    );
    w.ok("adam", &["contacts", "accept", "mia"]);
    assert_eq!(
        w.json("mia", &["contacts", "list", "--json"])["contacts"],
        json!(["adam"])
    );
    w.ok("adam", &["send", "mia", "hello mia"]);
    let got = messages(&w.sync("mia"));
    assert_eq!(
        got,
        vec![("adam".to_owned(), "hello mia".to_owned(), false)],
        "a connection's message is no request"
    );
    w.ok("mia", &["send", "adam", "hi adam"]);
    assert!(messages(&w.sync("adam"))
        .iter()
        .any(|(f, t, r)| f == "mia" && t == "hi adam" && !r));

    // Even a connection's group add of a minor is a group request, with the members shown;
    // declining it leaves the group.
    w.ok("adam", &["group", "add", "chess", "mia"]);
    w.sync("mia");
    let reqs = w.json("mia", &["requests", "--json"]);
    let r = &reqs["requests"][0];
    assert_eq!(r["kind"], "group", "{reqs}");
    assert_eq!(r["from"], "adam", "{reqs}");
    let members: Vec<&str> = r["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(
        members.contains(&"ed") && members.contains(&"adam"),
        "{reqs}"
    );
    let text = w.ok("mia", &["requests"]);
    assert!(
        text.contains("group request from adam") && text.contains("ed"),
        "{text}"
    );
    w.ok("adam", &["send", "#chess", "welcome to chess"]);
    let lines = w.sync("mia");
    assert!(
        messages(&lines)
            .iter()
            .filter(|(f, _, _)| f == "adam")
            .all(|(_, _, r)| *r),
        "messages of a pending group request are marked: {lines:?}"
    );
    let out = w.ok("mia", &["requests", "decline", "adam"]);
    assert!(out.contains("left"), "{out}");
    w.sync("adam");
    let convs = w.ok("mia", &["conversations"]);
    assert!(
        convs
            .lines()
            .any(|l| l.contains("chess") && l.contains("left")),
        "{convs}"
    );

    // A moderator sees adam's approaches: metadata only, with the score's parts.
    w.adult("mod1");
    let out = Command::new(env!("CARGO_BIN_EXE_haven"))
        .arg("admin")
        .arg("--data")
        .arg(w.dir.path().join("data"))
        .args(["role", "grant", "mod1", "moderator"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = w.json("mod1", &["mod", "signals", "adam", "--json"]);
    assert_eq!(r["user"], "adam", "{r}");
    assert!(r["score"].as_f64().is_some(), "{r}");
    let timeline = r["timeline"].as_array().unwrap();
    assert!(
        timeline.iter().any(|e| e["target"] == "mia"
            && e["decision"].as_str().unwrap().starts_with("refused")),
        "{r}"
    );
    let text = w.ok("mod1", &["mod", "signals", "adam"]);
    assert!(
        text.contains("risk score") && text.contains("mia"),
        "{text}"
    );
    w.fails("adam", &["mod", "signals", "mia"]);

    w.assert_server_output_clean();
}

/// A minor who declined a group request and is added to the same group again is asked again:
/// the new add is a new group request, which she can accept.
#[test]
fn a_declined_group_request_is_asked_again() {
    let w = World::new();
    w.register("mia", &born_years_ago(14));
    w.adult("adam");
    w.adult("ed");
    w.connect("mia", "adam");
    w.connect("adam", "ed");
    w.ok("adam", &["group", "create", "chess", "--members", "ed,mia"]);
    w.sync("mia");
    assert_eq!(
        w.json("mia", &["requests", "--json"])["requests"][0]["kind"],
        "group"
    );
    w.ok("mia", &["requests", "decline", "adam"]);
    w.sync("adam");

    w.ok("adam", &["group", "add", "chess", "mia"]);
    w.sync("mia");
    let reqs = w.json("mia", &["requests", "--json"]);
    assert_eq!(reqs["requests"][0]["kind"], "group", "asked again: {reqs}");
    let out = w.ok("mia", &["requests", "accept", "adam"]);
    assert!(out.contains("accepted #chess"), "{out}");
    w.ok("adam", &["send", "#chess", "glad you joined"]);
    let got = messages(&w.sync("mia"));
    assert!(
        got.iter()
            .any(|(f, t, r)| f == "adam" && t == "glad you joined" && !r),
        "{got:?}"
    );
    w.ok("mia", &["send", "#chess", "hi chess"]);

    w.assert_server_output_clean();
}

#[test]
fn message_requests_between_minors() {
    let w = World::new();
    w.register("mia", &born_years_ago(14));
    w.register("tess", &born_years_ago(16));
    w.register("zoe", &born_years_ago(15));

    // A minor outside mia's contacts: one message, as a request.
    w.ok("tess", &["send", "mia", "hi from tess"]);
    let lines = w.sync("mia");
    assert_eq!(
        messages(&lines),
        vec![("tess".to_owned(), "hi from tess".to_owned(), true)],
        "{lines:?}"
    );
    // tess is from an older band: mia gets a safety notice about her, with what she can do.
    let notices: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("notice") == Some(&json!("safety")))
        .collect();
    assert_eq!(notices.len(), 1, "{lines:?}");
    assert_eq!(notices[0]["about"], "tess");
    assert!(notices[0]["text"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(
        notices[0]["actions"],
        json!(["block", "restrict", "report"])
    );
    let reqs = w.json("mia", &["requests", "--json"]);
    assert_eq!(reqs["requests"][0]["from"], "tess", "{reqs}");
    assert_eq!(reqs["requests"][0]["kind"], "direct", "{reqs}");
    let text = w.ok("mia", &["requests"]);
    assert!(text.contains("message request from tess"), "{text}");

    // Until mia accepts, tess cannot send another.
    let err = w.fails("tess", &["send", "mia", "are you there?"]);
    assert!(err.contains("mia"), "{err}");
    assert_no_age_words(&err);
    assert!(messages(&w.sync("mia")).is_empty());

    // Accepted: messages flow, unmarked.
    w.ok("mia", &["requests", "accept", "tess"]);
    assert!(w.json("mia", &["requests", "--json"])["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    w.ok("tess", &["send", "mia", "thanks for accepting"]);
    w.ok("tess", &["send", "mia", "and another"]);
    let got = messages(&w.sync("mia"));
    assert_eq!(
        got,
        vec![
            ("tess".to_owned(), "thanks for accepting".to_owned(), false),
            ("tess".to_owned(), "and another".to_owned(), false),
        ]
    );
    let convs = w.json("mia", &["conversations", "--json"]);
    assert_eq!(convs["accepted"], true, "accepted here too: {convs}");
    w.ok("mia", &["send", "tess", "hi tess"]);
    assert!(messages(&w.sync("tess"))
        .iter()
        .any(|(f, t, _)| f == "mia" && t == "hi tess"));

    // Declined: nothing more gets through.
    w.ok("zoe", &["send", "mia", "hi from zoe"]);
    let got = messages(&w.sync("mia"));
    assert_eq!(
        got,
        vec![("zoe".to_owned(), "hi from zoe".to_owned(), true)]
    );
    w.ok("mia", &["requests", "decline", "zoe"]);
    assert!(w.json("mia", &["requests", "--json"])["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    let err = w.fails("zoe", &["send", "mia", "hello again"]);
    assert_no_age_words(&err);
    assert!(messages(&w.sync("mia")).is_empty());

    // In text: the request, the safety notice with what to do, and `haven accept` answering
    // the request on the server too (one decision, whichever command makes it).
    w.register("kim", &born_years_ago(17));
    w.ok("kim", &["send", "mia", "hi from kim"]);
    let text = w.ok("mia", &["sync"]);
    assert!(text.contains("[request] [kim] kim: hi from kim"), "{text}");
    assert!(
        text.contains("message request: kim wants to message you"),
        "{text}"
    );
    assert!(
        text.contains("safety notice about kim")
            && text.contains("haven block kim")
            && text.contains("haven restrict kim")
            && text.contains("haven report-user kim"),
        "{text}"
    );
    w.fails("kim", &["send", "mia", "hello?"]);
    w.ok("mia", &["accept", "kim"]);
    assert!(w.json("mia", &["requests", "--json"])["requests"]
        .as_array()
        .unwrap()
        .is_empty());
    w.ok("kim", &["send", "mia", "accepted now"]);
    let text = w.ok("mia", &["sync"]);
    assert!(text.contains("[kim] kim: accepted now"), "{text}");
    assert!(!text.contains("[request]"), "{text}");

    w.assert_server_output_clean();
}

#[test]
fn blocks_restricts_and_message_settings() {
    let w = World::new();
    for u in ["ann", "ben", "cal", "dan", "eve"] {
        w.adult(u);
    }
    w.connect("cal", "ann");
    w.connect("cal", "ben");
    w.ok("cal", &["group", "create", "trio", "--members", "ann,ben"]);
    w.sync("ann");
    w.sync("ben");

    // Blocked: ben's 1:1 is refused with the neutral text; in the group, ann does not see him.
    w.ok("ann", &["block", "ben"]);
    assert_eq!(
        w.json("ann", &["contacts", "list", "--json"])["blocked"],
        json!(["ben"])
    );
    assert_neutral_refusal(
        &w.fails("ben", &["send", "ann", "hi ann"]),
        "ann only accepts messages from their contacts",
    );
    let err = w.fails("ann", &["send", "ben", "hi ben"]);
    assert!(err.contains("you blocked ben"), "{err}");
    w.ok("ben", &["send", "#trio", "ben in trio"]);
    w.ok("cal", &["send", "#trio", "cal in trio"]);
    let got = messages(&w.sync("ann"));
    assert!(
        got.iter().any(|(f, t, _)| f == "cal" && t == "cal in trio"),
        "{got:?}"
    );
    assert!(got.iter().all(|(f, _, _)| f != "ben"), "{got:?}");
    let text = w.ok("ann", &["history", "#trio"]);
    assert!(
        text.contains("cal in trio") && !text.contains("ben in trio"),
        "{text}"
    );

    // Unblocked: he shows again.
    w.ok("ann", &["unblock", "ben"]);
    w.ok("ben", &["send", "#trio", "ben again"]);
    let got = messages(&w.sync("ann"));
    assert!(
        got.iter()
            .any(|(f, t, r)| f == "ben" && t == "ben again" && !r),
        "{got:?}"
    );

    // Restricted: cal's messages arrive as requests (text only), and again normally after.
    w.ok("ann", &["restrict", "cal"]);
    w.ok("cal", &["send", "#trio", "cal restricted"]);
    let file = w.dir.path().join("note.txt");
    std::fs::write(&file, b"a file").unwrap();
    w.ok("cal", &["send-file", "#trio", file.to_str().unwrap()]);
    let lines = w.sync("ann");
    let cal: Vec<&Value> = lines.iter().filter(|l| l["from"] == "cal").collect();
    assert_eq!(cal.len(), 2, "{lines:?}");
    assert!(cal.iter().all(|l| l["request"] == true), "{lines:?}");
    assert_eq!(cal[0]["text"], "cal restricted");
    assert!(cal[1].get("attachment").is_none(), "{lines:?}");
    assert_eq!(cal[1]["attachment_withheld"], true, "{lines:?}");
    let id = cal[1]["id"].as_str().unwrap();
    let err = w.fails(
        "ann",
        &["get-file", id, w.dir.path().join("got").to_str().unwrap()],
    );
    assert!(err.contains("request"), "{err}");
    w.ok("ann", &["unrestrict", "cal"]);
    w.ok("cal", &["send", "#trio", "cal unrestricted"]);
    let got = messages(&w.sync("ann"));
    assert!(
        got.iter()
            .any(|(f, t, r)| f == "cal" && t == "cal unrestricted" && !r),
        "{got:?}"
    );

    // By default an adult's first message from a non-connection is a request; with
    // `everyone`, messages arrive directly.
    w.ok("eve", &["send", "ann", "hi ann, from eve"]);
    let got = messages(&w.sync("ann"));
    assert_eq!(
        got,
        vec![("eve".to_owned(), "hi ann, from eve".to_owned(), true)]
    );
    let text = w.ok("dan", &["settings", "messages", "everyone"]);
    assert!(text.contains("everyone"), "{text}");
    assert_eq!(w.json("dan", &["me", "--json"])["messages"], "everyone");
    w.ok("eve", &["send", "dan", "hi dan"]);
    w.ok("eve", &["send", "dan", "hi again dan"]);
    let got = messages(&w.sync("dan"));
    assert_eq!(
        got,
        vec![
            ("eve".to_owned(), "hi dan".to_owned(), false),
            ("eve".to_owned(), "hi again dan".to_owned(), false),
        ]
    );

    w.assert_server_output_clean();
}

#[test]
fn new_contacts_are_rate_limited() {
    let w = World::new();
    w.adult("rex");
    let mut refused = None;
    for i in 0..120 {
        let target = format!("target{i}");
        raw_register(&w.url, &target, ADULT_BIRTH_DATE);
        let out = w.run("rex", &["contacts", "add", &target]);
        if !out.status.success() {
            refused = Some((i, String::from_utf8_lossy(&out.stderr).into_owned()));
            break;
        }
    }
    let (i, err) = refused.expect("no limit on new contacts");
    assert!(i >= 1, "the first contact request was refused: {err}");
    assert!(err.contains("try again after"), "{err}");
    assert!(err.contains("429"), "{err}");
    assert_no_age_words(&err);
    // The refusal says when, in its body too.
    raw_register(&w.url, "onemore", ADULT_BIRTH_DATE);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/contacts/requests", w.url),
        Some(&w.token("rex")),
        Some(json!({"user": "onemore"})),
    );
    assert_eq!(st, 429, "{v}");
    assert_eq!(v["code"], "rate_limited", "{v}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(v["retry_at"].as_u64().unwrap() > now, "{v}");
    assert!(v["message"].as_str().unwrap().contains("try again after"));

    w.assert_server_output_clean();
}
