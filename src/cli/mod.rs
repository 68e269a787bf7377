//! The `strata` command line: flags are parsed into validated options, then the library
//! does the work. Only this module prints and uses `anyhow`.

use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use strata::block::{list_blocks, Block};
use strata::dump::{dump, DumpOptions};
use strata::format::aggr::AggrType;
use strata::gofmt::{go_duration_ms, rfc3339_ms};
use strata::labels::Selector;
use strata::verify::verify_block;

#[derive(Parser)]
#[command(name = "strata", version, about = "Compacts, deduplicates, downsamples and applies retention to Prometheus TSDB blocks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// For downsampled blocks: the aggregate to print (count, sum, min, max, counter).
        #[arg(long)]
        aggr: Option<String>,
    },
    /// Checks every block; exit 1 and one line per problem if any.
    Verify { dir: PathBuf },
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`strata dump | head`) is not an error worth a message.
            if e.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)) || format!("{e:#}").contains("Broken pipe") {
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
            let aggr = match aggr {
                Some(a) => Some(AggrType::parse(&a).with_context(|| format!("--aggr {a:?}: want count, sum, min, max or counter"))?),
                None => None,
            };
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
    }
}

fn inspect(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    let blocks = list_blocks(dir)?;
    let mut rows = vec![["BLOCK ULID", "MIN TIME", "MAX TIME", "DURATION", "NUM SAMPLES", "NUM CHUNKS", "NUM SERIES", "LEVEL", "RESOLUTION", "LABELS"].map(String::from).to_vec()];
    for e in &blocks {
        let b = Block::open(&e.path)?;
        let m = &b.meta;
        let res = match m.resolution() {
            0 => "raw".to_string(),
            r => go_duration_ms(r),
        };
        let labels = m.external_labels().iter().map(|(k, v)| format!("{k}={v:?}")).collect::<Vec<_>>().join(",");
        rows.push(vec![
            m.ulid.to_string(),
            format!("{} ({})", m.min_time, rfc3339_ms(m.min_time)),
            format!("{} ({})", m.max_time, rfc3339_ms(m.max_time)),
            go_duration_ms(m.max_time - m.min_time),
            m.stats.num_samples.to_string(),
            m.stats.num_chunks.to_string(),
            m.stats.num_series.to_string(),
            m.compaction.level.to_string(),
            res,
            format!("{{{labels}}}"),
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len()).map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0)).collect();
    let mut out = io::stdout().lock();
    for r in &rows {
        let line: Vec<String> = r.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
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
            eprintln!("{}: ok ({} series, {} chunks, {} samples)", e.path.display(), counts.series, counts.chunks, counts.samples);
        }
    }
    if bad > 0 {
        eprintln!("strata verify: {bad} of {} blocks have problems", blocks.len());
        return Ok(ExitCode::from(1));
    }
    eprintln!("strata verify: {} blocks ok", blocks.len());
    Ok(ExitCode::SUCCESS)
}
