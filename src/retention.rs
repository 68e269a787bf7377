//! Retention by resolution: which blocks are old enough to delete.
//!
//! Owns: Thanos's rule (`ApplyRetentionPolicyByResolution`): a block of resolution `r`
//! expires when `now > maxTime (truncated to seconds) + retention(r)`; a retention of 0
//! keeps blocks forever. Pure: the caller passes the clock and acts on the answer (the
//! bucket job writes deletion marks; `strata compact` removes local blocks).
//! Must not: touch files or buckets.

use ulid::Ulid;

use crate::format::meta::{BlockMeta, RES_1H, RES_5M, RES_RAW};

/// Retention per resolution, in milliseconds; 0 keeps forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub raw_ms: i64,
    pub five_minutes_ms: i64,
    pub one_hour_ms: i64,
}

impl Retention {
    /// The retention for a resolution; unknown resolutions are kept forever.
    pub fn for_resolution(&self, resolution: i64) -> i64 {
        match resolution {
            RES_RAW => self.raw_ms,
            RES_5M => self.five_minutes_ms,
            RES_1H => self.one_hour_ms,
            _ => 0,
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.raw_ms == 0 && self.five_minutes_ms == 0 && self.one_hour_ms == 0
    }

    /// Whether a block with this meta has expired at `now_ms`.
    pub fn expired(&self, meta: &BlockMeta, now_ms: i64) -> bool {
        let keep = self.for_resolution(meta.resolution());
        if keep <= 0 {
            return false;
        }
        // Thanos compares time.Unix(maxTime/1000, 0).Add(retention) with now.
        let max_s = meta.max_time.div_euclid(1000) * 1000;
        now_ms > max_s.saturating_add(keep)
    }
}

/// The blocks among `metas` that have expired at `now_ms`.
pub fn expired<'a>(metas: impl IntoIterator<Item = &'a BlockMeta>, retention: &Retention, now_ms: i64) -> Vec<Ulid> {
    metas.into_iter().filter(|m| retention.expired(m, now_ms)).map(|m| m.ulid).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::meta::ThanosMeta;

    const DAY: i64 = 86_400_000;

    fn meta(n: u128, max_time: i64, resolution: i64) -> BlockMeta {
        let mut m = BlockMeta::new(Ulid::from(n), max_time - 2 * 3_600_000, max_time);
        m.thanos =
            Some(ThanosMeta { downsample: crate::format::meta::Downsample { resolution }, ..Default::default() });
        m
    }

    #[test]
    fn each_resolution_has_its_own_retention() {
        let r = Retention { raw_ms: 7 * DAY, five_minutes_ms: 30 * DAY, one_hour_ms: 0 };
        let now = 100 * DAY;
        let blocks = [
            meta(1, 90 * DAY, RES_RAW),
            meta(2, 95 * DAY, RES_RAW),
            meta(3, 60 * DAY, RES_5M),
            meta(4, 80 * DAY, RES_5M),
            meta(5, DAY, RES_1H),
        ];
        assert_eq!(expired(&blocks, &r, now), vec![Ulid::from(1), Ulid::from(3)]);
    }

    #[test]
    fn zero_keeps_forever_and_the_boundary_is_strict() {
        let m = meta(1, 10 * DAY, RES_RAW);
        assert!(!Retention::default().expired(&m, i64::MAX));
        let r = Retention { raw_ms: DAY, ..Default::default() };
        assert!(!r.expired(&m, 11 * DAY), "exactly at maxTime + retention: kept");
        assert!(r.expired(&m, 11 * DAY + 1));
    }

    #[test]
    fn max_time_is_truncated_to_seconds_like_thanos() {
        let m = meta(1, 10 * DAY + 999, RES_RAW);
        let r = Retention { raw_ms: DAY, ..Default::default() };
        assert!(r.expired(&m, 11 * DAY + 1));
    }

    #[test]
    fn blocks_without_a_thanos_section_are_raw() {
        let m = BlockMeta::new(Ulid::from(9u128), 0, DAY);
        assert!(Retention { raw_ms: DAY, ..Default::default() }.expired(&m, 2 * DAY + 1));
    }
}
