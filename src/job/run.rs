//! One iteration of the compactor job against a bucket, as `thanos compact` runs it.
//!
//! Owns the order of operations and its safety:
//! 1. sync metas (consistency delay, deletion marks, partial uploads filtered);
//! 2. garbage-collect: blocks whose sources another block holds are marked for deletion;
//! 3. plan per group (the offline planner) and, for each plan, concurrently: download the
//!    sources into the data directory, merge them (on a blocking thread), upload the
//!    output's chunks and index while it is verified, then meta.json once it passed
//!    (then every object checked), and only then mark the sources for deletion; repeat
//!    until nothing is left to plan;
//! 4. retention: mark expired blocks for deletion;
//! 5. cleanup: delete blocks marked longer than the delete delay, and old partial uploads.
//!
//! A source block that cannot be read (corrupt chunk, out-of-order chunks, broken index),
//! or whose problem an output inherited (found by verifying the sources when the output
//! fails verification), gets a `no-compact-mark.json` with the reason, and every other
//! group goes on; with `halt_on_error` the job stops instead, as Thanos does. Local files
//! are removed as soon as a plan ends.
//! Must not: delete a source before its output is uploaded and checked, or write the
//! meta.json of an output that failed verification.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use ulid::Ulid;

use super::disk::{plan_needs, DiskBudget, NoSpace};
use super::http::{BlocksView, Status};
use super::metrics::{Metrics, Phase};
use super::selector::Selector;
use crate::block::Block;
use crate::bucket::block::{DownloadOptions, UploadOptions};
use crate::bucket::sync::{cleanup, duplicates, sync, BlockInfo, CleanupOptions, SyncOptions, Synced};
use crate::bucket::{Bucket, BucketError};
use crate::compact::dedup::DedupFunc;
use crate::compact::merge::{merge_blocks, MergeOptions};
use crate::compact::plan::{plan, GroupKey, Plan, PlanBlock, PlanKind, Policy};
use crate::compact::run::compacted_meta;
use crate::error::Error;
use crate::format::meta::{BlockMeta, DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK};
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
    /// How often the backlog gauges are recomputed while the job waits
    /// (`--compact.progress-interval`; they are also recomputed at every sync).
    pub progress_interval: Duration,
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
    /// Plans (and downsamplings) that failed for a reason other than a bad source
    /// block: local disk, the bucket after its retries, too little space, a bug. A
    /// one-shot run exits non-zero when this is not empty.
    pub failed: Vec<PlanFailure>,
}

/// A plan that did not complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanFailure {
    pub group: String,
    pub blocks: Vec<Ulid>,
    pub reason: String,
}

impl std::fmt::Display for PlanFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.blocks.iter().map(|u| u.to_string()).collect();
        write!(f, "group {} (blocks {}): {}", self.group, ids.join(","), self.reason)
    }
}

/// Why an iteration stopped early.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("bucket: {0}")]
    Bucket(crate::bucket::BucketError),
    /// Local disk (the path and what failed on it); never the bucket's fault.
    #[error("local: {0}")]
    Local(#[from] Error),
    /// A bad block with `halt_on_error`: the job halts, as Thanos's does.
    #[error("halting: {0}")]
    Halt(String),
    /// Too little free space in the data directory for a plan.
    #[error("not enough disk space in {}: plan needs {needed} bytes, {available} available", dir.display())]
    NoSpace { dir: PathBuf, needed: u64, available: u64 },
}

impl From<BucketError> for JobError {
    /// A local error met while talking to the bucket (writing a download, reading a
    /// block to upload) stays a local error.
    fn from(e: BucketError) -> Self {
        match e {
            BucketError::Local(l) => JobError::Local(l),
            e => JobError::Bucket(e),
        }
    }
}

impl From<NoSpace> for JobError {
    fn from(n: NoSpace) -> Self {
        JobError::NoSpace { dir: n.dir, needed: n.needed, available: n.available }
    }
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

fn ids(blocks: &[Ulid]) -> String {
    blocks.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",")
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// Bytes of a block as its meta.json records them (`thanos.files`), if it does.
fn recorded_bytes(meta: &BlockMeta) -> Option<u64> {
    let t = meta.thanos.as_ref()?;
    let sum: i64 = t.files.iter().map(|f| f.size_bytes.max(0)).sum();
    (sum > 0).then_some(sum as u64)
}

/// Bytes of a block: from its meta.json, else from a listing.
async fn block_bytes(bucket: &Bucket, meta: &BlockMeta) -> JobResult<u64> {
    if let Some(b) = recorded_bytes(meta) {
        return Ok(b);
    }
    Ok(bucket.list(&meta.ulid.to_string()).await?.iter().map(|o| o.size).sum())
}

/// Recomputes the `thanos_compact_todo_*` gauges from a sync.
pub fn update_backlog(m: &Metrics, synced: &Synced, opts: &JobOptions) {
    let b = super::progress::backlog(synced, &opts.policy, &opts.replica_labels, &opts.retention, opts.downsampling);
    m.todo_compactions.clear();
    m.todo_compaction_blocks.clear();
    m.todo_downsample_blocks.clear();
    m.todo_deletion_blocks.clear();
    for (g, (plans, blocks)) in &b.compactions {
        m.todo_compactions.get_or_create(&Metrics::group(g)).set(*plans as i64);
        m.todo_compaction_blocks.get_or_create(&Metrics::group(g)).set(*blocks as i64);
    }
    for (g, n) in &b.downsample_blocks {
        m.todo_downsample_blocks.get_or_create(&Metrics::group(g)).set(*n as i64);
    }
    for (g, n) in &b.deletion_blocks {
        m.todo_deletion_blocks.get_or_create(&Metrics::group(g)).set(*n as i64);
    }
}

/// Syncs the bucket for the job: the owned blocks, the viewer updated, readiness set.
async fn sync_for_job(bucket: &Bucket, opts: &JobOptions, status: &Status) -> JobResult<Synced> {
    let t = Instant::now();
    let synced = match sync_owned(bucket, &opts.sync, &opts.selector).await {
        Ok(s) => s,
        Err(e) => {
            status.set_blocks_error(e.to_string());
            return Err(e);
        }
    };
    status.metrics.observe(Phase::Sync, t.elapsed());
    tracing::info!(
        blocks = synced.blocks.len(),
        excluded = synced.excluded.len(),
        partial = synced.partial.len(),
        duration_ms = ms(t.elapsed()),
        "synced block metadata"
    );
    status.ready.store(true, Ordering::Relaxed);
    status.set_blocks(BlocksView::from_synced(&synced, ""));
    update_backlog(&status.metrics, &synced, opts);
    Ok(synced)
}

/// Runs one iteration.
pub async fn run_iteration(bucket: &Bucket, opts: &JobOptions, status: &Status) -> JobResult<IterationReport> {
    let started = Instant::now();
    tracing::info!(data_dir = %opts.data_dir.display(), "iteration started");
    let mut report = IterationReport::default();
    std::fs::create_dir_all(&opts.data_dir).map_err(|e| Error::io(&opts.data_dir, e))?;
    let budget = DiskBudget::new(&opts.data_dir);
    let mut failed_groups = BTreeSet::new();

    loop {
        let synced = sync_for_job(bucket, opts, status).await?;
        note_warnings(&synced, &mut report);
        let live: Vec<BlockInfo> = synced.blocks.iter().filter(|b| b.deletion_mark.is_none()).cloned().collect();
        garbage_collect(bucket, opts, status, &live, &mut report).await?;
        let plans = plan_iteration(opts, &live, &failed_groups, &mut report);
        if plans.is_empty() {
            if opts.downsampling && downsample_pass(bucket, opts, status, &synced, &mut report).await? > 0 {
                // New 5m/1h blocks: compact them among themselves, then look again.
                continue;
            }
            retention_and_cleanup(bucket, opts, status, &synced, &mut report).await?;
            finish_iteration(bucket, status, &report, started);
            return Ok(report);
        }
        let results = run_plans(bucket, plans, &synced, opts, status, &budget).await;
        status.metrics.observe_bucket(&bucket.stats());
        for (p, r) in results {
            record_plan_result(bucket, opts, status, p, r, &mut report, &mut failed_groups).await?;
        }
    }
}

/// Logs and keeps each sync warning once per iteration.
fn note_warnings(synced: &Synced, report: &mut IterationReport) {
    for w in &synced.warnings {
        if !report.warnings.contains(w) {
            tracing::warn!("{w}");
            report.warnings.push(w.clone());
        }
    }
}

/// Garbage collection: marks for deletion the blocks whose every source another block
/// holds.
async fn garbage_collect(
    bucket: &Bucket,
    opts: &JobOptions,
    status: &Status,
    live: &[BlockInfo],
    report: &mut IterationReport,
) -> JobResult<()> {
    let m = &status.metrics;
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
            m.garbage_collected_blocks.inc();
            m.marked(DELETION_MARK, "");
            tracing::info!(block = %dup, by = %by, marker = DELETION_MARK, "garbage collected: its sources are all in another block, marked for deletion");
            report.garbage_collected.push(dup);
        }
    }
    Ok(())
}

/// The compactions due among the live blocks not garbage collected, outside the groups
/// that failed this iteration; the planner's refusals are logged once.
fn plan_iteration(
    opts: &JobOptions,
    live: &[BlockInfo],
    failed_groups: &BTreeSet<GroupKey>,
    report: &mut IterationReport,
) -> Vec<Plan> {
    let gc: BTreeSet<Ulid> = report.garbage_collected.iter().copied().collect();
    let candidates: Vec<PlanBlock> = live
        .iter()
        .filter(|b| !gc.contains(&b.id()))
        .map(|b| PlanBlock::from_meta(&b.meta, &opts.replica_labels, b.no_compact_mark.is_some()))
        .filter(|b| !failed_groups.contains(&b.group))
        .collect();
    let outcome = plan(&candidates, &opts.policy);
    for r in &outcome.refused {
        let line = format!("group {}: not compacted: {} ({})", r.group, r.reason, ids(&r.blocks));
        if !report.refused.contains(&line) {
            tracing::warn!("{line}");
            report.refused.push(line);
        }
    }
    outcome.plans
}

/// The iteration's closing metrics and summary event.
fn finish_iteration(bucket: &Bucket, status: &Status, report: &IterationReport, started: Instant) {
    let m = &status.metrics;
    m.observe(Phase::Iteration, started.elapsed());
    m.observe_bucket(&bucket.stats());
    tracing::info!(
        compactions = report.compactions,
        downsampled = report.downsampled.len(),
        garbage_collected = report.garbage_collected.len(),
        no_compact_marked = report.no_compact_marked.len(),
        retention_marked = report.expired.len(),
        deleted = report.cleaned,
        failed = report.failed.len(),
        duration_ms = ms(started.elapsed()),
        "iteration done"
    );
}

/// Runs the plans, `--compact.concurrency` at once, lowering the todo gauges as each lands.
async fn run_plans(
    bucket: &Bucket,
    plans: Vec<Plan>,
    synced: &Synced,
    opts: &JobOptions,
    status: &Status,
    budget: &DiskBudget,
) -> Vec<(Plan, JobResult<PlanOutcome>)> {
    futures::stream::iter(plans.into_iter().map(|p| async move {
        let r = run_plan(bucket, &p, synced, opts, status, budget).await;
        if matches!(r, Ok(PlanOutcome::Done { .. } | PlanOutcome::Empty)) {
            // The backlog shrinks as each plan lands, not only at the next sync.
            let g = Metrics::group(&p.group.to_string());
            let (plans, blocks) = (
                status.metrics.todo_compactions.get_or_create(&g).clone(),
                status.metrics.todo_compaction_blocks.get_or_create(&g).clone(),
            );
            plans.set((plans.get() - 1).max(0));
            blocks.set((blocks.get() - p.blocks.len() as i64).max(0));
        }
        (p, r)
    }))
    .buffer_unordered(opts.compact_concurrency.max(1))
    .collect()
    .await
}

/// Counts, logs and reports one plan's outcome: a bad source block is marked no-compact,
/// another failure skips its group for the rest of the iteration; with --halt-on-error
/// either stops the job.
async fn record_plan_result(
    bucket: &Bucket,
    opts: &JobOptions,
    status: &Status,
    p: Plan,
    r: JobResult<PlanOutcome>,
    report: &mut IterationReport,
    failed_groups: &mut BTreeSet<GroupKey>,
) -> JobResult<()> {
    let m = &status.metrics;
    let group = p.group.to_string();
    let g = Metrics::group(&group);
    m.group_compaction_runs_started.get_or_create(&g).inc();
    match r {
        Ok(done @ (PlanOutcome::Done { .. } | PlanOutcome::Empty)) => {
            let output = match done {
                PlanOutcome::Done { output } => Some(output),
                _ => None,
            };
            report.compacted.push((group.clone(), p.blocks.clone(), output));
            m.group_compaction_runs_completed.get_or_create(&g).inc();
            m.group_compactions.get_or_create(&g).inc();
            if p.kind == PlanKind::Vertical {
                m.group_vertical_compactions.get_or_create(&g).inc();
            }
            report.compactions += 1;
        }
        Ok(PlanOutcome::BadSource { block, reason }) => {
            m.group_compactions_failures.get_or_create(&g).inc();
            if opts.halt_on_error {
                m.halted.set(1);
                tracing::error!(group = group.as_str(), block = %block, reason = reason.as_str(), "bad source block; halting (--halt-on-error)");
                return Err(JobError::Halt(format!("block {block}: {reason}")));
            }
            if bucket.mark_no_compact(block, "block-index-out-of-order-chunk", &reason).await? {
                m.marked(NO_COMPACT_MARK, "block-index-out-of-order-chunk");
            }
            tracing::error!(
                group = group.as_str(),
                block = %block,
                marker = NO_COMPACT_MARK,
                reason = reason.as_str(),
                "bad block marked no-compact; the other groups went on"
            );
            report.no_compact_marked.push((block, reason));
        }
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => {
            m.group_compactions_failures.get_or_create(&g).inc();
            if opts.halt_on_error {
                m.halted.set(1);
                return Err(JobError::Halt(format!("group {group}: {e}")));
            }
            if let JobError::NoSpace { dir, needed, available } = &e {
                m.plans_skipped_disk.inc();
                tracing::error!(
                    group = group.as_str(),
                    sources = ids(&p.blocks),
                    needed_bytes = needed,
                    available_bytes = available,
                    dir = %dir.display(),
                    "plan skipped: not enough free space in the data directory; the other plans go on"
                );
            } else {
                tracing::error!(
                    group = group.as_str(),
                    sources = ids(&p.blocks),
                    err = %e,
                    "compaction failed; the group is skipped for this iteration and retried in the next"
                );
            }
            report.failed.push(PlanFailure { group: group.clone(), blocks: p.blocks.clone(), reason: e.to_string() });
            failed_groups.insert(p.group);
        }
    }
    Ok(())
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

/// Live progress of one running plan in the per-group gauges; what it added is taken
/// away again when it is dropped.
struct PlanProgress {
    m: Arc<PlanGauges>,
}

struct PlanGauges {
    bytes_done: prometheus_client::metrics::gauge::Gauge,
    bytes_total: prometheus_client::metrics::gauge::Gauge,
    series_done: prometheus_client::metrics::gauge::Gauge,
    series_total: prometheus_client::metrics::gauge::Gauge,
    running: prometheus_client::metrics::gauge::Gauge,
    added_bytes: AtomicU64,
    added_bytes_done: AtomicU64,
    added_series: AtomicU64,
    added_series_done: AtomicU64,
}

impl PlanProgress {
    fn start(m: &Metrics, group: &str, bytes: u64, series: u64) -> PlanProgress {
        let g = Metrics::group(group);
        let p = PlanGauges {
            bytes_done: m.progress_bytes_done.get_or_create(&g).clone(),
            bytes_total: m.progress_bytes_total.get_or_create(&g).clone(),
            series_done: m.progress_series_done.get_or_create(&g).clone(),
            series_total: m.progress_series_total.get_or_create(&g).clone(),
            running: m.plans_running.clone(),
            added_bytes: AtomicU64::new(bytes),
            added_bytes_done: AtomicU64::new(0),
            added_series: AtomicU64::new(series),
            added_series_done: AtomicU64::new(0),
        };
        p.bytes_total.inc_by(bytes as i64);
        p.series_total.inc_by(series as i64);
        p.running.inc();
        PlanProgress { m: Arc::new(p) }
    }

    fn downloaded(&self, bytes: u64) {
        self.m.bytes_done.inc_by(bytes as i64);
        self.m.added_bytes_done.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A callback for the merge: `series` merged so far.
    fn series_callback(&self) -> impl Fn(crate::compact::merge::MergeProgress) + Send + Sync + 'static {
        let m = self.m.clone();
        move |p| {
            let before = m.added_series_done.swap(p.series, Ordering::Relaxed);
            m.series_done.inc_by(p.series as i64 - before as i64);
        }
    }
}

impl Drop for PlanProgress {
    fn drop(&mut self) {
        let m = &self.m;
        m.bytes_total.dec_by(m.added_bytes.load(Ordering::Relaxed) as i64);
        m.bytes_done.dec_by(m.added_bytes_done.load(Ordering::Relaxed) as i64);
        m.series_total.dec_by(m.added_series.load(Ordering::Relaxed) as i64);
        m.series_done.dec_by(m.added_series_done.load(Ordering::Relaxed) as i64);
        m.running.dec();
    }
}

async fn run_plan(
    bucket: &Bucket,
    p: &Plan,
    synced: &Synced,
    opts: &JobOptions,
    status: &Status,
    budget: &DiskBudget,
) -> JobResult<PlanOutcome> {
    let group = p.group.to_string();
    let metas: Vec<BlockMeta> =
        p.blocks.iter().filter_map(|id| synced.blocks.iter().find(|b| b.id() == *id).map(|b| b.meta.clone())).collect();
    let mut bytes = 0u64;
    for meta in &metas {
        bytes += block_bytes(bucket, meta).await?;
    }
    let series: u64 = metas.iter().map(|m| m.stats.num_series).sum();
    // Disk preflight: nothing is downloaded for a plan that cannot fit.
    let _reservation = budget.reserve(plan_needs(bytes))??;
    let started = Instant::now();
    tracing::info!(
        group = group.as_str(),
        kind = ?p.kind,
        sources = ids(&p.blocks),
        bytes,
        series,
        "compaction started"
    );
    let progress = PlanProgress::start(&status.metrics, &group, bytes, series);
    let work = opts.data_dir.join(format!("compact-{}", Ulid::new()));
    let r = run_plan_in(bucket, p, metas, opts, status, &work, &progress).await;
    let _ = tokio::fs::remove_dir_all(&work).await;
    drop(progress);
    let took = started.elapsed();
    status.metrics.observe(Phase::Compaction, took);
    match &r {
        Ok(PlanOutcome::Done { output }) => tracing::info!(
            phase = "compact",
            group = group.as_str(),
            sources = ids(&p.blocks),
            output = %output,
            bytes,
            series,
            duration_ms = ms(took),
            "compacted, sources marked for deletion"
        ),
        Ok(PlanOutcome::Empty) => tracing::info!(
            phase = "compact",
            group = group.as_str(),
            sources = ids(&p.blocks),
            output = "none (every series deleted)",
            duration_ms = ms(took),
            "compacted, sources marked for deletion"
        ),
        _ => {}
    }
    r
}

async fn run_plan_in(
    bucket: &Bucket,
    p: &Plan,
    metas: Vec<BlockMeta>,
    opts: &JobOptions,
    status: &Status,
    work: &Path,
    progress: &PlanProgress,
) -> JobResult<PlanOutcome> {
    let m = &status.metrics;
    std::fs::create_dir_all(work).map_err(|e| Error::io(work, e))?;
    // Sources are only read and outputs never written again: a FILESYSTEM bucket on the
    // data directory's filesystem links them instead of copying.
    let dl = DownloadOptions { concurrency: opts.fetch_concurrency.max(1), verify: false, link: true };
    let mut dirs = Vec::with_capacity(p.blocks.len());
    let t = Instant::now();
    for (id, meta) in p.blocks.iter().zip(&metas) {
        dirs.push(bucket.download_block(*id, work, &dl).await?);
        progress.downloaded(recorded_bytes(meta).unwrap_or(0));
    }
    m.observe(Phase::Download, t.elapsed());
    let out_dir = work.join("out");
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let (group, dedup, mut merge) = (p.group.clone(), opts.dedup, opts.merge.clone());
    merge.dedup = dedup;
    merge.write_tombstones = false;
    // The output is read back at once, twice (verify, upload): through the page cache it
    // is read from memory; written around it, from the disk (docs/performance.md).
    merge.direct_io = false;
    let sources = p.blocks.clone();
    let source_dirs: Vec<(Ulid, PathBuf)> = sources.iter().copied().zip(dirs.iter().cloned()).collect();
    let out_dir2 = out_dir.clone();
    let on_progress = progress.series_callback();
    let t = Instant::now();
    // Merge on a blocking thread: everything touching samples is synchronous.
    let merged = tokio::task::spawn_blocking(
        move || -> std::result::Result<Option<(PathBuf, crate::format::meta::BlockMeta)>, Error> {
            let blocks: Vec<Block> = dirs.iter().map(|d| Block::open(d)).collect::<crate::Result<_>>()?;
            let refs: Vec<&Block> = blocks.iter().collect();
            let ulid = Ulid::new();
            let mrefs: Vec<_> = metas.iter().collect();
            let meta = compacted_meta(&mrefs, &group, ulid);
            let out = merge_blocks(&refs, &out_dir2, ulid, meta, &merge, &on_progress)?;
            if let Some((_, meta)) = &out {
                tracing::info!(
                    phase = "compact",
                    group = %group,
                    output = %ulid,
                    series = meta.stats.num_series,
                    samples = meta.stats.num_samples,
                    merge_ms = ms(t.elapsed()),
                    "merged"
                );
            }
            Ok(out)
        },
    )
    .await
    .map_err(|e| Error::Task { what: "compaction task", problem: e.to_string() })?;
    m.observe(Phase::Merge, t.elapsed());
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
        Some((path, meta)) => {
            let t = Instant::now();
            // The block is verified while its chunks and index go up; meta.json, which
            // makes it a block for every reader, only after it passed.
            let verify = verify_output(path.clone(), meta.ulid, p.group.to_string(), source_dirs);
            let uploaded = bucket
                .upload_block_after(
                    &path,
                    &UploadOptions { concurrency: opts.fetch_concurrency.max(1), meta: None, link: true },
                    verify,
                )
                .await?;
            m.observe(Phase::Upload, t.elapsed());
            match uploaded {
                Ok(uploaded) => PlanOutcome::Done { output: uploaded.ulid },
                Err(Refused::Source { block, reason }) => return Ok(PlanOutcome::BadSource { block, reason }),
                Err(Refused::Output(e)) => return Err(e.into()),
            }
        }
        None => PlanOutcome::Empty,
    };
    // The output is uploaded and checked: now, and only now, the sources go.
    let why = match &outcome {
        PlanOutcome::Done { output } => format!("compacted into {output}"),
        _ => "every series deleted".to_string(),
    };
    for id in &sources {
        if bucket.mark_for_deletion(*id, &why).await? {
            tracing::debug!(block = %id, marker = DELETION_MARK, details = why.as_str(), "marked");
        }
    }
    Ok(outcome)
}

/// Why an output was not committed.
enum Refused {
    /// The output failed verification and so does this source: the output inherited the
    /// problem (a chunk copied as it was), so the source is to blame, not strata.
    Source { block: Ulid, reason: String },
    /// The output failed verification (or could not be checked): strata's own failure,
    /// nothing is marked.
    Output(Error),
}

/// Checks a block the job wrote (`strata verify`'s checks) on a blocking thread. When it
/// fails, the sources are checked too: a problem a source already has (chunks are copied
/// as they are, undecoded, wherever they overlap nothing) blames that source; otherwise
/// the failure is the job's own.
async fn verify_output(
    path: PathBuf,
    ulid: Ulid,
    group: String,
    sources: Vec<(Ulid, PathBuf)>,
) -> std::result::Result<(), Refused> {
    let t = Instant::now();
    let checked = tokio::task::spawn_blocking(move || -> std::result::Result<(), Refused> {
        let (problems, _) = verify_block(&path).map_err(Refused::Output)?;
        let Some(p) = problems.first() else { return Ok(()) };
        for (block, dir) in &sources {
            if let Some(sp) = verify_block(dir).map_err(Refused::Output)?.0.first() {
                return Err(Refused::Source {
                    block: *block,
                    reason: format!(
                        "fails verification, and the block compacted from it (not uploaded) inherited it: {}: {}",
                        sp.file, sp.message
                    ),
                });
            }
        }
        Err(Refused::Output(Error::BadWrite {
            path,
            problem: format!("compacted block {ulid} failed verification, not uploaded: {p}"),
        }))
    })
    .await
    .map_err(|e| Refused::Output(Error::Task { what: "verification task", problem: e.to_string() }))?;
    checked?;
    tracing::info!(phase = "compact", group = %group, output = %ulid, verify_ms = ms(t.elapsed()), "verified");
    Ok(())
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
    let budget = DiskBudget::new(&opts.data_dir);
    let mut written = 0;
    for (id, resolution) in todo {
        let Some((meta, _)) = live.iter().find(|(mm, _)| mm.ulid == id) else { continue };
        let group = crate::compact::plan::GroupKey::new(meta.resolution(), meta.external_labels(), &[]).to_string();
        let g = Metrics::group(&group);
        m.downsamples.get_or_create(&g).inc();
        let work = opts.data_dir.join(format!("downsample-{}", Ulid::new()));
        let started = Instant::now();
        let r = async {
            let bytes = block_bytes(bucket, meta).await?;
            let _reservation = budget.reserve(plan_needs(bytes))??;
            tracing::info!(
                group = group.as_str(),
                block = %id,
                resolution = crate::time::go_duration_ms(resolution),
                bytes,
                series = meta.stats.num_series,
                "downsampling started"
            );
            std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
            let dir = bucket
                .download_block(
                    id,
                    &work,
                    &DownloadOptions { concurrency: opts.fetch_concurrency.max(1), verify: false, link: true },
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
                .upload_block(
                    &path,
                    &UploadOptions { concurrency: opts.fetch_concurrency.max(1), meta: None, link: true },
                )
                .await?;
            JobResult::Ok(meta.ulid)
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        m.observe(Phase::Downsample, started.elapsed());
        match r {
            Ok(new) => {
                tracing::info!(
                    phase = "downsample",
                    group = group.as_str(),
                    source = %id,
                    output = %new,
                    resolution = crate::time::go_duration_ms(resolution),
                    duration_ms = ms(started.elapsed()),
                    "downsampled"
                );
                report.downsampled.push((id, new, resolution));
                written += 1;
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e @ (JobError::NoSpace { .. } | JobError::Local(Error::Io { .. }) | JobError::Bucket(_))) => {
                // Not the block's fault: no marker, retried next iteration.
                m.downsample_failures.get_or_create(&g).inc();
                if let JobError::NoSpace { .. } = e {
                    m.plans_skipped_disk.inc();
                }
                tracing::error!(group = group.as_str(), block = %id, err = %e, "downsampling failed; retried next iteration");
                report.failed.push(PlanFailure { group, blocks: vec![id], reason: format!("downsampling: {e}") });
            }
            Err(e) => {
                m.downsample_failures.get_or_create(&g).inc();
                if opts.halt_on_error {
                    m.halted.set(1);
                    return Err(JobError::Halt(format!("downsampling {id}: {e}")));
                }
                if bucket.mark_no_downsample(id, "manual", &e.to_string()).await? {
                    m.marked(NO_DOWNSAMPLE_MARK, "manual");
                }
                tracing::error!(group = group.as_str(), block = %id, marker = NO_DOWNSAMPLE_MARK, err = %e, "downsampling failed, block marked no-downsample");
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
    let t = Instant::now();
    let fresh =
        sync_owned(bucket, &SyncOptions { delete_delay_ms: i64::MAX, ..opts.sync.clone() }, &opts.selector).await?;
    let c = cleanup(bucket, &fresh, &opts.cleanup).await;
    m.blocks_cleaned.inc_by(c.deleted.len() as u64);
    m.block_cleanup_failures.inc_by(c.failed.len() as u64);
    report.cleaned = c.deleted.len();
    for (id, e) in c.failed {
        tracing::warn!(block = %id, err = e.as_str(), "cleanup of a block failed, retried next time");
        report.warnings.push(format!("cleanup of {id} failed, retried next time: {e}"));
    }
    m.observe(Phase::Cleanup, t.elapsed());
    tracing::info!(deleted = report.cleaned, duration_ms = ms(t.elapsed()), "cleanup done");
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
        let t = Instant::now();
        let live: Vec<_> = synced.blocks.iter().filter(|b| b.deletion_mark.is_none()).map(|b| &b.meta).collect();
        for id in crate::retention::expired(live, &opts.retention, synced.now_ms) {
            if bucket.mark_for_deletion(id, "retention").await? {
                m.marked(DELETION_MARK, "retention");
                tracing::info!(block = %id, marker = DELETION_MARK, "retention: block expired, marked for deletion");
                report.expired.push(id);
            }
        }
        m.observe(Phase::Retention, t.elapsed());
        tracing::info!(marked = report.expired.len(), duration_ms = ms(t.elapsed()), "retention applied");
    }
    Ok(())
}

/// Attempts of one iteration in one-shot mode before a transient bucket error is given
/// up on (with `--wait` the job keeps retrying, as a service should).
pub const ONE_SHOT_ATTEMPTS: u32 = 3;

/// Runs iterations: once, or every `wait_interval` until `stop` is set. Transient
/// bucket errors are retried with backoff and counted; in one-shot mode at most
/// [`ONE_SHOT_ATTEMPTS`] times, then the error is returned. While it waits, the backlog
/// gauges are recomputed every `opts.progress_interval`.
pub async fn run_job(
    bucket: &Bucket,
    opts: &JobOptions,
    status: Arc<Status>,
    wait_interval: Option<std::time::Duration>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    mut on_iteration: impl FnMut(&JobResult<IterationReport>),
) -> JobResult<()> {
    let mut backoff = Duration::from_secs(1);
    let mut attempts = 0u32;
    loop {
        let r = run_iteration(bucket, opts, &status).await;
        on_iteration(&r);
        match r {
            Ok(_) => {
                status.metrics.iterations.inc();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                status.metrics.last_iteration_success.set(now.as_secs_f64());
                backoff = Duration::from_secs(1);
                attempts = 0;
            }
            Err(e) if e.is_transient() => {
                attempts += 1;
                if stop.load(Ordering::Relaxed) || (wait_interval.is_none() && attempts >= ONE_SHOT_ATTEMPTS) {
                    return Err(e);
                }
                status.metrics.retries.inc();
                tracing::warn!(err = %e, attempt = attempts, backoff_ms = ms(backoff), "transient bucket error, retrying the iteration");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
            Err(e) => return Err(e),
        }
        let Some(d) = wait_interval else { return Ok(()) };
        let until = tokio::time::Instant::now() + d;
        let mut next_progress = tokio::time::Instant::now() + opts.progress_interval;
        while tokio::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            if !opts.progress_interval.is_zero() && tokio::time::Instant::now() >= next_progress {
                next_progress += opts.progress_interval;
                if let Err(e) = sync_for_job(bucket, opts, &status).await {
                    tracing::warn!(err = %e, "progress: sync failed, the backlog gauges keep their last values");
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_error_met_at_the_bucket_edge_is_reported_as_local() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let e: JobError = BucketError::Local(Error::io("/data/compact-x/01ABC.tmp-for-creation/index", io)).into();
        assert!(matches!(e, JobError::Local(_)), "{e:?}");
        let text = e.to_string();
        assert!(text.starts_with("local: /data/compact-x/01ABC.tmp-for-creation/index: "), "{text}");
        assert!(!text.contains("bucket"), "{text}");
        assert!(!e.is_transient());
        let n: JobError = NoSpace { dir: "/data".into(), needed: 200, available: 100 }.into();
        assert_eq!(n.to_string(), "not enough disk space in /data: plan needs 200 bytes, 100 available");
    }
}
