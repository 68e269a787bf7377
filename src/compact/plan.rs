//! The compaction planner: which blocks to merge, decided from metas alone.
//!
//! Owns: grouping blocks (resolution and external labels, replica labels removed),
//! vertical plans for overlapping blocks, leveled plans over block ranges (Thanos's
//! rules, including the one that never compacts a range prematurely and the
//! no-compact-mark split that leaves no hole), the backlog fast path, and the tombstone
//! rewrite rule. Pure: no I/O, no clock. Table-tested below.
//! Must not: open blocks or decide anything from their contents.

use std::collections::BTreeMap;
use std::fmt;

use ulid::Ulid;

use crate::format::meta::{BlockMeta, RES_RAW};

/// Thanos's default ranges used for grouping: 2h, 8h, 2d, 14d.
pub const THANOS_RANGES_MS: [i64; 4] = [2 * HOUR, 8 * HOUR, 48 * HOUR, 336 * HOUR];
pub const HOUR: i64 = 3_600_000;

/// What the planner needs to know about one block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlanBlock {
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
    pub group: GroupKey,
    pub num_series: u64,
    pub num_tombstones: u64,
    /// `compaction.failed` in meta.json.
    pub failed: bool,
    /// A `no-compact-mark.json` sits beside the block.
    pub no_compact: bool,
}

impl PlanBlock {
    /// Builds the planner's view of a block; `replica_labels` are removed from its
    /// external labels for grouping.
    pub fn from_meta(meta: &BlockMeta, replica_labels: &[String], no_compact: bool) -> PlanBlock {
        PlanBlock {
            ulid: meta.ulid,
            min_time: meta.min_time,
            max_time: meta.max_time,
            group: GroupKey::new(meta.resolution(), meta.external_labels(), replica_labels),
            num_series: meta.stats.num_series,
            num_tombstones: meta.stats.num_tombstones,
            failed: meta.compaction.failed,
            no_compact,
        }
    }
}

/// Blocks compact together only within one group: same resolution, same external
/// labels once the replica labels are gone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupKey {
    pub resolution: i64,
    pub labels: BTreeMap<String, String>,
}

impl GroupKey {
    /// Removes `replica_labels`. If that leaves no label although some were removed,
    /// the group gets `<first replica label>="deduped"`, as Thanos does, so compacted
    /// blocks always carry an external label.
    pub fn new(resolution: i64, mut labels: BTreeMap<String, String>, replica_labels: &[String]) -> GroupKey {
        let before = labels.len();
        for r in replica_labels {
            labels.remove(r);
        }
        if labels.is_empty() && before > 0 {
            if let Some(first) = replica_labels.first() {
                labels.insert(first.clone(), "deduped".to_string());
            }
        }
        GroupKey { resolution, labels }
    }
}

impl fmt::Display for GroupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l: Vec<String> = self.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        write!(f, "{}@{{{}}}", self.resolution, l.join(","))
    }
}

/// The knobs of planning.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Ranges used for grouping, ascending (Thanos: 2h, 8h, 2d, 14d).
    pub ranges: Vec<i64>,
    /// Merge overlapping blocks (vertical compaction). Thanos halts on overlaps unless
    /// this is on; it is implied by any replica label.
    pub vertical: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { ranges: THANOS_RANGES_MS.to_vec(), vertical: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanKind {
    /// Overlapping blocks merged sample by sample.
    Vertical,
    /// Adjacent blocks merged into one range.
    Leveled,
    /// One block rewritten to drop tombstoned data.
    Tombstones,
}

/// One compaction to run: these blocks (sorted by min time) into one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub group: GroupKey,
    pub kind: PlanKind,
    pub blocks: Vec<Ulid>,
}

/// Something the planner refused to plan, with the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub group: GroupKey,
    pub blocks: Vec<Ulid>,
    pub reason: String,
}

/// The planner's answer for a set of blocks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Independent plans: no block is in two of them, so they may run in parallel.
    pub plans: Vec<Plan>,
    pub refused: Vec<Refusal>,
}

/// Plans compactions for every group.
pub fn plan(blocks: &[PlanBlock], policy: &Policy) -> Outcome {
    let mut groups: BTreeMap<&GroupKey, Vec<&PlanBlock>> = BTreeMap::new();
    for b in blocks {
        groups.entry(&b.group).or_default().push(b);
    }
    let mut out = Outcome::default();
    for (key, mut metas) in groups {
        metas.sort_by_key(|b| (b.min_time, b.max_time, b.ulid));
        plan_group(key, &metas, policy, &mut out);
    }
    out
}

fn plan_group(key: &GroupKey, metas: &[&PlanBlock], policy: &Policy, out: &mut Outcome) {
    let ids = |v: &[&PlanBlock]| v.iter().map(|b| b.ulid).collect::<Vec<_>>();
    let candidates: Vec<&PlanBlock> = metas.iter().copied().filter(|b| !b.no_compact).collect();

    // 1. Overlaps first, every disjoint cluster of them.
    let clusters = overlapping_clusters(&candidates);
    if !clusters.is_empty() {
        for c in clusters {
            if key.resolution != RES_RAW {
                out.refused.push(Refusal {
                    group: key.clone(),
                    blocks: ids(&c),
                    reason: "overlapping downsampled blocks are never compacted vertically".into(),
                });
            } else if !policy.vertical {
                out.refused.push(Refusal {
                    group: key.clone(),
                    blocks: ids(&c),
                    reason: "blocks overlap; enable vertical compaction (or set a replica label) to merge them".into(),
                });
            } else {
                out.plans.push(Plan { group: key.clone(), kind: PlanKind::Vertical, blocks: ids(&c) });
            }
        }
        return;
    }
    if metas.len() < 2 {
        return;
    }
    // 2. The newest block (greatest min time) stays out: a full range of slack. As in
    //    Prometheus and Thanos, "before the most recent block" then means ending at or
    //    before the start of the newest block that is left.
    let without_newest = &metas[..metas.len() - 1];
    let high_time = without_newest[without_newest.len() - 1].min_time;

    // 3. Backlog fast path: any window of the largest range it completely fills, in one
    //    pass, rather than climbing level by level.
    let fast = full_windows(without_newest, &policy.ranges);
    if !fast.is_empty() {
        for run in fast {
            out.plans.push(Plan { group: key.clone(), kind: PlanKind::Leveled, blocks: ids(&run) });
        }
        return;
    }
    // 4. Thanos's leveled selection.
    if let Some(run) = select_metas(without_newest, &policy.ranges, high_time) {
        out.plans.push(Plan { group: key.clone(), kind: PlanKind::Leveled, blocks: ids(&run) });
        return;
    }
    // 5. Blocks long enough whose tombstones cover more than 5% of their series.
    let min_len = tombstone_min_len(&policy.ranges);
    let eligible: Vec<&PlanBlock> = without_newest.iter().copied().filter(|b| !b.no_compact).collect();
    for b in eligible.iter().rev() {
        if b.max_time - b.min_time < min_len {
            break;
        }
        if b.num_tombstones as f64 / (b.num_series as f64 + 1.0) > 0.05 {
            out.plans.push(Plan { group: key.clone(), kind: PlanKind::Tombstones, blocks: vec![b.ulid] });
            return;
        }
    }
}

/// Thanos applies the tombstone rule to blocks at least `ranges[len/2]` long over its
/// range list `[1h, 2h, 8h, 2d, 14d]`, i.e. 8h; over strata's list without the leading
/// 1h that is the second range.
fn tombstone_min_len(ranges: &[i64]) -> i64 {
    ranges.get(1).or(ranges.first()).copied().unwrap_or(8 * HOUR)
}

/// Runs of blocks where each overlaps the running max time of those before it. Each run
/// includes the block before its first overlap.
fn overlapping_clusters<'a>(metas: &[&'a PlanBlock]) -> Vec<Vec<&'a PlanBlock>> {
    let mut out = Vec::new();
    let Some(first) = metas.first() else { return out };
    let mut global_max = first.max_time;
    let mut cur: Vec<&PlanBlock> = Vec::new();
    for i in 1..metas.len() {
        let m = metas[i];
        if m.min_time < global_max {
            if cur.is_empty() {
                cur.push(metas[i - 1]);
            }
            cur.push(m);
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        global_max = global_max.max(m.max_time);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Start of the aligned range of size `tr` holding `t` (floor division, as Thanos).
fn range_start(t: i64, tr: i64) -> i64 {
    t.div_euclid(tr) * tr
}

/// Thanos's `splitByRange`: consecutive blocks that fit one aligned window of size `tr`.
fn split_by_range<'a>(metas: &[&'a PlanBlock], tr: i64) -> Vec<Vec<&'a PlanBlock>> {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < metas.len() {
        let t0 = range_start(metas[i].min_time, tr);
        if metas[i].max_time > t0 + tr {
            i += 1;
            continue;
        }
        let mut group = Vec::new();
        while i < metas.len() && metas[i].max_time <= t0 + tr {
            group.push(metas[i]);
            i += 1;
        }
        if !group.is_empty() {
            parts.push(group);
        }
    }
    parts
}

/// Runs of at least two consecutive blocks without a no-compact mark.
fn unmarked_runs<'a>(part: &[&'a PlanBlock]) -> Vec<Vec<&'a PlanBlock>> {
    part.split(|b| b.no_compact).filter(|r| r.len() > 1).map(|r| r.to_vec()).collect()
}

/// Thanos's `selectMetas`: the first part, smallest range first, that has at least two
/// blocks, no failed block, and either spans its whole range or ends before the newest
/// block starts; within it the first run of at least two unmarked blocks.
fn select_metas<'a>(metas: &[&'a PlanBlock], ranges: &[i64], high_time: i64) -> Option<Vec<&'a PlanBlock>> {
    for &iv in ranges {
        for p in split_by_range(metas, iv) {
            if p.iter().any(|b| b.failed) || p.len() < 2 {
                continue;
            }
            let (mint, maxt) = (p[0].min_time, p[p.len() - 1].max_time);
            if maxt - mint != iv && maxt > high_time {
                continue;
            }
            if let Some(run) = unmarked_runs(&p).into_iter().next() {
                return Some(run);
            }
        }
    }
    None
}

/// Every window, at the largest range it fills, whose blocks span that whole range
/// (gaps allowed) and hold at least two blocks; blocks used once are not reused.
fn full_windows<'a>(metas: &[&'a PlanBlock], ranges: &[i64]) -> Vec<Vec<&'a PlanBlock>> {
    let mut taken: Vec<Ulid> = Vec::new();
    let mut out = Vec::new();
    for &iv in ranges.iter().rev() {
        let free: Vec<&PlanBlock> = metas.iter().copied().filter(|b| !taken.contains(&b.ulid)).collect();
        for p in split_by_range(&free, iv) {
            if p.len() < 2 || p.iter().any(|b| b.failed) {
                continue;
            }
            let t0 = range_start(p[0].min_time, iv);
            if p[0].min_time != t0 || p[p.len() - 1].max_time != t0 + iv {
                continue;
            }
            for run in unmarked_runs(&p) {
                taken.extend(run.iter().map(|b| b.ulid));
                out.push(run);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR;

    fn id(n: u128) -> Ulid {
        Ulid::from(n)
    }

    fn blk(n: u128, min: i64, max: i64) -> PlanBlock {
        PlanBlock {
            ulid: id(n),
            min_time: min,
            max_time: max,
            group: GroupKey::new(0, BTreeMap::new(), &[]),
            num_series: 100,
            num_tombstones: 0,
            failed: false,
            no_compact: false,
        }
    }

    fn ids(v: &[u128]) -> Vec<Ulid> {
        v.iter().map(|&n| id(n)).collect()
    }

    fn planned(blocks: &[PlanBlock]) -> Vec<(PlanKind, Vec<Ulid>)> {
        plan(blocks, &Policy::default()).plans.into_iter().map(|p| (p.kind, p.blocks)).collect()
    }

    fn twohour(n: u128) -> PlanBlock {
        blk(n, (n as i64) * 2 * H, (n as i64 + 1) * 2 * H)
    }

    #[test]
    fn a_single_block_is_left_alone() {
        assert!(planned(&[blk(1, 0, 2 * H)]).is_empty());
    }

    #[test]
    fn the_newest_block_is_never_compacted_leveled() {
        // Three 2h blocks in one 8h window: the newest stays out, and the two before it
        // neither fill the window nor end before the last remaining block starts.
        assert!(planned(&[twohour(0), twohour(1), twohour(2)]).is_empty());
        // With a block in the next window, the first window's blocks are complete.
        assert_eq!(planned(&[twohour(0), twohour(1), twohour(4), twohour(5)]), vec![(PlanKind::Leveled, ids(&[0, 1]))]);
    }

    #[test]
    fn four_two_hour_blocks_fill_an_eight_hour_range() {
        let b: Vec<_> = (0..5).map(twohour).collect();
        assert_eq!(planned(&b), vec![(PlanKind::Leveled, ids(&[0, 1, 2, 3]))]);
    }

    #[test]
    fn a_range_is_not_compacted_prematurely() {
        // Without the newest block (4), the last block left (3) starts at 4h; the part
        // [0h,5h) of the 8h window ends after that and does not fill the window: wait.
        let b = vec![blk(1, 0, 2 * H), blk(2, 2 * H, 4 * H), blk(3, 4 * H, 5 * H), blk(4, 5 * H, 6 * H)];
        assert!(planned(&b).is_empty());
        // Once a block starts in the next window, the part ends before it: compact.
        let b = vec![
            blk(1, 0, 2 * H),
            blk(2, 2 * H, 4 * H),
            blk(3, 4 * H, 5 * H),
            blk(4, 8 * H, 10 * H),
            blk(5, 10 * H, 12 * H),
        ];
        assert_eq!(planned(&b), vec![(PlanKind::Leveled, ids(&[1, 2, 3]))]);
    }

    #[test]
    fn overlap_with_the_newest_block_is_merged_first() {
        let b = vec![blk(1, 0, 2 * H), blk(2, 2 * H, 4 * H), blk(3, 3 * H, 3 * H + 1)];
        assert_eq!(planned(&b), vec![(PlanKind::Vertical, ids(&[2, 3]))]);
    }

    #[test]
    fn a_window_spanned_exactly_is_compacted_even_with_uneven_blocks() {
        // The 8h window [0,8h) holds 1, 2 and 3 and spans exactly 8h.
        let b = vec![blk(1, 0, 2 * H), blk(2, 2 * H, 6 * H), blk(3, 6 * H, 8 * H), blk(4, 8 * H, 10 * H)];
        assert_eq!(planned(&b), vec![(PlanKind::Leveled, ids(&[1, 2, 3]))]);
    }

    #[test]
    fn overlapping_blocks_are_planned_first_as_vertical() {
        let b = vec![twohour(0), blk(9, H, 3 * H), twohour(1), twohour(5)];
        assert_eq!(planned(&b), vec![(PlanKind::Vertical, ids(&[0, 9, 1]))]);
    }

    #[test]
    fn disjoint_overlap_clusters_are_independent_plans() {
        let b = vec![twohour(0), blk(10, 0, 2 * H), twohour(3), blk(13, 6 * H, 8 * H)];
        assert_eq!(planned(&b), vec![(PlanKind::Vertical, ids(&[0, 10])), (PlanKind::Vertical, ids(&[3, 13]))]);
    }

    #[test]
    fn overlaps_without_vertical_compaction_are_refused_with_both_ids() {
        let b = vec![twohour(0), blk(10, H, 2 * H)];
        let o = plan(&b, &Policy { vertical: false, ..Policy::default() });
        assert!(o.plans.is_empty());
        assert_eq!(o.refused[0].blocks, ids(&[0, 10]));
    }

    #[test]
    fn overlapping_downsampled_blocks_are_never_merged() {
        let mut a = twohour(0);
        let mut b = blk(10, H, 2 * H);
        a.group.resolution = 300_000;
        b.group.resolution = 300_000;
        let o = plan(&[a, b], &Policy::default());
        assert!(o.plans.is_empty());
        assert_eq!(o.refused.len(), 1);
    }

    #[test]
    fn a_no_compact_mark_splits_the_range_without_a_hole() {
        let mut b: Vec<_> = (0..5).map(twohour).collect();
        b[1].no_compact = true;
        // [0] alone before the mark, [2,3] after it.
        assert_eq!(planned(&b), vec![(PlanKind::Leveled, ids(&[2, 3]))]);
        b[2].no_compact = true;
        assert!(planned(&b).is_empty() || planned(&b).iter().all(|(_, v)| !v.contains(&id(1)) && !v.contains(&id(2))));
    }

    #[test]
    fn marked_blocks_do_not_count_as_overlaps() {
        let mut b = vec![twohour(0), blk(10, 0, 2 * H), twohour(4)];
        b[1].no_compact = true;
        assert!(planned(&b).iter().all(|(k, _)| *k != PlanKind::Vertical));
    }

    #[test]
    fn a_failed_compaction_excludes_its_range() {
        let mut b: Vec<_> = (0..5).map(twohour).collect();
        b[2].failed = true;
        assert!(planned(&b).is_empty());
    }

    #[test]
    fn groups_are_planned_separately() {
        let mut b: Vec<_> = (0..5).map(twohour).collect();
        let mut other: Vec<_> = (10..15)
            .map(|n| {
                let mut x = twohour(n - 10);
                x.ulid = id(n);
                x.group = GroupKey::new(0, BTreeMap::from([("cluster".to_string(), "b".to_string())]), &[]);
                x
            })
            .collect();
        b.append(&mut other);
        let p = planned(&b);
        assert_eq!(p.len(), 2);
        assert!(
            p.contains(&(PlanKind::Leveled, ids(&[0, 1, 2, 3])))
                && p.contains(&(PlanKind::Leveled, ids(&[10, 11, 12, 13])))
        );
    }

    #[test]
    fn replica_labels_merge_groups_and_empty_sets_get_deduped() {
        let a = GroupKey::new(
            0,
            BTreeMap::from([("replica".into(), "A".into()), ("cluster".into(), "x".into())]),
            &["replica".into()],
        );
        let b = GroupKey::new(
            0,
            BTreeMap::from([("replica".into(), "B".into()), ("cluster".into(), "x".into())]),
            &["replica".into()],
        );
        assert_eq!(a, b);
        let only = GroupKey::new(0, BTreeMap::from([("replica".into(), "A".into())]), &["replica".into()]);
        assert_eq!(only.labels, BTreeMap::from([("replica".to_string(), "deduped".to_string())]));
    }

    #[test]
    fn tombstones_over_five_percent_rewrite_a_long_block() {
        let mut b = vec![blk(1, 0, 8 * H), blk(2, 8 * H, 16 * H), blk(3, 16 * H, 18 * H)];
        b[1].num_tombstones = 6; // 6 / 101 > 5%
                                 // No leveled plan: [0,8h) and [8h,16h) fill their own 8h windows alone, and in
                                 // the 2d window they would end after the last block left (2) starts.
        assert_eq!(planned(&b), vec![(PlanKind::Tombstones, ids(&[2]))]);
        // With nothing to merge it with, the block is rewritten alone.
        let b2 = vec![
            {
                let mut x = blk(2, 48 * H, 56 * H);
                x.num_tombstones = 6;
                x
            },
            blk(3, 96 * H, 98 * H),
        ];
        assert_eq!(planned(&b2), vec![(PlanKind::Tombstones, ids(&[2]))]);
        let b3 = vec![
            {
                let mut x = blk(2, 48 * H, 50 * H);
                x.num_tombstones = 60;
                x
            },
            blk(3, 96 * H, 98 * H),
        ];
        assert!(planned(&b3).is_empty(), "short blocks are not rewritten for tombstones");
    }

    #[test]
    fn a_backlog_fills_the_top_range_in_one_pass() {
        // 301 two-hour blocks (25 days and 2 hours).
        let b: Vec<_> = (0..301).map(twohour).collect();
        let p = planned(&b);
        // The first 14-day window is one plan of 168 blocks; the other full windows at
        // their largest range come with it, and no block is planned twice.
        assert_eq!(p[0].1.len(), 168);
        assert_eq!(p[0].1[0], id(0));
        let mut all: Vec<Ulid> = p.iter().flat_map(|x| x.1.clone()).collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        assert!(!all.contains(&id(300)), "the newest block stays out");
        assert_eq!(p.iter().filter(|x| x.1.len() == 24).count(), 5, "five full 2-day windows");
        assert_eq!(p.iter().filter(|x| x.1.len() == 4).count(), 3, "three full 8-hour windows");
    }

    #[test]
    fn prometheus_ranges_work_too() {
        let ranges = vec![2 * H, 6 * H, 18 * H, 54 * H];
        let b: Vec<_> = (0..4).map(twohour).collect();
        let o = plan(&b, &Policy { ranges, vertical: true });
        assert_eq!(o.plans[0].blocks, ids(&[0, 1, 2]));
    }

    #[test]
    fn negative_times_align_downwards() {
        assert_eq!(range_start(-1, 2 * H), -2 * H);
        assert_eq!(range_start(0, 2 * H), 0);
    }
}
