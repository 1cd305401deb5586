//! The franking tag decoder (v1 and v2 tags, as reports and stored envelopes carry them) and the
//! keyring file decoder on arbitrary bytes: never a panic; a decoded tag encodes back to the
//! same bytes; a decoded keyring encodes to a file that decodes again.
#![no_main]

use haven_frank::{EncodedTag, Keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = EncodedTag::decode(data) {
        assert_eq!(t.encode(), data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(ring) = Keyring::decode_file(text) {
            let again = Keyring::decode_file(&ring.encode_file()).expect("re-encoded keyring");
            assert_eq!(again.current_id(), ring.current_id());
        }
    }
});
