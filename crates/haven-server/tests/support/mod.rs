//! Test support: a real server on a loopback port, raw HTTP calls, and a minimal MLS member
//! built directly on openmls — attacker code uses exactly these public APIs.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey};
use haven_proto::api;
use haven_proto::{DeviceId, GroupId};
use haven_server::{ServerConfig, ServerLimits};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use serde_json::{json, Value};

pub const CS: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

pub struct TestServer {
    pub url: String,
    pub running: haven_server::RunningServer,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// The test's directory (the server's data directory is `data` inside it).
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }
}

pub async fn server_with(limits: ServerLimits) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::embedded(dir.path().join("data"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.limits = limits;
    let running = haven_server::start(config).await.unwrap();
    TestServer {
        url: format!("http://{}", running.addr),
        running,
        _dir: dir,
    }
}

pub async fn server() -> TestServer {
    server_with(ServerLimits::default()).await
}

pub async fn call(
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let c = reqwest::Client::new();
    let mut rb = match method {
        "GET" => c.get(url),
        "PUT" => c.put(url),
        "DELETE" => c.delete(url),
        _ => c.post(url),
    };
    if let Some(t) = token {
        rb = rb.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        rb = rb
            .header("Content-Type", "application/json")
            .body(b.to_string());
    }
    let resp = rb.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn rand_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b
}

/// A registered device with its MLS key material: enough to act as an honest member or as an
/// attacker with an ordinary account.
pub struct Dev {
    pub user: String,
    pub id: DeviceId,
    pub token: String,
    pub auth: SigningKey,
    pub mls: Member,
}

/// The registration body for `user` with these keys (the MLS key signed by the auth key).
pub fn register_body(user: &str, auth: &SigningKey, mls_public: &[u8]) -> Value {
    register_body_born(user, auth, mls_public, ADULT_BIRTH_DATE)
}

/// The registration body with a date of birth.
pub fn register_body_born(user: &str, auth: &SigningKey, mls_public: &[u8], born: &str) -> Value {
    let sig = auth.sign(&api::mls_key_message(mls_public));
    json!({
        "user": user,
        "device_name": "test",
        "auth_key": B64.encode(auth.verifying_key().to_bytes()),
        "mls_key": B64.encode(mls_public),
        "mls_key_signature": B64.encode(sig.to_bytes()),
        "birth_date": born,
    })
}

/// The date of birth test accounts register with unless a test needs a minor.
pub const ADULT_BIRTH_DATE: &str = "1990-01-01";

pub async fn register(s: &TestServer, user: &str) -> Dev {
    register_born(s, user, ADULT_BIRTH_DATE).await
}

/// Registers `user` born on `born` (`YYYY-MM-DD`).
pub async fn register_born(s: &TestServer, user: &str, born: &str) -> Dev {
    let auth = SigningKey::from_bytes(&rand_bytes());
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let (st, v) = call(
        "POST",
        &format!("{}/v1/register", s.url),
        None,
        Some(register_body_born(user, &auth, signer.public(), born)),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let id: DeviceId = v["device_id"].as_str().unwrap().parse().unwrap();
    let token = login(s, &id, &auth).await;
    let identity = format!("{user}/{id}");
    Dev {
        user: user.into(),
        id,
        token,
        auth,
        mls: Member::new(signer, identity.as_bytes()),
    }
}

pub async fn login(s: &TestServer, id: &DeviceId, key: &SigningKey) -> String {
    let (st, v) = call(
        "POST",
        &format!("{}/v1/login/challenge", s.url),
        None,
        Some(json!({"device_id": id})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let nonce = B64.decode(v["nonce"].as_str().unwrap()).unwrap();
    let sig = key.sign(&api::login_message(id, &nonce));
    let (st, v) = call(
        "POST",
        &format!("{}/v1/login", s.url),
        None,
        Some(json!({"device_id": id, "nonce": B64.encode(&nonce), "signature": B64.encode(sig.to_bytes())})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_owned()
}

/// An MLS client on openmls, with a basic credential of any identity it likes (that is the
/// attacker's freedom) and its own signature key.
pub struct Member {
    pub provider: OpenMlsRustCrypto,
    pub signer: SignatureKeyPair,
    pub identity: Vec<u8>,
}

pub fn serialize(m: &MlsMessageOut) -> Vec<u8> {
    m.tls_serialize_detached().unwrap()
}

fn plaintext_handshakes() -> WireFormatPolicy {
    PURE_PLAINTEXT_WIRE_FORMAT_POLICY
}

impl Member {
    pub fn new(signer: SignatureKeyPair, identity: &[u8]) -> Member {
        Member {
            provider: OpenMlsRustCrypto::default(),
            signer,
            identity: identity.to_vec(),
        }
    }

    /// A member with a fresh key claiming `identity`.
    pub fn forged(identity: &str) -> Member {
        Member::new(
            SignatureKeyPair::new(SignatureScheme::ED25519).unwrap(),
            identity.as_bytes(),
        )
    }

    pub fn credential(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.identity.clone()).into(),
            signature_key: self.signer.public().into(),
        }
    }

    /// A key package as `MLSMessage` bytes.
    pub fn key_package(&self, last_resort: bool) -> Vec<u8> {
        let mut b = KeyPackage::builder().leaf_node_capabilities(
            Capabilities::builder()
                .ciphersuites(vec![CS])
                .extensions(vec![ExtensionType::LastResort])
                .build(),
        );
        if last_resort {
            b = b.mark_as_last_resort();
        }
        let bundle = b
            .build(CS, &self.provider, &self.signer, self.credential())
            .unwrap();
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    }

    /// A new group with only us, and its signed GroupInfo with the ratchet tree.
    pub fn create_group(&self, gid: &GroupId) -> (MlsGroup, Vec<u8>) {
        let cfg = MlsGroupCreateConfig::builder()
            .ciphersuite(CS)
            .use_ratchet_tree_extension(true)
            .wire_format_policy(plaintext_handshakes())
            .capabilities(
                Capabilities::builder()
                    .ciphersuites(vec![CS])
                    .extensions(vec![ExtensionType::LastResort])
                    .build(),
            )
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &cfg,
            openmls::prelude::GroupId::from_slice(gid.as_bytes()),
            self.credential(),
        )
        .unwrap();
        let info = group
            .export_group_info(self.provider.crypto(), &self.signer, true)
            .unwrap();
        (group, serialize(&info))
    }

    /// A commit adding these key packages (`MLSMessage` bytes), and its Welcome.
    pub fn add(&self, group: &mut MlsGroup, kps: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
        let kps: Vec<KeyPackage> = kps
            .iter()
            .map(|b| {
                let MlsMessageBodyIn::KeyPackage(kp) =
                    MlsMessageIn::tls_deserialize_exact(b).unwrap().extract()
                else {
                    panic!("not a key package")
                };
                kp.validate(self.provider.crypto(), ProtocolVersion::Mls10)
                    .unwrap()
            })
            .collect();
        let (commit, welcome, _) = group
            .add_members(&self.provider, &self.signer, &kps)
            .unwrap();
        (serialize(&commit), serialize(&welcome))
    }

    /// A commit removing the members at these leaves.
    pub fn remove(&self, group: &mut MlsGroup, leaves: &[u32]) -> Vec<u8> {
        let leaves: Vec<LeafNodeIndex> = leaves.iter().map(|l| LeafNodeIndex::new(*l)).collect();
        let (commit, _, _) = group
            .remove_members(&self.provider, &self.signer, &leaves)
            .unwrap();
        serialize(&commit)
    }

    /// An empty commit (an update of our own leaf).
    pub fn update(&self, group: &mut MlsGroup) -> Vec<u8> {
        let bundle = group
            .self_update(&self.provider, &self.signer, LeafNodeParameters::default())
            .unwrap();
        serialize(bundle.commit())
    }

    /// Our Remove proposal (leaving).
    pub fn leave(&self, group: &mut MlsGroup) -> Vec<u8> {
        serialize(&group.leave_group(&self.provider, &self.signer).unwrap())
    }

    pub fn merge(&self, group: &mut MlsGroup) {
        group.merge_pending_commit(&self.provider).unwrap();
    }

    pub fn discard(&self, group: &mut MlsGroup) {
        group.clear_pending_commit(self.provider.storage()).unwrap();
    }

    /// Joins from a Welcome.
    pub fn join(&self, welcome: &[u8]) -> MlsGroup {
        let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(welcome)
            .unwrap()
            .extract()
        else {
            panic!("not a welcome")
        };
        let cfg = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(plaintext_handshakes())
            .build();
        StagedWelcome::new_from_welcome(&self.provider, &cfg, w, None)
            .unwrap()
            .into_group(&self.provider)
            .unwrap()
    }
}

/// A `PrivateMessage` frame (RFC 9420 §6.3) with the given header fields and opaque ciphertext:
/// the server only reads the clear header of application messages.
pub fn private_message(
    group: &GroupId,
    epoch: u64,
    content_type: u8,
    aad: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&2u16.to_be_bytes());
    haven_proto::mls_frame::encode_vector(&mut m, group.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(content_type);
    haven_proto::mls_frame::encode_vector(&mut m, aad);
    haven_proto::mls_frame::encode_vector(&mut m, b"encrypted-sender-data");
    haven_proto::mls_frame::encode_vector(&mut m, body);
    m
}

/// A `PublicMessage` frame header of content type `content_type` followed by junk: what the
/// review's wedge attack posted as a commit.
pub fn junk_public_message(group: &GroupId, epoch: u64, content_type: u8) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    haven_proto::mls_frame::encode_vector(&mut m, group.as_bytes());
    m.extend_from_slice(&epoch.to_be_bytes());
    m.push(1); // sender type member
    m.extend_from_slice(&0u32.to_be_bytes());
    haven_proto::mls_frame::encode_vector(&mut m, b"");
    m.push(content_type);
    m.extend_from_slice(b"junk");
    m
}

pub fn franked(group: &GroupId, epoch: u64) -> (Vec<u8>, haven_frank::Commitment) {
    let salt = haven_frank::FrankSalt::random();
    let c = haven_frank::commit(&salt, b"content");
    (
        private_message(group, epoch, 1, &haven_frank::encode_aad(&c), b"ciphertext"),
        c,
    )
}

impl TestServer {
    /// Uploads key packages for `d` (with a last-resort one).
    pub async fn upload_key_packages(&self, d: &Dev, n: usize) {
        let kps: Vec<String> = (0..n)
            .map(|_| B64.encode(d.mls.key_package(false)))
            .collect();
        let (st, v) = call(
            "POST",
            &format!("{}/v1/key-packages", self.url),
            Some(&d.token),
            Some(json!({"key_packages": kps, "last_resort": B64.encode(d.mls.key_package(true))})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }

    /// Creates a group on the server owned by `owner`; returns the id and owner's MLS group.
    pub async fn new_group(&self, owner: &Dev) -> (GroupId, MlsGroup) {
        let g = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
        let (group, info) = owner.mls.create_group(&g);
        let (st, v) = call(
            "POST",
            &format!("{}/v1/groups", self.url),
            Some(&owner.token),
            Some(json!({"group_id": g, "group_info": B64.encode(info)})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        (g, group)
    }

    /// Creates a 1:1 conversation of `owner` with `peer` (`direct_with`).
    pub async fn new_direct(&self, owner: &Dev, peer: &str) -> (GroupId, MlsGroup) {
        let g = GroupId::from_bytes(&rand_bytes::<16>()).unwrap();
        let (group, info) = owner.mls.create_group(&g);
        let (st, v) = call(
            "POST",
            &format!("{}/v1/groups", self.url),
            Some(&owner.token),
            Some(json!({"group_id": g, "group_info": B64.encode(info), "direct_with": peer})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        (g, group)
    }

    /// Claims one key package per device of `user` for group `g` as `who`.
    pub async fn claim(&self, who: &Dev, user: &str, g: &GroupId) -> (u16, Vec<Vec<u8>>) {
        let (st, v) = call(
            "POST",
            &format!("{}/v1/users/{user}/key-packages/claim", self.url),
            Some(&who.token),
            Some(json!({"group_id": g})),
        )
        .await;
        if st != 200 {
            return (st, Vec::new());
        }
        let kps = v["key_packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| B64.decode(k["key_package"].as_str().unwrap()).unwrap())
            .collect();
        (st, kps)
    }

    /// Posts a commit (and Welcome).
    pub async fn post_commit(
        &self,
        who: &Dev,
        g: &GroupId,
        commit: &[u8],
        welcome: Option<&[u8]>,
    ) -> (u16, Value) {
        let mut body = json!({"commit": B64.encode(commit)});
        if let Some(w) = welcome {
            body["welcome"] = json!(B64.encode(w));
        }
        call(
            "POST",
            &format!("{}/v1/groups/{g}/commits", self.url),
            Some(&who.token),
            Some(body),
        )
        .await
    }

    /// `who` claims `target`'s key packages for `g`, adds them with a real commit and posts it.
    pub async fn add(
        &self,
        who: &Dev,
        group: &mut MlsGroup,
        g: &GroupId,
        target: &Dev,
    ) -> (u16, Value, Vec<u8>) {
        let (st, kps) = self.claim(who, &target.user, g).await;
        assert_eq!(st, 200);
        let (commit, welcome) = who.mls.add(group, &kps);
        let (st, v) = self.post_commit(who, g, &commit, Some(&welcome)).await;
        if st == 200 {
            who.mls.merge(group);
        } else {
            who.mls.discard(group);
        }
        (st, v, welcome)
    }

    pub async fn queue(&self, who: &Dev) -> Vec<api::QueueEntry> {
        let (st, v) = call(
            "GET",
            &format!("{}/v1/queue?limit=500", self.url),
            Some(&who.token),
            None,
        )
        .await;
        assert_eq!(st, 200, "{v}");
        serde_json::from_value::<api::QueueBatch>(v)
            .unwrap()
            .entries
    }

    pub async fn group_state(&self, who: &Dev, g: &GroupId) -> (u16, Value) {
        call(
            "GET",
            &format!("{}/v1/groups/{g}", self.url),
            Some(&who.token),
            None,
        )
        .await
    }
}

/// Grants `role` to `user` on the test server's store directly (as `haven admin role grant`
/// does), with its audit line.
pub async fn grant(s: &TestServer, user: &str, role: haven_server::moderation::Role) {
    let store = haven_server::store::open_store(s.dir().join("data/haven.db").to_str().unwrap())
        .await
        .unwrap();
    let line = haven_server::moderation::AuditLine {
        actor: "admin-cli".into(),
        action: "role.grant".into(),
        case: None,
        detail: format!("{} {user}", role.as_str()),
        at: 1,
    };
    assert!(store
        .grant_role(&user.parse().unwrap(), role, 1, &line)
        .await
        .unwrap());
}
