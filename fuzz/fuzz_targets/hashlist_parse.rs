//! Hash-list text/CSV parser on arbitrary bytes: never panics; the list it builds survives a
//! snapshot round trip.
#![no_main]

use haven_pdq::hashlist::{parse_list, snapshot, InvalidLinePolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(out) = parse_list(data, InvalidLinePolicy::Skip) {
        let bytes = snapshot::to_bytes(&out.list);
        assert_eq!(snapshot::from_bytes(&bytes).ok(), Some(out.list));
    }
});
