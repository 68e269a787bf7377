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
use strata::bucket::block::MARKERS;
use strata::bucket::sync::{cleanup, plan_cleanup, CleanupReason};
use strata::bucket::time::{now_ms, parse_rfc3339_ms};
use strata::bucket::{
    BlockInfo, Bucket, BucketError, CleanupOptions, DownloadOptions, ErrorKind, ObjstoreConfig, SyncOptions, Synced,
    UploadOptions,
};
use strata::format::meta::{BlockMeta, ThanosMeta, DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK};
use strata::gofmt::{go_duration_ms, rfc3339_ms};

use super::parse_duration_ms;

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
        #[arg(long)]
        marker: String,
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
        #[arg(long = "delete-delay", default_value = "48h")]
        delete_delay: String,
        #[arg(long = "consistency-delay", default_value = "30m")]
        consistency_delay: String,
        /// Only print what would be deleted.
        #[arg(long = "dry-run")]
        dry_run: bool,
    },
    /// Uploads the finished blocks of a Prometheus data directory with these external
    /// labels, skipping blocks already in the bucket (what a Thanos sidecar with
    /// --shipper.upload-compacted does).
    Upload {
        dir: PathBuf,
        /// External label k=v (repeatable, at least one).
        #[arg(long = "label", required = true)]
        labels: Vec<String>,
        /// thanos.source written into meta.json.
        #[arg(long, default_value = "bucket.upload")]
        source: String,
        /// Chunk files uploaded at once per block.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Restores the blocks of a time range into a directory Prometheus can open (raw
    /// blocks only unless --include-downsampled).
    Download {
        dir: PathBuf,
        /// Start: ms since the epoch, RFC 3339, or a duration before now (`-3d`).
        #[arg(long = "min-time", allow_hyphen_values = true)]
        min_time: Option<String>,
        /// End (inclusive), same forms.
        #[arg(long = "max-time", allow_hyphen_values = true)]
        max_time: Option<String>,
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
    },
    /// Serves the bucket viewer (blocks page, its API, mark buttons) until stopped.
    Web(super::web::WebArgs),
}

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
    match args.command {
        BucketCommand::Web(w) => super::web::run(&args.objstore, sync_all, w).await,
        BucketCommand::Ls { output } => {
            let bucket = args.objstore.open().await?;
            let synced = strata::bucket::sync::sync(&bucket, &sync_all).await?;
            report_sync_problems(&synced);
            ls(&synced, output)
        }
        BucketCommand::Inspect => {
            let bucket = args.objstore.open().await?;
            let synced = strata::bucket::sync::sync(&bucket, &sync_all).await?;
            report_sync_problems(&synced);
            inspect(&synced)
        }
        BucketCommand::Verify { ids, data_dir, concurrency } => {
            let bucket = args.objstore.open().await?;
            verify(&bucket, &sync_all, &ids, data_dir, concurrency).await
        }
        BucketCommand::Mark { ids, marker, details, remove } => {
            let name = MARKERS
                .iter()
                .copied()
                .find(|m| *m == marker)
                .with_context(|| format!("--marker {marker:?}: want one of {}", MARKERS.join(", ")))?;
            let bucket = args.objstore.open().await?;
            mark(&bucket, &ids, name, &details, remove).await
        }
        BucketCommand::Cleanup { delete_delay, consistency_delay, dry_run } => {
            let opts = CleanupOptions {
                delete_delay_ms: parse_duration_ms(&delete_delay).context("--delete-delay")?,
                consistency_delay_ms: parse_duration_ms(&consistency_delay).context("--consistency-delay")?,
            };
            let bucket = args.objstore.open().await?;
            let sync_opts = SyncOptions {
                consistency_delay_ms: opts.consistency_delay_ms,
                delete_delay_ms: opts.delete_delay_ms,
                ..sync_all
            };
            run_cleanup(&bucket, &sync_opts, &opts, dry_run).await
        }
        BucketCommand::Upload { dir, labels, source, concurrency } => {
            let labels = parse_labels(&labels)?;
            if labels.is_empty() {
                bail!("--label: at least one external label is needed (Thanos refuses blocks without them)");
            }
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
            if !SOURCES.contains(&source.as_str()) {
                bail!("--source {source:?}: want one of {}", SOURCES[1..].join(", "));
            }
            let blocks = list_blocks(&dir)?;
            let bucket = args.objstore.open().await?;
            upload(&bucket, &blocks, &labels, &source, concurrency).await
        }
        BucketCommand::Download { dir, min_time, max_time, labels, include_downsampled, verify, concurrency } => {
            let now = now_ms();
            let min = match &min_time {
                Some(s) => parse_time_arg(s, now).with_context(|| format!("--min-time {s:?}"))?,
                None => i64::MIN,
            };
            let max = match &max_time {
                Some(s) => parse_time_arg(s, now).with_context(|| format!("--max-time {s:?}"))?,
                None => i64::MAX,
            };
            if min > max {
                bail!("--min-time is after --max-time");
            }
            let labels = parse_labels(&labels)?;
            let bucket = args.objstore.open().await?;
            // Like a store gateway: blocks marked for deletion long ago and blocks whose
            // data a compacted block holds too are left out, so nothing is doubled.
            let sync_opts = SyncOptions { delete_delay_ms: 48 * 3_600_000, deduplicate: true, ..sync_all };
            download(&bucket, &sync_opts, &dir, min, max, &labels, include_downsampled, verify, concurrency).await
        }
    }
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

fn labels_of(m: &BlockMeta) -> String {
    let l: Vec<String> = m.external_labels().iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", l.join(","))
}

fn resolution_of(m: &BlockMeta) -> String {
    match m.resolution() {
        0 => "raw".into(),
        r => go_duration_ms(r),
    }
}

fn print_table(rows: &[Vec<String>]) -> anyhow::Result<()> {
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
    let mut rows = vec![[
        "BLOCK ULID",
        "MIN TIME",
        "MAX TIME",
        "DURATION",
        "NUM SAMPLES",
        "NUM CHUNKS",
        "NUM SERIES",
        "LEVEL",
        "RESOLUTION",
        "SOURCE",
        "LABELS",
        "MARKERS",
    ]
    .map(String::from)
    .to_vec()];
    for b in blocks {
        let m = &b.meta;
        rows.push(vec![
            m.ulid.to_string(),
            format!("{} ({})", m.min_time, rfc3339_ms(m.min_time)),
            format!("{} ({})", m.max_time, rfc3339_ms(m.max_time)),
            go_duration_ms(m.max_time - m.min_time),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.stats.num_series.to_string(),
            m.compaction.level.to_string(),
            resolution_of(m),
            b.source().to_string(),
            labels_of(m),
            markers_of(b),
        ]);
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
        let opts = DownloadOptions { concurrency, verify: false };
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
    name: &'static str,
    details: &str,
    remove: bool,
) -> anyhow::Result<ExitCode> {
    for id in ids {
        if remove {
            if bucket.remove_marker(*id, name).await? {
                println!("{id}: removed {name}");
            } else {
                println!("{id}: has no {name}");
            }
            continue;
        }
        let wrote = match name {
            DELETION_MARK => bucket.mark_for_deletion(*id, details).await?,
            NO_COMPACT_MARK => bucket.mark_no_compact(*id, "manual", details).await?,
            NO_DOWNSAMPLE_MARK => bucket.mark_no_downsample(*id, "manual", details).await?,
            _ => unreachable!("checked against MARKERS"),
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
        let opts = UploadOptions { concurrency, meta: Some(meta) };
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
        match bucket.download_block(id, dir, &DownloadOptions { concurrency, verify }).await {
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

fn parse_labels(v: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
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

/// `--min-time`/`--max-time`: ms since the epoch, RFC 3339, or a duration relative to
/// now (`-3d`, `-12h`, as Thanos accepts).
pub(crate) fn parse_time_arg(s: &str, now: i64) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(ms) = parse_rfc3339_ms(s) {
        return Ok(ms);
    }
    let (neg, d) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let ms = parse_duration_ms(d)
        .context("want ms since the epoch, an RFC 3339 time or a duration before now such as -3d")?;
    Ok(if neg { now - ms } else { now + ms })
}
