//! strata: compaction, deduplication, downsampling and retention for Prometheus TSDB
//! blocks, byte-compatible with Prometheus and Thanos.
//!
//! Layers, from bytes up: [`format`] (on-disk formats over `&[u8]`), [`block`] (one
//! block directory), then the tools built on them. The `strata` binary is a thin CLI
//! over this library.
#![deny(unsafe_code)]

pub mod backup;
pub mod block;
pub mod bucket;
pub mod compact;
pub mod downsample;
pub mod dump;
pub mod error;
pub mod format;
pub mod gen;
pub mod gofmt;
pub mod job;
pub mod labels;
pub mod mmap;
pub mod observe;
pub mod relabel;
pub mod retention;
pub mod time;
pub mod verify;

pub use error::{Error, FormatError, Result};
