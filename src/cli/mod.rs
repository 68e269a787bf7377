//! The `strata` command line: flags are parsed into validated options, then the library
//! does the work. Only this module prints and uses `anyhow`.

use std::io::{self, BufWriter, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use strata::block::{list_blocks, Block};
use strata::dump::{dump, DumpOptions};
use strata::format::aggr::AggrType;
use strata::labels::Selector;
use strata::time::go_duration_ms;
use strata::verify::verify_block;

mod backup;
mod bucket;
mod demo;
mod downsample;
mod flags;
mod log;
mod rewrite;
mod run;
mod web;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Compacts, deduplicates, downsamples and applies retention to Prometheus TSDB blocks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    log: log::LogFlags,
}

#[derive(Subcommand)]
enum Command {
    /// One row per block: ULID, time range, duration, series, samples, chunks, level,
    /// resolution, external labels.
    Inspect {
        /// A directory of blocks (a Prometheus data directory works) or one block.
        dir: PathBuf,
    },
    /// Every sample, one per line, in `promtool tsdb dump`'s format.
    Dump {
        dir: PathBuf,
        /// Minimum timestamp to dump (ms, inclusive).
        #[arg(long, default_value_t = i64::MIN, allow_negative_numbers = true)]
        min_time: i64,
        /// Maximum timestamp to dump (ms, inclusive).
        #[arg(long, default_value_t = i64::MAX, allow_negative_numbers = true)]
        max_time: i64,
        /// Series selector, e.g. `up{job="api"}`.
        #[arg(long = "match")]
        selector: Option<String>,
        /// For downsampled blocks: the aggregate to print.
        #[arg(long, value_enum)]
        aggr: Option<flags::AggrFlag>,
    },
    /// Checks every block; exit 1 and one line per problem if any.
    Verify { dir: PathBuf },
    /// Compacts a directory of blocks: vertical merges of overlaps, leveled merges over
    /// the block ranges, replica deduplication; repeats until nothing is left to do.
    Compact(CompactArgs),
    /// Writes synthetic blocks (for benchmarks at scale).
    Gen(GenArgs),
    /// Tries strata out: a FILESYSTEM bucket in DIR gets sample blocks from two HA
    /// replicas (26 hours of 2h blocks) if it is empty, then one iteration of the
    /// compactor job (`strata run`) compacts and deduplicates them.
    Demo {
        #[arg(default_value = "strata-demo")]
        dir: PathBuf,
    },
    /// The compactor job against a bucket, a drop-in for `thanos compact` (same objstore
    /// YAML, flags, layout and markers).
    Run(Box<run::RunArgs>),
    /// Tools over a Thanos bucket (ls, inspect, verify, mark, cleanup, upload,
    /// download, rewrite, replicate, retention, downsample), configured by Thanos's
    /// objstore YAML.
    Bucket(bucket::BucketArgs),
    /// Deletes series (or time ranges of them) and relabels series in local blocks,
    /// as `strata bucket rewrite` does in a bucket; dry run unless --no-dry-run.
    #[command(
        after_help = "Example:\n  strata rewrite ./data --rewrite.to-relabel-config-file relabel.yaml --no-dry-run\n\nrelabel.yaml (Prometheus relabel rules over series labels):\n  - action: labeldrop\n    regex: api_key"
    )]
    Rewrite(rewrite::RewriteArgs),
    /// Takes a snapshot of a running Prometheus (admin API, head included) and uploads
    /// its blocks into the bucket.
    Backup(backup::BackupArgs),
    /// Restores the raw blocks of a time range from the bucket into an empty directory
    /// Prometheus starts on (overlapping blocks merged).
    Restore(backup::RestoreArgs),
    /// Downsamples a directory of blocks as Thanos does: raw blocks of 40h or more to 5m,
    /// 5m blocks of 10 days or more to 1h, only those not yet downsampled.
    Downsample(downsample::DownsampleArgs),
}

#[derive(clap::Args)]
struct GenArgs {
    /// Directory to write the blocks into.
    #[arg(long)]
    output: PathBuf,
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Total time covered.
    #[arg(long, default_value = "2h", value_parser = flags::duration_ms)]
    duration: i64,
    /// Time covered by each block.
    #[arg(long = "block-duration", default_value = "2h", value_parser = flags::duration_ms)]
    block_duration: i64,
    #[arg(long = "scrape-interval", default_value = "15s", value_parser = flags::duration_ms)]
    scrape_interval: i64,
    /// First sample time in ms (default: a fixed, 2h-aligned time).
    #[arg(long = "start", default_value_t = 1_700_006_400_000, allow_negative_numbers = true)]
    start: i64,
    /// Fraction of series replaced by new ones in each following block.
    #[arg(long, default_value_t = 0.0)]
    churn: f64,
    /// HA replicas: copies with the same series, scrapes shifted by --replica-offset.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    #[arg(long = "replica-offset", default_value = "1s", value_parser = flags::duration_ms)]
    replica_offset: i64,
    /// External label naming each replica (`NAME="rN"`); without it replicas are plain
    /// overlapping blocks.
    #[arg(long = "replica-label")]
    replica_label: Option<String>,
    /// Value shape of the float series.
    #[arg(long, value_enum, default_value_t = flags::ShapeFlag::Mixed)]
    shape: flags::ShapeFlag,
    /// Make every N-th series a native histogram (0: none).
    #[arg(long = "native-histograms-every", default_value_t = 0)]
    histogram_every: usize,
    /// External label k=v for the thanos section; repeatable.
    #[arg(long = "label")]
    labels: Vec<String>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct CompactArgs {
    /// A directory of blocks (e.g. a Prometheus data directory; stop Prometheus first).
    dir: PathBuf,
    /// Write new blocks here and leave DIR untouched.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Ranges blocks are compacted into, ascending.
    #[arg(long = "block-ranges", default_value = "2h,8h,2d,14d", value_delimiter = ',', value_parser = flags::duration_ms)]
    block_ranges: Vec<i64>,
    #[command(flatten)]
    dedup: DedupFlags,
    /// Merge overlapping blocks (on by default for local directories).
    #[arg(long = "compact.enable-vertical-compaction", default_value_t = true, action = clap::ArgAction::Set)]
    vertical: bool,
    /// Worker threads (default: all cores).
    #[arg(long, visible_alias = "compact.concurrency")]
    concurrency: Option<usize>,
    /// Series per batch handed to the worker threads.
    #[arg(long = "compact.series-batch", default_value_t = 2048, hide = true)]
    series_batch: usize,
    /// Segment file size in bytes (tests use small ones).
    #[arg(long = "segment-size", hide = true)]
    segment_size: Option<u64>,
    /// Do not write 5m and 1h downsampled blocks after compacting.
    #[arg(long = "downsampling.disable")]
    downsampling_disable: bool,
    #[command(flatten)]
    retention: RetentionFlags,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`strata dump | head`) is not an error worth a message.
            if e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe))
                || format!("{e:#}").contains("Broken pipe")
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("strata: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Inspect { dir } => inspect(&dir),
        Command::Dump { dir, min_time, max_time, selector, aggr } => {
            let selector = match selector {
                Some(s) => Some(Selector::parse(&s).map_err(anyhow::Error::msg).context("--match")?),
                None => None,
            };
            let aggr = aggr.map(AggrType::from);
            if min_time > max_time {
                bail!("--min-time {min_time} is after --max-time {max_time}");
            }
            let opts = DumpOptions { min_time, max_time, selector, aggr };
            let stdout = io::stdout();
            let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
            dump(&dir, &opts, &mut out)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { dir } => verify(&dir),
        Command::Compact(args) => compact(args),
        Command::Gen(args) => gen(args),
        Command::Demo { dir } => demo::run(&dir),
        Command::Bucket(args) => bucket::run(args),
        Command::Rewrite(args) => rewrite::run(args),
        Command::Run(args) => run::run(*args),
        Command::Downsample(args) => downsample::run(args),
        Command::Backup(args) => backup::run_backup(args),
        Command::Restore(args) => backup::run_restore(args),
    }
}

fn gen(a: GenArgs) -> anyhow::Result<ExitCode> {
    use strata::gen::{generate, GenOptions};
    if !(0.0..=1.0).contains(&a.churn) {
        bail!("--churn must be between 0 and 1");
    }
    let mut labels = std::collections::BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').with_context(|| format!("--label {l:?}: want k=v"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    let opts = GenOptions {
        series: a.series,
        start_ms: a.start,
        duration_ms: a.duration,
        block_ms: a.block_duration,
        scrape_ms: a.scrape_interval,
        churn: a.churn,
        replicas: a.replicas.max(1),
        replica_offset_ms: a.replica_offset,
        replica_label: a.replica_label.clone(),
        shape: a.shape.into(),
        histogram_every: a.histogram_every,
        labels,
        seed: a.seed,
    };
    let start = std::time::Instant::now();
    let paths = generate(&a.output, &opts)?;
    eprintln!("strata gen: {} blocks written to {} in {:.2?}", paths.len(), a.output.display(), start.elapsed());
    Ok(ExitCode::SUCCESS)
}

/// `--deduplication.*` flags, shared by `compact` and `run`.
#[derive(clap::Args)]
pub struct DedupFlags {
    /// External label(s) that differ only between HA replicas; repeatable or comma-separated.
    #[arg(long = "deduplication.replica-label", value_delimiter = ',')]
    replica_labels: Vec<String>,
    /// How overlapping samples merge: "" (one sample per timestamp) or "penalty".
    #[arg(long = "deduplication.func", value_enum, default_value_t = flags::DedupFuncFlag::OneToOne)]
    dedup_func: flags::DedupFuncFlag,
}

impl DedupFlags {
    /// The replica labels (trimmed, empties dropped) and the merge function.
    pub fn parse(&self) -> anyhow::Result<(Vec<String>, strata::compact::dedup::DedupFunc)> {
        use strata::compact::dedup::DedupFunc;
        let dedup = DedupFunc::from(self.dedup_func);
        let labels: Vec<String> =
            self.replica_labels.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        if dedup == DedupFunc::Penalty && labels.is_empty() {
            bail!("--deduplication.func=penalty needs at least one --deduplication.replica-label");
        }
        Ok((labels, dedup))
    }
}

/// `--retention.resolution-*` flags, shared by `compact` and `run`.
#[derive(clap::Args)]
pub struct RetentionFlags {
    /// Remove raw blocks whose data is older than this (0d: keep forever).
    #[arg(long = "retention.resolution-raw", default_value = "0d", value_parser = flags::duration_ms)]
    retention_raw: i64,
    /// Remove 5m downsampled blocks older than this (0d: keep forever).
    #[arg(long = "retention.resolution-5m", default_value = "0d", value_parser = flags::duration_ms)]
    retention_5m: i64,
    /// Remove 1h downsampled blocks older than this (0d: keep forever).
    #[arg(long = "retention.resolution-1h", default_value = "0d", value_parser = flags::duration_ms)]
    retention_1h: i64,
}

impl RetentionFlags {
    pub fn parse(&self) -> anyhow::Result<strata::retention::Retention> {
        Ok(strata::retention::Retention {
            raw_ms: self.retention_raw,
            five_minutes_ms: self.retention_5m,
            one_hour_ms: self.retention_1h,
        })
    }
}

/// A progress bar counting series, on stderr when it is a terminal and not `--quiet`.
pub(crate) fn series_progress_bar(quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !io::stderr().is_terminal() {
        return None;
    }
    let b = indicatif::ProgressBar::new(0);
    b.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} series {msg}")
            .expect("template"),
    );
    Some(b)
}

/// The progress bar (on a terminal) and one line per block written, for `strata compact`.
struct CompactObserver {
    bar: Option<indicatif::ProgressBar>,
}

impl CompactObserver {
    fn line(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl strata::observe::Observer for CompactObserver {
    fn compaction_planned(&self, plans: &[strata::compact::plan::Plan], series_total: u64) {
        if let Some(b) = &self.bar {
            let blocks: usize = plans.iter().map(|p| p.blocks.len()).sum();
            b.set_length(b.length().unwrap_or(0) + series_total);
            b.set_message(format!("{} compactions of {blocks} blocks", plans.len()));
        }
    }
    fn progress(&self, delta: u64) {
        if let Some(b) = &self.bar {
            b.inc(delta);
        }
    }
    fn compacted(&self, w: &strata::compact::run::Written) {
        let m = &w.meta;
        self.line(format!(
            "compacted {} level={} mint={} maxt={} ({}) from {} blocks ({:?}): series={} samples={} chunks={} took={:.2?}",
            m.ulid,
            m.compaction.level,
            m.min_time,
            m.max_time,
            go_duration_ms(m.max_time - m.min_time),
            w.sources.len(),
            w.kind,
            m.stats.num_series,
            m.stats.num_samples,
            m.stats.num_chunks,
            w.took
        ));
    }
    fn compaction_failed(&self, f: &strata::compact::run::GroupFailure) {
        let ids: Vec<String> = f.blocks.iter().map(|u| u.to_string()).collect();
        self.line(format!(
            "group {} failed, its blocks are left as they were ({}): {}",
            f.group,
            ids.join(","),
            f.error
        ));
    }
    fn downsampled(&self, w: &strata::downsample::Written) {
        let m = &w.meta;
        self.line(format!(
            "downsampled {} to {} resolution={} mint={} maxt={} series={} samples={} took={:.2?}",
            w.source,
            m.ulid,
            go_duration_ms(m.resolution()),
            m.min_time,
            m.max_time,
            m.stats.num_series,
            m.stats.num_samples,
            w.took
        ));
    }
    fn downsample_failed(&self, f: &strata::downsample::Failure) {
        self.line(format!("downsampling {} failed, left as it was: {}", f.block.display(), f.error));
    }
}

fn compact(a: CompactArgs) -> anyhow::Result<ExitCode> {
    use strata::compact::local::{compact_local, LocalOptions};
    use strata::compact::plan::Policy;
    use strata::compact::run::CompactOptions;

    let ranges = a.block_ranges.clone();
    if ranges.contains(&0) {
        bail!("--block-ranges: 0 is not a block range");
    }
    if ranges.windows(2).any(|w| w[0] >= w[1]) {
        bail!("--block-ranges must be strictly increasing");
    }
    let (replica_labels, dedup) = a.dedup.parse()?;
    if !a.dir.is_dir() {
        bail!("{}: not a directory", a.dir.display());
    }
    let mut compact = CompactOptions {
        policy: Policy { ranges, vertical: a.vertical || !replica_labels.is_empty() },
        replica_labels,
        dedup,
        output: a.output.clone(),
        ..Default::default()
    };
    compact.merge.batch.series = a.series_batch.max(1);
    compact.retention = a.retention.parse()?;
    if let Some(s) = a.segment_size {
        compact.merge.segment_size = s;
    }
    let opts = LocalOptions { compact, downsample: (!a.downsampling_disable).then(Default::default) };
    let bar = series_progress_bar(a.quiet);
    let obs = CompactObserver { bar };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(a.concurrency.unwrap_or(0)).build().context("thread pool")?;
    let report = pool.install(|| compact_local(&a.dir, &opts, &obs))?;
    if let Some(b) = &obs.bar {
        b.finish_and_clear();
    }
    let c = &report.compaction;
    for r in &c.refused {
        let ids: Vec<String> = r.blocks.iter().map(|u| u.to_string()).collect();
        eprintln!("group {}: not compacted: {} ({})", r.group, r.reason, ids.join(","));
    }
    if !c.expired.is_empty() {
        let ids: Vec<String> = c.expired.iter().map(|u| u.to_string()).collect();
        eprintln!("retention: removed {} expired blocks ({})", ids.len(), ids.join(","));
    }
    eprintln!(
        "strata compact: {} blocks written in {} iterations, {} downsampled, {} groups failed, {} blocks failed to downsample",
        c.written.len(),
        c.iterations,
        report.downsampled.len(),
        c.failures.len(),
        report.downsample_failures.len()
    );
    if !report.is_complete() {
        for f in &c.failures {
            eprintln!("error: group {}: {}", f.group, f.error);
        }
        for f in &report.downsample_failures {
            eprintln!("error: downsampling {}: {}", f.block.display(), f.error);
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use bucket::{labels_of, meta_columns, print_table, META_HEADER};
    let blocks = list_blocks(dir)?;
    let mut header: Vec<String> = META_HEADER.iter().map(|h| h.to_string()).collect();
    header.push("LABELS".into());
    let mut rows = vec![header];
    for e in &blocks {
        let b = Block::open(&e.path)?;
        let mut row = meta_columns(&b.meta);
        row.push(labels_of(&b.meta));
        rows.push(row);
    }
    print_table(&rows)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let blocks = list_blocks(dir)?;
    if blocks.is_empty() {
        bail!("{}: no blocks found", dir.display());
    }
    let mut bad = 0;
    let stderr_tty = io::stderr().is_terminal();
    for e in &blocks {
        let (problems, counts) = verify_block(&e.path)?;
        for p in &problems {
            println!("{p}");
        }
        if !problems.is_empty() {
            bad += 1;
        } else if stderr_tty {
            eprintln!(
                "{}: ok ({} series, {} chunks, {} samples)",
                e.path.display(),
                counts.series,
                counts.chunks,
                counts.samples
            );
        }
    }
    if bad > 0 {
        eprintln!("strata verify: {bad} of {} blocks have problems", blocks.len());
        return Ok(ExitCode::from(1));
    }
    eprintln!("strata verify: {} blocks ok", blocks.len());
    Ok(ExitCode::SUCCESS)
}
