//! Compaction: planning which blocks to merge, merging them, deduplicating replicas.
//!
//! Owns: [`plan`] (pure planning), `merge` (the k-way merge executor), `dedup`
//! (one-to-one and penalty merges of samples), `run` (compacting a local directory
//! crash-safely) and `local` (compaction, downsampling and retention of a local
//! directory until nothing is left: what `strata compact` runs).

pub mod dedup;
pub mod local;
pub mod merge;
pub mod plan;
pub mod rewrite;
pub mod run;
