//! The compactor job against a bucket (`strata run`): its operational surface.
//!
//! Owns: the metrics registry (Thanos's metric names) and the HTTP endpoint. The job
//! loop itself (sync → plan → download → compact → verify → upload → mark, then
//! downsampling, retention and cleanup) builds on `bucket`, `compact` and
//! `downsample`.

pub mod disk;
pub mod http;
pub mod metrics;
pub mod progress;
pub mod run;
pub mod selector;
