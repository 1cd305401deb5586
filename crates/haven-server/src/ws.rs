//! Push delivery over WebSocket.
//!
//! A connected device gets every unacknowledged entry of its queue, in order, as JSON text frames
//! ([`haven_proto::api::QueueEntry`]), then new ones as they arrive. The queue stays the source of
//! truth: an entry leaves it only when the device acknowledges it (a `{"ack":{"ids":[…]}}` frame
//! or `POST /v1/queue/ack`), so a dropped connection loses nothing and a reconnect re-sends what
//! was not acknowledged (at-least-once; clients de-duplicate by queue id). Before each push the
//! session is checked again, so a revoked session (logout, device removal) gets nothing more.
//!
//! Bounds: the server pings every [`ServerLimits::ws_ping_interval`] and closes a socket whose
//! pong has not come back within [`ServerLimits::ws_pong_timeout`] (a peer that vanished, or
//! one that holds the socket open without reading). A device has at most
//! [`ServerLimits::max_ws_per_device`] sockets; a new one closes the oldest ([`Sockets`], an
//! in-process table: each node caps the sockets it holds, and it is rebuilt by reconnecting).
//! Read and write buffers are sized for the common case, an idle socket: a few KiB, growing
//! only while a large frame is in flight.
//!
//! [`ServerLimits::ws_ping_interval`]: crate::config::ServerLimits::ws_ping_interval
//! [`ServerLimits::ws_pong_timeout`]: crate::config::ServerLimits::ws_pong_timeout
//! [`ServerLimits::max_ws_per_device`]: crate::config::ServerLimits::max_ws_per_device

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::Extension;
use futures_util::SinkExt;
use haven_proto::api::WsClientFrame;
use haven_proto::DeviceId;
use tokio::sync::oneshot;

use crate::http::{AppState, Device};
use crate::service::Authed;

const BATCH: u32 = 200;
/// Initial read buffer of a socket (it grows for a larger frame).
const READ_BUFFER: usize = 4 << 10;
/// Frames are gathered up to this many bytes before a write (a batch of entries goes out in
/// few writes); the buffer only grows while it is used.
const WRITE_BUFFER: usize = 16 << 10;

/// One device's open sockets, oldest first: an id and the sender that closes it.
type DeviceSockets = VecDeque<(u64, oneshot::Sender<()>)>;

/// The open sockets of each device, oldest first, so a new one can close the oldest.
#[derive(Default)]
pub struct Sockets {
    next: AtomicU64,
    open: Mutex<HashMap<DeviceId, DeviceSockets>>,
}

/// A registered socket; unregisters itself when dropped.
struct Registration {
    sockets: Arc<Sockets>,
    device: DeviceId,
    id: u64,
}

impl Sockets {
    /// Registers a socket of `device`, closing the oldest ones beyond `max`. The receiver fires
    /// when this socket is itself pushed out.
    fn register(
        self: &Arc<Self>,
        device: &DeviceId,
        max: usize,
    ) -> (Registration, oneshot::Receiver<()>) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let list = open.entry(device.clone()).or_default();
        list.push_back((id, tx));
        while list.len() > max.max(1) {
            if let Some((_, kick)) = list.pop_front() {
                let _ = kick.send(());
            }
        }
        (
            Registration {
                sockets: self.clone(),
                device: device.clone(),
                id,
            },
            rx,
        )
    }

    /// How many sockets `device` has open on this node.
    pub fn count(&self, device: &DeviceId) -> usize {
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.get(device).map_or(0, VecDeque::len)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut open = self.sockets.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = open.get_mut(&self.device) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                open.remove(&self.device);
            }
        }
    }
}

/// `GET /v1/ws`.
pub async fn handler(
    State(s): State<AppState>,
    Extension(sockets): Extension<Arc<Sockets>>,
    Device(d): Device,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(["haven.v1"])
        .max_message_size(1 << 20)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .on_upgrade(move |socket| async move {
            let (registration, kicked) = sockets.register(&d.device, s.limits().max_ws_per_device);
            if let Err(e) = serve(s, d, socket, kicked).await {
                tracing::debug!(error = %e, "websocket closed");
            }
            drop(registration);
        })
}

/// Sends a close frame, giving up after a second (a peer that does not read may never take it).
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let frame = Message::Close(Some(axum::extract::ws::CloseFrame {
        code,
        reason: reason.chars().take(100).collect::<String>().into(),
    }));
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), socket.send(frame)).await;
}

async fn serve(
    s: AppState,
    who: Authed,
    mut socket: WebSocket,
    mut kicked: oneshot::Receiver<()>,
) -> Result<(), String> {
    let mut wake = s.hub().subscribe(&who.device);
    let mut last = 0i64;
    let mut ping = tokio::time::interval(s.limits().ws_ping_interval);
    ping.tick().await;
    let pong_timeout = s.limits().ws_pong_timeout;
    // Set when a ping goes out, cleared by its pong: the socket must answer by then.
    let mut pong_due: Option<tokio::time::Instant> = None;
    loop {
        // The session may have been revoked since the upgrade (logout, device removal, on any
        // node): then nothing more is pushed.
        if s.check_session(&who).await.is_err() {
            close(&mut socket, 1008, "session revoked or expired").await;
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
                        close(&mut socket, 1003, &format!("bad frame: {e}")).await;
                        return Ok(());
                    }
                },
                Some(Ok(Message::Close(_))) | None => return Ok(()),
                Some(Ok(Message::Pong(_))) => pong_due = None,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            },
            _ = ping.tick() => {
                // A peer that does not read fills its buffers; then even the ping cannot go out.
                tokio::time::timeout(pong_timeout, socket.send(Message::Ping(Vec::new().into())))
                    .await
                    .map_err(|_| "ping not taken".to_owned())?
                    .map_err(|e| e.to_string())?;
                if pong_due.is_none() {
                    pong_due = Some(tokio::time::Instant::now() + pong_timeout);
                }
            }
            _ = async { if let Some(due) = pong_due { tokio::time::sleep_until(due).await } }, if pong_due.is_some() => {
                close(&mut socket, 1011, "no pong").await;
                return Ok(());
            }
            _ = &mut kicked => {
                close(&mut socket, 1008, "too many connections for this device").await;
                return Ok(());
            }
        }
    }
}
