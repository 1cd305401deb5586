//! Snapshot decoder on arbitrary bytes: must return an error or a list, never panic; a list it
//! accepts must re-encode to the same bytes.
#![no_main]

use haven_pdq::hashlist::snapshot;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(list) = snapshot::from_bytes(data) {
        assert_eq!(snapshot::to_bytes(&list), data);
    }
});
