//! NCMEC CyberTipline reports for Haven.
//!
//! A moderator at Haven escalates a verified abuse report (a franked message whose commitment the
//! server checked, or an attachment whose hashes it checked). This crate turns what the server knows
//! about it into the documents of NCMEC's CyberTipline Reporting API and carries them there.
//!
//! Data flow:
//! 1. the server fills in [`report::Report`] and, per file, [`report::FileInfo`] (no I/O here);
//! 2. [`report::Report::validate`] refuses what the API would refuse and returns a
//!    [`report::ValidReport`], the only type that writes XML ([`report::ValidReport::to_xml`]);
//!    file details go the same way ([`report::FileDetails::validate`]);
//! 3. the server may write that XML to a directory, and later hand it (or the validated values) to
//!    [`client::Client`], which follows the documented flow: `POST /submit` → `reportId`,
//!    `POST /upload` per file → `fileId` and MD5, `POST /fileinfo` per file, `POST /finish` →
//!    `fileIds`; on any failure after `/submit` it calls `POST /retract`
//!    ([`client::Client::submit_report`]).
//!
//! What is verified: every document we write is well-formed XML 1.0 (text is escaped by
//! `quick-xml`; characters XML 1.0 forbids are replaced by U+FFFD; carriage returns are written as
//! character references so they survive parsing); required fields are present; e-mail addresses,
//! URLs, IP addresses and ports are well formed; lengths and counts are bounded. The upload receipt's
//! MD5 is compared with the MD5 of the bytes we sent. Responses are read up to a size limit, parsed
//! without DTDs, and every non-zero `responseCode` becomes a typed [`client::ApiError`].
//!
//! What is not verified: that our element order and types match NCMEC's current XSD (`GET /xsd`
//! needs credentials; the order here follows the documentation's field lists and the unofficial
//! client below, and [`testing::server`] checks the same order, so it guards regressions, not the
//! schema itself); NCMEC's own limits on field lengths (ours are Haven's bounds); anything about the
//! content's legality, which a human decided before this crate is called.
//!
//! Sources: the official "CyberTipline Reporting API" documentation,
//! <https://report.cybertip.org/ispws/documentation> (test host `https://exttest.cybertip.org/ispws`),
//! and the field names in the unofficial `Johannes-Andersen/Cybertipline-Tools` (`src/types/`,
//! `src/xmlBuilders/`, `src/client/`) on GitHub. Haven's notes: `shared/research/safety-tech.md`
//! §5.3 and §5.4.
#![forbid(unsafe_code)]

pub mod client;
pub mod ids;
pub mod report;
mod response;
pub mod timestamp;
mod xml;

#[cfg(feature = "test-server")]
pub mod testing;

pub use client::{
    ApiError, Client, ClientConfig, ClientError, Credentials, Environment, ResponseCode,
};
pub use ids::{FileId, IdError, ReportId};
pub use report::{
    FileDetails, FileInfo, Report, ReportError, ValidFileDetails, ValidFileInfo, ValidReport,
};
pub use timestamp::{Timestamp, TimestampError};

/// Parses an API answer as the client does, for the fuzz target (`fuzz/cybertip_response`);
/// whether it parsed.
#[doc(hidden)]
pub fn fuzz_parse_response(bytes: &[u8]) -> bool {
    response::parse(bytes).is_ok()
}
