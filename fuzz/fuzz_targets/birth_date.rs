//! The date of birth a registration carries, on arbitrary bytes: parsing never panics, and a
//! date that parses gives a band whose next change (if any) lies after the day it was read on.
#![no_main]

use haven_safety::age::{self, AgeRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (day, rest) = match data.split_first_chunk::<8>() {
        Some((d, rest)) => (i64::from_le_bytes(*d), rest),
        None => (0, data),
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let today = age::utc_day(day);
    if let Ok(birth) = age::parse_date(text) {
        assert_eq!(age::format_date(birth), text);
        if let Ok(record) = AgeRecord::from_birth_date(birth, today) {
            if let Some(next) = record.changes_on {
                assert!(next > today);
            }
            let later = record.at(today);
            assert_eq!(later.band, record.band);
        }
    }
});
