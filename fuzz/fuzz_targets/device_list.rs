//! Signed device lists (`haven_kt::device_list`) on arbitrary bytes, as the server receives
//! them in uploads and clients in chains: decoding never panics, a list that decodes
//! re-encodes to exactly its bytes (the encoding is canonical), and verifying it as a first
//! list or as a successor of itself never panics. The link-code parser and proof check too.
#![no_main]

use haven_kt::device_list::{check_link_proof, secret_from_chars, verify_chain};
use haven_kt::SignedDeviceList;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(l) = SignedDeviceList::decode(data) {
        assert_eq!(l.encode(), data, "not canonical");
        let _ = l.verify_first();
        let _ = l.verify_self();
        let _ = l.verify_successor(&l);
        let _ = verify_chain(None, std::slice::from_ref(&l));
        let _ = l.changes_to(&l);
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(secret) = secret_from_chars(s) {
            let _ = check_link_proof(&secret, s, data, data, data);
        }
    }
});
