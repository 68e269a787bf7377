//! One iteration of the compactor job against a bucket, as `thanos compact` runs it.
//!
//! Owns the order of operations and its safety:
//! 1. sync metas (consistency delay, deletion marks, partial uploads filtered);
//! 2. garbage-collect: blocks whose sources another block holds are marked for deletion;
//! 3. plan per group (the offline planner) and, for each plan, concurrently: download the
//!    sources into the data directory, merge them (on a blocking thread), verify the
//!    output, upload it (meta.json last, then every object checked), and only then mark
//!    the sources for deletion; repeat until nothing is left to plan;
//! 4. retention: mark expired blocks for deletion;
//! 5. cleanup: delete blocks marked longer than the delete delay, and old partial uploads.
//!
//! A source block that cannot be read (corrupt chunk, out-of-order chunks, broken index)
//! gets a `no-compact-mark.json` with the reason, and every other group goes on; with
//! `halt_on_error` the job stops instead, as Thanos does. Local files are removed as soon
//! as a plan ends.
//! Must not: delete a source before its output is uploaded and checked.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;
use ulid::Ulid;

use super::http::Status;
use super::selector::Selector;
use crate::block::Block;
use crate::bucket::block::{DownloadOptions, UploadOptions};
use crate::bucket::sync::{cleanup, duplicates, sync, CleanupOptions, SyncOptions, Synced};
use crate::bucket::Bucket;
use crate::compact::dedup::DedupFunc;
use crate::compact::merge::{merge_blocks, MergeOptions};
use crate::compact::plan::{plan, Plan, PlanBlock, PlanKind, Policy};
use crate::compact::run::compacted_meta;
use crate::error::Error;
use crate::retention::Retention;
use crate::verify::verify_block;

/// Everything one iteration needs.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Scratch space for downloads and outputs (`--data-dir`).
    pub data_dir: PathBuf,
    pub sync: SyncOptions,
    pub policy: Policy,
    pub replica_labels: Vec<String>,
    pub dedup: DedupFunc,
    pub merge: MergeOptions,
    /// Plans run at once (`--compact.concurrency`).
    pub compact_concurrency: usize,
    /// Files fetched at once per block (`--compact.blocks-fetch-concurrency`).
    pub fetch_concurrency: usize,
    pub retention: Retention,
    pub cleanup: CleanupOptions,
    /// Stop at the first bad block instead of marking it no-compact.
    pub halt_on_error: bool,
    /// Write 5m and 1h blocks after compaction (`--downsampling.disable` turns it off).
    pub downsampling: bool,
    /// The blocks this instance owns (relabel rules, time range); others are left alone.
    pub selector: Selector,
}

/// What an iteration did.
#[derive(Debug, Default)]
pub struct IterationReport {
    pub compactions: usize,
    /// Each compaction: group, sources, the block uploaded (None when nothing was left).
    pub compacted: Vec<(String, Vec<Ulid>, Option<Ulid>)>,
    /// Downsampled blocks uploaded: (source, new block, resolution).
    pub downsampled: Vec<(Ulid, Ulid, i64)>,
    pub garbage_collected: Vec<Ulid>,
    pub no_compact_marked: Vec<(Ulid, String)>,
    pub expired: Vec<Ulid>,
    pub cleaned: usize,
    /// Refusals of the planner (e.g. overlaps without vertical compaction).
    pub refused: Vec<String>,
    pub warnings: Vec<String>,
}

/// Why an iteration stopped early.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("bucket: {0}")]
    Bucket(#[from] crate::bucket::BucketError),
    #[error("{0}")]
    Local(#[from] Error),
    /// A bad block with `halt_on_error`: the job halts, as Thanos's does.
    #[error("halting: {0}")]
    Halt(String),
}

impl JobError {
    /// Errors worth retrying after a pause (timeouts, throttling, 5xx).
    pub fn is_transient(&self) -> bool {
        matches!(self, JobError::Bucket(e) if e.is_transient())
    }
}

type JobResult<T> = std::result::Result<T, JobError>;

/// The outcome of one plan.
enum PlanOutcome {
    Done {
        output: Ulid,
    },
    /// Nothing was left (every series deleted): sources marked, no output.
    Empty,
    /// A source is bad: mark it no-compact and go on.
    BadSource {
        block: Ulid,
        reason: String,
    },
}

/// Runs one iteration.
pub async fn run_iteration(bucket: &Bucket, opts: &JobOptions, status: &Status) -> JobResult<IterationReport> {
    let m = &status.metrics;
    let mut report = IterationReport::default();
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| Error::io(&opts.data_dir, e))?;
    let mut failed_groups = BTreeSet::new();

    loop {
        let synced = sync_owned(bucket, &opts.sync, &opts.selector).await?;
        status.ready.store(true, std::sync::atomic::Ordering::Relaxed);
        report.warnings.extend(synced.warnings.iter().cloned());

        // Garbage collection: blocks whose every source another block holds.
        let live: Vec<_> = synced.blocks.iter().filter(|b| b.deletion_mark.is_none()).cloned().collect();
        // As Thanos's compactor, with the replica labels removed first, so the sources
        // of a deduplicated block fall in the same group as the block itself.
        let grouped: Vec<_> = live
            .iter()
            .cloned()
            .map(|mut b| {
                let key = crate::compact::plan::GroupKey::new(
                    b.meta.resolution(),
                    b.meta.external_labels(),
                    &opts.replica_labels,
                );
                if let Some(t) = b.meta.thanos.as_mut() {
                    t.labels = key.labels;
                }
                b
            })
            .collect();
        for (dup, by) in duplicates(&grouped) {
            if bucket.mark_for_deletion(dup, &format!("sources are all in block {by}")).await? {
                m.inc("thanos_compact_garbage_collected_blocks_total", &[]);
                m.inc("thanos_compact_blocks_marked_total", &[("marker", "deletion-mark.json"), ("reason", "")]);
                report.garbage_collected.push(dup);
            }
        }
        let gc: BTreeSet<Ulid> = report.garbage_collected.iter().copied().collect();
        let candidates: Vec<PlanBlock> = live
            .iter()
            .filter(|b| !gc.contains(&b.id()))
            .map(|b| PlanBlock::from_meta(&b.meta, &opts.replica_labels, b.no_compact_mark.is_some()))
            .filter(|b| !failed_groups.contains(&b.group))
            .collect();
        let outcome = plan(&candidates, &opts.policy);
        for r in &outcome.refused {
            let ids: Vec<String> = r.blocks.iter().map(|u| u.to_string()).collect();
            let line = format!("group {}: not compacted: {} ({})", r.group, r.reason, ids.join(","));
            if !report.refused.contains(&line) {
                report.refused.push(line);
            }
        }
        m.set("thanos_compact_todo_compactions", &[], outcome.plans.len() as f64);
        m.set(
            "thanos_compact_todo_compaction_blocks",
            &[],
            outcome.plans.iter().map(|p| p.blocks.len()).sum::<usize>() as f64,
        );
        if outcome.plans.is_empty() {
            if opts.downsampling && downsample_pass(bucket, opts, status, &synced, &mut report).await? > 0 {
                // New 5m/1h blocks: compact them among themselves, then look again.
                continue;
            }
            retention_and_cleanup(bucket, opts, status, &synced, &mut report).await?;
            return Ok(report);
        }
        let synced_ref = &synced;
        let results: Vec<(Plan, JobResult<PlanOutcome>)> =
            futures::stream::iter(outcome.plans.into_iter().map(|p| async move {
                let r = run_plan(bucket, &p, synced_ref, opts).await;
                (p, r)
            }))
            .buffer_unordered(opts.compact_concurrency.max(1))
            .collect()
            .await;
        for (p, r) in results {
            let group = p.group.to_string();
            let g = [("group", group.as_str())];
            m.inc("thanos_compact_group_compaction_runs_started_total", &g);
            match r {
                Ok(done @ (PlanOutcome::Done { .. } | PlanOutcome::Empty)) => {
                    let output = match done {
                        PlanOutcome::Done { output } => Some(output),
                        _ => None,
                    };
                    report.compacted.push((group.clone(), p.blocks.clone(), output));
                    m.inc("thanos_compact_group_compaction_runs_completed_total", &g);
                    m.inc("thanos_compact_group_compactions_total", &g);
                    if p.kind == PlanKind::Vertical {
                        m.inc("thanos_compact_group_vertical_compactions_total", &g);
                    }
                    report.compactions += 1;
                }
                Ok(PlanOutcome::BadSource { block, reason }) => {
                    m.inc("thanos_compact_group_compactions_failures_total", &g);
                    if opts.halt_on_error {
                        m.set("thanos_compact_halted", &[], 1.0);
                        return Err(JobError::Halt(format!("block {block}: {reason}")));
                    }
                    if bucket.mark_no_compact(block, "block-index-out-of-order-chunk", &reason).await? {
                        m.inc(
                            "thanos_compact_blocks_marked_total",
                            &[("marker", "no-compact-mark.json"), ("reason", "block-index-out-of-order-chunk")],
                        );
                    }
                    report.no_compact_marked.push((block, reason));
                }
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    m.inc("thanos_compact_group_compactions_failures_total", &g);
                    if opts.halt_on_error {
                        m.set("thanos_compact_halted", &[], 1.0);
                        return Err(JobError::Halt(format!("group {group}: {e}")));
                    }
                    report.warnings.push(format!("group {group} failed and is skipped for this iteration: {e}"));
                    failed_groups.insert(p.group);
                }
            }
        }
    }
}

/// Syncs and keeps only the blocks this instance owns (Thanos applies its label-shard and
/// time-partition filters to every fetched meta, so planning, retention and cleanup all
/// see the same subset).
async fn sync_owned(bucket: &Bucket, opts: &SyncOptions, selector: &Selector) -> JobResult<Synced> {
    let mut s = sync(bucket, opts).await?;
    s.blocks.retain(|b| selector.selects(&b.meta));
    s.excluded.retain(|(b, _)| selector.selects(&b.meta));
    Ok(s)
}

async fn run_plan(bucket: &Bucket, p: &Plan, synced: &Synced, opts: &JobOptions) -> JobResult<PlanOutcome> {
    let work = opts.data_dir.join(format!("compact-{}", Ulid::new()));
    let r = run_plan_in(bucket, p, synced, opts, &work).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    r
}

async fn run_plan_in(
    bucket: &Bucket,
    p: &Plan,
    synced: &Synced,
    opts: &JobOptions,
    work: &Path,
) -> JobResult<PlanOutcome> {
    std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
    let dl = DownloadOptions { concurrency: opts.fetch_concurrency.max(1), verify: false };
    let mut dirs = Vec::with_capacity(p.blocks.len());
    for id in &p.blocks {
        dirs.push(bucket.download_block(*id, work, &dl).await?);
    }
    let metas: Vec<_> =
        p.blocks.iter().filter_map(|id| synced.blocks.iter().find(|b| b.id() == *id).map(|b| b.meta.clone())).collect();
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let (group, dedup, mut merge) = (p.group.clone(), opts.dedup, opts.merge.clone());
    merge.dedup = dedup;
    merge.write_tombstones = false;
    let sources = p.blocks.clone();
    let out_dir2 = out_dir.clone();
    // Merge and verify on a blocking thread: everything touching samples is synchronous.
    let merged = tokio::task::spawn_blocking(
        move || -> std::result::Result<Option<(PathBuf, crate::format::meta::BlockMeta)>, Error> {
            let blocks: Vec<Block> = dirs.iter().map(|d| Block::open(d)).collect::<crate::Result<_>>()?;
            let refs: Vec<&Block> = blocks.iter().collect();
            let ulid = Ulid::new();
            let mrefs: Vec<_> = metas.iter().collect();
            let meta = compacted_meta(&mrefs, &group, ulid);
            let out = merge_blocks(&refs, &out_dir2, ulid, meta, &merge, &|_| {})?;
            if let Some((path, _)) = &out {
                let (problems, _) = verify_block(path)?;
                if let Some(p) = problems.first() {
                    return Err(Error::BadWrite {
                        path: path.clone(),
                        problem: format!("compacted block {ulid} failed verification, not uploaded: {p}"),
                    });
                }
            }
            Ok(out)
        },
    )
    .await
    .map_err(|e| Error::Task { what: "compaction task", problem: e.to_string() })?;
    let out = match merged {
        Ok(out) => out,
        Err(e) => {
            return match e.blamed_block().filter(|b| sources.contains(b)) {
                Some(block) => Ok(PlanOutcome::BadSource { block, reason: e.to_string() }),
                None => Err(e.into()),
            }
        }
    };
    let outcome = match out {
        Some((path, _meta)) => {
            let uploaded = bucket
                .upload_block(&path, &UploadOptions { concurrency: opts.fetch_concurrency.max(1), meta: None })
                .await?;
            PlanOutcome::Done { output: uploaded.ulid }
        }
        None => PlanOutcome::Empty,
    };
    // The output is uploaded and checked: now, and only now, the sources go.
    let why = match &outcome {
        PlanOutcome::Done { output } => format!("compacted into {output}"),
        _ => "every series deleted".to_string(),
    };
    for id in &sources {
        bucket.mark_for_deletion(*id, &why).await?;
    }
    Ok(outcome)
}

/// Downsamples every block that qualifies and is not yet covered (Thanos's rule, with
/// no-downsample marks honoured), uploading each result; sources are kept. Returns how
/// many blocks were written. `strata bucket downsample` runs this phase alone.
pub async fn downsample_pass(
    bucket: &Bucket,
    opts: &JobOptions,
    status: &Status,
    synced: &Synced,
    report: &mut IterationReport,
) -> JobResult<usize> {
    let m = &status.metrics;
    let live: Vec<(crate::format::meta::BlockMeta, bool)> = synced
        .blocks
        .iter()
        .filter(|b| b.deletion_mark.is_none())
        .map(|b| (b.meta.clone(), b.no_downsample_mark.is_some()))
        .collect();
    let todo = crate::downsample::plan_downsampling(&live);
    m.set("thanos_compact_todo_downsample_blocks", &[], todo.len() as f64);
    let mut written = 0;
    for (id, resolution) in todo {
        let group = crate::compact::plan::GroupKey::new(
            resolution,
            live.iter().find(|(mm, _)| mm.ulid == id).map(|(mm, _)| mm.external_labels()).unwrap_or_default(),
            &[],
        )
        .to_string();
        let g = [("group", group.as_str())];
        m.inc("thanos_compact_downsample_total", &g);
        let work = opts.data_dir.join(format!("downsample-{}", Ulid::new()));
        let r = async {
            std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
            let dir = bucket
                .download_block(
                    id,
                    &work,
                    &DownloadOptions { concurrency: opts.fetch_concurrency.max(1), verify: false },
                )
                .await?;
            let out_parent = work.join("out");
            std::fs::create_dir_all(&out_parent).map_err(|e| Error::io(&out_parent, e))?;
            let (path, meta) = tokio::task::spawn_blocking(move || {
                let src = Block::open(&dir)?;
                crate::downsample::downsample_block(&src, &out_parent, &Default::default())
            })
            .await
            .map_err(|e| Error::Task { what: "downsampling task", problem: e.to_string() })??;
            bucket
                .upload_block(&path, &UploadOptions { concurrency: opts.fetch_concurrency.max(1), meta: None })
                .await?;
            JobResult::Ok(meta.ulid)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        match r {
            Ok(new) => {
                report.downsampled.push((id, new, resolution));
                written += 1;
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                m.inc("thanos_compact_downsample_failures_total", &g);
                if opts.halt_on_error {
                    m.set("thanos_compact_halted", &[], 1.0);
                    return Err(JobError::Halt(format!("downsampling {id}: {e}")));
                }
                if bucket.mark_no_downsample(id, "manual", &e.to_string()).await? {
                    m.inc(
                        "thanos_compact_blocks_marked_total",
                        &[("marker", "no-downsample-mark.json"), ("reason", "manual")],
                    );
                }
                report.warnings.push(format!("downsampling {id} failed, marked no-downsample: {e}"));
            }
        }
    }
    Ok(written)
}

async fn retention_and_cleanup(
    bucket: &Bucket,
    opts: &JobOptions,
    status: &Status,
    synced: &Synced,
    report: &mut IterationReport,
) -> JobResult<()> {
    let m = &status.metrics;
    retention_pass(bucket, opts, status, synced, report).await?;
    // Cleanup sees the marks written in this iteration too.
    let fresh =
        sync_owned(bucket, &SyncOptions { delete_delay_ms: i64::MAX, ..opts.sync.clone() }, &opts.selector).await?;
    let marked =
        fresh.blocks.iter().chain(fresh.excluded.iter().map(|(b, _)| b)).filter(|b| b.deletion_mark.is_some()).count();
    m.set("thanos_compact_todo_deletion_blocks", &[], marked as f64);
    let c = cleanup(bucket, &fresh, &opts.cleanup).await;
    m.add("thanos_compact_blocks_cleaned_total", &[], c.deleted.len() as f64);
    m.add("thanos_compact_block_cleanup_failures_total", &[], c.failed.len() as f64);
    report.cleaned = c.deleted.len();
    for (id, e) in c.failed {
        report.warnings.push(format!("cleanup of {id} failed, retried next time: {e}"));
    }
    Ok(())
}

/// Marks the blocks retention expired for deletion. `strata bucket retention` runs this
/// phase alone.
pub async fn retention_pass(
    bucket: &Bucket,
    opts: &JobOptions,
    status: &Status,
    synced: &Synced,
    report: &mut IterationReport,
) -> JobResult<()> {
    let m = &status.metrics;
    if !opts.retention.is_unlimited() {
        let live: Vec<_> = synced.blocks.iter().filter(|b| b.deletion_mark.is_none()).map(|b| &b.meta).collect();
        for id in crate::retention::expired(live, &opts.retention, synced.now_ms) {
            if bucket.mark_for_deletion(id, "retention").await? {
                m.inc(
                    "thanos_compact_blocks_marked_total",
                    &[("marker", "deletion-mark.json"), ("reason", "retention")],
                );
                report.expired.push(id);
            }
        }
    }
    Ok(())
}

/// Attempts of one iteration in one-shot mode before a transient bucket error is given
/// up on (with `--wait` the job keeps retrying, as a service should).
pub const ONE_SHOT_ATTEMPTS: u32 = 3;

/// Runs iterations: once, or every `wait_interval` until `stop` is set. Transient
/// bucket errors are retried with backoff and counted; in one-shot mode at most
/// [`ONE_SHOT_ATTEMPTS`] times, then the error is returned.
pub async fn run_job(
    bucket: &Bucket,
    opts: &JobOptions,
    status: Arc<Status>,
    wait_interval: Option<std::time::Duration>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut on_iteration: impl FnMut(&JobResult<IterationReport>),
) -> JobResult<()> {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    let mut backoff = Duration::from_secs(1);
    let mut attempts = 0u32;
    loop {
        let r = run_iteration(bucket, opts, &status).await;
        on_iteration(&r);
        match r {
            Ok(_) => {
                status.metrics.inc("thanos_compact_iterations_total", &[]);
                backoff = Duration::from_secs(1);
                attempts = 0;
            }
            Err(e) if e.is_transient() => {
                attempts += 1;
                if stop.load(Ordering::Relaxed) || (wait_interval.is_none() && attempts >= ONE_SHOT_ATTEMPTS) {
                    return Err(e);
                }
                status.metrics.inc("thanos_compact_retries_total", &[]);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
            Err(e) => return Err(e),
        }
        let Some(d) = wait_interval else { return Ok(()) };
        let until = tokio::time::Instant::now() + d;
        while tokio::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
