//! `strata gen`: synthetic blocks, written directly and fast, for benchmarks at scale.
//!
//! Owns: deterministic (seeded) generation of series, values and native histograms,
//! cut into blocks of a fixed duration with churn between blocks and optional HA
//! replicas (same series, scrapes shifted by an offset).
//! Must not: be used as a test oracle for the format (promtool-made blocks are that).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use ulid::Ulid;

use crate::block::{BlockWriter, ChunkToWrite};
use crate::error::{Error, Result};
use crate::format::histogram::{CounterResetHint, Histogram, Span};
use crate::format::meta::{BlockMeta, ThanosMeta};
use crate::format::sample::{encode, EncodedChunk, Value};
use crate::labels::Labels;

/// Value shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Counter,
    Gauge,
    /// Alternating counters and gauges.
    Mixed,
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenOptions {
    pub series: usize,
    /// First sample time (ms); blocks are aligned to `block_ms` from here.
    pub start_ms: i64,
    pub duration_ms: i64,
    pub block_ms: i64,
    pub scrape_ms: i64,
    /// Fraction of series replaced by new ones in each following block (0..1).
    pub churn: f64,
    /// Copies of every block with the same series; replica r's scrapes are shifted by
    /// `r * replica_offset_ms`.
    pub replicas: usize,
    pub replica_offset_ms: i64,
    /// External label that tells replicas apart (`<name>="r<r>"`); none: replicas are
    /// plain overlapping blocks, as one Prometheus sees them.
    pub replica_label: Option<String>,
    pub shape: Shape,
    /// Every n-th series is a native histogram (0: none).
    pub histogram_every: usize,
    /// External labels (written in a thanos section when non-empty or with replicas).
    pub labels: BTreeMap<String, String>,
    pub seed: u64,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            series: 1000,
            start_ms: 1_700_006_400_000,
            duration_ms: 2 * 3_600_000,
            block_ms: 2 * 3_600_000,
            scrape_ms: 15_000,
            churn: 0.0,
            replicas: 1,
            replica_offset_ms: 1000,
            replica_label: None,
            shape: Shape::Mixed,
            histogram_every: 0,
            labels: BTreeMap::new(),
            seed: 1,
        }
    }
}

/// A small, fast deterministic generator (SplitMix64), shared by the generator, the
/// benches and the tests.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const METRICS: [&str; 12] = [
    "http_requests_total",
    "http_request_duration_seconds",
    "node_cpu_seconds_total",
    "node_memory_free_bytes",
    "process_resident_memory_bytes",
    "go_goroutines",
    "up",
    "rpc_errors_total",
    "queue_depth",
    "disk_io_time_seconds_total",
    "net_receive_bytes_total",
    "temperature_celsius",
];

fn series_labels(id: usize) -> Labels {
    let metric = METRICS[id % METRICS.len()];
    let host = id / METRICS.len();
    Labels::from_pairs([
        ("__name__", metric.to_string()),
        ("instance", format!("host-{host:05}:9100")),
        ("job", format!("job-{}", host % 7)),
        ("region", ["eu-west", "us-east", "ap-south"][host % 3].to_string()),
        ("series_id", id.to_string()),
    ])
}

fn is_counter(opts: &GenOptions, id: usize) -> bool {
    match opts.shape {
        Shape::Counter => true,
        Shape::Gauge => false,
        Shape::Mixed => METRICS[id % METRICS.len()].ends_with("_total"),
    }
}

/// Samples of series `id` in `[from, to)`, scrape times shifted by `offset`.
fn samples(opts: &GenOptions, id: usize, from: i64, to: i64, offset: i64) -> Vec<(i64, Value)> {
    // The value at a time depends only on the series and the time, so replicas agree.
    let mut out = Vec::with_capacity(((to - from) / opts.scrape_ms.max(1)) as usize + 1);
    let first = from + (opts.scrape_ms - (from - opts.start_ms).rem_euclid(opts.scrape_ms)) % opts.scrape_ms + offset;
    let hist = opts.histogram_every > 0 && id % opts.histogram_every == 0;
    let counter = is_counter(opts, id);
    let mut t = first;
    while t < to {
        let step = ((t - offset - opts.start_ms) / opts.scrape_ms) as u64;
        let mut r =
            Rng::new(opts.seed ^ (id as u64).wrapping_mul(0x1000_0000_01B3) ^ step.wrapping_mul(0xA24B_AED4_963E_E407));
        let v = if hist {
            Value::Histogram(Box::new(histogram_at(step, &mut r)))
        } else if counter {
            // A counter growing at a per-series rate, read at the exact scrape time (so
            // replicas scraping a second apart see different values), with integer
            // increments and a reset every ~8 hours.
            let secs = (t - opts.start_ms).rem_euclid(8 * 3_600_000) / 1000;
            let rate = 1 + (id % 10) as i64;
            Value::Float((secs * rate + secs / 7 * (id as i64 % 3)) as f64)
        } else {
            // A gauge: a slow wave plus noise drawn per scrape time.
            let mut n = Rng::new(opts.seed ^ (id as u64).rotate_left(17) ^ t as u64);
            let base = (id % 100) as f64 * 10.0;
            Value::Float(base + ((t / 1000) as f64 * 0.001).sin() * 50.0 + (n.below(1000) as f64) / 100.0)
        };
        out.push((t, v));
        t += opts.scrape_ms;
    }
    out
}

fn histogram_at(step: u64, r: &mut Rng) -> Histogram {
    // A counter histogram with four positive buckets growing over time.
    let epoch = step % 2000;
    let base = epoch as i64;
    let counts = [base * 2 + r.below(3) as i64, base * 5, base * 3, base];
    let mut deltas = Vec::with_capacity(4);
    let mut prev = 0;
    for &c in &counts {
        deltas.push(c - prev);
        prev = c;
    }
    let count: i64 = counts.iter().sum::<i64>() + base;
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 1,
        zero_threshold: 2f64.powi(-128),
        zero_count: base as u64,
        count: count as u64,
        sum: count as f64 * 0.25,
        positive_spans: vec![Span { offset: -2, length: 4 }],
        negative_spans: Vec::new(),
        positive_buckets: deltas,
        negative_buckets: Vec::new(),
        custom_values: Vec::new(),
    }
}

/// Writes the blocks into `dir`; returns their paths.
pub fn generate(dir: &Path, opts: &GenOptions) -> Result<Vec<PathBuf>> {
    if opts.series == 0 || opts.block_ms <= 0 || opts.scrape_ms <= 0 || opts.duration_ms <= 0 {
        return Err(Error::BadRequest("gen: series, durations and the scrape interval must be positive".into()));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut paths = Vec::new();
    let end = opts.start_ms + opts.duration_ms;
    let mut from = opts.start_ms;
    let mut block_no = 0usize;
    while from < end {
        let to = (from + opts.block_ms).min(end);
        let shift = (opts.series as f64 * opts.churn * block_no as f64) as usize;
        let ids: Vec<usize> = (shift..shift + opts.series).collect();
        let mut sorted: Vec<(Labels, usize)> = ids.iter().map(|&i| (series_labels(i), i)).collect();
        sorted.sort();
        let mut symbols: Vec<Vec<u8>> =
            sorted.iter().flat_map(|(l, _)| l.iter().flat_map(|x| [x.name.clone(), x.value.clone()])).collect();
        symbols.sort_unstable();
        symbols.dedup();
        for r in 0..opts.replicas.max(1) {
            let offset = r as i64 * opts.replica_offset_ms;
            let ulid = Ulid::new();
            let mut w = BlockWriter::new(dir, ulid, &symbols)?;
            let mut max_t = from;
            for batch in sorted.chunks(4096) {
                let encoded: Vec<std::result::Result<(Vec<EncodedChunk>, i64), String>> = batch
                    .par_iter()
                    .map(|(_, id)| {
                        let s = samples(opts, *id, from, to, offset);
                        let last = s.last().map(|x| x.0).unwrap_or(from);
                        encode(&s, 120).map(|c| (c, last)).map_err(|e| e.to_string())
                    })
                    .collect();
                for ((labels, _), enc) in batch.iter().zip(encoded) {
                    let (chunks, last) = enc.map_err(Error::BadRequest)?;
                    max_t = max_t.max(last);
                    let cw: Vec<ChunkToWrite<'_>> = chunks
                        .iter()
                        .map(|c| ChunkToWrite {
                            encoding: c.encoding as u8,
                            data: &c.data,
                            min_time: c.min_time,
                            max_time: c.max_time,
                            record: None,
                        })
                        .collect();
                    w.add_series(labels, &cw)?;
                }
            }
            let mut meta = BlockMeta::new(ulid, from, max_t.max(to - 1) + 1);
            meta.max_time = to.max(max_t + 1);
            let mut labels = opts.labels.clone();
            if let Some(name) = &opts.replica_label {
                labels.insert(name.clone(), format!("r{r}"));
            }
            if !labels.is_empty() {
                meta.thanos = Some(ThanosMeta { labels, source: "sidecar".into(), ..Default::default() });
            }
            let (p, _) = w.finish(meta, Some(&Default::default()))?;
            paths.push(p);
        }
        from = to;
        block_no += 1;
    }
    Ok(paths)
}
