//! Downsampling: Thanos-compatible 5-minute and 1-hour aggregate blocks.
//!
//! Owns: turning a raw block into a 5m block and a 5m block into a 1h block exactly as
//! Thanos's compactor does (`pkg/compact/downsample`), deciding which blocks to downsample,
//! and the two passes over a local directory.
//! Must not: compact, delete or upload blocks (the caller does; a downsampled block's
//! sources are never deleted because of it).
//!
//! See `docs/downsampling.md` for the algorithm, where it runs, and every divergence from
//! Thanos. The aggregate chunk format is in `docs/format/chunks.md`.
//!
//! # API
//!
//! - [`plan_downsampling`]`(&[(BlockMeta, no_downsample_mark)]) -> Vec<(Ulid, resolution)>`:
//!   pure, no I/O. A raw block goes to 5m when it spans at least 40 hours and some of its
//!   sources are not yet in any 5m block's sources; a 5m block goes to 1h likewise at 10
//!   days; 1h blocks never; marked blocks never. One call is one pass: after writing its
//!   results, call it again (Thanos's second pass) so new 5m blocks reach 1h.
//! - [`downsample_block`]`(&Block, out_parent, &DownsampleOptions) -> (dir, meta)`: one
//!   block, streamed and parallel (rayon, the current pool), written crash-safely under
//!   `out_parent`. Raw → 5m, 5m → 1h. The output's meta is the source's with a new ULID,
//!   `thanos.downsample.resolution`, `thanos.source = "compactor"` and fresh stats; its
//!   `compaction` and time range are the source's, which is what marks the source as done.
//!   [`downsample_block_with_progress`] reports progress per batch of series.
//! - [`downsample_dir`]`(dir, &DirOptions, &dyn Observer) -> DirReport`: both passes over
//!   a local directory, one block at a time (each block uses every core).
//! - [`series::downsample_series`]: one series' chunks to aggregate chunks, over bytes.
//!
//! # Pipeline
//!
//! `block` streams series from the source index (a gathering thread), aggregates batches
//! of them on the rayon pool with per-worker [`series::Scratch`] buffers, and writes them
//! on a writer thread; chunk bytes are read from the memory-mapped segments. Per series,
//! `series` expands and cuts the input, `float` and `histagg` build the five slots of each
//! aggregate chunk using the window loop in `batch`, and `histmath` does the native
//! histogram arithmetic.

mod batch;
mod block;
pub mod dir;
mod float;
mod histagg;
mod histmath;
mod plan;
#[cfg(test)]
mod props;
pub mod series;
#[cfg(test)]
mod thanos_tests;

pub use batch::{target_chunk_count, window_end};
pub use block::{downsample_block, downsample_block_with_progress, downsampled_meta};
pub use dir::{downsample_dir, DirOptions, DirReport, Failure, Written};
pub use float::CounterResets;
pub use plan::plan_downsampling;

use crate::block::pipeline::BatchLimits;
use crate::format::chunks::DEFAULT_SEGMENT_SIZE;
use crate::format::meta::{RES_1H, RES_5M, RES_RAW};

/// A raw block is downsampled to 5m once it spans this long: 40 hours
/// (Thanos's `ResLevel1DownsampleRange`).
pub const RES_LEVEL1_RANGE_MS: i64 = 40 * 3_600_000;
/// A 5m block is downsampled to 1h once it spans this long: 10 days
/// (`ResLevel2DownsampleRange`).
pub const RES_LEVEL2_RANGE_MS: i64 = 10 * 86_400_000;

/// The resolution a block of resolution `from` is downsampled to, if any.
pub fn target_resolution(from: i64) -> Option<i64> {
    match from {
        RES_RAW => Some(RES_5M),
        RES_5M => Some(RES_1H),
        _ => None,
    }
}

/// One aggregate chunk of the output (encoding 0xFF): its closed time range (first and
/// last window timestamps) and its data (the five slots).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggrChunk {
    pub min_time: i64,
    pub max_time: i64,
    pub data: Vec<u8>,
}

/// Knobs of one block's downsampling.
#[derive(Clone, Debug)]
pub struct DownsampleOptions {
    /// How much of the source a batch handed to the worker threads may hold; memory is
    /// bounded by about four batches (being read, queued, aggregated, written). Input
    /// chunks are read from the mapped source, and the aggregates written are far smaller,
    /// so the byte limit is generous here; the chunk limit keeps long series from making
    /// batches large.
    pub batch: BatchLimits,
    /// Segment file size limit of the output.
    pub segment_size: u64,
}

impl Default for DownsampleOptions {
    fn default() -> Self {
        DownsampleOptions {
            batch: BatchLimits { series: 1024, chunks: 32_768, bytes: 64 << 20 },
            segment_size: DEFAULT_SEGMENT_SIZE,
        }
    }
}

/// Progress of one block, reported after each written batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct DownsampleProgress {
    pub series: u64,
    /// Bytes of source chunk data read so far.
    pub chunk_bytes_in: u64,
    pub chunks_out: u64,
}
