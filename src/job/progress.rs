//! The backlog, as Thanos computes its `thanos_compact_todo_*` gauges: over the synced
//! metas, simulate the planner (each plan's blocks replaced by the block it would write,
//! then plan again until nothing is left), count the blocks still to downsample and the
//! blocks past retention, per group.
//!
//! Owns: [`Backlog`] and [`backlog`]; pure, no I/O.

use std::collections::BTreeMap;

use ulid::Ulid;

use crate::bucket::sync::Synced;
use crate::compact::plan::{plan, GroupKey, PlanBlock, Policy};
use crate::retention::Retention;

/// The work left, per group (`<resolution>@<labels>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backlog {
    /// (compactions, blocks in them).
    pub compactions: BTreeMap<String, (u64, u64)>,
    pub downsample_blocks: BTreeMap<String, u64>,
    pub deletion_blocks: BTreeMap<String, u64>,
}

/// Plans rounds at most this often: a bound, not a limit any real bucket reaches.
const MAX_ROUNDS: usize = 10_000;

/// Computes the backlog of `synced` (already filtered to the blocks this instance owns).
pub fn backlog(
    synced: &Synced,
    policy: &Policy,
    replica_labels: &[String],
    retention: &Retention,
    downsampling: bool,
) -> Backlog {
    let live: Vec<_> = synced.blocks.iter().filter(|b| b.deletion_mark.is_none()).collect();
    let mut out = Backlog::default();
    let mut blocks: Vec<PlanBlock> =
        live.iter().map(|b| PlanBlock::from_meta(&b.meta, replica_labels, b.no_compact_mark.is_some())).collect();
    for b in &blocks {
        out.compactions.entry(b.group.to_string()).or_default();
    }
    for _ in 0..MAX_ROUNDS {
        let o = plan(&blocks, policy);
        if o.plans.is_empty() {
            break;
        }
        for p in o.plans {
            let e = out.compactions.entry(p.group.to_string()).or_default();
            e.0 += 1;
            e.1 += p.blocks.len() as u64;
            let merged: Vec<PlanBlock> = blocks.iter().filter(|b| p.blocks.contains(&b.ulid)).cloned().collect();
            blocks.retain(|b| !p.blocks.contains(&b.ulid));
            blocks.push(PlanBlock {
                ulid: Ulid::new(),
                min_time: merged.iter().map(|b| b.min_time).min().unwrap_or(0),
                max_time: merged.iter().map(|b| b.max_time).max().unwrap_or(0),
                group: p.group.clone(),
                num_series: merged.iter().map(|b| b.num_series).max().unwrap_or(0),
                num_tombstones: 0,
                failed: false,
                no_compact: false,
            });
        }
    }
    let group_of = |m: &crate::format::meta::BlockMeta| {
        GroupKey::new(m.resolution(), m.external_labels(), replica_labels).to_string()
    };
    if downsampling {
        let metas: Vec<_> = live.iter().map(|b| (b.meta.clone(), b.no_downsample_mark.is_some())).collect();
        for g in out.compactions.keys() {
            out.downsample_blocks.insert(g.clone(), 0);
        }
        for (id, _) in crate::downsample::plan_downsampling(&metas) {
            if let Some((m, _)) = metas.iter().find(|(m, _)| m.ulid == id) {
                *out.downsample_blocks.entry(group_of(m)).or_default() += 1;
            }
        }
    }
    for g in out.compactions.keys() {
        out.deletion_blocks.insert(g.clone(), 0);
    }
    if !retention.is_unlimited() {
        for b in &live {
            if retention.expired(&b.meta, synced.now_ms) {
                *out.deletion_blocks.entry(group_of(&b.meta)).or_default() += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bucket::BlockInfo;
    use crate::compact::plan::{HOUR, THANOS_RANGES_MS};
    use crate::format::meta::{BlockMeta, ThanosMeta};

    fn block(min: i64, max: i64, level: u32, cluster: &str) -> BlockInfo {
        let id = Ulid::new();
        let mut meta = BlockMeta::new(id, min, max);
        meta.compaction.level = level;
        let mut t = ThanosMeta::default();
        t.labels.insert("cluster".into(), cluster.into());
        meta.thanos = Some(t);
        BlockInfo { meta, deletion_mark: None, no_compact_mark: None, no_downsample_mark: None }
    }

    #[test]
    fn eight_two_hour_blocks_are_one_compaction_to_eight_hours_and_nothing_after() {
        // 0..8h in four 2h blocks, and 8h..16h in four more; the newest range is left
        // alone by Thanos's planner until a later block exists, so one 8h plan remains
        // compactable per finished range.
        let mut s = Synced { now_ms: 100 * HOUR, ..Default::default() };
        for i in 0..8 {
            s.blocks.push(block(i * 2 * HOUR, (i + 1) * 2 * HOUR, 1, "a"));
        }
        s.blocks.push(block(0, 2 * HOUR, 1, "b"));
        let policy = Policy { ranges: THANOS_RANGES_MS.to_vec(), vertical: false };
        let b = backlog(&s, &policy, &[], &Retention::default(), true);
        let a = b.compactions.iter().find(|(g, _)| g.contains("cluster=\"a\"")).map(|(_, v)| *v).unwrap();
        let direct =
            plan(&s.blocks.iter().map(|b| PlanBlock::from_meta(&b.meta, &[], false)).collect::<Vec<_>>(), &policy);
        assert!(a.0 >= direct.plans.len() as u64, "{b:?}");
        assert!(a.1 >= 4, "{b:?}");
        let only_b = b.compactions.iter().find(|(g, _)| g.contains("cluster=\"b\"")).map(|(_, v)| *v).unwrap();
        assert_eq!(only_b, (0, 0));
        assert!(b.downsample_blocks.values().all(|v| *v == 0));
        assert!(b.deletion_blocks.values().all(|v| *v == 0));
    }

    #[test]
    fn blocks_past_retention_are_counted_per_group() {
        let mut s = Synced { now_ms: 1000 * HOUR, ..Default::default() };
        s.blocks.push(block(0, 2 * HOUR, 1, "a"));
        s.blocks.push(block(990 * HOUR, 992 * HOUR, 1, "a"));
        let r = Retention { raw_ms: 24 * HOUR, ..Default::default() };
        let b = backlog(&s, &Policy { ranges: THANOS_RANGES_MS.to_vec(), vertical: false }, &[], &r, false);
        assert_eq!(b.deletion_blocks.values().sum::<u64>(), 1, "{b:?}");
    }
}
