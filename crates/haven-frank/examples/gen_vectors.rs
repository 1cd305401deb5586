//! Writes the franking test vectors (deterministic).
//!
//! `cargo run -p haven-frank --example gen_vectors > crates/haven-frank/vectors/frank.json`
//! `cargo run -p haven-frank --example gen_vectors -- v2 > crates/haven-frank/vectors/frank-v2.json`
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use haven_frank::{
    commit, encode_aad, server_tag, server_tag_v2, Binding, FrankSalt, KeyId, ServerKey,
};

fn main() {
    let v2 = std::env::args().nth(1).as_deref() == Some("v2");
    let mut out = Vec::new();
    let contents: [&[u8]; 3] = [b"", b"hello, haven", &[0xff; 300]];
    let key_ids = [1u32, 2, 0xfedc_ba98];
    for (i, content) in contents.iter().enumerate() {
        let salt_bytes = [i as u8 + 1; 32];
        let salt = FrankSalt::from_slice(&salt_bytes).unwrap();
        let c = commit(&salt, content);
        let key = ServerKey::from_slice(&[0x42 + i as u8; 32]).unwrap();
        let sender = format!("{:032x}", 0xabcdef + i);
        let group = vec![0x10 + i as u8; 16];
        let time = 1_700_000_000_000u64 + i as u64;
        let binding = Binding {
            commitment: &c,
            sender_device: &sender,
            group_id: &group,
            received_at_ms: time,
        };
        let mut v = serde_json::json!({
            "content": hex::encode(content),
            "salt": hex::encode(salt_bytes),
            "commitment": hex::encode(c.as_bytes()),
            "aad": hex::encode(encode_aad(&c)),
            "server_key": hex::encode(key.as_bytes()),
            "sender_device": sender,
            "group_id": hex::encode(&group),
            "received_at_ms": time,
        });
        if v2 {
            let id = KeyId::new(key_ids[i]);
            v["key_id"] = id.get().into();
            v["server_tag"] = hex::encode(server_tag_v2(&key, id, &binding).encode()).into();
        } else {
            v["server_tag"] = hex::encode(server_tag(&key, &binding).as_bytes()).into();
        }
        out.push(v);
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
