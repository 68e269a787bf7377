//! `strata bucket ...`: tools over a Thanos bucket, like `thanos tools bucket`, with the
//! same objstore configuration flags. See `docs/bucket.md`.
//!
//! Exit codes: 0 done; 1 some blocks failed (verify problems, an upload, download or
//! deletion that failed while the others went on); 2 nothing could be done (bad flags
//! or configuration, bucket unreachable, wrong credentials, missing bucket).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use ulid::Ulid;

use strata::block::list_blocks;
use strata::block::Block;
use strata::bucket::replicate::ReplicateFilter;
use strata::bucket::sync::{cleanup, plan_cleanup, CleanupReason};
use strata::bucket::{
    BlockInfo, Bucket, BucketError, CleanupOptions, DownloadOptions, ErrorKind, ObjstoreConfig, SyncOptions, Synced,
    UploadOptions,
};
use strata::compact::rewrite::{analyse, rewrite_block, Rewrite};
use strata::format::meta::{BlockMeta, ThanosMeta, DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK};
use strata::job::http::Status;
use strata::job::run::{downsample_pass, retention_pass, IterationReport, JobOptions};
use strata::time::{go_duration_ms, now_ms, parse_rfc3339_ms, rfc3339_ms};

use super::flags::duration_ms;

#[derive(Args)]
pub struct BucketArgs {
    #[command(flatten)]
    objstore: ObjstoreFlags,
    /// Blocks whose meta.json and markers are read at once.
    #[arg(long = "block-meta-fetch-concurrency", default_value_t = 32, global = true)]
    meta_concurrency: usize,
    #[command(subcommand)]
    command: BucketCommand,
}

/// `--objstore.config-file` / `--objstore.config`, exactly one of them.
#[derive(Args, Clone, Default)]
pub struct ObjstoreFlags {
    /// Path of the objstore YAML (Thanos's format: type, config, prefix).
    #[arg(long = "objstore.config-file", value_name = "FILE", global = true)]
    pub config_file: Option<PathBuf>,
    /// The objstore YAML itself (instead of --objstore.config-file).
    #[arg(long = "objstore.config", value_name = "YAML", global = true)]
    pub config: Option<String>,
}

impl ObjstoreFlags {
    /// The parsed configuration. Errors name the flag, the file and the key at fault.
    pub fn load(&self) -> anyhow::Result<ObjstoreConfig> {
        match (&self.config_file, &self.config) {
            (Some(_), Some(_)) => bail!("--objstore.config-file and --objstore.config are both set; use one"),
            (None, None) => bail!("no bucket configured: set --objstore.config-file FILE or --objstore.config YAML"),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--objstore.config-file {}", path.display()))?;
                ObjstoreConfig::parse(&text)
                    .map_err(|e| anyhow::anyhow!("--objstore.config-file {}: {e}", path.display()))
            }
            (None, Some(text)) => ObjstoreConfig::parse(text).map_err(|e| anyhow::anyhow!("--objstore.config: {e}")),
        }
    }

    /// Parses the configuration, prints its warnings and opens the bucket.
    pub async fn open(&self) -> anyhow::Result<Bucket> {
        let cfg = self.load()?;
        for w in cfg.warnings() {
            eprintln!("strata: warning: objstore config: {w}");
        }
        Ok(Bucket::open(&cfg).await?)
    }
}

#[derive(Subcommand)]
enum BucketCommand {
    /// Lists the blocks (ULIDs; `-o wide` adds ranges, labels and markers).
    Ls {
        #[arg(short = 'o', long = "output", value_enum, default_value = "plain")]
        output: LsFormat,
    },
    /// One row per block: time range, counts, level, resolution, source, external
    /// labels, markers.
    Inspect,
    /// Downloads blocks one at a time into a temporary directory and runs every check
    /// of `strata verify` on them.
    Verify {
        /// Only these blocks (repeatable); default: every block.
        #[arg(long = "id")]
        ids: Vec<Ulid>,
        /// Where blocks are downloaded to (default: the system's temporary directory).
        #[arg(long = "data-dir")]
        data_dir: Option<PathBuf>,
        /// Files downloaded at once.
        #[arg(long, visible_alias = "compact.blocks-fetch-concurrency", default_value_t = 4)]
        concurrency: usize,
    },
    /// Writes (or with --remove, deletes) a marker on blocks.
    Mark {
        /// The block (repeatable).
        #[arg(long = "id", required = true)]
        ids: Vec<Ulid>,
        /// deletion-mark.json, no-compact-mark.json or no-downsample-mark.json.
        #[arg(long, value_enum)]
        marker: MarkerFlag,
        /// Human-readable details stored in the marker.
        #[arg(long, default_value = "")]
        details: String,
        /// Remove the marker instead.
        #[arg(long)]
        remove: bool,
    },
    /// Deletes blocks marked for deletion longer than --delete-delay, and partial
    /// uploads nothing was written to for 48h (or the consistency delay, if longer).
    Cleanup {
        #[arg(long = "delete-delay", default_value = "48h", value_parser = duration_ms)]
        delete_delay: i64,
        #[arg(long = "consistency-delay", default_value = "30m", value_parser = duration_ms)]
        consistency_delay: i64,
        /// Only print what would be deleted.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Uploads the finished blocks of a Prometheus data directory with these external
    /// labels, skipping blocks already in the bucket; with --wait, keeps shipping each
    /// new block as a Thanos sidecar does (see docs/backup.md).
    Upload {
        dir: PathBuf,
        /// External label k=v (repeatable, at least one).
        #[arg(long = "label", required = true)]
        labels: Vec<String>,
        /// thanos.source written into meta.json (default: bucket.upload; sidecar with --wait).
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(SOURCES))]
        source: Option<String>,
        /// Chunk files uploaded at once per block.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Keep running: ship each new level-1 block once, recorded in DIR/thanos.shipper.json.
        #[arg(long)]
        wait: bool,
        /// With --wait: time between two looks at DIR.
        #[arg(long = "wait-interval", default_value = "30s", requires = "wait", value_parser = super::flags::duration_ms)]
        wait_interval: i64,
        /// With --wait: also ship compacted blocks (level above 1) once.
        #[arg(long = "shipper.upload-compacted", requires = "wait")]
        upload_compacted: bool,
        /// With --wait: /metrics and /-/healthy.
        #[arg(long = "http-address", default_value = "0.0.0.0:10902", requires = "wait")]
        http_address: String,
    },
    /// Restores the blocks of a time range into a directory Prometheus can open (raw
    /// blocks only unless --include-downsampled).
    Download(DownloadArgs),
    /// Rewrites blocks into new ones without the series or samples a deletion config
    /// names and with relabel rules applied (Thanos's `tools bucket rewrite`); a dry
    /// run unless --no-dry-run. The new block is uploaded meta.json last; with
    /// --delete-blocks the original is marked for deletion once the new one is
    /// uploaded and checked.
    #[command(
        after_help = "Example:\n  strata bucket rewrite --objstore.config-file bucket.yaml --id 01HQ... \\\n    --rewrite.to-delete-config-file delete.yaml --no-dry-run --delete-blocks\n\ndelete.yaml (Thanos's deletion requests; intervals in ms, absent: all time):\n  - matchers: '{job=\"leaky\"}'\n    intervals: [{mint: 1700007000000, maxt: 1700007600000}]"
    )]
    Rewrite {
        /// The block (repeatable, at least one).
        #[arg(long = "id", required = true)]
        ids: Vec<Ulid>,
        #[command(flatten)]
        flags: super::rewrite::RewriteFlags,
        /// Mark each original block for deletion after its rewrite is uploaded.
        #[arg(long = "delete-blocks")]
        delete_blocks: bool,
        /// Where blocks are downloaded and rewritten (default: the system's temporary
        /// directory).
        #[arg(long = "tmp.dir")]
        tmp_dir: Option<PathBuf>,
        /// Files downloaded and uploaded at once per block.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Copies blocks into another bucket (Thanos's `tools bucket replicate`): those
    /// not there yet, meta.json last, never blocks marked for deletion. Runs once.
    #[command(
        after_help = "Example:\n  strata bucket replicate --objstore.config-file eu.yaml --objstore-to.config-file backup.yaml \\\n    --matcher 'cluster=\"eu1\"' --resolution 0s"
    )]
    Replicate(ReplicateArgs),
    /// Marks the blocks the retention flags expire for deletion, once: the retention
    /// phase of `strata run` alone.
    #[command(
        after_help = "Example:\n  strata bucket retention --objstore.config-file bucket.yaml --retention.resolution-raw 90d"
    )]
    Retention {
        #[arg(long = "consistency-delay", default_value = "30m", value_parser = duration_ms)]
        consistency_delay: i64,
        #[command(flatten)]
        retention: super::RetentionFlags,
    },
    /// Writes the 5m and 1h blocks that are due, and nothing else: the downsampling
    /// phase of `strata run` alone (repeated until nothing is left to downsample).
    #[command(
        after_help = "Example:\n  strata bucket downsample --objstore.config-file bucket.yaml --data-dir /var/tmp/strata"
    )]
    Downsample {
        /// Scratch space for downloaded and downsampled blocks.
        #[arg(long = "data-dir", default_value = "./data")]
        data_dir: PathBuf,
        #[arg(long = "consistency-delay", default_value = "30m", value_parser = duration_ms)]
        consistency_delay: i64,
        #[arg(long = "compact.blocks-fetch-concurrency", default_value_t = 4)]
        blocks_fetch_concurrency: usize,
        /// Stop at the first block that fails instead of marking it no-downsample.
        #[arg(long = "halt-on-error")]
        halt_on_error: bool,
    },
    /// Serves the bucket viewer (blocks page, its API, mark buttons) until stopped.
    Web(super::web::WebArgs),
}

/// `strata bucket download`'s flags.
#[derive(Args)]
struct DownloadArgs {
    dir: PathBuf,
    /// Start: ms since the epoch, RFC 3339, or a duration before now (`-3d`).
    #[arg(long = "min-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    min_time: Option<TimeArg>,
    /// End (inclusive), same forms.
    #[arg(long = "max-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    max_time: Option<TimeArg>,
    /// Only blocks with this external label k=v (repeatable; all must match).
    #[arg(long = "label")]
    labels: Vec<String>,
    /// Also 5m and 1h blocks (Prometheus cannot read their aggregate chunks).
    #[arg(long = "include-downsampled")]
    include_downsampled: bool,
    /// Verify each block before it is renamed into place.
    #[arg(long)]
    verify: bool,
    /// Files downloaded at once.
    #[arg(long, visible_alias = "compact.blocks-fetch-concurrency", default_value_t = 4)]
    concurrency: usize,
}

/// `strata bucket replicate`'s flags.
#[derive(Args)]
struct ReplicateArgs {
    #[command(flatten)]
    to: ObjstoreToFlags,
    /// Resolutions copied (repeatable: 0s, 5m, 1h).
    #[arg(long = "resolution", default_values = ["0s", "5m", "1h"], value_parser = duration_ms)]
    resolutions: Vec<i64>,
    /// Lowest compaction level copied.
    #[arg(long = "compaction-min", default_value_t = 1)]
    compaction_min: u32,
    /// Highest compaction level copied.
    #[arg(long = "compaction-max", default_value_t = 4)]
    compaction_max: u32,
    /// Only blocks whose external labels match this selector, e.g.
    /// `{cluster="eu1"}` (repeatable; all must match).
    #[arg(long = "matcher")]
    matchers: Vec<String>,
    /// Only these blocks (repeatable).
    #[arg(long = "id")]
    ids: Vec<Ulid>,
    /// Only blocks overlapping [--min-time, --max-time]: ms, RFC 3339, or a
    /// duration before now (-3d).
    #[arg(long = "min-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    min_time: Option<TimeArg>,
    #[arg(long = "max-time", allow_hyphen_values = true, value_parser = TimeArg::parse)]
    max_time: Option<TimeArg>,
}

/// `--objstore-to.config-file` / `--objstore-to.config`: the destination of replicate.
#[derive(Args, Clone, Default)]
pub struct ObjstoreToFlags {
    /// Path of the destination's objstore YAML.
    #[arg(long = "objstore-to.config-file", value_name = "FILE")]
    to_config_file: Option<PathBuf>,
    /// The destination's objstore YAML itself.
    #[arg(long = "objstore-to.config", value_name = "YAML")]
    to_config: Option<String>,
}

impl ObjstoreToFlags {
    async fn open(&self) -> anyhow::Result<Bucket> {
        // Field names differ from ObjstoreFlags': clap would take them for the global
        // --objstore.config* arguments.
        let cfg = match (&self.to_config_file, &self.to_config) {
            (Some(_), Some(_)) => bail!("--objstore-to.config-file and --objstore-to.config are both set; use one"),
            (None, None) => bail!("no destination: set --objstore-to.config-file FILE or --objstore-to.config YAML"),
            (Some(path), None) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("--objstore-to.config-file {}", path.display()))?;
                ObjstoreConfig::parse(&text)
                    .map_err(|e| anyhow::anyhow!("--objstore-to.config-file {}: {e}", path.display()))?
            }
            (None, Some(text)) => {
                ObjstoreConfig::parse(text).map_err(|e| anyhow::anyhow!("--objstore-to.config: {e}"))?
            }
        };
        for w in cfg.warnings() {
            eprintln!("strata: warning: destination objstore config: {w}");
        }
        Ok(Bucket::open(&cfg).await?)
    }
}

/// `mark --marker`: the marker file written or removed.
#[derive(Clone, Copy, ValueEnum)]
enum MarkerFlag {
    #[value(name = "deletion-mark.json")]
    Deletion,
    #[value(name = "no-compact-mark.json")]
    NoCompact,
    #[value(name = "no-downsample-mark.json")]
    NoDownsample,
}

impl MarkerFlag {
    fn file(self) -> &'static str {
        match self {
            MarkerFlag::Deletion => DELETION_MARK,
            MarkerFlag::NoCompact => NO_COMPACT_MARK,
            MarkerFlag::NoDownsample => NO_DOWNSAMPLE_MARK,
        }
    }
}

/// `upload --source`: the thanos.source values Thanos knows.
const SOURCES: [&str; 10] = [
    "",
    "sidecar",
    "receive",
    "compactor",
    "compactor.repair",
    "ruler",
    "bucket.repair",
    "bucket.rewrite",
    "bucket.upload",
    "test",
];

#[derive(Clone, Copy, ValueEnum)]
enum LsFormat {
    Plain,
    Wide,
    Json,
}

pub fn run(args: BucketArgs) -> anyhow::Result<ExitCode> {
    let rt = strata::bucket::runtime().context("cannot start the async runtime")?;
    rt.block_on(run_async(args))
}

async fn run_async(args: BucketArgs) -> anyhow::Result<ExitCode> {
    // Flags are checked before the bucket is touched.
    let sync_all = SyncOptions {
        concurrency: args.meta_concurrency.max(1),
        consistency_delay_ms: 0,
        delete_delay_ms: i64::MAX,
        deduplicate: false,
        now_ms: None,
    };
    let objstore = &args.objstore;
    match args.command {
        BucketCommand::Web(w) => super::web::run(objstore, sync_all, w).await,
        BucketCommand::Ls { output } => ls(&synced_blocks(objstore, &sync_all).await?, output),
        BucketCommand::Inspect => inspect(&synced_blocks(objstore, &sync_all).await?),
        BucketCommand::Verify { ids, data_dir, concurrency } => {
            let bucket = objstore.open().await?;
            verify(&bucket, &sync_all, &ids, data_dir, concurrency).await
        }
        BucketCommand::Mark { ids, marker, details, remove } => {
            let bucket = objstore.open().await?;
            mark(&bucket, &ids, marker, &details, remove).await
        }
        BucketCommand::Cleanup { delete_delay, consistency_delay, dry_run } => {
            cleanup_cmd(objstore, sync_all, delete_delay, consistency_delay, dry_run).await
        }
        BucketCommand::Upload {
            dir,
            labels,
            source,
            concurrency,
            wait,
            wait_interval,
            upload_compacted,
            http_address,
        } => {
            let source = source.unwrap_or_else(|| if wait { "sidecar" } else { "bucket.upload" }.to_string());
            let labels = parse_labels(&labels)?;
            if labels.is_empty() {
                bail!("--label: at least one external label is needed (Thanos refuses blocks without them)");
            }
            if wait {
                let bucket = objstore.open().await?;
                let opts = strata::backup::shipper::ShipperOptions { labels, source, upload_compacted, concurrency };
                return super::backup::ship(bucket, &dir, opts, wait_interval, &http_address).await;
            }
            let blocks = list_blocks(&dir)?;
            let bucket = objstore.open().await?;
            upload(&bucket, &blocks, &labels, &source, concurrency).await
        }
        BucketCommand::Download(d) => download_cmd(objstore, sync_all, d).await,
        BucketCommand::Rewrite { ids, flags, delete_blocks, tmp_dir, concurrency } => {
            let rewrite = flags.load()?;
            let bucket = objstore.open().await?;
            let opts = RewriteRun { dry_run: flags.dry_run(), delete_blocks, concurrency: concurrency.max(1) };
            bucket_rewrite(&bucket, &sync_all, &ids, &rewrite, tmp_dir, &opts).await
        }
        BucketCommand::Replicate(r) => replicate_cmd(objstore, &sync_all, r).await,
        BucketCommand::Retention { consistency_delay, retention } => {
            retention_cmd(objstore, sync_all, consistency_delay, &retention).await
        }
        BucketCommand::Downsample { data_dir, consistency_delay, blocks_fetch_concurrency, halt_on_error } => {
            let sync =
                SyncOptions { consistency_delay_ms: consistency_delay, delete_delay_ms: 48 * 3_600_000, ..sync_all };
            let opts =
                tool_job_options(data_dir, sync, Default::default(), blocks_fetch_concurrency.max(1), halt_on_error);
            downsample_cmd(objstore, &opts).await
        }
    }
}

/// Opens the bucket and reads every block's meta.json and markers, printing what could
/// not be read (`ls`, `inspect`).
async fn synced_blocks(objstore: &ObjstoreFlags, sync_all: &SyncOptions) -> anyhow::Result<Synced> {
    let bucket = objstore.open().await?;
    let synced = strata::bucket::sync::sync(&bucket, sync_all).await?;
    report_sync_problems(&synced);
    Ok(synced)
}

/// `strata bucket cleanup`.
async fn cleanup_cmd(
    objstore: &ObjstoreFlags,
    sync_all: SyncOptions,
    delete_delay_ms: i64,
    consistency_delay_ms: i64,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let opts = CleanupOptions { delete_delay_ms, consistency_delay_ms };
    let bucket = objstore.open().await?;
    let sync_opts = SyncOptions { consistency_delay_ms, delete_delay_ms, ..sync_all };
    run_cleanup(&bucket, &sync_opts, &opts, dry_run).await
}

/// `strata bucket download`.
async fn download_cmd(objstore: &ObjstoreFlags, sync_all: SyncOptions, d: DownloadArgs) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let min = d.min_time.map_or(i64::MIN, |t| t.at(now));
    let max = d.max_time.map_or(i64::MAX, |t| t.at(now));
    if min > max {
        bail!("--min-time is after --max-time");
    }
    let labels = parse_labels(&d.labels)?;
    let bucket = objstore.open().await?;
    // Like a store gateway: blocks marked for deletion long ago and blocks whose
    // data a compacted block holds too are left out, so nothing is doubled.
    let sync_opts = SyncOptions { delete_delay_ms: 48 * 3_600_000, deduplicate: true, ..sync_all };
    download(&bucket, &sync_opts, &d.dir, min, max, &labels, d.include_downsampled, d.verify, d.concurrency).await
}

/// `strata bucket replicate`.
async fn replicate_cmd(objstore: &ObjstoreFlags, sync_all: &SyncOptions, r: ReplicateArgs) -> anyhow::Result<ExitCode> {
    let now = now_ms();
    let mut filter = ReplicateFilter {
        resolutions: r.resolutions,
        compaction_min: r.compaction_min,
        compaction_max: r.compaction_max,
        ids: r.ids,
        min_time: r.min_time.map_or(i64::MIN, |t| t.at(now)),
        max_time: r.max_time.map_or(i64::MAX, |t| t.at(now)),
        ..Default::default()
    };
    for m in &r.matchers {
        let text = if m.trim_start().starts_with('{') { m.clone() } else { format!("{{{m}}}") };
        filter.matchers.push(
            strata::labels::Selector::parse(&text)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("--matcher {m:?}"))?,
        );
    }
    let from = objstore.open().await?;
    let to = r.to.open().await?;
    replicate(&from, &to, &filter, sync_all).await
}

/// `strata bucket retention`: the retention phase of `strata run`, once.
async fn retention_cmd(
    objstore: &ObjstoreFlags,
    sync_all: SyncOptions,
    consistency_delay_ms: i64,
    retention: &super::RetentionFlags,
) -> anyhow::Result<ExitCode> {
    let retention = retention.parse()?;
    if retention.is_unlimited() {
        bail!("no retention set: give --retention.resolution-raw, -5m or -1h");
    }
    let sync = SyncOptions { consistency_delay_ms, ..sync_all };
    let opts = tool_job_options(std::env::temp_dir(), sync, retention, 1, false);
    let bucket = objstore.open().await?;
    let status = Status::default();
    let synced = strata::bucket::sync::sync(&bucket, &opts.sync).await?;
    report_sync_problems(&synced);
    let mut report = IterationReport::default();
    retention_pass(&bucket, &opts, &status, &synced, &mut report).await?;
    for id in &report.expired {
        println!("{id}: marked for deletion (retention)");
    }
    eprintln!("strata bucket retention: {} blocks marked for deletion", report.expired.len());
    Ok(ExitCode::SUCCESS)
}

/// `strata bucket downsample`: the downsampling phase of `strata run`, repeated until
/// nothing is left to downsample.
async fn downsample_cmd(objstore: &ObjstoreFlags, opts: &JobOptions) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&opts.data_dir).with_context(|| format!("--data-dir {}", opts.data_dir.display()))?;
    let bucket = objstore.open().await?;
    let status = Status::default();
    let mut report = IterationReport::default();
    // Each pass writes what is due now; a new 5m block may make a 1h one due.
    loop {
        let synced = strata::bucket::sync::sync(&bucket, &opts.sync).await?;
        report_sync_problems(&synced);
        if downsample_pass(&bucket, opts, &status, &synced, &mut report).await? == 0 {
            break;
        }
    }
    for (src, new, res) in &report.downsampled {
        println!("{src}: downsampled to {} into {new}", go_duration_ms(*res));
    }
    for w in &report.warnings {
        eprintln!("strata: warning: {w}");
    }
    eprintln!("strata bucket downsample: {} blocks written", report.downsampled.len());
    Ok(if report.warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The job options the retention and downsampling phases read, for the tools that run
/// one phase alone.
fn tool_job_options(
    data_dir: PathBuf,
    sync: SyncOptions,
    retention: strata::retention::Retention,
    fetch_concurrency: usize,
    halt_on_error: bool,
) -> JobOptions {
    JobOptions {
        data_dir,
        cleanup: CleanupOptions {
            delete_delay_ms: sync.delete_delay_ms,
            consistency_delay_ms: sync.consistency_delay_ms,
        },
        sync,
        policy: Default::default(),
        replica_labels: Vec::new(),
        dedup: Default::default(),
        merge: Default::default(),
        compact_concurrency: 1,
        fetch_concurrency,
        retention,
        halt_on_error,
        downsampling: true,
        selector: Default::default(),
        // One pass, no waiting: the backlog gauges are not recomputed.
        progress_interval: std::time::Duration::ZERO,
    }
}

/// How `bucket rewrite` runs.
struct RewriteRun {
    dry_run: bool,
    delete_blocks: bool,
    concurrency: usize,
}

async fn bucket_rewrite(
    bucket: &Bucket,
    sync_opts: &SyncOptions,
    ids: &[Ulid],
    rewrite: &Rewrite,
    tmp_dir: Option<PathBuf>,
    opts: &RewriteRun,
) -> anyhow::Result<ExitCode> {
    let synced = strata::bucket::sync::sync(bucket, sync_opts).await?;
    report_sync_problems(&synced);
    let mut unique: Vec<Ulid> = Vec::with_capacity(ids.len());
    for id in ids {
        if !unique.contains(id) {
            unique.push(*id);
        }
    }
    let ids = &unique[..];
    for id in ids {
        match synced.all_blocks().find(|b| b.id() == *id) {
            None => bail!("block {id} is not in {} (or has no meta.json)", bucket.name()),
            Some(b) if b.deletion_mark.is_some() => bail!("block {id} is marked for deletion; not rewriting it"),
            Some(_) => {}
        }
    }
    let base = tmp_dir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("--tmp.dir {}", base.display()))?;
    let scratch = Scratch(base.join(format!("strata-bucket-rewrite-{}", Ulid::new())));
    std::fs::create_dir(&scratch.0).with_context(|| format!("cannot create {}", scratch.0.display()))?;
    for id in ids {
        let dir = bucket
            .download_block(
                *id,
                &scratch.0,
                &DownloadOptions { concurrency: opts.concurrency, verify: false, link: false },
            )
            .await?;
        let out_parent = scratch.0.join("out");
        std::fs::create_dir_all(&out_parent).with_context(|| format!("cannot create {}", out_parent.display()))?;
        let new = Ulid::new();
        let (rw, dry_run, d, op) = (rewrite.clone(), opts.dry_run, dir.clone(), out_parent.clone());
        let done = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let block = Block::open(&d)?;
            if dry_run {
                return Ok((analyse(&block, &rw)?, None));
            }
            let out = rewrite_block(block, &op, new, &rw, false)?;
            if let Some((path, _)) = &out.block {
                let (problems, _) = strata::verify::verify_block(path)?;
                if let Some(p) = problems.first() {
                    bail!("rewritten block {new} failed verification, not uploaded: {}: {}", p.file, p.message);
                }
            }
            Ok((out.stats, out.block))
        })
        .await??;
        let (stats, out) = done;
        let _ = std::fs::remove_dir_all(&dir);
        if opts.dry_run {
            println!("{id}: would remove {}", super::rewrite::describe(&stats));
            continue;
        }
        let why = match out {
            Some((path, _)) => {
                let up = bucket
                    .upload_block(&path, &UploadOptions { concurrency: opts.concurrency, meta: None, link: false })
                    .await?;
                let _ = std::fs::remove_dir_all(&path);
                println!("{id}: rewritten into {}: removed {}", up.ulid, super::rewrite::describe(&stats));
                format!("rewritten into {}", up.ulid)
            }
            None => {
                println!("{id}: every series removed, nothing uploaded: removed {}", super::rewrite::describe(&stats));
                "every series removed by a rewrite".to_string()
            }
        };
        // The new block is uploaded and checked (meta.json last, every object's size):
        // only now is the original marked.
        if opts.delete_blocks {
            bucket.mark_for_deletion(*id, &why).await?;
            println!("{id}: marked for deletion");
        }
    }
    if opts.dry_run {
        eprintln!("strata bucket rewrite: dry run, nothing written (--no-dry-run writes)");
    }
    Ok(ExitCode::SUCCESS)
}

async fn replicate(
    from: &Bucket,
    to: &Bucket,
    filter: &ReplicateFilter,
    sync_opts: &SyncOptions,
) -> anyhow::Result<ExitCode> {
    let scratch = Scratch(strata::bucket::replicate::scratch_dir(&std::env::temp_dir())?);
    let report = strata::bucket::replicate::replicate(from, to, filter, sync_opts, &scratch.0).await?;
    for (id, bytes) in &report.copied {
        println!("{id}: copied ({bytes} bytes)");
    }
    for id in &report.already {
        println!("{id}: already in {}", to.name());
    }
    for (id, e) in &report.failed {
        eprintln!("strata: cannot replicate {id}: {e}");
    }
    eprintln!(
        "strata bucket replicate: {} copied, {} already there, {} failed",
        report.copied.len(),
        report.already.len(),
        report.failed.len()
    );
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn report_sync_problems(s: &Synced) {
    for w in &s.warnings {
        eprintln!("strata: warning: {w}");
    }
    for p in &s.partial {
        eprintln!(
            "strata: partial upload {}: {} ({} objects, nothing written for {})",
            p.id,
            p.problem,
            p.objects,
            go_duration_ms(p.age_ms.max(0) / 1000 * 1000)
        );
    }
}

fn markers_of(b: &BlockInfo) -> String {
    let mut m = Vec::new();
    if b.deletion_mark.is_some() {
        m.push("deletion");
    }
    if b.no_compact_mark.is_some() {
        m.push("no-compact");
    }
    if b.no_downsample_mark.is_some() {
        m.push("no-downsample");
    }
    m.join(",")
}

/// The header of the columns every block table starts with ([`meta_columns`]).
pub(crate) const META_HEADER: [&str; 9] = [
    "BLOCK ULID",
    "MIN TIME",
    "MAX TIME",
    "DURATION",
    "NUM SAMPLES",
    "NUM CHUNKS",
    "NUM SERIES",
    "LEVEL",
    "RESOLUTION",
];

/// A block's row in the tables of `strata inspect` and `strata bucket inspect`, up to its
/// resolution.
pub(crate) fn meta_columns(m: &BlockMeta) -> Vec<String> {
    vec![
        m.ulid.to_string(),
        format!("{} ({})", m.min_time, rfc3339_ms(m.min_time)),
        format!("{} ({})", m.max_time, rfc3339_ms(m.max_time)),
        go_duration_ms(m.max_time - m.min_time),
        m.stats.num_samples.to_string(),
        m.stats.num_chunks.to_string(),
        m.stats.num_series.to_string(),
        m.compaction.level.to_string(),
        resolution_of(m),
    ]
}

pub(crate) fn labels_of(m: &BlockMeta) -> String {
    let l: Vec<String> = m.external_labels().iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", l.join(","))
}

fn resolution_of(m: &BlockMeta) -> String {
    match m.resolution() {
        0 => "raw".into(),
        r => go_duration_ms(r),
    }
}

pub(crate) fn print_table(rows: &[Vec<String>]) -> anyhow::Result<()> {
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    let mut out = io::stdout().lock();
    for r in rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

fn ls(s: &Synced, output: LsFormat) -> anyhow::Result<ExitCode> {
    let mut blocks: Vec<&BlockInfo> = s.all_blocks().collect();
    blocks.sort_by_key(|b| b.id());
    match output {
        LsFormat::Plain => {
            let mut out = io::stdout().lock();
            for b in &blocks {
                writeln!(out, "{}", b.id())?;
            }
        }
        LsFormat::Json => {
            let mut out = io::stdout().lock();
            for b in &blocks {
                writeln!(out, "{}", serde_json::to_string(&b.meta)?)?;
            }
        }
        LsFormat::Wide => {
            let mut rows = vec![[
                "ULID",
                "MIN TIME",
                "MAX TIME",
                "DURATION",
                "LEVEL",
                "RESOLUTION",
                "SOURCE",
                "LABELS",
                "MARKERS",
            ]
            .map(String::from)
            .to_vec()];
            for b in &blocks {
                let m = &b.meta;
                rows.push(vec![
                    m.ulid.to_string(),
                    rfc3339_ms(m.min_time),
                    rfc3339_ms(m.max_time),
                    go_duration_ms(m.max_time - m.min_time),
                    m.compaction.level.to_string(),
                    resolution_of(m),
                    b.source().to_string(),
                    labels_of(m),
                    markers_of(b),
                ]);
            }
            print_table(&rows)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(s: &Synced) -> anyhow::Result<ExitCode> {
    let mut blocks: Vec<&BlockInfo> = s.all_blocks().collect();
    blocks.sort_by_key(|b| b.id());
    let mut header: Vec<String> = META_HEADER.iter().map(|h| h.to_string()).collect();
    header.extend(["SOURCE", "LABELS", "MARKERS"].map(String::from));
    let mut rows = vec![header];
    for b in blocks {
        let mut row = meta_columns(&b.meta);
        row.extend([b.source().to_string(), labels_of(&b.meta), markers_of(b)]);
        rows.push(row);
    }
    print_table(&rows)?;
    Ok(ExitCode::SUCCESS)
}

async fn verify(
    bucket: &Bucket,
    sync_opts: &SyncOptions,
    ids: &[Ulid],
    data_dir: Option<PathBuf>,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let synced = strata::bucket::sync::sync(bucket, sync_opts).await?;
    report_sync_problems(&synced);
    let all: Vec<Ulid> = synced.all_blocks().map(BlockInfo::id).collect();
    let chosen: Vec<Ulid> = if ids.is_empty() {
        let mut v = all.clone();
        v.sort();
        v
    } else {
        for id in ids {
            if !all.contains(id) {
                bail!("block {id} is not in {} (or has no meta.json)", bucket.name());
            }
        }
        ids.to_vec()
    };
    if chosen.is_empty() {
        eprintln!("strata bucket verify: no blocks in {}", bucket.name());
        return Ok(ExitCode::SUCCESS);
    }
    let base = data_dir.unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base).with_context(|| format!("--data-dir {}", base.display()))?;
    let scratch = Scratch(base.join(format!("strata-bucket-verify-{}", Ulid::new())));
    std::fs::create_dir(&scratch.0).with_context(|| format!("cannot create {}", scratch.0.display()))?;
    let mut bad = 0;
    for id in &chosen {
        let opts = DownloadOptions { concurrency, verify: false, link: false };
        let dir = match bucket.download_block(*id, &scratch.0, &opts).await {
            Ok(d) => d,
            Err(e) => {
                println!("{id}: {e}");
                bad += 1;
                continue;
            }
        };
        let d = dir.clone();
        let (problems, counts) = tokio::task::spawn_blocking(move || strata::verify::verify_block(&d)).await??;
        for p in &problems {
            println!("{id}: {}: {}", p.file, p.message);
        }
        if problems.is_empty() {
            eprintln!("{id}: ok ({} series, {} chunks, {} samples)", counts.series, counts.chunks, counts.samples);
        } else {
            bad += 1;
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    if bad > 0 {
        eprintln!("strata bucket verify: {bad} of {} blocks have problems", chosen.len());
        return Ok(ExitCode::from(1));
    }
    eprintln!("strata bucket verify: {} blocks ok", chosen.len());
    Ok(ExitCode::SUCCESS)
}

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn mark(
    bucket: &Bucket,
    ids: &[Ulid],
    marker: MarkerFlag,
    details: &str,
    remove: bool,
) -> anyhow::Result<ExitCode> {
    let name = marker.file();
    for id in ids {
        if remove {
            if bucket.remove_marker(*id, name).await? {
                println!("{id}: removed {name}");
            } else {
                println!("{id}: has no {name}");
            }
            continue;
        }
        let wrote = match marker {
            MarkerFlag::Deletion => bucket.mark_for_deletion(*id, details).await?,
            MarkerFlag::NoCompact => bucket.mark_no_compact(*id, "manual", details).await?,
            MarkerFlag::NoDownsample => bucket.mark_no_downsample(*id, "manual", details).await?,
        };
        if wrote {
            println!("{id}: wrote {name}");
        } else {
            println!("{id}: already has {name}, left as it is");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_cleanup(
    bucket: &Bucket,
    sync_opts: &SyncOptions,
    opts: &CleanupOptions,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let synced = strata::bucket::sync::sync(bucket, sync_opts).await?;
    for w in &synced.warnings {
        eprintln!("strata: warning: {w}");
    }
    let describe = |r: &CleanupReason| match r {
        CleanupReason::Marked { ago_ms } => {
            format!("marked for deletion {} ago", go_duration_ms(*ago_ms / 1000 * 1000))
        }
        CleanupReason::AbortedPartialUpload { age_ms } => {
            format!("aborted partial upload, nothing written for {}", go_duration_ms(*age_ms / 1000 * 1000))
        }
    };
    let plan = plan_cleanup(&synced, opts);
    for p in &synced.partial {
        if !plan.iter().any(|(id, _)| *id == p.id) {
            eprintln!(
                "strata: left partial upload {} alone ({}; nothing written for {}: it may still be uploading)",
                p.id,
                p.problem,
                go_duration_ms(p.age_ms.max(0) / 1000 * 1000)
            );
        }
    }
    if dry_run {
        for (id, r) in &plan {
            println!("would delete {id} ({})", describe(r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let report = cleanup(bucket, &synced, opts).await;
    for (id, r) in &report.deleted {
        println!("deleted {id} ({})", describe(r));
    }
    for (id, e) in &report.failed {
        eprintln!("strata: cannot delete {id}: {e}");
    }
    eprintln!("strata bucket cleanup: {} blocks deleted, {} failed", report.deleted.len(), report.failed.len());
    Ok(if report.failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

async fn upload(
    bucket: &Bucket,
    blocks: &[strata::block::BlockDirEntry],
    labels: &BTreeMap<String, String>,
    source: &str,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let mut uploaded = 0;
    for e in blocks {
        let meta_path = e.path.join(strata::block::META_FILE);
        let meta = std::fs::read(&meta_path)
            .map_err(anyhow::Error::from)
            .and_then(|b| BlockMeta::parse(&b).map_err(anyhow::Error::from));
        let mut meta = match meta {
            Ok(m) => m,
            Err(err) => {
                eprintln!("strata: skipping {}: {}: {err}", e.path.display(), meta_path.display());
                failed += 1;
                continue;
            }
        };
        let id = meta.ulid;
        if bucket.head(&strata::bucket::block::block_key(id, strata::block::META_FILE)).await?.is_some() {
            println!("skipped {id}: already in {}", bucket.name());
            continue;
        }
        let t = meta.thanos.get_or_insert_with(ThanosMeta::default);
        t.labels = labels.clone();
        t.source = source.to_string();
        let opts = UploadOptions { concurrency, meta: Some(meta), link: false };
        match bucket.upload_block(&e.path, &opts).await {
            Ok(m) => {
                let bytes: i64 = m.thanos.as_ref().map(|t| t.files.iter().map(|f| f.size_bytes).sum()).unwrap_or(0);
                println!(
                    "uploaded {id} ({} files, {bytes} bytes)",
                    m.thanos.as_ref().map(|t| t.files.len()).unwrap_or(0)
                );
                uploaded += 1;
            }
            Err(err) if whole_bucket_failure(&err) => return Err(err.into()),
            Err(err) => {
                eprintln!("strata: cannot upload {}: {err}", e.path.display());
                failed += 1;
            }
        }
    }
    eprintln!(
        "strata bucket upload: {uploaded} uploaded, {} already there, {failed} failed",
        blocks.len() - uploaded - failed
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

#[allow(clippy::too_many_arguments)]
async fn download(
    bucket: &Bucket,
    sync_opts: &SyncOptions,
    dir: &Path,
    min: i64,
    max: i64,
    labels: &BTreeMap<String, String>,
    include_downsampled: bool,
    verify: bool,
    concurrency: usize,
) -> anyhow::Result<ExitCode> {
    let synced = strata::bucket::sync::sync(bucket, sync_opts).await?;
    report_sync_problems(&synced);
    let chosen: Vec<&BlockInfo> = synced
        .blocks
        .iter()
        .filter(|b| b.meta.min_time <= max && b.meta.max_time > min)
        .filter(|b| include_downsampled || b.meta.resolution() == 0)
        .filter(|b| {
            let ext = b.meta.external_labels();
            labels.iter().all(|(k, v)| ext.get(k) == Some(v))
        })
        .collect();
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut failed = 0;
    let mut done = 0;
    for b in &chosen {
        let id = b.id();
        if dir.join(id.to_string()).exists() {
            println!("skipped {id}: {} exists", dir.join(id.to_string()).display());
            continue;
        }
        match bucket.download_block(id, dir, &DownloadOptions { concurrency, verify, link: false }).await {
            Ok(p) => {
                println!("downloaded {id} to {}", p.display());
                done += 1;
            }
            Err(e) if whole_bucket_failure(&e) => return Err(e.into()),
            Err(e) => {
                eprintln!("strata: cannot download {id}: {e}");
                failed += 1;
            }
        }
    }
    eprintln!(
        "strata bucket download: {done} blocks downloaded, {} already there, {failed} failed",
        chosen.len() - done - failed
    );
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Failures every other block would hit too (unreachable, credentials, no bucket): stop
/// at the first instead of printing one per block.
fn whole_bucket_failure(e: &BucketError) -> bool {
    matches!(e.kind(), Some(ErrorKind::Unreachable | ErrorKind::AccessDenied | ErrorKind::NoSuchBucket))
}

pub(crate) fn parse_labels(v: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in v {
        let (k, val) = l.split_once('=').with_context(|| format!("--label {l:?}: want name=value"))?;
        let val = val.trim_matches('"');
        if k.is_empty()
            || !k.chars().enumerate().all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
        {
            bail!("--label {l:?}: {k:?} is not a valid label name");
        }
        if out.insert(k.to_string(), val.to_string()).is_some() {
            bail!("--label {k}: given twice");
        }
    }
    Ok(out)
}

/// A `--min-time`/`--max-time` value: ms since the epoch, RFC 3339, or a duration
/// relative to now (`-3d`, `-12h`, as Thanos accepts), resolved by [`TimeArg::at`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimeArg {
    /// Milliseconds since the epoch.
    At(i64),
    /// Milliseconds from now (negative: before now).
    FromNow(i64),
}

impl TimeArg {
    /// Value parser: `#[arg(value_parser = TimeArg::parse)]`.
    pub(crate) fn parse(s: &str) -> Result<TimeArg, String> {
        if let Ok(ms) = s.parse::<i64>() {
            return Ok(TimeArg::At(ms));
        }
        if let Some(ms) = parse_rfc3339_ms(s) {
            return Ok(TimeArg::At(ms));
        }
        let (neg, d) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let ms = duration_ms(d).map_err(|e| {
            format!("want ms since the epoch, an RFC 3339 time or a duration before now such as -3d: {e}")
        })?;
        Ok(TimeArg::FromNow(if neg { -ms } else { ms }))
    }

    /// Milliseconds since the epoch, relative values counted from `now`.
    pub(crate) fn at(self, now: i64) -> i64 {
        match self {
            TimeArg::At(ms) => ms,
            TimeArg::FromNow(ms) => now + ms,
        }
    }
}
