//! Every resource is bounded (review 2026-12, findings 6 and 7): connections in time and count,
//! WebSockets by liveness and per device, blobs in size, per account and in time, downloads in
//! memory. Real server on loopback, raw sockets for the attacker, real HTTP clients beside it.
//!
//! The tests of this file run one at a time (`SERIAL`): one of them measures the test process's
//! resident memory, which the others would disturb.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use haven_proto::api;
use haven_server::ServerLimits;
use serde_json::Value;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Reads until the peer closes; `true` if it did before `deadline`.
async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads an HTTP response head; the status and the bytes after the head.
async fn read_head(stream: &mut TcpStream) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response head in time")
            .unwrap();
        assert!(n > 0, "closed before a response head: {got:?}");
        got.extend_from_slice(&buf[..n]);
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let status = head.split(' ').nth(1).unwrap().parse().unwrap();
            return (status, got[end + 4..].to_vec());
        }
    }
}

/// The JSON body of a (small) response after its head, read until the connection closes or the
/// body parses.
async fn read_json_body(stream: &mut TcpStream, mut body: Vec<u8>) -> Value {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(start) = body.iter().position(|b| *b == b'{') {
            if let Ok(v) = serde_json::from_slice::<Value>(&body[start..]) {
                return v;
            }
            // Chunked: the JSON is followed by "\r\n0\r\n\r\n".
            if let Some(end) = body.iter().rposition(|b| *b == b'}') {
                if let Ok(v) = serde_json::from_slice::<Value>(&body[start..=end]) {
                    return v;
                }
            }
        }
        let n = timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert!(n > 0, "no JSON body: {:?}", String::from_utf8_lossy(&body));
        body.extend_from_slice(&buf[..n]);
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

async fn put_blob(s: &TestServer, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/blobs", s.url))
        .header("Authorization", format!("Bearer {token}"))
        .body(bytes)
        .send()
        .await
        .unwrap();
    let st = resp.status().as_u16();
    (st, resp.json().await.unwrap())
}

async fn get_blob_status(s: &TestServer, token: &str, id: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/v1/blobs/{id}", s.url))
        .header("Authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_half_sent_connections_are_closed_while_a_client_keeps_working() {
    let _serial = SERIAL.lock().await;
    let header_read = Duration::from_secs(2);
    let s = server_with(ServerLimits {
        header_read_timeout: header_read,
        idle_timeout: Duration::from_secs(3),
        max_connections_per_address: 5000,
        max_connections: 5000,
        ..ServerLimits::default()
    })
    .await;
    let addr = s.running.addr;
    // The attack (finding 6): 1,000 connections that never send a byte, and 100 that stop
    // half-way through their headers.
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut partial = Vec::new();
    for _ in 0..100 {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        partial.push(c);
    }
    let opened = Instant::now();
    // Meanwhile a real client registers, logs in and works.
    let a = register(&s, "alice").await;
    let (st, v) = call(
        "GET",
        &format!("{}/v1/key-packages", s.url),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call("GET", &format!("{}/v1/health", s.url), None, None).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    // Every attacking connection is closed by the server within the header-read timeout (and
    // some slack for a loaded machine).
    let deadline = opened + header_read + Duration::from_secs(3);
    let mut open = 0;
    for c in idle.iter_mut().chain(partial.iter_mut()) {
        if !closed_by(c, deadline).await {
            open += 1;
        }
    }
    assert_eq!(
        open, 0,
        "connections still open after the header-read timeout"
    );
    // And the service is still there.
    let (st, _) = call(
        "GET",
        &format!("{}/v1/key-packages", s.url),
        Some(&a.token),
        None,
    )
    .await;
    assert_eq!(st, 200);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_caps_close_excess_connections_at_accept() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        max_connections_per_address: 5,
        ..ServerLimits::default()
    })
    .await;
    let addr = s.running.addr;
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // Let the server accept them all before the sixth.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut sixth = TcpStream::connect(addr).await.unwrap();
    let _ = sixth
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(
        closed_by(&mut sixth, Instant::now() + Duration::from_secs(5)).await,
        "the sixth connection from one address was served"
    );
    // One slot freed: a new connection is served.
    held.pop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, _) = call("GET", &format!("{}/v1/health", s.url), None, None).await;
    assert_eq!(st, 200);
    drop(held);
    s.running.shutdown().await;

    // The total cap works the same way.
    let s = server_with(ServerLimits {
        max_connections: 3,
        ..ServerLimits::default()
    })
    .await;
    let addr = s.running.addr;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    assert!(closed_by(&mut fourth, Instant::now() + Duration::from_secs(5)).await);
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (st, _) = call("GET", &format!("{}/v1/health", s.url), None, None).await;
    assert_eq!(st, 200);
    s.running.shutdown().await;
}

async fn ws_connect(
    s: &TestServer,
    token: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let url = format!("{}/v1/ws", s.url.replacen("http", "ws", 1));
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_does_not_answer_pings_is_closed() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        ws_ping_interval: Duration::from_millis(200),
        ws_pong_timeout: Duration::from_millis(400),
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    // A live client (tungstenite answers pings) stays connected over many ping intervals.
    let mut live = ws_connect(&s, &a.token).await;
    // A raw client completes the upgrade, then never answers.
    let mut raw = TcpStream::connect(s.running.addr).await.unwrap();
    raw.write_all(
        format!(
            "GET /v1/ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Authorization: Bearer {}\r\n\r\n",
            a.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (st, _) = read_head(&mut raw).await;
    assert_eq!(st, 101);
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        match tokio::time::timeout_at(until, live.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_)))) | Ok(Some(Ok(Message::Pong(_)))) => {}
            other => panic!("the live socket was disturbed: {other:?}"),
        }
    }
    // By now (ten ping intervals) the silent socket is long closed.
    assert!(
        closed_by(&mut raw, Instant::now() + Duration::from_secs(3)).await,
        "a socket without pongs stayed open"
    );
    live.close(None).await.unwrap();
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_has_at_most_its_cap_of_websockets_and_the_oldest_goes() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        max_ws_per_device: 2,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(ws_connect(&s, &a.token).await);
        // Let the server register the socket before the next one (the order decides "oldest").
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = &mut sockets[0];
    match timeout(Duration::from_secs(5), first.next()).await.unwrap() {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), 1008),
        other => panic!("the oldest socket was not closed: {other:?}"),
    }
    for ws in &mut sockets[1..] {
        assert!(
            timeout(Duration::from_millis(500), ws.next())
                .await
                .is_err(),
            "a newer socket was closed"
        );
    }
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_stalled_downloads_do_not_hold_the_blob_in_memory() {
    let _serial = SERIAL.lock().await;
    let s = server().await;
    let a = register(&s, "alice").await;
    let blob: Vec<u8> = (0..25usize << 20).map(|i| (i * 7 % 251) as u8).collect();
    let (st, v) = put_blob(&s, &a.token, blob.clone()).await;
    assert_eq!(st, 200, "{v}");
    let id = v["blob_id"].as_str().unwrap().to_owned();
    // One full download, so every lazily built part of the path exists at rest.
    let got = reqwest::Client::new()
        .get(format!("{}/v1/blobs/{id}", s.url))
        .header("Authorization", format!("Bearer {}", a.token))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == blob[..]);
    drop((got, blob));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rest = rss_kib();
    // Twenty clients ask for it and read only the response head.
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(s.running.addr).await.unwrap();
        c.write_all(
            format!(
                "GET /v1/blobs/{id} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n",
                a.token
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        let (st, _) = read_head(&mut c).await;
        assert_eq!(st, 200);
        stalled.push(c);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib();
    eprintln!("RSS at rest {rest} KiB, with 20 stalled downloads {loaded} KiB");
    assert!(
        loaded < rest + 100 * 1024,
        "20 stalled downloads: RSS {loaded} KiB, at rest {rest} KiB"
    );
    drop(stalled);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blob_quota_is_refused_clearly_and_stores_nothing() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        max_blob_bytes_per_account: 3000,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let b = register(&s, "bob").await;
    let (st, v) = put_blob(&s, &a.token, vec![1; 2000]).await;
    assert_eq!(st, 200, "{v}");
    let over = vec![2u8; 2000];
    let over_id = haven_proto::BlobId::from_digest(
        sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&over)).into(),
    );
    let (st, v) = put_blob(&s, &a.token, over.clone()).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("limit_exceeded")),
        "{v}"
    );
    assert!(v["message"].as_str().unwrap().contains("quota"), "{v}");
    assert_eq!(get_blob_status(&s, &a.token, over_id.as_str()).await, 404);
    // Without a Content-Length the quota is checked after streaming, with the same answer.
    let mut c = TcpStream::connect(s.running.addr).await.unwrap();
    c.write_all(
        format!(
            "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n7d0\r\n",
            a.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&over).await.unwrap();
    c.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let (st, rest) = read_head(&mut c).await;
    let v = read_json_body(&mut c, rest).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (422, Some("limit_exceeded")),
        "{v}"
    );
    assert_eq!(get_blob_status(&s, &a.token, over_id.as_str()).await, 404);
    // Quotas are per account: bob may store it.
    let (st, v) = put_blob(&s, &b.token, over).await;
    assert_eq!(st, 200, "{v}");
    let stored: api::BlobStored = serde_json::from_value(v).unwrap();
    assert_eq!(stored.blob_id, over_id);
    assert_eq!(get_blob_status(&s, &a.token, over_id.as_str()).await, 200);
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_blobs_are_purged_from_disk() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        blob_ttl: Duration::from_secs(1),
        max_blob_bytes_per_account: 1500,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let (st, v) = put_blob(&s, &a.token, vec![3; 1000]).await;
    assert_eq!(st, 200, "{v}");
    let id = v["blob_id"].as_str().unwrap().to_owned();
    assert_eq!(get_blob_status(&s, &a.token, &id).await, 200);
    let blob_dir = s.dir().join("data").join("blobs");
    let on_disk = |id: &str| files_under(&blob_dir).iter().any(|p| p.ends_with(id));
    assert!(on_disk(&id));
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // Expired: no longer served, even before the purge ran.
    assert_eq!(get_blob_status(&s, &a.token, &id).await, 404);
    s.running.service.purge().await.unwrap();
    assert!(!on_disk(&id), "the expired blob is still on disk");
    // Its bytes no longer count against the quota.
    let (st, v) = put_blob(&s, &a.token, vec![4; 1000]).await;
    assert_eq!(st, 200, "{v}");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_aborted_streamed_uploads_leave_nothing_on_disk() {
    let _serial = SERIAL.lock().await;
    let s = server_with(ServerLimits {
        max_blob: 1 << 20,
        ..ServerLimits::default()
    })
    .await;
    let a = register(&s, "alice").await;
    let blob_dir = s.dir().join("data").join("blobs");

    // Declared too large: refused before a byte of the body is read.
    let mut c = TcpStream::connect(s.running.addr).await.unwrap();
    c.write_all(
        format!(
            "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: {}\r\n\r\n",
            a.token,
            (1 << 20) + 1
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (st, rest) = read_head(&mut c).await;
    let v = read_json_body(&mut c, rest).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );

    // Streamed without a length, 2 MiB: refused once it passes 1 MiB.
    let mut c = TcpStream::connect(s.running.addr).await.unwrap();
    c.write_all(
        format!(
            "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            a.token
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let (mut rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![5u8; 64 << 10];
        for _ in 0..32 {
            if wr
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await
                .is_err()
                || wr.write_all(&chunk).await.is_err()
                || wr.write_all(b"\r\n").await.is_err()
            {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let v = loop {
        let n = timeout(Duration::from_secs(10), rd.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without an answer");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let (Some(start), Some(end)) = (text.find('{'), text.rfind('}')) {
            if let Ok(v) = serde_json::from_str::<Value>(&text[start..=end]) {
                assert!(text.starts_with("HTTP/1.1 413"), "{text}");
                break v;
            }
        }
    };
    assert_eq!(v["code"].as_str(), Some("payload_too_large"), "{v}");
    drop(rd);
    writer.abort();

    // Aborted half-way: the client goes away after 100 KiB of a declared 500 KiB.
    let mut c = TcpStream::connect(s.running.addr).await.unwrap();
    c.write_all(
        format!(
            "PUT /v1/blobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Length: {}\r\n\r\n",
            a.token,
            500 << 10
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&vec![6u8; 100 << 10]).await.unwrap();
    drop(c);

    // Nothing was stored, and nothing is left half-written.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let files = files_under(&blob_dir);
        if files.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left on disk: {files:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The server still takes a good upload.
    let (st, v) = put_blob(&s, &a.token, vec![7; 1 << 20]).await;
    assert_eq!(st, 200, "{v}");
    s.running.shutdown().await;
}
