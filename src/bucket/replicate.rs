//! Copying blocks from one bucket to another, as `thanos tools bucket replicate` does.
//!
//! Owns: which blocks of the source are copied ([`ReplicateFilter`], pure: resolution,
//! compaction level, external-label matchers, ULIDs, time range; blocks marked for
//! deletion never) and the copy itself: every object of the block except the markers,
//! `meta.json` last, so a reader of the destination sees a complete block or none. A
//! block whose `meta.json` is in the destination already is skipped, which makes a
//! second run copy nothing; one without (an interrupted copy) is copied again.
//! Must not: delete or mark anything in either bucket.

use std::path::Path;

use ulid::Ulid;

use super::block::{block_key, MARKERS};
use super::error::{BucketError, ErrorKind, Result};
use super::sync::{sync, BlockInfo, SyncOptions};
use super::Bucket;
use crate::block::META_FILE;
use crate::error::Error as LocalError;
use crate::labels::{Labels, Selector};

/// Which blocks are copied.
#[derive(Clone, Debug, Default)]
pub struct ReplicateFilter {
    /// Resolutions (ms) copied; empty: all.
    pub resolutions: Vec<i64>,
    /// Compaction levels copied, inclusive.
    pub compaction_min: u32,
    pub compaction_max: u32,
    /// Every selector must match the block's external labels.
    pub matchers: Vec<Selector>,
    /// Only these blocks; empty: all.
    pub ids: Vec<Ulid>,
    /// Blocks must overlap `[min_time, max_time]` (ms).
    pub min_time: i64,
    pub max_time: i64,
}

impl ReplicateFilter {
    /// Whether a block (not marked for deletion) is to be copied.
    pub fn selects(&self, b: &BlockInfo) -> bool {
        let m = &b.meta;
        let ext = Labels::from_pairs(m.external_labels());
        b.deletion_mark.is_none()
            && (self.resolutions.is_empty() || self.resolutions.contains(&m.resolution()))
            && (self.compaction_min..=self.compaction_max).contains(&m.compaction.level)
            && self.matchers.iter().all(|s| s.matches(&ext))
            && (self.ids.is_empty() || self.ids.contains(&m.ulid))
            && m.max_time >= self.min_time
            && m.min_time <= self.max_time
    }
}

/// What a replication did.
#[derive(Debug, Default)]
pub struct ReplicateReport {
    /// Blocks copied, with the bytes sent.
    pub copied: Vec<(Ulid, u64)>,
    /// Selected blocks whose meta.json the destination has already.
    pub already: Vec<Ulid>,
    /// Blocks that failed, the others went on.
    pub failed: Vec<(Ulid, BucketError)>,
}

/// Copies the blocks of `from` that `filter` selects into `to`; `scratch` is a local
/// directory objects pass through (one at a time, removed after).
pub async fn replicate(
    from: &Bucket,
    to: &Bucket,
    filter: &ReplicateFilter,
    sync_opts: &SyncOptions,
    scratch: &Path,
) -> Result<ReplicateReport> {
    let synced = sync(from, sync_opts).await?;
    let mut report = ReplicateReport::default();
    let chosen: Vec<&BlockInfo> = synced.all_blocks().filter(|b| filter.selects(b)).collect();
    for b in chosen {
        let id = b.id();
        if to.head(&block_key(id, META_FILE)).await?.is_some() {
            report.already.push(id);
            continue;
        }
        match copy_block(from, to, id, scratch).await {
            Ok(bytes) => {
                tracing::info!(block = %id, bytes, "replicated block");
                report.copied.push((id, bytes));
            }
            // Failures every other block would hit too stop the run.
            Err(e)
                if matches!(
                    e.kind(),
                    Some(ErrorKind::Unreachable | ErrorKind::AccessDenied | ErrorKind::NoSuchBucket)
                ) =>
            {
                return Err(e)
            }
            Err(e) => {
                tracing::warn!(block = %id, err = %e, "cannot replicate block");
                report.failed.push((id, e));
            }
        }
    }
    Ok(report)
}

/// Copies one block's objects (markers left out), meta.json last.
async fn copy_block(from: &Bucket, to: &Bucket, id: Ulid, scratch: &Path) -> Result<u64> {
    let objects = from.list(&id.to_string()).await?;
    let meta_key = block_key(id, META_FILE);
    if !objects.iter().any(|o| o.key == meta_key) {
        return Err(BucketError::block(id, "meta.json vanished from the source bucket"));
    }
    let skip: Vec<String> = MARKERS.iter().map(|m| block_key(id, m)).collect();
    let mut bytes = 0;
    let file = scratch.join(format!("replicate-{id}.part"));
    let body = objects.iter().filter(|o| o.key != meta_key && !skip.contains(&o.key));
    for o in body.chain(objects.iter().filter(|o| o.key == meta_key)) {
        let r = async {
            from.get_to_file(&o.key, &file).await?;
            to.put_file(&o.key, &file).await
        }
        .await;
        let _ = tokio::fs::remove_file(&file).await;
        bytes += r?;
    }
    // The copy is checked as an upload is: every object there with its size.
    for o in &objects {
        if skip.contains(&o.key) {
            continue;
        }
        match to.head(&o.key).await? {
            Some(info) if info.size == o.size => {}
            got => {
                return Err(BucketError::block(
                    id,
                    format!(
                        "{} is {} bytes in the destination, {} in the source",
                        o.key,
                        got.map(|i| i.size.to_string()).unwrap_or_else(|| "missing, not".into()),
                        o.size
                    ),
                ))
            }
        }
    }
    Ok(bytes)
}

/// Creates the scratch directory for [`replicate`].
pub fn scratch_dir(base: &Path) -> std::result::Result<std::path::PathBuf, LocalError> {
    let d = base.join(format!("strata-replicate-{}", Ulid::new()));
    std::fs::create_dir_all(&d).map_err(|e| LocalError::io(&d, e))?;
    Ok(d)
}
