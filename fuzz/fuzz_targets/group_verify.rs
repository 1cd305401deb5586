//! The server's verifier of group changes (`haven_server::groups`) on hostile bytes: key
//! packages, GroupInfos, commits with Welcomes and leave proposals. Each input is tried raw and
//! as a patch (XOR at the positions it names) over a real message of the same kind, so the
//! fuzzer reaches the checks behind the MLS signature, not only the parser. Never a panic; a
//! patched message that still verifies must say what the original says (the same leaf, creator,
//! or membership after the commit): parts outside the signature may change, what the server
//! derives may not.
#![no_main]

use std::sync::OnceLock;

use haven_proto::GroupId;
use haven_server::groups::{verify_key_package, GroupView, CIPHERSUITE};
use libfuzzer_sys::fuzz_target;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

struct Real {
    gid: GroupId,
    state: Vec<u8>,
    state_after_add: Vec<u8>,
    group_info: Vec<u8>,
    key_package: Vec<u8>,
    commit: Vec<u8>,
    welcome: Vec<u8>,
    update: Vec<u8>,
}

fn member(name: &str) -> (OpenMlsRustCrypto, SignatureKeyPair, CredentialWithKey) {
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    let cred = CredentialWithKey {
        credential: BasicCredential::new(format!("{name}/{:032x}", name.len()).into_bytes())
            .into(),
        signature_key: signer.public().into(),
    };
    (OpenMlsRustCrypto::default(), signer, cred)
}

fn real() -> &'static Real {
    static REAL: OnceLock<Real> = OnceLock::new();
    REAL.get_or_init(|| {
        let ser = |m: &MlsMessageOut| m.tls_serialize_detached().unwrap();
        let gid = GroupId::from_bytes(&[5; 16]).unwrap();
        let (pa, sa, ca) = member("alice");
        let (pb, sb, cb) = member("bob");
        let cfg = MlsGroupCreateConfig::builder()
            .ciphersuite(CIPHERSUITE)
            .use_ratchet_tree_extension(true)
            .wire_format_policy(PURE_PLAINTEXT_WIRE_FORMAT_POLICY)
            .build();
        let mut g = MlsGroup::new_with_group_id(
            &pa,
            &sa,
            &cfg,
            openmls::prelude::GroupId::from_slice(gid.as_bytes()),
            ca,
        )
        .unwrap();
        let group_info = ser(&g.export_group_info(pa.crypto(), &sa, true).unwrap());
        let (_, created) = GroupView::create(&gid, &group_info).unwrap();
        let kp = KeyPackage::builder()
            .build(CIPHERSUITE, &pb, &sb, cb)
            .unwrap()
            .key_package()
            .clone();
        let key_package = ser(&MlsMessageOut::from(kp.clone()));
        let (commit, welcome, _) = g.add_members(&pa, &sa, &[kp]).unwrap();
        let (commit, welcome) = (ser(&commit), ser(&welcome));
        let state_after_add = GroupView::load(&gid, &created.state)
            .unwrap()
            .verify_commit(&commit, Some(&welcome))
            .unwrap()
            .state_after;
        g.merge_pending_commit(&pa).unwrap();
        let update = ser(
            g.self_update(&pa, &sa, LeafNodeParameters::default())
                .unwrap()
                .commit(),
        );
        Real {
            gid,
            state: created.state,
            state_after_add,
            group_info,
            key_package,
            commit,
            welcome,
            update,
        }
    })
}

fn patched(base: &[u8], patch: &[u8]) -> Vec<u8> {
    let mut out = base.to_vec();
    for pair in patch.chunks(3) {
        if let [hi, lo, x] = pair {
            if let Some(b) = out.get_mut(usize::from(u16::from_be_bytes([*hi, *lo])) % base.len().max(1)) {
                *b ^= *x;
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let r = real();
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let view = || GroupView::load(&r.gid, &r.state).unwrap();
    match selector % 6 {
        0 => {
            let _ = verify_key_package(rest);
            let _ = GroupView::create(&r.gid, rest);
            let _ = view().verify_commit(rest, None);
            let _ = view().verify_leave(rest);
        }
        1 => {
            if let Ok(v) = verify_key_package(&patched(&r.key_package, rest)) {
                assert_eq!(v.leaf, verify_key_package(&r.key_package).unwrap().leaf);
            }
        }
        2 => {
            if let Ok((_, c)) = GroupView::create(&r.gid, &patched(&r.group_info, rest)) {
                assert_eq!(c.creator, GroupView::create(&r.gid, &r.group_info).unwrap().1.creator);
            }
        }
        3 => {
            if let Ok(v) = view().verify_commit(&patched(&r.commit, rest), Some(&r.welcome)) {
                let original = view().verify_commit(&r.commit, Some(&r.welcome)).unwrap();
                assert_eq!(v.members_after, original.members_after);
            }
        }
        4 => {
            let w = patched(&r.welcome, rest);
            // The Welcome is not signed: a patched one may only pass if its secrets still name
            // exactly the added key package.
            let _ = view().verify_commit(&r.commit, Some(&w));
        }
        _ => {
            // The update is a commit of the epoch after the add.
            let after = || GroupView::load(&r.gid, &r.state_after_add).unwrap();
            let c = patched(&r.update, rest);
            if let Ok(v) = after().verify_commit(&c, None) {
                let original = after().verify_commit(&r.update, None).unwrap();
                assert_eq!(v.members_after, original.members_after);
            }
            let _ = after().verify_leave(&c);
        }
    }
});
