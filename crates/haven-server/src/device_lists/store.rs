//! The device-list store: every version of every account's signed device list. Both backends
//! implement [`DeviceListStore`] in this folder (`sqlite.rs`, `postgres.rs`) and run the cases
//! in `conformance.rs`. Every method is one transaction.

use async_trait::async_trait;
use haven_proto::{DeviceId, UserName};

use crate::store::{corrupt, Millis, StoreError, StoreResult};

/// One stored version of an account's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDeviceList {
    /// The account.
    pub user: UserName,
    /// Its version (1, 2, …).
    pub version: u64,
    /// The signed list's canonical encoding (`haven_kt::SignedDeviceList::encode`).
    pub list: Vec<u8>,
    /// The device that signed it.
    pub signer: DeviceId,
    /// When the server stored it.
    pub created_at: Millis,
}

/// Storage of signed device lists.
#[async_trait]
pub trait DeviceListStore: Send + Sync {
    /// Stores `list` as the account's newest version. It must be exactly the next version (1
    /// when the account has none, else the newest + 1): otherwise nothing is written and the
    /// answer is `AlreadyExists("device list version")` (another device's list won that
    /// version; the caller builds on the newest and tries again). `NotFound("user")` for an
    /// unknown account. Also queues the list for the key directory (`crate::kt`), in the same
    /// transaction.
    async fn put_device_list(&self, list: &StoredDeviceList) -> StoreResult<()>;
    /// The account's newest list, if it has one.
    async fn latest_device_list(&self, user: &UserName) -> StoreResult<Option<StoredDeviceList>>;
    /// The account's lists with versions above `after`, oldest first, at most `limit`.
    async fn device_lists_after(
        &self,
        user: &UserName,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<StoredDeviceList>>;
}

/// The error for a version that is not the next one.
pub(crate) fn version_taken() -> StoreError {
    StoreError::AlreadyExists("device list version")
}

/// A row read back: (version, list, signer, created_at).
pub(crate) type RawList = (i64, Vec<u8>, String, i64);

pub(crate) fn from_row(
    user: &UserName,
    (version, list, signer, created_at): RawList,
) -> StoreResult<StoredDeviceList> {
    Ok(StoredDeviceList {
        user: user.clone(),
        version: u64::try_from(version).map_err(|_| corrupt("device list version"))?,
        list,
        signer: DeviceId::new(&signer).map_err(|_| corrupt("device list signer"))?,
        created_at,
    })
}

/// A version as the databases store it (one past `i64::MAX` can never be the next version).
pub(crate) fn version_to_db(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| version_taken())
}
