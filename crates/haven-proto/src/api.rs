//! The HTTP/JSON API between clients and the server (version 1, paths under `/v1`).
//!
//! Binary fields are standard base64 in JSON. Every error is an [`ApiError`] with a stable
//! machine-readable [`ErrorCode`] and a human message.
//!
//! | method | path | auth | body → reply |
//! |---|---|---|---|
//! | GET | `/v1/health` | – | → [`Health`] |
//! | POST | `/v1/register` | – | [`RegisterRequest`] → [`DeviceRegistered`] |
//! | POST | `/v1/login/challenge` | – | [`ChallengeRequest`] → [`ChallengeResponse`] |
//! | POST | `/v1/login` | – | [`LoginRequest`] → [`LoginResponse`] |
//! | POST | `/v1/devices/link-code` | device + proof | [`LinkCodeRequest`] → [`LinkCodeResponse`] |
//! | POST | `/v1/devices/{id}/remove` | device + proof | [`RemoveDeviceRequest`] → [`Accepted`] |
//! | POST | `/v1/logout` | device | [`LogoutRequest`] → [`Accepted`] (sessions revoked) |
//! | POST | `/v1/link` | – | [`LinkRequest`] → [`DeviceRegistered`] |
//! | GET | `/v1/users/{name}` | device | → [`UserDevices`] |
//! | PUT | `/v1/devices/list` | device | [`PutDeviceList`] → [`DeviceListStored`] |
//! | GET | `/v1/kt/epoch` | – | → [`KtEpoch`] (the key directory's newest signed root and keys) |
//! | GET | `/v1/kt/lookup/{name}` | – | → [`KtProof`] (lookup proof at the newest root) |
//! | GET | `/v1/kt/history/{name}` | – | → [`KtProof`] (complete history proof at the newest root) |
//! | GET | `/v1/kt/audit?from=A&to=B` | – | → [`KtAudit`] (append-only proof, signed roots A..=B) |
//! | POST | `/v1/kt/publish` | device | → [`KtEpoch`] (publish queued lists now; a client waits on it) |
//! | GET | `/v1/users/{name}/device-lists?after=N` | device | → [`DeviceLists`] |
//! | POST | `/v1/key-packages` | device | [`UploadKeyPackages`] → [`KeyPackageCount`] |
//! | GET | `/v1/key-packages` | device | → [`KeyPackageCount`] |
//! | POST | `/v1/users/{name}/key-packages/claim` | device | [`ClaimRequest`] → [`ClaimedKeyPackages`] |
//! | POST | `/v1/groups` | device | [`CreateGroup`] → [`GroupState`] |
//! | GET | `/v1/groups/{id}` | member | → [`GroupState`] |
//! | POST | `/v1/groups/{id}/commits` | member | [`CommitRequest`] → [`GroupState`] (409 `epoch_conflict`) |
//! | POST | `/v1/groups/{id}/proposals` | member | [`ProposalRequest`] → [`Accepted`] |
//! | POST | `/v1/groups/{id}/messages` | member | [`SendRequest`] → [`SendResponse`] |
//! | GET | `/v1/queue?limit=N` | device | → [`QueueBatch`] |
//! | POST | `/v1/queue/ack` | device | [`AckRequest`] → [`Accepted`] |
//! | GET | `/v1/ws` | device | WebSocket: server sends [`QueueEntry`] frames, client sends [`WsClientFrame`] |
//! | PUT | `/v1/blobs` | device | raw bytes, header [`VOUCHER_HEADER`] → [`BlobStored`] |
//! | GET | `/v1/psi/release` | – | → [`PsiRelease`] (the newest signed voucher database release) |
//! | GET | `/v1/psi/releases` | – | → [`PsiReleases`] (every release's number, root and size) |
//! | GET | `/v1/psi/db/{release}` | – | → raw bytes (`haven_psi::PublicDb` encoding) |
//! | GET | `/v1/blobs/{id}` | device | → raw bytes |
//!
//! "device" means a `Authorization: Bearer <token>` header from [`LoginResponse`] (the WebSocket
//! also accepts it as the `Sec-WebSocket-Protocol` value `haven.bearer.<token>`). "proof" means
//! the request also carries a fresh [`DeviceProof`]: a signature by the device's authentication
//! key over [`device_proof_message`], so that a stolen session token alone cannot add or remove
//! devices (security review 2026-12, finding 11).

use serde::{Deserialize, Serialize};

use crate::ids::{BlobId, DeviceId, GroupId, UserName};

/// Serde helpers for base64 fields.
pub mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises bytes as base64.
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    /// Deserialises base64 into bytes.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s)
            .map_err(|_| serde::de::Error::custom("invalid base64"))
    }

    /// Base64 for `Option<Vec<u8>>`.
    pub mod option {
        use super::*;

        /// Serialises optional bytes.
        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&STANDARD.encode(b)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises optional bytes.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            s.map(|s| {
                STANDARD
                    .decode(s)
                    .map_err(|_| serde::de::Error::custom("invalid base64"))
            })
            .transpose()
        }
    }

    /// Base64 for `Vec<Vec<u8>>`.
    pub mod list {
        use super::*;
        use serde::ser::SerializeSeq;

        /// Serialises a list of byte strings.
        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for b in v {
                seq.serialize_element(&STANDARD.encode(b))?;
            }
            seq.end()
        }

        /// Deserialises a list of byte strings.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.into_iter()
                .map(|s| {
                    STANDARD
                        .decode(s)
                        .map_err(|_| serde::de::Error::custom("invalid base64"))
                })
                .collect()
        }
    }
}

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Health check reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// Always `"ok"`.
    pub status: String,
    /// Server version.
    pub version: String,
}

/// Register a new account with its first device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The new user name.
    pub user: UserName,
    /// A label for the device ("laptop").
    pub device_name: String,
    /// The device's Ed25519 authentication public key (32 bytes).
    #[serde(with = "b64")]
    pub auth_key: Vec<u8>,
    /// The device's MLS signature public key (Ed25519, 32 bytes): every MLS leaf naming this
    /// device must carry exactly this key.
    #[serde(with = "b64")]
    pub mls_key: Vec<u8>,
    /// The authentication key's Ed25519 signature over [`mls_key_message`] of `mls_key`.
    #[serde(with = "b64")]
    pub mls_key_signature: Vec<u8>,
    /// The user's date of birth, `YYYY-MM-DD`. The server derives the age band and the day it
    /// next changes from it and keeps only those (`haven-safety`'s `age`), never the date.
    pub birth_date: String,
}

/// The bytes a device's authentication key signs to bind its MLS signature key to the device: a
/// domain-separation label, then the length-prefixed key. The server checks it at registration
/// and link, keeps the key, and refuses any MLS leaf that names the device with another key.
pub fn mls_key_message(mls_key: &[u8]) -> Vec<u8> {
    let mut m = b"haven/mls-key/v1\0".to_vec();
    m.extend_from_slice(&(mls_key.len() as u32).to_be_bytes());
    m.extend_from_slice(mls_key);
    m
}

/// A device was created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRegistered {
    /// The account.
    pub user: UserName,
    /// The new device.
    pub device_id: DeviceId,
}

/// Ask for a login challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The device that will sign.
    pub device_id: DeviceId,
}

/// A one-time login challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// 32 random bytes to sign (see [`login_message`]).
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// When the challenge expires.
    pub expires_at: Millis,
}

/// Answer a login challenge.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The device.
    pub device_id: DeviceId,
    /// The nonce from [`ChallengeResponse`].
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Ed25519 signature over [`login_message`].
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// A session token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginResponse {
    /// Bearer token for `Authorization`.
    pub token: String,
    /// When it expires.
    pub expires_at: Millis,
}

/// The bytes a device signs to log in: a domain-separation label, then the length-prefixed
/// device id and nonce.
pub fn login_message(device_id: &DeviceId, nonce: &[u8]) -> Vec<u8> {
    let mut m = b"haven/login/v1\0".to_vec();
    for field in [device_id.as_str().as_bytes(), nonce] {
        m.extend_from_slice(&(field.len() as u32).to_be_bytes());
        m.extend_from_slice(field);
    }
    m
}

/// Purpose of a [`DeviceProof`] for minting a link code (subject: empty).
pub const PROOF_LINK_CODE: &str = "link-code";
/// Purpose of a [`DeviceProof`] for removing a device (subject: the removed device's id).
pub const PROOF_REMOVE_DEVICE: &str = "remove-device";

/// A fresh proof that the acting device's authentication key approves one action.
///
/// The device asks for a nonce with `POST /v1/login/challenge` (the same single-use,
/// two-minute challenges as login) and signs [`device_proof_message`] with its authentication
/// key. The server consumes the nonce before it checks the signature, so a proof works once,
/// for one purpose and subject, by one device, within the challenge's lifetime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceProof {
    /// The nonce from [`ChallengeResponse`] (issued for the acting device).
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    /// Ed25519 signature over [`device_proof_message`].
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

/// The bytes a device signs in a [`DeviceProof`]:
///
/// ```text
/// "haven/device-proof/v1" 0x00 ‖ lp(purpose) ‖ lp(device id) ‖ lp(nonce) ‖ lp(subject)
/// ```
///
/// `lp(x)` is a 4-byte big-endian length, then `x`. The label differs from the login label
/// (`haven/login/v1`), so a login signature is never a proof nor the other way round; the
/// purpose ([`PROOF_LINK_CODE`], [`PROOF_REMOVE_DEVICE`]) and subject keep a proof for one
/// action from serving another. Test vector: `device_proof_vector` in this module's tests.
pub fn device_proof_message(
    purpose: &str,
    device_id: &DeviceId,
    nonce: &[u8],
    subject: &[u8],
) -> Vec<u8> {
    let mut m = b"haven/device-proof/v1\0".to_vec();
    for field in [
        purpose.as_bytes(),
        device_id.as_str().as_bytes(),
        nonce,
        subject,
    ] {
        m.extend_from_slice(&(field.len() as u32).to_be_bytes());
        m.extend_from_slice(field);
    }
    m
}

/// Mint a link code: needs a [`DeviceProof`] for [`PROOF_LINK_CODE`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkCodeRequest {
    /// The acting device's proof.
    pub proof: DeviceProof,
}

/// Remove a device of the caller's account: needs a [`DeviceProof`] for
/// [`PROOF_REMOVE_DEVICE`] with the removed device's id as subject.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveDeviceRequest {
    /// The acting device's proof.
    pub proof: DeviceProof,
}

/// Revoke sessions: this one, or every session of every device of the account.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Every session of the account, not just the caller's.
    #[serde(default)]
    pub all: bool,
}

/// A one-time code for linking a new device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkCodeResponse {
    /// The code to type on the new device.
    pub code: String,
    /// When it expires.
    pub expires_at: Millis,
}

/// Complete a device link on the new device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The one-time code.
    pub code: String,
    /// A label for the new device.
    pub device_name: String,
    /// The new device's Ed25519 authentication key.
    #[serde(with = "b64")]
    pub auth_key: Vec<u8>,
    /// The new device's MLS signature key (see [`RegisterRequest::mls_key`]).
    #[serde(with = "b64")]
    pub mls_key: Vec<u8>,
    /// The authentication key's signature over [`mls_key_message`] of `mls_key`.
    #[serde(with = "b64")]
    pub mls_key_signature: Vec<u8>,
    /// The proof that this device holds the link secret the existing device showed with the
    /// code (`haven_kt::device_list::link_proof`; 32 bytes). The server passes it on in the
    /// [`DeviceLinked`] entry; it cannot make one.
    #[serde(with = "b64")]
    pub link_proof: Vec<u8>,
}

/// A device as others see it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device.
    pub device_id: DeviceId,
    /// Its label.
    pub name: String,
    /// Its Ed25519 authentication key.
    #[serde(with = "b64")]
    pub auth_key: Vec<u8>,
    /// Its registered MLS signature key (absent for devices registered before keys were bound:
    /// such a device cannot be added to a conversation).
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub mls_key: Option<Vec<u8>>,
    /// When it was added.
    pub created_at: Millis,
}

/// A user's devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDevices {
    /// The user.
    pub user: UserName,
    /// Their devices.
    pub devices: Vec<DeviceInfo>,
}

/// Upload key packages (TLS-serialised `MLSMessage`s of wire format `mls_key_package`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadKeyPackages {
    /// One-time key packages.
    #[serde(with = "b64::list")]
    pub key_packages: Vec<Vec<u8>>,
    /// A last-resort key package, handed out when the one-time ones run out; replaces any
    /// earlier one.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub last_resort: Option<Vec<u8>>,
}

/// How many key packages a device has on the server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyPackageCount {
    /// One-time packages left.
    pub available: u32,
    /// Whether a last-resort package is stored.
    pub has_last_resort: bool,
}

/// Claim key packages of a user's devices in order to add them to one group. The claim is
/// recorded: a commit may add a device only with a key package its committer claimed for that
/// group.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The group the devices are to be added to (the caller must be a member).
    pub group_id: GroupId,
}

/// A claimed key package.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    /// Whose.
    pub device_id: DeviceId,
    /// The key package.
    #[serde(with = "b64")]
    pub key_package: Vec<u8>,
}

/// One key package for each of a user's devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimedKeyPackages {
    /// The user.
    pub user: UserName,
    /// One per device that has a key package.
    pub key_packages: Vec<ClaimedKeyPackage>,
}

/// Announce a new group; the caller becomes its only member at epoch 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// The MLS group id (random, chosen by the client).
    pub group_id: GroupId,
    /// The group's signed `GroupInfo` at epoch 0 (`MLSMessage`) with the `ratchet_tree`
    /// extension: the server builds its public view of the group from it and verifies every
    /// later commit against that view.
    #[serde(with = "b64")]
    pub group_info: Vec<u8>,
    /// For a 1:1 conversation: the other account. The server then lets only the two accounts'
    /// devices into the group and applies the first-message rules (message requests) to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_with: Option<UserName>,
}

/// What the server knows of a group.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupState {
    /// The group.
    pub group_id: GroupId,
    /// The current epoch.
    pub epoch: u64,
    /// Member devices, for routing.
    pub members: Vec<DeviceId>,
}

/// Submit a commit for the group's current epoch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitRequest {
    /// The commit (`MLSMessage`: a `PublicMessage` of content type commit, which the server
    /// verifies against its public view of the group; who is added and removed is read from it).
    #[serde(with = "b64")]
    pub commit: Vec<u8>,
    /// The Welcome for the devices the commit adds, released to exactly those devices once the
    /// commit is accepted.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub welcome: Option<Vec<u8>>,
}

/// Send a proposal. The one proposal Haven uses is a member's Remove of itself (leaving): the
/// server verifies it and stops routing to the leaver at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProposalRequest {
    /// The proposal (`MLSMessage`: a `PublicMessage` of content type proposal).
    #[serde(with = "b64")]
    pub proposal: Vec<u8>,
}

/// Send an application message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The `PrivateMessage`, whose `authenticated_data` carries the franking commitment.
    #[serde(with = "b64")]
    pub message: Vec<u8>,
}

/// An application message was accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SendResponse {
    /// The server's receive time, bound into its franking tag.
    pub received_at: Millis,
    /// How many device queues it went to.
    pub deliveries: u32,
    /// The server's franking tag for the message, as its recipients get it, so the sender's
    /// own messages can be context in a report it files later. Absent from older servers.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub server_tag: Option<Vec<u8>>,
}

/// A generic acknowledgement.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Accepted {
    /// How many items the request affected.
    pub count: u32,
}

/// What a queue entry carries.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// An MLS application message (with a franking envelope).
    Application,
    /// An MLS commit.
    Commit,
    /// An MLS proposal.
    Proposal,
    /// An MLS Welcome.
    Welcome,
    /// Another device of this user was linked; payload is a JSON [`DeviceLinked`].
    DeviceLinked,
    /// A device of this user was removed; payload is a JSON [`DeviceRemoved`].
    DeviceRemoved,
    /// A notice from the operator (an action, a report's outcome, an appeal's decision);
    /// payload is a JSON [`crate::moderation::Notice`].
    Notice,
}

impl EntryKind {
    /// The stable name used in storage and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Application => "application",
            EntryKind::Commit => "commit",
            EntryKind::Proposal => "proposal",
            EntryKind::Welcome => "welcome",
            EntryKind::DeviceLinked => "device_linked",
            EntryKind::DeviceRemoved => "device_removed",
            EntryKind::Notice => "notice",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<EntryKind> {
        Some(match s {
            "application" => EntryKind::Application,
            "commit" => EntryKind::Commit,
            "proposal" => EntryKind::Proposal,
            "welcome" => EntryKind::Welcome,
            "device_linked" => EntryKind::DeviceLinked,
            "device_removed" => EntryKind::DeviceRemoved,
            "notice" => EntryKind::Notice,
            _ => return None,
        })
    }
}

/// Payload of an [`EntryKind::DeviceLinked`] entry, queued to the user's other devices (so the
/// user is the recipient's own).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceLinked {
    /// The new device.
    pub device_id: DeviceId,
    /// SHA-256 of the link code it used (as [`LinkCodeResponse::code`] spells it), so the
    /// device that minted the code recognises its own link: only that device adds the new one
    /// to its conversations. `None` in entries from older servers.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub link_code_sha256: Option<Vec<u8>>,
    /// The new device's authentication key, as registered.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub auth_key: Option<Vec<u8>>,
    /// The new device's MLS signature key, as registered.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub mls_key: Option<Vec<u8>>,
    /// The new device's [`LinkRequest::link_proof`], passed on unchanged: the device that made
    /// the link secret checks it before it signs the new device into the account's list.
    #[serde(default, with = "b64::option", skip_serializing_if = "Option::is_none")]
    pub link_proof: Option<Vec<u8>>,
}

/// Upload the account's next signed device list (`PUT /v1/devices/list`), signed by the
/// uploading device: the first list after registration, the next one after a link or before a
/// removal (`haven_kt::device_list`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutDeviceList {
    /// `haven_kt::SignedDeviceList::encode`.
    #[serde(with = "b64")]
    pub list: Vec<u8>,
}

/// The stored version of an uploaded list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceListStored {
    /// Its version.
    pub version: u64,
}

/// An account's signed device lists (`GET /v1/users/{name}/device-lists?after=N`), oldest
/// first: every version above `after` (at most [`DeviceLists::MAX`] per answer). Clients verify
/// the chain themselves; the key directory (`/v1/kt/...`) is what they check it against.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceLists {
    /// The encoded signed lists.
    #[serde(with = "b64::list")]
    pub lists: Vec<Vec<u8>>,
}

impl DeviceLists {
    /// Most lists in one answer.
    pub const MAX: u32 = 100;
}

/// The key directory's newest epoch (`GET /v1/kt/epoch`, `POST /v1/kt/publish`) and the keys a
/// client pins on registration (`haven_kt::directory`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KtEpoch {
    /// `haven_kt::directory::SignedRoot::encode` of the newest epoch.
    #[serde(with = "b64")]
    pub signed_root: Vec<u8>,
    /// The Ed25519 key that signs roots.
    #[serde(with = "b64")]
    pub root_key: Vec<u8>,
    /// akd's VRF public key.
    #[serde(with = "b64")]
    pub vrf_key: Vec<u8>,
}

/// A lookup or history proof with the signed root it was made at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KtProof {
    /// `SignedRoot::encode` of the epoch the proof is for.
    #[serde(with = "b64")]
    pub signed_root: Vec<u8>,
    /// akd's protobuf encoding of the proof.
    #[serde(with = "b64")]
    pub proof: Vec<u8>,
}

/// An append-only proof from epoch `from` to `to` (`GET /v1/kt/audit`), with every signed root
/// in between (`to - from + 1` of them, at most [`KtAudit::MAX_EPOCHS`] + 1).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KtAudit {
    /// `SignedRoot::encode` of epochs `from..=to`, oldest first.
    #[serde(with = "b64::list")]
    pub roots: Vec<Vec<u8>>,
    /// akd's protobuf encoding of the append-only proof.
    #[serde(with = "b64")]
    pub proof: Vec<u8>,
}

impl KtAudit {
    /// Most epochs one audit answer spans (auditors page through longer ranges).
    pub const MAX_EPOCHS: u64 = 64;
}

/// Payload of an [`EntryKind::DeviceRemoved`] entry, queued to the user's other devices: each
/// commits MLS Removes of that device in the groups it still has it in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceRemoved {
    /// The removed device.
    pub device_id: DeviceId,
}

/// Who sent a queue entry, as the server authenticated it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Sender {
    /// The user.
    pub user: UserName,
    /// The device.
    pub device_id: DeviceId,
}

/// The server's franking envelope (DESIGN.md, "Message path"): the commitment it read from the
/// MLS `authenticated_data` and its own tag binding it to sender, group and time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FrankEnvelope {
    /// The sender's commitment (32 bytes).
    #[serde(with = "b64")]
    pub commitment: Vec<u8>,
    /// `HMAC(k_srv, …)` over commitment, sender device, group and time (32 bytes).
    #[serde(with = "b64")]
    pub server_tag: Vec<u8>,
    /// The receive time bound into the tag.
    pub received_at: Millis,
}

/// One item in a device's queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct QueueEntry {
    /// Queue id, unique per server, increasing; acknowledge with it.
    pub id: i64,
    /// What it is.
    pub kind: EntryKind,
    /// The group, for MLS entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<GroupId>,
    /// The authenticated sender, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    /// The bytes.
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
    /// The franking envelope, for application messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frank: Option<FrankEnvelope>,
    /// When the server received it.
    pub received_at: Millis,
}

/// A page of queue entries.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueBatch {
    /// Entries in id order.
    pub entries: Vec<QueueEntry>,
}

/// Acknowledge entries, removing them from the queue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Queue ids.
    pub ids: Vec<i64>,
}

/// A frame a client sends on the WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum WsClientFrame {
    /// Acknowledge entries.
    Ack {
        /// Queue ids.
        ids: Vec<i64>,
    },
}

/// A stored blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BlobStored {
    /// The content address (SHA-256 of the bytes).
    pub blob_id: BlobId,
    /// Size in bytes.
    pub size: u64,
}

/// The header that carries an upload's safety voucher (`haven_psi::Voucher::encode`, standard
/// base64). Required on every `PUT /v1/blobs` once the server has a voucher database release.
pub const VOUCHER_HEADER: &str = "haven-voucher";

/// The newest release of the voucher database (`GET /v1/psi/release`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PsiRelease {
    /// Its number.
    pub release: u64,
    /// `haven_psi::SignedRelease::encode`: header, root, signature.
    #[serde(with = "b64")]
    pub signed: Vec<u8>,
    /// The Ed25519 key releases are signed with (clients pin the first one they see).
    #[serde(with = "b64")]
    pub signing_key: Vec<u8>,
    /// The database's size in bytes (`GET /v1/psi/db/{release}`).
    pub db_bytes: u64,
}

/// One release, as the public history lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PsiReleaseInfo {
    /// Its number.
    pub release: u64,
    /// SHA-256 root of the database, hex.
    pub root: String,
    /// Bank entries it holds.
    pub entries: u64,
    /// Distinct match keys in it.
    pub match_keys: u64,
    /// The database's size in bytes.
    pub db_bytes: u64,
    /// When it was made, ms.
    pub created_at: u64,
}

/// Every release, newest first (`GET /v1/psi/releases`), at most [`PsiReleases::MAX`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PsiReleases {
    /// The releases.
    pub releases: Vec<PsiReleaseInfo>,
}

impl PsiReleases {
    /// Most releases in one answer.
    pub const MAX: u32 = 1000;
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed (bad JSON, bad base64, bad MLS bytes, bad ids).
    BadRequest,
    /// Missing, expired or forged authentication.
    Unauthorized,
    /// Authenticated, but not allowed (not a member, say).
    Forbidden,
    /// No such user, device, group, blob or code.
    NotFound,
    /// The name or id is taken.
    AlreadyExists,
    /// A commit for an epoch that is not the current one.
    EpochConflict,
    /// A limit was reached (size, members, key packages, queue depth).
    LimitExceeded,
    /// Too many requests; try later.
    RateLimited,
    /// The sender's share of a recipient device's queue is used up (that recipient is named in
    /// [`ApiError::recipient`]); other senders still reach it. Try again once it has synced.
    QueueShareExhausted,
    /// The body is too large.
    PayloadTooLarge,
    /// The request conflicts with the state of what it names (a case already closed, an
    /// action already appealed).
    Conflict,
    /// The account is suspended or banned (the message says until when and why, and how to
    /// appeal).
    AccountSuspended,
    /// The server failed; nothing was changed.
    Internal,
}

/// The JSON body of every error reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of error.
    pub code: ErrorCode,
    /// What happened, for people.
    pub message: String,
    /// For `epoch_conflict`: the group's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// For `queue_share_exhausted`: the recipient device whose queue refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<DeviceId>,
    /// For a `rate_limited` refusal of a new contact: when to try again, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_at: Option<Millis>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}
