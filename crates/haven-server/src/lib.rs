//! haven-server
