//! The openmls provider: RustCrypto for crypto and randomness, and openmls_sqlite_storage over a
//! *borrowed* SQLite connection.
//!
//! Borrowing is what makes processing atomic: the engine opens a transaction on its one
//! connection (`BEGIN IMMEDIATE`), builds a provider over that transaction, lets openmls write its
//! group state through it, writes Haven's own rows through the same transaction, and commits —
//! or drops the transaction, which rolls back openmls's writes together with ours. openmls
//! objects (`MlsGroup`) are never cached across operations: each operation loads the group from
//! storage inside its transaction, so a rollback leaves no stale state in memory.

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// Serialises openmls's stored values as JSON (the codec openmls's own storage tests use).
#[derive(Default)]
pub(crate) struct JsonCodec;

impl Codec for JsonCodec {
    type Error = serde_json::Error;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        serde_json::to_vec(value)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        serde_json::from_slice(slice)
    }
}

/// openmls storage over a borrowed connection (or transaction, via `Deref`).
pub(crate) type Storage<'a> = SqliteStorageProvider<JsonCodec, &'a Connection>;

/// An openmls provider for the span of one transaction.
pub(crate) struct Provider<'a> {
    crypto: &'a RustCrypto,
    storage: Storage<'a>,
}

impl<'a> Provider<'a> {
    pub(crate) fn new(crypto: &'a RustCrypto, conn: &'a Connection) -> Self {
        Provider {
            crypto,
            storage: SqliteStorageProvider::new(conn),
        }
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = Storage<'a>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

/// Creates or upgrades openmls's tables.
pub(crate) fn run_openmls_migrations(conn: &mut Connection) -> Result<(), String> {
    let mut s = SqliteStorageProvider::<JsonCodec, &mut Connection>::new(conn);
    s.run_migrations().map_err(|e| e.to_string())
}
