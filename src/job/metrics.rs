//! The compactor's metrics, in Prometheus's text exposition format, named as Thanos names
//! them so existing dashboards and alerts keep working (`thanos_compact_*`).
//!
//! Owns: a small registry of counters and gauges with label sets, safe to update from
//! any thread, and its rendering. No dependency: a mutex over sorted maps is plenty for
//! the few dozen series a compactor exports.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

struct Family {
    help: &'static str,
    kind: Kind,
    /// Label pairs (sorted) → value.
    series: BTreeMap<Vec<(String, String)>, f64>,
}

/// Every metric strata exports.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// The metric names, with their help text and kind, declared once.
pub const DEFINITIONS: &[(&str, Kind, &str)] = &[
    ("thanos_compact_halted", Kind::Gauge, "Set to 1 if the compactor halted due to an unexpected error."),
    ("thanos_compact_iterations_total", Kind::Counter, "Total number of iterations that were executed successfully."),
    ("thanos_compact_group_compactions_total", Kind::Counter, "Total number of group compaction attempts that resulted in a new block."),
    ("thanos_compact_group_compaction_runs_started_total", Kind::Counter, "Total number of group compaction attempts."),
    ("thanos_compact_group_compaction_runs_completed_total", Kind::Counter, "Total number of group completed compaction runs."),
    ("thanos_compact_group_compactions_failures_total", Kind::Counter, "Total number of failed group compactions."),
    ("thanos_compact_group_vertical_compactions_total", Kind::Counter, "Total number of group compaction attempts that resulted in a new block based on overlapping blocks."),
    ("thanos_compact_downsample_total", Kind::Counter, "Total number of downsampling attempts."),
    ("thanos_compact_downsample_failures_total", Kind::Counter, "Total number of failed downsampling attempts."),
    ("thanos_compact_garbage_collected_blocks_total", Kind::Counter, "Total number of blocks marked for deletion by the compactor."),
    ("thanos_compact_blocks_cleaned_total", Kind::Counter, "Total number of blocks deleted in the compactor."),
    ("thanos_compact_block_cleanup_failures_total", Kind::Counter, "Failures encountered while deleting blocks in the compactor."),
    ("thanos_compact_blocks_marked_total", Kind::Counter, "Total number of blocks marked in the compactor."),
    ("thanos_compact_todo_compactions", Kind::Gauge, "The number of planned compactions."),
    ("thanos_compact_todo_compaction_blocks", Kind::Gauge, "The number of blocks planned to be compacted."),
    ("thanos_compact_todo_downsample_blocks", Kind::Gauge, "The number of blocks to be downsampled."),
    ("thanos_compact_todo_deletion_blocks", Kind::Gauge, "The number of blocks that have deletion mark."),
    ("thanos_compact_retries_total", Kind::Counter, "Total number of retries after retriable compactor error."),
    ("thanos_objstore_bucket_operations_total", Kind::Counter, "Total number of all attempted operations against a bucket."),
    ("thanos_objstore_bucket_operation_failures_total", Kind::Counter, "Total number of operations against a bucket that failed, but were not expected to fail in certain way from caller perspective."),
];

fn key(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut k: Vec<(String, String)> = labels.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    k.sort();
    k
}

impl Metrics {
    /// A registry with every metric of [`DEFINITIONS`] declared (unlabelled ones at 0,
    /// so they are visible before anything happens).
    pub fn new() -> Metrics {
        let m = Metrics::default();
        {
            let mut f = m.families.lock().expect("metrics lock");
            for &(name, kind, help) in DEFINITIONS {
                let mut series = BTreeMap::new();
                if !name.starts_with("thanos_compact_group")
                    && !name.starts_with("thanos_compact_blocks_marked")
                    && !name.starts_with("thanos_objstore")
                    && !name.starts_with("thanos_compact_downsample")
                {
                    series.insert(Vec::new(), 0.0);
                }
                f.insert(name, Family { help, kind, series });
            }
        }
        m
    }

    fn update(&self, name: &'static str, labels: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
        let mut fams = self.families.lock().expect("metrics lock");
        let fam = fams.entry(name).or_insert_with(|| Family { help: "", kind: Kind::Counter, series: BTreeMap::new() });
        f(fam.series.entry(key(labels)).or_insert(0.0));
    }

    pub fn inc(&self, name: &'static str, labels: &[(&str, &str)]) {
        self.add(name, labels, 1.0)
    }

    pub fn add(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        self.update(name, labels, |x| *x += v)
    }

    pub fn set(&self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        self.update(name, labels, |x| *x = v)
    }

    pub fn get(&self, name: &'static str, labels: &[(&str, &str)]) -> f64 {
        let fams = self.families.lock().expect("metrics lock");
        fams.get(name).and_then(|f| f.series.get(&key(labels))).copied().unwrap_or(0.0)
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let fams = self.families.lock().expect("metrics lock");
        let mut out = String::with_capacity(4096);
        for (name, fam) in fams.iter() {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {}", if fam.kind == Kind::Counter { "counter" } else { "gauge" });
            for (labels, v) in &fam.series {
                out.push_str(name);
                if !labels.is_empty() {
                    out.push('{');
                    for (i, (k, val)) in labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let escaped = val.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                        let _ = write!(out, "{k}=\"{escaped}\"");
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&crate::gofmt::format_g(*v));
                out.push('\n');
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::new();
        m.inc("thanos_compact_iterations_total", &[]);
        m.inc("thanos_compact_group_compactions_total", &[("group", "0@{a=\"b\"}")]);
        m.set("thanos_compact_halted", &[], 1.0);
        let t = m.render();
        assert!(
            t.contains("# TYPE thanos_compact_iterations_total counter\nthanos_compact_iterations_total 1\n"),
            "{t}"
        );
        assert!(t.contains(r#"thanos_compact_group_compactions_total{group="0@{a=\"b\"}"} 1"#), "{t}");
        assert!(t.contains("# TYPE thanos_compact_halted gauge\nthanos_compact_halted 1\n"));
        assert_eq!(m.get("thanos_compact_iterations_total", &[]), 1.0);
        // Every declared family is present, with HELP and TYPE.
        for (name, _, _) in DEFINITIONS {
            assert!(t.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
