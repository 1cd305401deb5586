//! Verification of MLS handshake messages against the server's public view of a group.
//!
//! Pure functions over openmls's [`PublicGroup`] (RFC 9420 §6.2 "PublicMessage", §12.4
//! "Commit", §12.1 "Proposals", §12.4.3.1 "Joining via Welcome Message"): no I/O, no clock. A
//! [`GroupView`] is the public state of one group (ratchet tree, group context, interim
//! transcript hash, confirmation tag, proposals of the current epoch) as openmls keeps it,
//! serialised into one versioned blob ([`GroupView::state`]) that the store keeps with the
//! group's epoch.
//!
//! Each check returns a value that only it can build ([`VerifiedCommit`], [`VerifiedLeave`],
//! [`VerifiedKeyPackage`], [`CreatedGroup`]); the service acts on those, never on what a client
//! declares. What is still left to the caller is what needs the database: that each
//! [`Leaf`]'s signature key is the key registered for the device it names, that the key
//! packages a commit adds were claimed by its committer, and that the committer is the
//! authenticated device.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::RwLock;

use haven_proto::{parse_mls_identity, DeviceId, GroupId, UserName};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    BasicCredential, Ciphersuite, Credential, KeyPackageIn, MlsMessageBodyIn, MlsMessageIn,
    ProcessedMessageContent, Proposal, ProposalStore, ProtocolMessage, ProtocolVersion,
    PublicGroup, Sender,
};
use openmls_memory_storage::MemoryStorage;
use openmls_rust_crypto::RustCrypto;

/// Haven's one ciphersuite (the client's `CIPHERSUITE`).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Version tag of the serialised [`GroupView`] state.
const STATE_VERSION: u8 = 1;

/// Why a handshake message, GroupInfo, Welcome or key package was refused. Deliberately about
/// the message, never about secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes do not parse as what they should be.
    #[error("malformed MLS message: {0}")]
    Malformed(&'static str),
    /// The message is for an epoch other than the group's current one.
    #[error("the message is for epoch {message}; the group is at epoch {group}")]
    Epoch {
        /// The message's epoch.
        message: u64,
        /// The group's.
        group: u64,
    },
    /// MLS verification failed (signature, membership, proposal validity, tree, …).
    #[error("the MLS message does not verify: {0}")]
    Invalid(String),
    /// A valid MLS message that Haven does not accept (a proposal type, an external sender).
    #[error("not accepted here: {0}")]
    Unsupported(&'static str),
    /// A leaf whose credential is not a Haven identity, or an identity twice in the group.
    #[error("invalid member identity: {0}")]
    Identity(&'static str),
    /// The Welcome does not match the commit.
    #[error("welcome: {0}")]
    Welcome(&'static str),
    /// The stored state is unreadable (the database was changed behind the server's back).
    #[error("stored group state is corrupt: {0}")]
    State(&'static str),
}

type VResult<T> = Result<T, VerifyError>;

/// A member leaf as the server sees it: where it is, whom it names, and its signature key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Leaf index in the ratchet tree.
    pub index: u32,
    /// The user the credential names.
    pub user: UserName,
    /// The device the credential names.
    pub device: DeviceId,
    /// The leaf's signature public key (Ed25519, 32 bytes for Haven's ciphersuite).
    pub signature_key: Vec<u8>,
}

/// A leaf added by a commit, with the reference of the key package it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedLeaf {
    /// The new member.
    pub leaf: Leaf,
    /// `KeyPackageRef` (RFC 9420 §5.2) of its key package.
    pub key_package_ref: Vec<u8>,
}

/// A commit that verified against the group's state at its epoch.
#[derive(Debug)]
pub struct VerifiedCommit {
    /// The committer's leaf (before the commit).
    pub committer: Leaf,
    /// The committer's new leaf from the update path, if the commit has one.
    pub updated: Option<Leaf>,
    /// Leaves the commit adds.
    pub added: Vec<AddedLeaf>,
    /// Leaves the commit removes (as they were before it).
    pub removed: Vec<Leaf>,
    /// The epoch the commit was made in.
    pub epoch: u64,
    /// Every member after the commit.
    pub members_after: Vec<Leaf>,
    /// The group's state after the commit.
    pub state_after: Vec<u8>,
}

/// A member's verified proposal to remove itself, added to the epoch's proposals.
#[derive(Debug)]
pub struct VerifiedLeave {
    /// The leaving member.
    pub leaver: Leaf,
    /// The epoch.
    pub epoch: u64,
    /// The group's state with the proposal queued.
    pub state_after: Vec<u8>,
}

/// A group announced by its creator, from a GroupInfo that verified.
#[derive(Debug)]
pub struct CreatedGroup {
    /// The creator, the group's only member.
    pub creator: Leaf,
    /// The group's initial state.
    pub state: Vec<u8>,
}

/// A key package that verified (signature, ciphersuite, Haven identity).
#[derive(Debug, Clone)]
pub struct VerifiedKeyPackage {
    /// The leaf it would become.
    pub leaf: Leaf,
    /// Its `KeyPackageRef`.
    pub key_package_ref: Vec<u8>,
    /// Whether it carries the `last_resort` extension.
    pub last_resort: bool,
}

fn invalid(e: impl std::fmt::Debug) -> VerifyError {
    // openmls's errors name the failed check (ValSem…); they carry no secret.
    let text = format!("{e:?}");
    VerifyError::Invalid(text.chars().take(200).collect())
}

/// The `user/device` a credential names, if it is a Haven identity.
pub fn credential_identity(cred: &Credential) -> Option<(UserName, DeviceId)> {
    let basic = BasicCredential::try_from(cred.clone()).ok()?;
    parse_mls_identity(basic.identity())
}

fn leaf_of(index: u32, cred: &Credential, key: &[u8]) -> VResult<Leaf> {
    let (user, device) = credential_identity(cred).ok_or(VerifyError::Identity(
        "a leaf's credential is not user/device",
    ))?;
    Ok(Leaf {
        index,
        user,
        device,
        signature_key: key.to_vec(),
    })
}

fn parse_message(bytes: &[u8]) -> VResult<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|_| VerifyError::Malformed("not an MLSMessage"))
}

/// Verifies a key package a device uploads for itself: valid (RFC 9420 §10.1: signature by its
/// leaf key, supported version and ciphersuite, distinct init and encryption keys), Haven's
/// ciphersuite, and a Haven identity.
pub fn verify_key_package(bytes: &[u8]) -> VResult<VerifiedKeyPackage> {
    let crypto = RustCrypto::default();
    let MlsMessageBodyIn::KeyPackage(kp) = parse_message(bytes)?.extract() else {
        return Err(VerifyError::Malformed("not a key package"));
    };
    let kp: KeyPackageIn = kp;
    let kp = kp
        .validate(&crypto, ProtocolVersion::Mls10)
        .map_err(invalid)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(VerifyError::Unsupported("a ciphersuite other than Haven's"));
    }
    let key_package_ref = kp.hash_ref(&crypto).map_err(invalid)?.as_slice().to_vec();
    let leaf = kp.leaf_node();
    Ok(VerifiedKeyPackage {
        leaf: leaf_of(0, leaf.credential(), leaf.signature_key().as_slice())?,
        key_package_ref,
        last_resort: kp.last_resort(),
    })
}

/// The public state of one group.
pub struct GroupView {
    storage: MemoryStorage,
    group: PublicGroup,
}

impl std::fmt::Debug for GroupView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupView")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

impl GroupView {
    /// Builds the view of a new group from its creator's signed GroupInfo (with the
    /// `ratchet_tree` extension): the GroupInfo's signature must verify with the signer's leaf,
    /// the tree must be valid (openmls `PublicGroup::from_external`), and the group must be
    /// `group_id` at epoch 0 with exactly one member, in Haven's ciphersuite.
    pub fn create(group_id: &GroupId, group_info: &[u8]) -> VResult<(GroupView, CreatedGroup)> {
        let crypto = RustCrypto::default();
        let MlsMessageBodyIn::GroupInfo(vgi) = parse_message(group_info)?.extract() else {
            return Err(VerifyError::Malformed("not a GroupInfo"));
        };
        if vgi.ciphersuite() != CIPHERSUITE {
            return Err(VerifyError::Unsupported("a ciphersuite other than Haven's"));
        }
        if vgi.group_id().as_slice() != group_id.as_bytes() {
            return Err(VerifyError::Malformed("the GroupInfo is for another group"));
        }
        let tree = vgi
            .extensions()
            .ratchet_tree()
            .ok_or(VerifyError::Malformed(
                "the GroupInfo carries no ratchet_tree extension",
            ))?
            .ratchet_tree()
            .clone();
        let storage = MemoryStorage::default();
        let (group, _) =
            PublicGroup::from_external(&crypto, &storage, tree, vgi, ProposalStore::new())
                .map_err(invalid)?;
        let view = GroupView { storage, group };
        if view.epoch() != 0 {
            return Err(VerifyError::Unsupported("a new group must be at epoch 0"));
        }
        let members = view.members()?;
        let [creator] = members.as_slice() else {
            return Err(VerifyError::Unsupported(
                "a new group must have exactly one member",
            ));
        };
        let created = CreatedGroup {
            creator: creator.clone(),
            state: view.state(),
        };
        Ok((view, created))
    }

    /// Loads a view from [`GroupView::state`] bytes.
    pub fn load(group_id: &GroupId, state: &[u8]) -> VResult<GroupView> {
        let storage = decode_state(state)?;
        let group = PublicGroup::load(
            &storage,
            &openmls::prelude::GroupId::from_slice(group_id.as_bytes()),
        )
        .map_err(|_| VerifyError::State("unreadable public group"))?
        .ok_or(VerifyError::State("no public group in the state"))?;
        Ok(GroupView { storage, group })
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    /// The serialised state: a version byte, a count, then each openmls storage record as
    /// length-prefixed key and value, in key order (so equal states give equal bytes).
    pub fn state(&self) -> Vec<u8> {
        let values = self
            .storage
            .values
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let sorted: BTreeMap<&Vec<u8>, &Vec<u8>> = values.iter().collect();
        let mut out = vec![STATE_VERSION];
        out.extend_from_slice(&(sorted.len() as u32).to_be_bytes());
        for (k, v) in sorted {
            for field in [k, v] {
                out.extend_from_slice(&(field.len() as u32).to_be_bytes());
                out.extend_from_slice(field);
            }
        }
        out
    }

    /// Every member leaf, in leaf order. Fails if a leaf is not a Haven identity.
    pub fn members(&self) -> VResult<Vec<Leaf>> {
        self.group
            .members()
            .map(|m| leaf_of(m.index.u32(), &m.credential, &m.signature_key))
            .collect()
    }

    fn leaf_at(&self, index: openmls::prelude::LeafNodeIndex) -> VResult<Leaf> {
        let leaf = self.group.leaf(index).ok_or(VerifyError::Invalid(
            "no member at the sender's leaf".into(),
        ))?;
        leaf_of(
            index.u32(),
            leaf.credential(),
            leaf.signature_key().as_slice(),
        )
    }

    fn protocol_message(
        &self,
        bytes: &[u8],
        want: openmls::prelude::ContentType,
    ) -> VResult<ProtocolMessage> {
        let msg = parse_message(bytes)?;
        let MlsMessageBodyIn::PublicMessage(pm) = msg.extract() else {
            return Err(VerifyError::Unsupported(
                "handshake messages must be MLS PublicMessages",
            ));
        };
        let pm = ProtocolMessage::from(pm);
        if pm.content_type() != want {
            return Err(VerifyError::Malformed("unexpected content type"));
        }
        if pm.group_id().as_slice() != self.group.group_id().as_slice() {
            return Err(VerifyError::Malformed("the message is for another group"));
        }
        let (message, group) = (pm.epoch().as_u64(), self.epoch());
        if message != group {
            return Err(VerifyError::Epoch { message, group });
        }
        Ok(pm)
    }

    /// Verifies a commit (RFC 9420 §12.4.2: framing, the committer's signature, every proposal
    /// by value and by reference, the update path and the confirmation tag via openmls), accepts
    /// only Add and Remove proposals (and the committer's update path), checks that the
    /// committer keeps its identity and that no device is in the group twice, and — when the
    /// commit adds anyone — that `welcome` is an MLS Welcome in Haven's ciphersuite whose
    /// secrets are for exactly the added key packages. Consumes the view: the result carries the
    /// state after the commit.
    pub fn verify_commit(
        mut self,
        commit: &[u8],
        welcome: Option<&[u8]>,
    ) -> VResult<VerifiedCommit> {
        let crypto = RustCrypto::default();
        let pm = self.protocol_message(commit, openmls::prelude::ContentType::Commit)?;
        let epoch = self.epoch();
        let processed = self.group.process_message(&crypto, pm).map_err(invalid)?;
        let Sender::Member(sender) = *processed.sender() else {
            return Err(VerifyError::Unsupported("commits from outside the group"));
        };
        let committer = self.leaf_at(sender)?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(VerifyError::Malformed("not a commit"));
        };
        for qp in staged.queued_proposals() {
            match qp.proposal() {
                Proposal::Add(_) | Proposal::Remove(_) => {}
                _ => {
                    return Err(VerifyError::Unsupported(
                        "a commit may only add and remove members",
                    ))
                }
            }
        }
        let updated = match staged.update_path_leaf_node() {
            Some(leaf) => {
                let new = leaf_of(
                    committer.index,
                    leaf.credential(),
                    leaf.signature_key().as_slice(),
                )?;
                if (&new.user, &new.device) != (&committer.user, &committer.device) {
                    return Err(VerifyError::Identity(
                        "the committer's update path names another identity",
                    ));
                }
                Some(new)
            }
            None => None,
        };
        let mut added = Vec::new();
        for a in staged.add_proposals() {
            let kp = a.add_proposal().key_package();
            let leaf = kp.leaf_node();
            added.push(AddedLeaf {
                leaf: leaf_of(u32::MAX, leaf.credential(), leaf.signature_key().as_slice())?,
                key_package_ref: kp.hash_ref(&crypto).map_err(invalid)?.as_slice().to_vec(),
            });
        }
        let mut removed = Vec::new();
        for r in staged.remove_proposals() {
            removed.push(self.leaf_at(r.remove_proposal().removed())?);
        }
        match (welcome, added.is_empty()) {
            (None, true) => {}
            (Some(_), true) => return Err(VerifyError::Welcome("a Welcome without added members")),
            (None, false) => return Err(VerifyError::Welcome("added members need a Welcome")),
            (Some(w), false) => check_welcome(w, &added)?,
        }
        self.group
            .merge_commit(&self.storage, *staged)
            .map_err(|_| VerifyError::State("merging the commit failed"))?;
        let members_after = self.members()?;
        let mut devices = BTreeSet::new();
        if !members_after.iter().all(|m| devices.insert(&m.device)) {
            return Err(VerifyError::Identity(
                "a device would be in the group twice",
            ));
        }
        // Added leaves now have their place in the tree.
        for a in &mut added {
            if let Some(m) = members_after.iter().find(|m| m.device == a.leaf.device) {
                a.leaf.index = m.index;
            }
        }
        if self.epoch() != epoch.saturating_add(1) {
            return Err(VerifyError::State(
                "the commit did not advance the epoch by one",
            ));
        }
        Ok(VerifiedCommit {
            committer,
            updated,
            added,
            removed,
            epoch,
            members_after,
            state_after: self.state(),
        })
    }

    /// Verifies a proposal: a member's Remove of its own leaf (leaving), signed by that leaf, in
    /// the current epoch. Any other proposal is refused. Consumes the view: the result carries
    /// the state with the proposal queued, so the commit that applies it can refer to it.
    pub fn verify_leave(mut self, proposal: &[u8]) -> VResult<VerifiedLeave> {
        let crypto = RustCrypto::default();
        let pm = self.protocol_message(proposal, openmls::prelude::ContentType::Proposal)?;
        let epoch = self.epoch();
        let processed = self.group.process_message(&crypto, pm).map_err(invalid)?;
        let Sender::Member(sender) = *processed.sender() else {
            return Err(VerifyError::Unsupported("proposals from outside the group"));
        };
        let leaver = self.leaf_at(sender)?;
        let ProcessedMessageContent::ProposalMessage(qp) = processed.into_content() else {
            return Err(VerifyError::Malformed("not a proposal"));
        };
        match qp.proposal() {
            Proposal::Remove(r) if r.removed() == sender => {}
            _ => {
                return Err(VerifyError::Unsupported(
                    "the only proposal accepted is a member removing itself",
                ))
            }
        }
        self.group
            .add_proposal(&self.storage, *qp)
            .map_err(|_| VerifyError::State("storing the proposal failed"))?;
        Ok(VerifiedLeave {
            leaver,
            epoch,
            state_after: self.state(),
        })
    }
}

/// RFC 9420 §12.4.3.1: a Welcome carries one `EncryptedGroupSecrets` per new member, addressed
/// by the `KeyPackageRef` of its key package. The server releases the Welcome only to the devices
/// the commit adds, so it must be for exactly those key packages.
fn check_welcome(bytes: &[u8], added: &[AddedLeaf]) -> VResult<()> {
    let MlsMessageBodyIn::Welcome(w) = parse_message(bytes)?.extract() else {
        return Err(VerifyError::Welcome("not an MLS Welcome"));
    };
    if w.ciphersuite() != CIPHERSUITE {
        return Err(VerifyError::Welcome("a ciphersuite other than Haven's"));
    }
    let mut for_whom: HashMap<Vec<u8>, usize> = HashMap::new();
    for s in w.secrets() {
        *for_whom
            .entry(s.new_member().as_slice().to_vec())
            .or_default() += 1;
    }
    let mut expected: HashMap<Vec<u8>, usize> = HashMap::new();
    for a in added {
        *expected.entry(a.key_package_ref.clone()).or_default() += 1;
    }
    if for_whom != expected {
        return Err(VerifyError::Welcome(
            "its secrets are not for exactly the added key packages",
        ));
    }
    Ok(())
}

/// Reads [`GroupView::state`] bytes back into openmls's storage records.
fn decode_state(bytes: &[u8]) -> VResult<MemoryStorage> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> VResult<&'a [u8]> {
        if b.len() < n {
            return Err(VerifyError::State("truncated"));
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Ok(head)
    }
    fn u32_at(b: &mut &[u8]) -> VResult<usize> {
        let raw: [u8; 4] = take(b, 4)?
            .try_into()
            .map_err(|_| VerifyError::State("truncated"))?;
        usize::try_from(u32::from_be_bytes(raw)).map_err(|_| VerifyError::State("length"))
    }
    let mut b = bytes;
    if take(&mut b, 1)? != [STATE_VERSION] {
        return Err(VerifyError::State("unknown state version"));
    }
    let count = u32_at(&mut b)?;
    let mut values = HashMap::new();
    for _ in 0..count {
        let kl = u32_at(&mut b)?;
        let k = take(&mut b, kl)?.to_vec();
        let vl = u32_at(&mut b)?;
        let v = take(&mut b, vl)?.to_vec();
        values.insert(k, v);
    }
    if !b.is_empty() {
        return Err(VerifyError::State("trailing bytes"));
    }
    Ok(MemoryStorage {
        values: RwLock::new(values),
    })
}
