//! The device-list service: checks an uploaded list against the account's newest one and its
//! registered devices, stores it, and serves the chain.

use std::collections::HashMap;

use haven_kt::SignedDeviceList;
use haven_proto::api;
use haven_proto::UserName;

use super::store::StoredDeviceList;
use crate::service::{now_ms, Authed, Service, ServiceError, ServiceResult};
use crate::store::StoreError;

impl Service {
    /// `PUT /v1/devices/list`: the account's next signed list, signed by the uploading device.
    ///
    /// Refused (400) unless: it decodes; it is this account's; the uploading device signed it;
    /// it is version 1 holding exactly the uploader (no list yet) or the successor of the
    /// newest list (signed by a device of that list, naming its hash); and every device in it is
    /// a current device of the account with the MLS key it registered. A version another
    /// upload took first is 409 `already_exists`: build on the newest and try again.
    pub async fn put_device_list(
        &self,
        who: &Authed,
        req: api::PutDeviceList,
    ) -> ServiceResult<api::DeviceListStored> {
        let bad = |m: String| ServiceError::BadRequest(m);
        let next = SignedDeviceList::decode(&req.list).map_err(|e| bad(e.to_string()))?;
        if next.list.user != who.user {
            return Err(ServiceError::Forbidden("a device list of another account"));
        }
        if next.signer != who.device {
            return Err(bad(
                "a device list must be signed by the device that uploads it".into(),
            ));
        }
        match self.store.latest_device_list(&who.user).await? {
            None => next.verify_first(),
            Some(prev) => {
                let prev = SignedDeviceList::decode(&prev.list)
                    .map_err(|_| ServiceError::Internal("stored device list unreadable".into()))?;
                prev.verify_successor(&next)
            }
        }
        .map_err(|e| bad(e.to_string()))?;
        let registered: HashMap<_, _> = self
            .store
            .user_devices(&who.user)
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|d| (d.device_id, d.mls_key))
            .collect();
        for d in next.list.devices() {
            match registered.get(&d.device_id) {
                Some(Some(k)) if k.as_slice() == d.mls_key.as_slice() => {}
                Some(_) => {
                    return Err(bad(format!(
                        "device {} is listed with a key it did not register",
                        d.device_id
                    )))
                }
                None => {
                    return Err(bad(format!(
                        "device {} is not a device of this account",
                        d.device_id
                    )))
                }
            }
        }
        let version = next.list.version;
        self.store
            .put_device_list(&StoredDeviceList {
                user: who.user.clone(),
                version,
                list: req.list,
                signer: who.device.clone(),
                created_at: now_ms(),
            })
            .await
            .map_err(|e| match e {
                StoreError::AlreadyExists(w) => ServiceError::AlreadyExists(w),
                other => other.into(),
            })?;
        if let Some(kt) = &self.kt {
            kt.wake();
        }
        Ok(api::DeviceListStored { version })
    }

    /// `GET /v1/users/{name}/device-lists?after=N`: the account's lists above version `after`,
    /// oldest first (at most [`api::DeviceLists::MAX`]).
    pub async fn device_lists(
        &self,
        _who: &Authed,
        user: &UserName,
        after: u64,
    ) -> ServiceResult<api::DeviceLists> {
        if self.store.user_devices(user).await?.is_none() {
            return Err(ServiceError::NotFound("user"));
        }
        let lists = self
            .store
            .device_lists_after(user, after, api::DeviceLists::MAX)
            .await?
            .into_iter()
            .map(|l| l.list)
            .collect();
        Ok(api::DeviceLists { lists })
    }

    /// The devices in the account's newest signed list, if it has one (the devices the server
    /// hands key packages out for).
    pub(crate) async fn listed_devices(
        &self,
        user: &UserName,
    ) -> ServiceResult<Option<Vec<haven_proto::DeviceId>>> {
        let Some(l) = self.store.latest_device_list(user).await? else {
            return Ok(None);
        };
        let l = SignedDeviceList::decode(&l.list)
            .map_err(|_| ServiceError::Internal("stored device list unreadable".into()))?;
        Ok(Some(
            l.list
                .devices()
                .iter()
                .map(|d| d.device_id.clone())
                .collect(),
        ))
    }
}
