//! Compacting a local directory the way the compactor job treats a bucket, in one call:
//! compaction (with retention), then downsampling of what qualifies, then compaction of
//! the new downsampled blocks among themselves, repeated until a downsampling pass writes
//! nothing.
//!
//! Owns: the order of those passes and the combined report. The passes themselves are
//! [`compact_dir`] and [`downsample_dir`]; progress goes to one [`Observer`].
//! Must not: print; the caller decides what a failure means for its exit code.

use std::path::Path;

use super::run::{compact_dir, CompactOptions, Report};
use crate::downsample::{downsample_dir, DirOptions, DownsampleOptions, Failure, Written};
use crate::error::Result;
use crate::observe::Observer;

/// Everything a local run can be told.
#[derive(Clone, Debug, Default)]
pub struct LocalOptions {
    pub compact: CompactOptions,
    /// Write 5m and 1h blocks after compacting (None: `--downsampling.disable`).
    pub downsample: Option<DownsampleOptions>,
}

/// What a local run did.
#[derive(Debug, Default)]
pub struct LocalReport {
    /// Every compaction pass, added up.
    pub compaction: Report,
    pub downsampled: Vec<Written>,
    pub downsample_failures: Vec<Failure>,
}

impl LocalReport {
    /// True when every group compacted and every block that qualified was downsampled.
    pub fn is_complete(&self) -> bool {
        self.compaction.failures.is_empty() && self.downsample_failures.is_empty()
    }
}

/// Compacts `dir` (into `opts.compact.output` when set), then downsamples and compacts
/// again until nothing is left to do.
pub fn compact_local(dir: &Path, opts: &LocalOptions, obs: &dyn Observer) -> Result<LocalReport> {
    let mut report = LocalReport { compaction: compact_dir(dir, &opts.compact, obs)?, ..Default::default() };
    let Some(block) = &opts.downsample else { return Ok(report) };
    let out_dir = opts.compact.output.clone().unwrap_or_else(|| dir.to_path_buf());
    let ds_opts = DirOptions { output: opts.compact.output.clone(), block: block.clone() };
    // The downsampled blocks are compacted where they were written.
    let mut again = opts.compact.clone();
    again.output = None;
    loop {
        let d = downsample_dir(dir, &ds_opts, obs)?;
        report.downsample_failures.extend(d.failures);
        if d.written.is_empty() {
            return Ok(report);
        }
        report.downsampled.extend(d.written);
        let r = compact_dir(&out_dir, &again, obs)?;
        let c = &mut report.compaction;
        c.iterations += r.iterations;
        c.written.extend(r.written);
        c.failures.extend(r.failures);
        // Refusals are not added: the same groups are refused again on every pass.
        c.emptied.extend(r.emptied);
        c.expired.extend(r.expired);
    }
}
