//! The MLS engine: turns user intentions into bytes to send and processes bytes received,
//! persisting everything in the profile database. Synchronous, no network I/O.
//!
//! Every public operation that changes state runs in one SQLite transaction (`BEGIN IMMEDIATE`)
//! that covers openmls's writes and Haven's rows; any error rolls all of it back (see
//! [`crate::provider`]). [`Engine::process_entry`] in particular is exactly-once as the user sees
//! it: the queue id is recorded in the same transaction as the message, so a redelivered entry is
//! a no-op [`Processed::Duplicate`], and a crash before the commit loses nothing because the
//! server redelivers until the entry is acknowledged.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;

use haven_frank::{Commitment, FrankSalt};
use haven_proto::api::{
    ClaimedKeyPackages, DeviceLinked, DeviceRemoved, EntryKind, Millis, QueueEntry,
};
use haven_proto::{DeviceId, GroupId, UserName};
use openmls::prelude as mls;
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, Credential, CredentialWithKey, ExtensionType,
    KeyPackage, MlsGroup, MlsGroupCreateConfig, MlsGroupJoinConfig, MlsMessageBodyIn, MlsMessageIn,
    MlsMessageOut, ProcessedMessageContent, ProtocolVersion, StagedWelcome,
    PURE_PLAINTEXT_WIRE_FORMAT_POLICY,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::RustCrypto;
use openmls_traits::types::SignatureScheme;
use openmls_traits::OpenMlsProvider as _;
use rand::RngCore;
use rusqlite::{Connection, TransactionBehavior};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::content::{open_envelope, seal_envelope, Body, Content, MessageId};
use crate::devices::{self, DeviceCheck};
use crate::error::{EngineError, KeyPackageProblem};
use crate::pins::{self, KeyCheck};
use crate::provider::{run_openmls_migrations, Provider};
use crate::store::{
    self, Conversation, ConversationKind, ConversationState, FrankRecord, FrankedRow, NewMessage,
    StoredMessage,
};
use haven_kt::device_list::{DeviceList, ListedDevice, SignedDeviceList};

mod book;
pub use book::{valid_group_name, MAX_GROUP_NAME};

/// Haven's one ciphersuite.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// File name of the profile database inside the home directory.
pub const DB_FILE: &str = "haven.db";
/// Most key packages generated per call.
pub const MAX_KEY_PACKAGES: usize = 100;
/// Largest queue payload looked at; anything larger is dropped unparsed.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// Most messages [`Engine::messages_with_id`] returns.
pub const MAX_ID_MATCHES: u32 = 20;
/// Epochs whose secrets are kept to decrypt late application messages (sent just before a commit
/// that we processed first). A trade-off against forward secrecy.
pub const MAX_PAST_EPOCHS: usize = 5;

/// Meta key of the shown-messages cursor.
const SEEN_CURSOR: &str = "seen_cursor";

const SIGNATURE_SCHEME: SignatureScheme = SignatureScheme::ED25519;

/// The device's Ed25519 authentication seed (login challenge signatures). Redacted in `Debug`,
/// zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct AuthSecret([u8; 32]);

impl AuthSecret {
    /// Wraps seed bytes.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        AuthSecret(b)
    }

    /// A fresh random seed.
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        AuthSecret(b)
    }

    /// The seed.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for AuthSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthSecret(<redacted>)")
    }
}

/// Who this device is.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The account.
    pub user: UserName,
    /// This device (assigned by the server at registration or link).
    pub device_id: DeviceId,
    /// The server's base URL.
    pub server_url: String,
    /// The device authentication seed.
    pub auth_secret: AuthSecret,
}

/// A bearer session token, stored for the network layer. Redacted in `Debug`, zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SessionToken {
    /// The token.
    pub token: String,
    /// When it expires (ms).
    pub expires_at: Millis,
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionToken")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// A staged commit to submit (`CommitRequest`). After the server accepts it call
/// [`Engine::merge_pending_commit`]; after an `epoch_conflict` call
/// [`Engine::clear_pending_commit`], process the queue and retry.
#[derive(Debug, Clone)]
pub struct OutgoingCommit {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit applies to (the group's epoch before it).
    pub epoch: u64,
    /// The commit (`MLSMessage`).
    pub commit: Vec<u8>,
    /// The Welcome for added devices.
    pub welcome: Option<Vec<u8>>,
    /// Devices the commit adds.
    pub added: Vec<DeviceId>,
    /// Devices the commit removes.
    pub removed: Vec<DeviceId>,
}

/// An encrypted application message, ready for `SendRequest`. Pass it back to
/// [`Engine::record_sent`] once the server accepted it.
pub struct OutgoingMessage {
    /// The message id.
    pub id: MessageId,
    /// The group.
    pub group_id: GroupId,
    /// The MLS `PrivateMessage`.
    pub mls: Vec<u8>,
    /// Our clock at encryption (ms).
    pub sent_at: Millis,
    /// The body.
    pub body: Body,
    content: Vec<u8>,
    salt: FrankSalt,
    commitment: Commitment,
}

impl std::fmt::Debug for OutgoingMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutgoingMessage")
            .field("id", &self.id)
            .field("group_id", &self.group_id)
            .field("mls_len", &self.mls.len())
            .field("sent_at", &self.sent_at)
            .finish_non_exhaustive()
    }
}

/// Why an entry was dropped (acknowledged, recorded, never shown). Deliberately coarse where
/// decryption is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The bytes do not parse, or do not match the entry kind or group.
    Malformed,
    /// A group we have no state for.
    UnknownGroup,
    /// MLS refused it (cannot decrypt, bad signature, wrong epoch, …).
    Rejected,
    /// The franking commitment is missing, does not open, or differs from the server's envelope.
    Franking,
    /// The server-authenticated sender is not the MLS sender.
    SenderMismatch,
    /// A member whose credential is not a Haven identity, or who changed identity.
    InvalidMember,
    /// A proposal other than a member removing itself.
    UnsupportedProposal,
    /// A Welcome for a group we are an active member of.
    AlreadyMember,
    /// Our own message echoed back.
    OwnMessage,
    /// A device-link notice naming this very device.
    NotForUs,
    /// A Welcome or commit names a device that is not in its user's verified device list
    /// ([`crate::devices`]); an alarm records it.
    UnlistedDevice,
}

impl DropReason {
    /// Stable name, as recorded in the processed table.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::UnknownGroup => "unknown_group",
            DropReason::Rejected => "rejected",
            DropReason::Franking => "franking",
            DropReason::SenderMismatch => "sender_mismatch",
            DropReason::InvalidMember => "invalid_member",
            DropReason::UnsupportedProposal => "unsupported_proposal",
            DropReason::AlreadyMember => "already_member",
            DropReason::OwnMessage => "own_message",
            DropReason::NotForUs => "not_for_us",
            DropReason::UnlistedDevice => "unlisted_device",
        }
    }
}

/// What a processed commit changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitOutcome {
    /// The group.
    pub group_id: GroupId,
    /// The new epoch.
    pub epoch: u64,
    /// Members added.
    pub added: Vec<(UserName, DeviceId)>,
    /// Members removed.
    pub removed: Vec<(UserName, DeviceId)>,
    /// We were removed (the conversation is now [`ConversationState::Removed`] unless we had left).
    pub self_removed: bool,
}

/// The result of [`Engine::process_entry`]. Every variant means "acknowledge the entry".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Processed {
    /// A message to show.
    Message(StoredMessage),
    /// A member's `GroupName` control message asked to rename the conversation. Names are local
    /// labels: the stored name differs from the requested one when another live conversation
    /// has that name (see `engine::book`).
    Renamed {
        /// The group.
        group_id: GroupId,
        /// Who sent it (server-authenticated and the MLS sender).
        by: UserName,
        /// The name asked for, as received.
        requested: String,
        /// The local group name before (`None`: it was a direct chat).
        previous: Option<String>,
        /// The local name stored; `None` if the rename was refused (an accepted direct chat
        /// keeps its peer's name; a name with nothing displayable).
        stored: Option<String>,
    },
    /// A Welcome made us a member.
    Joined(Conversation),
    /// A Welcome re-added us to a conversation we had left or been removed from: its MLS state
    /// is applied, but it is an invitation ([`ConversationState::Invited`]) until accepted.
    Invited(Conversation),
    /// A commit was merged.
    Commit(CommitOutcome),
    /// A member's self-removal proposal was stored; the network layer should call
    /// [`Engine::commit_pending_proposals`] (sending is refused until the proposals are committed).
    Proposal {
        /// The group.
        group_id: GroupId,
        /// Always true today.
        commit_needed: bool,
    },
    /// Another device of our user was linked (these entries are queued only to the user's own
    /// devices). The network layer signs it into the account's device list and adds it to
    /// our conversations only if this device minted its link code
    /// ([`Engine::take_minted_link_code`]) and the new device proved the code's secret.
    DeviceLinked(DeviceLinked),
    /// A device of our user was removed; the network layer commits MLS Removes of it in our
    /// groups that still have it.
    DeviceRemoved(DeviceRemoved),
    /// A notice from the operator (a moderation action, a report's outcome, an appeal's
    /// decision). Only entries the server itself queued (no sender) are accepted as notices.
    Notice(haven_proto::moderation::Notice),
    /// Already processed (redelivery) — nothing changed.
    Duplicate,
    /// Refused; recorded as processed so it is acknowledged and never shown.
    Dropped {
        /// Why.
        reason: DropReason,
    },
}

impl Processed {
    fn label(&self) -> &'static str {
        match self {
            Processed::Message(_) => "message",
            Processed::Renamed { .. } => "renamed",
            Processed::Joined(_) => "joined",
            Processed::Invited(_) => "invited",
            Processed::Commit(_) => "commit",
            Processed::Proposal { .. } => "proposal",
            Processed::DeviceLinked(_) => "device_linked",
            Processed::DeviceRemoved(_) => "device_removed",
            Processed::Notice(_) => "notice",
            Processed::Duplicate => "duplicate",
            Processed::Dropped { reason } => reason.as_str(),
        }
    }
}

/// Outcome of the MLS phase of processing: done (keep openmls's writes) or rejected (roll them
/// back to the savepoint, then record the drop).
enum Step {
    Done(Box<Processed>),
    Reject(DropReason),
    /// Refused: names a device not in its user's verified list. Rolled back like a
    /// rejection, and an alarm is raised (marking `group`, if given).
    Unlisted {
        user: UserName,
        device: DeviceId,
        group: Option<GroupId>,
        detail: String,
    },
}

fn dropped(reason: DropReason) -> Result<Step, EngineError> {
    Ok(Step::Done(Box::new(Processed::Dropped { reason })))
}

/// The engine. One per device profile; not shared between threads (wrap it in a mutex).
pub struct Engine {
    conn: Connection,
    crypto: RustCrypto,
    identity: Identity,
    signer: SignatureKeyPair,
    /// Groups kept in memory between transactions (see [`Engine::with_tx`]).
    groups: GroupCache,
    /// `PRAGMA data_version` when `groups` was last known to match the database.
    data_version: i64,
    /// How device lists are enforced, and which were checked in this session.
    checks: DeviceChecks,
    #[cfg(test)]
    fail_before_commit: bool,
}

/// Device-list enforcement ([`crate::devices`]): every device this engine encrypts to must be
/// in its user's verified list. `fresh` holds the users whose list the client checked with the
/// server in this session (since [`Engine::start_device_checks`]): a device missing from a
/// fresh list is refused; one missing from a list that is not fresh first makes the client
/// check the list ([`EngineError::DeviceListNeeded`]).
#[derive(Debug)]
struct DeviceChecks {
    /// Always on outside this crate's own unit tests, which exercise the MLS mechanics with
    /// engines that exchange bytes by hand and no server to hold lists; the tests of this
    /// enforcement turn it on (`Engine::enforce_device_lists`).
    enforce: bool,
    fresh: HashSet<UserName>,
}

impl Default for DeviceChecks {
    fn default() -> Self {
        DeviceChecks {
            enforce: !cfg!(test),
            fresh: HashSet::new(),
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

/// What one transaction's worth of work sees.
struct Ctx<'a> {
    p: Provider<'a>,
    db: &'a Connection,
    signer: &'a SignatureKeyPair,
    me: &'a Identity,
    checks: &'a DeviceChecks,
    /// Groups in memory that match this transaction's view of storage. Take one out with
    /// [`Ctx::take_group`]; put it back with [`Ctx::keep_group`] only if everything done to it
    /// was also written to storage and will not be rolled back on its own.
    groups: RefCell<GroupCache>,
}

pub(crate) fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn mls_gid(g: &GroupId) -> mls::GroupId {
    mls::GroupId::from_slice(g.as_bytes())
}

fn haven_gid(g: &mls::GroupId) -> Option<GroupId> {
    GroupId::from_bytes(g.as_slice()).ok()
}

/// Reads `"<user>/<device>"` from a basic credential.
fn parse_identity(cred: &Credential) -> Option<(UserName, DeviceId)> {
    let basic = BasicCredential::try_from(cred.clone()).ok()?;
    haven_proto::parse_mls_identity(basic.identity())
}

fn capabilities() -> Capabilities {
    Capabilities::builder()
        .ciphersuites(vec![CIPHERSUITE])
        .extensions(vec![ExtensionType::LastResort])
        .build()
}

/// Handshake messages (commits, proposals) are `PublicMessage`s, so the server can verify every
/// group change against its public view of the group; application messages are always
/// `PrivateMessage`s (openmls encrypts them whatever the policy).
const WIRE_FORMAT_POLICY: mls::WireFormatPolicy = PURE_PLAINTEXT_WIRE_FORMAT_POLICY;

fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .capabilities(capabilities())
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build()
}

fn serialize(m: &MlsMessageOut) -> Result<Vec<u8>, EngineError> {
    m.tls_serialize_detached()
        .map_err(|_| EngineError::Internal("MLS message serialisation"))
}

fn member_list(group: &MlsGroup) -> Vec<(UserName, DeviceId)> {
    group
        .members()
        .filter_map(|m| parse_identity(&m.credential))
        .collect()
}

fn open_db(path: &Path) -> Result<Connection, EngineError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    // FULL, not NORMAL: an acknowledged entry must survive power loss once committed.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(conn)
}

fn prepare_db(home: &Path) -> Result<Connection, EngineError> {
    let mut conn = open_db(&home.join(DB_FILE))?;
    run_openmls_migrations(&mut conn).map_err(EngineError::Migration)?;
    store::migrate(&conn)?;
    pins::migrate(&conn)?;
    crate::devices::migrate(&conn)?;
    crate::kt_roots::migrate(&conn)?;
    Ok(conn)
}

/// A fresh MLS signature key pair for a new device (Ed25519, Haven's ciphersuite).
pub fn new_signer() -> Result<SignatureKeyPair, EngineError> {
    SignatureKeyPair::new(SIGNATURE_SCHEME).map_err(EngineError::mls)
}

mod keys {
    pub const USER: &str = "user";
    pub const DEVICE: &str = "device_id";
    pub const SERVER: &str = "server_url";
    pub const AUTH: &str = "auth_secret";
    pub const SIG_PUB: &str = "mls_signature_public_key";
    pub const TOKEN: &str = "session_token";
    pub const TOKEN_EXP: &str = "session_expires_at";
    /// Link codes this device minted and that no device has used yet: a JSON array of
    /// [`super::MintedLinkCode`]. (The key before link secrets, `minted_link_codes`, held
    /// hashes only; its codes could not be checked now and are ignored.)
    pub const MINTED_LINK_CODES: &str = "minted_link_codes_v2";
    /// The key directory's keys pinned on registration: root key (32) ‖ VRF key (32).
    pub const KT_PINS: &str = "kt_pins_v1";
    /// The newest directory root this profile verified (`SignedRoot::encode`).
    pub const KT_ROOT: &str = "kt_root_v1";
}

/// How long after its expiry a minted link code is still recognised: its `DeviceLinked` entry
/// may be fetched long after the code was used (the device was offline).
const MINTED_CODE_GRACE_MS: u64 = 31 * 24 * 3600 * 1000;

impl Engine {
    /// Creates a profile in `home` (created if missing): the database, a fresh MLS signature
    /// key pair, and the identity. Fails with [`EngineError::ProfileExists`] if one is there.
    pub fn create(home: &Path, identity: Identity) -> Result<Engine, EngineError> {
        let signer = new_signer()?;
        Self::create_with_signer(home, identity, signer)
    }

    /// [`Engine::create`] with an MLS signature key pair made earlier ([`new_signer`]): a new
    /// device registers its public half with the server before the profile exists.
    pub fn create_with_signer(
        home: &Path,
        identity: Identity,
        signer: SignatureKeyPair,
    ) -> Result<Engine, EngineError> {
        std::fs::create_dir_all(home)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut conn = prepare_db(home)?;
        if store::meta_get(&conn, keys::USER)?.is_some() {
            return Err(EngineError::ProfileExists);
        }
        let crypto = RustCrypto::default();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let p = Provider::new(&crypto, &tx);
            signer.store(p.storage())?;
            store::meta_put(&tx, keys::USER, identity.user.as_str().as_bytes())?;
            store::meta_put(&tx, keys::DEVICE, identity.device_id.as_str().as_bytes())?;
            store::meta_put(&tx, keys::SERVER, identity.server_url.as_bytes())?;
            store::meta_put(&tx, keys::AUTH, identity.auth_secret.as_bytes())?;
            store::meta_put(&tx, keys::SIG_PUB, signer.public())?;
        }
        tx.commit()?;
        Ok(Engine {
            conn,
            crypto,
            identity,
            signer,
            groups: GroupCache::new(),
            data_version: -1,
            checks: DeviceChecks::default(),
            #[cfg(test)]
            fail_before_commit: false,
        })
    }

    /// Opens the profile in `home`.
    pub fn open(home: &Path) -> Result<Engine, EngineError> {
        if !home.join(DB_FILE).exists() {
            return Err(EngineError::NoProfile);
        }
        let conn = prepare_db(home)?;
        let get = |k: &str| -> Result<Vec<u8>, EngineError> {
            store::meta_get(&conn, k)?.ok_or(EngineError::NoProfile)
        };
        let text = |k: &str| -> Result<String, EngineError> {
            String::from_utf8(get(k)?).map_err(|_| EngineError::Corrupt("identity"))
        };
        let user = UserName::new(&text(keys::USER)?).map_err(|_| EngineError::Corrupt("user"))?;
        let device_id =
            DeviceId::new(&text(keys::DEVICE)?).map_err(|_| EngineError::Corrupt("device id"))?;
        let server_url = text(keys::SERVER)?;
        let auth = zeroize::Zeroizing::new(get(keys::AUTH)?);
        let auth: [u8; 32] = auth
            .as_slice()
            .try_into()
            .map_err(|_| EngineError::Corrupt("auth secret"))?;
        let auth_secret = AuthSecret::from_bytes(auth);
        let sig_pub = get(keys::SIG_PUB)?;
        let crypto = RustCrypto::default();
        let signer = {
            let p = Provider::new(&crypto, &conn);
            SignatureKeyPair::read(p.storage(), &sig_pub, SIGNATURE_SCHEME)
                .ok_or(EngineError::Corrupt("MLS signature key"))?
        };
        Ok(Engine {
            conn,
            crypto,
            identity: Identity {
                user,
                device_id,
                server_url,
                auth_secret,
            },
            signer,
            groups: GroupCache::new(),
            data_version: -1,
            checks: DeviceChecks::default(),
            #[cfg(test)]
            fail_before_commit: false,
        })
    }

    /// Who this device is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This device's MLS signature public key (registered with the server).
    pub fn mls_public_key(&self) -> &[u8] {
        self.signer.public()
    }

    /// The group's signed `GroupInfo` with its ratchet tree (`MLSMessage`), for `CreateGroup`:
    /// the server builds its public view of the group from it.
    pub fn group_info(&mut self, group_id: &GroupId) -> Result<Vec<u8>, EngineError> {
        self.with_tx(|c| {
            let group = c.group(group_id)?;
            let info = group
                .export_group_info(c.p.crypto(), c.signer, true)
                .map_err(EngineError::mls)?;
            c.keep_group(group_id.clone(), group);
            serialize(&info)
        })
    }

    /// Records the MLS keys a directory lookup gave for `user`'s devices: a leaf that later
    /// names one of these devices with another key is refused ([`crate::pins`]).
    pub fn pin_device_keys(
        &mut self,
        user: &UserName,
        devices: &[(DeviceId, Vec<u8>)],
    ) -> Result<(), EngineError> {
        self.with_tx(|c| {
            for (device, key) in devices {
                pins::check_or_pin(c.db, user, device, key)?;
            }
            Ok(())
        })
    }

    /// Signs `list` with this device's MLS signature key: the account's device-list signature
    /// (`haven_kt::device_list`).
    pub fn sign_device_list(&self, list: DeviceList) -> Result<SignedDeviceList, EngineError> {
        use openmls_traits::signatures::Signer as _;
        SignedDeviceList::sign(list, self.identity.device_id.clone(), |m| {
            self.signer
                .sign(m)
                .map_err(|e| EngineError::Mls(format!("signing the device list: {e:?}")))
        })?
        .map_err(|_| EngineError::Internal("this device's list signature does not verify"))
    }

    /// This device as a device list names it.
    pub fn listed_self(&self) -> Result<ListedDevice, EngineError> {
        let mls_key: [u8; 32] = self
            .signer
            .public()
            .try_into()
            .map_err(|_| EngineError::Corrupt("MLS signature key"))?;
        Ok(ListedDevice {
            device_id: self.identity.device_id.clone(),
            mls_key,
        })
    }

    /// Stores `list` as its user's newest verified list (the caller verified it: the chain,
    /// and the directory proof when `root` is given) and marks it checked for this session.
    pub fn store_verified_list(
        &mut self,
        list: &SignedDeviceList,
        root: Option<(u64, &[u8])>,
    ) -> Result<(), EngineError> {
        self.with_tx(|c| devices::store_verified(c.db, list, root, now_ms()))?;
        self.checks.fresh.insert(list.list.user.clone());
        Ok(())
    }

    /// Marks `user`'s stored list (or its absence) as checked with the server in this session.
    pub fn mark_device_list_checked(&mut self, user: &UserName) {
        self.checks.fresh.insert(user.clone());
    }

    /// Whether `user`'s list was checked in this session.
    pub fn device_list_checked(&self, user: &UserName) -> bool {
        self.checks.fresh.contains(user)
    }

    /// Starts a new session of checks: every list is checked again before it is relied on for
    /// a device not in it.
    pub fn start_device_checks(&mut self) {
        self.checks.fresh.clear();
    }

    /// The newest verified list of `user`, if this profile has one.
    pub fn verified_list(&self, user: &UserName) -> Result<Option<SignedDeviceList>, EngineError> {
        devices::verified_list(&self.conn, user)
    }

    /// The directory root `user`'s stored list was last checked against.
    pub fn verified_list_root(
        &self,
        user: &UserName,
    ) -> Result<Option<(u64, Vec<u8>)>, EngineError> {
        devices::verified_at_root(&self.conn, user)
    }

    /// The pinned key-directory keys, if pinned.
    pub fn kt_pins(&self) -> Result<Option<haven_kt::directory::KtKeys>, EngineError> {
        kt_pins_in(&self.conn)
    }

    /// Pins the key-directory keys and the first root verified with them (registration).
    pub fn pin_kt(
        &mut self,
        pins: &haven_kt::directory::KtKeys,
        root: &haven_kt::directory::SignedRoot,
    ) -> Result<(), EngineError> {
        let mut b = pins.root_key.to_vec();
        b.extend_from_slice(&pins.vrf_key);
        let r = root.encode();
        self.with_tx(|c| {
            store::meta_put(c.db, keys::KT_PINS, &b)?;
            store::meta_put(c.db, keys::KT_ROOT, &r)?;
            crate::kt_roots::record_verified(c.db, root)
        })
    }

    /// The newest directory root this profile verified.
    pub fn kt_root(&self) -> Result<Option<haven_kt::directory::SignedRoot>, EngineError> {
        store::meta_get(&self.conn, keys::KT_ROOT)?
            .map(|b| {
                haven_kt::directory::SignedRoot::decode(&b)
                    .map_err(|_| EngineError::Corrupt("key-directory root"))
            })
            .transpose()
    }

    /// Records a newer verified root (the caller checked the append-only proof to it).
    pub fn set_kt_root(
        &mut self,
        root: &haven_kt::directory::SignedRoot,
    ) -> Result<(), EngineError> {
        let r = root.encode();
        self.with_tx(|c| {
            store::meta_put(c.db, keys::KT_ROOT, &r)?;
            crate::kt_roots::record_verified(c.db, root)
        })
    }

    /// Records roots an append-only proof this profile checked passed through (split-view
    /// detection compares heard roots with these; `kt_roots`).
    pub fn kt_record_verified(
        &mut self,
        roots: &[haven_kt::directory::SignedRoot],
    ) -> Result<(), EngineError> {
        self.with_tx(|c| {
            roots
                .iter()
                .try_for_each(|r| crate::kt_roots::record_verified(c.db, r))
        })
    }

    /// The root this profile verified for `epoch`, if any.
    pub fn kt_verified_root(
        &self,
        epoch: u64,
    ) -> Result<Option<haven_kt::directory::SignedRoot>, EngineError> {
        crate::kt_roots::verified(&self.conn, epoch)
    }

    /// Directory roots heard from contacts and not yet linked to this profile's chain.
    pub(crate) fn kt_heard_pending(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::kt_roots::PendingRoot>, EngineError> {
        crate::kt_roots::pending(&self.conn, limit)
    }

    /// Counts a refused check of a heard root; returns the refusals so far.
    pub(crate) fn kt_heard_refused(
        &mut self,
        root: &haven_kt::directory::SignedRoot,
    ) -> Result<i64, EngineError> {
        self.with_tx(|c| crate::kt_roots::refused(c.db, root))
    }

    /// Marks a heard root as checked.
    pub(crate) fn kt_heard_checked(
        &mut self,
        root: &haven_kt::directory::SignedRoot,
    ) -> Result<(), EngineError> {
        self.with_tx(|c| crate::kt_roots::mark_checked(c.db, root, now_ms()))
    }

    /// Key-transparency alarms, oldest first: the open ones, or all.
    pub fn alarms(&self, all: bool) -> Result<Vec<devices::Alarm>, EngineError> {
        devices::alarms(&self.conn, all)
    }

    /// Raises an alarm (once while the same one is open); returns its id.
    pub fn raise_alarm(&mut self, a: &devices::NewAlarm<'_>) -> Result<i64, EngineError> {
        self.with_tx(|c| devices::raise(c.db, a, now_ms()))
    }

    /// Acknowledges an open alarm; `false` if no open alarm has this id.
    pub fn ack_alarm(&mut self, id: i64) -> Result<bool, EngineError> {
        self.with_tx(|c| devices::ack(c.db, id, now_ms()))
    }

    /// The open alarm that marks conversation `group` (nothing is sent there while it is open).
    pub fn marking(&self, group: &GroupId) -> Result<Option<devices::Alarm>, EngineError> {
        devices::marking(&self.conn, group)
    }

    /// Turns device-list enforcement on (unit tests of the enforcement; it is always on
    /// outside this crate's tests).
    #[cfg(test)]
    pub(crate) fn enforce_device_lists(&mut self) {
        self.checks.enforce = true;
    }

    /// Stores the session token (replacing any earlier one).
    pub fn set_session_token(&mut self, token: &SessionToken) -> Result<(), EngineError> {
        self.with_tx(|c| {
            store::meta_put(c.db, keys::TOKEN, token.token.as_bytes())?;
            store::meta_put(
                c.db,
                keys::TOKEN_EXP,
                token.expires_at.to_string().as_bytes(),
            )
        })
    }

    /// Records a link code this device minted: the server's code, the link secret this device
    /// drew for it, and when it expires. Its `DeviceLinked` entry is recognised by the server
    /// code's SHA-256, and the new device's link proof is checked with the secret. Codes long
    /// expired are dropped.
    pub fn record_minted_link_code(
        &mut self,
        server_code: &str,
        secret: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<(), EngineError> {
        use sha2::Digest as _;
        let entry = MintedLinkCode {
            code_sha256: hex::encode(sha2::Sha256::digest(server_code.as_bytes())),
            server_code: server_code.to_owned(),
            secret: secret.to_owned(),
            expires_at,
        };
        self.with_tx(|c| {
            let mut codes = minted_codes(c.db)?;
            codes.retain(|m| m.expires_at.saturating_add(MINTED_CODE_GRACE_MS) > now);
            codes.push(entry);
            put_minted_codes(c.db, &codes)
        })
    }

    /// The link code this device minted whose server code has SHA-256 `code_sha256`, if any;
    /// it is forgotten (a code links one device).
    pub fn take_minted_link_code(
        &mut self,
        code_sha256: &[u8],
    ) -> Result<Option<MintedLinkCode>, EngineError> {
        let want = hex::encode(code_sha256);
        self.with_tx(|c| {
            let mut codes = minted_codes(c.db)?;
            let Some(i) = codes.iter().position(|m| m.code_sha256 == want) else {
                return Ok(None);
            };
            let taken = codes.remove(i);
            put_minted_codes(c.db, &codes)?;
            Ok(Some(taken))
        })
    }

    /// Forgets the session token.
    pub fn clear_session_token(&mut self) -> Result<(), EngineError> {
        self.with_tx(|c| {
            store::meta_delete(c.db, keys::TOKEN)?;
            store::meta_delete(c.db, keys::TOKEN_EXP)
        })
    }

    /// The stored session token, if any.
    pub fn session_token(&self) -> Result<Option<SessionToken>, EngineError> {
        let (Some(t), Some(e)) = (
            store::meta_get(&self.conn, keys::TOKEN)?,
            store::meta_get(&self.conn, keys::TOKEN_EXP)?,
        ) else {
            return Ok(None);
        };
        let token = String::from_utf8(t).map_err(|_| EngineError::Corrupt("session token"))?;
        let expires_at = std::str::from_utf8(&e)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(EngineError::Corrupt("session expiry"))?;
        Ok(Some(SessionToken { token, expires_at }))
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction; commits if it succeeds, rolls back (by
    /// dropping the transaction) otherwise.
    ///
    /// **Group cache.** Loading an `MlsGroup` from openmls's storage decodes the whole group
    /// state, the largest cost of processing a message; so groups stay in memory between
    /// transactions, and openmls still writes every change through to storage. The cache is
    /// trusted only while it provably matches the database:
    /// - it is emptied when the transaction fails or does not commit (its writes are gone);
    /// - it is emptied when another connection — another `haven` process on this profile — has
    ///   committed since our last transaction: SQLite's `PRAGMA data_version` changes exactly
    ///   then (our own commits leave it alone), and we read it while holding the write lock;
    /// - inside a transaction, code takes a group out and puts it back only when storage holds
    ///   the same state (a savepoint rolled back means the group is not put back).
    fn with_tx<T>(
        &mut self,
        f: impl FnOnce(&Ctx<'_>) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let mut groups = std::mem::take(&mut self.groups);
        if version != self.data_version {
            groups.clear();
        }
        let (out, groups) = {
            let ctx = Ctx {
                p: Provider::new(&self.crypto, &tx),
                db: &tx,
                signer: &self.signer,
                me: &self.identity,
                checks: &self.checks,
                groups: RefCell::new(groups),
            };
            let out = f(&ctx)?;
            (out, ctx.groups.into_inner())
        };
        #[cfg(test)]
        if std::mem::take(&mut self.fail_before_commit) {
            return Err(EngineError::Internal("injected failure before commit"));
        }
        tx.commit()?;
        self.groups = groups;
        self.data_version = version;
        Ok(out)
    }

    /// `n` fresh one-time key packages (TLS-serialised `MLSMessage`s), for `UploadKeyPackages`.
    /// Their private keys are stored; each is deleted when a Welcome consumes it.
    pub fn key_packages(&mut self, n: usize) -> Result<Vec<Vec<u8>>, EngineError> {
        if n > MAX_KEY_PACKAGES {
            return Err(EngineError::Limit("at most 100 key packages per call"));
        }
        self.with_tx(|c| (0..n).map(|_| c.key_package(false)).collect())
    }

    /// A last-resort key package (RFC 9420 `last_resort` extension, which openmls supports): it
    /// is kept after use, so the server may hand it out repeatedly when one-time packages run out.
    pub fn last_resort_key_package(&mut self) -> Result<Vec<u8>, EngineError> {
        self.with_tx(|c| c.key_package(true))
    }

    /// Creates a conversation with only this device in it (epoch 0); returns its random 16-byte
    /// group id. Announce it with `CreateGroup`, then [`add_members`](Self::add_members). For a
    /// group, send a [`Body::GroupName`] after the add so joiners learn the name.
    ///
    /// A direct chat we open counts as accepted; a group's name must be valid
    /// ([`valid_group_name`]) and not that of another live conversation
    /// ([`EngineError::NameTaken`]), and is also what the group is announced as.
    pub fn create_conversation(&mut self, kind: ConversationKind) -> Result<GroupId, EngineError> {
        let kind = match kind {
            ConversationKind::Direct { peer, .. } if peer == self.identity.user => {
                return Err(EngineError::Membership("a direct chat needs another user"))
            }
            ConversationKind::Direct { peer, .. } => ConversationKind::direct(peer),
            ConversationKind::Group { name, .. } => ConversationKind::group(name),
        };
        let mut b = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let group_id =
            GroupId::from_bytes(&b).map_err(|_| EngineError::Internal("16-byte group id"))?;
        self.with_tx(|c| {
            if let ConversationKind::Group { name, .. } = &kind {
                book::check_new_name(c.db, name)?;
            }
            MlsGroup::new_with_group_id(
                &c.p,
                c.signer,
                &create_config(),
                mls_gid(&group_id),
                c.credential(),
            )
            .map_err(EngineError::mls)?;
            store::conversation_put(
                c.db,
                &Conversation {
                    group_id: group_id.clone(),
                    kind,
                    state: ConversationState::Active,
                    created_at: now_ms(),
                    added_by: None,
                },
            )
        })?;
        Ok(group_id)
    }

    /// Marks a conversation we just created, and could not add anyone to, as left: it must
    /// never be taken for the conversation it was meant to be.
    pub fn abandon_conversation(&mut self, group_id: &GroupId) -> Result<(), EngineError> {
        self.with_tx(|c| store::conversation_set_state(c.db, group_id, ConversationState::Left))
    }

    /// All conversations, oldest first.
    pub fn conversations(&self) -> Result<Vec<Conversation>, EngineError> {
        store::conversation_list(&self.conn)
    }

    /// One conversation.
    pub fn conversation(&self, group_id: &GroupId) -> Result<Option<Conversation>, EngineError> {
        store::conversation_get(&self.conn, group_id)
    }

    /// The direct chat with `peer` that `send PEER` uses: the oldest active one the user opened
    /// or accepted. A direct chat filed from a Welcome and not accepted yet is never it (see
    /// [`Engine::pending_direct`]).
    pub fn find_direct(&self, peer: &UserName) -> Result<Option<GroupId>, EngineError> {
        Ok(self
            .conversations()?
            .into_iter()
            .find_map(|c| match c.kind {
                ConversationKind::Direct {
                    peer: p,
                    accepted: true,
                } if p == *peer && c.state == ConversationState::Active => Some(c.group_id),
                _ => None,
            }))
    }

    /// The newest active direct chat `peer` opened with us that we have not accepted yet.
    pub fn pending_direct(&self, peer: &UserName) -> Result<Option<GroupId>, EngineError> {
        Ok(self
            .conversations()?
            .into_iter()
            .rev()
            .find_map(|c| match c.kind {
                ConversationKind::Direct {
                    peer: p,
                    accepted: false,
                } if p == *peer
                    && c.state == ConversationState::Active
                    && c.added_by.as_ref() == Some(peer) =>
                {
                    Some(c.group_id)
                }
                _ => None,
            }))
    }

    /// The live (active or invited) group whose local name is `name`, if any. Names are unique
    /// among live conversations; a profile from before that rule may hold several, which is
    /// refused ([`EngineError::AmbiguousName`]), never settled by age.
    pub fn find_group(&self, name: &str) -> Result<Option<GroupId>, EngineError> {
        let mut found = self
            .conversations()?
            .into_iter()
            .filter(|c| c.state.is_live() && c.group_name() == Some(name));
        match (found.next(), found.next()) {
            (None, _) => Ok(None),
            (Some(c), None) => Ok(Some(c.group_id)),
            (Some(_), Some(_)) => Err(EngineError::AmbiguousName(name.to_owned())),
        }
    }

    /// Accepts an invitation ([`ConversationState::Invited`] becomes active) or a direct chat
    /// not accepted yet. Returns whether anything changed; refuses a conversation we left or
    /// were removed from ([`EngineError::NotActive`]).
    pub fn accept(&mut self, group_id: &GroupId) -> Result<bool, EngineError> {
        self.with_tx(|c| book::accept(c.db, group_id))
    }

    /// Members as the MLS tree has them (one entry per device, ourselves included).
    pub fn members(&self, group_id: &GroupId) -> Result<Vec<(UserName, DeviceId)>, EngineError> {
        let p = Provider::new(&self.crypto, &self.conn);
        let group = load_group(&p, group_id)?;
        Ok(member_list(&group))
    }

    /// The group's current MLS epoch.
    pub fn epoch(&self, group_id: &GroupId) -> Result<u64, EngineError> {
        let p = Provider::new(&self.crypto, &self.conn);
        Ok(load_group(&p, group_id)?.epoch().as_u64())
    }

    /// Whether proposals wait to be committed (sending is refused until they are).
    pub fn has_pending_proposals(&self, group_id: &GroupId) -> Result<bool, EngineError> {
        let p = Provider::new(&self.crypto, &self.conn);
        Ok(load_group(&p, group_id)?.has_pending_proposals())
    }

    /// Stages a commit adding every device in `claimed` (as returned by the key-package claim
    /// endpoint). Each key package is verified and its credential must be exactly
    /// `"<user>/<device_id>"` of the entry it was claimed for: the server is not trusted.
    pub fn add_members(
        &mut self,
        group_id: &GroupId,
        claimed: &[ClaimedKeyPackages],
    ) -> Result<OutgoingCommit, EngineError> {
        self.with_tx(|c| c.staged(c.add_members(group_id, claimed)?))
    }

    /// Stages a commit removing every device of `users`. Use [`leave`](Self::leave) to remove
    /// ourselves.
    pub fn remove_users(
        &mut self,
        group_id: &GroupId,
        users: &[UserName],
    ) -> Result<OutgoingCommit, EngineError> {
        let me = self.identity.user.clone();
        if users.contains(&me) {
            return Err(EngineError::Membership("use leave to remove yourself"));
        }
        self.with_tx(|c| c.staged(c.remove_where(group_id, |u, _| users.contains(u))?))
    }

    /// Stages a commit removing these devices (which may include our own other devices, not
    /// this one).
    pub fn remove_devices(
        &mut self,
        group_id: &GroupId,
        devices: &[DeviceId],
    ) -> Result<OutgoingCommit, EngineError> {
        if devices.contains(&self.identity.device_id) {
            return Err(EngineError::Membership("use leave to remove this device"));
        }
        self.with_tx(|c| c.staged(c.remove_where(group_id, |_, d| devices.contains(d))?))
    }

    /// Stages a commit of the pending proposals (a member's leave), or `None` if there are none.
    pub fn commit_pending_proposals(
        &mut self,
        group_id: &GroupId,
    ) -> Result<Option<OutgoingCommit>, EngineError> {
        self.with_tx(|c| {
            c.commit_pending(group_id)?
                .map(|oc| c.staged(oc))
                .transpose()
        })
    }

    /// Merges our pending commit once the server accepted it; returns the new epoch.
    pub fn merge_pending_commit(&mut self, group_id: &GroupId) -> Result<u64, EngineError> {
        self.with_tx(|c| {
            let mut group = c.group(group_id)?;
            if group.pending_commit().is_none() {
                return Err(EngineError::NoPendingCommit(group_id.clone()));
            }
            group.merge_pending_commit(&c.p).map_err(|e| match e {
                mls::MergePendingCommitError::MlsGroupStateError(_) => {
                    EngineError::NotActive(group_id.clone())
                }
                mls::MergePendingCommitError::MergeCommitError(
                    mls::MergeCommitError::StorageError(e),
                ) => EngineError::Db(e),
                e => EngineError::mls(e),
            })?;
            let epoch = group.epoch().as_u64();
            c.keep_group(group_id.clone(), group);
            store::pending_commit_delete(c.db, group_id)?;
            Ok(epoch)
        })
    }

    /// Discards our pending commit after the server refused it (epoch conflict). Process the
    /// queue (the winning commit), then retry.
    pub fn clear_pending_commit(&mut self, group_id: &GroupId) -> Result<(), EngineError> {
        self.with_tx(|c| {
            let mut group = c.group(group_id)?;
            group.clear_pending_commit(c.p.storage())?;
            c.keep_group(group_id.clone(), group);
            store::pending_commit_delete(c.db, group_id)
        })
    }

    /// Commits staged but neither merged nor cleared: the server's answer was lost (a crash, a
    /// dropped connection). Resubmit each as it is; the server recognises one it accepted.
    pub fn pending_commits(&self) -> Result<Vec<OutgoingCommit>, EngineError> {
        store::pending_commit_list(&self.conn)
    }

    /// Leaves: returns our Remove proposal (send it with `ProposalRequest { leave: true }`) and
    /// marks the conversation left; the engine refuses to send there afterwards. Another member
    /// commits the removal. Leaving an invitation declines it.
    pub fn leave(&mut self, group_id: &GroupId) -> Result<Vec<u8>, EngineError> {
        self.with_tx(|c| {
            let mut group = match c.active_group(group_id) {
                Err(EngineError::NotAccepted(_)) => c.group(group_id)?,
                other => other?,
            };
            let msg = group.leave_group(&c.p, c.signer).map_err(|e| match e {
                mls::LeaveGroupError::GroupStateError(s) => c.state_error(group_id, s),
                mls::LeaveGroupError::StorageError(e) => EngineError::Db(e),
                e => EngineError::mls(e),
            })?;
            store::conversation_set_state(c.db, group_id, ConversationState::Left)?;
            serialize(&msg)
        })
    }

    /// Encrypts a message: builds the content, commits to it (franking), and returns the MLS
    /// `PrivateMessage` whose `authenticated_data` carries the commitment.
    pub fn encrypt(
        &mut self,
        group_id: &GroupId,
        body: Body,
    ) -> Result<OutgoingMessage, EngineError> {
        self.encrypt_inner(group_id, body, None, None)
    }

    /// [`Engine::encrypt`] with a message id of the caller's choosing (a resend that must be
    /// recognised as the same message). Ids are chosen by senders, so any sender can reuse any
    /// id it has seen: receivers scope ids by conversation and sender
    /// ([`Engine::messages_with_id`]).
    pub fn encrypt_with_id(
        &mut self,
        group_id: &GroupId,
        id: MessageId,
        body: Body,
    ) -> Result<OutgoingMessage, EngineError> {
        self.encrypt_inner(group_id, body, Some(id), None)
    }

    /// `encrypt`, with a test hook to put a different commitment in the AAD (a cheating sender).
    fn encrypt_inner(
        &mut self,
        group_id: &GroupId,
        body: Body,
        id: Option<MessageId>,
        aad_override: Option<Commitment>,
    ) -> Result<OutgoingMessage, EngineError> {
        let mut content = Content::new(body, now_ms());
        if let Some(id) = id {
            content.id = id;
        }
        // The newest directory root this profile verified, for split-view detection.
        content.kt = self
            .kt_root()?
            .map(|r| haven_content::KtRootRef::new(&r.encode()))
            .transpose()?;
        let bytes = content.encode()?;
        let salt = FrankSalt::random();
        let commitment = haven_frank::commit(&salt, &bytes);
        let aad = haven_frank::encode_aad(&aad_override.unwrap_or(commitment));
        let plaintext = zeroize::Zeroizing::new(seal_envelope(&salt, &bytes));
        let mls_bytes = self.with_tx(|c| {
            let mut group = c.active_group(group_id)?;
            group.set_aad(aad);
            let out = group
                .create_message(&c.p, c.signer, &plaintext)
                .map_err(|e| match e {
                    mls::CreateMessageError::GroupStateError(s) => c.state_error(group_id, s),
                    e => EngineError::mls(e),
                })?;
            let bytes = serialize(&out)?;
            c.keep_group(group_id.clone(), group);
            Ok(bytes)
        })?;
        Ok(OutgoingMessage {
            id: content.id,
            group_id: group_id.clone(),
            mls: mls_bytes,
            sent_at: content.sent_at,
            body: content.body,
            content: bytes,
            salt,
            commitment,
        })
    }

    /// Stores our own message in history once the server accepted it (`received_at` from
    /// `SendResponse`). `GroupName` control messages are not history; they rename locally.
    pub fn record_sent(
        &mut self,
        msg: &OutgoingMessage,
        received_at: Millis,
    ) -> Result<(), EngineError> {
        self.record_sent_tagged(msg, received_at, None)
    }

    /// [`Engine::record_sent`] with the server's franking tag from the send reply, so the
    /// message can be context in a report this device files later.
    pub fn record_sent_tagged(
        &mut self,
        msg: &OutgoingMessage,
        received_at: Millis,
        server_tag: Option<&[u8]>,
    ) -> Result<(), EngineError> {
        let content = Content::decode(&msg.content)?;
        self.with_tx(|c| {
            if let Body::GroupName(name) = &content.body {
                return book::own_rename(c.db, &msg.group_id, name);
            }
            store::message_insert(
                c.db,
                &NewMessage {
                    group: &msg.group_id,
                    content: &content,
                    content_bytes: &msg.content,
                    from: &c.me.user,
                    from_device: &c.me.device_id,
                    received_at,
                    commitment: msg.commitment.as_bytes(),
                    salt: msg.salt.as_bytes(),
                    server_tag,
                    queue_id: None,
                    outgoing: true,
                },
            )?;
            Ok(())
        })
    }

    /// Incoming messages stored since the last [`Engine::mark_seen`], oldest first (at most
    /// `limit`), with the cursor value to pass to `mark_seen` once they were shown. Whatever
    /// stored them — a sync, a commit retry, a send — they are shown exactly once.
    pub fn unseen_messages(&self, limit: u32) -> Result<(Vec<StoredMessage>, i64), EngineError> {
        let cursor = self.seen_cursor()?;
        let rows = store::messages_after(&self.conn, cursor, limit)?;
        let next = rows.last().map(|(seq, _)| *seq).unwrap_or(cursor);
        Ok((rows.into_iter().map(|(_, m)| m).collect(), next))
    }

    /// Records that messages up to `cursor` (from [`Engine::unseen_messages`]) were shown.
    pub fn mark_seen(&mut self, cursor: i64) -> Result<(), EngineError> {
        if cursor > self.seen_cursor()? {
            store::meta_put(&self.conn, SEEN_CURSOR, &cursor.to_be_bytes())?;
        }
        Ok(())
    }

    fn seen_cursor(&self) -> Result<i64, EngineError> {
        Ok(match store::meta_get(&self.conn, SEEN_CURSOR)? {
            Some(b) => i64::from_be_bytes(
                b.as_slice()
                    .try_into()
                    .map_err(|_| EngineError::Corrupt("seen cursor"))?,
            ),
            None => 0,
        })
    }

    /// The last `limit` messages of a conversation, oldest first.
    pub fn history(
        &self,
        group_id: &GroupId,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, EngineError> {
        store::history(&self.conn, group_id, limit)
    }

    /// Every stored message (sent or received) whose id is `id`, optionally only in `group`
    /// and/or from `from`, oldest first, at most [`MAX_ID_MATCHES`]. Ids are chosen by senders
    /// and unique only per conversation and sender user: more than one result is ambiguous, and
    /// the caller must refuse it rather than pick one.
    pub fn messages_with_id(
        &self,
        id: &MessageId,
        group: Option<&GroupId>,
        from: Option<&UserName>,
    ) -> Result<Vec<StoredMessage>, EngineError> {
        store::messages_with_id(&self.conn, id, group, from, MAX_ID_MATCHES)
    }

    /// The franking material of a stored message (what a report discloses).
    pub fn frank_record(
        &self,
        group_id: &GroupId,
        from: &UserName,
        id: &MessageId,
    ) -> Result<Option<FrankRecord>, EngineError> {
        store::frank_record(&self.conn, group_id, from, id)
    }

    /// A stored message's franking material (`None`: no such message) and up to `context`
    /// earlier messages of its conversation that carry a server tag, oldest first: what a
    /// report discloses.
    pub fn report_material(
        &self,
        group_id: &GroupId,
        from: &UserName,
        id: &MessageId,
        context: u32,
    ) -> Result<Option<(FrankedRow, Vec<FrankedRow>)>, EngineError> {
        let Some((seq, row)) = store::franked_message(&self.conn, group_id, from, id)? else {
            return Ok(None);
        };
        let before = store::franked_before(&self.conn, group_id, row.received_at, seq, context)?;
        Ok(Some((row, before)))
    }

    /// Processes one queue entry in one transaction. Returns `Err` only for storage or internal
    /// failures, in which case nothing was recorded and the entry must be retried (not
    /// acknowledged). Every `Ok` means: acknowledge it.
    pub fn process_entry(&mut self, entry: &QueueEntry) -> Result<Processed, EngineError> {
        let mut out = self.process_entries(std::slice::from_ref(entry))?;
        out.pop()
            .ok_or(EngineError::Internal("one entry processed, no outcome"))
    }

    /// Processes a batch of queue entries, in order, in ONE transaction: one outcome per entry,
    /// in the same order. All of them are recorded or none is (`Err`: retry the whole batch, and
    /// acknowledge nothing), so the exactly-once guarantee of [`Engine::process_entry`] holds
    /// per batch, and a batch costs one commit (one `fsync`) instead of one per entry.
    ///
    /// Groups come from the engine's cache (see `with_tx`): a rejected entry rolls its
    /// savepoint back and evicts its group, so the next entry reloads the state that storage
    /// actually holds; a Welcome clears the cache (it may replace an old group).
    pub fn process_entries(
        &mut self,
        entries: &[QueueEntry],
    ) -> Result<Vec<Processed>, EngineError> {
        self.with_tx(|c| {
            let mut out = Vec::with_capacity(entries.len());
            for entry in entries {
                if store::is_processed(c.db, entry.id)? {
                    out.push(Processed::Duplicate);
                    continue;
                }
                let p = c.process(entry)?;
                store::mark_processed(c.db, entry.id, entry.kind.as_str(), p.label(), now_ms())?;
                out.push(p);
            }
            Ok(out)
        })
    }

    /// The outcome recorded for a processed queue id.
    pub fn processed_outcome(&self, queue_id: i64) -> Result<Option<String>, EngineError> {
        store::processed_outcome(&self.conn, queue_id)
    }
}

/// Groups kept in memory (see `Engine::with_tx`).
type GroupCache = HashMap<GroupId, MlsGroup>;
/// Most groups kept in memory; beyond it the cache starts over.
const GROUP_CACHE_MAX: usize = 64;

fn load_group(p: &Provider<'_>, group_id: &GroupId) -> Result<MlsGroup, EngineError> {
    MlsGroup::load(p.storage(), &mls_gid(group_id))?
        .ok_or_else(|| EngineError::UnknownConversation(group_id.clone()))
}

impl Ctx<'_> {
    /// Whether `user`'s `device` with MLS key `key` may be encrypted to: it is in the user's
    /// verified list. A device missing from a list not checked in this session asks the client
    /// to check it first ([`EngineError::DeviceListNeeded`]).
    fn listed(&self, user: &UserName, device: &DeviceId, key: &[u8]) -> Result<bool, EngineError> {
        if !self.checks.enforce {
            return Ok(true);
        }
        match devices::check(self.db, user, device, key)? {
            DeviceCheck::Listed => Ok(true),
            DeviceCheck::NotListed | DeviceCheck::NoList if self.checks.fresh.contains(user) => {
                Ok(false)
            }
            DeviceCheck::NotListed | DeviceCheck::NoList => {
                Err(EngineError::DeviceListNeeded(user.clone()))
            }
        }
    }

    /// Records a staged commit (in the transaction that staged it) until merged or cleared.
    fn staged(&self, oc: OutgoingCommit) -> Result<OutgoingCommit, EngineError> {
        store::pending_commit_put(self.db, &oc)?;
        Ok(oc)
    }

    /// The group, from the cache (removing it there) or from storage.
    fn take_group(&self, group_id: &GroupId) -> Result<Option<MlsGroup>, EngineError> {
        if let Some(g) = self.groups.borrow_mut().remove(group_id) {
            return Ok(Some(g));
        }
        Ok(MlsGroup::load(self.p.storage(), &mls_gid(group_id))?)
    }

    /// Puts a group back whose every change is in storage (see [`Ctx::groups`]).
    fn keep_group(&self, group_id: GroupId, group: MlsGroup) {
        let mut groups = self.groups.borrow_mut();
        if groups.len() >= GROUP_CACHE_MAX {
            groups.clear();
        }
        groups.insert(group_id, group);
    }

    fn group(&self, group_id: &GroupId) -> Result<MlsGroup, EngineError> {
        self.take_group(group_id)?
            .ok_or_else(|| EngineError::UnknownConversation(group_id.clone()))
    }

    fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(haven_proto::mls_identity(
                &self.me.user,
                &self.me.device_id,
            ))
            .into(),
            signature_key: self.signer.public().into(),
        }
    }

    fn state_error(&self, group_id: &GroupId, e: mls::MlsGroupStateError) -> EngineError {
        match e {
            mls::MlsGroupStateError::PendingCommit => EngineError::PendingCommit(group_id.clone()),
            mls::MlsGroupStateError::PendingProposal => {
                EngineError::PendingProposals(group_id.clone())
            }
            mls::MlsGroupStateError::UseAfterEviction => EngineError::NotActive(group_id.clone()),
            e => EngineError::mls(e),
        }
    }

    fn key_package(&self, last_resort: bool) -> Result<Vec<u8>, EngineError> {
        let mut b = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            b = b.mark_as_last_resort();
        }
        let bundle = b
            .build(CIPHERSUITE, &self.p, self.signer, self.credential())
            .map_err(EngineError::mls)?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// Loads a group we may send in: known, active locally and in MLS.
    fn active_group(&self, group_id: &GroupId) -> Result<MlsGroup, EngineError> {
        let conv = store::conversation_get(self.db, group_id)?
            .ok_or_else(|| EngineError::UnknownConversation(group_id.clone()))?;
        match conv.state {
            ConversationState::Active => {}
            ConversationState::Invited => return Err(EngineError::NotAccepted(group_id.clone())),
            ConversationState::Left | ConversationState::Removed => {
                return Err(EngineError::NotActive(group_id.clone()))
            }
        }
        let group = self.group(group_id)?;
        if !group.is_active() {
            return Err(EngineError::NotActive(group_id.clone()));
        }
        Ok(group)
    }

    fn verify_key_package(
        &self,
        user: &UserName,
        device_id: &DeviceId,
        bytes: &[u8],
    ) -> Result<KeyPackage, EngineError> {
        let bad = |problem| EngineError::KeyPackage {
            user: user.clone(),
            device_id: device_id.clone(),
            problem,
        };
        if bytes.len() > MAX_PAYLOAD {
            return Err(bad(KeyPackageProblem::Malformed));
        }
        let msg = MlsMessageIn::tls_deserialize_exact(bytes)
            .map_err(|_| bad(KeyPackageProblem::Malformed))?;
        let MlsMessageBodyIn::KeyPackage(kp) = msg.extract() else {
            return Err(bad(KeyPackageProblem::Malformed));
        };
        let kp = kp
            .validate(self.p.crypto(), ProtocolVersion::Mls10)
            .map_err(|_| bad(KeyPackageProblem::Invalid))?;
        if kp.ciphersuite() != CIPHERSUITE {
            return Err(bad(KeyPackageProblem::Ciphersuite));
        }
        match parse_identity(kp.leaf_node().credential()) {
            Some((u, d)) if u == *user && d == *device_id => {}
            _ => return Err(bad(KeyPackageProblem::WrongIdentity)),
        }
        let key = kp.leaf_node().signature_key().as_slice();
        if pins::check_or_pin(self.db, user, device_id, key)? == KeyCheck::Mismatch {
            return Err(bad(KeyPackageProblem::WrongKey));
        }
        if !self.listed(user, device_id, key)? {
            return Err(bad(KeyPackageProblem::NotListed));
        }
        Ok(kp)
    }

    fn add_members(
        &self,
        group_id: &GroupId,
        claimed: &[ClaimedKeyPackages],
    ) -> Result<OutgoingCommit, EngineError> {
        let mut group = self.active_group(group_id)?;
        let present: HashSet<DeviceId> = member_list(&group).into_iter().map(|(_, d)| d).collect();
        let mut seen = HashSet::new();
        let mut kps = Vec::new();
        let mut added = Vec::new();
        for c in claimed {
            for k in &c.key_packages {
                let problem = if present.contains(&k.device_id) {
                    Some(KeyPackageProblem::AlreadyMember)
                } else if !seen.insert(k.device_id.clone()) {
                    Some(KeyPackageProblem::Duplicate)
                } else {
                    None
                };
                if let Some(problem) = problem {
                    return Err(EngineError::KeyPackage {
                        user: c.user.clone(),
                        device_id: k.device_id.clone(),
                        problem,
                    });
                }
                kps.push(self.verify_key_package(&c.user, &k.device_id, &k.key_package)?);
                added.push(k.device_id.clone());
            }
        }
        if kps.is_empty() {
            return Err(EngineError::Membership("no key packages to add"));
        }
        let epoch = group.epoch().as_u64();
        let (commit, welcome, _) =
            group
                .add_members(&self.p, self.signer, &kps)
                .map_err(|e| match e {
                    mls::AddMembersError::GroupStateError(s) => self.state_error(group_id, s),
                    mls::AddMembersError::StorageError(e) => EngineError::Db(e),
                    e => EngineError::mls(e),
                })?;
        Ok(OutgoingCommit {
            group_id: group_id.clone(),
            epoch,
            commit: serialize(&commit)?,
            welcome: Some(serialize(&welcome)?),
            added,
            removed: Vec::new(),
        })
    }

    fn remove_where(
        &self,
        group_id: &GroupId,
        pick: impl Fn(&UserName, &DeviceId) -> bool,
    ) -> Result<OutgoingCommit, EngineError> {
        let mut group = self.active_group(group_id)?;
        let mut leaves = Vec::new();
        let mut removed = Vec::new();
        for m in group.members() {
            if let Some((u, d)) = parse_identity(&m.credential) {
                if d != self.me.device_id && pick(&u, &d) {
                    leaves.push(m.index);
                    removed.push(d);
                }
            }
        }
        if leaves.is_empty() {
            return Err(EngineError::Membership("nobody to remove"));
        }
        let epoch = group.epoch().as_u64();
        let (commit, welcome, _) = group
            .remove_members(&self.p, self.signer, &leaves)
            .map_err(|e| match e {
                mls::RemoveMembersError::GroupStateError(s) => self.state_error(group_id, s),
                mls::RemoveMembersError::StorageError(e) => EngineError::Db(e),
                e => EngineError::mls(e),
            })?;
        Ok(OutgoingCommit {
            group_id: group_id.clone(),
            epoch,
            commit: serialize(&commit)?,
            welcome: welcome.as_ref().map(serialize).transpose()?,
            added: Vec::new(),
            removed,
        })
    }

    fn commit_pending(&self, group_id: &GroupId) -> Result<Option<OutgoingCommit>, EngineError> {
        // Only an active member commits: one who has left waits for the others to remove it.
        let mut group = self.active_group(group_id)?;
        if !group.has_pending_proposals() {
            return Ok(None);
        }
        let mut added = Vec::new();
        let mut removed = Vec::new();
        for qp in group.pending_proposals() {
            match qp.proposal() {
                mls::Proposal::Add(a) => {
                    if let Some((_, d)) = parse_identity(a.key_package().leaf_node().credential()) {
                        added.push(d);
                    }
                }
                mls::Proposal::Remove(r) => {
                    if let Some((_, d)) = group
                        .member_at(r.removed())
                        .and_then(|m| parse_identity(&m.credential))
                    {
                        removed.push(d);
                    }
                }
                _ => {}
            }
        }
        let epoch = group.epoch().as_u64();
        let (commit, welcome, _) = group
            .commit_to_pending_proposals(&self.p, self.signer)
            .map_err(|e| match e {
                mls::CommitToPendingProposalsError::GroupStateError(s) => {
                    self.state_error(group_id, s)
                }
                mls::CommitToPendingProposalsError::StorageError(e) => EngineError::Db(e),
                e => EngineError::mls(e),
            })?;
        Ok(Some(OutgoingCommit {
            group_id: group_id.clone(),
            epoch,
            commit: serialize(&commit)?,
            welcome: welcome.as_ref().map(serialize).transpose()?,
            added,
            removed,
        }))
    }

    // ---------------------------------------------------------------- receiving

    fn process(&self, entry: &QueueEntry) -> Result<Processed, EngineError> {
        if entry.payload.len() > MAX_PAYLOAD {
            return Ok(Processed::Dropped {
                reason: DropReason::Malformed,
            });
        }
        let step = match entry.kind {
            EntryKind::DeviceLinked => {
                return Ok(
                    match serde_json::from_slice::<DeviceLinked>(&entry.payload) {
                        Ok(d) if d.device_id != self.me.device_id => Processed::DeviceLinked(d),
                        Ok(_) => Processed::Dropped {
                            reason: DropReason::NotForUs,
                        },
                        Err(_) => Processed::Dropped {
                            reason: DropReason::Malformed,
                        },
                    },
                )
            }
            EntryKind::DeviceRemoved => {
                return Ok(
                    match serde_json::from_slice::<DeviceRemoved>(&entry.payload) {
                        Ok(d) => Processed::DeviceRemoved(d),
                        Err(_) => Processed::Dropped {
                            reason: DropReason::Malformed,
                        },
                    },
                )
            }
            EntryKind::Notice => {
                return Ok(
                    match (&entry.sender, serde_json::from_slice(&entry.payload)) {
                        (None, Ok(n)) => Processed::Notice(n),
                        _ => Processed::Dropped {
                            reason: DropReason::Malformed,
                        },
                    },
                )
            }
            EntryKind::Welcome => {
                self.groups.borrow_mut().clear();
                self.in_savepoint(|| self.welcome(entry))?
            }
            EntryKind::Application | EntryKind::Commit | EntryKind::Proposal => {
                self.in_savepoint(|| self.protocol(entry))?
            }
        };
        Ok(step)
    }

    /// Runs the MLS phase inside a savepoint so that a rejected message leaves no partial
    /// openmls writes behind, while the enclosing transaction still records the drop.
    fn in_savepoint(
        &self,
        f: impl FnOnce() -> Result<Step, EngineError>,
    ) -> Result<Processed, EngineError> {
        let run = |sql: &str| -> Result<(), EngineError> {
            self.db.prepare_cached(sql)?.execute([])?;
            Ok(())
        };
        run("SAVEPOINT haven_mls")?;
        match f()? {
            Step::Done(p) => {
                run("RELEASE haven_mls")?;
                Ok(*p)
            }
            Step::Reject(reason) => {
                run("ROLLBACK TO haven_mls")?;
                run("RELEASE haven_mls")?;
                Ok(Processed::Dropped { reason })
            }
            Step::Unlisted {
                user,
                device,
                group,
                detail,
            } => {
                run("ROLLBACK TO haven_mls")?;
                run("RELEASE haven_mls")?;
                devices::raise(
                    self.db,
                    &devices::NewAlarm {
                        kind: devices::AlarmKind::UnlistedDevice,
                        user: &user,
                        device: Some(&device),
                        group: group.as_ref(),
                        detail,
                    },
                    now_ms(),
                )?;
                Ok(Processed::Dropped {
                    reason: DropReason::UnlistedDevice,
                })
            }
        }
    }

    fn welcome(&self, entry: &QueueEntry) -> Result<Step, EngineError> {
        let Ok(msg) = MlsMessageIn::tls_deserialize_exact(&entry.payload) else {
            return dropped(DropReason::Malformed);
        };
        let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
            return dropped(DropReason::Malformed);
        };
        let cfg = join_config();
        let builder = match StagedWelcome::build_from_welcome(&self.p, &cfg, welcome) {
            Ok(b) => b,
            Err(mls::WelcomeError::StorageError(e)) => return Err(EngineError::Db(e)),
            Err(_) => return Ok(Step::Reject(DropReason::Rejected)),
        };
        let Some(group_id) = haven_gid(
            builder
                .processed_welcome()
                .unverified_group_info()
                .group_id(),
        ) else {
            return Ok(Step::Reject(DropReason::Malformed));
        };
        if entry.group_id.as_ref().is_some_and(|g| *g != group_id) {
            return Ok(Step::Reject(DropReason::Malformed));
        }
        let existing = store::conversation_get(self.db, &group_id)?;
        let builder = match &existing {
            Some(c) if c.state == ConversationState::Active => {
                return Ok(Step::Reject(DropReason::AlreadyMember))
            }
            // We were in this group before (left or removed) and are re-added.
            Some(_) => builder.replace_old_group(),
            None => builder,
        };
        let staged = match builder.build() {
            Ok(s) => s,
            Err(mls::WelcomeError::StorageError(e)) => return Err(EngineError::Db(e)),
            Err(_) => return Ok(Step::Reject(DropReason::Rejected)),
        };
        // The adder is the member whose leaf signed the GroupInfo: it must be the device the
        // server authenticated as the Welcome's sender, so nobody can add us under another name.
        let adder = staged
            .welcome_sender()
            .ok()
            .and_then(|leaf| parse_identity(leaf.credential()));
        match (&adder, &entry.sender) {
            (Some((u, d)), Some(s)) if *u == s.user && *d == s.device_id => {}
            _ => return Ok(Step::Reject(DropReason::SenderMismatch)),
        }
        // Every member must be a Haven identity whose key is the one known for its device.
        for m in staged.members() {
            let Some((u, d)) = parse_identity(&m.credential) else {
                return Ok(Step::Reject(DropReason::InvalidMember));
            };
            if pins::check_or_pin(self.db, &u, &d, &m.signature_key)? == KeyCheck::Mismatch {
                return Ok(Step::Reject(DropReason::InvalidMember));
            }
            if !self.listed(&u, &d, &m.signature_key)? {
                let by = entry
                    .sender
                    .as_ref()
                    .map(|s| s.user.to_string())
                    .unwrap_or_default();
                return Ok(Step::Unlisted {
                    detail: format!(
                        "an invitation from {by} to a conversation includes device {d} of {u}, which is not in {u}'s verified device list; the invitation was refused"
                    ),
                    user: u,
                    device: d,
                    group: None,
                });
            }
        }
        if existing.is_some() {
            // Re-added: the old group's state goes first. openmls's `replace_old_group` leaves
            // its stored proposal queue behind (our own leave proposal, say), which would block
            // sending in the new group for good.
            if let Some(mut old) = MlsGroup::load(self.p.storage(), &mls_gid(&group_id))? {
                old.delete(self.p.storage())?;
            }
        }
        let group = match staged.into_group(&self.p) {
            Ok(g) => g,
            Err(mls::WelcomeError::StorageError(e)) => return Err(EngineError::Db(e)),
            Err(_) => return Ok(Step::Reject(DropReason::Rejected)),
        };
        // Kind, name and consent (engine::book): a direct chat only from the other user's own
        // Welcome, an invitation if we had left or been removed.
        let users: BTreeSet<UserName> = member_list(&group).into_iter().map(|(u, _)| u).collect();
        let adder = entry.sender.as_ref().map(|s| &s.user);
        let conv = book::joined(
            self.db,
            &self.me.user,
            group_id,
            existing,
            &users,
            adder,
            now_ms(),
        )?;
        Ok(Step::Done(Box::new(
            if conv.state == ConversationState::Invited {
                Processed::Invited(conv)
            } else {
                Processed::Joined(conv)
            },
        )))
    }

    fn protocol(&self, entry: &QueueEntry) -> Result<Step, EngineError> {
        let Ok(msg) = MlsMessageIn::tls_deserialize_exact(&entry.payload) else {
            return dropped(DropReason::Malformed);
        };
        let Ok(pm) = msg.try_into_protocol_message() else {
            return dropped(DropReason::Malformed);
        };
        let expected = match entry.kind {
            EntryKind::Application => mls::ContentType::Application,
            EntryKind::Commit => mls::ContentType::Commit,
            _ => mls::ContentType::Proposal,
        };
        if pm.content_type() != expected {
            return dropped(DropReason::Malformed);
        }
        let Some(group_id) = haven_gid(pm.group_id()) else {
            return dropped(DropReason::Malformed);
        };
        if entry.group_id.as_ref().is_some_and(|g| *g != group_id) {
            return dropped(DropReason::Malformed);
        }
        if store::conversation_get(self.db, &group_id)?.is_none() {
            return dropped(DropReason::UnknownGroup);
        }
        let Some(mut group) = self.take_group(&group_id)? else {
            return dropped(DropReason::UnknownGroup);
        };
        let step = self.protocol_in(entry, &group_id, &mut group, pm)?;
        // Keep the in-memory group only while it matches storage: a rejection rolls back.
        if matches!(step, Step::Done(_)) {
            self.keep_group(group_id, group);
        }
        Ok(step)
    }

    fn protocol_in(
        &self,
        entry: &QueueEntry,
        group_id: &GroupId,
        group: &mut MlsGroup,
        pm: mls::ProtocolMessage,
    ) -> Result<Step, EngineError> {
        let processed = match group.process_message(&self.p, pm) {
            Ok(p) => p,
            Err(mls::ProcessMessageError::StorageError(e)) => return Err(EngineError::Db(e)),
            Err(_) => return Ok(Step::Reject(DropReason::Rejected)),
        };
        let sender_cred = processed.credential().clone();
        let sender = processed.sender().clone();
        let aad = processed.aad().to_vec();
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => {
                self.application(entry, group_id, &sender_cred, &aad, &app.into_bytes())
            }
            ProcessedMessageContent::ProposalMessage(qp) => {
                let self_remove = match (qp.proposal(), &sender) {
                    (mls::Proposal::Remove(r), mls::Sender::Member(idx)) => r.removed() == *idx,
                    _ => false,
                };
                if !self_remove {
                    return Ok(Step::Reject(DropReason::UnsupportedProposal));
                }
                group.store_pending_proposal(self.p.storage(), *qp)?;
                Ok(Step::Done(Box::new(Processed::Proposal {
                    group_id: group_id.clone(),
                    commit_needed: true,
                })))
            }
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                self.commit(group, group_id, &sender_cred, *staged)
            }
            ProcessedMessageContent::OwnPrivateMessage => Ok(Step::Reject(DropReason::OwnMessage)),
            _ => Ok(Step::Reject(DropReason::UnsupportedProposal)),
        }
    }

    fn application(
        &self,
        entry: &QueueEntry,
        group_id: &GroupId,
        cred: &Credential,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Step, EngineError> {
        let plaintext = zeroize::Zeroizing::new(plaintext.to_vec());
        let Some((from, from_device)) = parse_identity(cred) else {
            return dropped(DropReason::InvalidMember);
        };
        match &entry.sender {
            Some(s) if s.user == from && s.device_id == from_device => {}
            _ => return dropped(DropReason::SenderMismatch),
        }
        // Franking (haven-frank module docs): the AAD commitment, authenticated by MLS, must equal
        // the one the server bound in its envelope, and must open over the content with the salt.
        let Some(frank) = &entry.frank else {
            return dropped(DropReason::Franking);
        };
        let (Ok(c_aad), Ok(c_env)) = (
            haven_frank::decode_aad(aad),
            Commitment::from_slice(&frank.commitment),
        ) else {
            return dropped(DropReason::Franking);
        };
        // A tag the client cannot check (only the server holds its keys) but must be able to
        // hand back in a report: a v1 or v2 tag (`haven_frank::keyring`).
        if !c_aad.ct_eq(&c_env) || haven_frank::EncodedTag::decode(&frank.server_tag).is_err() {
            return dropped(DropReason::Franking);
        }
        let Ok((salt, content_bytes)) = open_envelope(&plaintext) else {
            return dropped(DropReason::Malformed);
        };
        if haven_frank::open(&c_aad, &salt, content_bytes).is_err() {
            return dropped(DropReason::Franking);
        }
        let Ok(content) = Content::decode(content_bytes) else {
            return dropped(DropReason::Malformed);
        };
        if let Some(kt) = &content.kt {
            // Split-view detection (`kt_roots`): an equivocating directory raises an alarm
            // here; a root from an epoch not verified yet waits for the next sync's check.
            crate::kt_roots::hear(
                self.db,
                kt_pins_in(self.db)?.as_ref(),
                kt.as_bytes(),
                &from,
                group_id,
                now_ms(),
            )?;
        }
        if let Body::GroupName(name) = &content.body {
            let Some(r) = book::received_rename(self.db, &self.me.user, &from, group_id, name)?
            else {
                return dropped(DropReason::UnknownGroup);
            };
            return Ok(Step::Done(Box::new(Processed::Renamed {
                group_id: group_id.clone(),
                by: from,
                requested: name.clone(),
                previous: r.previous,
                stored: r.stored,
            })));
        }
        let inserted = store::message_insert(
            self.db,
            &NewMessage {
                group: group_id,
                content: &content,
                content_bytes,
                from: &from,
                from_device: &from_device,
                received_at: frank.received_at,
                commitment: c_aad.as_bytes(),
                salt: salt.as_bytes(),
                server_tag: Some(&frank.server_tag),
                queue_id: Some(entry.id),
                outgoing: false,
            },
        )?;
        if !inserted {
            return Ok(Step::Done(Box::new(Processed::Duplicate)));
        }
        Ok(Step::Done(Box::new(Processed::Message(StoredMessage {
            id: content.id,
            group: group_id.clone(),
            from,
            from_device,
            body: content.body,
            sent_at: content.sent_at,
            received_at: frank.received_at,
        }))))
    }

    fn commit(
        &self,
        group: &mut MlsGroup,
        group_id: &GroupId,
        sender_cred: &Credential,
        staged: mls::StagedCommit,
    ) -> Result<Step, EngineError> {
        // Every credential the commit introduces must be a Haven identity, and a committer may
        // not change its own identity through its update path. Refusing such a commit leaves us
        // behind in this group: fail closed rather than talk alongside an unidentified member.
        if staged
            .credentials_to_verify()
            .any(|c| parse_identity(c).is_none())
        {
            return Ok(Step::Reject(DropReason::InvalidMember));
        }
        if let Some(leaf) = staged.update_path_leaf_node() {
            if leaf.credential() != sender_cred {
                return Ok(Step::Reject(DropReason::InvalidMember));
            }
            let Some((u, d)) = parse_identity(leaf.credential()) else {
                return Ok(Step::Reject(DropReason::InvalidMember));
            };
            let key = leaf.signature_key().as_slice();
            if pins::check_or_pin(self.db, &u, &d, key)? == KeyCheck::Mismatch {
                return Ok(Step::Reject(DropReason::InvalidMember));
            }
        }
        let mut added = Vec::new();
        for a in staged.add_proposals() {
            let leaf = a.add_proposal().key_package().leaf_node();
            let Some((u, d)) = parse_identity(leaf.credential()) else {
                return Ok(Step::Reject(DropReason::InvalidMember));
            };
            let key = leaf.signature_key().as_slice();
            if pins::check_or_pin(self.db, &u, &d, key)? == KeyCheck::Mismatch {
                return Ok(Step::Reject(DropReason::InvalidMember));
            }
            if !self.listed(&u, &d, key)? {
                let by = parse_identity(sender_cred)
                    .map(|(u, _)| u.to_string())
                    .unwrap_or_default();
                return Ok(Step::Unlisted {
                    detail: format!(
                        "a commit by {by} adds device {d} of {u}, which is not in {u}'s verified device list; the commit was refused, and nothing is sent in this conversation until you have checked it"
                    ),
                    user: u,
                    device: d,
                    group: Some(group_id.clone()),
                });
            }
            added.push((u, d));
        }
        let removed: Vec<(UserName, DeviceId)> = staged
            .remove_proposals()
            .filter_map(|r| group.member_at(r.remove_proposal().removed()))
            .filter_map(|m| parse_identity(&m.credential))
            .collect();
        let self_removed = staged.self_removed();
        match group.merge_staged_commit(&self.p, staged) {
            Ok(()) => {}
            Err(mls::MergeCommitError::StorageError(e)) => return Err(EngineError::Db(e)),
            Err(_) => return Ok(Step::Reject(DropReason::Rejected)),
        }
        // Merging another member's commit discards any commit of ours staged for that epoch;
        // its record goes with it, so the two never disagree.
        store::pending_commit_delete(self.db, group_id)?;
        if self_removed {
            book::self_removed(self.db, group_id)?;
        }
        Ok(Step::Done(Box::new(Processed::Commit(CommitOutcome {
            epoch: group.epoch().as_u64(),
            group_id: group_id.clone(),
            added,
            removed,
            self_removed,
        }))))
    }
}

#[cfg(test)]
mod tests;

/// A link code this device minted and no device has used yet.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MintedLinkCode {
    /// Hex SHA-256 of the server's code (what `DeviceLinked` names).
    pub code_sha256: String,
    /// The server's part of the code.
    pub server_code: String,
    /// The link secret this device drew (characters of `haven_kt::device_list::CODE_ALPHABET`);
    /// the server never sees it.
    pub secret: String,
    /// When the server's code expires.
    pub expires_at: u64,
}

/// The pinned key-directory keys in `db`, if pinned (see `keys::KT_PINS`).
fn kt_pins_in(db: &Connection) -> Result<Option<haven_kt::directory::KtKeys>, EngineError> {
    let Some(b) = store::meta_get(db, keys::KT_PINS)? else {
        return Ok(None);
    };
    let (r, v) = b
        .split_at_checked(32)
        .ok_or(EngineError::Corrupt("key-directory pins"))?;
    Ok(Some(haven_kt::directory::KtKeys {
        root_key: r
            .try_into()
            .map_err(|_| EngineError::Corrupt("key-directory pins"))?,
        vrf_key: v
            .try_into()
            .map_err(|_| EngineError::Corrupt("key-directory pins"))?,
    }))
}

/// The minted link codes recorded in the profile (see `keys::MINTED_LINK_CODES`).
fn minted_codes(db: &Connection) -> Result<Vec<MintedLinkCode>, EngineError> {
    match store::meta_get(db, keys::MINTED_LINK_CODES)? {
        None => Ok(Vec::new()),
        Some(b) => {
            serde_json::from_slice(&b).map_err(|_| EngineError::Corrupt("minted link codes"))
        }
    }
}

fn put_minted_codes(db: &Connection, codes: &[MintedLinkCode]) -> Result<(), EngineError> {
    let bytes = serde_json::to_vec(codes).map_err(|_| EngineError::Corrupt("minted link codes"))?;
    store::meta_put(db, keys::MINTED_LINK_CODES, &bytes)
}
