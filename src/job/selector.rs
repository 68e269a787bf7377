//! Selecting which blocks of a bucket this compactor owns, as Thanos does it, so several
//! instances can share one bucket: Prometheus relabel rules over a block's external labels
//! plus `__block_id` (`--selector.relabel-config`), and a time range (`--min-time`,
//! `--max-time`: blocks that overlap it).
//!
//! Owns: parsing the relabel YAML (a list of rules with Prometheus's field names and
//! defaults) and applying the actions `replace`, `keep`, `drop`, `hashmod`, `labelmap`,
//! `labeldrop`, `labelkeep`. Pure.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};
use crate::format::meta::BlockMeta;

/// The label Thanos adds to a block's external labels for relabelling.
pub const BLOCK_ID_LABEL: &str = "__block_id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<String>,
    #[serde(default)]
    action: Action,
}

/// One relabel rule, validated.
#[derive(Clone, Debug)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

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
        let raw: Vec<RawRule> =
            serde_yaml_ng::from_str(yaml).map_err(|e| Error::BadRequest(format!("relabel config: {e}")))?;
        raw.into_iter()
            .enumerate()
            .map(|(i, r)| {
                let pattern = r.regex.unwrap_or_else(|| "(.*)".into());
                let regex = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| Error::BadRequest(format!("relabel config rule {}: regex {pattern:?}: {e}", i + 1)))?;
                let target = r.target_label.unwrap_or_default();
                match r.action {
                    Action::HashMod if r.modulus.unwrap_or(0) == 0 => {
                        return Err(Error::BadRequest(format!(
                            "relabel config rule {}: hashmod needs a modulus above 0",
                            i + 1
                        )))
                    }
                    Action::HashMod | Action::Replace if target.is_empty() => {
                        return Err(Error::BadRequest(format!(
                            "relabel config rule {}: {:?} needs target_label",
                            i + 1,
                            r.action
                        )))
                    }
                    _ => {}
                }
                Ok(Rule {
                    source_labels: r.source_labels,
                    separator: r.separator.unwrap_or_else(|| ";".into()),
                    regex,
                    modulus: r.modulus.unwrap_or(0),
                    target_label: target,
                    replacement: r.replacement.unwrap_or_else(|| "$1".into()),
                    action: r.action,
                })
            })
            .collect()
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

/// Applies the rules; `None` when a rule drops the set.
pub fn relabel(rules: &[Rule], mut labels: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    for r in rules {
        let value = r
            .source_labels
            .iter()
            .map(|l| labels.get(l).map(String::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(&r.separator);
        match r.action {
            Action::Keep => {
                if !r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::Drop => {
                if r.regex.is_match(&value) {
                    return None;
                }
            }
            Action::HashMod => {
                let digest = Md5::digest(value.as_bytes());
                // Prometheus's sum64: the digest's last eight bytes, big-endian.
                let h = u64::from_be_bytes(digest[8..16].try_into().expect("8 bytes"));
                labels.insert(r.target_label.clone(), (h % r.modulus).to_string());
            }
            Action::Replace => {
                if let Some(c) = r.regex.captures(&value) {
                    let mut target = String::new();
                    c.expand(&r.target_label, &mut target);
                    let mut v = String::new();
                    c.expand(&r.replacement, &mut v);
                    if target.is_empty() {
                        continue;
                    }
                    if v.is_empty() {
                        labels.remove(&target);
                    } else {
                        labels.insert(target, v);
                    }
                }
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(k, v)| {
                        r.regex.captures(k).map(|c| {
                            let mut n = String::new();
                            c.expand(&r.replacement, &mut n);
                            (n, v.clone())
                        })
                    })
                    .collect();
                labels.extend(mapped);
            }
            Action::LabelDrop => labels.retain(|k, _| !r.regex.is_match(k)),
            Action::LabelKeep => labels.retain(|k, _| r.regex.is_match(k)),
        }
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
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
