//! Identifiers the API hands out: a report's `reportId` and an uploaded file's `fileId`.

use std::fmt;

/// Longest identifier accepted from the API. Documented examples are 7 digits (`reportId`) and
/// 32 hex digits (`fileId`); 64 leaves room without letting a response carry anything large.
const MAX_ID_LEN: usize = 64;

/// An identifier that failed its check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Empty.
    #[error("identifier is empty")]
    Empty,
    /// Longer than 64 bytes.
    #[error("identifier is longer than {MAX_ID_LEN} bytes")]
    TooLong,
    /// A character other than ASCII letters, digits, `-` or `_`.
    #[error("identifier has a character other than ASCII letters, digits, '-' or '_'")]
    BadCharacter,
}

fn check(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong);
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(IdError::BadCharacter);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Checks `s`: 1 to 64 ASCII letters, digits, `-` or `_` (safe in a URL form and in XML).
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                check(&s)?;
                Ok(Self(s))
            }

            /// The identifier as the API wrote it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// The `reportId` the API assigns on `POST /submit`.
    ReportId
);
id_type!(
    /// The `fileId` the API assigns on `POST /upload`.
    FileId
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert_eq!(ReportId::new("4564654").unwrap().as_str(), "4564654");
        assert!(FileId::new("b0754af766b426f2928a02c651ed4b99").is_ok());
        assert_eq!(ReportId::new(""), Err(IdError::Empty));
        assert_eq!(ReportId::new("1 2"), Err(IdError::BadCharacter));
        assert_eq!(ReportId::new("<a>"), Err(IdError::BadCharacter));
        assert_eq!(FileId::new("a".repeat(65)), Err(IdError::TooLong));
        assert!(FileId::new("a".repeat(64)).is_ok());
    }
}
