//! `strata downsample DIR`: both of Thanos's passes over a local directory of blocks.
//!
//! Pass 1 plans over every block (raw → 5m, and existing 5m → 1h) and writes; pass 2 plans
//! again, so the 5m blocks pass 1 wrote reach 1h when they span 10 days. Rerunning finds
//! every block done and writes nothing. A block that fails is reported and left alone; the
//! others are still downsampled.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ulid::Ulid;

use super::block::downsample_block_with_progress;
use super::plan::plan_downsampling;
use super::{DownsampleOptions, DownsampleProgress};
use crate::block::{list_blocks, Block, META_FILE};
use crate::error::{Error, Result};
use crate::format::meta::{parse_marker, BlockMeta, NoDownsampleMark, NO_DOWNSAMPLE_MARK};
use crate::observe::Observer;

/// Where to work and how.
#[derive(Clone, Debug, Default)]
pub struct DirOptions {
    /// Write new blocks here instead of into the directory itself. Blocks already in it
    /// count as done work (so a rerun with the same output does nothing new).
    pub output: Option<PathBuf>,
    pub block: DownsampleOptions,
}

/// A block written.
#[derive(Clone, Debug)]
pub struct Written {
    pub source: Ulid,
    pub source_resolution: i64,
    pub path: PathBuf,
    pub meta: BlockMeta,
    pub took: Duration,
    /// Bytes of source chunk data read.
    pub chunk_bytes_in: u64,
}

/// A block that could not be downsampled (or read).
#[derive(Debug)]
pub struct Failure {
    pub block: PathBuf,
    pub error: Error,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct DirReport {
    pub written: Vec<Written>,
    pub failures: Vec<Failure>,
    /// Block directories passed over because their meta.json is missing or unreadable.
    pub skipped: Vec<(PathBuf, String)>,
}

struct Found {
    path: PathBuf,
    meta: BlockMeta,
    no_downsample: bool,
}

/// Reads the metas (and no-downsample marks) of every block in `dirs`.
fn scan(dirs: &[&Path], report: &mut DirReport) -> Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    for dir in dirs {
        if !dir.exists() {
            continue;
        }
        for e in list_blocks(dir)? {
            if found.iter().any(|f| f.path == e.path) {
                continue;
            }
            let meta = match std::fs::read(e.path.join(META_FILE)) {
                Ok(b) => match BlockMeta::parse(&b) {
                    Ok(m) => m,
                    Err(err) => {
                        report.skipped.push((e.path.clone(), format!("meta.json: {err}")));
                        continue;
                    }
                },
                Err(err) => {
                    report.skipped.push((e.path.clone(), format!("meta.json: {err}")));
                    continue;
                }
            };
            // As in Thanos, an unreadable marker is treated as absent (a partial upload).
            let no_downsample = std::fs::read(e.path.join(NO_DOWNSAMPLE_MARK))
                .ok()
                .is_some_and(|b| parse_marker::<NoDownsampleMark>(&b, "no-downsample mark").is_ok());
            found.push(Found { path: e.path, meta, no_downsample });
        }
    }
    Ok(found)
}

/// Removes `<ULID>.tmp-for-creation` directories an interrupted run left in `dir`.
fn remove_leftovers(dir: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(id) = name.strip_suffix(".tmp-for-creation") {
            if Ulid::from_string(id).is_ok() && e.path().is_dir() {
                std::fs::remove_dir_all(e.path()).map_err(|err| Error::io(e.path(), err))?;
            }
        }
    }
    Ok(())
}

/// Downsamples every block of `dir` that qualifies and is not yet downsampled, in two
/// passes as Thanos does.
pub fn downsample_dir(dir: &Path, opts: &DirOptions, obs: &dyn Observer) -> Result<DirReport> {
    if !dir.is_dir() {
        return Err(Error::BadRequest(format!("{}: not a directory", dir.display())));
    }
    let out = opts.output.clone().unwrap_or_else(|| dir.to_path_buf());
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    remove_leftovers(&out)?;
    let mut report = DirReport::default();
    let mut failed: Vec<Ulid> = Vec::new();
    for pass in 1..=2 {
        let mut scan_report = DirReport::default();
        let found = scan(&[dir, &out], &mut scan_report)?;
        if pass == 1 {
            report.skipped = scan_report.skipped;
        }
        let metas: Vec<(BlockMeta, bool)> = found.iter().map(|f| (f.meta.clone(), f.no_downsample)).collect();
        let tasks: Vec<&Found> = plan_downsampling(&metas)
            .into_iter()
            .filter(|(id, _)| !failed.contains(id))
            .filter_map(|(id, _)| found.iter().find(|f| f.meta.ulid == id))
            .collect();
        if tasks.is_empty() {
            break;
        }
        obs.downsample_planned(pass, tasks.len(), tasks.iter().map(|f| f.meta.stats.num_series).sum());
        for f in tasks {
            let start = Instant::now();
            let last = std::sync::Mutex::new(DownsampleProgress::default());
            let result = Block::open(&f.path).and_then(|b| {
                let on_progress = |p: DownsampleProgress| {
                    let mut l = last.lock().unwrap_or_else(|e| e.into_inner());
                    obs.progress(p.series.saturating_sub(l.series));
                    *l = p;
                };
                let r = downsample_block_with_progress(&b, &out, &opts.block, &on_progress)?;
                let bytes = last.lock().unwrap_or_else(|e| e.into_inner()).chunk_bytes_in;
                Ok((r, b.meta.resolution(), bytes))
            });
            match result {
                Ok(((path, meta), source_resolution, bytes)) => {
                    let w = Written {
                        source: f.meta.ulid,
                        source_resolution,
                        path,
                        meta,
                        took: start.elapsed(),
                        chunk_bytes_in: bytes,
                    };
                    obs.downsampled(&w);
                    report.written.push(w);
                }
                Err(error) => {
                    failed.push(f.meta.ulid);
                    let fl = Failure { block: f.path.clone(), error };
                    obs.downsample_failed(&fl);
                    report.failures.push(fl);
                }
            }
        }
    }
    Ok(report)
}
