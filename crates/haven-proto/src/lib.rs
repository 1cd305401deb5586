//! haven-proto
