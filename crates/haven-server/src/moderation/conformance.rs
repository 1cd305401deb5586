//! Conformance cases for [`super::ModerationStore`], run against both backends.
