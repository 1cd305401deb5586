//! A hostile server cannot run the client out of memory (review 2026-12, finding 13): every
//! response is read with a cap, and passing it is a clear `NetError::ResponseTooLarge`.
//!
//! The server here is a small raw HTTP server on loopback that answers every request with an
//! endless body (chunked, or under a huge `Content-Length`) and counts what it managed to send.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use haven_client::net::{Api, NetError, MAX_BLOB_RESPONSE, MAX_JSON_RESPONSE};
use haven_proto::BlobId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy)]
enum Evil {
    /// `Transfer-Encoding: chunked`, chunks forever.
    EndlessChunked,
    /// `Content-Length` of a terabyte, then bytes forever.
    HugeLength,
}

/// Starts the hostile server; returns its URL and the bytes of body it has sent so far.
async fn evil_server(mode: Evil) -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        loop {
            let (mut c, _) = listener.accept().await.unwrap();
            let counter = counter.clone();
            tokio::spawn(async move {
                // Read the request head.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = match mode {
                    Evil::EndlessChunked => {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Transfer-Encoding: chunked\r\n\r\n"
                    }
                    Evil::HugeLength => {
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: 1099511627776\r\n\r\n"
                    }
                };
                if c.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                // A JSON array that never ends: `[0,0,0,…`.
                let mut body = b"{\"entries\":[".to_vec();
                body.extend(std::iter::repeat_n(b'0', 64 << 10));
                let chunk = match mode {
                    Evil::EndlessChunked => {
                        let mut c = format!("{:x}\r\n", body.len()).into_bytes();
                        c.extend_from_slice(&body);
                        c.extend_from_slice(b"\r\n");
                        c
                    }
                    Evil::HugeLength => body,
                };
                while c.write_all(&chunk).await.is_ok() {
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            });
        }
    });
    (url, sent)
}

async fn api(url: &str) -> Api {
    let mut api = Api::new(url).unwrap();
    api.set_token(Some("any".into()));
    api
}

#[tokio::test]
async fn an_endless_queue_response_is_cut_at_the_cap() {
    let (url, sent) = evil_server(Evil::EndlessChunked).await;
    let api = api(&url).await;
    let err = tokio::time::timeout(Duration::from_secs(30), api.fetch(0, 2))
        .await
        .expect("the client gave up in time")
        .unwrap_err();
    let NetError::ResponseTooLarge { cap } = err else {
        panic!("expected ResponseTooLarge, got {err:?}");
    };
    assert!(cap >= MAX_JSON_RESPONSE);
    // The cap, not the server, ended it: the server had more to send.
    assert!(sent.load(Ordering::Relaxed) >= cap as u64);
}

#[tokio::test]
async fn an_endless_json_response_is_cut_at_the_json_cap() {
    let (url, _sent) = evil_server(Evil::EndlessChunked).await;
    let api = api(&url).await;
    let err = tokio::time::timeout(Duration::from_secs(30), api.key_package_count())
        .await
        .expect("the client gave up in time")
        .unwrap_err();
    assert!(
        matches!(err, NetError::ResponseTooLarge { cap } if cap == MAX_JSON_RESPONSE),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_endless_blob_download_is_cut_at_the_blob_cap() {
    let (url, sent) = evil_server(Evil::EndlessChunked).await;
    let api = api(&url).await;
    let id = BlobId::from_digest([1; 32]);
    let err = tokio::time::timeout(Duration::from_secs(60), api.get_blob(&id))
        .await
        .expect("the client gave up in time")
        .unwrap_err();
    assert!(
        matches!(err, NetError::ResponseTooLarge { cap } if cap == MAX_BLOB_RESPONSE),
        "{err:?}"
    );
    assert!(sent.load(Ordering::Relaxed) >= MAX_BLOB_RESPONSE as u64);
}

#[tokio::test]
async fn a_huge_content_length_is_refused_before_reading() {
    let (url, _sent) = evil_server(Evil::HugeLength).await;
    let api = api(&url).await;
    let err = tokio::time::timeout(
        Duration::from_secs(10),
        api.get_blob(&BlobId::from_digest([2; 32])),
    )
    .await
    .expect("the client gave up in time")
    .unwrap_err();
    assert!(
        matches!(err, NetError::ResponseTooLarge { cap } if cap == MAX_BLOB_RESPONSE),
        "{err:?}"
    );
    let err = tokio::time::timeout(Duration::from_secs(10), api.fetch(0, 2))
        .await
        .expect("the client gave up in time")
        .unwrap_err();
    assert!(matches!(err, NetError::ResponseTooLarge { .. }), "{err:?}");
}
