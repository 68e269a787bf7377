//! `strata downsample DIR`: Thanos's downsampling passes over a local directory of blocks
//! (see `docs/downsampling.md`).
//!
//! Exit codes: 0 done (also when nothing qualified); 1 some blocks failed while the others
//! were downsampled; 2 bad flags or an unreadable directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;

use strata::downsample::{downsample_dir, DirOptions, DownsampleOptions, Failure, Written};
use strata::observe::Observer;
use strata::time::go_duration_ms;

#[derive(Args)]
pub struct DownsampleArgs {
    /// A directory of blocks (e.g. a Prometheus data directory; stop Prometheus first).
    dir: PathBuf,
    /// Write the downsampled blocks here and leave DIR untouched; blocks already here
    /// count as done.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long, visible_alias = "downsample.concurrency")]
    concurrency: Option<usize>,
    /// Series per batch handed to the worker threads.
    #[arg(long = "downsample.series-batch", default_value_t = DownsampleOptions::default().batch.series, hide = true)]
    series_batch: usize,
    /// Segment file size in bytes (tests use small ones).
    #[arg(long = "segment-size", hide = true)]
    segment_size: Option<u64>,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

fn resolution_name(ms: i64) -> String {
    match ms {
        0 => "raw".into(),
        r => go_duration_ms(r),
    }
}

struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn line(&self, line: String) {
        match &self.bar {
            Some(b) => b.println(line),
            None => eprintln!("{line}"),
        }
    }
}

impl Observer for Progress {
    fn downsample_planned(&self, pass: usize, tasks: usize, series: u64) {
        if let Some(b) = &self.bar {
            b.set_length(b.length().unwrap_or(0) + series);
            b.set_message(format!("pass {pass}: {tasks} blocks"));
        }
    }
    fn progress(&self, series: u64) {
        if let Some(b) = &self.bar {
            b.inc(series);
        }
    }
    fn downsampled(&self, w: &Written) {
        let m = &w.meta;
        let secs = w.took.as_secs_f64().max(1e-9);
        self.line(format!(
            "downsampled {} resolution={} mint={} maxt={} ({}) from {} ({}): series={} samples={} chunks={} took={:.2?} ({:.1} MB/s of chunk data)",
            m.ulid,
            resolution_name(m.resolution()),
            m.min_time,
            m.max_time,
            go_duration_ms(m.max_time - m.min_time),
            w.source,
            resolution_name(w.source_resolution),
            m.stats.num_series,
            m.stats.num_samples,
            m.stats.num_chunks,
            w.took,
            w.chunk_bytes_in as f64 / 1e6 / secs,
        ));
    }
    fn downsample_failed(&self, f: &Failure) {
        self.line(format!("block {} failed and is left as it was: {}", f.block.display(), f.error));
    }
}

pub fn run(a: DownsampleArgs) -> anyhow::Result<ExitCode> {
    if !a.dir.is_dir() {
        bail!("{}: not a directory", a.dir.display());
    }
    let mut block = DownsampleOptions::default();
    block.batch.series = a.series_batch.max(1);
    if let Some(s) = a.segment_size {
        block.segment_size = s;
    }
    let opts = DirOptions { output: a.output.clone(), block };
    let bar = super::series_progress_bar(a.quiet);
    let obs = Progress { bar };
    let pool =
        rayon::ThreadPoolBuilder::new().num_threads(a.concurrency.unwrap_or(0)).build().context("thread pool")?;
    let report = pool.install(|| downsample_dir(&a.dir, &opts, &obs))?;
    if let Some(b) = &obs.bar {
        b.finish_and_clear();
    }
    for (path, why) in &report.skipped {
        eprintln!("{}: passed over: {why}", path.display());
    }
    let to_5m = report.written.iter().filter(|w| w.source_resolution == 0).count();
    eprintln!(
        "strata downsample: {} blocks written ({to_5m} raw to 5m, {} 5m to 1h), {} failed",
        report.written.len(),
        report.written.len() - to_5m,
        report.failures.len()
    );
    if !report.failures.is_empty() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
