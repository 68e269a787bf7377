//! Moved to [`crate::time`]; kept for `cli/bucket.rs` until it imports from there.

pub use crate::time::{now_ms, parse_rfc3339_ms};
