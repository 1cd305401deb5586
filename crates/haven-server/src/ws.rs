//! Push delivery over WebSocket.
//!
//! A connected device gets every unacknowledged entry of its queue, in order, as JSON text frames
//! ([`haven_proto::api::QueueEntry`]), then new ones as they arrive. The queue stays the source of
//! truth: an entry leaves it only when the device acknowledges it (a `{"ack":{"ids":[…]}}` frame
//! or `POST /v1/queue/ack`), so a dropped connection loses nothing and a reconnect re-sends what
//! was not acknowledged (at-least-once; clients de-duplicate by queue id). Before each push the
//! session is checked again, so a revoked session (logout, device removal) gets nothing more.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures_util::SinkExt;
use haven_proto::api::WsClientFrame;

use crate::http::{AppState, Device};
use crate::service::Authed;

const BATCH: u32 = 200;

/// `GET /v1/ws`.
pub async fn handler(
    State(s): State<AppState>,
    Device(d): Device,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(["haven.v1"])
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            if let Err(e) = serve(s, d, socket).await {
                tracing::debug!(error = %e, "websocket closed");
            }
        })
}

async fn serve(s: AppState, who: Authed, mut socket: WebSocket) -> Result<(), String> {
    let mut wake = s.hub().subscribe(&who.device);
    let mut last = 0i64;
    let mut ping = tokio::time::interval(Duration::from_secs(30));
    ping.tick().await;
    loop {
        // The session may have been revoked since the upgrade (logout, device removal, on any
        // node): then nothing more is pushed.
        if s.check_session(&who).await.is_err() {
            let _ = socket
                .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                    code: 1008,
                    reason: "session revoked or expired".into(),
                })))
                .await;
            return Ok(());
        }
        // Push everything queued after what this connection already sent.
        loop {
            let batch = s
                .fetch(&who, last, BATCH)
                .await
                .map_err(|e| e.to_string())?;
            let n = batch.len();
            // Queue the frames, then flush once: one write for the batch, not one per entry.
            for entry in batch {
                last = entry.id;
                let text = serde_json::to_string(&entry).map_err(|e| e.to_string())?;
                socket
                    .feed(Message::Text(text.into()))
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if n > 0 {
                socket.flush().await.map_err(|e| e.to_string())?;
            }
            if n < BATCH as usize {
                break;
            }
        }
        tokio::select! {
            changed = wake.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<WsClientFrame>(t.as_str()) {
                    Ok(WsClientFrame::Ack { ids }) => {
                        // Inline on purpose: while the ack waits for the write lock, new entries
                        // pile up and go out as one larger batch. Applying acks in a separate
                        // task was measured slower (BENCHMARKS.md, "Message delivery").
                        s.ack(&who, &ids).await.map_err(|e| e.to_string())?;
                    }
                    Err(e) => {
                        let _ = socket
                            .send(Message::Close(Some(axum::extract::ws::CloseFrame {
                                code: 1003,
                                reason: format!("bad frame: {e}").chars().take(100).collect::<String>().into(),
                            })))
                            .await;
                        return Ok(());
                    }
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            },
            _ = ping.tick() => {
                socket.send(Message::Ping(Vec::new().into())).await.map_err(|e| e.to_string())?;
            }
        }
    }
}
