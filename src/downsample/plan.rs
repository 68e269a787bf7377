//! Which blocks to downsample (pure: metas in, tasks out; no I/O).
//!
//! Thanos's rule (`cmd/thanos/downsample.go`, `downsampleBucket`): a raw block is done
//! when every one of its sources appears among the sources of some 5m block, and a 5m block
//! when every one of its sources appears among those of some 1h block. A block not done is
//! downsampled once it spans at least 40 hours (raw → 5m) or 10 days (5m → 1h); 1h blocks
//! never are. Blocks with a `no-downsample-mark.json` are not downsampled.

use std::collections::HashSet;

use ulid::Ulid;

use super::{RES_LEVEL1_RANGE_MS, RES_LEVEL2_RANGE_MS};
use crate::format::meta::{BlockMeta, RES_1H, RES_5M, RES_RAW};

/// The blocks to downsample and the resolution each goes to, sorted by ULID. `metas`
/// pairs every block's meta with whether it carries a no-downsample mark.
///
/// Divergence from Thanos: Thanos removes marked blocks from the list before it collects
/// the sources already downsampled, so a raw block whose 5m block is marked gets
/// downsampled again (a duplicate 5m block, which Thanos then downsamples to 1h, defeating
/// the mark). Here a marked block still counts as covering its sources. Blocks with a
/// resolution other than raw, 5m and 1h are passed over (Thanos stops with an error).
pub fn plan_downsampling(metas: &[(BlockMeta, bool)]) -> Vec<(Ulid, i64)> {
    let mut done_5m: HashSet<Ulid> = HashSet::new();
    let mut done_1h: HashSet<Ulid> = HashSet::new();
    for (m, _) in metas {
        match m.resolution() {
            RES_5M => done_5m.extend(m.compaction.sources.iter().copied()),
            RES_1H => done_1h.extend(m.compaction.sources.iter().copied()),
            _ => {}
        }
    }
    let mut out: Vec<(Ulid, i64)> = Vec::new();
    for (m, no_downsample) in metas {
        if *no_downsample {
            continue;
        }
        let (done, min_range, target) = match m.resolution() {
            RES_RAW => (&done_5m, RES_LEVEL1_RANGE_MS, RES_5M),
            RES_5M => (&done_1h, RES_LEVEL2_RANGE_MS, RES_1H),
            _ => continue,
        };
        // As in Thanos, a block without sources counts as done.
        if m.compaction.sources.iter().all(|s| done.contains(s)) {
            continue;
        }
        if m.max_time - m.min_time < min_range {
            continue;
        }
        out.push((m.ulid, target));
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::meta::ThanosMeta;

    const H: i64 = 3_600_000;
    const D: i64 = 24 * H;

    fn id(n: u8) -> Ulid {
        Ulid::from_parts(1_700_000_000_000 + n as u64, n as u128)
    }

    /// A block `n` over `[0, span)` at `res` holding the data of `sources`.
    fn block(n: u8, span: i64, res: i64, sources: &[u8]) -> BlockMeta {
        let mut m = BlockMeta::new(id(n), 0, span);
        m.compaction.sources = sources.iter().map(|&s| id(s)).collect();
        m.thanos =
            Some(ThanosMeta { downsample: crate::format::meta::Downsample { resolution: res }, ..Default::default() });
        m
    }

    fn plan(blocks: &[(BlockMeta, bool)]) -> Vec<(Ulid, i64)> {
        plan_downsampling(blocks)
    }

    #[test]
    fn a_raw_block_of_exactly_40_hours_goes_to_5m_and_a_shorter_one_does_not() {
        let p = plan(&[(block(1, 40 * H, 0, &[1]), false), (block(2, 40 * H - 1, 0, &[2]), false)]);
        assert_eq!(p, vec![(id(1), RES_5M)]);
    }

    #[test]
    fn a_5m_block_of_10_days_goes_to_1h_and_1h_blocks_never_go_anywhere() {
        let p = plan(&[
            (block(1, 10 * D, RES_5M, &[1]), false),
            (block(2, 9 * D, RES_5M, &[2]), false),
            (block(3, 400 * D, RES_1H, &[3]), false),
        ]);
        assert_eq!(p, vec![(id(1), RES_1H)]);
    }

    #[test]
    fn a_raw_block_whose_sources_are_all_in_5m_blocks_is_done() {
        // Block 3 (sources 1, 2) is covered by two 5m blocks together.
        let p = plan(&[
            (block(3, 2 * D, 0, &[1, 2]), false),
            (block(4, 2 * D, RES_5M, &[1]), false),
            (block(5, 2 * D, RES_5M, &[2]), false),
        ]);
        assert_eq!(p, vec![]);
    }

    #[test]
    fn a_raw_block_with_one_source_missing_from_5m_blocks_is_downsampled_again() {
        let p = plan(&[(block(3, 2 * D, 0, &[1, 2]), false), (block(4, 2 * D, RES_5M, &[1]), false)]);
        assert_eq!(p, vec![(id(3), RES_5M)]);
    }

    #[test]
    fn sources_covered_at_1h_do_not_count_for_raw_blocks() {
        let p = plan(&[(block(1, 2 * D, 0, &[1]), false), (block(2, 20 * D, RES_1H, &[1]), false)]);
        assert_eq!(p, vec![(id(1), RES_5M)]);
    }

    #[test]
    fn a_no_downsample_mark_keeps_a_block_from_being_downsampled() {
        let p = plan(&[(block(1, 2 * D, 0, &[1]), true), (block(2, 11 * D, RES_5M, &[2]), true)]);
        assert_eq!(p, vec![]);
    }

    #[test]
    fn a_marked_5m_block_still_covers_its_raw_sources() {
        let p = plan(&[(block(1, 11 * D, 0, &[1]), false), (block(2, 11 * D, RES_5M, &[1]), true)]);
        assert_eq!(p, vec![]);
    }

    #[test]
    fn both_passes_run_on_one_directory_of_raw_and_5m_blocks() {
        // Raw 1 is new; 5m block 3 (of raw 2) is not yet at 1h.
        let p = plan(&[
            (block(1, 3 * D, 0, &[1]), false),
            (block(2, 14 * D, 0, &[2]), false),
            (block(3, 14 * D, RES_5M, &[2]), false),
        ]);
        assert_eq!(p, vec![(id(1), RES_5M), (id(3), RES_1H)]);
    }

    #[test]
    fn a_block_without_sources_counts_as_done_as_in_thanos() {
        let p = plan(&[(block(1, 3 * D, 0, &[]), false)]);
        assert_eq!(p, vec![]);
    }

    #[test]
    fn unknown_resolutions_are_passed_over() {
        let p = plan(&[(block(1, 30 * D, 60_000, &[1]), false)]);
        assert_eq!(p, vec![]);
    }

    #[test]
    fn tasks_come_sorted_by_ulid() {
        let p = plan(&[
            (block(9, 2 * D, 0, &[9]), false),
            (block(2, 2 * D, 0, &[2]), false),
            (block(5, 2 * D, 0, &[5]), false),
        ]);
        assert_eq!(p.iter().map(|t| t.0).collect::<Vec<_>>(), vec![id(2), id(5), id(9)]);
    }
}
