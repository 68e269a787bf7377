//! Selecting which blocks of a bucket this compactor owns, as Thanos does it, so several
//! instances can share one bucket: Prometheus relabel rules over a block's external labels
//! plus `__block_id` (`--selector.relabel-config`), and a time range (`--min-time`,
//! `--max-time`: blocks that overlap it).
//!
//! Owns: which blocks are selected. The rules themselves are [`crate::relabel`]'s. Pure.

use crate::error::Result;
use crate::format::meta::BlockMeta;
pub use crate::relabel::{relabel, Action, Rule};

/// The label Thanos adds to a block's external labels for relabelling.
pub const BLOCK_ID_LABEL: &str = "__block_id";

/// A parsed `--selector.relabel-config`.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    rules: Vec<Rule>,
    /// Blocks must overlap `[min_time, max_time]` (ms).
    pub min_time: Option<i64>,
    pub max_time: Option<i64>,
}

impl Selector {
    /// Parses relabel rules (a YAML list, Prometheus's `relabel_config` fields).
    pub fn parse_relabel(yaml: &str) -> Result<Vec<Rule>> {
        crate::relabel::parse_rules(yaml)
    }

    pub fn new(rules: Vec<Rule>, min_time: Option<i64>, max_time: Option<i64>) -> Selector {
        Selector { rules, min_time, max_time }
    }

    /// Whether this compactor owns the block.
    pub fn selects(&self, meta: &BlockMeta) -> bool {
        if self.min_time.is_some_and(|t| meta.max_time < t) || self.max_time.is_some_and(|t| meta.min_time > t) {
            return false;
        }
        let mut labels = meta.external_labels();
        labels.insert(BLOCK_ID_LABEL.into(), meta.ulid.to_string());
        relabel(&self.rules, labels).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::{Digest, Md5};
    use ulid::Ulid;

    fn meta(labels: &[(&str, &str)], min: i64, max: i64) -> BlockMeta {
        let mut m = BlockMeta::new(Ulid::new(), min, max);
        m.thanos = Some(crate::format::meta::ThanosMeta {
            labels: labels.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            ..Default::default()
        });
        m
    }

    #[test]
    fn keep_and_drop_by_external_labels() {
        let rules = Selector::parse_relabel("- action: keep\n  source_labels: [cluster]\n  regex: eu.*\n- action: drop\n  source_labels: [env]\n  regex: dev\n").unwrap();
        let s = Selector::new(rules, None, None);
        assert!(s.selects(&meta(&[("cluster", "eu1"), ("env", "prod")], 0, 1)));
        assert!(!s.selects(&meta(&[("cluster", "us1")], 0, 1)));
        assert!(!s.selects(&meta(&[("cluster", "eu2"), ("env", "dev")], 0, 1)));
    }

    #[test]
    fn hashmod_shards_blocks_like_prometheus() {
        // Prometheus: md5("eu1") = 8d0f…; sum64 over the digest keeps its last 8 bytes.
        let rules = Selector::parse_relabel(
            "- action: hashmod\n  source_labels: [cluster]\n  modulus: 2\n  target_label: shard\n",
        )
        .unwrap();
        let out = relabel(&rules, [("cluster".to_string(), "eu1".to_string())].into()).unwrap();
        let d = Md5::digest(b"eu1");
        let want = u64::from_be_bytes(d[8..16].try_into().unwrap()) % 2;
        assert_eq!(out["shard"], want.to_string());
        // Two shards split the blocks between them, each block owned exactly once.
        let shard = |n: u32| {
            Selector::new(Selector::parse_relabel(&format!("- action: hashmod\n  source_labels: [__block_id]\n  modulus: 2\n  target_label: shard\n- action: keep\n  source_labels: [shard]\n  regex: \"{n}\"\n")).unwrap(), None, None)
        };
        let blocks: Vec<BlockMeta> = (0..40).map(|_| meta(&[("cluster", "eu1")], 0, 1)).collect();
        let (a, b) = (shard(0), shard(1));
        assert!(blocks.iter().all(|m| a.selects(m) != b.selects(m)));
        assert!(blocks.iter().any(|m| a.selects(m)) && blocks.iter().any(|m| b.selects(m)));
    }

    #[test]
    fn time_range_keeps_overlapping_blocks() {
        let s = Selector::new(Vec::new(), Some(100), Some(200));
        assert!(s.selects(&meta(&[], 50, 100)));
        assert!(s.selects(&meta(&[], 200, 300)));
        assert!(!s.selects(&meta(&[], 0, 99)));
        assert!(!s.selects(&meta(&[], 201, 300)));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(Selector::parse_relabel("- action: hashmod\n  source_labels: [a]\n  target_label: s\n").is_err());
        assert!(Selector::parse_relabel("- action: keep\n  regex: '('\n").is_err());
        assert!(Selector::parse_relabel("- action: keep\n  bogus: 1\n").is_err());
        assert!(Selector::parse_relabel("- action: explode\n").is_err());
    }
}
