use super::*;
use akd::storage::memory::AsyncInMemoryDatabase;
use akd::storage::StorageManager;
use akd::{AkdValue, AzksParallelismConfig, HistoryParams as ServerHistoryParams};

type Dir = akd::Directory<KtConfig, AsyncInMemoryDatabase, VrfSecret>;

const VRF_SEED: [u8; 32] = [7; 32];
const ROOT_SEED: [u8; 32] = [9; 32];

struct Fixture {
    dir: Dir,
    sk: SigningKey,
    keys: KtKeys,
    roots: Vec<SignedRoot>,
}

async fn fixture() -> Fixture {
    let db = AsyncInMemoryDatabase::new();
    let vrf = VrfSecret(VRF_SEED);
    let vrf_key = vrf.public_key().unwrap();
    let dir = Dir::new(
        StorageManager::new_no_cache(db),
        vrf,
        AzksParallelismConfig::default(),
    )
    .await
    .unwrap();
    let sk = SigningKey::from_bytes(&ROOT_SEED);
    let keys = KtKeys {
        root_key: sk.verifying_key().to_bytes(),
        vrf_key,
    };
    let e0 = dir.get_epoch_hash().await.unwrap();
    let roots = vec![SignedRoot::sign(&sk, e0.epoch(), e0.hash())];
    Fixture {
        dir,
        sk,
        keys,
        roots,
    }
}

impl Fixture {
    async fn publish(&mut self, updates: &[(&str, &[u8])]) -> SignedRoot {
        let eh = self
            .dir
            .publish(
                updates
                    .iter()
                    .map(|(l, v)| (AkdLabel::from(*l), AkdValue(v.to_vec())))
                    .collect(),
            )
            .await
            .unwrap();
        let r = SignedRoot::sign(&self.sk, eh.epoch(), eh.hash());
        self.roots.push(r);
        r
    }

    async fn lookup(&self, user: &str) -> (SignedRoot, Vec<u8>) {
        let (proof, eh) = self.dir.lookup(AkdLabel::from(user)).await.unwrap();
        (
            SignedRoot::sign(&self.sk, eh.epoch(), eh.hash()),
            encode_lookup_proof(&proof),
        )
    }

    async fn history(&self, user: &str) -> (SignedRoot, Vec<u8>) {
        let (proof, eh) = self
            .dir
            .key_history(&AkdLabel::from(user), ServerHistoryParams::Complete)
            .await
            .unwrap();
        (
            SignedRoot::sign(&self.sk, eh.epoch(), eh.hash()),
            encode_history_proof(&proof),
        )
    }

    async fn audit(&self, from: u64, to: u64) -> Vec<u8> {
        encode_audit_proof(&self.dir.audit(from, to).await.unwrap())
    }
}

#[tokio::test]
async fn empty_directory_has_the_empty_root() {
    let f = fixture().await;
    assert_eq!(f.roots[0].epoch, 0);
    assert_eq!(f.roots[0].root, empty_root());
}

#[tokio::test]
async fn lookup_verifies_and_names_the_value() {
    let mut f = fixture().await;
    f.publish(&[("alice", b"list a1"), ("bob", b"list b1")])
        .await;
    f.publish(&[("alice", b"list a2")]).await;
    let (root, proof) = f.lookup("alice").await;
    assert_eq!(root.epoch, 2);
    let v = verify_lookup(&f.keys, &root, "alice", &proof).unwrap();
    assert_eq!(
        v,
        VerifiedValue {
            epoch: 2,
            version: 2,
            value: b"list a2".to_vec()
        }
    );
    let (root, proof) = f.lookup("bob").await;
    let v = verify_lookup(&f.keys, &root, "bob", &proof).unwrap();
    assert_eq!((v.epoch, v.version, v.value), (1, 1, b"list b1".to_vec()));
}

#[tokio::test]
async fn lookup_refuses_another_user_root_or_key() {
    let mut f = fixture().await;
    f.publish(&[("alice", b"a"), ("bob", b"b")]).await;
    let (root, proof) = f.lookup("alice").await;

    // The proof is alice's, not bob's.
    assert!(matches!(
        verify_lookup(&f.keys, &root, "bob", &proof),
        Err(DirectoryError::BadProof { .. })
    ));
    // Another root hash, correctly signed: the proof does not reach it.
    let mut other = root.root;
    other[0] ^= 1;
    let forged = SignedRoot::sign(&f.sk, root.epoch, other);
    assert!(matches!(
        verify_lookup(&f.keys, &forged, "alice", &proof),
        Err(DirectoryError::BadProof { .. })
    ));
    // The same root signed by a key that is not pinned.
    let stranger = SignedRoot::sign(&SigningKey::from_bytes(&[1; 32]), root.epoch, root.root);
    assert_eq!(
        verify_lookup(&f.keys, &stranger, "alice", &proof),
        Err(DirectoryError::BadRootSignature { epoch: root.epoch })
    );
    // Another VRF key pinned: the labels do not match.
    let keys = KtKeys {
        vrf_key: VrfSecret([8; 32]).public_key().unwrap(),
        ..f.keys
    };
    assert!(matches!(
        verify_lookup(&keys, &root, "alice", &proof),
        Err(DirectoryError::BadProof { .. })
    ));
}

#[tokio::test]
async fn lookup_refuses_a_changed_value() {
    let mut f = fixture().await;
    f.publish(&[("alice", b"honest list")]).await;
    let (root, proof) = f.lookup("alice").await;
    let mut p = decode_lookup_proof(&proof).unwrap();
    p.value = AkdValue(b"ghost list".to_vec());
    let tampered = encode_lookup_proof(&p);
    assert!(matches!(
        verify_lookup(&f.keys, &root, "alice", &tampered),
        Err(DirectoryError::BadProof { .. })
    ));
}

#[tokio::test]
async fn history_lists_every_value_newest_first() {
    let mut f = fixture().await;
    f.publish(&[("alice", b"v1")]).await;
    f.publish(&[("bob", b"b1")]).await;
    f.publish(&[("alice", b"v2")]).await;
    f.publish(&[("alice", b"v3"), ("bob", b"b2")]).await;
    let (root, proof) = f.history("alice").await;
    let h = verify_history(&f.keys, &root, "alice", &proof).unwrap();
    let got: Vec<(u64, u64, &[u8])> = h
        .iter()
        .map(|v| (v.epoch, v.version, v.value.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![(4, 3, &b"v3"[..]), (3, 2, &b"v2"[..]), (1, 1, &b"v1"[..])]
    );
    // A history with the newest update cut off is refused (the future-marker proofs no
    // longer match).
    let mut p = decode_history_proof(&proof).unwrap();
    p.update_proofs.remove(0);
    assert!(verify_history(&f.keys, &root, "alice", &encode_history_proof(&p)).is_err());
    // Bob's proof does not pass for alice.
    let (root, proof) = f.history("bob").await;
    assert!(verify_history(&f.keys, &root, "alice", &proof).is_err());
}

#[tokio::test]
async fn audit_verifies_consecutive_roots() {
    let mut f = fixture().await;
    f.publish(&[("alice", b"a1"), ("bob", b"b1")]).await;
    f.publish(&[("carol", b"c1")]).await;
    f.publish(&[("alice", b"a2")]).await;
    let proof = f.audit(0, 3).await;
    verify_audit(&f.keys, &f.roots, &proof).await.unwrap();
    let one = f.audit(2, 3).await;
    verify_audit(&f.keys, &f.roots[2..4], &one).await.unwrap();

    // A root replaced in the middle (signed, so only the proof can catch it).
    let mut roots = f.roots.clone();
    let mut h = roots[2].root;
    h[5] ^= 0x40;
    roots[2] = SignedRoot::sign(&f.sk, 2, h);
    assert!(matches!(
        verify_audit(&f.keys, &roots, &proof).await,
        Err(DirectoryError::BadProof { .. })
    ));
    // The proof of one step offered for another.
    assert!(verify_audit(&f.keys, &f.roots[1..3], &one).await.is_err());
    // Skipped epochs and a single root are refused before any proof is read.
    let skip = [f.roots[0], f.roots[2]];
    assert_eq!(
        verify_audit(&f.keys, &skip, &proof).await,
        Err(DirectoryError::NotConsecutive { after: 0, got: 2 })
    );
    assert!(verify_audit(&f.keys, &f.roots[..1], &proof).await.is_err());
    // An unsigned root.
    let mut roots = f.roots.clone();
    roots[1].signature[0] ^= 1;
    assert_eq!(
        verify_audit(&f.keys, &roots, &proof).await,
        Err(DirectoryError::BadRootSignature { epoch: 1 })
    );
}

#[tokio::test]
async fn audit_catches_a_removed_leaf() {
    // A server that drops bob from epoch 2 on can publish a root without him, but no
    // append-only proof links it to epoch 1.
    let mut honest = fixture().await;
    honest.publish(&[("alice", b"a1"), ("bob", b"b1")]).await;
    honest.publish(&[("carol", b"c1")]).await;

    let mut forked = fixture().await;
    forked.publish(&[("alice", b"a1"), ("bob", b"b1")]).await;
    let mut fork2 = fixture().await;
    fork2.publish(&[("alice", b"a1")]).await;
    fork2.publish(&[("carol", b"c1")]).await;
    assert_eq!(forked.roots[1], honest.roots[1]);
    let roots = [honest.roots[1], fork2.roots[2]];
    let proof = fork2.audit(1, 2).await;
    assert!(verify_audit(&honest.keys, &roots, &proof).await.is_err());
    let proof = honest.audit(1, 2).await;
    assert!(verify_audit(&honest.keys, &roots, &proof).await.is_err());
}

#[test]
fn split_view_needs_two_signed_roots() {
    let sk = SigningKey::from_bytes(&ROOT_SEED);
    let keys = KtKeys {
        root_key: sk.verifying_key().to_bytes(),
        vrf_key: VrfSecret(VRF_SEED).public_key().unwrap(),
    };
    let a = SignedRoot::sign(&sk, 5, [1; 32]);
    let b = SignedRoot::sign(&sk, 5, [2; 32]);
    let c = SignedRoot::sign(&sk, 6, [2; 32]);
    assert!(matches!(
        check_same_epoch(&keys, &a, &b),
        Err(DirectoryError::SplitView { epoch: 5, .. })
    ));
    assert_eq!(check_same_epoch(&keys, &a, &a), Ok(()));
    assert_eq!(check_same_epoch(&keys, &a, &c), Ok(()));
    // A claim nobody signed proves nothing about the server.
    let mut fake = b;
    fake.signature[3] ^= 1;
    assert_eq!(
        check_same_epoch(&keys, &a, &fake),
        Err(DirectoryError::BadRootSignature { epoch: 5 })
    );
}

#[test]
fn signed_root_encoding_is_strict() {
    let sk = SigningKey::from_bytes(&ROOT_SEED);
    let r = SignedRoot::sign(&sk, 42, [3; 32]);
    let e = r.encode();
    assert_eq!(SignedRoot::decode(&e), Ok(r));
    assert!(SignedRoot::decode(&e[..103]).is_err());
    let mut long = e.to_vec();
    long.push(0);
    assert!(SignedRoot::decode(&long).is_err());
}

#[test]
fn decoders_refuse_junk() {
    for junk in [&b""[..], b"\xff\xff\xff", b"\x0a\x05abc", &[0x12; 64]] {
        // Empty input parses as an empty protobuf message; the conversion then refuses the
        // missing fields.
        assert!(decode_lookup_proof(junk).is_err(), "{junk:?}");
        assert!(decode_history_proof(junk).is_err() || junk.is_empty());
    }
    let big = vec![0u8; MAX_PROOF_BYTES + 1];
    assert!(matches!(
        decode_audit_proof(&big),
        Err(DirectoryError::Malformed { .. })
    ));
}

/// Known-answer vectors: `vectors/kt_root.txt` (see the vectors README).
#[tokio::test]
async fn known_answer_vectors() {
    let text = include_str!("../../vectors/kt_root.txt");
    let mut f = fixture().await;
    f.publish(&[("alice", b"HDL1 alice v1"), ("bob", b"HDL1 bob v1")])
        .await;
    f.publish(&[("alice", b"HDL1 alice v2")]).await;
    let got = vectors_text(&f);
    if std::env::var_os("HAVEN_WRITE_VECTORS").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/kt_root.txt"),
            &got,
        )
        .unwrap();
        return;
    }
    assert_eq!(got, text);
}

fn vectors_text(f: &Fixture) -> String {
    let mut out = String::new();
    out.push_str(
        "# haven-kt signed epoch roots: ROOT_CONTEXT || epoch (u64 BE) || root, Ed25519\n",
    );
    out.push_str(&format!("root_key_seed = {}\n", hex::encode(ROOT_SEED)));
    out.push_str(&format!("root_key = {}\n", hex::encode(f.keys.root_key)));
    out.push_str(&format!("vrf_key_seed = {}\n", hex::encode(VRF_SEED)));
    out.push_str(&format!("vrf_key = {}\n", hex::encode(f.keys.vrf_key)));
    out.push_str(&format!("context = {}\n", hex::encode(ROOT_CONTEXT)));
    for r in &f.roots {
        out.push_str(&format!(
            "epoch = {}\nroot = {}\nmessage = {}\nsigned_root = {}\n",
            r.epoch,
            hex::encode(r.root),
            hex::encode(SignedRoot::message(r.epoch, &r.root)),
            hex::encode(r.encode())
        ));
    }
    out
}

#[tokio::test]
async fn audit_failures_name_the_epoch() {
    let mut f = fixture().await;
    for i in 0..4u8 {
        f.publish(&[("alice", &[b'a', i][..]), ("bob", &[b'b', i][..])])
            .await;
    }
    let proof = f.audit(0, 4).await;
    verify_audit(&f.keys, &f.roots, &proof).await.unwrap();
    // Epoch 3's root replaced and re-signed (the key holder can): the step into 3 fails.
    let mut roots = f.roots.clone();
    let mut h = roots[3].root;
    h[0] ^= 1;
    roots[3] = SignedRoot::sign(&f.sk, 3, h);
    match verify_audit(&f.keys, &roots, &proof).await {
        Err(DirectoryError::BadProof { epoch: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A proof with a step left out does not pass as a shorter audit.
    let mut p = decode_audit_proof(&proof).unwrap();
    p.proofs.pop();
    assert!(verify_audit(&f.keys, &f.roots, &encode_audit_proof(&p))
        .await
        .is_err());
}

/// Writes real proofs as seeds for the `kt_proofs` fuzz target (its first byte picks the
/// decoder: 0 lookup, 1 history, 2 audit):
/// `HAVEN_WRITE_FUZZ_SEEDS=fuzz/corpus/kt_proofs cargo test -p haven-kt write_fuzz_seeds -- --ignored`.
#[tokio::test]
#[ignore]
async fn write_fuzz_seeds() {
    let Some(dir) = std::env::var_os("HAVEN_WRITE_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut f = fixture().await;
    f.publish(&[("alice", b"a1"), ("bob", b"b1")]).await;
    f.publish(&[("alice", b"a2")]).await;
    let seeds = [
        (0u8, f.lookup("alice").await.1),
        (1, f.history("alice").await.1),
        (2, f.audit(1, 2).await),
    ];
    for (sel, bytes) in seeds {
        let mut b = vec![sel];
        b.extend_from_slice(&bytes);
        std::fs::write(dir.join(format!("seed-{sel}")), b).unwrap();
    }
    std::fs::write(dir.join("seed-root"), f.roots[1].encode()).unwrap();
}
