//! What a caller sees while a local job (compaction, downsampling) runs: one observer
//! trait for every job, so a progress bar or a log can follow any of them.
//!
//! Owns: the hooks and their meaning. Every hook has a default that does nothing; hooks
//! are called from worker threads, as the events happen.
//! Must not: influence the job (observers only watch).

use crate::compact::plan::Plan;
use crate::compact::run::{GroupFailure, Written as Compacted};
use crate::downsample::{Failure as DownsampleFailure, Written as Downsampled};

pub trait Observer: Sync {
    /// A compaction iteration planned `plans`, holding `series` series in all.
    fn compaction_planned(&self, _plans: &[Plan], _series: u64) {}
    /// A downsampling pass will write `blocks` blocks from sources holding `series` series.
    fn downsample_planned(&self, _pass: usize, _blocks: usize, _series: u64) {}
    /// `series` more series of the running merges or downsamplings are written.
    fn progress(&self, _series: u64) {}
    fn compacted(&self, _w: &Compacted) {}
    /// A group stopped on an error; its blocks are left as they were.
    fn compaction_failed(&self, _f: &GroupFailure) {}
    fn downsampled(&self, _w: &Downsampled) {}
    /// A block could not be downsampled; it is left as it was.
    fn downsample_failed(&self, _f: &DownsampleFailure) {}
}

/// An observer that watches nothing.
pub struct Quiet;
impl Observer for Quiet {}
