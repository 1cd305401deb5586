//! The device-proof message (`api::device_proof_message`) against the vectors in
//! `vectors/device_proof.json`, which were computed independently (Python's `struct`, from the
//! format in the function's docs). The subject is ASCII (a device id) or empty.
#![allow(clippy::unwrap_used)]

use haven_proto::api::device_proof_message;
use haven_proto::DeviceId;

#[test]
fn device_proof_vectors() {
    let text = include_str!("../vectors/device_proof.json");
    let vectors: serde_json::Value = serde_json::from_str(text).unwrap();
    let vectors = vectors.as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for v in vectors {
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap().to_owned();
        let device = DeviceId::new(&s("device_id")).unwrap();
        let nonce = hex::decode(s("nonce")).unwrap();
        let m = device_proof_message(&s("purpose"), &device, &nonce, s("subject").as_bytes());
        assert_eq!(hex::encode(&m), s("message"), "{}", s("purpose"));
        // Purposes and the login label are kept apart.
        assert_ne!(
            m,
            device_proof_message("other", &device, &nonce, s("subject").as_bytes())
        );
        assert!(!m.starts_with(b"haven/login/v1"));
    }
}
