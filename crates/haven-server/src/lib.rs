//! The Haven server.
//!
//! One process serving the HTTP/JSON API of `haven_proto::api` and WebSocket push: accounts and
//! devices with challenge–response login, key packages, MLS routing with exactly one commit per
//! group epoch, durable per-device queues with the franking envelope, and content-addressed
//! encrypted blobs. The embedded default keeps everything in one data directory (SQLite file and
//! blob directory); `--database postgres://…` moves the source of truth to PostgreSQL.
//!
//! Layers (CONVENTIONS.md, "handlers are thin"): [`http`] decodes untrusted bytes and maps errors;
//! [`service`] holds the rules (its docs give the message path and the trust assumptions);
//! [`store`] is the storage trait with its two backends and their conformance suite; [`blobs`] is
//! the object store with its records, quota and expiry. [`listen`] is the accept loop that bounds
//! every connection (header-read and idle timeouts, total and per-address caps), and
//! [`client_addr`] derives the client address limits key on (trusted proxies only);
//! [`datadir`] keeps the data directory `0700` and its files `0600`; [`frank_keys`] holds the
//! franking keyring in its own key file; [`quota`] bounds queues and rates, with its state in
//! the database. The server never holds a byte of plaintext: it sees MLS
//! ciphertext and encrypted attachments only.

pub mod blobs;
pub mod client_addr;
pub mod config;
pub mod contacts;
pub mod datadir;
pub mod device_lists;
pub mod frank_keys;
pub mod groups;
pub mod http;
pub mod kt;
pub mod listen;
pub mod moderation;
pub mod psi;
pub mod quota;
pub mod service;
pub mod store;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{ServerConfig, ServerLimits};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data directory or blob store could not be set up.
    #[error("data directory: {0}")]
    Data(String),
    /// The franking key file is missing, malformed or belongs to another deployment.
    #[error("franking keys: {0}")]
    Keys(String),
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(String),
    /// The listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// TLS configuration is unusable.
    #[error("TLS: {0}")]
    Tls(String),
}

/// A running server.
pub struct RunningServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// The services (for in-process tools and tests).
    pub service: Arc<service::Service>,
    stopper: listen::Stopper,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// The base URL clients use.
    pub fn url(&self, tls: bool) -> String {
        format!("{}://{}", if tls { "https" } else { "http" }, self.addr)
    }

    /// Stops accepting, lets in-flight requests finish (up to a second) and waits.
    pub async fn shutdown(self) {
        self.stopper.stop(Duration::from_secs(1)).await;
        let _ = self.task.await;
    }

    /// Waits until the server stops (it runs until the process ends or `shutdown`).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?
    }
}

/// Opens storage and starts serving; returns once the listener is bound.
pub async fn start(config: ServerConfig) -> Result<RunningServer, StartError> {
    datadir::ensure_private_dir(&config.data_dir)
        .map_err(|e| StartError::Data(format!("{}: {e}", config.data_dir.display())))?;
    let store = match &config.database {
        Some(url) => store::open_store(url).await,
        None => store::open_store(&config.data_dir.join("haven.db").to_string_lossy()).await,
    }
    .map_err(|e| StartError::Database(e.to_string()))?;
    let blobs = blobs::LocalBlobStore::new(config.data_dir.join("blobs"))
        .map_err(|e| StartError::Data(e.to_string()))?;
    let frank_keys =
        frank_keys::load_or_create(&config.data_dir, &*store, service::now_ms() as u64)
            .await
            .map_err(|e| StartError::Keys(e.to_string()))?;
    let evidence_path = config
        .evidence_key
        .clone()
        .unwrap_or_else(|| moderation::vault::default_path(&config.data_dir));
    let evidence_key = moderation::vault::load_or_create(&evidence_path, &*store)
        .await
        .map_err(|e| StartError::Keys(e.to_string()))?;
    config
        .safety
        .validate()
        .map_err(|e| StartError::Data(format!("safety configuration: {e}")))?;
    let policy_json = serde_json::to_string(&config.safety)
        .map_err(|e| StartError::Data(format!("safety configuration: {e}")))?;
    store
        .write_policy(
            haven_safety::policy::POLICY_VERSION,
            &policy_json,
            service::now_ms(),
        )
        .await
        .map_err(|e| StartError::Database(e.to_string()))?;
    let kt_keys = kt::keys::load_or_create(&config.data_dir, &*store)
        .await
        .map_err(|e| StartError::Keys(e.to_string()))?;
    let kt_store: Arc<dyn kt::KtStore> = store.clone();
    let kt = Arc::new(
        kt::Kt::open(
            kt_store,
            kt_keys,
            config.kt_interval,
            &kt::node_name(&config.data_dir),
        )
        .await
        .map_err(|e| StartError::Database(format!("key directory: {e}")))?,
    );
    kt.spawn_publisher();
    let service = Arc::new(
        service::Service::new(store, Arc::new(blobs), config.limits.clone(), frank_keys)
            .with_evidence_key(evidence_key)
            .with_safety(config.safety.clone())
            .with_kt(kt),
    );
    let trusted = client_addr::TrustedProxies::new(config.trusted_proxies.clone());
    let app = http::router(service.clone()).layer(axum::Extension(trusted.clone()));
    let listener =
        std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: config.listen,
        source,
    })?;
    let listener =
        tokio::net::TcpListener::from_std(listener).map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
    let tls = match &config.tls {
        None => None,
        Some((cert, key)) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .map_err(|e| StartError::Tls(e.to_string()))?;
            Some(tokio_rustls::TlsAcceptor::from(tls.get_inner()))
        }
    };
    let nofile = listen::raise_nofile_limit();
    let max_connections = listen::connection_cap(config.limits.max_connections, nofile);
    if max_connections < config.limits.max_connections {
        tracing::warn!(
            configured = config.limits.max_connections,
            max_connections,
            "connection cap lowered to fit the open-file limit"
        );
    }
    let bounds = listen::ConnBounds::new(&config.limits, max_connections, trusted);
    let (stopper, task) = listen::serve(listener, tls, app, bounds);
    // Expire old queue entries, sessions and codes in the background.
    let purger = service.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            match purger.purge().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(expired = n, "purged expired queue entries"),
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
        }
    });
    tracing::info!(%addr, tls = config.tls.is_some(), "haven server listening");
    Ok(RunningServer {
        addr,
        service,
        stopper,
        task,
    })
}
