//! The openmls provider: RustCrypto for crypto and randomness, and openmls_sqlite_storage over a
//! *borrowed* SQLite connection.
//!
//! Borrowing is what makes processing atomic: the engine opens a transaction on its one
//! connection (`BEGIN IMMEDIATE`), builds a provider over that transaction, lets openmls write its
//! group state through it, writes Haven's own rows through the same transaction, and commits —
//! or drops the transaction, which rolls back openmls's writes together with ours. openmls
//! writes every change through to storage at once; the engine keeps `MlsGroup`s in memory between
//! transactions only while they match what is stored (it drops them on any rollback and when
//! another process has written to the profile; see `Engine`'s group cache).

use openmls_rust_crypto::RustCrypto;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// How openmls's stored values are encoded: MessagePack with field names (`rmp-serde`), after a
/// one-byte tag `0xC1`.
///
/// MessagePack is self-describing like JSON (openmls's types round-trip through it as they do
/// through JSON, and named fields keep the record readable across openmls versions), but it is
/// binary: the byte strings that make up most of the state (the secret tree, rewritten on every
/// message decrypted) cost one or two bytes per byte instead of up to four characters, and no
/// text to parse. The tag is the one byte MessagePack never uses and no JSON text starts with, so
/// values written by earlier builds (plain JSON) are still read; every write is MessagePack.
#[derive(Default)]
pub(crate) struct StateCodec;

/// The tag in front of MessagePack values (reserved, "never used", in the MessagePack spec).
const MSGPACK_TAG: u8 = 0xC1;

/// A value that could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CodecError {
    #[error("MessagePack encoding: {0}")]
    Encode(#[from] rmp_serde::encode::Error),
    #[error("MessagePack decoding: {0}")]
    Decode(#[from] rmp_serde::decode::Error),
    #[error("JSON decoding: {0}")]
    Json(#[from] serde_json::Error),
}

impl Codec for StateCodec {
    type Error = CodecError;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, Self::Error> {
        let mut out = vec![MSGPACK_TAG];
        rmp_serde::encode::write_named(&mut out, value)?;
        Ok(out)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, Self::Error> {
        match slice.split_first() {
            Some((&MSGPACK_TAG, rest)) => Ok(rmp_serde::from_slice(rest)?),
            _ => Ok(serde_json::from_slice(slice)?),
        }
    }
}

/// openmls storage over a borrowed connection (or transaction, via `Deref`).
pub(crate) type Storage<'a> = SqliteStorageProvider<StateCodec, &'a Connection>;

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
    let mut s = SqliteStorageProvider::<StateCodec, &mut Connection>::new(conn);
    s.run_migrations().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        epoch: u64,
        secret: Vec<u8>,
        tree: Vec<Option<Vec<u8>>>,
        label: String,
    }

    fn sample() -> Sample {
        Sample {
            epoch: 7,
            secret: (0..=255).collect(),
            tree: vec![Some(vec![1, 2, 3]), None],
            label: "leaf".into(),
        }
    }

    #[test]
    fn round_trips_and_reads_earlier_json() {
        let v = sample();
        let bytes = StateCodec::to_vec(&v).unwrap();
        assert_eq!(bytes.first(), Some(&MSGPACK_TAG));
        assert_eq!(StateCodec::from_slice::<Sample>(&bytes).unwrap(), v);
        let json = serde_json::to_vec(&v).unwrap();
        assert!(
            bytes.len() < json.len() / 2,
            "{} vs {}",
            bytes.len(),
            json.len()
        );
        assert_eq!(StateCodec::from_slice::<Sample>(&json).unwrap(), v);
    }

    /// Test vector: the exact encoding (tag, then a MessagePack map with field names).
    #[test]
    fn encoding_vector() {
        #[derive(serde::Serialize)]
        struct Small {
            a: u8,
            b: Vec<u8>,
        }
        let bytes = StateCodec::to_vec(&Small {
            a: 1,
            b: vec![2, 200],
        })
        .unwrap();
        // C1 | fixmap(2) | fixstr "a" | 1 | fixstr "b" | fixarray(2) | 2 | uint8 200
        assert_eq!(hex::encode(bytes), "c182a16101a1629202ccc8");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[MSGPACK_TAG][..],
            &[MSGPACK_TAG, 0xff, 0x00][..],
            b"{nope",
        ] {
            assert!(StateCodec::from_slice::<Sample>(bad).is_err());
        }
    }
}
