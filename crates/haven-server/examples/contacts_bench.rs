//! What the contact rules and risk signals add to a send and to a contact request: server CPU
//! and wall time per call, against a `haven` binary built before them (the anchor), in one run.
//!
//! `cargo run -p haven-server --example contacts_bench -- NEW_HAVEN [ANCHOR_HAVEN] [--calls N]`
//!
//! Each binary is started as `haven server` on a fresh data directory (SQLite, the embedded
//! default) with rate limits raised out of the way. Calls are made one at a time over loopback
//! HTTP; the server's CPU time (user + system, `/proc/PID/stat`) over the calls, divided by
//! their number, is the cost per call. Measured:
//! - `send` in a two-account group (every build): the rules look the group up to see whether it
//!   is a 1:1 conversation;
//! - `send` in a 1:1 conversation between connections (new builds): the block and request checks;
//! - `contact request` (new builds): the rules, the time line and the risk refresh; 40 accounts
//!   each ask 20 others (a new account's daily limit is 25).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use ed25519_dalek::SigningKey;
use haven_proto::{DeviceId, GroupId};
use openmls::prelude::SignatureScheme;
use openmls_basic_credential::SignatureKeyPair;
use serde_json::json;
use support::{call, franked, rand_bytes, register_body, Dev, Member};

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
    has_contacts: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ticks_per_sec() -> f64 {
    // USER_HZ is 100 on every Linux this runs on (`getconf CLK_TCK`).
    100.0
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let (u, s): (f64, f64) = (f[11].parse().unwrap(), f[12].parse().unwrap());
    (u + s) / ticks_per_sec()
}

async fn start(bin: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin)
        .args([
            "server",
            "--listen",
            "127.0.0.1:0",
            "--data",
            dir.path().join("data").to_str().unwrap(),
            "--auth-burst",
            "1000000",
            "--write-burst",
            "1000000",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let url = loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "server exited");
        if let Some(u) = line.trim().strip_prefix("haven server listening on ") {
            break u.to_owned();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        while err.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    let (st, _) = call("GET", &format!("{url}/v1/policy"), None, None).await;
    Server {
        child,
        url,
        _dir: dir,
        has_contacts: st == 200,
    }
}

/// Registers through raw HTTP, with a birth date where the server takes one.
async fn register(s: &Server, user: &str) -> Dev {
    let auth = SigningKey::from_bytes(&rand_bytes());
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let mut body = register_body(user, &auth, signer.public());
    if !s.has_contacts {
        body.as_object_mut().unwrap().remove("birth_date");
    }
    let (st, v) = call("POST", &format!("{}/v1/register", s.url), None, Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let id: DeviceId = v["device_id"].as_str().unwrap().parse().unwrap();
    let token = login(&s.url, &id, &auth).await;
    let identity = format!("{user}/{id}");
    let d = Dev {
        user: user.into(),
        id,
        token,
        auth,
        mls: Member::new(signer, identity.as_bytes()),
    };
    let kps: Vec<String> = (0..4)
        .map(|_| B64.encode(d.mls.key_package(false)))
        .collect();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/key-packages", s.url),
        Some(&d.token),
        Some(json!({"key_packages": kps, "last_resort": B64.encode(d.mls.key_package(true))})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    d
}

async fn login(url: &str, id: &DeviceId, key: &SigningKey) -> String {
    let (st, v) = call(
        "POST",
        &format!("{url}/v1/login/challenge"),
        None,
        Some(json!({"device_id": id})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let sig = key.sign(&haven_proto::api::login_message(id, &nonce));
    let (st, v) = call(
        "POST",
        &format!("{url}/v1/login"),
        None,
        Some(json!({"device_id": id, "nonce": B64.encode(&nonce), "signature": B64.encode(sig.to_bytes())})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// `owner` creates a group (a 1:1 conversation with `peer` when `direct`) and adds `peer`.
async fn group_of_two(s: &Server, owner: &Dev, peer: &Dev, direct: bool) -> GroupId {
    let g = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
    let (mut group, info) = owner.mls.create_group(&g);
    let mut body = json!({"group_id": g, "group_info": B64.encode(info)});
    if direct {
        body["direct_with"] = json!(peer.user);
    }
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups", s.url),
        Some(&owner.token),
        Some(body),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        "POST",
        &format!("{}/v1/users/{}/key-packages/claim", s.url, peer.user),
        Some(&owner.token),
        Some(json!({"group_id": g})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let kps: Vec<Vec<u8>> = v["key_packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| B64.decode(k["key_package"].as_str().unwrap()).unwrap())
        .collect();
    let (commit, welcome) = owner.mls.add(&mut group, &kps);
    let (st, v) = call(
        "POST",
        &format!("{}/v1/groups/{g}/commits", s.url),
        Some(&owner.token),
        Some(json!({"commit": B64.encode(commit), "welcome": B64.encode(welcome)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    g
}

struct Figure {
    what: &'static str,
    calls: usize,
    cpu_us: f64,
    wall_us: f64,
}

/// Runs `calls` requests made by `make` one at a time; server CPU and wall time per call.
async fn measure<F, Fut>(s: &Server, what: &'static str, calls: usize, mut make: F) -> Figure
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let pid = s.child.id();
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    for i in 0..calls {
        let st = make(i).await;
        assert_eq!(st, 200, "{what} call {i}");
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu0;
    Figure {
        what,
        calls,
        cpu_us: cpu * 1e6 / calls as f64,
        wall_us: wall * 1e6 / calls as f64,
    }
}

async fn send(s: &Server, who: &Dev, g: &GroupId) -> u16 {
    let (m, _) = franked(g, 1);
    call(
        "POST",
        &format!("{}/v1/groups/{g}/messages", s.url),
        Some(&who.token),
        Some(json!({"message": B64.encode(m)})),
    )
    .await
    .0
}

async fn run(bin: &str, calls: usize) -> Vec<Figure> {
    let s = start(bin).await;
    let alice = register(&s, "alice").await;
    let bob = register(&s, "bob").await;
    let mut out = Vec::new();
    let g = group_of_two(&s, &alice, &bob, false).await;
    // Warm up (statement caches, connections).
    for _ in 0..50 {
        send(&s, &alice, &g).await;
    }
    out.push(measure(&s, "send, group of two", calls, |_| send(&s, &alice, &g)).await);
    if !s.has_contacts {
        return out;
    }
    let (st, v) = call(
        "POST",
        &format!("{}/v1/contacts/requests", s.url),
        Some(&alice.token),
        Some(json!({"user": "bob"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        "POST",
        &format!("{}/v1/contacts/alice/accept", s.url),
        Some(&bob.token),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let d = group_of_two(&s, &alice, &bob, true).await;
    for _ in 0..50 {
        send(&s, &alice, &d).await;
    }
    out.push(
        measure(&s, "send, 1:1 between connections", calls, |_| {
            send(&s, &alice, &d)
        })
        .await,
    );
    // Contact requests: 40 accounts ask 20 others each (new accounts may make 25 a day).
    let mut actors = Vec::new();
    for i in 0..40 {
        actors.push(register(&s, &format!("a{i}")).await);
    }
    for i in 0..20 {
        register(&s, &format!("t{i}")).await;
    }
    let n = 40 * 20;
    let url = s.url.clone();
    out.push(
        measure(&s, "contact request", n, |i| {
            let (a, t, url) = (&actors[i % 40], i / 40, url.clone());
            async move {
                call(
                    "POST",
                    &format!("{url}/v1/contacts/requests"),
                    Some(&a.token),
                    Some(json!({"user": format!("t{t}")})),
                )
                .await
                .0
            }
        })
        .await,
    );
    out
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut calls = 2000;
    if let Some(i) = args.iter().position(|a| a == "--calls") {
        calls = args[i + 1].parse().unwrap();
        args.drain(i..i + 2);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| build | call | calls | server CPU µs/call | wall µs/call |");
    println!("|---|---|---|---|---|");
    // Alternate the builds twice so a machine-wide slowdown shows in both.
    for _round in 0..2 {
        for bin in &args {
            for f in rt.block_on(run(bin, calls)) {
                println!(
                    "| {bin} | {} | {} | {:.0} | {:.0} |",
                    f.what, f.calls, f.cpu_us, f.wall_us
                );
            }
        }
    }
}
