//! Checks the implementation against the committed vectors in `vectors/frank.json`.
#![allow(clippy::unwrap_used)]

use haven_frank::*;

#[derive(serde::Deserialize)]
struct Vector {
    content: String,
    salt: String,
    commitment: String,
    aad: String,
    server_key: String,
    sender_device: String,
    group_id: String,
    received_at_ms: u64,
    server_tag: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn franking_vectors() {
    let text = include_str!("../vectors/frank.json");
    let vectors: Vec<Vector> = serde_json::from_str(text).unwrap();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let salt = FrankSalt::from_slice(&h(&v.salt)).unwrap();
        let c = commit(&salt, &h(&v.content));
        assert_eq!(c.as_bytes().as_slice(), h(&v.commitment).as_slice());
        assert_eq!(encode_aad(&c), h(&v.aad));
        assert_eq!(decode_aad(&h(&v.aad)).unwrap(), c);
        let key = ServerKey::from_slice(&h(&v.server_key)).unwrap();
        let group = h(&v.group_id);
        let b = Binding {
            commitment: &c,
            sender_device: &v.sender_device,
            group_id: &group,
            received_at_ms: v.received_at_ms,
        };
        let tag = ServerTag::from_slice(&h(&v.server_tag)).unwrap();
        assert_eq!(server_tag(&key, &b), tag);
        verify_server_tag(&key, &b, &tag).unwrap();
    }
}

#[derive(serde::Deserialize)]
struct VectorV2 {
    commitment: String,
    server_key: String,
    key_id: u32,
    sender_device: String,
    group_id: String,
    received_at_ms: u64,
    server_tag: String,
}

#[test]
fn franking_vectors_v2() {
    let text = include_str!("../vectors/frank-v2.json");
    let vectors: Vec<VectorV2> = serde_json::from_str(text).unwrap();
    assert_eq!(vectors.len(), 3);
    for v in vectors {
        let c = Commitment::from_slice(&h(&v.commitment)).unwrap();
        let key = ServerKey::from_slice(&h(&v.server_key)).unwrap();
        let id = KeyId::new(v.key_id);
        let group = h(&v.group_id);
        let b = Binding {
            commitment: &c,
            sender_device: &v.sender_device,
            group_id: &group,
            received_at_ms: v.received_at_ms,
        };
        let tag = h(&v.server_tag);
        assert_eq!(server_tag_v2(&key, id, &b).encode(), tag);
        assert_eq!(
            EncodedTag::decode(&tag).unwrap(),
            server_tag_v2(&key, id, &b)
        );
        let ring = Keyring::new(
            id,
            KeyEntry {
                key,
                created_at_ms: 0,
            },
            false,
        );
        ring.verify(&b, &tag).unwrap();
    }
}
