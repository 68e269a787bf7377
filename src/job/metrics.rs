//! The compactor's metrics: one typed struct, every counter, gauge and histogram declared
//! once with its help text (prometheus `tsdb/compact.go` `newCompactorMetrics`), named as
//! Thanos names them so existing dashboards and alerts keep working (`thanos_compact_*`),
//! plus strata's own live-progress gauges and phase-duration histograms (`strata_*`).
//!
//! Owns: the [`Metrics`] struct and its registration into a `prometheus-client`
//! [`Registry`]; the exposition (Prometheus text format 0.0.4) is the registry's.
//! Must not: compute anything; the job sets the values.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// `{group="<resolution>@<labels>"}`, as Thanos labels per-group series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub group: String,
}

/// `thanos_compact_blocks_marked_total{marker, reason}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MarkLabels {
    pub marker: String,
    pub reason: String,
}

/// `thanos_objstore_bucket_operations_total{operation}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabel {
    pub operation: String,
}

/// `strata_compact_phase_duration_seconds{phase}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    pub phase: String,
}

/// The phases whose durations are observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Sync,
    Download,
    Merge,
    Upload,
    Compaction,
    Downsample,
    Retention,
    Cleanup,
    Iteration,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Sync => "sync",
            Phase::Download => "download",
            Phase::Merge => "merge",
            Phase::Upload => "upload",
            Phase::Compaction => "compaction",
            Phase::Downsample => "downsample",
            Phase::Retention => "retention",
            Phase::Cleanup => "cleanup",
            Phase::Iteration => "iteration",
        }
    }
}

/// A float gauge (bytes, ratios).
pub type FGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

fn phase_histogram() -> Histogram {
    // 10 ms .. ~11 h.
    Histogram::new(exponential_buckets(0.01, 4.0, 13))
}

/// Every metric of the compactor.
pub struct Metrics {
    pub halted: Gauge,
    pub iterations: Counter,
    pub group_compactions: Family<GroupLabel, Counter>,
    pub group_compaction_runs_started: Family<GroupLabel, Counter>,
    pub group_compaction_runs_completed: Family<GroupLabel, Counter>,
    pub group_compactions_failures: Family<GroupLabel, Counter>,
    pub group_vertical_compactions: Family<GroupLabel, Counter>,
    pub downsamples: Family<GroupLabel, Counter>,
    pub downsample_failures: Family<GroupLabel, Counter>,
    pub garbage_collected_blocks: Counter,
    pub blocks_cleaned: Counter,
    pub block_cleanup_failures: Counter,
    pub blocks_marked: Family<MarkLabels, Counter>,
    pub todo_compactions: Family<GroupLabel, Gauge>,
    pub todo_compaction_blocks: Family<GroupLabel, Gauge>,
    pub todo_downsample_blocks: Family<GroupLabel, Gauge>,
    pub todo_deletion_blocks: Family<GroupLabel, Gauge>,
    pub retries: Counter,
    pub bucket_operations: Family<OperationLabel, Counter>,
    pub bucket_operation_failures: Family<OperationLabel, Counter>,
    /// Live progress of the running plans, per group: bytes downloaded and series merged,
    /// against their totals (0 when no plan of the group runs).
    pub progress_bytes_done: Family<GroupLabel, Gauge>,
    pub progress_bytes_total: Family<GroupLabel, Gauge>,
    pub progress_series_done: Family<GroupLabel, Gauge>,
    pub progress_series_total: Family<GroupLabel, Gauge>,
    pub plans_running: Gauge,
    /// Plans skipped because --data-dir had too little free space.
    pub plans_skipped_disk: Counter,
    pub phase_duration: Family<PhaseLabel, Histogram, fn() -> Histogram>,
    pub last_iteration_success: FGauge,
    /// The bucket operation counts already added (the bucket counts them itself).
    seen_ops: Mutex<Vec<(String, u64, u64)>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Every metric at zero, not registered anywhere yet.
    pub fn new() -> Metrics {
        Metrics {
            halted: Gauge::default(),
            iterations: Counter::default(),
            group_compactions: Family::default(),
            group_compaction_runs_started: Family::default(),
            group_compaction_runs_completed: Family::default(),
            group_compactions_failures: Family::default(),
            group_vertical_compactions: Family::default(),
            downsamples: Family::default(),
            downsample_failures: Family::default(),
            garbage_collected_blocks: Counter::default(),
            blocks_cleaned: Counter::default(),
            block_cleanup_failures: Counter::default(),
            blocks_marked: Family::default(),
            todo_compactions: Family::default(),
            todo_compaction_blocks: Family::default(),
            todo_downsample_blocks: Family::default(),
            todo_deletion_blocks: Family::default(),
            retries: Counter::default(),
            bucket_operations: Family::default(),
            bucket_operation_failures: Family::default(),
            progress_bytes_done: Family::default(),
            progress_bytes_total: Family::default(),
            progress_series_done: Family::default(),
            progress_series_total: Family::default(),
            plans_running: Gauge::default(),
            plans_skipped_disk: Counter::default(),
            phase_duration: Family::new_with_constructor(phase_histogram),
            last_iteration_success: FGauge::default(),
            seen_ops: Mutex::new(Vec::new()),
        }
    }

    /// Registers every metric (counters get the `_total` suffix from the registry), in
    /// the order /metrics lists them.
    pub fn register(&self, r: &mut Registry) {
        self.register_compactions(r);
        self.register_downsampling_and_marks(r);
        self.register_todo(r);
        self.register_objstore(r);
        self.register_progress(r);
    }

    /// The halted flag, the iterations and the compaction runs of each group.
    fn register_compactions(&self, r: &mut Registry) {
        r.register(
            "thanos_compact_halted",
            "Set to 1 if the compactor halted due to an unexpected error",
            self.halted.clone(),
        );
        r.register(
            "thanos_compact_iterations",
            "Total number of iterations that were executed successfully",
            self.iterations.clone(),
        );
        r.register(
            "thanos_compact_group_compactions",
            "Total number of group compaction attempts that resulted in a new block",
            self.group_compactions.clone(),
        );
        r.register(
            "thanos_compact_group_compaction_runs_started",
            "Total number of group compaction attempts",
            self.group_compaction_runs_started.clone(),
        );
        r.register("thanos_compact_group_compaction_runs_completed", "Total number of group completed compaction runs. This also includes compactor group runs that resulted with no compaction", self.group_compaction_runs_completed.clone());
        r.register(
            "thanos_compact_group_compactions_failures",
            "Total number of failed group compactions",
            self.group_compactions_failures.clone(),
        );
        r.register(
            "thanos_compact_group_vertical_compactions",
            "Total number of group compaction attempts that resulted in a new block based on overlapping blocks",
            self.group_vertical_compactions.clone(),
        );
    }

    /// Downsampling, garbage collection, deletions and markers.
    fn register_downsampling_and_marks(&self, r: &mut Registry) {
        r.register("thanos_compact_downsample", "Total number of downsampling attempts", self.downsamples.clone());
        r.register(
            "thanos_compact_downsample_failures",
            "Total number of failed downsampling attempts",
            self.downsample_failures.clone(),
        );
        r.register(
            "thanos_compact_garbage_collected_blocks",
            "Total number of blocks marked for deletion by the compactor",
            self.garbage_collected_blocks.clone(),
        );
        r.register(
            "thanos_compact_blocks_cleaned",
            "Total number of blocks deleted in the compactor",
            self.blocks_cleaned.clone(),
        );
        r.register(
            "thanos_compact_block_cleanup_failures",
            "Failures encountered while deleting blocks in the compactor",
            self.block_cleanup_failures.clone(),
        );
        r.register(
            "thanos_compact_blocks_marked",
            "Total number of blocks marked in the compactor",
            self.blocks_marked.clone(),
        );
    }

    /// The backlog gauges and retries.
    fn register_todo(&self, r: &mut Registry) {
        r.register(
            "thanos_compact_todo_compactions",
            "The number of planned compactions",
            self.todo_compactions.clone(),
        );
        r.register(
            "thanos_compact_todo_compaction_blocks",
            "The number of blocks planned to be compacted",
            self.todo_compaction_blocks.clone(),
        );
        r.register(
            "thanos_compact_todo_downsample_blocks",
            "The number of blocks to be downsampled",
            self.todo_downsample_blocks.clone(),
        );
        r.register(
            "thanos_compact_todo_deletion_blocks",
            "The number of blocks that have crossed their retention period",
            self.todo_deletion_blocks.clone(),
        );
        r.register(
            "thanos_compact_retries",
            "Total number of retries after retriable compactor error",
            self.retries.clone(),
        );
    }

    /// Thanos's bucket operation counters.
    fn register_objstore(&self, r: &mut Registry) {
        r.register(
            "thanos_objstore_bucket_operations",
            "Total number of all attempted operations against a bucket",
            self.bucket_operations.clone(),
        );
        r.register("thanos_objstore_bucket_operation_failures", "Total number of operations against a bucket that failed, but were not expected to fail in certain way from caller perspective", self.bucket_operation_failures.clone());
    }

    /// strata's own: plan progress, disk-space skips, phase durations, last success.
    fn register_progress(&self, r: &mut Registry) {
        r.register(
            "strata_compact_progress_bytes_done",
            "Bytes of source blocks downloaded by the running plans of the group",
            self.progress_bytes_done.clone(),
        );
        r.register(
            "strata_compact_progress_bytes",
            "Bytes of source blocks of the running plans of the group",
            self.progress_bytes_total.clone(),
        );
        r.register(
            "strata_compact_progress_series_done",
            "Series merged so far by the running plans of the group",
            self.progress_series_done.clone(),
        );
        r.register(
            "strata_compact_progress_series",
            "Series of the source blocks of the running plans of the group",
            self.progress_series_total.clone(),
        );
        r.register("strata_compact_plans_running", "Plans (compactions) running now", self.plans_running.clone());
        r.register(
            "strata_compact_plans_skipped_disk_space",
            "Plans skipped because --data-dir had too little free space",
            self.plans_skipped_disk.clone(),
        );
        r.register("strata_compact_phase_duration_seconds", "Duration of each phase of the job (sync, download, merge, upload, compaction, downsample, retention, cleanup, iteration)", self.phase_duration.clone());
        r.register(
            "strata_compact_last_iteration_success_timestamp_seconds",
            "Unix time the last iteration ended without error",
            self.last_iteration_success.clone(),
        );
    }

    pub fn group(group: &str) -> GroupLabel {
        GroupLabel { group: group.to_string() }
    }

    /// Counts a marker written.
    pub fn marked(&self, marker: &str, reason: &str) {
        self.blocks_marked.get_or_create(&MarkLabels { marker: marker.into(), reason: reason.into() }).inc();
    }

    pub fn observe(&self, phase: Phase, took: Duration) {
        self.phase_duration.get_or_create(&PhaseLabel { phase: phase.name().into() }).observe(took.as_secs_f64());
    }

    /// Brings `thanos_objstore_bucket_operations_total` up to the bucket's own counts.
    pub fn observe_bucket(&self, stats: &crate::bucket::BucketStats) {
        let mut seen = self.seen_ops.lock().expect("metrics lock");
        for (op, ops, failures) in &stats.operations {
            let i = match seen.iter().position(|(o, _, _)| o == op) {
                Some(i) => i,
                None => {
                    seen.push((op.to_string(), 0, 0));
                    seen.len() - 1
                }
            };
            let l = OperationLabel { operation: op.to_string() };
            self.bucket_operations.get_or_create(&l).inc_by(ops.saturating_sub(seen[i].1));
            self.bucket_operation_failures.get_or_create(&l).inc_by(failures.saturating_sub(seen[i].2));
            seen[i].1 = seen[i].1.max(*ops);
            seen[i].2 = seen[i].2.max(*failures);
        }
    }
}

/// The Prometheus text format (version 0.0.4) of a registry.
pub fn render(r: &Registry) -> String {
    let mut out = String::with_capacity(8192);
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, r);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_thanos_names_in_the_text_format() {
        let m = Metrics::new();
        let mut r = Registry::default();
        m.register(&mut r);
        m.iterations.inc();
        m.group_compactions.get_or_create(&Metrics::group("0@{a=\"b\"}")).inc();
        m.halted.set(1);
        m.observe(Phase::Merge, Duration::from_millis(30));
        m.todo_compactions.get_or_create(&Metrics::group("0@{}")).set(2);
        m.todo_deletion_blocks.get_or_create(&Metrics::group("0@{}")).set(0);
        let t = render(&r);
        assert!(t.contains("thanos_compact_todo_compactions{group=\"0@{}\"} 2"), "{t}");
        assert!(
            t.contains("# TYPE thanos_compact_iterations_total counter\nthanos_compact_iterations_total 1\n"),
            "{t}"
        );
        assert!(t.contains(r#"thanos_compact_group_compactions_total{group="0@{a=\"b\"}"} 1"#), "{t}");
        assert!(t.contains("# TYPE thanos_compact_halted gauge\nthanos_compact_halted 1\n"), "{t}");
        assert!(t.contains("strata_compact_phase_duration_seconds_bucket{phase=\"merge\",le=\"0.04\"} 1"), "{t}");
        for name in [
            "thanos_compact_garbage_collected_blocks_total",
            "thanos_compact_blocks_cleaned_total",
            "thanos_compact_retries_total",
            "thanos_compact_todo_compactions",
            "thanos_compact_todo_deletion_blocks",
        ] {
            assert!(t.contains(&format!("# TYPE {name} ")), "{name}\n{t}");
        }
    }

    #[test]
    fn bucket_operation_counts_are_added_once() {
        let m = Metrics::new();
        let mut st = crate::bucket::BucketStats { operations: vec![("get", 3, 1)], ..Default::default() };
        m.observe_bucket(&st);
        st.operations = vec![("get", 5, 1)];
        m.observe_bucket(&st);
        let l = OperationLabel { operation: "get".into() };
        assert_eq!(m.bucket_operations.get_or_create(&l).get(), 5);
        assert_eq!(m.bucket_operation_failures.get_or_create(&l).get(), 1);
    }
}
