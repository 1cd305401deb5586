//! Age bands without the birth date.
//!
//! The server turns a date of birth into an [`AgeRecord`] once, at registration, and forgets the
//! date. The record keeps the band, the day it next changes and how it was established; the later
//! bands' change days are derived from the stored day ([`AgeRecord::at`]).
//!
//! Birthdays of people born on 29 February fall on 1 March in non-leap years ([`birthday`]). That
//! is conservative by one day: a band changes a day later than a 28-February reading would, never
//! earlier, so nobody is treated as older than they are.

use serde::{Deserialize, Serialize};
use time::{Date, Month, OffsetDateTime};

use crate::{AgeBand, AgeSource};

/// The oldest plausible age, in years: dates of birth before that are refused.
pub const MAX_AGE_YEARS: i32 = 130;

/// The age at which each minor band ends: 13, 16, 18.
const BAND_ENDS: [(AgeBand, i32); 3] = [
    (AgeBand::Under13, 13),
    (AgeBand::Teen13To15, 16),
    (AgeBand::Teen16To17, 18),
];

/// Why a date of birth was refused. The messages are for people and never repeat the date.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    /// Not a strict `YYYY-MM-DD` calendar date; the string says what is wrong (not the input).
    #[error("the date of birth must be a real date written YYYY-MM-DD: {0}")]
    Malformed(String),
    /// After today.
    #[error("the date of birth is in the future")]
    InFuture,
    /// More than [`MAX_AGE_YEARS`] years ago.
    #[error("the date of birth is more than 130 years ago")]
    Implausible,
    /// Younger than the operator's minimum age for new accounts.
    #[error("you must be at least {min_years} years old to create an account")]
    TooYoung {
        /// The minimum age in years.
        min_years: u8,
    },
}

/// Parses a strict `YYYY-MM-DD` date: four, two and two ASCII digits separated by `-`, and a
/// real calendar date (no 30 February).
pub fn parse_date(s: &str) -> Result<Date, AgeError> {
    let b = s.as_bytes();
    if b.len() != 10 {
        return Err(AgeError::Malformed("expected 10 characters".into()));
    }
    let shape_ok = b.iter().enumerate().all(|(i, c)| match i {
        4 | 7 => *c == b'-',
        _ => c.is_ascii_digit(),
    });
    if !shape_ok {
        return Err(AgeError::Malformed("expected digits as YYYY-MM-DD".into()));
    }
    // The shape check above makes these ASCII-digit slices at these offsets.
    let num = |r: std::ops::Range<usize>| -> u32 {
        b.get(r)
            .unwrap_or_default()
            .iter()
            .fold(0u32, |n, c| n * 10 + u32::from(c - b'0'))
    };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let month = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .ok_or_else(|| AgeError::Malformed("no such month".into()))?;
    let year = i32::try_from(year).map_err(|_| AgeError::Malformed("no such year".into()))?;
    let day = u8::try_from(day).map_err(|_| AgeError::Malformed("no such day".into()))?;
    Date::from_calendar_date(year, month, day)
        .map_err(|_| AgeError::Malformed("no such day in that month".into()))
}

/// Writes a date as `YYYY-MM-DD` (years before 1 or after 9999 have a sign or more digits and
/// do not parse back; no date of birth or band change is ever there).
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// The UTC calendar day of an instant (Unix milliseconds). Instants outside the calendar's range
/// saturate to its first or last day.
pub fn utc_day(now_ms: i64) -> Date {
    match OffsetDateTime::from_unix_timestamp(now_ms.div_euclid(1000)) {
        Ok(t) => t.date(),
        Err(_) if now_ms < 0 => Date::MIN,
        Err(_) => Date::MAX,
    }
}

/// The `years`-th birthday of someone born on `birth`. Born on 29 February, the birthday in a
/// non-leap year is 1 March (conservative by one day: the band changes a day later, never
/// earlier). Years beyond the calendar's range saturate to its first or last day.
pub fn birthday(birth: Date, years: i32) -> Date {
    let year = birth.year().saturating_add(years);
    if year > Date::MAX.year() {
        return Date::MAX;
    }
    if year < Date::MIN.year() {
        return Date::MIN;
    }
    Date::from_calendar_date(year, birth.month(), birth.day())
        // Only 29 February can fail, and only in a non-leap year, where 1 March exists.
        .or_else(|_| Date::from_calendar_date(year, Month::March, 1))
        .unwrap_or(if years < 0 { Date::MIN } else { Date::MAX })
}

/// What the server keeps about an account's age: never the date of birth.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgeRecord {
    /// The band as of the last time the record was brought up to date ([`AgeRecord::at`]).
    pub band: AgeBand,
    /// The day the band next changes (`YYYY-MM-DD` in JSON); `None` for adults, and for a minor
    /// band an operator set without a date ("unknown, stays until corrected").
    #[serde(with = "opt_date")]
    pub changes_on: Option<Date>,
    /// How the age was established.
    pub source: AgeSource,
}

impl AgeRecord {
    /// The band from a date of birth as of `today` (self-declared), with the day it next
    /// changes. Refuses dates after `today` and more than [`MAX_AGE_YEARS`] years before it.
    /// Under-13 records are returned like any other: whether they may register is policy
    /// ([`crate::policy::check_registration`]).
    pub fn from_birth_date(birth: Date, today: Date) -> Result<AgeRecord, AgeError> {
        if birth > today {
            return Err(AgeError::InFuture);
        }
        if birthday(birth, MAX_AGE_YEARS) < today {
            return Err(AgeError::Implausible);
        }
        let (band, changes_on) = BAND_ENDS
            .iter()
            .map(|&(band, end)| (band, birthday(birth, end)))
            .find(|&(_, ends)| today < ends)
            .map_or((AgeBand::Adult, None), |(band, ends)| (band, Some(ends)));
        Ok(AgeRecord {
            band,
            changes_on,
            source: AgeSource::SelfDeclared,
        })
    }

    /// The record as of `today`: while the change day has come, the band advances (under-13 →
    /// 13-15 on the 13th birthday, → 16-17 on the 16th, → adult on the 18th). The source is kept.
    ///
    /// Only the change day is stored, so the next one is derived from it: the 16th birthday is
    /// the 13th + 3 years, the 18th is the 16th + 2 years, with the same 29-February → 1-March
    /// rule applied to the stored day. That equals the true birthday, or is one day later: for a
    /// birth on any day but 29 February the stored day has the birth's month and day, so adding
    /// years lands on the true birthday. For a 29-February birth the stored day is 29 February
    /// (a leap year; the next birthday 2 or 3 years on is in a non-leap year, where both rules
    /// give 1 March) or 1 March (then the derived day is 1 March, while the true birthday is
    /// 29 February if that later year is a leap year: one day later, never earlier).
    pub fn at(&self, today: Date) -> AgeRecord {
        let mut r = *self;
        // At most three steps: each advances the band, and adult has no next change.
        while let Some(day) = r.changes_on.filter(|d| *d <= today) {
            (r.band, r.changes_on) = match r.band {
                AgeBand::Under13 => (AgeBand::Teen13To15, Some(birthday(day, 3))),
                AgeBand::Teen13To15 => (AgeBand::Teen16To17, Some(birthday(day, 2))),
                AgeBand::Teen16To17 | AgeBand::Adult => (AgeBand::Adult, None),
            };
        }
        if r.band == AgeBand::Adult {
            r.changes_on = None;
        }
        r
    }

    /// Accounts that existed before age bands: adult, self-declared.
    pub fn legacy_adult() -> AgeRecord {
        AgeRecord {
            band: AgeBand::Adult,
            changes_on: None,
            source: AgeSource::SelfDeclared,
        }
    }

    /// The operator's correction: `band`, verified or self-declared, with an explicit next change
    /// day. For a minor band, `None` means the day is unknown and the band stays until corrected
    /// again (nothing is guessed). For adults the day is ignored: adult is the last band.
    pub fn corrected(band: AgeBand, changes_on: Option<Date>, verified: bool) -> AgeRecord {
        AgeRecord {
            band,
            changes_on: if band.is_minor() { changes_on } else { None },
            source: if verified {
                AgeSource::Verified
            } else {
                AgeSource::SelfDeclared
            },
        }
    }
}

/// `Option<Date>` as `"YYYY-MM-DD"` or `null`, through [`format_date`] and [`parse_date`].
mod opt_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;

    pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&super::format_date(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| super::parse_date(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn rec(birth: Date, today: Date) -> AgeRecord {
        AgeRecord::from_birth_date(birth, today).unwrap()
    }

    #[test]
    fn parses_strict_dates_only() {
        assert_eq!(parse_date("2010-02-03").unwrap(), date!(2010 - 02 - 03));
        assert_eq!(parse_date("2012-02-29").unwrap(), date!(2012 - 02 - 29));
        for bad in [
            "2010-2-03",
            "2010-02-30",
            "2011-02-29",
            "abcd-ef-gh",
            "20100-01-01",
            "2010-13-01",
            "2010-00-10",
            "2010-01-00",
            "2010/01/01",
            " 2010-01-01",
            "2010-01-01 ",
            "+010-01-01",
            "",
            "2010-01-0١",
        ] {
            assert!(
                matches!(parse_date(bad), Err(AgeError::Malformed(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[test]
    fn error_messages_never_echo_the_date() {
        let e = parse_date("2010-02-30").unwrap_err().to_string();
        assert!(!e.contains("2010") && !e.contains("30"), "{e}");
        let e = AgeError::TooYoung { min_years: 13 }.to_string();
        assert!(e.contains("13"), "{e}");
    }

    #[test]
    fn formats_and_round_trips() {
        assert_eq!(format_date(date!(0987 - 01 - 09)), "0987-01-09");
        let d = date!(2024 - 12 - 31);
        assert_eq!(parse_date(&format_date(d)).unwrap(), d);
    }

    #[test]
    fn utc_day_of_instants() {
        assert_eq!(utc_day(0), date!(1970 - 01 - 01));
        assert_eq!(utc_day(-1), date!(1969 - 12 - 31));
        assert_eq!(utc_day(86_400_000 - 1), date!(1970 - 01 - 01));
        assert_eq!(utc_day(86_400_000), date!(1970 - 01 - 02));
        assert_eq!(utc_day(i64::MAX), Date::MAX);
        assert_eq!(utc_day(i64::MIN), Date::MIN);
    }

    #[test]
    fn birthdays_including_feb_29() {
        assert_eq!(birthday(date!(2010 - 05 - 17), 13), date!(2023 - 05 - 17));
        assert_eq!(birthday(date!(2012 - 02 - 29), 4), date!(2016 - 02 - 29));
        assert_eq!(birthday(date!(2012 - 02 - 29), 13), date!(2025 - 03 - 01));
        assert_eq!(birthday(date!(2012 - 02 - 29), i32::MAX), Date::MAX);
        assert_eq!(birthday(date!(2012 - 02 - 29), i32::MIN), Date::MIN);
    }

    #[test]
    fn each_boundary_on_the_exact_day() {
        let birth = date!(2010 - 05 - 17);
        for (years, before, after) in [
            (13, AgeBand::Under13, AgeBand::Teen13To15),
            (16, AgeBand::Teen13To15, AgeBand::Teen16To17),
            (18, AgeBand::Teen16To17, AgeBand::Adult),
        ] {
            let day = birthday(birth, years);
            let prev = day.previous_day().unwrap();
            let r = rec(birth, prev);
            assert_eq!(r.band, before, "{years}: day before");
            assert_eq!(r.changes_on, Some(day));
            assert_eq!(rec(birth, day).band, after, "{years}: on the day");
            // The stored record advances on the same day.
            assert_eq!(r.at(prev), r);
            assert_eq!(r.at(day).band, after);
            assert_eq!(r.at(day), rec(birth, day));
        }
        assert_eq!(rec(birth, date!(2030 - 01 - 01)).changes_on, None);
    }

    #[test]
    fn feb_29_birth_changes_on_mar_1_in_non_leap_years() {
        let birth = date!(2012 - 02 - 29);
        // 13th birthday: 2025 is not a leap year.
        let r = rec(birth, date!(2025 - 02 - 28));
        assert_eq!(r.band, AgeBand::Under13);
        assert_eq!(r.changes_on, Some(date!(2025 - 03 - 01)));
        // Derived 16th: 2028 is a leap year; true birthday 29 Feb, derived 1 Mar (one day later).
        let r = r.at(date!(2025 - 03 - 01));
        assert_eq!(r.band, AgeBand::Teen13To15);
        assert_eq!(r.changes_on, Some(date!(2028 - 03 - 01)));
        assert_eq!(birthday(birth, 16), date!(2028 - 02 - 29));
        // Registered at 13-15: the 16th birthday falls in leap year 2024 and is stored as is;
        // the derived 18th (2026, not a leap year) is the true one.
        let birth = date!(2008 - 02 - 29);
        let r = rec(birth, date!(2022 - 01 - 01));
        assert_eq!(r.changes_on, Some(date!(2024 - 02 - 29)));
        let r = r.at(date!(2024 - 02 - 29));
        assert_eq!(r.band, AgeBand::Teen16To17);
        assert_eq!(r.changes_on, Some(birthday(birth, 18)));
        assert_eq!(r.changes_on, Some(date!(2026 - 03 - 01)));
        assert_eq!(r.at(date!(2026 - 02 - 28)).band, AgeBand::Teen16To17);
        assert_eq!(r.at(date!(2026 - 03 - 01)).band, AgeBand::Adult);
    }

    #[test]
    fn at_advances_several_bands_across_years() {
        let birth = date!(2011 - 09 - 02);
        let r = rec(birth, date!(2020 - 01 - 01));
        assert_eq!(r.band, AgeBand::Under13);
        let later = r.at(date!(2028 - 01 - 01));
        assert_eq!(later.band, AgeBand::Teen16To17);
        assert_eq!(later.changes_on, Some(date!(2029 - 09 - 02)));
        let adult = r.at(date!(2040 - 01 - 01));
        assert_eq!(adult, AgeRecord::legacy_adult());
        // Verified stays verified.
        let v = AgeRecord::corrected(AgeBand::Under13, Some(date!(2024 - 09 - 02)), true);
        assert_eq!(v.at(date!(2030 - 01 - 01)).source, AgeSource::Verified);
    }

    #[test]
    fn under_13_records() {
        let r = rec(date!(2015 - 01 - 01), date!(2020 - 01 - 01));
        assert_eq!(r.band, AgeBand::Under13);
        assert_eq!(r.changes_on, Some(date!(2028 - 01 - 01)));
        assert_eq!(r.source, AgeSource::SelfDeclared);
        // Born today.
        let r = rec(date!(2020 - 01 - 01), date!(2020 - 01 - 01));
        assert_eq!(r.band, AgeBand::Under13);
    }

    #[test]
    fn refuses_future_and_implausible() {
        let today = date!(2025 - 06 - 10);
        assert_eq!(
            AgeRecord::from_birth_date(date!(2025 - 06 - 11), today),
            Err(AgeError::InFuture)
        );
        // Exactly 130 today is accepted; a day older is not.
        assert!(AgeRecord::from_birth_date(date!(1895 - 06 - 10), today).is_ok());
        assert_eq!(
            AgeRecord::from_birth_date(date!(1895 - 06 - 09), today),
            Err(AgeError::Implausible)
        );
        assert_eq!(
            AgeRecord::from_birth_date(Date::MIN, today),
            Err(AgeError::Implausible)
        );
    }

    #[test]
    fn corrected_records() {
        let r = AgeRecord::corrected(AgeBand::Teen13To15, None, true);
        assert_eq!(r.source, AgeSource::Verified);
        // Unknown change day: stays until corrected.
        assert_eq!(r.at(Date::MAX), r);
        let r = AgeRecord::corrected(AgeBand::Adult, Some(date!(2030 - 01 - 01)), false);
        assert_eq!(r, AgeRecord::legacy_adult());
    }

    #[test]
    fn record_json() {
        let r = rec(date!(2012 - 02 - 29), date!(2020 - 01 - 01));
        let j = serde_json::to_string(&r).unwrap();
        assert_eq!(
            j,
            r#"{"band":"under-13","changes_on":"2025-03-01","source":"self-declared"}"#
        );
        assert_eq!(serde_json::from_str::<AgeRecord>(&j).unwrap(), r);
        let a = serde_json::to_string(&AgeRecord::legacy_adult()).unwrap();
        assert_eq!(
            serde_json::from_str::<AgeRecord>(&a).unwrap(),
            AgeRecord::legacy_adult()
        );
        assert!(serde_json::from_str::<AgeRecord>(
            r#"{"band":"13-15","changes_on":"2025-02-30","source":"verified"}"#
        )
        .is_err());
    }

    fn any_date() -> impl Strategy<Value = Date> {
        (Date::MIN.to_julian_day()..=Date::MAX.to_julian_day())
            .prop_map(|j| Date::from_julian_day(j).unwrap())
    }

    proptest! {
        #[test]
        fn format_parse_round_trip(j in date!(0000 - 01 - 01).to_julian_day()..=date!(9999 - 12 - 31).to_julian_day()) {
            let d = Date::from_julian_day(j).unwrap();
            prop_assert_eq!(parse_date(&format_date(d)).unwrap(), d);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,12}") {
            let _ = parse_date(&s);
        }

        #[test]
        fn stored_record_agrees_with_birth_date(
            birth_j in date!(1900 - 01 - 01).to_julian_day()..date!(2030 - 01 - 01).to_julian_day(),
            d1 in 0i32..8000, d2 in 0i32..8000,
        ) {
            let birth = Date::from_julian_day(birth_j).unwrap();
            let t1 = Date::from_julian_day(birth_j + d1).unwrap();
            let t2 = Date::from_julian_day(birth_j + d1 + d2).unwrap();
            let stored = rec(birth, t1).at(t2);
            let fresh = rec(birth, t2);
            // The derived band is the true one, or (29 February births) one band younger for a day.
            if stored.band != fresh.band {
                prop_assert!(birth.month() == Month::February && birth.day() == 29);
                prop_assert!(stored.band < fresh.band);
                prop_assert_eq!(stored.at(t2.next_day().unwrap()).band, fresh.band);
            }
        }

        #[test]
        fn total_on_any_dates(a in any_date(), b in any_date(), y in any::<i32>()) {
            let _ = birthday(a, y);
            if let Ok(r) = AgeRecord::from_birth_date(a, b) {
                let _ = r.at(a);
                let _ = r.at(Date::MAX);
            }
        }
    }
}
