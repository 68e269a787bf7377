//! `strata rewrite DIR` (offline) and the flags it shares with `strata bucket rewrite`:
//! Thanos's `--rewrite.to-delete-config[-file]`, `--rewrite.to-relabel-config[-file]`,
//! `--dry-run` (the default) / `--no-dry-run`. See `docs/bucket.md`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use ulid::Ulid;

use strata::block::{list_blocks, Block, TOMBSTONES_FILE};
use strata::compact::rewrite::{analyse, parse_deletions, rewrite_block, Rewrite, RewriteStats};
use strata::compact::run::remove_block;
use strata::relabel::parse_rules;

/// What to change: deletions and relabel rules, and whether to write anything.
#[derive(Args, Clone, Default)]
pub struct RewriteFlags {
    /// YAML list of deletion requests: `matchers` (a series selector) and `intervals`
    /// (`[{mint, maxt}]` in ms; absent: all time).
    #[arg(long = "rewrite.to-delete-config-file", value_name = "FILE")]
    delete_file: Option<PathBuf>,
    /// The deletion requests themselves (instead of the file).
    #[arg(long = "rewrite.to-delete-config", value_name = "YAML", allow_hyphen_values = true)]
    delete: Option<String>,
    /// YAML list of Prometheus relabel rules applied to every series: a series left
    /// without labels or dropped is deleted; series made identical are merged.
    #[arg(long = "rewrite.to-relabel-config-file", value_name = "FILE")]
    relabel_file: Option<PathBuf>,
    /// The relabel rules themselves (instead of the file).
    #[arg(long = "rewrite.to-relabel-config", value_name = "YAML", allow_hyphen_values = true)]
    relabel: Option<String>,
    /// Only print what would be removed (the default).
    #[arg(long = "dry-run", conflicts_with = "no_dry_run")]
    dry_run: bool,
    /// Write the rewritten blocks.
    #[arg(long = "no-dry-run")]
    no_dry_run: bool,
}

/// Reads a config given inline or as a file; `None` when neither flag is set.
fn config_text(
    file: &Option<PathBuf>,
    inline: &Option<String>,
    flag: &str,
) -> anyhow::Result<Option<(String, String)>> {
    match (file, inline) {
        (Some(_), Some(_)) => bail!("--{flag}-file and --{flag} are both set; use one"),
        (Some(f), None) => {
            let text = std::fs::read_to_string(f).with_context(|| format!("--{flag}-file {}", f.display()))?;
            Ok(Some((text, format!("--{flag}-file {}", f.display()))))
        }
        (None, Some(y)) => Ok(Some((y.clone(), format!("--{flag}")))),
        (None, None) => Ok(None),
    }
}

impl RewriteFlags {
    /// The validated rewrite; errors name the flag or file and the entry at fault.
    pub fn load(&self) -> anyhow::Result<Rewrite> {
        let mut rw = Rewrite::default();
        if let Some((text, origin)) = config_text(&self.delete_file, &self.delete, "rewrite.to-delete-config")? {
            rw.deletions = parse_deletions(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        }
        if let Some((text, origin)) = config_text(&self.relabel_file, &self.relabel, "rewrite.to-relabel-config")? {
            rw.relabels = parse_rules(&text).map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        }
        if rw.is_empty() {
            bail!(
                "nothing to rewrite: give deletions (--rewrite.to-delete-config-file) or relabel rules \
                 (--rewrite.to-relabel-config-file)"
            );
        }
        Ok(rw)
    }

    pub fn dry_run(&self) -> bool {
        !self.no_dry_run
    }
}

/// One line on what a rewrite removes (or would).
pub fn describe(s: &RewriteStats) -> String {
    format!(
        "{} of {} series ({} deleted, {} dropped by relabel, {} merged) and {} of {} samples",
        s.series_removed(),
        s.series_in,
        s.series_deleted,
        s.series_dropped,
        s.series_merged,
        s.samples_removed(),
        s.samples_in
    )
}

#[derive(Args)]
pub struct RewriteArgs {
    /// A directory of blocks (a Prometheus data directory works) or one block.
    dir: PathBuf,
    /// Only these blocks (repeatable); default: every block of DIR.
    #[arg(long = "id")]
    ids: Vec<Ulid>,
    /// Write the new blocks here and leave DIR as it is (default: replace each block in
    /// place, crash-safely: the new block is complete and fsynced before the original
    /// is removed).
    #[arg(long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    flags: RewriteFlags,
}

pub fn run(a: RewriteArgs) -> anyhow::Result<ExitCode> {
    let rewrite = a.flags.load()?;
    let entries = list_blocks(&a.dir)?;
    for id in &a.ids {
        if !entries.iter().any(|e| e.ulid == *id) {
            bail!("block {id} is not in {}", a.dir.display());
        }
    }
    let chosen: Vec<_> = entries.into_iter().filter(|e| a.ids.is_empty() || a.ids.contains(&e.ulid)).collect();
    if chosen.is_empty() {
        bail!("no blocks in {}", a.dir.display());
    }
    if let Some(out) = &a.output {
        std::fs::create_dir_all(out).with_context(|| format!("--output {}", out.display()))?;
    }
    for e in chosen {
        let block = Block::open(&e.path)?;
        let id = block.meta.ulid;
        if a.flags.dry_run() {
            let stats = analyse(&block, &rewrite)?;
            println!("{id}: would remove {}", describe(&stats));
            continue;
        }
        let parent: PathBuf = match &a.output {
            Some(o) => o.clone(),
            None => e.path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".")),
        };
        let tombstones = e.path.join(TOMBSTONES_FILE).exists();
        let new = Ulid::new();
        let done = rewrite_block(block, &parent, new, &rewrite, tombstones)?;
        match &done.block {
            Some((path, _)) => {
                println!("{id}: rewritten into {new} ({}): removed {}", path.display(), describe(&done.stats))
            }
            None => println!("{id}: every series removed, no new block: removed {}", describe(&done.stats)),
        }
        if a.output.is_none() {
            // The new block is complete and durable (renamed into place, directory
            // fsynced): only now does the original go.
            remove_block(&e.path)?;
        }
    }
    if a.flags.dry_run() {
        eprintln!("strata rewrite: dry run, nothing written (--no-dry-run writes)");
    }
    Ok(ExitCode::SUCCESS)
}
