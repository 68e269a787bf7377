//! `strata backup`, `strata restore` and the continuous shipper of `strata bucket upload
//! --wait`: flags into options, then `strata::backup` does the work. See docs/backup.md.
//!
//! Exit codes: 0 done; 1 the backup or restore failed (after the retries, for a backup);
//! 2 nothing could be done (bad flags or configuration).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use strata::backup::restore::{restore, RestoreOptions};
use strata::backup::shipper::{Shipper, ShipperMetric, ShipperMetrics, ShipperOptions};
use strata::backup::snapshot::{backup, Auth, BackupOptions, Prometheus};
use strata::job::selector::Selector;

use super::bucket::{parse_labels, ObjstoreFlags, TimeArg};
use super::flags::duration_ms;

#[derive(Args)]
pub struct BackupArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// The Prometheus server (started with --web.enable-admin-api).
    #[arg(long = "prometheus.url", default_value = "http://localhost:9090")]
    url: String,
    /// Basic auth user name (with --prometheus.password-file).
    #[arg(long = "prometheus.username", requires = "password_file")]
    username: Option<String>,
    /// File holding the basic auth password (one line; never logged).
    #[arg(long = "prometheus.password-file", requires = "username")]
    password_file: Option<PathBuf>,
    /// File holding a bearer token (one line; never logged).
    #[arg(long = "prometheus.bearer-token-file", conflicts_with = "username")]
    bearer_token_file: Option<PathBuf>,
    /// How long the snapshot request may take (writing out a large head takes a while).
    #[arg(long = "prometheus.timeout", default_value = "5m", value_parser = duration_ms)]
    timeout: i64,
    /// The server's data directory (its --storage.tsdb.path) as seen from strata.
    #[arg(long = "tsdb.path", required = true)]
    tsdb_path: PathBuf,
    /// External label k=v of the uploaded blocks (repeatable, at least one).
    #[arg(long = "label", required = true)]
    labels: Vec<String>,
    /// Leave the in-memory head (the newest samples, in no block yet) out.
    #[arg(long = "skip-head")]
    skip_head: bool,
    /// Wait before the first retry; doubled after each failed retry.
    #[arg(long = "retry-interval", default_value = "1m", value_parser = duration_ms)]
    retry_interval: i64,
    /// Retries after a transient failure (server unreachable or failing, bucket failing)
    /// before giving up; other failures are not retried.
    #[arg(long = "max-retries", default_value_t = 3)]
    max_retries: u32,
    /// Chunk files uploaded at once per block.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

#[derive(Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// The directory to restore into (Prometheus's --storage.tsdb.path); must be empty.
    dir: PathBuf,
    /// Start: ms since the epoch, RFC 3339, or a duration before now (`-3d`).
    #[arg(long = "min-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    min_time: Option<TimeArg>,
    /// End (inclusive), same forms.
    #[arg(long = "max-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    max_time: Option<TimeArg>,
    #[command(flatten)]
    relabel: super::flags::RelabelFlags,
    /// Restore into a directory that is not empty (nothing in it is replaced or deleted).
    #[arg(long)]
    force: bool,
    /// Verify each block before it is renamed into place.
    #[arg(long)]
    verify: bool,
    /// Files downloaded at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

fn read_secret(path: &Path, flag: &str) -> anyhow::Result<String> {
    let s = std::fs::read_to_string(path).with_context(|| format!("{flag} {}", path.display()))?;
    let s = s.trim_end_matches(['\n', '\r']).to_string();
    if s.is_empty() {
        bail!("{flag} {}: the file is empty", path.display());
    }
    Ok(s)
}

pub fn run_backup(a: BackupArgs) -> anyhow::Result<ExitCode> {
    let labels = parse_labels(&a.labels)?;
    if labels.is_empty() {
        bail!("--label: at least one external label is needed (Thanos refuses blocks without them)");
    }
    let auth = match (&a.username, &a.password_file, &a.bearer_token_file) {
        (Some(u), Some(p), None) => {
            Some(Auth::Basic { username: u.clone(), password: read_secret(p, "--prometheus.password-file")? })
        }
        (None, None, Some(t)) => Some(Auth::Bearer(read_secret(t, "--prometheus.bearer-token-file")?)),
        _ => None,
    };
    let timeout = Duration::from_millis(a.timeout.max(0) as u64);
    let retry = Duration::from_millis(a.retry_interval.max(0) as u64);
    let prom = Prometheus::new(&a.url, auth, timeout)?;
    let opts =
        BackupOptions { tsdb_path: a.tsdb_path.clone(), labels, skip_head: a.skip_head, concurrency: a.concurrency };
    let rt = strata::bucket::runtime().context("cannot start the async runtime")?;
    rt.block_on(async {
        let bucket = a.objstore.open().await.map_err(Configuration)?;
        let mut attempt = 0u32;
        loop {
            match backup(&prom, &bucket, &opts).await {
                Ok(r) => {
                    for m in &r.uploaded {
                        println!("uploaded {} (mint={} maxt={} samples={})", m.ulid, m.min_time, m.max_time, m.stats.num_samples);
                    }
                    for id in &r.skipped {
                        println!("skipped {id}: already in {}", bucket.name());
                    }
                    tracing::info!(
                        snapshot = r.snapshot.as_str(),
                        uploaded = r.uploaded.len(),
                        skipped = r.skipped.len(),
                        empty = r.empty.len(),
                        bucket = bucket.name(),
                        "backup done"
                    );
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) if e.is_transient() && attempt < a.max_retries => {
                    attempt += 1;
                    let wait = retry.saturating_mul(1 << (attempt - 1).min(4));
                    tracing::warn!(err = %e, attempt, max_retries = a.max_retries, retry_in = ?wait, "backup failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(e) if attempt > 0 => bail!("backup failed, giving up after {} attempts: {e}", attempt + 1),
                Err(e) => bail!("backup failed: {e}"),
            }
        }
    })
    .or_else(failed)
}

/// A backup or restore that failed once under way: one line, exit 1 (bad flags and
/// configuration exit 2, through `main`).
fn failed(e: anyhow::Error) -> anyhow::Result<ExitCode> {
    if e.downcast_ref::<Configuration>().is_some() {
        return Err(e);
    }
    eprintln!("strata: {e:#}");
    Ok(ExitCode::from(1))
}

pub fn run_restore(a: RestoreArgs) -> anyhow::Result<ExitCode> {
    let now = strata::time::now_ms();
    let (min, max) = (a.min_time.map(|t| t.at(now)), a.max_time.map(|t| t.at(now)));
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo > hi {
            bail!("--min-time is after --max-time");
        }
    }
    let rules = a.relabel.rules()?;
    let opts = RestoreOptions {
        selector: Selector::new(rules, min, max),
        force: a.force,
        concurrency: a.concurrency,
        verify: a.verify,
    };
    let rt = strata::bucket::runtime().context("cannot start the async runtime")?;
    rt.block_on(async {
        let bucket = a.objstore.open().await.map_err(Configuration)?;
        let r = restore(&bucket, &a.dir, &opts).await.context("restore failed")?;
        for (sources, out) in &r.merged {
            let ids: Vec<String> = sources.iter().map(|u| u.to_string()).collect();
            println!("merged {} overlapping blocks into {out} ({})", ids.len(), ids.join(","));
        }
        for m in &r.blocks {
            println!("restored {} mint={} maxt={} samples={}", m.ulid, m.min_time, m.max_time, m.stats.num_samples);
        }
        tracing::info!(
            downloaded = r.downloaded.len(),
            merged = r.merged.len(),
            blocks = r.blocks.len(),
            already_there = r.present.len(),
            dir = %a.dir.display(),
            "restore done"
        );
        Ok(ExitCode::SUCCESS)
    })
    .or_else(failed)
}

/// The bucket configuration was unusable: nothing was done (exit 2).
#[derive(Debug)]
struct Configuration(anyhow::Error);

impl std::fmt::Display for Configuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Configuration {}

/// `strata bucket upload DIR --wait`: the continuous shipper, until SIGTERM or Ctrl-C.
pub async fn ship(
    bucket: strata::bucket::Bucket,
    dir: &Path,
    opts: ShipperOptions,
    interval_ms: i64,
    http_address: &str,
) -> anyhow::Result<ExitCode> {
    let interval = Duration::from_millis(interval_ms.max(0) as u64);
    let upload_compacted = opts.upload_compacted;
    let shipper = Shipper::new(dir, bucket, opts)?;
    let addr = serve_metrics(http_address, shipper.metrics())?;
    tracing::info!(address = %addr, dir = %dir.display(), interval = ?interval, upload_compacted, "shipper started");
    // Registered before the first pass, so a SIGTERM during it is not the default (fatal) action.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let stop = async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    };
    shipper.run(interval, stop).await;
    Ok(ExitCode::SUCCESS)
}

/// `/metrics` and `/-/healthy` for the shipper, on the job's HTTP server with a registry
/// of its own (the one place that knows the server).
fn serve_metrics(addr: &str, metrics: ShipperMetrics) -> anyhow::Result<SocketAddr> {
    use strata::job::http::{serve, Status};
    let status = Arc::new(Status::bare());
    for (name, help, metric) in metrics.all() {
        match metric {
            ShipperMetric::Counter(m) => status.register(name, help, m),
            ShipperMetric::Gauge(m) => status.register(name, help, m),
            ShipperMetric::Seconds(m) => status.register(name, help, m),
        }
    }
    status.ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let server = serve(addr, status).with_context(|| format!("--http-address {addr}"))?;
    Ok(server.addr)
}
