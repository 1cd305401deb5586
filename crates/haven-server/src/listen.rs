//! The accept loop: every connection is bounded in count, in time and by client address.
//!
//! Data flow: a TCP connection is accepted; before anything is read from it, it must get a slot
//! under the total cap ([`ServerLimits::max_connections`]) and under its client address's cap
//! ([`ServerLimits::max_connections_per_address`]) — otherwise it is closed at once. Then (for
//! TLS) the handshake must finish within the header-read timeout, and hyper serves HTTP/1 or
//! HTTP/2 on it with the header-read timeout (which also bounds how long a kept-alive connection
//! may sit between requests). A watchdog closes any connection on which no byte moved for the
//! idle timeout, so a client that stops reading a download or stops sending an upload cannot pin
//! the connection. Upgraded WebSockets keep their slots until they close; their liveness is the
//! ping/pong check in [`crate::ws`].
//!
//! Trust assumption: at accept time only the TCP peer address is known, so the per-address cap
//! keys on the peer (IPv6 by /64, [`crate::client_addr::bucket`]), and peers that are trusted
//! proxies are exempt from it (all their clients share their address).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tower::Service as _;

use crate::client_addr::{bucket, TrustedProxies};
use crate::config::ServerLimits;

/// File descriptors kept free for the database, blob files and logs when the connection cap is
/// sized under the open-file limit.
const FD_RESERVE: u64 = 256;

/// Raises the soft open-file limit to the hard limit and returns the soft limit now in force
/// (`None` if it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, lim) {
            tracing::warn!(error = %e, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// The connection cap to enforce: the configured one, but never more than the open-file limit
/// leaves room for.
pub fn connection_cap(configured: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => {
            let room = usize::try_from(n.saturating_sub(FD_RESERVE).max(16)).unwrap_or(usize::MAX);
            configured.min(room)
        }
        None => configured,
    }
}

/// Open connections per client address.
#[derive(Default)]
struct PerAddress {
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection of an address; uncounts itself when dropped.
struct AddressSlot {
    table: Arc<PerAddress>,
    addr: IpAddr,
}

impl PerAddress {
    fn try_take(self: &Arc<Self>, addr: IpAddr, max: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(addr).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            table: self.clone(),
            addr,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

/// The slots a connection holds; released when its socket is dropped (for an upgraded
/// WebSocket, when the socket closes).
struct Slots {
    _total: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
}

/// A socket that records when a byte last moved, and holds its connection's slots.
struct Metered<T> {
    inner: T,
    start: Instant,
    last: Arc<AtomicU64>,
    _slots: Slots,
}

impl<T> Metered<T> {
    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Metered<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Metered<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The bounds the accept loop enforces.
#[derive(Clone)]
pub(crate) struct ConnBounds {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub max_per_address: usize,
    pub trusted: TrustedProxies,
}

impl ConnBounds {
    pub(crate) fn new(
        limits: &ServerLimits,
        max_connections: usize,
        trusted: TrustedProxies,
    ) -> Self {
        ConnBounds {
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            max_connections,
            max_per_address: limits.max_connections_per_address,
            trusted,
        }
    }
}

/// Tells a running accept loop to stop; see [`serve`].
pub(crate) struct Stopper {
    tx: watch::Sender<bool>,
    total: Arc<Semaphore>,
    max: usize,
}

impl Stopper {
    /// Stops accepting, asks open connections to finish, and waits until they have (at most
    /// `grace`).
    pub(crate) async fn stop(&self, grace: Duration) {
        let _ = self.tx.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        while self.total.available_permits() < self.max && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Serves `app` on `listener` (TLS if `tls` is given) under `bounds` until stopped.
pub(crate) fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    bounds: ConnBounds,
) -> (Stopper, tokio::task::JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = watch::channel(false);
    let total = Arc::new(Semaphore::new(bounds.max_connections));
    let stopper = Stopper {
        tx,
        total: total.clone(),
        max: bounds.max_connections,
    };
    let task = tokio::spawn(accept_loop(listener, tls, app, bounds, total, rx));
    (stopper, task)
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    bounds: ConnBounds,
    total: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let per_address = Arc::new(PerAddress::default());
    let mut make = app.into_make_service_with_connect_info::<SocketAddr>();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(bounds.header_read_timeout);
    http.http2().timer(TokioTimer::new());
    let bounds = Arc::new(bounds);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment
                    // instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return Ok(()),
        };
        let Ok(total_slot) = total.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "connection cap reached; closing");
            continue;
        };
        let address_slot = if bounds.trusted.contains(peer.ip()) {
            None
        } else {
            match per_address.try_take(bucket(peer.ip()), bounds.max_per_address) {
                Some(s) => Some(s),
                None => {
                    tracing::debug!(%peer, "per-address connection cap reached; closing");
                    continue;
                }
            }
        };
        let slots = Slots {
            _total: total_slot,
            _address: address_slot,
        };
        let _ = tcp.set_nodelay(true);
        let svc = match make.call(peer).await {
            Ok(s) => s,
            Err(never) => match never {},
        };
        let (tls, http, bounds, stop) = (tls.clone(), http.clone(), bounds.clone(), stop.clone());
        tokio::spawn(async move {
            let last = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            match tls {
                None => {
                    let io = Metered {
                        inner: tcp,
                        start,
                        last: last.clone(),
                        _slots: slots,
                    };
                    run_connection(io, svc, &http, &bounds, start, last, stop).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(bounds.header_read_timeout, acceptor.accept(tcp));
                    let Ok(Ok(stream)) = handshake.await else {
                        return;
                    };
                    let io = Metered {
                        inner: stream,
                        start,
                        last: last.clone(),
                        _slots: slots,
                    };
                    run_connection(io, svc, &http, &bounds, start, last, stop).await;
                }
            }
        });
    }
}

async fn run_connection<T, S>(
    io: Metered<T>,
    svc: S,
    http: &auto::Builder<TokioExecutor>,
    bounds: &ConnBounds,
    start: Instant,
    last: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = http.serve_connection_with_upgrades(TokioIo::new(io), TowerToHyperService::new(svc));
    tokio::pin!(conn);
    let idle_ms = u64::try_from(bounds.idle_timeout.as_millis()).unwrap_or(u64::MAX);
    let mut check = tokio::time::interval((bounds.idle_timeout / 4).max(Duration::from_millis(20)));
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = check.tick() => {
                let now = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                    tracing::debug!("idle timeout; closing connection");
                    return;
                }
            }
            r = stop.changed(), if !stopping => {
                stopping = true;
                if r.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
