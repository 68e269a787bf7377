//! One pass over the bucket, as Thanos's meta fetcher makes it (`pkg/block/fetcher.go`),
//! and the cleanup it implies (`pkg/compact/clean.go`, `blocks_cleaner.go`).
//!
//! [`sync`] lists the block directories, then for each (concurrently,
//! `--block-meta-fetch-concurrency`) lists its top level, reads `meta.json` and whichever
//! markers are there. A directory without a readable meta.json is a **partial upload**,
//! reported with its age: the time since its newest object was written (or since its
//! ULID was made, if that is later), so an upload still in progress always looks young.
//!
//! The filters ([`filter_blocks`], pure) then set aside, as Thanos does:
//! - blocks **too fresh** for the consistency delay: age from `thanos.upload_time` when
//!   set, else from the ULID; sources `compactor`, `compactor.repair` and
//!   `bucket.repair` are exempt (their writer knows they are complete);
//! - blocks **marked for deletion** longer than half the delete delay (readers stop
//!   using them before they go);
//! - optionally **duplicates**: a block whose `compaction.sources` are all in another
//!   block of the same resolution and external labels (a compaction output and its
//!   not-yet-deleted inputs; Thanos's `DeduplicateFilter`).
//!
//! [`plan_cleanup`] (pure) and [`cleanup`] then delete blocks marked longer than the
//! delete delay, and partial uploads older than 48 hours (or the consistency delay if
//! longer) unless they carry a deletion mark, which the first rule handles.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::{StreamExt, TryStreamExt};
use ulid::Ulid;

use super::block::{block_key, parse_meta, BlockObjects, MarkerRead, MetaRead};
use super::error::Result;
use super::Bucket;
use crate::format::meta::{
    BlockMeta, DeletionMark, NoCompactMark, NoDownsampleMark, DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK,
};
use crate::time::{is_zero_time, now_ms, parse_rfc3339_ms};

/// Thanos's `PartialUploadThresholdAge`.
pub const PARTIAL_UPLOAD_THRESHOLD_MS: i64 = 48 * 3_600_000;

/// Sources whose blocks skip the consistency delay.
pub const CONSISTENCY_EXEMPT_SOURCES: [&str; 3] = ["compactor", "compactor.repair", "bucket.repair"];

/// How a sync reads and filters.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Blocks read at once (`--block-meta-fetch-concurrency`, Thanos's default 32).
    pub concurrency: usize,
    /// `--consistency-delay` in ms (default 30m).
    pub consistency_delay_ms: i64,
    /// `--delete-delay` in ms (default 48h); blocks marked longer than half of it are
    /// set aside.
    pub delete_delay_ms: i64,
    /// Also set aside blocks whose sources another block covers.
    pub deduplicate: bool,
    /// "Now" in ms; `None` for the wall clock (tests pin it).
    pub now_ms: Option<i64>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            concurrency: 32,
            consistency_delay_ms: 30 * 60_000,
            delete_delay_ms: 48 * 3_600_000,
            deduplicate: false,
            now_ms: None,
        }
    }
}

/// A block with a valid meta.json, and its markers.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockInfo {
    pub meta: BlockMeta,
    pub deletion_mark: Option<DeletionMark>,
    pub no_compact_mark: Option<NoCompactMark>,
    pub no_downsample_mark: Option<NoDownsampleMark>,
}

impl BlockInfo {
    pub fn id(&self) -> Ulid {
        self.meta.ulid
    }

    /// Age for the consistency delay: since `thanos.upload_time` if set, else since the
    /// ULID was made.
    pub fn age_ms(&self, now_ms: i64) -> i64 {
        let uploaded = self
            .meta
            .thanos
            .as_ref()
            .filter(|t| !is_zero_time(&t.upload_time))
            .and_then(|t| parse_rfc3339_ms(&t.upload_time));
        now_ms - uploaded.unwrap_or(self.meta.ulid.timestamp_ms() as i64)
    }

    pub fn source(&self) -> &str {
        self.meta.thanos.as_ref().map(|t| t.source.as_str()).unwrap_or("")
    }
}

/// Why a block was set aside by the filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exclusion {
    /// Younger than the consistency delay.
    TooFresh { age_ms: i64 },
    /// Marked for deletion longer than half the delete delay.
    MarkedForDeletion { marked_ms_ago: i64 },
    /// Every source of this block is in another block.
    Duplicate { of: Ulid },
}

impl std::fmt::Display for Exclusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::time::go_duration_ms;
        match self {
            Exclusion::TooFresh { age_ms } => {
                write!(f, "too fresh (age {}, under the consistency delay)", go_duration_ms(*age_ms / 1000 * 1000))
            }
            Exclusion::MarkedForDeletion { marked_ms_ago } => {
                write!(f, "marked for deletion {} ago", go_duration_ms(*marked_ms_ago / 1000 * 1000))
            }
            Exclusion::Duplicate { of } => write!(f, "duplicate: its sources are all in {of}"),
        }
    }
}

/// A block directory without a usable meta.json.
#[derive(Clone, Debug, PartialEq)]
pub struct PartialBlock {
    pub id: Ulid,
    /// `no meta.json`, or why meta.json is unusable.
    pub problem: String,
    /// Time since its newest object was written (or its ULID made, if later), ms.
    pub age_ms: i64,
    pub objects: usize,
    /// An interrupted deletion leaves a partial block with its mark.
    pub deletion_mark: Option<DeletionMark>,
}

/// What a sync found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Synced {
    /// Blocks that passed the filters, sorted by ULID.
    pub blocks: Vec<BlockInfo>,
    /// Blocks the filters set aside, sorted by ULID.
    pub excluded: Vec<(BlockInfo, Exclusion)>,
    /// Directories without a usable meta.json, sorted by ULID.
    pub partial: Vec<PartialBlock>,
    /// Unparsable markers and the like, one sentence each.
    pub warnings: Vec<String>,
    /// The "now" the filters used, ms.
    pub now_ms: i64,
}

impl Synced {
    /// Every block with a valid meta.json, kept or set aside.
    pub fn all_blocks(&self) -> impl Iterator<Item = &BlockInfo> {
        self.blocks.iter().chain(self.excluded.iter().map(|(b, _)| b))
    }
}

#[allow(clippy::large_enum_variant)] // one per block, moved once
enum Found {
    Block(BlockInfo),
    Partial(PartialBlock),
}

/// Reads every block's meta and markers and applies the filters.
pub async fn sync(bucket: &Bucket, opts: &SyncOptions) -> Result<Synced> {
    let started = std::time::Instant::now();
    let now = opts.now_ms.unwrap_or_else(now_ms);
    let ids = bucket.block_ids().await?;
    let results: Vec<(Found, Vec<String>)> =
        futures::stream::iter(ids.into_iter().map(|id| read_block(bucket, id, now)))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect()
            .await?;
    let mut all = Vec::new();
    let mut out = Synced { now_ms: now, ..Default::default() };
    for (found, warnings) in results {
        out.warnings.extend(warnings);
        match found {
            Found::Block(b) => all.push(b),
            Found::Partial(p) => out.partial.push(p),
        }
    }
    out.partial.sort_by_key(|p| p.id);
    out.warnings.sort();
    let (blocks, excluded) = filter_blocks(all, opts, now);
    out.blocks = blocks;
    out.excluded = excluded;
    tracing::debug!(
        blocks = out.blocks.len(),
        excluded = out.excluded.len(),
        partial = out.partial.len(),
        duration_ms = started.elapsed().as_millis() as u64,
        "synced block metadata"
    );
    Ok(out)
}

async fn read_block(bucket: &Bucket, id: Ulid, now: i64) -> Result<(Found, Vec<String>)> {
    let objects: BlockObjects = bucket.block_objects(id).await?;
    let mut warnings = Vec::new();
    let deletion_mark = if objects.markers.iter().any(|m| m == DELETION_MARK) {
        marker::<DeletionMark>(bucket, id, DELETION_MARK, &mut warnings).await?
    } else {
        None
    };
    let meta = match &objects.meta {
        None => MetaRead::Missing,
        Some(_) => match bucket.get(&block_key(id, crate::block::META_FILE)).await? {
            None => MetaRead::Missing, // deleted between the listing and the read
            Some(b) => parse_meta(id, &b),
        },
    };
    let problem = match meta {
        MetaRead::Ok(meta) => {
            let no_compact_mark = if objects.markers.iter().any(|m| m == NO_COMPACT_MARK) {
                marker(bucket, id, NO_COMPACT_MARK, &mut warnings).await?
            } else {
                None
            };
            let no_downsample_mark = if objects.markers.iter().any(|m| m == NO_DOWNSAMPLE_MARK) {
                marker(bucket, id, NO_DOWNSAMPLE_MARK, &mut warnings).await?
            } else {
                None
            };
            return Ok((
                Found::Block(BlockInfo { meta, deletion_mark, no_compact_mark, no_downsample_mark }),
                warnings,
            ));
        }
        MetaRead::Missing => "no meta.json".to_string(),
        MetaRead::Corrupt(why) => format!("meta.json unusable: {why}"),
    };
    // A partial upload: how long since anything was written to it?
    let all = bucket.list(&id.to_string()).await?;
    let newest = all.iter().map(|o| o.last_modified_ms).max().unwrap_or(i64::MIN);
    let since = newest.max(id.timestamp_ms() as i64);
    Ok((Found::Partial(PartialBlock { id, problem, age_ms: now - since, objects: all.len(), deletion_mark }), warnings))
}

async fn marker<T: serde::de::DeserializeOwned>(
    bucket: &Bucket,
    id: Ulid,
    name: &'static str,
    warnings: &mut Vec<String>,
) -> Result<Option<T>> {
    Ok(match bucket.read_marker::<T>(id, name).await? {
        MarkerRead::Ok(m) => Some(m),
        MarkerRead::Missing => None,
        MarkerRead::Unparsable(why) => {
            warnings.push(format!("block {id}: {name} is unparsable, treated as a partial upload of the marker and ignored (delete it if it persists): {why}"));
            None
        }
    })
}

/// The filters of a sync, over metas already read; pure. Returns (kept, set aside),
/// both sorted by ULID.
pub fn filter_blocks(
    mut blocks: Vec<BlockInfo>,
    opts: &SyncOptions,
    now_ms: i64,
) -> (Vec<BlockInfo>, Vec<(BlockInfo, Exclusion)>) {
    blocks.sort_by_key(|b| b.id());
    let mut kept = Vec::with_capacity(blocks.len());
    let mut excluded = Vec::new();
    for b in blocks {
        let age = b.age_ms(now_ms);
        if age < opts.consistency_delay_ms && !CONSISTENCY_EXEMPT_SOURCES.contains(&b.source()) {
            excluded.push((b, Exclusion::TooFresh { age_ms: age }));
            continue;
        }
        if let Some(m) = &b.deletion_mark {
            let ago = now_ms - m.deletion_time * 1000;
            if ago > opts.delete_delay_ms / 2 {
                excluded.push((b, Exclusion::MarkedForDeletion { marked_ms_ago: ago }));
                continue;
            }
        }
        kept.push(b);
    }
    if opts.deduplicate {
        let dups = duplicates(&kept);
        if !dups.is_empty() {
            let (k, d): (Vec<BlockInfo>, Vec<BlockInfo>) = kept.into_iter().partition(|b| !dups.contains_key(&b.id()));
            kept = k;
            excluded.extend(d.into_iter().map(|b| {
                let of = dups[&b.id()];
                (b, Exclusion::Duplicate { of })
            }));
        }
    }
    excluded.sort_by_key(|(b, _)| b.id());
    (kept, excluded)
}

/// Thanos's `DeduplicateFilter`: within each group (resolution and external labels),
/// blocks by number of sources, most first (ties by ULID); a block whose sources are all
/// in a block kept before it is a duplicate of that block.
pub fn duplicates(blocks: &[BlockInfo]) -> HashMap<Ulid, Ulid> {
    let mut groups: BTreeMap<(i64, BTreeMap<String, String>), Vec<&BlockInfo>> = BTreeMap::new();
    for b in blocks {
        groups.entry((b.meta.resolution(), b.meta.external_labels())).or_default().push(b);
    }
    let mut out = HashMap::new();
    for (_, mut g) in groups {
        g.sort_by(|a, b| {
            b.meta.compaction.sources.len().cmp(&a.meta.compaction.sources.len()).then(a.id().cmp(&b.id()))
        });
        let mut covering: Vec<(Ulid, HashSet<Ulid>)> = Vec::new();
        for b in g {
            let sources = &b.meta.compaction.sources;
            if let Some((of, _)) =
                covering.iter().find(|(_, set)| !sources.is_empty() && sources.iter().all(|s| set.contains(s)))
            {
                out.insert(b.id(), *of);
                continue;
            }
            covering.push((b.id(), sources.iter().copied().collect()));
        }
    }
    out
}

/// How cleanup decides.
#[derive(Clone, Debug)]
pub struct CleanupOptions {
    /// Blocks marked for deletion longer than this are deleted (`--delete-delay`).
    pub delete_delay_ms: i64,
    /// Partial uploads younger than this and than 48h are left alone.
    pub consistency_delay_ms: i64,
}

impl Default for CleanupOptions {
    fn default() -> Self {
        CleanupOptions { delete_delay_ms: 48 * 3_600_000, consistency_delay_ms: 30 * 60_000 }
    }
}

/// Why cleanup deletes a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CleanupReason {
    /// Marked for deletion this long ago (ms), longer than the delete delay.
    Marked { ago_ms: i64 },
    /// A partial upload nothing was written to for this long (ms).
    AbortedPartialUpload { age_ms: i64 },
}

/// What cleanup did (or, from [`plan_cleanup`], would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub deleted: Vec<(Ulid, CleanupReason)>,
    /// Blocks it tried and failed to delete, with the error (they are retried next time).
    pub failed: Vec<(Ulid, String)>,
}

/// The blocks cleanup deletes; pure.
pub fn plan_cleanup(synced: &Synced, opts: &CleanupOptions) -> Vec<(Ulid, CleanupReason)> {
    let now = synced.now_ms;
    let mut out = Vec::new();
    let marked_ago = |m: &DeletionMark| now - m.deletion_time * 1000;
    for b in synced.all_blocks() {
        if let Some(m) = &b.deletion_mark {
            let ago = marked_ago(m);
            if ago >= opts.delete_delay_ms {
                out.push((b.id(), CleanupReason::Marked { ago_ms: ago }));
            }
        }
    }
    let threshold = PARTIAL_UPLOAD_THRESHOLD_MS.max(opts.consistency_delay_ms);
    for p in &synced.partial {
        match &p.deletion_mark {
            Some(m) if marked_ago(m) >= opts.delete_delay_ms => {
                out.push((p.id, CleanupReason::Marked { ago_ms: marked_ago(m) }))
            }
            Some(_) => {}
            None if p.age_ms > threshold => out.push((p.id, CleanupReason::AbortedPartialUpload { age_ms: p.age_ms })),
            None => {}
        }
    }
    out.sort_by_key(|(id, _)| *id);
    out
}

/// Deletes what [`plan_cleanup`] names, block by block in the delete order. A failure
/// is reported and the others go on.
pub async fn cleanup(bucket: &Bucket, synced: &Synced, opts: &CleanupOptions) -> CleanupReport {
    let mut report = CleanupReport::default();
    for (id, reason) in plan_cleanup(synced, opts) {
        match bucket.delete_block(id).await {
            Ok(d) => {
                let (why, age_ms) = match &reason {
                    CleanupReason::Marked { ago_ms } => ("marked for deletion", *ago_ms),
                    CleanupReason::AbortedPartialUpload { age_ms } => ("aborted partial upload", *age_ms),
                };
                tracing::info!(block = %id, reason = why, age_ms, objects = d.deleted.len(), "deleted block");
                report.deleted.push((id, reason))
            }
            Err(e) => report.failed.push((id, e.to_string())),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::meta::ThanosMeta;

    const H: i64 = 3_600_000;
    const NOW: i64 = 1_700_000_000_000;

    fn ulid_at(ms: i64, n: u128) -> Ulid {
        Ulid::from_parts(ms as u64, n)
    }

    fn block(id: Ulid, source: &str, upload_time: Option<&str>) -> BlockInfo {
        let mut meta = BlockMeta::new(id, 0, 2 * H);
        let mut t = ThanosMeta::default();
        t.labels.insert("cluster".into(), "a".into());
        t.source = source.into();
        if let Some(u) = upload_time {
            t.upload_time = u.into();
        }
        meta.thanos = Some(t);
        BlockInfo { meta, deletion_mark: None, no_compact_mark: None, no_downsample_mark: None }
    }

    fn marked(mut b: BlockInfo, ago_ms: i64) -> BlockInfo {
        b.deletion_mark =
            Some(DeletionMark { id: b.id(), version: 1, details: String::new(), deletion_time: (NOW - ago_ms) / 1000 });
        b
    }

    fn ids(v: &[BlockInfo]) -> Vec<Ulid> {
        v.iter().map(BlockInfo::id).collect()
    }

    #[test]
    fn consistency_delay_uses_upload_time_then_ulid_and_exempts_compactor_sources() {
        let opts = SyncOptions { now_ms: Some(NOW), ..Default::default() };
        let old_ulid = ulid_at(NOW - 2 * H, 1);
        let new_ulid = ulid_at(NOW - 60_000, 2);
        let cases = [
            ("an old block with no upload time is kept", block(old_ulid, "sidecar", None), true),
            ("a block made a minute ago is too fresh", block(new_ulid, "sidecar", None), false),
            (
                "an old block uploaded a minute ago is too fresh",
                block(
                    ulid_at(NOW - 5 * H, 3),
                    "sidecar",
                    Some(&crate::time::rfc3339_nano((NOW as i128 - 60_000) * 1_000_000)),
                ),
                false,
            ),
            ("a fresh compactor output is exempt", block(ulid_at(NOW - 1000, 4), "compactor", None), true),
            ("a fresh bucket.repair output is exempt", block(ulid_at(NOW - 1000, 5), "bucket.repair", None), true),
            (
                "a fresh compactor.repair output is exempt",
                block(ulid_at(NOW - 1000, 6), "compactor.repair", None),
                true,
            ),
            (
                "a new block uploaded long ago (clock skew) is kept",
                block(ulid_at(NOW + 1000, 7), "receive", Some("2020-01-01T00:00:00Z")),
                true,
            ),
        ];
        for (name, b, keep) in cases {
            let id = b.id();
            let (kept, excluded) = filter_blocks(vec![b], &opts, NOW);
            assert_eq!(ids(&kept).contains(&id), keep, "{name}");
            if !keep {
                assert!(matches!(excluded[0].1, Exclusion::TooFresh { .. }), "{name}");
            }
        }
    }

    #[test]
    fn deletion_marks_older_than_half_the_delete_delay_set_blocks_aside() {
        let opts =
            SyncOptions { now_ms: Some(NOW), consistency_delay_ms: 0, delete_delay_ms: 48 * H, ..Default::default() };
        let a = marked(block(ulid_at(NOW - 100 * H, 1), "sidecar", None), 23 * H);
        let b = marked(block(ulid_at(NOW - 100 * H, 2), "sidecar", None), 25 * H);
        let (kept, excluded) = filter_blocks(vec![a.clone(), b.clone()], &opts, NOW);
        assert_eq!(ids(&kept), [a.id()], "marked 23h ago is still read");
        assert_eq!(excluded[0].0.id(), b.id(), "marked 25h ago is not");
    }

    #[test]
    fn duplicates_are_blocks_whose_sources_another_covers() {
        let s: Vec<Ulid> = (1..=4).map(|i| ulid_at(NOW - 10 * H, i)).collect();
        let mk = |id: Ulid, sources: &[Ulid], labels: &str, res: i64| {
            let mut b = block(id, "compactor", None);
            b.meta.compaction.sources = sources.to_vec();
            let t = b.meta.thanos.as_mut().unwrap();
            t.labels.insert("cluster".into(), labels.into());
            t.downsample.resolution = res;
            b
        };
        let out = ulid_at(NOW - H, 10);
        let blocks = vec![
            mk(s[0], &[s[0]], "a", 0),
            mk(s[1], &[s[1]], "a", 0),
            mk(s[2], &[s[2]], "a", 0),
            mk(out, &[s[0], s[1]], "a", 0),
            mk(ulid_at(NOW - H, 11), &[s[0], s[1]], "a", 300_000),
            mk(ulid_at(NOW - H, 12), &[s[2]], "b", 0),
            mk(ulid_at(NOW - H, 13), &[s[0], s[1]], "a", 0),
        ];
        let d = duplicates(&blocks);
        let mut got: Vec<(Ulid, Ulid)> = d.into_iter().collect();
        got.sort();
        assert_eq!(got, vec![(s[0], out), (s[1], out), (ulid_at(NOW - H, 13), out)], "inputs of a compaction, and a later block with the same sources; other resolutions and labels are other groups");
    }

    #[test]
    fn cleanup_honours_delete_delay_and_partial_age() {
        let opts = CleanupOptions { delete_delay_ms: 48 * H, consistency_delay_ms: 30 * 60_000 };
        let old = marked(block(ulid_at(NOW - 100 * H, 1), "sidecar", None), 49 * H);
        let young = marked(block(ulid_at(NOW - 100 * H, 2), "sidecar", None), 47 * H);
        let partial = |n: u128, age_ms: i64, mark: Option<i64>| PartialBlock {
            id: ulid_at(NOW - 100 * H, n),
            problem: "no meta.json".into(),
            age_ms,
            objects: 1,
            deletion_mark: mark.map(|ago| DeletionMark {
                id: ulid_at(NOW - 100 * H, n),
                version: 1,
                details: String::new(),
                deletion_time: (NOW - ago) / 1000,
            }),
        };
        let synced = Synced {
            blocks: vec![young.clone()],
            excluded: vec![(old.clone(), Exclusion::MarkedForDeletion { marked_ms_ago: 49 * H })],
            partial: vec![
                partial(3, 49 * H, None),
                partial(4, 47 * H, None),
                partial(5, H, Some(49 * H)),
                partial(6, 49 * H, Some(H)),
            ],
            warnings: vec![],
            now_ms: NOW,
        };
        let plan: Vec<Ulid> = plan_cleanup(&synced, &opts).into_iter().map(|(id, _)| id).collect();
        assert_eq!(plan, vec![old.id(), ulid_at(NOW - 100 * H, 3), ulid_at(NOW - 100 * H, 5)]);
        let zero = CleanupOptions { delete_delay_ms: 0, ..opts.clone() };
        assert_eq!(plan_cleanup(&synced, &zero).len(), 5, "delete delay 0 deletes every marked block at once");
        let long_delay = CleanupOptions { consistency_delay_ms: 72 * H, ..opts };
        assert!(
            !plan_cleanup(&synced, &long_delay).iter().any(|(id, _)| *id == ulid_at(NOW - 100 * H, 3)),
            "a consistency delay above 48h raises the partial threshold"
        );
    }
}
