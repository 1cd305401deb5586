//! The server process is killed with SIGKILL while messages are queued, then restarted on the
//! same data directory: nothing is lost and nothing is shown twice.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;
use support::ADULT_BIRTH_DATE;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use haven_client::{Body, Client, Event, Target};
use haven_proto::UserName;

/// A port nothing listens on, and one this test binary has not handed out before: the tests
/// run in parallel, and two servers told the same port would have one fail to bind while its
/// test talks to the other's server (which the other test kills).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap();
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Starts `haven server` on `port` and waits until this very process says it listens (not
/// merely until something accepts on the port).
fn start_server(data: &Path, port: u16) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_haven"))
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads (and keeps draining) the server's stderr; reports the listening line.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("haven server listening on") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(());
                }
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30))
        .expect("the server exited or did not start listening within 30 s");
    child
}

fn sigkill(child: &mut Child) {
    // Child::kill sends SIGKILL on Unix: no shutdown handler runs.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_queued_messages_loses_nothing_and_shows_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&data, port);

    let bob_name = UserName::new("bob").unwrap();
    let mut alice = Client::register(
        &dir.path().join("alice"),
        &url,
        &UserName::new("alice").unwrap(),
        "t",
        ADULT_BIRTH_DATE,
    )
    .await
    .unwrap();
    let mut bob = Client::register(
        &dir.path().join("bob"),
        &url,
        &bob_name,
        "t",
        ADULT_BIRTH_DATE,
    )
    .await
    .unwrap();
    support::connect(&mut alice, &mut bob).await;
    alice
        .send_text(&Target::User(bob_name.clone()), "m-0")
        .await
        .unwrap();
    bob.sync().await.unwrap();

    // Bob is offline; Alice queues messages; the server dies hard right after accepting them.
    let sent: Vec<String> = (1..=25).map(|i| format!("m-{i}")).collect();
    for t in &sent {
        alice
            .send_text(&Target::User(bob_name.clone()), t)
            .await
            .unwrap();
    }
    sigkill(&mut server);
    // While the server is down, clients get a clear error and lose nothing.
    assert!(bob.sync().await.is_err());

    let mut server = start_server(&data, port);
    let got: Vec<String> = bob
        .sync()
        .await
        .unwrap()
        .into_iter()
        .filter_map(|e| match e {
            Event::Message { message, .. } => match message.body {
                Body::Text(t) => Some(t),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(got, sent, "every queued message, once, in order");

    // Kill again after Bob acknowledged: nothing comes back.
    sigkill(&mut server);
    let mut server = start_server(&data, port);
    let again = bob.sync().await.unwrap();
    assert!(
        again.iter().all(|e| !matches!(e, Event::Message { .. })),
        "{again:?}"
    );
    let history: Vec<String> = bob
        .history("alice", 1000)
        .unwrap()
        .into_iter()
        .filter_map(|m| match m.body {
            Body::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    let mut expected = vec!["m-0".to_string()];
    expected.extend(sent);
    assert_eq!(history, expected);
    // And the conversation still works both ways after the restarts.
    bob.send_text(&Target::User(UserName::new("alice").unwrap()), "back")
        .await
        .unwrap();
    let ev = alice.sync().await.unwrap();
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .count(),
        1
    );
    sigkill(&mut server);
}

/// The key directory survives SIGKILL, including one in the middle of a burst of publishes: after
/// the restart the whole chain of epochs audits clean, clients that pinned a root before the
/// crash accept the roots after it (append-only proofs link them), and every account registered
/// before the kill is in the directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_publishing_keeps_the_directory_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("server");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&data, port);
    let mut alice = Client::register(
        &dir.path().join("alice"),
        &url,
        &UserName::new("alice").unwrap(),
        "t",
        ADULT_BIRTH_DATE,
    )
    .await
    .unwrap();
    // A burst of registrations, each publishing its first list, killed part way through.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let home = dir.path().join(format!("u{i}"));
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            Client::register(
                &home,
                &url,
                &UserName::new(&format!("user{i}")).unwrap(),
                "t",
                ADULT_BIRTH_DATE,
            )
            .await
            .map(|_| i)
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigkill(&mut server);
    let mut done = Vec::new();
    for t in tasks {
        if let Ok(i) = t.await.unwrap() {
            done.push(i);
        }
    }
    // Killed when dropped, whatever the test's outcome.
    let _server = support::ServerProcess(start_server(&data, port));
    let report = haven_client::kt_audit::audit(&url, 0, None, |_| {})
        .await
        .unwrap();
    let newest = report.epochs.last().unwrap().epoch;
    assert_eq!(
        report.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        (0..=newest).collect::<Vec<_>>()
    );
    // alice's pinned root is from before the crash; her check of each account links it to the
    // newest root. Every account whose registration finished is in the directory.
    for i in done {
        let user = UserName::new(&format!("user{i}")).unwrap();
        let list = alice.device_list(&user).await.unwrap();
        assert_eq!(list.list.version, 1);
        assert!(alice.engine().verified_list_root(&user).unwrap().is_some());
    }
    alice.sync().await.unwrap();
    assert!(alice.alarms(false).unwrap().is_empty());
}
