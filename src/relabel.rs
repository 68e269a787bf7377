//! Prometheus relabel rules: parsing a `relabel_config` YAML list and applying it to a
//! label set. One implementation, used for the blocks a compactor owns
//! (`--selector.relabel-config`, over external labels) and for series labels
//! (`strata rewrite --rewrite.to-relabel-config`).
//!
//! Owns: the rule fields with Prometheus's names and defaults, the actions `replace`,
//! `keep`, `drop`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, and the JSON form
//! Thanos records in `thanos.rewrites`. Pure.

use std::collections::BTreeMap;

use md5::{Digest, Md5};
use regex::Regex;
use serde::Deserialize;

use crate::error::{Error, Result};

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

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
        }
    }
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
    /// The regex as written (without the anchors added for matching).
    pattern: String,
    regex: Regex,
    modulus: u64,
    target_label: String,
    replacement: String,
    action: Action,
}

impl Rule {
    /// The rule as Prometheus's `relabel.Config` marshals to JSON (its `json` tags), the
    /// form Thanos records in `thanos.rewrites[].relabels_applied`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        if !self.source_labels.is_empty() {
            m.insert("sourceLabels".into(), self.source_labels.clone().into());
        }
        m.insert("separator".into(), self.separator.clone().into());
        m.insert("regex".into(), self.pattern.clone().into());
        if self.modulus != 0 {
            m.insert("modulus".into(), self.modulus.into());
        }
        if !self.target_label.is_empty() {
            m.insert("targetLabel".into(), self.target_label.clone().into());
        }
        m.insert("replacement".into(), self.replacement.clone().into());
        m.insert("action".into(), self.action.name().into());
        serde_json::Value::Object(m)
    }
}

/// Parses relabel rules (a YAML list with Prometheus's `relabel_config` fields). An error
/// names the rule (1-based) and what is wrong with it.
pub fn parse_rules(yaml: &str) -> Result<Vec<Rule>> {
    let entries: Vec<serde_yaml_ng::Value> = match serde_yaml_ng::from_str::<Option<Vec<serde_yaml_ng::Value>>>(yaml) {
        Ok(v) => v.unwrap_or_default(),
        Err(e) => return Err(Error::BadRequest(format!("relabel config: want a YAML list of rules: {e}"))),
    };
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let n = i + 1;
            let r: RawRule = serde_yaml_ng::from_value(entry)
                .map_err(|e| Error::BadRequest(format!("relabel config rule {n}: {e}")))?;
            let pattern = r.regex.unwrap_or_else(|| "(.*)".into());
            let regex = Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|e| Error::BadRequest(format!("relabel config rule {n}: regex {pattern:?}: {e}")))?;
            let target = r.target_label.unwrap_or_default();
            match r.action {
                Action::HashMod if r.modulus.unwrap_or(0) == 0 => {
                    return Err(Error::BadRequest(format!("relabel config rule {n}: hashmod needs a modulus above 0")))
                }
                Action::HashMod | Action::Replace if target.is_empty() => {
                    return Err(Error::BadRequest(format!(
                        "relabel config rule {n}: {} needs target_label",
                        r.action.name()
                    )))
                }
                _ => {}
            }
            Ok(Rule {
                source_labels: r.source_labels,
                separator: r.separator.unwrap_or_else(|| ";".into()),
                pattern,
                regex,
                modulus: r.modulus.unwrap_or(0),
                target_label: target,
                replacement: r.replacement.unwrap_or_else(|| "$1".into()),
                action: r.action,
            })
        })
        .collect()
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

    #[test]
    fn hashmod_like_prometheus() {
        // Prometheus's sum64 over the md5 digest keeps its last 8 bytes.
        let rules = parse_rules("- action: hashmod\n  source_labels: [cluster]\n  modulus: 2\n  target_label: shard\n")
            .unwrap();
        let out = relabel(&rules, [("cluster".to_string(), "eu1".to_string())].into()).unwrap();
        let d = Md5::digest(b"eu1");
        let want = u64::from_be_bytes(d[8..16].try_into().unwrap()) % 2;
        assert_eq!(out["shard"], want.to_string());
    }

    #[test]
    fn labeldrop_and_replace() {
        let rules = parse_rules(
            "- action: labeldrop\n  regex: instance\n- source_labels: [job]\n  regex: (.*)-old\n  target_label: job\n  replacement: $1\n",
        )
        .unwrap();
        let l: BTreeMap<String, String> =
            [("job", "api-old"), ("instance", "a"), ("__name__", "up")].map(|(a, b)| (a.into(), b.into())).into();
        let out = relabel(&rules, l).unwrap();
        assert_eq!(
            out.into_iter().collect::<Vec<_>>(),
            vec![("__name__".into(), "up".into()), ("job".into(), "api".into())]
        );
    }

    #[test]
    fn bad_configs_are_refused_naming_the_rule() {
        assert!(parse_rules("- action: hashmod\n  source_labels: [a]\n  target_label: s\n").is_err());
        assert!(parse_rules("- action: keep\n  regex: '('\n").is_err());
        assert!(parse_rules("- action: keep\n  bogus: 1\n").is_err());
        let e = parse_rules("- action: keep\n  regex: a\n- action: explode\n").unwrap_err().to_string();
        assert!(e.contains("rule 2") && e.contains("explode"), "{e}");
    }

    #[test]
    fn json_form_uses_prometheus_json_names() {
        let r = parse_rules("- action: labeldrop\n  regex: instance\n").unwrap();
        let j = r[0].to_json();
        assert_eq!(j["action"], "labeldrop");
        assert_eq!(j["regex"], "instance");
        assert_eq!(j["separator"], ";");
    }
}
