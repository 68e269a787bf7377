//! Restore: the raw blocks of a time range from the bucket into a directory Prometheus
//! starts on.
//!
//! The blocks are chosen as a store gateway would (blocks whose data a compacted block
//! also holds, and blocks marked for deletion long ago, are left out), downloaded with
//! [`Bucket::download_block`] (temporary directory, sizes checked, renamed into place),
//! and every cluster of overlapping downloaded blocks (a snapshot's head block and the
//! blocks shipped after it, two replicas) is merged into one block by
//! [`crate::compact::merge::merge_blocks`], one sample per timestamp, so the directory
//! holds non-overlapping blocks.
//!
//! Must not: write into a directory that holds anything unless told to (`force`), or
//! delete what it did not write: with `force`, blocks already there are neither
//! replaced nor merged (bucket blocks whose data they hold, by ULID, compaction sources
//! or parents, are not downloaded again); only blocks this restore downloaded are merged
//! and removed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::{BackupError, Result};
use crate::block::Block;
use crate::bucket::{Bucket, DownloadOptions, SyncOptions};
use crate::compact::merge::{merge_blocks, MergeOptions};
use crate::compact::plan::GroupKey;
use crate::compact::run::{compacted_meta, remove_blocks};
use crate::error::AtPath;
use crate::format::meta::BlockMeta;
use crate::job::selector::Selector;

/// What to restore.
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Blocks overlapping `[min_time, max_time]` (ms, inclusive) and selected by the
    /// relabel rules over their external labels.
    pub selector: Selector,
    /// Write into a directory that is not empty (nothing in it is touched).
    pub force: bool,
    /// Files downloaded at once.
    pub concurrency: usize,
    /// Verify each block before it is renamed into place.
    pub verify: bool,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreReport {
    /// Blocks downloaded, by ULID.
    pub downloaded: Vec<Ulid>,
    /// Blocks left out because the directory holds their data already (a block of that
    /// ULID, or one made from it, such as an earlier restore's merge).
    pub present: Vec<Ulid>,
    /// Overlapping downloaded blocks merged: (sources, the merged block).
    pub merged: Vec<(Vec<Ulid>, Ulid)>,
    /// The blocks the directory holds from this restore, after merging.
    pub blocks: Vec<BlockMeta>,
}

/// Restores into `dir` (created if missing); see the module doc.
pub async fn restore(bucket: &Bucket, dir: &Path, opts: &RestoreOptions) -> Result<RestoreReport> {
    check_target(dir, opts.force)?;
    let sync_opts = SyncOptions {
        consistency_delay_ms: 0,
        delete_delay_ms: 48 * 3_600_000,
        deduplicate: true,
        ..SyncOptions::default()
    };
    let synced = crate::bucket::sync::sync(bucket, &sync_opts).await?;
    for w in &synced.warnings {
        tracing::warn!("{w}");
    }
    let chosen: Vec<&BlockMeta> = synced
        .blocks
        .iter()
        .map(|b| &b.meta)
        .filter(|m| m.resolution() == 0)
        .filter(|m| opts.selector.selects(m))
        .collect();
    tracing::info!(blocks = chosen.len(), bucket = bucket.name(), "restoring");
    std::fs::create_dir_all(dir).at(dir)?;
    let held = held_blocks(dir)?;
    let mut report = RestoreReport::default();
    let mut ours: Vec<(PathBuf, BlockMeta)> = Vec::new();
    for m in chosen {
        let id = m.ulid;
        let sources_held = !m.compaction.sources.is_empty() && m.compaction.sources.iter().all(|s| held.contains(s));
        if dir.join(id.to_string()).exists() || held.contains(&id) || sources_held {
            tracing::warn!(block = %id, "its data is in the directory already; not restored");
            report.present.push(id);
            continue;
        }
        let path = bucket
            .download_block(
                id,
                dir,
                &DownloadOptions { concurrency: opts.concurrency.max(1), verify: opts.verify, link: false },
            )
            .await?;
        tracing::info!(block = %id, mint = m.min_time, maxt = m.max_time, "downloaded");
        report.downloaded.push(id);
        ours.push((path, m.clone()));
    }
    let d = dir.to_path_buf();
    let (merged, blocks) = tokio::task::spawn_blocking(move || merge_overlaps(&d, ours))
        .await
        .map_err(|e| BackupError::Invalid(format!("merge task failed: {e}")))??;
    report.merged = merged;
    report.blocks = blocks;
    Ok(report)
}

/// The ULIDs whose data the blocks in `dir` hold: each block's own, its sources' and its
/// parents'.
fn held_blocks(dir: &Path) -> Result<BTreeSet<Ulid>> {
    let mut held = BTreeSet::new();
    for e in crate::block::list_blocks(dir)? {
        let p = e.path.join(crate::block::META_FILE);
        let Ok(bytes) = std::fs::read(&p) else { continue };
        let Ok(m) = BlockMeta::parse(&bytes) else { continue };
        held.insert(m.ulid);
        held.extend(m.compaction.sources.iter().copied());
        held.extend(m.compaction.parents.iter().map(|p| p.ulid));
    }
    Ok(held)
}

/// Refuses a directory with anything in it (but `lost+found`, as at the root of a fresh
/// volume), unless `force`.
fn check_target(dir: &Path, force: bool) -> Result<()> {
    let entries: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "lost+found")
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(crate::Error::io(dir, e).into()),
    };
    if !entries.is_empty() && !force {
        let mut shown: Vec<String> = entries.iter().take(3).cloned().collect();
        if entries.len() > 3 {
            shown.push("...".into());
        }
        return Err(BackupError::Invalid(format!(
            "{} is not empty ({} entries: {}); restore into an empty directory, or pass --force to add blocks to it (nothing in it is replaced or deleted)",
            dir.display(),
            entries.len(),
            shown.join(", ")
        )));
    }
    Ok(())
}

/// Clusters of blocks whose time ranges overlap (half-open `[min, max)`), each sorted
/// by min time; blocks that overlap nothing are not in any cluster.
pub fn overlapping_clusters(metas: &[BlockMeta]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..metas.len()).collect();
    order.sort_by_key(|&i| (metas[i].min_time, metas[i].max_time, metas[i].ulid));
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut cur_max = i64::MIN;
    for i in order {
        if !cur.is_empty() && metas[i].min_time < cur_max {
            cur.push(i);
            cur_max = cur_max.max(metas[i].max_time);
            continue;
        }
        if cur.len() > 1 {
            out.push(std::mem::take(&mut cur));
        }
        cur = vec![i];
        cur_max = metas[i].max_time;
    }
    if cur.len() > 1 {
        out.push(cur);
    }
    out
}

/// Merges each cluster of overlapping blocks among `ours` into one block in `dir` and
/// removes the merged sources. Returns the merges and the blocks left.
#[allow(clippy::type_complexity)]
fn merge_overlaps(dir: &Path, ours: Vec<(PathBuf, BlockMeta)>) -> Result<(Vec<(Vec<Ulid>, Ulid)>, Vec<BlockMeta>)> {
    let metas: Vec<BlockMeta> = ours.iter().map(|(_, m)| m.clone()).collect();
    let clusters = overlapping_clusters(&metas);
    let mut merged = Vec::new();
    let mut gone: Vec<usize> = Vec::new();
    let mut blocks = Vec::new();
    for c in &clusters {
        let opened: Vec<Block> = c.iter().map(|&i| Block::open(&ours[i].0)).collect::<crate::Result<_>>()?;
        let refs: Vec<&Block> = opened.iter().collect();
        let sources: Vec<&BlockMeta> = opened.iter().map(|b| &b.meta).collect();
        // The labels every source shares (Prometheus ignores them; the bucket would not).
        let mut labels: BTreeMap<String, String> = sources[0].external_labels();
        for s in &sources[1..] {
            let l = s.external_labels();
            labels.retain(|k, v| l.get(k) == Some(v));
        }
        let group = GroupKey { resolution: 0, labels };
        let ulid = Ulid::new();
        let meta = compacted_meta(&sources, &group, ulid);
        let ids: Vec<Ulid> = sources.iter().map(|m| m.ulid).collect();
        tracing::info!(sources = ?ids, output = %ulid, "merging overlapping blocks");
        let out = merge_blocks(&refs, dir, ulid, meta, &MergeOptions::default(), &|_| {})?;
        drop(opened);
        let paths: Vec<PathBuf> = c.iter().map(|&i| ours[i].0.clone()).collect();
        remove_blocks(&paths)?;
        gone.extend(c.iter().copied());
        if let Some((_, m)) = out {
            merged.push((ids, m.ulid));
            blocks.push(m);
        }
    }
    for (i, (_, m)) in ours.into_iter().enumerate() {
        if !gone.contains(&i) {
            blocks.push(m);
        }
    }
    blocks.sort_by_key(|m| (m.min_time, m.ulid));
    Ok((merged, blocks))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(min: i64, max: i64) -> BlockMeta {
        BlockMeta::new(Ulid::new(), min, max)
    }

    #[test]
    fn clusters_of_overlapping_ranges() {
        let m = vec![meta(0, 10), meta(10, 20), meta(15, 30), meta(25, 26), meta(40, 50), meta(45, 46), meta(60, 70)];
        assert_eq!(overlapping_clusters(&m), vec![vec![1, 2, 3], vec![4, 5]]);
        assert!(overlapping_clusters(&m[..2]).is_empty(), "adjacent blocks do not overlap");
    }

    #[test]
    fn refuses_a_non_empty_directory_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        check_target(&tmp.path().join("missing"), false).unwrap();
        check_target(tmp.path(), false).unwrap();
        std::fs::create_dir(tmp.path().join("lost+found")).unwrap();
        check_target(tmp.path(), false).unwrap();
        std::fs::write(tmp.path().join("keep-me"), "x").unwrap();
        let e = check_target(tmp.path(), false).unwrap_err().to_string();
        assert!(e.contains("is not empty (1 entries: keep-me)") && e.contains("--force"), "{e}");
        check_target(tmp.path(), true).unwrap();
    }
}
