//! The CyberTipline API's XML answers on arbitrary bytes: parsing never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = haven_cybertip::fuzz_parse_response(data);
});
