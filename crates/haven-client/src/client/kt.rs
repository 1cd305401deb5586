//! The key directory on the client (issue 11; the proofs are `haven_kt::directory`, the server
//! side `haven_server::kt`).
//!
//! Data flow.
//! - Registration pins the directory's keys (the root-signing key and akd's VRF key) and the
//!   newest signed root; every later root must be signed by the pinned key and linked to the
//!   last one this profile verified by an append-only proof (`/v1/kt/audit`), so the directory
//!   a client sees only ever grows. A root older than the last verified one (a cached answer)
//!   is accepted only with an append-only proof from it to the last verified one.
//! - Before a user's newest signed device list (verified from its chain) is relied on, the
//!   client checks it against a lookup proof: the directory must hold exactly that list as the
//!   user's value. A directory that lags (the list is queued, not yet published) is asked to
//!   publish (`POST /v1/kt/publish`); one that shows another value raises an alarm and nothing
//!   is encrypted to the user.
//! - Each sync, the device checks its own account's complete history in the directory: every
//!   value from the list it holds on must be that list or chain from it (signed by the
//!   account's own devices). Anything else — a device the server published for this account —
//!   raises an `unknown-own-device` alarm naming the device.
//!
//! - Every message carries the newest root this device verified; roots heard from contacts are
//!   compared with this device's and, if new, linked to its chain on the next sync
//!   ([`crate::kt_roots`], split-view detection).
//!
//! Trust: the pinned keys are taken on first use (registration); a server that is malicious at
//! that moment can give a client a directory of its own, which the client's contacts would not
//! share: split-view detection ([`crate::kt_roots`]) is what catches that, as soon as a message
//! crosses between the two views.

use haven_kt::directory::{self, KtKeys, SignedRoot};
use haven_kt::SignedDeviceList;
use haven_proto::api::{self, ErrorCode};
use haven_proto::{GroupId, UserName};

use super::{Client, ClientError};
use crate::devices::{AlarmKind, NewAlarm};

/// How often a client asks a lagging directory to publish before it gives up.
const PUBLISH_ATTEMPTS: usize = 3;

/// What the directory holds for a user compared with the list verified from the chain.
pub(super) enum DirectoryCheck {
    /// The directory holds this list, at this root.
    Holds(SignedRoot),
    /// The directory holds a newer version of the user's list than the chain showed: fetch
    /// the chain again.
    Newer,
}

impl Client {
    /// The pinned directory keys; pinned (with the newest root) on first use, which is
    /// registration for every profile made since the directory exists.
    pub(super) async fn kt_pins(&mut self) -> Result<KtKeys, ClientError> {
        if let Some(p) = self.engine.kt_pins()? {
            return Ok(p);
        }
        let e = self.api.kt_epoch().await?;
        let key = |b: &[u8], what: &str| {
            <[u8; 32]>::try_from(b).map_err(|_| {
                ClientError::Untrusted(format!("the server's key-directory {what} is malformed"))
            })
        };
        let pins = KtKeys {
            root_key: key(&e.root_key, "root key")?,
            vrf_key: key(&e.vrf_key, "VRF key")?,
        };
        let root = SignedRoot::decode(&e.signed_root)
            .map_err(|e| ClientError::Untrusted(e.to_string()))?;
        root.verify(&pins)
            .map_err(|e| ClientError::Untrusted(e.to_string()))?;
        self.engine.pin_kt(&pins, &root)?;
        Ok(pins)
    }

    fn directory_alarm(
        &mut self,
        kind: AlarmKind,
        user: &UserName,
        detail: String,
    ) -> Result<ClientError, ClientError> {
        self.directory_alarm_in(kind, user, None, detail)
    }

    /// A directory alarm about `user`, found in `group` (which it then marks) if one.
    fn directory_alarm_in(
        &mut self,
        kind: AlarmKind,
        user: &UserName,
        group: Option<&GroupId>,
        detail: String,
    ) -> Result<ClientError, ClientError> {
        self.engine.raise_alarm(&NewAlarm {
            kind,
            user,
            device: None,
            group,
            detail: detail.clone(),
        })?;
        Ok(ClientError::Untrusted(detail))
    }

    /// Accepts `root` as a state of the directory: the last verified root, or one linked to
    /// it by an append-only proof (a newer root becomes the last verified one).
    pub(super) async fn kt_accept_root(
        &mut self,
        pins: &KtKeys,
        root: SignedRoot,
        about: &UserName,
    ) -> Result<(), ClientError> {
        self.kt_accept_root_in(pins, root, about, None).await
    }

    /// [`Client::kt_accept_root`] for a root heard from `about` in `group`: a split view it
    /// shows marks that conversation.
    async fn kt_accept_root_in(
        &mut self,
        pins: &KtKeys,
        root: SignedRoot,
        about: &UserName,
        group: Option<&GroupId>,
    ) -> Result<(), ClientError> {
        if let Err(e) = root.verify(pins) {
            return Err(self.directory_alarm(
                AlarmKind::Directory,
                about,
                format!("the key directory sent a root not signed by its pinned key ({e})"),
            )?);
        }
        let Some(current) = self.engine.kt_root()? else {
            self.engine.set_kt_root(&root)?;
            return Ok(());
        };
        if let Some(ours) = self.engine.kt_verified_root(root.epoch)? {
            if ours.root == root.root {
                return Ok(());
            }
            return Err(self.directory_alarm_in(
                AlarmKind::SplitView,
                about,
                group,
                crate::kt_roots::split_view_detail(about, &ours, &root),
            )?);
        }
        if root.epoch == current.epoch {
            if root.root != current.root {
                return Err(self.directory_alarm_in(
                    AlarmKind::SplitView,
                    about,
                    group,
                    format!(
                        "the key directory signed two different roots for epoch {}",
                        root.epoch
                    ),
                )?);
            }
            return Ok(());
        }
        if root.epoch < current.epoch {
            return self
                .kt_audit_between(pins, root, current, about, group)
                .await;
        }
        self.kt_audit_between(pins, current, root, about, group)
            .await?;
        self.engine.set_kt_root(&root)?;
        Ok(())
    }

    /// Checks the append-only proofs from `from` to `to`, page by page.
    async fn kt_audit_between(
        &mut self,
        pins: &KtKeys,
        from: SignedRoot,
        to: SignedRoot,
        about: &UserName,
        group: Option<&GroupId>,
    ) -> Result<(), ClientError> {
        let mut at = from;
        while at.epoch < to.epoch {
            let end = to
                .epoch
                .min(at.epoch.saturating_add(api::KtAudit::MAX_EPOCHS));
            let page = self.api.kt_audit(at.epoch, end).await?;
            let mut roots = Vec::with_capacity(page.roots.len());
            for r in &page.roots {
                match SignedRoot::decode(r) {
                    Ok(r) => roots.push(r),
                    Err(e) => {
                        return Err(self.directory_alarm(
                            AlarmKind::Directory,
                            about,
                            format!("the key directory's audit answer is malformed ({e})"),
                        )?)
                    }
                }
            }
            let (Some(first), Some(last)) = (roots.first().copied(), roots.last().copied()) else {
                return Err(self.directory_alarm(
                    AlarmKind::Directory,
                    about,
                    "the key directory's audit answer holds no roots".into(),
                )?);
            };
            if first != at || last.epoch != end || (end == to.epoch && last != to) {
                let e = if first != at { at.epoch } else { end };
                let detail = match group {
                    Some(_) => format!(
                        "the key directory showed {about} a directory that its append-only \
                         proofs do not link to the one this device verified (they part at \
                         epoch {e}): a split view"
                    ),
                    None => format!(
                        "the key directory's root for epoch {e} is not the one this device \
                         verified"
                    ),
                };
                return Err(self.directory_alarm_in(AlarmKind::SplitView, about, group, detail)?);
            }
            if let Err(e) = directory::verify_audit(pins, &roots, &page.proof).await {
                return Err(self.directory_alarm(
                    AlarmKind::Directory,
                    about,
                    format!("the key directory did not only grow: {e}"),
                )?);
            }
            self.engine.kt_record_verified(&roots)?;
            at = last;
        }
        Ok(())
    }

    /// Checks that the directory holds `list` (the newest list of its user, verified from the
    /// chain) as the user's value; asks a lagging directory to publish.
    pub(super) async fn kt_check_list(
        &mut self,
        list: &SignedDeviceList,
    ) -> Result<DirectoryCheck, ClientError> {
        let user = list.list.user.clone();
        let pins = self.kt_pins().await?;
        let want = list.encode();
        for _ in 0..PUBLISH_ATTEMPTS {
            let p = match self.api.kt_lookup(&user).await {
                Ok(p) => Some(p),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => None,
                Err(e) => return Err(e.into()),
            };
            if let Some(p) = p {
                let root = match SignedRoot::decode(&p.signed_root) {
                    Ok(r) => r,
                    Err(e) => {
                        return Err(self.directory_alarm(
                            AlarmKind::Directory,
                            &user,
                            format!("the key directory's lookup answer is malformed ({e})"),
                        )?)
                    }
                };
                self.kt_accept_root(&pins, root, &user).await?;
                let v = match directory::verify_lookup(&pins, &root, user.as_str(), &p.proof) {
                    Ok(v) => v,
                    Err(e) => {
                        return Err(self.directory_alarm(
                            AlarmKind::Directory,
                            &user,
                            format!("the key directory's proof for {user} does not verify: {e}"),
                        )?)
                    }
                };
                if v.value == want {
                    return Ok(DirectoryCheck::Holds(root));
                }
                let shown = SignedDeviceList::decode(&v.value)
                    .ok()
                    .filter(|d| d.list.user == user);
                match shown.map(|d| d.list.version) {
                    Some(n) if n < list.list.version => {}
                    Some(n) if n > list.list.version => return Ok(DirectoryCheck::Newer),
                    _ => {
                        return Err(self.directory_alarm(
                            AlarmKind::Directory,
                            &user,
                            format!(
                                "the key directory shows {user} with another device list than \
                                 the one their devices signed (version {}); nothing is \
                                 encrypted to {user}",
                                list.list.version
                            ),
                        )?)
                    }
                }
            }
            // Not published yet: ask for it now.
            self.api.kt_publish().await?;
        }
        Err(ClientError::Untrusted(format!(
            "the key directory has not published {user}'s device list version {} yet; try again",
            list.list.version
        )))
    }

    /// Links the directory roots heard from contacts since the last sync to this profile's
    /// chain (`crate::kt_roots`): each one through an append-only proof, in whichever order its
    /// epoch lies; a root that cannot be linked raises a `split-view` alarm naming the contact.
    /// A root that could not be checked for another reason (the network, a server error) stays
    /// pending for the next sync; this never fails the sync.
    pub(super) async fn kt_check_heard(&mut self) -> Result<(), ClientError> {
        let pending = self
            .engine
            .kt_heard_pending(crate::kt_roots::CHECKS_PER_SYNC)?;
        if pending.is_empty() {
            return Ok(());
        }
        let pins = self.kt_pins().await?;
        for h in pending {
            match self
                .kt_accept_root_in(&pins, h.root, &h.from, Some(&h.group))
                .await
            {
                // Linked, or an alarm was raised (`Untrusted`): either way, checked.
                Ok(()) | Err(ClientError::Untrusted(_)) => self.engine.kt_heard_checked(&h.root)?,
                Err(ClientError::Net(e))
                    if e.code().is_some_and(|c| c != ErrorCode::RateLimited) =>
                {
                    // The server answered, and would not prove a root it signed.
                    if self.engine.kt_heard_refused(&h.root)? >= crate::kt_roots::MAX_REFUSALS {
                        self.directory_alarm_in(
                            AlarmKind::SplitView,
                            &h.from,
                            Some(&h.group),
                            format!(
                                "the key directory will not link the root it signed for epoch \
                                 {} (which {} verified) to the directory this device verified \
                                 (asked {} times; its answer: {e}); evidence: {}",
                                h.root.epoch,
                                h.from,
                                crate::kt_roots::MAX_REFUSALS,
                                hex::encode(h.root.encode())
                            ),
                        )?;
                        self.engine.kt_heard_checked(&h.root)?;
                    }
                }
                Err(ClientError::Engine(e)) => return Err(ClientError::Engine(e)),
                Err(_) => break,
            }
        }
        Ok(())
    }

    /// Checks this account's history in the directory (every sync): every value from the
    /// list this device holds on must be that list or chain from it. Anything else raises an
    /// `unknown-own-device` alarm.
    pub(super) async fn kt_monitor_self(&mut self) -> Result<(), ClientError> {
        let me = self.user().clone();
        let Some(mine) = self.engine.verified_list(&me)? else {
            return Ok(());
        };
        let pins = self.kt_pins().await?;
        let p = match self.api.kt_history(&me).await {
            Ok(p) => p,
            // Not published yet (a fresh account whose first list is queued).
            Err(e) if e.code() == Some(ErrorCode::NotFound) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let root = match SignedRoot::decode(&p.signed_root) {
            Ok(r) => r,
            Err(e) => {
                return Err(self.directory_alarm(
                    AlarmKind::Directory,
                    &me,
                    format!("the key directory's history answer is malformed ({e})"),
                )?)
            }
        };
        self.kt_accept_root(&pins, root, &me).await?;
        let values = match directory::verify_history(&pins, &root, me.as_str(), &p.proof) {
            Ok(v) => v,
            Err(e) => {
                return Err(self.directory_alarm(
                    AlarmKind::Directory,
                    &me,
                    format!("the key directory's history of this account does not verify: {e}"),
                )?)
            }
        };
        let mut known = mine.clone();
        // Oldest first.
        for v in values.iter().rev() {
            let shown = SignedDeviceList::decode(&v.value)
                .ok()
                .filter(|l| l.list.user == me);
            let Some(shown) = shown else {
                self.own_device_alarm(&me, v.epoch, None)?;
                continue;
            };
            if shown.list.version < mine.list.version {
                continue;
            }
            let ok = if shown.list.version == known.list.version {
                shown == known
            } else {
                shown.list.version == known.list.version + 1
                    && known.verify_successor(&shown).is_ok()
            };
            if ok {
                known = shown;
            } else {
                self.own_device_alarm(&me, v.epoch, Some((&known, &shown)))?;
            }
        }
        Ok(())
    }

    fn own_device_alarm(
        &mut self,
        me: &UserName,
        epoch: u64,
        lists: Option<(&SignedDeviceList, &SignedDeviceList)>,
    ) -> Result<(), ClientError> {
        let (device, detail) = match lists {
            None => (
                None,
                format!(
                    "the key directory published at epoch {epoch} a value for this account \
                     that is not a device list of it"
                ),
            ),
            Some((known, shown)) => {
                let (added, _) = known.changes_to(shown);
                let names: Vec<String> = added.iter().map(|d| d.device_id.to_string()).collect();
                (
                    added.first().map(|d| d.device_id.clone()),
                    format!(
                        "the key directory published at epoch {epoch} a device list for this \
                         account that no device of it signed (version {}{}); if you did not \
                         link a device, your account's server is adding one",
                        shown.list.version,
                        if names.is_empty() {
                            String::new()
                        } else {
                            format!(", with device {}", names.join(", "))
                        }
                    ),
                )
            }
        };
        self.engine.raise_alarm(&NewAlarm {
            kind: AlarmKind::UnknownOwnDevice,
            user: me,
            device: device.as_ref(),
            group: None,
            detail,
        })?;
        Ok(())
    }
}
