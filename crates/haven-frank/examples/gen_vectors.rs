//! Writes `vectors/frank.json`: deterministic franking test vectors.
//!
//! `cargo run -p haven-frank --example gen_vectors > crates/haven-frank/vectors/frank.json`
#![allow(clippy::unwrap_used)]

use haven_frank::{commit, encode_aad, server_tag, Binding, FrankSalt, ServerKey};

fn main() {
    let mut out = Vec::new();
    let contents: [&[u8]; 3] = [b"", b"hello, haven", &[0xff; 300]];
    for (i, content) in contents.iter().enumerate() {
        let salt_bytes = [i as u8 + 1; 32];
        let salt = FrankSalt::from_slice(&salt_bytes).unwrap();
        let c = commit(&salt, content);
        let key = ServerKey::from_slice(&[0x42 + i as u8; 32]).unwrap();
        let sender = format!("{:032x}", 0xabcdef + i);
        let group = vec![0x10 + i as u8; 16];
        let time = 1_700_000_000_000u64 + i as u64;
        let tag = server_tag(
            &key,
            &Binding {
                commitment: &c,
                sender_device: &sender,
                group_id: &group,
                received_at_ms: time,
            },
        );
        out.push(serde_json::json!({
            "content": hex::encode(content),
            "salt": hex::encode(salt_bytes),
            "commitment": hex::encode(c.as_bytes()),
            "aad": hex::encode(encode_aad(&c)),
            "server_key": hex::encode(key.as_bytes()),
            "sender_device": sender,
            "group_id": hex::encode(&group),
            "received_at_ms": time,
            "server_tag": hex::encode(tag.as_bytes()),
        }));
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
