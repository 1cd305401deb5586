//! haven-frank
