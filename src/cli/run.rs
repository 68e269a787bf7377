//! `strata run`: the compactor job against a bucket, with `thanos compact`'s flags.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;

use super::bucket::ObjstoreFlags;
use super::bucket::TimeArg;
use super::flags::duration_ms;
use strata::bucket::sync::{CleanupOptions, SyncOptions};
use strata::compact::merge::MergeOptions;
use strata::compact::plan::Policy;
use strata::job::http::{serve, Status};
use strata::job::run::{run_job, IterationReport, JobError, JobOptions, PlanFailure};
use strata::job::selector::Selector;

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// Scratch space for downloaded and compacted blocks.
    #[arg(long = "data-dir", default_value = "./data")]
    data_dir: PathBuf,
    /// Blocks younger than this are not touched yet (uploads may be in flight).
    #[arg(long = "consistency-delay", default_value = "30m", value_parser = duration_ms)]
    consistency_delay: i64,
    /// Blocks marked for deletion are deleted this long after the mark.
    #[arg(long = "delete-delay", default_value = "48h", value_parser = duration_ms)]
    delete_delay: i64,
    #[arg(long = "block-meta-fetch-concurrency", default_value_t = 32)]
    meta_fetch_concurrency: usize,
    #[arg(long = "compact.blocks-fetch-concurrency", default_value_t = 4)]
    blocks_fetch_concurrency: usize,
    /// Compactions run at once.
    #[arg(long = "compact.concurrency", default_value_t = 1)]
    compact_concurrency: usize,
    #[arg(
        long = "block-ranges",
        default_value = "2h,8h,2d,14d",
        value_delimiter = ',',
        hide = true,
        value_parser = duration_ms
    )]
    block_ranges: Vec<i64>,
    #[command(flatten)]
    dedup: super::DedupFlags,
    /// Merge overlapping blocks even without replica labels.
    #[arg(long = "compact.enable-vertical-compaction", default_value_t = false, action = clap::ArgAction::Set)]
    vertical: bool,
    #[command(flatten)]
    retention: super::RetentionFlags,
    /// Keep running, one iteration every --wait-interval.
    #[arg(long)]
    wait: bool,
    #[arg(long = "wait-interval", default_value = "5m", value_parser = duration_ms)]
    wait_interval: i64,
    /// Stop at the first bad block (Thanos's behaviour) instead of marking it no-compact.
    #[arg(long = "halt-on-error")]
    halt_on_error: bool,
    /// Do not write 5m and 1h downsampled blocks.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    /// Where /metrics, /-/healthy, /-/ready and the bucket viewer (/) are served.
    #[arg(long = "http-address", default_value = "0.0.0.0:10902")]
    http_address: String,
    /// Refuse POST /api/v1/blocks/mark (the viewer's mark buttons).
    #[arg(long = "disable-admin-operations")]
    disable_admin_operations: bool,
    /// How often the thanos_compact_todo_* gauges are recomputed while the job waits
    /// (they are also recomputed at every sync); 0s turns the periodic update off.
    #[arg(long = "compact.progress-interval", default_value = "5m", value_parser = duration_ms)]
    progress_interval: i64,
    #[command(flatten)]
    relabel: super::flags::RelabelFlags,
    /// Only blocks that overlap [--min-time, --max-time]: ms, RFC 3339, or a duration before now (-3d).
    #[arg(long = "min-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    min_time: Option<TimeArg>,
    #[arg(long = "max-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    max_time: Option<TimeArg>,
}

pub fn run(a: RunArgs) -> anyhow::Result<ExitCode> {
    let opts = job_options(&a)?;
    let wait = if a.wait { Some(std::time::Duration::from_millis(a.wait_interval as u64)) } else { None };

    let status = Arc::new(Status::default());
    status.admin_disabled.store(a.disable_admin_operations, Ordering::Relaxed);
    let server = serve(&a.http_address, status.clone())?;
    tracing::info!(address = %server.addr, "serving");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    // What the last iteration could not do (one-shot runs exit non-zero on it).
    let mut failed: Vec<PlanFailure> = Vec::new();
    let result = rt.block_on(run_compactor(&a.objstore, &opts, status, wait, &mut failed));
    Ok(exit_code(result, wait.is_some(), &failed))
}

/// The job's options from the flags; the relabel rules are read and parsed here.
fn job_options(a: &RunArgs) -> anyhow::Result<JobOptions> {
    let ranges = a.block_ranges.clone();
    let (replica_labels, dedup) = a.dedup.parse()?;
    let consistency_delay_ms = a.consistency_delay;
    let delete_delay_ms = a.delete_delay;
    let opts = JobOptions {
        data_dir: a.data_dir.clone(),
        sync: SyncOptions {
            concurrency: a.meta_fetch_concurrency.max(1),
            consistency_delay_ms,
            delete_delay_ms,
            deduplicate: false,
            now_ms: None,
        },
        policy: Policy { ranges, vertical: a.vertical || !replica_labels.is_empty() },
        replica_labels,
        dedup,
        merge: MergeOptions::default(),
        compact_concurrency: a.compact_concurrency.max(1),
        fetch_concurrency: a.blocks_fetch_concurrency.max(1),
        retention: a.retention.parse()?,
        cleanup: CleanupOptions { delete_delay_ms, consistency_delay_ms },
        halt_on_error: a.halt_on_error,
        downsampling: !a.downsampling_disable,
        selector: Selector::default(),
        progress_interval: std::time::Duration::from_millis(a.progress_interval.max(0) as u64),
    };
    let rules = a.relabel.rules()?;
    let now = strata::time::now_ms();
    let mut opts = opts;
    opts.selector = Selector::new(rules, a.min_time.map(|t| t.at(now)), a.max_time.map(|t| t.at(now)));
    Ok(opts)
}

/// Opens the bucket and runs the job until it ends (one-shot), fails, or SIGTERM stops it;
/// `failed` keeps what the last iteration could not do.
async fn run_compactor(
    objstore: &ObjstoreFlags,
    opts: &JobOptions,
    status: Arc<Status>,
    wait: Option<std::time::Duration>,
    failed: &mut Vec<PlanFailure>,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let bucket = objstore.open().await?;
    status.enable_marks(bucket.clone());
    let cfg_desc = objstore.load().map(|c| c.describe()).unwrap_or_default();
    tracing::info!(bucket = cfg_desc, mode = if wait.is_some() { "wait" } else { "one-shot" }, "starting compactor");
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if let Ok(mut term) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                term.recv().await;
                stop.store(true, Ordering::Relaxed);
            }
        });
    }
    // The library logs each event as it happens; only the outcome is kept here.
    let report = |r: &Result<IterationReport, JobError>| match r {
        Ok(rep) => *failed = rep.failed.clone(),
        Err(e) if e.is_transient() => {}
        Err(e) => tracing::error!(err = %e, "iteration failed"),
    };
    let r = run_job(&bucket, opts, status.clone(), wait, stop.clone(), report).await.map_err(anyhow::Error::from);
    let st = bucket.stats();
    tracing::info!(
        http_requests = st.http_requests,
        retried_failures = st.transient_failures,
        server_errors = st.server_errors,
        throttled = st.throttled,
        timeouts = st.timeouts,
        network_errors = st.network_errors,
        "bucket requests"
    );
    r
}

/// The exit code, decided here only: 1 when the job stopped, or when a one-shot run left
/// plans undone for a reason other than a bad source block.
fn exit_code(result: anyhow::Result<()>, waiting: bool, failed: &[PlanFailure]) -> ExitCode {
    let fail = |msg: String| {
        if std::io::stderr().is_terminal() {
            eprintln!("strata run: {msg}");
        }
    };
    match result {
        Ok(()) if !waiting && !failed.is_empty() => {
            let what: Vec<String> = failed.iter().map(|f| f.to_string()).collect();
            let msg = format!("{} plan(s) not done: {}", failed.len(), what.join("; "));
            fail(msg.clone());
            tracing::error!(failed = failed.len(), err = msg, "compactor finished with failures");
            ExitCode::from(1)
        }
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            fail(format!("{e:#}"));
            tracing::error!(err = format!("{e:#}"), "compactor stopped");
            ExitCode::from(1)
        }
    }
}
