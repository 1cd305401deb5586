//! The server's reader of RFC 9420 clear-text headers, and the franking AAD decoder, on arbitrary
//! bytes: never a panic, and a parsed header's slices lie inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = haven_proto::mls_frame::wire_format(data);
    if let Ok(h) = haven_proto::mls_frame::parse_header(data) {
        assert!(h.group_id.len() <= data.len());
        assert!(h.authenticated_data.len() <= data.len());
        let _ = haven_frank::decode_aad(h.authenticated_data);
    }
});
