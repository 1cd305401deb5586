//! Server configuration and limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every limit the server enforces. Each refusal is a JSON error; nothing is half-written.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest JSON request body.
    pub max_json_body: usize,
    /// Largest attachment blob (default 25 MiB).
    pub max_blob: usize,
    /// Largest single MLS message (commit, welcome, application message).
    pub max_mls_message: usize,
    /// Largest key package.
    pub max_key_package: usize,
    /// Most key packages in one upload.
    pub max_key_packages_per_upload: usize,
    /// Most one-time key packages stored per device.
    pub max_key_packages: u64,
    /// Most member devices per group.
    pub max_group_members: u64,
    /// Most undelivered entries per device queue.
    pub max_queue_depth: u64,
    /// Most bytes of undelivered entries per device queue (payload bytes; default 64 MiB).
    pub max_queue_bytes: u64,
    /// Most bytes of undelivered entries over all devices of one recipient account (default
    /// 256 MiB).
    pub max_account_queue_bytes: u64,
    /// Most entries one sending device may have in one recipient device's queue (default
    /// 2,500: a quarter of the depth), so one sender cannot fill a queue and block the others.
    /// Application messages over it get 429 `queue_share_exhausted`; handshake messages are
    /// counted but not held back by shares (see [`crate::quota`]).
    pub queue_share_device_depth: u64,
    /// Most bytes one sending device may have in one recipient device's queue (default 16 MiB).
    pub queue_share_device_bytes: u64,
    /// Most entries one sending account (all its devices) may have in one recipient device's
    /// queue (default 5,000).
    pub queue_share_account_depth: u64,
    /// Most bytes one sending account may have in one recipient device's queue (default 32 MiB).
    pub queue_share_account_bytes: u64,
    /// Most devices per account (default 16); linking one more is refused.
    pub max_devices_per_account: u64,
    /// Most queue entries per fetch.
    pub max_fetch: u32,
    /// How long an undelivered message is kept.
    pub queue_ttl: Duration,
    /// Registration (and link, and login) attempts per client IP: burst size.
    pub auth_burst: u32,
    /// Registration (and link, and login) attempts per client IP: refill per second.
    pub auth_refill_per_sec: f64,
    /// Authenticated writes per account (send, commit, proposal, blob upload, key-package
    /// upload, create group): burst size (default 300).
    pub write_burst: u32,
    /// Authenticated writes per account: refill per second (default 20).
    pub write_refill_per_sec: f64,
    /// Key-package claims per claiming account: burst size (default 20); then 429.
    pub claim_burst: u32,
    /// Key-package claims per claiming account: refill per second (default 0.2).
    pub claim_refill_per_sec: f64,
    /// One-time key packages handed out per claimed account: burst size (default 25, below the
    /// 30 a client keeps uploaded, so draining cannot empty them). Past it, claims get the
    /// last-resort package and the one-time packages are kept.
    pub claim_target_burst: u32,
    /// One-time key packages handed out per claimed account: refill per second (default one a
    /// minute).
    pub claim_target_refill_per_sec: f64,
    /// Session lifetime.
    pub session_ttl: Duration,
    /// How long a connection may take to send a complete request head (and, for TLS, to finish
    /// the handshake). The same clock runs while a kept-alive HTTP/1 connection waits for its
    /// next request, so it is also the keep-alive idle limit.
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves in either direction for this long is closed: a
    /// stalled upload, a download the client stopped reading, an idle HTTP/2 connection.
    /// (Upgraded WebSockets have their own ping/pong liveness.)
    pub idle_timeout: Duration,
    /// Most open connections (WebSockets included). Further connections are closed at accept.
    /// Clamped at start to the open-file limit minus a reserve for the database and blob files.
    pub max_connections: usize,
    /// Most open connections from one client address (an IPv6 /64 counts as one address).
    /// Connections from a trusted proxy are not counted against it.
    pub max_connections_per_address: usize,
    /// How often the server pings an open WebSocket.
    pub ws_ping_interval: Duration,
    /// How long the server waits for the pong before it closes the socket.
    pub ws_pong_timeout: Duration,
    /// Most concurrent WebSockets per device; a new one closes the oldest.
    pub max_ws_per_device: usize,
    /// Most bytes of blobs one account may have stored at a time (blobs count until they
    /// expire).
    pub max_blob_bytes_per_account: u64,
    /// How long a stored blob is kept after its (last) upload. The default is the queue TTL: a
    /// blob lives as long as the message that announces it can wait undelivered.
    pub blob_ttl: Duration,
    /// Reports per account: burst size (default 20).
    pub report_burst: u32,
    /// Reports per account: refill per second (default one every 30 s).
    pub report_refill_per_sec: f64,
    /// Largest report request body (default 2 MiB: ten context messages of the largest content
    /// in base64 fit).
    pub max_report_body: usize,
    /// How long a dismissed case's evidence is kept (default 90 days), unless preserved.
    pub evidence_retention: Duration,
    /// The operator's reporting contact (an e-mail address), written as the `reporter` of
    /// CyberTipline reports; escalation is refused without one.
    pub report_contact: Option<String>,
    /// How far apart a message's receive time and a membership change may be and still count
    /// as "a member then" in a report (membership times are the database's clock; default
    /// [`crate::moderation::MEMBERSHIP_SLACK_MS`]).
    pub membership_slack: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_json_body: 1 << 20,
            max_blob: 25 << 20,
            max_mls_message: 256 << 10,
            max_key_package: 16 << 10,
            max_key_packages_per_upload: 100,
            max_key_packages: 200,
            max_group_members: 1000,
            max_queue_depth: 10_000,
            max_queue_bytes: 64 << 20,
            max_account_queue_bytes: 256 << 20,
            queue_share_device_depth: 2_500,
            queue_share_device_bytes: 16 << 20,
            queue_share_account_depth: 5_000,
            queue_share_account_bytes: 32 << 20,
            max_devices_per_account: 16,
            max_fetch: 500,
            queue_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_burst: 30,
            auth_refill_per_sec: 0.5,
            write_burst: 300,
            write_refill_per_sec: 20.0,
            claim_burst: 20,
            claim_refill_per_sec: 0.2,
            claim_target_burst: 25,
            claim_target_refill_per_sec: 1.0 / 60.0,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            header_read_timeout: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            max_connections_per_address: 256,
            ws_ping_interval: Duration::from_secs(30),
            ws_pong_timeout: Duration::from_secs(20),
            max_ws_per_device: 4,
            max_blob_bytes_per_account: 1 << 30,
            blob_ttl: Duration::from_secs(30 * 24 * 3600),
            report_burst: 20,
            report_refill_per_sec: 1.0 / 30.0,
            max_report_body: 2 << 20,
            evidence_retention: Duration::from_secs(90 * 24 * 3600),
            report_contact: None,
            membership_slack: Duration::from_millis(crate::moderation::MEMBERSHIP_SLACK_MS as u64),
        }
    }
}

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (port 0 picks a free one).
    pub listen: SocketAddr,
    /// Data directory: the SQLite file and the blob directory live here.
    pub data_dir: PathBuf,
    /// A database URL (`postgres://…`); `None` means SQLite in the data directory.
    pub database: Option<String>,
    /// TLS certificate chain and private key (PEM), if serving TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Limits.
    pub limits: ServerLimits,
    /// Reverse proxies whose `X-Forwarded-For` is believed (CIDRs); see [`crate::client_addr`].
    /// Empty (the default): the peer address is the client address.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The evidence key file ([`crate::moderation::vault`]); `None`: `DATA/evidence-key`.
    pub evidence_key: Option<PathBuf>,
    /// The contact policy's limits and the risk score's weights and thresholds
    /// ([`crate::contacts`]; `haven server --safety-config FILE` reads them from JSON).
    pub safety: haven_safety::policy::PolicyConfig,
    /// How often the key directory publishes the queued device lists ([`crate::kt`]; it also
    /// publishes at once when a client asks).
    pub kt_interval: std::time::Duration,
}

impl ServerConfig {
    /// The embedded default: `127.0.0.1:7878`, `./haven-data`, SQLite.
    pub fn embedded(data_dir: PathBuf) -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            data_dir,
            database: None,
            tls: None,
            limits: ServerLimits::default(),
            trusted_proxies: Vec::new(),
            evidence_key: None,
            safety: haven_safety::policy::PolicyConfig::default(),
            kt_interval: std::time::Duration::from_secs(1),
        }
    }
}
