//! [`Client`]: the engine and the network together — what the `haven` command and applications
//! use.
//!
//! Delivery discipline: an entry is acknowledged to the server only after
//! [`Engine::process_entry`] has committed its effects to the profile database, so a crash
//! between receiving and acknowledging loses nothing, and the engine's processed-id table makes
//! the redelivery invisible (exactly once as the user sees it).
//!
//! Commits follow the server's one-commit-per-epoch rule: stage, submit; on `epoch_conflict`
//! clear the staged commit, process the queue (which holds the winning commit) and try again.
//! When the answer is lost — the server unreachable mid-request, a 5xx, or a crash between the
//! server accepting and our merge — the staged commit is kept (the engine records it with its
//! bytes) and resubmitted as the same bytes before anything else touches the group
//! ([`Client::sync`] and every commit start with it): the server answers a resubmission of the
//! commit it accepted with success, so we merge it; a conflict means another commit won, so we
//! clear ours and process the winner. Clearing an accepted commit would strand the device in
//! the old epoch for good; this is what prevents it.
//!
//! Devices. Every device of an account is in its signed device list, and this client
//! encrypts only to listed devices (`device_lists`; the rules are `haven_kt::device_list`). A
//! newly linked device is signed into the list, and added to our conversations, only by the
//! device that minted its link code, after checking the new device's proof of the code's
//! secret (which the server never sees). A removed device is taken out of the list first, then
//! (on `DeviceRemoved`) out of every active conversation of ours that still has it. Trust
//! assumption: the server cannot add a device, but it can withhold the newest lists; the key
//! directory is what shows that (DESIGN.md, capability 5).

use std::path::Path;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use haven_proto::api::{self, ClaimedKeyPackages, ErrorCode};
use haven_proto::{DeviceId, GroupId, UserName};

use crate::address::{self, Candidate, Found, IdPrefix};
use crate::attachment::{self, AttachmentError};
use crate::content::{AttachmentRef, Body, MessageId};
use crate::engine::{
    new_signer, AuthSecret, Engine, Identity, OutgoingCommit, Processed, SessionToken,
};
use crate::error::EngineError;
use crate::net::{Api, NetError, PushStream};
use crate::store::{Conversation, ConversationKind, ConversationState, StoredMessage};

mod device_lists;
mod kt;
mod moderation;
mod safety;

pub use device_lists::LinkCode;

pub use safety::{RequestAnswer, SafetyView};

/// How many one-time key packages a device keeps on the server; every sync tops them up to
/// this (the server hands out at most its per-target claim burst quickly, fewer than this, so
/// a drain never leaves only the last-resort package).
const KEY_PACKAGE_TARGET: u32 = 30;
/// Attempts at a commit before giving up on repeated epoch conflicts.
const COMMIT_ATTEMPTS: usize = 8;
/// At most this many pushed entries are processed in one local transaction.
pub const PUSH_BATCH: usize = 256;
/// How long a listening client waits after a pushed entry for more to batch with it.
pub const PUSH_LINGER: Duration = Duration::from_millis(2);
/// Largest attachment the client will send (the server's default limit, less sealing overhead).
pub const MAX_ATTACHMENT: u64 = (25 << 20) - 64;

/// Client errors, grouped by cause.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The caller asked for something impossible (unknown user, not a member, bad argument).
    #[error("{0}")]
    Usage(String),
    /// The local engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The network or the server failed or refused.
    #[error(transparent)]
    Net(NetError),
    /// The account is suspended or banned: it cannot log in. The server's message says until
    /// when, why, and how to appeal (`haven appeal CASE TEXT`, which works without a session).
    #[error("{0}")]
    Suspended(String),
    /// What the server answered failed verification (a device-list chain, a link proof, an
    /// account without a signed list): nothing was encrypted to it, and an alarm records it
    /// where one applies (`haven keys`).
    #[error("{0}")]
    Untrusted(String),
    /// An attachment could not be sealed or opened.
    #[error("attachment: {0}")]
    Attachment(#[from] AttachmentError),
    /// Local file I/O.
    #[error("{0}")]
    Io(String),
    /// A name matched more than one conversation; nothing was done. Name one by id.
    #[error("{what} matches {} conversations; name one by id: {}", .candidates.len(), address::list(.candidates))]
    Ambiguous {
        /// What the user wrote.
        what: String,
        /// The conversations it matched.
        candidates: Vec<Candidate>,
    },
    /// A message id that more than one stored message has (ids are chosen by senders); nothing
    /// was done. Narrow it by sender and/or conversation.
    #[error("message id {id} is used by {} stored messages; add --from USER and/or --in CONVERSATION: {}", .candidates.len(), list_messages(.candidates))]
    AmbiguousMessage {
        /// The id.
        id: MessageId,
        /// The messages that have it.
        candidates: Vec<MessageCandidate>,
    },
}

impl From<NetError> for ClientError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Api { error, .. } if error.code == ErrorCode::AccountSuspended => {
                ClientError::Suspended(error.message)
            }
            e => ClientError::Net(e),
        }
    }
}

/// One of several stored messages with the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCandidate {
    /// The sender.
    pub from: UserName,
    /// The conversation.
    pub group_id: GroupId,
    /// Its label.
    pub conversation: String,
    /// Its short id.
    pub short_id: String,
}

fn list_messages(c: &[MessageCandidate]) -> String {
    c.iter()
        .map(|m| {
            format!(
                "from {} in {} ({}{})",
                m.from,
                m.conversation,
                address::ID_FORM,
                m.short_id
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Narrows a message id to one conversation and/or one sender (`get-file ID --in … --from …`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageScope {
    /// Only messages in this conversation.
    pub conversation: Option<GroupId>,
    /// Only messages from this user.
    pub from: Option<UserName>,
}

fn usage(s: impl Into<String>) -> ClientError {
    ClientError::Usage(s.into())
}

/// Where a message goes, or which conversation a command is about (see [`crate::address`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The 1:1 conversation with a user.
    User(UserName),
    /// A group by its local name.
    Group(String),
    /// A conversation by a prefix of its id (`id:HEX`).
    Id(IdPrefix),
}

impl Target {
    /// Parses `alice`, `#group` or `id:HEX`.
    pub fn parse(s: &str) -> Result<Target, ClientError> {
        if let Some(digits) = s.strip_prefix(address::ID_FORM) {
            return IdPrefix::parse(digits).map(Target::Id).map_err(usage);
        }
        match s.strip_prefix('#') {
            Some(name) if !name.is_empty() => Ok(Target::Group(name.to_owned())),
            Some(_) => Err(usage("a group name follows '#'")),
            None => UserName::new(s).map(Target::User).map_err(|e| {
                usage(format!(
                    "{s:?} is not a user name, #group or {}HEX: {e}",
                    address::ID_FORM
                ))
            }),
        }
    }

    /// Parses a group argument of `haven group …`: `id:HEX`, `#group` or a bare group name.
    pub fn parse_group(s: &str) -> Result<Target, ClientError> {
        if s.starts_with(address::ID_FORM) {
            return Target::parse(s);
        }
        let name = s.strip_prefix('#').unwrap_or(s);
        if name.is_empty() {
            return Err(usage("a group name is missing"));
        }
        Ok(Target::Group(name.to_owned()))
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::User(u) => write!(f, "{u}"),
            Target::Group(g) => write!(f, "#{g}"),
            Target::Id(p) => write!(f, "{p}"),
        }
    }
}

/// A conversation as listed by [`Client::conversation_list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationInfo {
    /// The conversation.
    pub conversation: Conversation,
    /// Its label.
    pub label: String,
    /// Its short id (unique in this profile; `id:` form without the prefix).
    pub short_id: String,
    /// Member users, sorted (`None`: the group state could not be read).
    pub members: Option<Vec<UserName>>,
}

/// Something that happened while syncing, for display.
#[derive(Debug, Clone)]
pub enum Event {
    /// A message arrived.
    Message {
        /// The message.
        message: StoredMessage,
        /// The conversation's label (`alice` or `#group`).
        conversation: String,
    },
    /// We joined a conversation.
    Joined {
        /// Its label.
        conversation: String,
        /// Its id.
        conversation_id: GroupId,
        /// Who added us (server-authenticated).
        by: Option<UserName>,
        /// A direct chat the peer opened: sending in it accepts it.
        request: bool,
    },
    /// We were re-added to a conversation we had left or been removed from: an invitation,
    /// accepted with [`Client::accept`], declined with [`Client::leave`].
    Invited {
        /// Its label.
        conversation: String,
        /// Its id.
        conversation_id: GroupId,
        /// Who re-added us (server-authenticated).
        by: Option<UserName>,
    },
    /// A member renamed a conversation (see [`Processed::Renamed`]); only reported when the
    /// local name changed or the rename was refused.
    Renamed {
        /// Its label now.
        conversation: String,
        /// Its id.
        conversation_id: GroupId,
        /// Who renamed it.
        by: UserName,
        /// The name asked for.
        requested: String,
        /// The local group name before (`None`: a direct chat).
        previous: Option<String>,
        /// The name stored (`None`: refused).
        stored: Option<String>,
    },
    /// Membership changed.
    Membership {
        /// The conversation's label.
        conversation: String,
        /// Added users.
        added: Vec<UserName>,
        /// Removed users.
        removed: Vec<UserName>,
        /// We were removed.
        self_removed: bool,
    },
    /// An entry was dropped (failed a check).
    Dropped {
        /// Queue id.
        queue_id: i64,
        /// Why.
        reason: &'static str,
    },
    /// A notice from the operator: an action against this account (with its statement of
    /// reasons), the outcome of a report this account filed, or an appeal's decision.
    Notice(haven_proto::moderation::Notice),
}

/// The keys a new device makes before it registers or links.
struct NewDeviceKeys {
    auth: AuthSecret,
    auth_key: Vec<u8>,
    signer: openmls_basic_credential::SignatureKeyPair,
    mls_key_signature: Vec<u8>,
}

/// A device's client.
pub struct Client {
    engine: Engine,
    api: Api,
}

impl Client {
    /// Registers a new user with this device as its first, creating the profile in `home`.
    /// `birth_date` (`YYYY-MM-DD`) goes to the server, which keeps only the age band it implies
    /// (and the day that changes); the client does not store it.
    pub async fn register(
        home: &Path,
        server: &str,
        user: &UserName,
        device_name: &str,
        birth_date: &str,
    ) -> Result<Client, ClientError> {
        safety::check_birth_date(birth_date)?;
        let (api, keys) = Self::new_device(home, server)?;
        let req = api::RegisterRequest {
            user: user.clone(),
            device_name: device_name.to_owned(),
            auth_key: keys.auth_key.clone(),
            mls_key: keys.signer.public().to_vec(),
            mls_key_signature: keys.mls_key_signature.clone(),
            birth_date: birth_date.to_owned(),
        };
        let reg = api.register(&req).await?;
        Self::finish_enrolment(home, api, reg, keys, true).await
    }

    /// Links this new device to an existing account with a one-time code from `haven device
    /// link`: the server's part goes to the server, the secret only into the link proof over
    /// this device's keys, which the device that showed the code checks before it signs this
    /// one into the account's list (`device_lists`).
    pub async fn link(
        home: &Path,
        server: &str,
        code: &str,
        device_name: &str,
    ) -> Result<Client, ClientError> {
        let (server_code, secret) = device_lists::split_code(code)?;
        let secret =
            haven_kt::device_list::secret_from_chars(&secret).map_err(|e| usage(e.to_string()))?;
        let (api, keys) = Self::new_device(home, server)?;
        let mls_key = keys.signer.public().to_vec();
        let link_proof =
            haven_kt::device_list::link_proof(&secret, &server_code, &keys.auth_key, &mls_key)
                .to_vec();
        let req = api::LinkRequest {
            code: server_code,
            device_name: device_name.to_owned(),
            auth_key: keys.auth_key.clone(),
            mls_key,
            mls_key_signature: keys.mls_key_signature.clone(),
            link_proof,
        };
        let reg = api.link(&req).await?;
        Self::finish_enrolment(home, api, reg, keys, false).await
    }

    /// Checks the profile directory is free and makes this device's keys: the authentication
    /// key, and the MLS signature key with the authentication key's signature binding it to the
    /// device ([`api::mls_key_message`]).
    fn new_device(home: &Path, server: &str) -> Result<(Api, NewDeviceKeys), ClientError> {
        Self::check_new_home(home)?;
        let api = Api::new(server)?;
        let auth = AuthSecret::random();
        let signing = SigningKey::from_bytes(auth.as_bytes());
        let auth_key = signing.verifying_key().to_bytes().to_vec();
        let signer = new_signer()?;
        let mls_key_signature = signing
            .sign(&api::mls_key_message(signer.public()))
            .to_bytes()
            .to_vec();
        Ok((
            api,
            NewDeviceKeys {
                auth,
                auth_key,
                signer,
                mls_key_signature,
            },
        ))
    }

    fn check_new_home(home: &Path) -> Result<(), ClientError> {
        if home.join("haven.db").exists() {
            return Err(usage(format!(
                "a Haven profile already exists in {}",
                home.display()
            )));
        }
        std::fs::create_dir_all(home)
            .map_err(|e| ClientError::Io(format!("{}: {e}", home.display())))
    }

    async fn finish_enrolment(
        home: &Path,
        api: Api,
        reg: api::DeviceRegistered,
        keys: NewDeviceKeys,
        first_device: bool,
    ) -> Result<Client, ClientError> {
        let identity = Identity {
            user: reg.user,
            device_id: reg.device_id,
            server_url: api.base().to_owned(),
            auth_secret: keys.auth,
        };
        let engine = Engine::create_with_signer(home, identity, keys.signer)?;
        let mut client = Client { engine, api };
        client.login().await?;
        if first_device {
            client.publish_first_device_list().await?;
        }
        client.replenish_key_packages().await?;
        Ok(client)
    }

    /// Opens an existing profile.
    pub async fn open(home: &Path) -> Result<Client, ClientError> {
        if !home.join("haven.db").exists() {
            return Err(usage(format!(
                "no Haven profile in {} (run `haven register NAME --server URL` or `haven link CODE --server URL`)",
                home.display()
            )));
        }
        let engine = Engine::open(home)?;
        let mut api = Api::new(&engine.identity().server_url)?;
        let now = now_ms();
        if let Some(t) = engine.session_token()? {
            if t.expires_at > now + 60_000 {
                api.set_token(Some(t.token.clone()));
            }
        }
        let mut client = Client { engine, api };
        if client.api.has_token() {
            // The stored session may have been revoked (`haven logout --all` on another
            // device): one cheap request tells, and the device logs in again with its key.
            match client.api.key_package_count().await {
                Err(e) if e.code() == Some(ErrorCode::Unauthorized) => {
                    client.engine.clear_session_token()?;
                    client.api.set_token(None);
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {}
            }
        }
        if !client.api.has_token() {
            client.login().await?;
        }
        Ok(client)
    }

    /// Opens an existing profile without logging in: the stored session, if any and not
    /// expired, is used as is. For what works without a session — an appeal by a suspended
    /// account ([`Client::appeal`]), which signs with the device key instead.
    pub fn open_without_login(home: &Path) -> Result<Client, ClientError> {
        if !home.join("haven.db").exists() {
            return Err(usage(format!("no Haven profile in {}", home.display())));
        }
        let engine = Engine::open(home)?;
        let mut api = Api::new(&engine.identity().server_url)?;
        if let Some(t) = engine.session_token()? {
            if t.expires_at > now_ms() + 60_000 {
                api.set_token(Some(t.token.clone()));
            }
        }
        Ok(Client { engine, api })
    }

    /// The engine (for inspection and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, mutably (tests use this to misbehave on purpose).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The network client.
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// This device's user.
    pub fn user(&self) -> &UserName {
        &self.engine.identity().user
    }

    /// This device's id.
    pub fn device_id(&self) -> &DeviceId {
        &self.engine.identity().device_id
    }

    async fn login(&mut self) -> Result<(), ClientError> {
        let device_id = self.engine.identity().device_id.clone();
        let ch = self
            .api
            .challenge(&api::ChallengeRequest {
                device_id: device_id.clone(),
            })
            .await?;
        let key = SigningKey::from_bytes(self.engine.identity().auth_secret.as_bytes());
        let signature = key
            .sign(&api::login_message(&device_id, &ch.nonce))
            .to_bytes()
            .to_vec();
        let resp = self
            .api
            .login(&api::LoginRequest {
                device_id,
                nonce: ch.nonce,
                signature,
            })
            .await?;
        self.engine.set_session_token(&SessionToken {
            token: resp.token.clone(),
            expires_at: resp.expires_at,
        })?;
        self.api.set_token(Some(resp.token));
        Ok(())
    }

    /// Tops up the one-time key packages on the server to [`KEY_PACKAGE_TARGET`] and makes sure
    /// a last-resort one exists.
    pub async fn replenish_key_packages(&mut self) -> Result<(), ClientError> {
        let count = self.api.key_package_count().await?;
        if count.available >= KEY_PACKAGE_TARGET && count.has_last_resort {
            return Ok(());
        }
        let n = KEY_PACKAGE_TARGET.saturating_sub(count.available) as usize;
        let key_packages = self.engine.key_packages(n)?;
        let last_resort = if count.has_last_resort {
            None
        } else {
            Some(self.engine.last_resort_key_package()?)
        };
        self.api
            .upload_key_packages(&api::UploadKeyPackages {
                key_packages,
                last_resort,
            })
            .await?;
        Ok(())
    }

    /// [`Client::replenish_key_packages`] as part of a sync: a refusal because the account's
    /// write budget is spent (429) waits for the next sync instead of failing this one.
    async fn replenish_on_sync(&mut self) -> Result<(), ClientError> {
        match self.replenish_key_packages().await {
            Err(ClientError::Net(e)) if e.code() == Some(ErrorCode::RateLimited) => Ok(()),
            other => other,
        }
    }

    /// A fresh [`api::DeviceProof`] by this device's authentication key for `purpose` and
    /// `subject` (a nonce from the server, signed over [`api::device_proof_message`]).
    async fn device_proof(
        &mut self,
        purpose: &str,
        subject: &[u8],
    ) -> Result<api::DeviceProof, ClientError> {
        let device_id = self.device_id().clone();
        let ch = self
            .api
            .challenge(&api::ChallengeRequest {
                device_id: device_id.clone(),
            })
            .await?;
        let key = SigningKey::from_bytes(self.engine.identity().auth_secret.as_bytes());
        let signature = key
            .sign(&api::device_proof_message(
                purpose, &device_id, &ch.nonce, subject,
            ))
            .to_bytes()
            .to_vec();
        Ok(api::DeviceProof {
            nonce: ch.nonce,
            signature,
        })
    }

    /// Revokes this device's session on the server (or, with `all`, every session of every
    /// device of the account) and forgets it here. The device keeps its keys: the next command
    /// logs in again with them.
    pub async fn logout(&mut self, all: bool) -> Result<u32, ClientError> {
        let n = self.api.logout(&api::LogoutRequest { all }).await?;
        self.engine.clear_session_token()?;
        self.api.set_token(None);
        Ok(n.count)
    }

    /// Removes another device of this account (`device`: its id, or its name if unique) on a
    /// proof by this device's key; then commits MLS Removes of it in every conversation of
    /// ours it is in. The server refuses removing the account's last device. Returns the
    /// removed device's id.
    pub async fn remove_device(&mut self, device: &str) -> Result<DeviceId, ClientError> {
        let me = self.user().clone();
        let devices = self.api.user(&me).await?.devices;
        let matching: Vec<&api::DeviceInfo> = devices
            .iter()
            .filter(|d| d.device_id.as_str() == device || d.name == device)
            .collect();
        let target = match matching.as_slice() {
            [one] => one.device_id.clone(),
            [] => return Err(usage(format!("no device {device} in this account"))),
            _ => {
                return Err(usage(format!(
                    "several devices are named {device}; give its id (haven device list)"
                )))
            }
        };
        if &target == self.device_id() {
            return Err(usage(
                "this is the device you are using; remove it from another device, or `haven logout`",
            ));
        }
        // The signed list goes first: the server removes no device still in it.
        self.unlist_device(&target).await?;
        let proof = self
            .device_proof(api::PROOF_REMOVE_DEVICE, target.as_str().as_bytes())
            .await?;
        self.api
            .remove_device(&target, &api::RemoveDeviceRequest { proof })
            .await?;
        self.process_queue().await?;
        self.remove_device_from_groups(&target).await?;
        Ok(target)
    }

    /// Commits MLS Removes of `device` (a removed device of ours) in every active conversation
    /// that still has it.
    async fn remove_device_from_groups(&mut self, device: &DeviceId) -> Result<(), ClientError> {
        if device == self.device_id() {
            return Ok(());
        }
        for c in self.engine.conversations()? {
            if c.state != ConversationState::Active {
                continue;
            }
            let g = c.group_id.clone();
            let devices = [device.clone()];
            self.commit_with_retry(|e| {
                if !e.members(&g)?.iter().any(|(_, d)| d == &devices[0]) {
                    return Ok(None);
                }
                Ok(Some(e.remove_devices(&g, &devices)?))
            })
            .await?;
        }
        Ok(())
    }

    /// The display label of a conversation ([`address::label_of`]).
    pub fn label(&self, group: &GroupId) -> String {
        match self.engine.conversation(group) {
            Ok(Some(c)) => label_of(&c),
            _ => format!(
                "{}{}",
                address::ID_FORM,
                group
                    .to_hex()
                    .get(..address::SHORT_ID_DIGITS)
                    .unwrap_or("?")
            ),
        }
    }

    /// Every conversation with its label, short id and member users, oldest first.
    pub fn conversation_list(&self) -> Result<Vec<ConversationInfo>, ClientError> {
        let all = self.engine.conversations()?;
        let short = address::short_ids(&all);
        Ok(all
            .into_iter()
            .map(|c| ConversationInfo {
                label: label_of(&c),
                short_id: short
                    .get(&c.group_id)
                    .cloned()
                    .unwrap_or_else(|| c.group_id.to_hex()),
                members: self.member_users(&c.group_id),
                conversation: c,
            })
            .collect())
    }

    fn member_users(&self, g: &GroupId) -> Option<Vec<UserName>> {
        let mut users: Vec<UserName> = self
            .engine
            .members(g)
            .ok()?
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        users.sort();
        users.dedup();
        Some(users)
    }

    fn candidates(&self, all: &[Conversation], matched: &[&Conversation]) -> Vec<Candidate> {
        let short = address::short_ids(all);
        matched
            .iter()
            .map(|c| Candidate {
                group_id: c.group_id.clone(),
                short_id: short
                    .get(&c.group_id)
                    .cloned()
                    .unwrap_or_else(|| c.group_id.to_hex()),
                label: label_of(c),
                state: c.state,
                request: c.is_request(),
                members: self.member_users(&c.group_id),
            })
            .collect()
    }

    /// Turns a lookup into one conversation or a refusal.
    fn settle(
        &self,
        all: &[Conversation],
        found: Found<'_>,
        target: &Target,
    ) -> Result<Conversation, ClientError> {
        match found {
            Found::One(c) => Ok(c.clone()),
            Found::Many(v) => Err(ClientError::Ambiguous {
                what: target.to_string(),
                candidates: self.candidates(all, &v),
            }),
            Found::Nothing => Err(match target {
                Target::User(u) => usage(format!("no conversation with {u}")),
                Target::Group(n) => usage(format!("no group named #{n}")),
                Target::Id(p) => usage(format!("no conversation {p}")),
            }),
        }
    }

    /// Finds one conversation (see [`crate::address`]). `live_only`: a group name matches only
    /// active or invited conversations.
    fn find(&self, target: &Target, live_only: bool) -> Result<Conversation, ClientError> {
        let all = self.engine.conversations()?;
        let found = match target {
            Target::Id(p) => address::by_id(&all, p),
            Target::Group(n) => address::by_group_name(&all, n, live_only),
            Target::User(u) => address::direct_with(&all, u),
        };
        self.settle(&all, found, target)
    }

    /// All conversations with their labels.
    pub fn conversations(&self) -> Result<Vec<(String, Conversation)>, ClientError> {
        Ok(self
            .engine
            .conversations()?
            .into_iter()
            .map(|c| (label_of(&c), c))
            .collect())
    }

    /// Resolves `alice`, `#group` or `id:HEX` to one conversation, for reading (any state; see
    /// [`crate::address`]). A name that matches several conversations is refused
    /// ([`ClientError::Ambiguous`], listing them).
    pub fn resolve(&self, label: &str) -> Result<GroupId, ClientError> {
        Ok(self.resolve_target(&Target::parse(label)?)?.group_id)
    }

    /// [`Client::resolve`] for a parsed target.
    pub fn resolve_target(&self, target: &Target) -> Result<Conversation, ClientError> {
        self.find(target, false)
    }

    /// Checks that `user` exists and that their signed device list verifies (checked with the
    /// server now, so a list that grew or broke since is seen), before anything is created.
    async fn check_user(&mut self, user: &UserName) -> Result<(), ClientError> {
        match self.api.user(user).await {
            Ok(_) => {}
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                return Err(usage(format!("unknown user {user}")))
            }
            Err(e) => return Err(e.into()),
        }
        self.sync_device_list(user).await?;
        Ok(())
    }

    /// Looks `user` up in the directory and pins the MLS keys of their devices, so the key
    /// packages claimed next must carry them (see [`crate::pins`]).
    async fn pin_directory_keys(&mut self, user: &UserName) -> Result<(), ClientError> {
        let listed = match self.api.user(user).await {
            Ok(l) => l,
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                return Err(usage(format!("unknown user {user}")))
            }
            Err(e) => return Err(e.into()),
        };
        let keys: Vec<(DeviceId, Vec<u8>)> = listed
            .devices
            .into_iter()
            .filter_map(|d| d.mls_key.map(|k| (d.device_id, k)))
            .collect();
        self.engine.pin_device_keys(user, &keys)?;
        Ok(())
    }

    /// Claims key packages for every device of `users`, and for this user's other devices, to
    /// add them to `group` (the server records the claim for that group).
    async fn claim(
        &mut self,
        group: &GroupId,
        users: &[UserName],
        include_own_devices: bool,
    ) -> Result<Vec<ClaimedKeyPackages>, ClientError> {
        let mut out = Vec::new();
        for u in users {
            self.ensure_device_list(u).await?;
            self.pin_directory_keys(u).await?;
            let c = self.api.claim_key_packages(u, group).await?;
            let c = self.listed_only(c)?;
            if c.key_packages.is_empty() {
                return Err(usage(format!(
                    "{u} has no device that can be added right now (no key packages)"
                )));
            }
            out.push(c);
        }
        if include_own_devices {
            let me = self.user().clone();
            self.ensure_device_list(&me).await?;
            self.pin_directory_keys(&me).await?;
            let mine = self.api.claim_key_packages(&me, group).await?;
            let mut mine = self.listed_only(mine)?;
            mine.key_packages
                .retain(|k| &k.device_id != self.device_id());
            if !mine.key_packages.is_empty() {
                out.push(mine);
            }
        }
        Ok(out)
    }

    /// Submits commits built by `build` until one is accepted (see the module docs).
    async fn commit_with_retry<F>(
        &mut self,
        mut build: F,
    ) -> Result<Option<api::GroupState>, ClientError>
    where
        F: FnMut(&mut Engine) -> Result<Option<OutgoingCommit>, ClientError>,
    {
        self.settle_pending_commits().await?;
        for _ in 0..COMMIT_ATTEMPTS {
            let Some(out) = build(&mut self.engine)? else {
                return Ok(None);
            };
            match self.submit_commit(out).await? {
                CommitFate::Accepted(state) => return Ok(Some(state)),
                CommitFate::Lost => {
                    self.process_queue().await?;
                }
            }
        }
        Err(usage("gave up after repeated commit conflicts; try again"))
    }

    /// Submits a staged commit and merges or clears it by the server's answer. `Err` when the
    /// answer is unknown (unreachable, 5xx): the commit stays staged for
    /// [`Client::settle_pending_commits`].
    async fn submit_commit(&mut self, out: OutgoingCommit) -> Result<CommitFate, ClientError> {
        let group = out.group_id.clone();
        let req = api::CommitRequest {
            commit: out.commit,
            welcome: out.welcome,
        };
        match self.api.commit(&group, &req).await {
            Ok(state) => {
                self.engine.merge_pending_commit(&group)?;
                Ok(CommitFate::Accepted(state))
            }
            Err(e) if e.code() == Some(ErrorCode::EpochConflict) => {
                self.engine.clear_pending_commit(&group)?;
                Ok(CommitFate::Lost)
            }
            Err(e) if refused_for_good(&e) => {
                // The commit itself was refused (malformed, over a limit, not a member, unknown
                // group): nothing was applied, and the same bytes never will be.
                self.engine.clear_pending_commit(&group)?;
                Err(e.into())
            }
            // Unknown outcome (unreachable, 5xx) or not looked at (session, rate limit): keep it.
            Err(e) => Err(e.into()),
        }
    }

    /// Resubmits every commit whose answer was lost (see the module docs): merged if the server
    /// had accepted it (or accepts it now), cleared if another commit won its epoch. Runs before
    /// the queue is processed, since what is queued may already be in the epoch after it.
    ///
    /// A commit the server refuses for good is cleared and does not stop the others (nor the
    /// sync or send that settles them); an unknown outcome does, with the commit kept.
    pub async fn settle_pending_commits(&mut self) -> Result<(), ClientError> {
        for out in self.engine.pending_commits()? {
            match self.submit_commit(out).await {
                Ok(_) => {}
                Err(ClientError::Net(e)) if refused_for_good(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The 1:1 conversation with `peer` to send in: the oldest active one this user opened or
    /// accepted; else the newest one `peer` opened that we have not accepted, which sending
    /// accepts; else a new one.
    pub async fn open_direct(&mut self, peer: &UserName) -> Result<GroupId, ClientError> {
        if peer == self.user() {
            return Err(usage("you cannot open a conversation with yourself"));
        }
        if let Some(g) = self.engine.find_direct(peer)? {
            return Ok(g);
        }
        if let Some(g) = self.engine.pending_direct(peer)? {
            self.engine.accept(&g)?;
            return Ok(g);
        }
        self.check_user(peer).await?;
        let g = self
            .engine
            .create_conversation(ConversationKind::direct(peer.clone()))?;
        if let Err(e) = self.announce_group(&g).await {
            // Refused (a restricted account, say) or unknown: it must not become the direct
            // chat, which the next send would then use.
            self.engine.abandon_conversation(&g)?;
            return Err(e);
        }
        let claimed = match self.claim(&g, std::slice::from_ref(peer), true).await {
            Ok(c) => c,
            Err(e) => {
                // Nobody to add: the new conversation must not become the direct chat.
                self.engine.abandon_conversation(&g)?;
                return Err(e);
            }
        };
        self.commit_with_retry(|e| Ok(Some(e.add_members(&g, &claimed)?)))
            .await?;
        Ok(g)
    }

    /// Announces a conversation just created by the engine, with its signed GroupInfo; a 1:1
    /// conversation names its peer (`direct_with`), so the server applies the first-message
    /// rules (contacts, message requests) to it.
    async fn announce_group(&mut self, g: &GroupId) -> Result<(), ClientError> {
        let info = self.engine.group_info(g)?;
        let peer = self.engine.conversation(g)?.and_then(|c| c.peer().cloned());
        self.api.create_group(g, info, peer.as_ref()).await?;
        Ok(())
    }

    /// Creates a group named `name` with `members` (and this user's other devices).
    pub async fn create_group(
        &mut self,
        name: &str,
        members: &[UserName],
    ) -> Result<GroupId, ClientError> {
        if !crate::engine::valid_group_name(name) {
            return Err(usage(
                "a group name is 1 to 64 characters, without spaces or '#'",
            ));
        }
        if self.engine.find_group(name)?.is_some() {
            return Err(EngineError::NameTaken(name.to_owned()).into());
        }
        let mut others: Vec<UserName> = members
            .iter()
            .filter(|u| *u != self.user())
            .cloned()
            .collect();
        others.sort();
        others.dedup();
        for u in &others {
            self.check_user(u).await?;
        }
        let g = self
            .engine
            .create_conversation(ConversationKind::group(name))?;
        if let Err(e) = self.announce_group(&g).await {
            // The name stays free for the next attempt.
            self.engine.abandon_conversation(&g)?;
            return Err(e);
        }
        let claimed = match self.claim(&g, &others, true).await {
            Ok(c) => c,
            Err(e) => {
                self.engine.abandon_conversation(&g)?;
                return Err(e);
            }
        };
        if !claimed.is_empty() {
            self.commit_with_retry(|e| Ok(Some(e.add_members(&g, &claimed)?)))
                .await?;
        }
        self.send_body(&g, Body::GroupName(name.to_owned())).await?;
        Ok(g)
    }

    /// Adds a user (all their devices) to a group (`group` as [`Target::parse_group`] reads it).
    pub async fn add_member(&mut self, group: &str, user: &UserName) -> Result<(), ClientError> {
        let g = self.resolve_group(group, true)?;
        self.process_queue().await?;
        if self.engine.members(&g)?.iter().any(|(u, _)| u == user) {
            return Err(usage(format!(
                "{user} is already a member of {}",
                self.label(&g)
            )));
        }
        self.check_user(user).await?;
        let claimed = self.claim(&g, std::slice::from_ref(user), false).await?;
        self.commit_with_retry(|e| Ok(Some(e.add_members(&g, &claimed)?)))
            .await?;
        // The newcomer learns the group's name: the one its members announced, not our local
        // label (which may be a disambiguation).
        if let Some(name) = self.announced_name(&g)? {
            self.send_body(&g, Body::GroupName(name)).await?;
        }
        Ok(())
    }

    fn announced_name(&self, g: &GroupId) -> Result<Option<String>, ClientError> {
        Ok(match self.engine.conversation(g)?.map(|c| c.kind) {
            Some(ConversationKind::Group { announced, name }) => {
                let n = if announced.is_empty() {
                    name
                } else {
                    announced
                };
                (!n.is_empty()).then_some(n)
            }
            _ => None,
        })
    }

    /// Removes a user (all their devices) from a group.
    pub async fn remove_member(&mut self, group: &str, user: &UserName) -> Result<(), ClientError> {
        let g = self.resolve_group(group, true)?;
        self.process_queue().await?;
        if user == self.user() {
            return Err(usage("use `haven group leave` to leave a group"));
        }
        let users = [user.clone()];
        let mut first = true;
        self.commit_with_retry(|e| {
            if !e.members(&g)?.iter().any(|(u, _)| u == &users[0]) {
                return if first {
                    Err(usage(format!("{} is not a member of this group", users[0])))
                } else {
                    Ok(None)
                };
            }
            first = false;
            Ok(Some(e.remove_users(&g, &users)?))
        })
        .await?;
        Ok(())
    }

    /// Leaves a group (`group` as [`Target::parse_group`] reads it): sends this device's Remove
    /// proposal; another member commits it. Leaving an invitation declines it.
    pub async fn leave_group(&mut self, group: &str) -> Result<GroupId, ClientError> {
        let g = self.resolve_group(group, false)?;
        self.leave_in(&g).await?;
        Ok(g)
    }

    /// Leaves a conversation of any kind (`alice`, `#group` or `id:HEX`); declines an
    /// invitation. A name that matches several live conversations is refused.
    pub async fn leave(&mut self, conversation: &str) -> Result<GroupId, ClientError> {
        let target = Target::parse(conversation)?;
        let all = self.engine.conversations()?;
        let found = match &target {
            Target::Id(p) => address::by_id(&all, p),
            Target::Group(n) => address::by_group_name(&all, n, true),
            // Leaving is for good: with several live chats with this user, say which.
            Target::User(u) => address::one_live(&all, |c| c.peer() == Some(u)),
        };
        let g = self.settle(&all, found, &target)?.group_id;
        self.leave_in(&g).await?;
        Ok(g)
    }

    /// Accepts an invitation, or a direct chat not accepted yet (`alice`, `#group` or
    /// `id:HEX`). Returns the conversation and whether anything changed.
    pub fn accept(&mut self, conversation: &str) -> Result<(GroupId, bool), ClientError> {
        let target = Target::parse(conversation)?;
        let all = self.engine.conversations()?;
        let found = match &target {
            Target::Id(p) => address::by_id(&all, p),
            Target::Group(n) => address::by_group_name(&all, n, true),
            Target::User(u) => address::one_live(&all, |c| {
                c.peer() == Some(u) && address::awaiting_consent(c)
            }),
        };
        let g = self.settle(&all, found, &target)?.group_id;
        let changed = self.engine.accept(&g)?;
        Ok((g, changed))
    }

    async fn leave_in(&mut self, g: &GroupId) -> Result<(), ClientError> {
        let proposal = self.engine.leave(g)?;
        self.api
            .proposal(g, &api::ProposalRequest { proposal })
            .await?;
        Ok(())
    }

    /// Resolves the group argument of `haven group …` ([`Target::parse_group`]). `changes`:
    /// the command changes membership, so the conversation must be a live group (not a direct
    /// chat); otherwise any conversation the name or id resolves to.
    fn resolve_group(&self, group: &str, changes: bool) -> Result<GroupId, ClientError> {
        let target = Target::parse_group(group)?;
        let c = self.find(&target, changes)?;
        if changes && c.group_name().is_none() {
            return Err(usage(format!(
                "{target} is a direct chat; `haven group` adds and removes members of groups"
            )));
        }
        Ok(c.group_id)
    }

    /// Resolves a group argument of `haven group members` and the like, for reading.
    pub fn resolve_group_for_reading(&self, group: &str) -> Result<GroupId, ClientError> {
        self.resolve_group(group, false)
    }

    async fn target_group(&mut self, to: &Target) -> Result<GroupId, ClientError> {
        let c = match to {
            Target::User(u) => return self.open_direct(u).await,
            Target::Group(_) => self.find(to, true)?,
            Target::Id(_) => self.find(to, false)?,
        };
        // Sending in a direct chat the peer opened accepts it; an invitation is refused by
        // the engine until the user accepts it.
        if c.is_request() && c.state == ConversationState::Active {
            self.engine.accept(&c.group_id)?;
        }
        Ok(c.group_id)
    }

    async fn send_body(&mut self, g: &GroupId, body: Body) -> Result<StoredMessage, ClientError> {
        // A conversation where a device outside its user's signed list turned up is not
        // written to until the user has looked (`haven keys`).
        if let Some(a) = self.engine.marking(g)? {
            return Err(ClientError::Untrusted(format!(
                "nothing is sent in this conversation until you have checked alarm {}: {} (haven keys; haven keys ack {} when you have)",
                a.id, a.detail, a.id
            )));
        }
        // A commit of ours whose answer was lost is settled first: openmls would otherwise
        // encrypt in the epoch before it, which members it added cannot read.
        self.settle_pending_commits().await?;
        // openmls refuses to send while proposals are pending: commit them, then send.
        let out = match self.engine.encrypt(g, body.clone()) {
            Err(EngineError::PendingProposals(_)) => {
                self.commit_proposals(g).await?;
                self.engine.encrypt(g, body)?
            }
            other => other?,
        };
        let resp = self.api.send(g, out.mls.clone()).await?;
        self.engine
            .record_sent_tagged(&out, resp.received_at, resp.server_tag.as_deref())?;
        Ok(StoredMessage {
            id: out.id.clone(),
            group: g.clone(),
            from: self.user().clone(),
            from_device: self.device_id().clone(),
            body: out.body.clone(),
            sent_at: out.sent_at,
            received_at: resp.received_at,
        })
    }

    /// Commits pending proposals (members leaving); openmls refuses to send until they are.
    async fn commit_proposals(&mut self, g: &GroupId) -> Result<(), ClientError> {
        if self.engine.has_pending_proposals(g)? {
            self.commit_with_retry(|e| Ok(e.commit_pending_proposals(g)?))
                .await?;
        }
        Ok(())
    }

    /// Sends a text message.
    pub async fn send_text(
        &mut self,
        to: &Target,
        text: &str,
    ) -> Result<StoredMessage, ClientError> {
        if text.is_empty() {
            return Err(usage("message text is empty"));
        }
        let g = self.target_group(to).await?;
        self.send_body(&g, Body::Text(text.to_owned())).await
    }

    /// Encrypts a file with a fresh key, uploads the ciphertext and sends a message referring to it.
    pub async fn send_file(
        &mut self,
        to: &Target,
        path: &Path,
    ) -> Result<StoredMessage, ClientError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| ClientError::Io(format!("{}: {e}", path.display())))?;
        if !meta.is_file() {
            return Err(usage(format!("{} is not a file", path.display())));
        }
        if meta.len() > MAX_ATTACHMENT {
            return Err(usage(format!(
                "{} is larger than the {} MiB attachment limit",
                path.display(),
                MAX_ATTACHMENT >> 20
            )));
        }
        let plaintext =
            std::fs::read(path).map_err(|e| ClientError::Io(format!("{}: {e}", path.display())))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        let g = self.target_group(to).await?;
        let (ciphertext, key, sha256) = attachment::seal(&plaintext)?;
        let stored = self.api.put_blob(ciphertext).await?;
        let body = Body::Attachment(AttachmentRef {
            blob_id: stored.blob_id,
            key,
            sha256,
            size: plaintext.len() as u64,
            name,
        });
        self.send_body(&g, body).await
    }

    /// Every stored message with this id within `scope` (at most
    /// [`crate::engine::MAX_ID_MATCHES`]). Ids are chosen by senders: several results are
    /// ambiguous, and nothing here picks one of them.
    pub fn find_messages(
        &self,
        id: &MessageId,
        scope: &MessageScope,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        Ok(self
            .engine
            .messages_with_id(id, scope.conversation.as_ref(), scope.from.as_ref())?)
    }

    /// The one stored message with this id within `scope`; refuses an id that several messages
    /// have ([`ClientError::AmbiguousMessage`], listing them).
    pub fn find_message(
        &self,
        id: &MessageId,
        scope: &MessageScope,
    ) -> Result<StoredMessage, ClientError> {
        let mut found = self.find_messages(id, scope)?;
        if found.len() > 1 {
            let all = self.engine.conversations()?;
            let short = address::short_ids(&all);
            return Err(ClientError::AmbiguousMessage {
                id: id.clone(),
                candidates: found
                    .into_iter()
                    .map(|m| MessageCandidate {
                        conversation: self.label(&m.group),
                        short_id: short
                            .get(&m.group)
                            .cloned()
                            .unwrap_or_else(|| m.group.to_hex()),
                        group_id: m.group,
                        from: m.from,
                    })
                    .collect(),
            });
        }
        found.pop().ok_or_else(|| {
            usage(match (&scope.from, &scope.conversation) {
                (None, None) => format!("no message {id}"),
                _ => format!("no message {id} from that sender or in that conversation"),
            })
        })
    }

    /// Downloads, checks and decrypts the attachment of a message into `out`. Returns its size.
    /// The id must name one stored message within `scope` (see [`Client::find_message`]).
    pub async fn get_file(
        &mut self,
        id: &str,
        scope: &MessageScope,
        out: &Path,
    ) -> Result<u64, ClientError> {
        let id = MessageId::new(id).map_err(|e| usage(format!("bad message id: {e}")))?;
        let msg = self.find_message(&id, scope)?;
        let Body::Attachment(a) = msg.body else {
            return Err(usage(format!("message {id} has no attachment")));
        };
        let ciphertext = self.api.get_blob(&a.blob_id).await?;
        if attachment::sha256(&ciphertext) != hex_digest(&a.blob_id) {
            return Err(ClientError::Attachment(AttachmentError::Open));
        }
        let plaintext = attachment::open(&ciphertext, &a.key, &a.sha256)?;
        let tmp = out.with_extension("haven-partial");
        std::fs::write(&tmp, &plaintext)
            .map_err(|e| ClientError::Io(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, out)
            .map_err(|e| ClientError::Io(format!("{}: {e}", out.display())))?;
        Ok(plaintext.len() as u64)
    }

    /// Incoming messages not shown yet (by any command), with their conversation labels, and the
    /// cursor to pass to [`Client::mark_seen`] once they are shown.
    pub fn unseen(&self) -> Result<(Vec<(String, StoredMessage)>, i64), ClientError> {
        let (msgs, cursor) = self.engine.unseen_messages(10_000)?;
        let shown = msgs
            .into_iter()
            .filter(|m| !matches!(m.body, Body::GroupName(_)))
            .map(|m| (self.label(&m.group), m))
            .collect();
        Ok((shown, cursor))
    }

    /// Records that the messages returned by [`Client::unseen`] were shown.
    pub fn mark_seen(&mut self, cursor: i64) -> Result<(), ClientError> {
        Ok(self.engine.mark_seen(cursor)?)
    }

    /// The last `limit` messages of a conversation (`alice`, `#group` or `id:HEX`), oldest first.
    pub fn history(
        &self,
        conversation: &str,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, ClientError> {
        let g = self.resolve(conversation)?;
        Ok(self.engine.history(&g, limit)?)
    }

    fn event(&self, p: Processed, queue_id: i64) -> Option<Event> {
        match p {
            Processed::Message(m) => {
                if matches!(m.body, Body::GroupName(_)) {
                    return None;
                }
                let conversation = self.label(&m.group);
                Some(Event::Message {
                    message: m,
                    conversation,
                })
            }
            Processed::Joined(c) => Some(Event::Joined {
                conversation: self.label(&c.group_id),
                request: c.is_request(),
                by: c.added_by,
                conversation_id: c.group_id,
            }),
            Processed::Invited(c) => Some(Event::Invited {
                conversation: self.label(&c.group_id),
                by: c.added_by,
                conversation_id: c.group_id,
            }),
            Processed::Renamed {
                group_id,
                by,
                requested,
                previous,
                stored,
            } => {
                if stored.is_some() && stored == previous {
                    return None;
                }
                Some(Event::Renamed {
                    conversation: self.label(&group_id),
                    conversation_id: group_id,
                    by,
                    requested,
                    previous,
                    stored,
                })
            }
            Processed::Commit(o) => Some(Event::Membership {
                conversation: self.label(&o.group_id),
                added: o.added.into_iter().map(|(u, _)| u).collect(),
                removed: o.removed.into_iter().map(|(u, _)| u).collect(),
                self_removed: o.self_removed,
            }),
            Processed::Dropped { reason } => Some(Event::Dropped {
                queue_id,
                reason: reason.as_str(),
            }),
            Processed::Notice(n) => Some(Event::Notice(n)),
            _ => None,
        }
    }

    /// Processes a batch in one local transaction (see [`Engine::process_entries`]); on `Ok`
    /// every entry is stored and may be acknowledged.
    /// Processes `entries` (one transaction); a device the engine could not find in a device
    /// list that was not checked in this session makes it check that list and process the
    /// batch again (each user once, so this ends).
    async fn process(
        &mut self,
        entries: &[api::QueueEntry],
        events: &mut Vec<Event>,
        follow: &mut Vec<Processed>,
    ) -> Result<(), ClientError> {
        loop {
            match self.engine.process_entries(entries) {
                Err(EngineError::DeviceListNeeded(user))
                    if !self.engine.device_list_checked(&user) =>
                {
                    match self.sync_device_list(&user).await {
                        // An account without a list: the engine now refuses its devices.
                        Ok(_) | Err(ClientError::Untrusted(_)) => {}
                        Err(e) => return Err(e),
                    }
                    self.engine.mark_device_list_checked(&user);
                }
                Err(e) => return Err(e.into()),
                Ok(outcomes) => return self.took(entries, outcomes, events, follow),
            }
        }
    }

    fn took(
        &mut self,
        entries: &[api::QueueEntry],
        outcomes: Vec<Processed>,
        events: &mut Vec<Event>,
        follow: &mut Vec<Processed>,
    ) -> Result<(), ClientError> {
        for (entry, p) in entries.iter().zip(outcomes) {
            match &p {
                Processed::Proposal { .. }
                | Processed::DeviceLinked(_)
                | Processed::DeviceRemoved(_)
                | Processed::Joined(_)
                | Processed::Invited(_) => follow.push(p.clone()),
                _ => {}
            }
            if let Some(e) = self.event(p, entry.id) {
                events.push(e);
            }
        }
        Ok(())
    }

    /// Fetches and processes everything queued; acknowledges each batch after it is stored.
    async fn process_queue_into(
        &mut self,
        events: &mut Vec<Event>,
        follow: &mut Vec<Processed>,
    ) -> Result<(), ClientError> {
        const BATCH: u32 = 200;
        loop {
            let entries = self.api.fetch(0, BATCH).await?;
            if entries.is_empty() {
                return Ok(());
            }
            self.process(&entries, events, follow).await?;
            let acks: Vec<i64> = entries.iter().map(|e| e.id).collect();
            self.api.ack(&acks).await?;
            if entries.len() < BATCH as usize {
                return Ok(());
            }
        }
    }

    async fn process_queue(&mut self) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        let mut follow = Vec::new();
        self.process_queue_into(&mut events, &mut follow).await?;
        Ok(events)
    }

    /// Does what processed entries asked for: commit members' leave proposals, add a newly
    /// linked device of ours to our conversations, top up key packages after a Welcome used one.
    async fn follow_up(&mut self, follow: Vec<Processed>) -> Result<(), ClientError> {
        for p in follow {
            match p {
                // Only a member who is in commits others' leaves: not one that left, nor one
                // that has not accepted an invitation (it would act in the group unasked).
                Processed::Proposal { group_id, .. } => {
                    let active = self
                        .engine
                        .conversation(&group_id)?
                        .is_some_and(|c| c.state == ConversationState::Active);
                    if active {
                        self.commit_proposals(&group_id).await?
                    }
                }
                // Only the device that minted the link code signs the new device in and adds
                // it, after checking its proof of the code's secret (`device_lists`).
                Processed::DeviceLinked(d) => self.follow_device_linked(&d).await?,
                Processed::DeviceRemoved(d) => self.remove_device_from_groups(&d.device_id).await?,
                Processed::Joined(_) | Processed::Invited(_) => self.replenish_on_sync().await?,
                _ => {}
            }
        }
        Ok(())
    }

    async fn add_linked_device(&mut self, device: &DeviceId) -> Result<(), ClientError> {
        let me = self.user().clone();
        self.ensure_device_list(&me).await?;
        self.pin_directory_keys(&me).await?;
        for c in self.engine.conversations()? {
            if c.state != ConversationState::Active {
                continue;
            }
            let g = c.group_id.clone();
            if self.engine.members(&g)?.iter().any(|(_, d)| d == device) {
                continue;
            }
            let claimed = self.api.claim_key_packages(&me, &g).await?;
            let mut claimed = self.listed_only(claimed)?;
            claimed.key_packages.retain(|k| &k.device_id == device);
            if claimed.key_packages.is_empty() {
                continue;
            }
            let claimed = [claimed];
            let device = device.clone();
            self.commit_with_retry(|e| {
                if e.members(&g)?.iter().any(|(_, d)| d == &device) {
                    return Ok(None);
                }
                Ok(Some(e.add_members(&g, &claimed)?))
            })
            .await?;
            if let Some(name) = self.announced_name(&g)? {
                self.send_body(&g, Body::GroupName(name)).await?;
            }
        }
        Ok(())
    }

    /// Fetches, processes, stores and acknowledges everything queued, then does the follow-up
    /// work it asks for, and tops up this device's key packages on the server (every sync, so
    /// packages others claimed are replaced even when no Welcome arrived). Returns what happened.
    pub async fn sync(&mut self) -> Result<Vec<Event>, ClientError> {
        // Device lists are checked again in each sync before a device missing from one is
        // refused (a list may have grown since).
        self.engine.start_device_checks();
        self.settle_pending_commits().await?;
        let mut events = Vec::new();
        // Follow-ups can queue more for us (commits race); a few rounds settle it.
        for _ in 0..4 {
            let mut follow = Vec::new();
            self.process_queue_into(&mut events, &mut follow).await?;
            if follow.is_empty() {
                break;
            }
            self.follow_up(follow).await?;
        }
        // What the directory checks find is raised as an alarm (shown by `haven sync` and
        // `haven keys`); the messages this sync stored are still its result.
        match self.kt_monitor_self().await {
            Ok(()) | Err(ClientError::Untrusted(_)) => {}
            Err(e) => return Err(e),
        }
        self.kt_check_heard().await?;
        self.replenish_on_sync().await?;
        Ok(events)
    }

    /// Like [`Client::sync`], but if no message arrived, waits up to `wait` on the push stream
    /// for one.
    pub async fn sync_wait(&mut self, wait: Duration) -> Result<Vec<Event>, ClientError> {
        let mut events = self.sync().await?;
        if wait.is_zero() || events.iter().any(|e| matches!(e, Event::Message { .. })) {
            return Ok(events);
        }
        let deadline = Instant::now() + wait;
        let mut stream = self.api.push_stream().await?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, stream.next()).await {
                Err(_) | Ok(Ok(None)) => break,
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(Some(entry))) => {
                    let got_message = self
                        .handle_pushed(&mut stream, std::slice::from_ref(&entry), &mut events)
                        .await?;
                    if got_message {
                        break;
                    }
                }
            }
        }
        // Whatever else arrived meanwhile.
        events.extend(self.sync().await?);
        Ok(events)
    }

    async fn handle_pushed(
        &mut self,
        stream: &mut PushStream,
        entries: &[api::QueueEntry],
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
        let before = events.len();
        let mut follow = Vec::new();
        self.process(entries, events, &mut follow).await?;
        let ids: Vec<i64> = entries.iter().map(|e| e.id).collect();
        stream.ack(&ids).await?;
        if !follow.is_empty() {
            self.follow_up(follow).await?;
        }
        Ok(events
            .get(before..)
            .unwrap_or(&[])
            .iter()
            .any(|e| matches!(e, Event::Message { .. })))
    }

    /// Runs the push stream until it closes or `on_event` returns false, processing and
    /// acknowledging entries as they arrive.
    pub async fn listen(
        &mut self,
        mut on_event: impl FnMut(&Event) -> bool,
    ) -> Result<(), ClientError> {
        for e in self.sync().await? {
            if !on_event(&e) {
                return Ok(());
            }
        }
        let mut stream = self.api.push_stream().await?;
        loop {
            let entries = stream.next_batch(PUSH_BATCH, PUSH_LINGER).await?;
            if entries.is_empty() {
                return Ok(());
            }
            let mut events = Vec::new();
            self.handle_pushed(&mut stream, &entries, &mut events)
                .await?;
            for e in &events {
                if !on_event(e) {
                    return Ok(());
                }
            }
        }
    }

    /// Opens the push stream (for interactive sessions that interleave sending and receiving).
    pub async fn push_stream(&mut self) -> Result<PushStream, ClientError> {
        Ok(self.api.push_stream().await?)
    }

    /// Processes pushed entries (one batch from [`PushStream::next_batch`]) in one local
    /// transaction, acknowledges them in one frame, and returns the events.
    pub async fn on_pushed(
        &mut self,
        stream: &mut PushStream,
        entries: &[api::QueueEntry],
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        self.handle_pushed(stream, entries, &mut events).await?;
        Ok(events)
    }
}

/// Whether the server refused a commit request for what it is (so resubmitting the same bytes
/// cannot succeed), as opposed to who sent it or when (session, rate limit) or not answering.
fn refused_for_good(e: &NetError) -> bool {
    matches!(
        e.code(),
        Some(
            ErrorCode::BadRequest
                | ErrorCode::Forbidden
                | ErrorCode::NotFound
                | ErrorCode::AlreadyExists
                | ErrorCode::LimitExceeded
                | ErrorCode::PayloadTooLarge
        )
    )
}

/// What became of a submitted commit.
enum CommitFate {
    /// Accepted and merged.
    Accepted(api::GroupState),
    /// Another commit won the epoch; ours is cleared.
    Lost,
}

use address::label_of;

fn hex_digest(id: &haven_proto::BlobId) -> [u8; 32] {
    let mut out = [0u8; 32];
    if let Ok(v) = hex::decode(id.as_str()) {
        if v.len() == 32 {
            out.copy_from_slice(&v);
        }
    }
    out
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
