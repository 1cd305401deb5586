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
    /// Most queue entries per fetch.
    pub max_fetch: u32,
    /// How long an undelivered message is kept.
    pub queue_ttl: Duration,
    /// Registration (and link, and login) attempts per client IP: burst size.
    pub auth_burst: u32,
    /// Registration (and link, and login) attempts per client IP: refill per second.
    pub auth_refill_per_sec: f64,
    /// Session lifetime.
    pub session_ttl: Duration,
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
            max_fetch: 500,
            queue_ttl: Duration::from_secs(30 * 24 * 3600),
            auth_burst: 30,
            auth_refill_per_sec: 0.5,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
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
        }
    }
}
