//! Compaction: planning which blocks to merge, merging them, deduplicating replicas.
//!
//! Owns: [`plan`] (pure planning), `merge` (the k-way merge executor) and `dedup`
//! (one-to-one and penalty merges of samples).

pub mod dedup;
pub mod merge;
pub mod plan;
pub mod run;
