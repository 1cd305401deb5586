//! Test doubles of the external service (behind the `test-server` feature).

pub mod server;
