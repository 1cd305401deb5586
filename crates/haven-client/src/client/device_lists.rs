//! Account-signed device lists on the client (issue 11; the format and rules are
//! `haven_kt::device_list`, the local tables [`crate::devices`]).
//!
//! Data flow.
//! - Registration: the first device signs version 1 (itself alone) and uploads it before it
//!   uploads key packages.
//! - Linking: `haven device link` asks the server for its code and draws a link secret the
//!   server never sees; the user types both on the new device (`SERVER-CODE-SECRET`). The new
//!   device sends the server code and an HMAC under the secret over its two public keys (the
//!   link proof). The server passes the proof on in its `DeviceLinked` entry; the device that
//!   minted the code checks it and only then signs the successor list with the new device and
//!   uploads it, and after that adds the device to its conversations.
//! - Removal: the removing device uploads the successor list without the device first (the
//!   server refuses removing a listed device), then removes it.
//! - Everyone else: before claiming a user's key packages, and whenever the engine meets a
//!   device it cannot find in a verified list ([`EngineError::DeviceListNeeded`]), the client
//!   fetches the lists newer than the one it verified, checks the chain from it
//!   (`verify_chain`) and stores the newest. The engine then encrypts only to listed devices:
//!   a key package, Welcome or commit naming another device is refused and raises an alarm.
//!
//! Trust: the server cannot sign a list (it holds no device key), nor link a device without the
//! secret. It can still withhold the newest lists, or show different users different chains;
//! the key directory (`haven_kt::directory`) is what closes that, and its checks come on top
//! of these.

use haven_kt::device_list::{
    self, verify_chain, DeviceList, ListedDevice, SignedDeviceList, CODE_ALPHABET,
    LINK_SECRET_CHARS,
};
use haven_proto::api::{self, ErrorCode};
use haven_proto::{DeviceId, UserName};
use rand::Rng;

use super::{usage, Client, ClientError};
use crate::devices::{AlarmKind, NewAlarm};
use crate::engine::MintedLinkCode;

/// Most attempts at uploading a successor list when another device of the account uploaded one
/// first (409).
const LIST_ATTEMPTS: usize = 4;

/// A link code as `haven device link` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkCode {
    /// `SERVER-CODE-SECRET`: the server's code (three groups of four), then the link secret
    /// (four groups of five).
    pub code: String,
    /// When the server's part expires (ms).
    pub expires_at: u64,
}

/// Draws a link secret: [`LINK_SECRET_CHARS`] uniform characters of the code alphabet.
pub(crate) fn new_link_secret() -> String {
    let mut rng = rand::thread_rng();
    (0..LINK_SECRET_CHARS)
        .map(|_| {
            let i = rng.gen_range(0..CODE_ALPHABET.len());
            char::from(CODE_ALPHABET.get(i).copied().unwrap_or(b'A'))
        })
        .collect()
}

/// `server_code` and `secret` as one code to type: the secret in groups of five.
pub(crate) fn full_code(server_code: &str, secret: &str) -> String {
    let groups: Vec<String> = secret
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!("{server_code}-{}", groups.join("-"))
}

/// Splits a typed code into the server's code (normalised as the server spells it) and the
/// link secret.
pub(crate) fn split_code(code: &str) -> Result<(String, String), ClientError> {
    let bad = || {
        usage(
            "a link code is the server's code and the secret, as `haven device link` shows it: \
             XXXX-XXXX-XXXX-XXXXX-XXXXX-XXXXX-XXXXX",
        )
    };
    let chars: String = code
        .chars()
        .filter(|c| *c != '-' && !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != 12 + LINK_SECRET_CHARS || !chars.bytes().all(|b| CODE_ALPHABET.contains(&b)) {
        return Err(bad());
    }
    let (server, secret) = chars.split_at(12);
    let server = format!(
        "{}-{}-{}",
        server.get(..4).ok_or_else(bad)?,
        server.get(4..8).ok_or_else(bad)?,
        server.get(8..).ok_or_else(bad)?
    );
    Ok((server, secret.to_owned()))
}

impl Client {
    /// Checks `user`'s signed device lists with the server: fetches the versions after the one
    /// this profile verified, verifies the chain from it (from version 1 the first time) and
    /// stores the newest. Returns the newest verified list; an account without one is refused
    /// (nothing can be encrypted to devices no device of it signed). A chain that breaks the
    /// rules raises an alarm and is refused; the stored list stays.
    pub async fn sync_device_list(
        &mut self,
        user: &UserName,
    ) -> Result<SignedDeviceList, ClientError> {
        // Twice at most: the directory may hold a list uploaded after the chain was fetched.
        for _ in 0..2 {
            let Some(newest) = self.fetch_chain(user).await? else {
                self.engine.mark_device_list_checked(user);
                return Err(ClientError::Untrusted(format!(
                    "{user} has no signed device list: none of their devices has signed one, so nothing is encrypted to them"
                )));
            };
            match self.kt_check_list(&newest).await? {
                super::kt::DirectoryCheck::Holds(root) => {
                    self.engine
                        .store_verified_list(&newest, Some((root.epoch, &root.root)))?;
                    return Ok(newest);
                }
                super::kt::DirectoryCheck::Newer => continue,
            }
        }
        let detail = format!(
            "the key directory shows a newer device list for {user} than the server's chain of \
             their lists; nothing new is encrypted to {user}"
        );
        self.engine.raise_alarm(&NewAlarm {
            kind: AlarmKind::Directory,
            user,
            device: None,
            group: None,
            detail: detail.clone(),
        })?;
        Err(ClientError::Untrusted(detail))
    }

    /// Fetches `user`'s lists after the one this profile verified and verifies the chain from
    /// it; the newest list (the stored one if none is newer), not yet checked against the
    /// directory. A chain that breaks the rules raises an alarm and is refused.
    async fn fetch_chain(
        &mut self,
        user: &UserName,
    ) -> Result<Option<SignedDeviceList>, ClientError> {
        let mut anchor = self.engine.verified_list(user)?;
        loop {
            let after = anchor.as_ref().map_or(0, |l| l.list.version);
            let page = match self.api.device_lists(user, after).await {
                Ok(p) => p,
                Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                    return Err(usage(format!("unknown user {user}")))
                }
                Err(e) => return Err(e.into()),
            };
            let full = page.lists.len() >= api::DeviceLists::MAX as usize;
            let mut lists = Vec::with_capacity(page.lists.len());
            for b in &page.lists {
                match SignedDeviceList::decode(b) {
                    Ok(l) => lists.push(l),
                    Err(e) => return Err(self.broken_chain(user, &e.to_string())?),
                }
            }
            if let Err(e) = verify_chain(anchor.as_ref(), &lists) {
                return Err(self.broken_chain(user, &e.to_string())?);
            }
            if let Some(last) = lists.pop() {
                if &last.list.user != user {
                    return Err(self.broken_chain(user, "the server sent another account's list")?);
                }
                anchor = Some(last);
            }
            if !full {
                return Ok(anchor);
            }
        }
    }

    /// Checks `user`'s list unless it was checked in this session.
    pub(super) async fn ensure_device_list(&mut self, user: &UserName) -> Result<(), ClientError> {
        if !self.engine.device_list_checked(user) {
            self.sync_device_list(user).await?;
        }
        Ok(())
    }

    fn broken_chain(&mut self, user: &UserName, why: &str) -> Result<ClientError, ClientError> {
        let detail = format!(
            "the server's device lists for {user} break the account's signing rules ({why}); \
             the last verified list is kept and nothing new is encrypted to {user}"
        );
        self.engine.raise_alarm(&NewAlarm {
            kind: AlarmKind::BrokenChain,
            user,
            device: None,
            group: None,
            detail: detail.clone(),
        })?;
        Ok(ClientError::Untrusted(detail))
    }

    /// Signs version 1 of this account's list (this device alone) and uploads it: what a
    /// registering device does before anything else.
    pub(super) async fn publish_first_device_list(&mut self) -> Result<(), ClientError> {
        let me = self.user().clone();
        let list = DeviceList::first(me, self.engine.listed_self()?);
        let signed = self.engine.sign_device_list(list)?;
        self.api
            .put_device_list(&api::PutDeviceList {
                list: signed.encode(),
            })
            .await?;
        self.engine.store_verified_list(&signed, None)?;
        // Pin the directory's keys now, and see the list published before anyone relies on it.
        self.kt_pins().await?;
        self.own_list_published(&signed).await
    }

    /// Uploads the successor of this account's newest list made by `change` (given the current
    /// devices; `None`: nothing to change). Another device uploading first (409) makes it fetch
    /// and try again on the newer list.
    pub(super) async fn update_own_list<F>(&mut self, mut change: F) -> Result<(), ClientError>
    where
        F: FnMut(&[ListedDevice]) -> Option<Vec<ListedDevice>>,
    {
        let me = self.user().clone();
        for _ in 0..LIST_ATTEMPTS {
            let current = self.sync_device_list(&me).await?;
            let Some(devices) = change(current.list.devices()) else {
                return Ok(());
            };
            let list = DeviceList::successor(&current, devices)
                .map_err(|e| usage(format!("cannot make the device list: {e}")))?;
            let signed = self.engine.sign_device_list(list)?;
            match self
                .api
                .put_device_list(&api::PutDeviceList {
                    list: signed.encode(),
                })
                .await
            {
                Ok(_) => {
                    self.engine.store_verified_list(&signed, None)?;
                    return self.own_list_published(&signed).await;
                }
                Err(e) if e.code() == Some(ErrorCode::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(usage(
            "other devices of this account kept changing its device list; try again",
        ))
    }

    /// Waits for the directory to publish our own newest list (asking it to at once) and
    /// records the root it was checked at.
    async fn own_list_published(&mut self, signed: &SignedDeviceList) -> Result<(), ClientError> {
        match self.kt_check_list(signed).await? {
            super::kt::DirectoryCheck::Holds(root) => {
                self.engine
                    .store_verified_list(signed, Some((root.epoch, &root.root)))?;
                Ok(())
            }
            // Another device of ours uploaded a newer one meanwhile: it waits for its own.
            super::kt::DirectoryCheck::Newer => Ok(()),
        }
    }

    /// A one-time code to link a new device to this account: the server's code, minted on a
    /// proof by this device's key, and a link secret drawn here that the server never sees.
    /// When a device links with it, this device checks the new device's proof of the secret,
    /// signs it into the account's list and adds it to its conversations ([`Client::sync`]).
    pub async fn link_code(&mut self) -> Result<LinkCode, ClientError> {
        let proof = self.device_proof(api::PROOF_LINK_CODE, b"").await?;
        let resp = self.api.link_code(&api::LinkCodeRequest { proof }).await?;
        let secret = new_link_secret();
        self.engine.record_minted_link_code(
            &resp.code,
            &secret,
            resp.expires_at,
            super::now_ms(),
        )?;
        Ok(LinkCode {
            code: full_code(&resp.code, &secret),
            expires_at: resp.expires_at,
        })
    }

    /// The follow-up of a `DeviceLinked` entry for our account: if this device minted its code
    /// and the new device proved the code's secret, signs it into the list and adds it to our
    /// conversations; a failed proof raises an alarm and signs nothing. A link this device did
    /// not mint is left to the device that did; if the account's list does not have the device
    /// after that, an alarm says so (it resolves itself when a device of ours signs it in).
    pub(super) async fn follow_device_linked(
        &mut self,
        d: &api::DeviceLinked,
    ) -> Result<(), ClientError> {
        let minted = match &d.link_code_sha256 {
            Some(h) => self.engine.take_minted_link_code(h)?,
            None => None,
        };
        let Some(minted) = minted else {
            return self.check_foreign_link(&d.device_id).await;
        };
        let Some(key) = self.proven_key(&minted, d)? else {
            return Ok(());
        };
        let new = ListedDevice {
            device_id: d.device_id.clone(),
            mls_key: key,
        };
        self.update_own_list(|devices| {
            if devices.contains(&new) {
                return None;
            }
            let mut next: Vec<ListedDevice> = devices
                .iter()
                .filter(|x| x.device_id != new.device_id)
                .cloned()
                .collect();
            next.push(new.clone());
            Some(next)
        })
        .await?;
        self.add_linked_device(&d.device_id).await
    }

    /// The new device's MLS key if its link proof checks under the secret of `minted`;
    /// otherwise an alarm and `None`.
    fn proven_key(
        &mut self,
        minted: &MintedLinkCode,
        d: &api::DeviceLinked,
    ) -> Result<Option<[u8; 32]>, ClientError> {
        let me = self.user().clone();
        let proven = match (&d.auth_key, &d.mls_key, &d.link_proof) {
            (Some(auth), Some(mls), Some(proof)) => {
                let secret = device_list::secret_from_chars(&minted.secret)
                    .map_err(|_| usage("a stored link secret is malformed"))?;
                let ok =
                    device_list::check_link_proof(&secret, &minted.server_code, auth, mls, proof);
                ok.then(|| <[u8; 32]>::try_from(mls.as_slice()).ok())
                    .flatten()
            }
            _ => None,
        };
        if proven.is_none() {
            self.engine.raise_alarm(&NewAlarm {
                kind: AlarmKind::BadLinkProof,
                user: &me,
                device: Some(&d.device_id),
                group: None,
                detail: format!(
                    "device {} used the link code {} minted by this device without proving the \
                     code's secret; it was not signed into your device list and reads nothing. \
                     If you did not type the code on a new device, someone saw the server's part \
                     of it",
                    d.device_id, minted.server_code
                ),
            })?;
        }
        Ok(proven)
    }

    /// A device linked with a code this device did not mint: its minter signs it in. If our
    /// verified list still lacks it, an alarm shows it (resolved when it is signed in).
    async fn check_foreign_link(&mut self, device: &DeviceId) -> Result<(), ClientError> {
        if device == self.device_id() {
            return Ok(());
        }
        let me = self.user().clone();
        let list = match self.sync_device_list(&me).await {
            Ok(l) => l,
            // The list or the directory is not what our devices signed: that raised its alarm,
            // and the link is no reason to stop syncing.
            Err(ClientError::Untrusted(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if list.list.key_of(device).is_none() {
            self.engine.raise_alarm(&NewAlarm {
                kind: AlarmKind::UnsignedDevice,
                user: &me,
                device: Some(device),
                group: None,
                detail: format!(
                    "the server says device {device} was linked to your account, and none of \
                     your devices has signed it into your device list: it reads nothing. If you \
                     are linking it from another device of yours, this clears when that device \
                     syncs; otherwise someone tried to add a device to your account"
                ),
            })?;
        }
        Ok(())
    }

    /// Takes `target` out of this account's signed list (before the server removes it).
    pub(super) async fn unlist_device(&mut self, target: &DeviceId) -> Result<(), ClientError> {
        self.update_own_list(|devices| {
            if !devices.iter().any(|d| &d.device_id == target) {
                return None;
            }
            Some(
                devices
                    .iter()
                    .filter(|d| &d.device_id != target)
                    .cloned()
                    .collect(),
            )
        })
        .await
    }

    /// Keeps the key packages of devices in `claimed.user`'s verified list; any other is the
    /// server offering a device no device of the account signed in (an honest server filters
    /// them): it is left out, and an alarm shows it. The engine checks the keys again.
    pub(super) fn listed_only(
        &mut self,
        mut claimed: api::ClaimedKeyPackages,
    ) -> Result<api::ClaimedKeyPackages, ClientError> {
        let user = claimed.user.clone();
        let list = self.engine.verified_list(&user)?;
        let (keep, ghosts): (Vec<_>, Vec<_>) = claimed.key_packages.into_iter().partition(|k| {
            list.as_ref()
                .is_some_and(|l| l.list.key_of(&k.device_id).is_some())
        });
        for g in &ghosts {
            self.engine.raise_alarm(&NewAlarm {
                kind: AlarmKind::UnlistedDevice,
                user: &user,
                device: Some(&g.device_id),
                group: None,
                detail: format!(
                    "the server offered a key package of device {} as {user}'s, and {user}'s signed device list does not have it; nothing was encrypted to it",
                    g.device_id
                ),
            })?;
        }
        claimed.key_packages = keep;
        Ok(claimed)
    }

    /// The open key-transparency alarms (or all, with `all`), oldest first.
    pub fn alarms(&self, all: bool) -> Result<Vec<crate::devices::Alarm>, ClientError> {
        Ok(self.engine.alarms(all)?)
    }

    /// Acknowledges an open alarm (the user has looked at it); a conversation it marked can be
    /// written to again.
    pub fn ack_alarm(&mut self, id: i64) -> Result<(), ClientError> {
        if self.engine.ack_alarm(id)? {
            Ok(())
        } else {
            Err(usage(format!("no open alarm {id} (haven keys lists them)")))
        }
    }

    /// `user`'s verified device list (checked with the server now).
    pub async fn device_list(&mut self, user: &UserName) -> Result<SignedDeviceList, ClientError> {
        self.sync_device_list(user).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_split_back_into_their_parts() {
        for _ in 0..50 {
            let secret = new_link_secret();
            assert_eq!(secret.len(), LINK_SECRET_CHARS);
            let full = full_code("ABCD-EFGH-JK23", &secret);
            assert_eq!(full.len(), 14 + 1 + 20 + 3);
            let (server, s) = split_code(&full).unwrap();
            assert_eq!(server, "ABCD-EFGH-JK23");
            assert_eq!(s, secret);
            // As typed: lower case, spaces, missing dashes.
            let typed = full.to_ascii_lowercase().replace('-', " ");
            assert_eq!(split_code(&typed).unwrap(), (server, secret));
        }
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "ABCD-EFGH-JK23",
            "ABCD-EFGH-JK23-AAAAA-AAAAA-AAAAA-AAAA",
            "ABCD-EFGH-JK23-AAAAA-AAAAA-AAAAA-AAAAAA",
            "ABCD-EFGH-JK23-AAAAA-AAAAA-AAAAA-AAAA0",
            "ABCD-EFGH-JK2Ü-AAAAA-AAAAA-AAAAA-AAAAA",
        ] {
            assert!(
                matches!(split_code(bad), Err(ClientError::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_use_the_whole_alphabet() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.extend(new_link_secret().bytes());
        }
        assert_eq!(seen.len(), CODE_ALPHABET.len());
    }
}
