//! Compacting a local directory of blocks: plan, merge independent plans in parallel,
//! replace sources crash-safely, and repeat until nothing is left to plan.
//!
//! Owns: the working set of blocks (input directory, optional output directory), the
//! crash-safety protocol (output complete and fsynced before any source is removed;
//! sources renamed to `*.tmp-for-deletion` then removed; on start, leftovers of an
//! interrupted run are finished off), and per-group failure isolation (a bad block stops
//! its group only).
//! Must not: write inside a source block.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use ulid::Ulid;

use super::dedup::DedupFunc;
use super::merge::{merge_blocks, MergeOptions, MergeProgress};
use super::plan::{plan, GroupKey, Plan, PlanBlock, PlanKind, Policy, Refusal};
use crate::block::writer::sync_dir;
use crate::block::{list_blocks, Block};
use crate::error::{AtPath, Error, Result};
use crate::format::meta::{BlockDesc, BlockMeta, Compaction, Downsample, ThanosMeta, NO_COMPACT_MARK};
use crate::observe::Observer;
use crate::retention::Retention;
use crate::time::now_ms;

/// Everything `strata compact` can be told.
#[derive(Clone, Debug)]
pub struct CompactOptions {
    pub policy: Policy,
    pub replica_labels: Vec<String>,
    pub dedup: DedupFunc,
    /// Write outputs here and leave the input directory untouched.
    pub output: Option<PathBuf>,
    pub merge: MergeOptions,
    /// Blocks older than this (per resolution) are removed, before compacting and after.
    pub retention: Retention,
    /// The clock for retention, in ms since the epoch.
    pub now_ms: i64,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            policy: Policy::default(),
            replica_labels: Vec::new(),
            dedup: DedupFunc::OneToOne,
            output: None,
            merge: MergeOptions::default(),
            retention: Retention::default(),
            now_ms: now_ms(),
        }
    }
}

/// One block written by a compaction.
#[derive(Clone, Debug)]
pub struct Written {
    pub path: PathBuf,
    pub meta: BlockMeta,
    pub kind: PlanKind,
    pub sources: Vec<Ulid>,
    pub took: Duration,
}

/// A group that stopped on an error.
#[derive(Debug)]
pub struct GroupFailure {
    pub group: GroupKey,
    pub blocks: Vec<Ulid>,
    pub error: Error,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Report {
    pub written: Vec<Written>,
    pub failures: Vec<GroupFailure>,
    pub refused: Vec<Refusal>,
    /// Blocks removed because every series in them was deleted.
    pub emptied: Vec<Ulid>,
    /// Blocks removed (or, with `--output`, left out) because retention expired them.
    pub expired: Vec<Ulid>,
    pub iterations: usize,
}

struct Entry {
    path: PathBuf,
    meta: BlockMeta,
    no_compact: bool,
    /// May be removed once merged into an output (in place, or our own output).
    removable: bool,
}

/// Compacts `dir` until the planner has nothing left to do.
pub fn compact_dir(dir: &Path, opts: &CompactOptions, obs: &dyn Observer) -> Result<Report> {
    let out_dir = opts.output.clone().unwrap_or_else(|| dir.to_path_buf());
    std::fs::create_dir_all(&out_dir).at(&out_dir)?;
    finish_interrupted(&out_dir)?;

    let mut set: BTreeMap<Ulid, Entry> = BTreeMap::new();
    load(&mut set, dir, opts.output.is_none())?;
    if opts.output.is_some() {
        load(&mut set, &out_dir, true)?;
    }

    let mut report = Report::default();
    apply_retention(&mut set, opts, &mut report)?;
    let mut failed_groups: BTreeSet<GroupKey> = BTreeSet::new();
    let mut refused_seen: BTreeSet<Vec<Ulid>> = BTreeSet::new();
    loop {
        let blocks: Vec<PlanBlock> = set
            .values()
            .map(|e| PlanBlock::from_meta(&e.meta, &opts.replica_labels, e.no_compact))
            .filter(|b| !failed_groups.contains(&b.group))
            .collect();
        let outcome = plan(&blocks, &opts.policy);
        for r in outcome.refused {
            if refused_seen.insert(r.blocks.clone()) {
                report.refused.push(r);
            }
        }
        if outcome.plans.is_empty() {
            apply_retention(&mut set, opts, &mut report)?;
            break;
        }
        report.iterations += 1;
        let series_total: u64 =
            outcome.plans.iter().flat_map(|p| &p.blocks).map(|u| set[u].meta.stats.num_series).sum();
        obs.compaction_planned(&outcome.plans, series_total);

        // Each plan's sources are removed as soon as its output is in place, while the
        // other plans may still be merging (removing gigabytes of cached files is not free).
        let results: Vec<(Plan, Result<Option<Written>>, Result<()>)> = outcome
            .plans
            .into_par_iter()
            .map(|p| {
                let r = execute(&p, &set, &out_dir, opts, obs);
                let removed = match &r {
                    Ok(_) => {
                        let gone: Vec<PathBuf> =
                            p.blocks.iter().map(|u| &set[u]).filter(|e| e.removable).map(|e| e.path.clone()).collect();
                        remove_blocks(&gone)
                    }
                    Err(_) => Ok(()),
                };
                (p, r, removed)
            })
            .collect();
        for (p, r, removed) in results {
            removed?;
            match r {
                Ok(out) => {
                    for u in &p.blocks {
                        set.remove(u).expect("planned block in set");
                    }
                    match out {
                        Some(w) => {
                            set.insert(
                                w.meta.ulid,
                                Entry {
                                    path: w.path.clone(),
                                    meta: w.meta.clone(),
                                    no_compact: false,
                                    removable: true,
                                },
                            );
                            report.written.push(w);
                        }
                        None => report.emptied.extend(p.blocks.iter().copied()),
                    }
                }
                Err(error) => {
                    let f = GroupFailure { group: p.group.clone(), blocks: p.blocks.clone(), error };
                    obs.compaction_failed(&f);
                    failed_groups.insert(p.group);
                    report.failures.push(f);
                }
            }
        }
    }
    Ok(report)
}

/// Removes expired blocks from the working set; deletes those strata may delete.
fn apply_retention(set: &mut BTreeMap<Ulid, Entry>, opts: &CompactOptions, report: &mut Report) -> Result<()> {
    if opts.retention.is_unlimited() {
        return Ok(());
    }
    let gone = crate::retention::expired(set.values().map(|e| &e.meta), &opts.retention, opts.now_ms);
    let mut paths = Vec::new();
    for u in gone {
        let e = set.remove(&u).expect("expired block in set");
        if e.removable {
            paths.push(e.path);
        }
        report.expired.push(u);
    }
    remove_blocks(&paths)
}

fn load(set: &mut BTreeMap<Ulid, Entry>, dir: &Path, removable: bool) -> Result<()> {
    for e in list_blocks(dir)? {
        let meta_path = e.path.join(crate::block::META_FILE);
        let bytes = std::fs::read(&meta_path).at(&meta_path)?;
        let meta = BlockMeta::parse(&bytes).at(&meta_path)?;
        let no_compact = e.path.join(NO_COMPACT_MARK).exists();
        set.insert(meta.ulid, Entry { path: e.path, meta, no_compact, removable });
    }
    Ok(())
}

/// Runs one plan: opens its blocks, merges them, returns the written block.
fn execute(
    p: &Plan,
    set: &BTreeMap<Ulid, Entry>,
    out_dir: &Path,
    opts: &CompactOptions,
    obs: &dyn Observer,
) -> Result<Option<Written>> {
    let start = Instant::now();
    let blocks: Vec<Block> = p.blocks.iter().map(|u| Block::open(&set[u].path)).collect::<Result<_>>()?;
    let refs: Vec<&Block> = blocks.iter().collect();
    let ulid = Ulid::new();
    let metas: Vec<&BlockMeta> = blocks.iter().map(|b| &b.meta).collect();
    let meta = compacted_meta(&metas, &p.group, ulid);
    let mut mopts = opts.merge.clone();
    mopts.dedup = opts.dedup;
    let last = std::sync::atomic::AtomicU64::new(0);
    let progress = |m: MergeProgress| {
        let prev = last.swap(m.series, std::sync::atomic::Ordering::Relaxed);
        obs.progress(m.series.saturating_sub(prev));
    };
    let out = merge_blocks(&refs, out_dir, ulid, meta, &mopts, &progress)?;
    Ok(out.map(|(path, meta)| {
        let w = Written { path, meta, kind: p.kind, sources: p.blocks.clone(), took: start.elapsed() };
        obs.compacted(&w);
        w
    }))
}

/// The meta of a block made from `sources`, as Prometheus's `CompactBlockMetas` sets
/// it, plus Thanos's section when any source has one.
pub fn compacted_meta(sources: &[&BlockMeta], group: &GroupKey, ulid: Ulid) -> BlockMeta {
    let min_time = sources.iter().map(|m| m.min_time).min().unwrap_or(0);
    let max_time = sources.iter().map(|m| m.max_time).max().unwrap_or(0);
    let mut all: BTreeSet<Ulid> = BTreeSet::new();
    for m in sources {
        all.extend(m.compaction.sources.iter().copied());
        if m.compaction.sources.is_empty() {
            all.insert(m.ulid);
        }
    }
    let ooo = "from-out-of-order".to_string();
    let hints = if !sources.is_empty() && sources.iter().all(|m| m.compaction.hints.contains(&ooo)) {
        vec![ooo]
    } else {
        Vec::new()
    };
    let mut meta = BlockMeta::new(ulid, min_time, max_time);
    meta.compaction = Compaction {
        level: sources.iter().map(|m| m.compaction.level).max().unwrap_or(0) + 1,
        sources: all.into_iter().collect(),
        parents: sources
            .iter()
            .map(|m| BlockDesc { ulid: m.ulid, min_time: m.min_time, max_time: m.max_time })
            .collect(),
        hints,
        ..Default::default()
    };
    if sources.iter().any(|m| m.thanos.is_some()) {
        meta.thanos = Some(ThanosMeta {
            labels: group.labels.clone(),
            downsample: Downsample { resolution: group.resolution },
            source: "compactor".into(),
            ..Default::default()
        });
    }
    meta
}

/// Removes a block directory crash-safely: rename out of sight first.
pub fn remove_block(path: &Path) -> Result<()> {
    remove_blocks(&[path.to_path_buf()])
}

/// Removes block directories crash-safely: each is renamed out of sight
/// (`*.tmp-for-deletion`, which no reader loads), the renames are made durable with one
/// directory sync per parent, and only then is anything deleted.
pub fn remove_blocks(paths: &[PathBuf]) -> Result<()> {
    let mut tmps = Vec::with_capacity(paths.len());
    let mut parents: BTreeSet<PathBuf> = BTreeSet::new();
    for path in paths {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let tmp = parent.join(format!("{name}.tmp-for-deletion"));
        std::fs::rename(path, &tmp).at(path)?;
        parents.insert(parent);
        tmps.push(tmp);
    }
    for p in &parents {
        sync_dir(p)?;
    }
    // In parallel: unlinking a large file drops its cached pages, a few hundred ms per GB.
    tmps.par_iter().try_for_each(|tmp| std::fs::remove_dir_all(tmp).at(tmp))
}

/// Finishes what an interrupted run left behind: half-written outputs
/// (`*.tmp-for-creation`), half-removed sources (`*.tmp-for-deletion`), and source
/// blocks whose output is complete (they are a parent of another block here).
pub fn finish_interrupted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".tmp-for-creation") || name.ends_with(".tmp-for-deletion"))
            && e.file_type().at(&e.path())?.is_dir()
        {
            std::fs::remove_dir_all(e.path()).at(&e.path())?;
            removed.push(e.path());
        }
    }
    let mut metas: HashMap<Ulid, (PathBuf, BlockMeta)> = HashMap::new();
    for b in list_blocks(dir)? {
        let p = b.path.join(crate::block::META_FILE);
        if let Ok(bytes) = std::fs::read(&p) {
            if let Ok(m) = BlockMeta::parse(&bytes) {
                metas.insert(m.ulid, (b.path.clone(), m));
            }
        }
    }
    let parents: BTreeSet<Ulid> =
        metas.values().flat_map(|(_, m)| m.compaction.parents.iter().map(|p| p.ulid)).collect();
    for u in parents {
        if let Some((path, _)) = metas.get(&u) {
            remove_block(path)?;
            removed.push(path.clone());
        }
    }
    Ok(removed)
}
