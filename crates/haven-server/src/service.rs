//! The server's services: everything the HTTP layer calls, independent of HTTP.
//!
//! Data flow for one application message (DESIGN.md, "Message path"):
//! 1. the sender device is authenticated by its session token;
//! 2. the clear-text MLS header is read ([`haven_proto::mls_frame`]): it must be a
//!    `PrivateMessage` of content type application for this group;
//! 3. the franking commitment is read from `authenticated_data` — no commitment, no delivery;
//! 4. the server binds it with its own tag (`haven_frank::server_tag`) to the sender device, the
//!    group and its receive time;
//! 5. one transaction checks that the sender is a member and every recipient queue has room
//!    (depth and byte quotas, and the sender's share of it: [`crate::quota`]), then stores the
//!    message once and a queue row for each other member device, or nothing at all;
//! 6. online recipients are woken ([`Hub`]); their WebSocket task pushes from the queue.
//!
//! Group changes (create, commit, leave) are verified against the server's public view of each
//! group before anything is routed ([`crate::groups`] gives the data flow and what the server
//! learns): the server derives membership from verified commits, never from a client's word, and
//! every MLS leaf must carry the signature key its device registered. Exactly one commit is
//! accepted per epoch, and a Welcome is released only with its accepted commit, to exactly the
//! devices that commit adds.
//!
//! Sessions and devices (security review 2026-12, finding 11). A session token is a bearer
//! secret: whoever holds it acts as the device for routine calls (send, fetch, commit). It is
//! looked up in the database on every request — no process cache — so revoking it (`logout`, a
//! device removal) stops it at once on every node. Changing the account's set of devices needs
//! more than the token: minting a link code and removing a device take a fresh
//! [`api::DeviceProof`], a signature by the acting device's authentication key over a
//! single-use server nonce, the purpose and the subject ([`api::device_proof_message`]). Trust
//! assumption: the authentication key stays on its device (it never leaves the client's
//! profile); a thief with the token alone can read what the token fetches until it is revoked,
//! but cannot add a device that would keep reading afterwards. A removed device is revoked in
//! one transaction (sessions, key packages, claims, queue, group routing, the account's
//! outstanding link codes) and the account's other devices are told (`DeviceRemoved`) so that
//! they commit MLS Removes of its leaf; until that commit lands, other members still encrypt to
//! the leaf, but nothing is routed to it and it cannot log in. The franking keys come from
//! [`crate::frank_keys`] (a key file, not the database).
//!
//! Every authenticated write (send, commit, proposal, blob and key-package upload, group
//! creation) first takes a token from its account's bucket, key-package claims from the
//! claimer's and the claimed user's, and registration, login challenges and links from the
//! client address's; the buckets live in the database ([`crate::quota`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signature, VerifyingKey};
use haven_frank::{Binding, Keyring};
use haven_proto::api::{self, EntryKind};
use haven_proto::mls_frame::{self, ContentType, WireFormat};
use haven_proto::{BlobId, DeviceId, GroupId, UserName};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::blobs::{BlobError, BlobReader, BlobStore, ByteStream};
use crate::config::ServerLimits;
use crate::groups::{self, GroupView, Leaf, VerifyError};
use crate::quota::{Bucket, RateRule};
use crate::store::{
    CommitApply, KeyPackageClaim, Limits, Millis, NewDevice, NewKeyPackage, NewMessage, Store,
    StoreError, StoredFrank,
};

/// Why a request was refused. Mapped to HTTP in one place (`http::error_response`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Malformed input.
    #[error("{0}")]
    BadRequest(String),
    /// Missing, expired or forged authentication.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// Unknown thing.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// Taken.
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    /// Stale commit.
    #[error("commit is for a stale epoch; the group is at epoch {0}")]
    EpochConflict(u64),
    /// Limit reached.
    #[error("{0}")]
    Limit(String),
    /// Too large.
    #[error("{0}")]
    TooLarge(String),
    /// Rate limited.
    #[error("too many requests from this address; try again later")]
    RateLimited,
    /// Rate limited per account (a [`crate::quota::Bucket`] other than the per-IP one).
    #[error("{0}")]
    TooManyRequests(&'static str),
    /// The sender's share of a recipient's queue is used up; other senders still get through.
    #[error("{message}")]
    QueueShare {
        /// The recipient device whose queue refused.
        recipient: DeviceId,
        /// What happened, for people.
        message: String,
    },
    /// The request conflicts with the state of what it names (a case already closed, an
    /// action already appealed).
    #[error("{0}")]
    Conflict(String),
    /// The account is suspended or banned (the message says until when, why and how to
    /// appeal).
    #[error("{0}")]
    Suspended(String),
    /// A contact rule refused the approach (the message is neutral: it never reveals the
    /// other account's age, settings or whether it blocked the caller).
    #[error("{0}")]
    Refused(String),
    /// The caller's new-contact limit for the day is reached; try again at `retry_at`.
    #[error("{message}")]
    ContactLimit {
        /// What happened, with when to try again.
        message: String,
        /// When one more new contact fits, ms.
        retry_at: Millis,
    },
    /// Internal failure (storage); nothing was changed.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(w) => ServiceError::NotFound(w),
            StoreError::AlreadyExists(w) => ServiceError::AlreadyExists(w),
            StoreError::EpochConflict { current } => ServiceError::EpochConflict(current),
            StoreError::NotMember => ServiceError::Forbidden("not a member of this group"),
            StoreError::FutureEpoch { current } => ServiceError::BadRequest(format!(
                "the message is for a future epoch: the group is at epoch {current}"
            )),
            StoreError::InvalidMembership(w) => {
                ServiceError::BadRequest(format!("invalid membership change: {w}"))
            }
            StoreError::Limit { what, max } => {
                ServiceError::Limit(format!("{what} limit of {max} reached"))
            }
            StoreError::LastDevice => ServiceError::Forbidden(
                "this is the account's last device; it cannot be removed (link another device first)",
            ),
            StoreError::QueueShare {
                recipient,
                what,
                max,
            } => ServiceError::QueueShare {
                message: format!(
                    "{what} ({max}) of the queue of device {recipient} is used up; \
                     other senders still reach it, and room returns as it syncs"
                ),
                recipient,
            },
            StoreError::Backend(m) => ServiceError::Internal(m),
        }
    }
}

impl From<VerifyError> for ServiceError {
    fn from(e: VerifyError) -> Self {
        match e {
            VerifyError::Epoch { group, .. } => ServiceError::EpochConflict(group),
            VerifyError::State(_) => ServiceError::Internal(e.to_string()),
            _ => ServiceError::BadRequest(e.to_string()),
        }
    }
}

impl From<BlobError> for ServiceError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::TooLarge { max } => {
                return ServiceError::TooLarge(format!("attachment larger than {max} bytes"))
            }
            BlobError::Body(detail) => {
                return ServiceError::BadRequest(format!("upload interrupted: {detail}"))
            }
            BlobError::Io(_) => {}
        }
        ServiceError::Internal(e.to_string())
    }
}

/// Result alias.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// Wakes the live connections of devices when their queue grows. A `watch` channel per device:
/// no wake-up is lost between a fetch and the next wait, and several connections may wait.
#[derive(Default)]
pub struct Hub {
    devices: Mutex<HashMap<DeviceId, watch::Sender<u64>>>,
}

impl Hub {
    /// Subscribes to a device's wake-ups.
    pub fn subscribe(&self, device: &DeviceId) -> watch::Receiver<u64> {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(device.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Wakes a device's connections, if any.
    pub fn wake(&self, device: &DeviceId) {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = map.get(device) {
            if tx.receiver_count() == 0 {
                map.remove(device);
            } else {
                tx.send_modify(|v| *v = v.wrapping_add(1));
            }
        }
    }
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

/// `N` random bytes as lower-case hex (case and action ids).
pub(crate) fn random_hex<const N: usize>() -> String {
    hex::encode(random::<N>())
}

fn sha256(b: &[u8]) -> Vec<u8> {
    Sha256::digest(b).to_vec()
}

/// Runs CPU-bound verification off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> ServiceResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ServiceError::Internal(format!("verification task failed: {e}")))
}

/// An authenticated device (only [`Service::authenticate`] makes one).
#[derive(Debug, Clone)]
pub struct Authed {
    /// The device.
    pub device: DeviceId,
    /// SHA-256 of the session token it presented (to revoke that session).
    token_hash: Vec<u8>,
    /// Its account (for per-account limits).
    pub user: UserName,
}

/// The services.
pub struct Service {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) frank_keys: Keyring,
    pub(crate) limits: ServerLimits,
    pub(crate) hub: Hub,
    /// Seals reported content at rest ([`crate::moderation::vault`]); reports are refused
    /// without one.
    pub(crate) evidence_key: Option<crate::moderation::EvidenceKey>,
    /// The contact policy and risk configuration ([`crate::contacts`]).
    pub(crate) safety: haven_safety::policy::PolicyConfig,
    /// The key directory ([`crate::kt`]); its endpoints answer 503 without one.
    pub(crate) kt: Option<Arc<crate::kt::Kt>>,
    /// The voucher database's release keys this node has opened ([`crate::psi`]).
    pub(crate) psi_keys: crate::psi::service::KeyCache,
    /// Held shared by an upload from writing its record to making its file visible, and
    /// exclusively by the purge from finding unnamed blobs to deleting their files, so the purge
    /// never deletes a file an upload has just recorded.
    blob_files: tokio::sync::RwLock<()>,
}

const LINK_CODE_TTL_MS: Millis = 10 * 60 * 1000;
/// How long a key-package claim lets its claimer add the device to the group it named.
const CLAIM_TTL_MS: Millis = 60 * 60 * 1000;
const CHALLENGE_TTL_MS: Millis = 2 * 60 * 1000;

impl Service {
    /// Builds the services over a store and blob store, tagging with the current key of
    /// `frank_keys` (loaded by [`crate::frank_keys::load_or_create`]).
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        limits: ServerLimits,
        frank_keys: Keyring,
    ) -> Self {
        Service {
            store,
            blobs,
            frank_keys,
            limits,
            hub: Hub::default(),
            evidence_key: None,
            safety: haven_safety::policy::PolicyConfig::default(),
            kt: None,
            psi_keys: Default::default(),
            blob_files: tokio::sync::RwLock::new(()),
        }
    }

    /// Sets the contact policy and risk configuration (default: `PolicyConfig::default()`).
    pub fn with_safety(mut self, safety: haven_safety::policy::PolicyConfig) -> Self {
        self.safety = safety;
        self
    }

    /// Sets the key directory (opened by [`crate::kt::Kt::open`]).
    pub fn with_kt(mut self, kt: Arc<crate::kt::Kt>) -> Self {
        self.kt = Some(kt);
        self
    }

    /// Sets the evidence key (loaded by [`crate::moderation::vault::load_or_create`]).
    pub fn with_evidence_key(mut self, key: crate::moderation::EvidenceKey) -> Self {
        self.evidence_key = Some(key);
        self
    }

    /// The limits in force.
    pub fn limits(&self) -> &ServerLimits {
        &self.limits
    }

    /// The wake-up hub.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The franking keys (for report verification and tests).
    pub fn frank_keys(&self) -> &Keyring {
        &self.frank_keys
    }

    pub(crate) fn store_limits(&self) -> Limits {
        Limits {
            max_group_members: self.limits.max_group_members,
            max_key_packages: self.limits.max_key_packages,
            max_queue_depth: self.limits.max_queue_depth,
            max_queue_bytes: self.limits.max_queue_bytes,
            max_account_queue_bytes: self.limits.max_account_queue_bytes,
            share_device_depth: self.limits.queue_share_device_depth,
            share_device_bytes: self.limits.queue_share_device_bytes,
            share_account_depth: self.limits.queue_share_account_depth,
            share_account_bytes: self.limits.queue_share_account_bytes,
            max_devices: self.limits.max_devices_per_account,
        }
    }

    pub(crate) fn expires_at(&self, now: Millis) -> Millis {
        now.saturating_add(self.limits.queue_ttl.as_millis() as Millis)
    }

    /// Checks a per-IP rate limit for unauthenticated endpoints (registration, login
    /// challenges, device links). The bucket lives in the database ([`crate::quota`]), so it
    /// survives restarts and every node shares it.
    pub async fn rate_limit(&self, ip: IpAddr) -> ServiceResult<()> {
        let rule = RateRule::new(self.limits.auth_burst, self.limits.auth_refill_per_sec);
        if self.take(Bucket::Auth(ip), rule).await? {
            Ok(())
        } else {
            Err(ServiceError::RateLimited)
        }
    }

    /// Takes a token from `bucket`; false if it is empty.
    pub(crate) async fn take(&self, bucket: Bucket<'_>, rule: RateRule) -> ServiceResult<bool> {
        Ok(self.store.take_token(&bucket.key(), rule, now_ms()).await?)
    }

    /// Charges one authenticated write to the caller's account.
    pub(crate) async fn write_limit(&self, who: &Authed) -> ServiceResult<()> {
        let rule = RateRule::new(self.limits.write_burst, self.limits.write_refill_per_sec);
        if self.take(Bucket::Write(&who.user), rule).await? {
            Ok(())
        } else {
            Err(ServiceError::TooManyRequests(
                "too many writes from this account; try again later",
            ))
        }
    }

    // --- accounts ---

    /// Checks a new device's label and keys: the auth key is an Ed25519 key, and it signed
    /// the MLS signature key ([`api::mls_key_message`]), itself an Ed25519 key (Haven's one
    /// ciphersuite signs with Ed25519).
    fn check_device_fields(
        name: &str,
        auth_key: &[u8],
        mls_key: &[u8],
        mls_key_signature: &[u8],
    ) -> ServiceResult<()> {
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(ServiceError::BadRequest(
                "device name must be 1 to 64 printable characters".into(),
            ));
        }
        let key: [u8; 32] = auth_key.try_into().map_err(|_| {
            ServiceError::BadRequest("auth_key must be a 32-byte Ed25519 public key".into())
        })?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| {
            ServiceError::BadRequest("auth_key is not a valid Ed25519 public key".into())
        })?;
        let mls: [u8; 32] = mls_key.try_into().map_err(|_| {
            ServiceError::BadRequest("mls_key must be a 32-byte Ed25519 public key".into())
        })?;
        VerifyingKey::from_bytes(&mls).map_err(|_| {
            ServiceError::BadRequest("mls_key is not a valid Ed25519 public key".into())
        })?;
        let sig = Signature::from_slice(mls_key_signature).map_err(|_| {
            ServiceError::BadRequest("mls_key_signature is not an Ed25519 signature".into())
        })?;
        key.verify_strict(&api::mls_key_message(mls_key), &sig)
            .map_err(|_| {
                ServiceError::BadRequest("mls_key_signature does not verify with auth_key".into())
            })?;
        Ok(())
    }

    /// Registers a user and its first device.
    pub async fn register(
        &self,
        req: api::RegisterRequest,
    ) -> ServiceResult<api::DeviceRegistered> {
        Self::check_device_fields(
            &req.device_name,
            &req.auth_key,
            &req.mls_key,
            &req.mls_key_signature,
        )?;
        let now = now_ms();
        // The band and the day it next changes; the date of birth itself is not kept.
        let birth = haven_safety::age::parse_date(&req.birth_date)
            .map_err(|e| ServiceError::BadRequest(format!("birth date: {e}")))?;
        let age = haven_safety::AgeRecord::from_birth_date(birth, haven_safety::age::utc_day(now))
            .map_err(|e| ServiceError::BadRequest(format!("birth date: {e}")))?;
        haven_safety::policy::check_registration(&age, &self.safety)
            .map_err(|e| ServiceError::Refused(e.to_string()))?;
        let device = NewDevice {
            device_id: DeviceId::from_bytes(random()),
            name: req.device_name,
            auth_key: req.auth_key,
            mls_key: req.mls_key,
            created_at: now,
        };
        self.store
            .create_account(&req.user, &device, &crate::contacts::service::stored(&age))
            .await?;
        tracing::info!(user = %req.user, device = %device.device_id, "registered");
        Ok(api::DeviceRegistered {
            user: req.user,
            device_id: device.device_id,
        })
    }

    /// Issues a login challenge.
    pub async fn challenge(
        &self,
        req: api::ChallengeRequest,
    ) -> ServiceResult<api::ChallengeResponse> {
        if self.store.device(&req.device_id).await?.is_none() {
            return Err(ServiceError::NotFound("device"));
        }
        let nonce = random::<32>().to_vec();
        let expires_at = now_ms() + CHALLENGE_TTL_MS;
        self.store
            .put_challenge(&nonce, &req.device_id, expires_at)
            .await?;
        Ok(api::ChallengeResponse {
            nonce,
            expires_at: expires_at as u64,
        })
    }

    /// Checks a signed challenge and opens a session.
    pub async fn login(&self, req: api::LoginRequest) -> ServiceResult<api::LoginResponse> {
        const BAD: ServiceError = ServiceError::Unauthorized(
            "login failed: unknown or expired challenge, or bad signature",
        );
        let device = self.store.device(&req.device_id).await?.ok_or(BAD)?;
        let key: [u8; 32] = device.auth_key.as_slice().try_into().map_err(|_| BAD)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| BAD)?;
        let sig = Signature::from_slice(&req.signature).map_err(|_| BAD)?;
        // Consume the challenge first, so a bad signature still burns it.
        if !self
            .store
            .take_challenge(&req.nonce, &req.device_id, now_ms())
            .await?
        {
            return Err(BAD);
        }
        key.verify_strict(&api::login_message(&req.device_id, &req.nonce), &sig)
            .map_err(|_| BAD)?;
        // A suspended or banned account proved who it is, and learns why it cannot log in.
        self.suspension_gate(&device.user).await?;
        let token_bytes: [u8; 32] = random();
        let token = hex::encode(token_bytes);
        let expires_at = now_ms() + self.limits.session_ttl.as_millis() as Millis;
        self.store
            .put_session(&sha256(token.as_bytes()), &req.device_id, expires_at)
            .await?;
        Ok(api::LoginResponse {
            token,
            expires_at: expires_at as u64,
        })
    }

    /// Authenticates a bearer token: one primary-key lookup in the database on every request,
    /// with no cache in the process, so a revoked session (logout, device removal) stops
    /// working at once on every server node.
    pub async fn authenticate(&self, token: &str) -> ServiceResult<Authed> {
        const BAD: ServiceError =
            ServiceError::Unauthorized("missing, unknown or expired session token");
        if token.len() != 64 {
            return Err(BAD);
        }
        let hash = sha256(token.as_bytes());
        let (device, user) = self
            .store
            .session_account(&hash, now_ms())
            .await?
            .ok_or(BAD)?;
        Ok(Authed {
            device,
            user,
            token_hash: hash,
        })
    }

    /// Checks that the session `who` was authenticated with is still live (a long-lived
    /// connection asks before each push, so a revoked session gets nothing more on any node).
    pub async fn check_session(&self, who: &Authed) -> ServiceResult<()> {
        match self.store.session_device(&who.token_hash, now_ms()).await? {
            Some(d) if d == who.device => Ok(()),
            _ => Err(ServiceError::Unauthorized(
                "the session was revoked or expired",
            )),
        }
    }

    /// Revokes the caller's session, or (`all`) every session of every device of its account.
    pub async fn logout(
        &self,
        who: &Authed,
        req: api::LogoutRequest,
    ) -> ServiceResult<api::Accepted> {
        let count = if req.all {
            self.store.revoke_user_sessions(&who.user).await?
        } else {
            u64::from(self.store.revoke_session(&who.token_hash).await?)
        };
        tracing::info!(device = %who.device, all = req.all, "logged out");
        Ok(api::Accepted {
            count: u32::try_from(count).unwrap_or(u32::MAX),
        })
    }

    /// Checks a [`api::DeviceProof`] by the caller for `purpose` and `subject`: consumes its
    /// nonce (a login challenge issued for the caller's device) and verifies the signature with
    /// the device's registered authentication key. A bearer token alone cannot pass.
    async fn check_proof(
        &self,
        who: &Authed,
        purpose: &str,
        subject: &[u8],
        proof: &api::DeviceProof,
    ) -> ServiceResult<()> {
        self.check_device_proof(&who.device, purpose, subject, proof)
            .await
    }

    /// [`Service::check_proof`] for a device named in the request (an appeal by a suspended
    /// account, which has no session).
    pub(crate) async fn check_device_proof(
        &self,
        device_id: &DeviceId,
        purpose: &str,
        subject: &[u8],
        proof: &api::DeviceProof,
    ) -> ServiceResult<()> {
        const BAD: ServiceError = ServiceError::Unauthorized(
            "device proof failed: unknown or expired nonce, or bad signature by this device's key",
        );
        let device = self.device_record(device_id).await?;
        let key: [u8; 32] = device.auth_key.as_slice().try_into().map_err(|_| BAD)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| BAD)?;
        let sig = Signature::from_slice(&proof.signature).map_err(|_| BAD)?;
        // Consume the nonce first, so a bad signature still burns it.
        if !self
            .store
            .take_challenge(&proof.nonce, device_id, now_ms())
            .await?
        {
            return Err(BAD);
        }
        key.verify_strict(
            &api::device_proof_message(purpose, device_id, &proof.nonce, subject),
            &sig,
        )
        .map_err(|_| BAD)
    }

    /// Removes (revokes) a device of the caller's account, on a proof by the caller's device
    /// key: its sessions, key packages and queue go, routing to it stops, and the account's
    /// other devices are told (`DeviceRemoved`) so they commit MLS Removes of it. The last
    /// device of an account cannot be removed.
    pub async fn remove_device(
        &self,
        who: &Authed,
        target: &DeviceId,
        req: api::RemoveDeviceRequest,
    ) -> ServiceResult<api::Accepted> {
        let me = self.device_record(&who.device).await?;
        let target_record = self
            .store
            .device(target)
            .await?
            .filter(|d| d.user == me.user)
            .ok_or(ServiceError::NotFound("device of this account"))?;
        self.check_proof(
            who,
            api::PROOF_REMOVE_DEVICE,
            target.as_str().as_bytes(),
            &req.proof,
        )
        .await?;
        // Only after the proof: who may not remove it learns nothing more. The last device is
        // refused as such (the store checks it again in the removal's transaction).
        if self
            .store
            .user_devices(&me.user)
            .await?
            .is_some_and(|d| d.len() == 1)
        {
            return Err(StoreError::LastDevice.into());
        }
        if self
            .listed_devices(&me.user)
            .await?
            .is_some_and(|l| l.contains(target))
        {
            return Err(ServiceError::Conflict(
                "the device is still in the account's signed device list: upload the next list without it first".into(),
            ));
        }
        let now = now_ms();
        let payload = serde_json::to_vec(&api::DeviceRemoved {
            device_id: target.clone(),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let event = NewMessage {
            kind: EntryKind::DeviceRemoved,
            group_id: None,
            sender: Some(who.device.clone()),
            payload,
            frank: None,
            received_at: now,
            expires_at: self.expires_at(now),
        };
        let groups = self
            .store
            .revoke_device(target, now, &event, &self.store_limits())
            .await?;
        tracing::info!(user = %me.user, device = %target, by = %who.device, groups = groups.len(), "device removed");
        if let Some(devices) = self.store.user_devices(&me.user).await? {
            for d in &devices {
                self.hub.wake(&d.device_id);
            }
        }
        // Wakes the removed device's live connections, which then find their session gone.
        self.hub.wake(&target_record.device_id);
        Ok(api::Accepted {
            count: u32::try_from(groups.len()).unwrap_or(u32::MAX),
        })
    }

    /// Creates a one-time link code for the caller's user, on a fresh proof by the caller's
    /// device key ([`api::PROOF_LINK_CODE`]): a session token alone cannot add a device.
    pub async fn link_code(
        &self,
        who: &Authed,
        req: api::LinkCodeRequest,
    ) -> ServiceResult<api::LinkCodeResponse> {
        let user = who.user.clone();
        self.check_proof(who, api::PROOF_LINK_CODE, b"", &req.proof)
            .await?;
        const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTVWXYZ23456789";
        let raw: [u8; 12] = random();
        let code: String = raw
            .iter()
            .map(|b| {
                char::from(
                    *ALPHABET
                        .get(usize::from(*b) % ALPHABET.len())
                        .unwrap_or(&b'A'),
                )
            })
            .collect();
        let code = format!(
            "{}-{}-{}",
            code.get(..4).unwrap_or(""),
            code.get(4..8).unwrap_or(""),
            code.get(8..).unwrap_or("")
        );
        let expires_at = now_ms() + LINK_CODE_TTL_MS;
        self.store
            .put_link_code(&sha256(code.as_bytes()), &user, expires_at)
            .await?;
        Ok(api::LinkCodeResponse {
            code,
            expires_at: expires_at as u64,
        })
    }

    /// Completes a device link.
    pub async fn link(&self, req: api::LinkRequest) -> ServiceResult<api::DeviceRegistered> {
        Self::check_device_fields(
            &req.device_name,
            &req.auth_key,
            &req.mls_key,
            &req.mls_key_signature,
        )?;
        let now = now_ms();
        let device = NewDevice {
            device_id: DeviceId::from_bytes(random()),
            name: req.device_name,
            auth_key: req.auth_key,
            mls_key: req.mls_key,
            created_at: now,
        };
        let code_hash = sha256(req.code.trim().to_ascii_uppercase().as_bytes());
        if req.link_proof.len() != 32 {
            return Err(ServiceError::BadRequest(
                "link_proof must be 32 bytes (HMAC-SHA-256 under the link secret)".into(),
            ));
        }
        let payload = serde_json::to_vec(&api::DeviceLinked {
            device_id: device.device_id.clone(),
            link_code_sha256: Some(sha256(req.code.trim().to_ascii_uppercase().as_bytes())),
            auth_key: Some(device.auth_key.clone()),
            mls_key: Some(device.mls_key.clone()),
            link_proof: Some(req.link_proof),
        })
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
        let event = NewMessage {
            kind: EntryKind::DeviceLinked,
            group_id: None,
            sender: None,
            payload,
            frank: None,
            received_at: now,
            expires_at: self.expires_at(now),
        };
        let user = self
            .store
            .link_device(&code_hash, now, &device, &event, &self.store_limits())
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => {
                    ServiceError::NotFound("link code (unknown, used or expired)")
                }
                other => other.into(),
            })?;
        if let Some(devices) = self.store.user_devices(&user).await? {
            for d in devices.iter().filter(|d| d.device_id != device.device_id) {
                self.hub.wake(&d.device_id);
            }
        }
        Ok(api::DeviceRegistered {
            user,
            device_id: device.device_id,
        })
    }

    /// A user's devices.
    pub async fn user_devices(&self, user: &UserName) -> ServiceResult<api::UserDevices> {
        let devices = self
            .store
            .user_devices(user)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        Ok(api::UserDevices {
            user: user.clone(),
            devices: devices
                .into_iter()
                .map(|d| api::DeviceInfo {
                    device_id: d.device_id,
                    name: d.name,
                    auth_key: d.auth_key,
                    mls_key: d.mls_key,
                    created_at: d.created_at as u64,
                })
                .collect(),
        })
    }

    // --- key packages ---

    /// Stores key packages.
    pub async fn upload_key_packages(
        &self,
        who: &Authed,
        req: api::UploadKeyPackages,
    ) -> ServiceResult<api::KeyPackageCount> {
        self.write_limit(who).await?;
        if req.key_packages.len() > self.limits.max_key_packages_per_upload {
            return Err(ServiceError::Limit(format!(
                "at most {} key packages per upload",
                self.limits.max_key_packages_per_upload
            )));
        }
        for kp in req.key_packages.iter().chain(req.last_resort.iter()) {
            if kp.len() > self.limits.max_key_package {
                return Err(ServiceError::TooLarge(format!(
                    "key package larger than {} bytes",
                    self.limits.max_key_package
                )));
            }
        }
        let me = self.device_record(&who.device).await?;
        let check = |bytes: &Vec<u8>, last_resort: bool| -> ServiceResult<NewKeyPackage> {
            let kp = groups::verify_key_package(bytes)?;
            if (&kp.leaf.user, &kp.leaf.device) != (&me.user, &me.device_id) {
                return Err(ServiceError::BadRequest(
                    "a key package must name the uploading device".into(),
                ));
            }
            if me.mls_key.as_deref() != Some(kp.leaf.signature_key.as_slice()) {
                return Err(ServiceError::BadRequest(
                    "a key package must carry the device's registered MLS key".into(),
                ));
            }
            if kp.last_resort != last_resort {
                return Err(ServiceError::BadRequest(if last_resort {
                    "the last-resort key package lacks the last_resort extension".into()
                } else {
                    "a one-time key package carries the last_resort extension".into()
                }));
            }
            Ok(NewKeyPackage {
                bytes: bytes.clone(),
                kp_ref: kp.key_package_ref,
            })
        };
        let packages = req
            .key_packages
            .iter()
            .map(|kp| check(kp, false))
            .collect::<ServiceResult<Vec<_>>>()?;
        let last_resort = req
            .last_resort
            .as_ref()
            .map(|kp| check(kp, true))
            .transpose()?;
        let available = self
            .store
            .add_key_packages(
                &who.device,
                &packages,
                last_resort.as_ref(),
                &self.store_limits(),
            )
            .await?;
        let (_, has_last_resort) = self.store.key_package_count(&who.device).await?;
        Ok(api::KeyPackageCount {
            available,
            has_last_resort,
        })
    }

    /// Counts the caller's key packages.
    pub async fn key_package_count(&self, who: &Authed) -> ServiceResult<api::KeyPackageCount> {
        let (available, has_last_resort) = self.store.key_package_count(&who.device).await?;
        Ok(api::KeyPackageCount {
            available,
            has_last_resort,
        })
    }

    /// Claims one key package per device of a user, for adding them to a group the caller is a
    /// member of; the claim is recorded so that only the caller can add them with it.
    ///
    /// Rate-limited twice ([`crate::quota`]): per claiming account (429 when used up), and per
    /// claimed account for one-time packages — past that rate a claim gets each device's
    /// last-resort package and the one-time packages are kept, so nobody can drain them and
    /// nobody is kept from adding the user.
    pub async fn claim_key_packages(
        &self,
        who: &Authed,
        user: &UserName,
        req: api::ClaimRequest,
    ) -> ServiceResult<api::ClaimedKeyPackages> {
        if user != &who.user {
            self.restriction_gate(&who.user).await?;
        }
        let by = RateRule::new(self.limits.claim_burst, self.limits.claim_refill_per_sec);
        if !self.take(Bucket::ClaimBy(&who.user), by).await? {
            return Err(ServiceError::TooManyRequests(
                "too many key-package claims from this account; try again later",
            ));
        }
        let group = self
            .store
            .group(&req.group_id)
            .await?
            .ok_or(ServiceError::NotFound("group"))?;
        if !group.members.contains(&who.device) {
            return Err(ServiceError::Forbidden("not a member of this group"));
        }
        self.claim_gate(who, user, &req.group_id).await?;
        let of = RateRule::new(
            self.limits.claim_target_burst,
            self.limits.claim_target_refill_per_sec,
        );
        let one_time = self.take(Bucket::ClaimOf(user), of).await?;
        let claim = KeyPackageClaim {
            claimer: who.device.clone(),
            group: req.group_id,
            expires_at: now_ms().saturating_add(CLAIM_TTL_MS),
            one_time,
        };
        let claimed = self
            .store
            .claim_key_packages(user, &claim)
            .await?
            .ok_or(ServiceError::NotFound("user"))?;
        // Only devices in the account's signed list (when it has one) are handed out: a device
        // no device of the account signed in is nobody's to encrypt to (clients refuse it
        // anyway; this keeps an honest server from offering it).
        let listed = self.listed_devices(user).await?;
        Ok(api::ClaimedKeyPackages {
            user: user.clone(),
            key_packages: claimed
                .into_iter()
                .filter(|(d, _)| listed.as_ref().is_none_or(|l| l.contains(d)))
                .map(|(device_id, key_package)| api::ClaimedKeyPackage {
                    device_id,
                    key_package,
                })
                .collect(),
        })
    }

    // --- groups ---

    /// The caller's device record.
    async fn device_record(&self, device: &DeviceId) -> ServiceResult<crate::store::DeviceRecord> {
        self.store
            .device(device)
            .await?
            .ok_or(ServiceError::Unauthorized("device no longer exists"))
    }

    /// Checks that each leaf names a registered device of the user it names, with exactly the
    /// MLS key that device registered.
    async fn check_leaves(&self, leaves: &[&Leaf]) -> ServiceResult<()> {
        for leaf in leaves {
            let bad = || {
                ServiceError::BadRequest(format!(
                    "the MLS leaf for {}/{} does not carry that device's registered key",
                    leaf.user, leaf.device
                ))
            };
            let d = self.store.device(&leaf.device).await?.ok_or_else(bad)?;
            if d.user != leaf.user || d.mls_key.as_deref() != Some(leaf.signature_key.as_slice()) {
                return Err(bad());
            }
        }
        Ok(())
    }

    /// Checks that `leaf` is the authenticated device (with its registered key).
    async fn check_is_caller(&self, who: &Authed, leaf: &Leaf) -> ServiceResult<()> {
        if leaf.device != who.device {
            return Err(ServiceError::BadRequest(
                "the MLS sender is not the authenticated device".into(),
            ));
        }
        self.check_leaves(&[leaf]).await
    }

    /// Creates a group with the caller as its only member, from the group's signed GroupInfo
    /// (see [`crate::groups`]).
    pub async fn create_group(
        &self,
        who: &Authed,
        req: api::CreateGroup,
    ) -> ServiceResult<api::GroupState> {
        self.write_limit(who).await?;
        self.restriction_gate(&who.user).await?;
        self.check_mls_size(&req.group_info)?;
        let (group_id, info) = (req.group_id.clone(), req.group_info);
        let created =
            blocking(move || GroupView::create(&group_id, &info).map(|(_, c)| c)).await??;
        self.check_is_caller(who, &created.creator).await?;
        if let Some(peer) = &req.direct_with {
            if peer == &who.user {
                return Err(ServiceError::BadRequest(
                    "a 1:1 conversation needs another account".into(),
                ));
            }
            if self.store.profile(peer).await?.is_none() {
                return Err(ServiceError::NotFound("user"));
            }
        }
        self.store
            .create_group(&req.group_id, &who.device, now_ms(), &created.state)
            .await?;
        if let Some(peer) = &req.direct_with {
            // Checked above: another account that exists.
            self.store
                .mark_direct(&req.group_id, &who.user, peer)
                .await?;
        }
        Ok(api::GroupState {
            group_id: req.group_id,
            epoch: 0,
            members: vec![who.device.clone()],
        })
    }

    /// A group's state, for members.
    pub async fn group(&self, who: &Authed, group: &GroupId) -> ServiceResult<api::GroupState> {
        let g = self
            .store
            .group(group)
            .await?
            .ok_or(ServiceError::NotFound("group"))?;
        if !g.members.contains(&who.device) {
            return Err(ServiceError::Forbidden("not a member of this group"));
        }
        Ok(api::GroupState {
            group_id: g.group_id,
            epoch: g.epoch,
            members: g.members,
        })
    }

    fn check_mls_size(&self, bytes: &[u8]) -> ServiceResult<()> {
        if bytes.len() > self.limits.max_mls_message {
            return Err(ServiceError::TooLarge(format!(
                "MLS message larger than {} bytes",
                self.limits.max_mls_message
            )));
        }
        Ok(())
    }

    fn header<'a>(
        &self,
        bytes: &'a [u8],
        group: &GroupId,
        want: ContentType,
    ) -> ServiceResult<mls_frame::FrameHeader<'a>> {
        self.check_mls_size(bytes)?;
        let h = mls_frame::parse_header(bytes)
            .map_err(|e| ServiceError::BadRequest(format!("malformed MLS message: {e}")))?;
        if h.group_id != group.as_bytes() {
            return Err(ServiceError::BadRequest(
                "MLS message is for another group".into(),
            ));
        }
        if h.content_type != want {
            return Err(ServiceError::BadRequest(format!(
                "expected an MLS {want:?} message, got {:?}",
                h.content_type
            )));
        }
        Ok(h)
    }

    fn message(
        &self,
        kind: EntryKind,
        group: &GroupId,
        sender: &DeviceId,
        payload: Vec<u8>,
        now: Millis,
    ) -> NewMessage {
        NewMessage {
            kind,
            group_id: Some(group.clone()),
            sender: Some(sender.clone()),
            payload,
            frank: None,
            received_at: now,
            expires_at: self.expires_at(now),
        }
    }

    /// The group with its public view, for a member: `Forbidden` for anyone else, checked before
    /// anything about the group (its epoch) is revealed.
    async fn member_view(
        &self,
        who: &Authed,
        group: &GroupId,
    ) -> ServiceResult<(crate::store::GroupRecord, Vec<u8>)> {
        let (record, state) = self
            .store
            .group_view(group)
            .await?
            .ok_or(ServiceError::NotFound("group"))?;
        if !record.members.contains(&who.device) {
            return Err(ServiceError::Forbidden("not a member of this group"));
        }
        let state = state.ok_or_else(|| {
            ServiceError::BadRequest(
                "this group predates verified group changes; create a new group".into(),
            )
        })?;
        Ok((record, state))
    }

    /// Accepts a commit for the current epoch (exactly one per epoch) and releases its Welcome
    /// to the devices it adds. The commit is verified against the group's public view; who is
    /// added and removed is read from it (see [`crate::groups`]).
    pub async fn commit(
        &self,
        who: &Authed,
        group: &GroupId,
        req: api::CommitRequest,
    ) -> ServiceResult<api::GroupState> {
        self.write_limit(who).await?;
        self.check_mls_size(&req.commit)?;
        if let Some(w) = &req.welcome {
            self.check_mls_size(w)?;
        }
        let h = mls_frame::parse_header(&req.commit)
            .map_err(|e| ServiceError::BadRequest(format!("malformed MLS message: {e}")))?;
        if h.group_id != group.as_bytes() {
            return Err(ServiceError::BadRequest(
                "MLS message is for another group".into(),
            ));
        }
        let commit_sha256: [u8; 32] = Sha256::digest(&req.commit).into();
        let (old, state) = self.member_view(who, group).await?;
        if h.epoch != old.epoch {
            // A commit whose answer was lost comes back for the epoch it was accepted in.
            if h.epoch < old.epoch
                && self
                    .store
                    .accepted_commit(group, h.epoch, &commit_sha256, &who.device)
                    .await?
            {
                return Ok(api::GroupState {
                    group_id: old.group_id,
                    epoch: old.epoch,
                    members: old.members,
                });
            }
            return Err(ServiceError::EpochConflict(old.epoch));
        }
        let (gid, commit, welcome) = (group.clone(), req.commit, req.welcome);
        let (verified, commit, welcome) = blocking(move || {
            let view = GroupView::load(&gid, &state)?;
            let v = view.verify_commit(&commit, welcome.as_deref())?;
            Ok::<_, VerifyError>((v, commit, welcome))
        })
        .await??;
        self.check_is_caller(who, &verified.committer).await?;
        let introduced: Vec<&Leaf> = verified
            .updated
            .iter()
            .chain(verified.added.iter().map(|a| &a.leaf))
            .collect();
        self.check_leaves(&introduced).await?;
        let now = now_ms();
        let added_users: Vec<UserName> =
            verified.added.iter().map(|a| a.leaf.user.clone()).collect();
        let (approach, gates) = self.commit_gate(who, group, &added_users, now).await?;
        let added: Vec<DeviceId> = verified
            .added
            .iter()
            .map(|a| a.leaf.device.clone())
            .collect();
        // A member who left was already taken out of routing when its leave proposal arrived;
        // the commit that applies the proposal still removes its leaf, which is not an error.
        let removed: Vec<DeviceId> = verified
            .removed
            .iter()
            .map(|l| l.device.clone())
            .filter(|d| old.members.contains(d))
            .collect();
        let apply = CommitApply {
            group_id: group.clone(),
            epoch: verified.epoch,
            sender: who.device.clone(),
            commit_sha256,
            added: added.clone(),
            removed,
            claimed: verified
                .added
                .iter()
                .map(|a| a.key_package_ref.clone())
                .collect(),
            public_state: verified.state_after,
            commit: self.message(EntryKind::Commit, group, &who.device, commit, now),
            welcome: welcome.map(|w| self.message(EntryKind::Welcome, group, &who.device, w, now)),
        };
        let new = self
            .store
            .apply_commit(&apply, &self.store_limits())
            .await?;
        if let Err(e) = self
            .record_approaches(approach, &who.user, Some(group), &gates, now)
            .await
        {
            // The commit stands; what is lost is one time-line entry (logged without names).
            tracing::warn!(error = %e, "could not record a commit's contact events");
        }
        for d in old.members.iter().chain(added.iter()) {
            if d != &who.device {
                self.hub.wake(d);
            }
        }
        Ok(api::GroupState {
            group_id: new.group_id,
            epoch: new.epoch,
            members: new.members,
        })
    }

    /// Accepts a member's verified proposal to remove itself (leaving): routing to it stops at
    /// once, and the proposal is queued in the group's view for the commit that applies it.
    pub async fn proposal(
        &self,
        who: &Authed,
        group: &GroupId,
        req: api::ProposalRequest,
    ) -> ServiceResult<api::Accepted> {
        self.write_limit(who).await?;
        self.check_mls_size(&req.proposal)?;
        let (_, state) = self.member_view(who, group).await?;
        let (gid, proposal) = (group.clone(), req.proposal);
        let (leave, proposal) = blocking(move || {
            let view = GroupView::load(&gid, &state)?;
            let v = view.verify_leave(&proposal)?;
            Ok::<_, VerifyError>((v, proposal))
        })
        .await??;
        self.check_is_caller(who, &leave.leaver).await?;
        let now = now_ms();
        let msg = self.message(EntryKind::Proposal, group, &who.device, proposal, now);
        let count = self
            .store
            .leave_group(
                group,
                &who.device,
                leave.epoch,
                &msg,
                &leave.state_after,
                &self.store_limits(),
            )
            .await?;
        self.wake_group(group, &who.device).await?;
        Ok(api::Accepted { count })
    }

    async fn wake_group(&self, group: &GroupId, except: &DeviceId) -> ServiceResult<()> {
        if let Some(g) = self.store.group(group).await? {
            for d in g.members.iter().filter(|d| *d != except) {
                self.hub.wake(d);
            }
        }
        Ok(())
    }

    /// Accepts an application message: reads the franking commitment, binds it with the server's
    /// tag and queues the message for every other member device.
    pub async fn send(
        &self,
        who: &Authed,
        group: &GroupId,
        req: api::SendRequest,
    ) -> ServiceResult<api::SendResponse> {
        self.write_limit(who).await?;
        let h = self.header(&req.message, group, ContentType::Application)?;
        if h.wire_format != WireFormat::PrivateMessage {
            return Err(ServiceError::BadRequest(
                "application messages must be MLS PrivateMessages".into(),
            ));
        }
        let commitment = haven_frank::decode_aad(h.authenticated_data).map_err(|_| {
            ServiceError::BadRequest(
                "message carries no franking commitment in its authenticated data".into(),
            )
        })?;
        let epoch = h.epoch;
        let now = now_ms();
        let tag = self.frank_keys.tag(&Binding {
            commitment: &commitment,
            sender_device: who.device.as_str(),
            group_id: group.as_bytes(),
            received_at_ms: now as u64,
        });
        let gate = self.send_gate(who, group, now).await?;
        let mut msg = self.message(EntryKind::Application, group, &who.device, req.message, now);
        let server_tag = tag.encode();
        msg.frank = Some(StoredFrank {
            commitment: commitment.as_bytes().to_vec(),
            server_tag: server_tag.clone(),
        });
        let queued = self
            .store
            .enqueue_application(group, &who.device, epoch, &msg, &self.store_limits())
            .await;
        if queued.is_err() {
            if let Some((peer, true)) = &gate {
                self.send_failed(who, group, peer).await;
            }
        }
        let recipients = queued.map_err(|e| match e {
            StoreError::FutureEpoch { current } => ServiceError::BadRequest(format!(
                "message is for future epoch {epoch}; the group is at {current}"
            )),
            e => e.into(),
        })?;
        for d in &recipients {
            self.hub.wake(d);
        }
        Ok(api::SendResponse {
            received_at: now as u64,
            deliveries: u32::try_from(recipients.len()).unwrap_or(u32::MAX),
            server_tag: Some(server_tag),
        })
    }

    // --- queue ---

    /// Fetches queued entries.
    pub async fn fetch(
        &self,
        who: &Authed,
        after: i64,
        limit: u32,
    ) -> ServiceResult<Vec<api::QueueEntry>> {
        let limit = limit.clamp(1, self.limits.max_fetch);
        let rows = self
            .store
            .fetch_queue(&who.device, after, limit, now_ms())
            .await?;
        Ok(rows
            .into_iter()
            .map(|m| api::QueueEntry {
                id: m.id,
                kind: m.kind,
                group_id: m.group_id,
                sender: m
                    .sender
                    .map(|(user, device_id)| api::Sender { user, device_id }),
                payload: m.payload,
                frank: m.frank.map(|f| api::FrankEnvelope {
                    commitment: f.commitment,
                    server_tag: f.server_tag,
                    received_at: m.received_at as u64,
                }),
                received_at: m.received_at as u64,
            })
            .collect())
    }

    /// Acknowledges entries.
    pub async fn ack(&self, who: &Authed, ids: &[i64]) -> ServiceResult<api::Accepted> {
        if ids.len() > 10_000 {
            return Err(ServiceError::Limit(
                "at most 10000 ids per acknowledgement".into(),
            ));
        }
        let count = self.store.ack(&who.device, ids).await?;
        Ok(api::Accepted { count })
    }

    /// Drops expired entries and sessions, and expired blobs (records, and the bytes no record
    /// names any more). Returns the queue entries dropped.
    pub async fn purge(&self) -> ServiceResult<u64> {
        let now = now_ms();
        let dropped = self.store.purge_expired(now).await?;
        self.purge_moderation().await?;
        self.store
            .purge_contacts(now.saturating_sub(crate::contacts::RETENTION_MS))
            .await?;
        let _files = self.blob_files.write().await;
        let gone = self.store.purge_blobs(now).await?;
        for id in &gone {
            if let Err(e) = self.blobs.delete(id).await {
                // Its record is gone, so it is never served; a later start does not retry, but
                // the file is orphaned rather than half-deleted.
                tracing::warn!(blob = %id.as_str(), error = %e, "could not delete expired blob");
            }
        }
        if !gone.is_empty() {
            tracing::info!(blobs = gone.len(), "purged expired blobs");
        }
        Ok(dropped)
    }

    // --- blobs ---

    /// Stores an encrypted attachment, streamed from `body` (`declared` is its Content-Length,
    /// if sent: a body declared too large, or over the quota, is refused before it is read).
    /// The owner is the device's account; its live blobs may hold at most
    /// [`ServerLimits::max_blob_bytes_per_account`] bytes. Refused or interrupted uploads leave
    /// nothing behind.
    pub async fn put_blob(
        &self,
        who: &Authed,
        body: ByteStream,
        declared: Option<u64>,
        voucher: Option<&[u8]>,
    ) -> ServiceResult<api::BlobStored> {
        self.write_limit(who).await?;
        let max = self.limits.max_blob as u64;
        let quota = self.limits.max_blob_bytes_per_account;
        if declared.is_some_and(|n| n > max) {
            return Err(ServiceError::TooLarge(format!(
                "attachment larger than {max} bytes"
            )));
        }
        if declared == Some(0) {
            return Err(ServiceError::BadRequest("empty attachment".into()));
        }
        let owner = who.user.clone();
        let now = now_ms();
        if let Some(n) = declared {
            let used = self.store.blob_usage(&owner, now).await?;
            if used.saturating_add(n) > quota {
                return Err(quota_refused(quota));
            }
        }
        // The voucher is checked before a byte of the upload is read (`crate::psi`).
        let voucher = self.check_voucher(voucher).await?;
        let staged = self.blobs.stage(body, max).await?;
        if staged.size == 0 {
            return Err(ServiceError::BadRequest("empty attachment".into()));
        }
        let size = staged.size;
        let expires_at = now.saturating_add(self.limits.blob_ttl.as_millis() as Millis);
        let _files = self.blob_files.read().await;
        match self
            .store
            .record_blob(&owner, &staged.id, size, now, expires_at, quota)
            .await
        {
            Ok(()) => {}
            Err(StoreError::Limit { .. }) => return Err(quota_refused(quota)),
            Err(e) => return Err(e.into()),
        }
        let blob_id = self.blobs.commit(staged).await?;
        if let Some(v) = voucher {
            self.take_voucher(who, v, &blob_id).await?;
        }
        Ok(api::BlobStored { blob_id, size })
    }

    /// Opens an encrypted attachment for streaming: its length and a reader. Only blobs with a
    /// live record are served.
    pub async fn get_blob(&self, _who: &Authed, id: &BlobId) -> ServiceResult<(u64, BlobReader)> {
        if self.store.blob_live(id, now_ms()).await?.is_none() {
            return Err(ServiceError::NotFound("blob"));
        }
        self.blobs
            .open(id)
            .await?
            .ok_or(ServiceError::NotFound("blob"))
    }
}

fn quota_refused(quota: u64) -> ServiceError {
    ServiceError::Limit(format!(
        "blob storage quota of {quota} bytes per account reached; stored blobs expire with time"
    ))
}
