//! Instants written as ISO 8601 in UTC (`2024-01-15T14:30:00.000Z`), the form the API documents for
//! `incidentDateTime` and every event's `dateTime`.

use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A timestamp that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Not an RFC 3339 date-time (e.g. `2024-01-15T14:30:00Z`, `2024-01-15T09:30:00-05:00`).
    #[error("not an RFC 3339 date-time")]
    NotRfc3339,
    /// Outside the years 1900 to 9999.
    #[error("outside the years 1900 to 9999")]
    OutOfRange,
}

/// An instant, held in UTC with millisecond precision.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// From milliseconds since the Unix epoch (what Haven's server stores).
    pub fn from_unix_millis(ms: u64) -> Result<Self, TimestampError> {
        let nanos = i128::from(ms) * 1_000_000;
        let t = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .map_err(|_| TimestampError::OutOfRange)?;
        Self::checked(t)
    }

    /// From an RFC 3339 string with any offset; converted to UTC, sub-millisecond digits dropped.
    pub fn parse_rfc3339(s: &str) -> Result<Self, TimestampError> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|_| TimestampError::NotRfc3339)?;
        Self::checked(t)
    }

    fn checked(t: OffsetDateTime) -> Result<Self, TimestampError> {
        let t = t.to_offset(UtcOffset::UTC);
        if !(1900..=9999).contains(&t.year()) {
            return Err(TimestampError::OutOfRange);
        }
        let ms = t.millisecond();
        let t = t
            .replace_millisecond(ms)
            .map_err(|_| TimestampError::OutOfRange)?;
        Ok(Self(t))
    }

    /// Milliseconds since the Unix epoch (negative before 1970).
    pub fn unix_millis(&self) -> i64 {
        let ms = self.0.unix_timestamp_nanos() / 1_000_000;
        // The year range 1900..=9999 keeps this far inside i64.
        i64::try_from(ms).unwrap_or(i64::MAX)
    }

    /// ISO 8601 in UTC with milliseconds: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_iso8601(&self) -> String {
        let t = self.0;
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.millisecond()
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso8601())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_iso8601())
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, TimestampError> {
        Self::parse_rfc3339(s)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn millis_format_as_utc() {
        assert_eq!(
            Timestamp::from_unix_millis(0).unwrap().to_iso8601(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_705_329_000_123)
                .unwrap()
                .to_iso8601(),
            "2024-01-15T14:30:00.123Z"
        );
        assert_eq!(
            Timestamp::from_unix_millis(1_705_329_000_123)
                .unwrap()
                .unix_millis(),
            1_705_329_000_123
        );
    }

    #[test]
    fn rfc3339_offsets_convert_to_utc() {
        let t = Timestamp::parse_rfc3339("2024-01-15T09:30:00.123456-05:00").unwrap();
        assert_eq!(t.to_iso8601(), "2024-01-15T14:30:00.123Z");
        let z: Timestamp = "2024-02-29T23:59:59Z".parse().unwrap();
        assert_eq!(z.to_iso8601(), "2024-02-29T23:59:59.000Z");
    }

    #[test]
    fn bad_timestamps_are_refused() {
        assert_eq!(
            Timestamp::parse_rfc3339("2024-01-15"),
            Err(TimestampError::NotRfc3339)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("yesterday"),
            Err(TimestampError::NotRfc3339)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("2023-02-29T00:00:00Z"),
            Err(TimestampError::NotRfc3339)
        );
        assert_eq!(
            Timestamp::parse_rfc3339("1899-12-31T00:00:00Z"),
            Err(TimestampError::OutOfRange)
        );
        assert_eq!(
            Timestamp::from_unix_millis(u64::MAX),
            Err(TimestampError::OutOfRange)
        );
    }
}
