//! Index write and full index read, the first and last step of every compaction.
//!
//! Data: a seeded synthetic block of 100,000 series with 8 labels each, shaped like a
//! Kubernetes scrape: 1,000 pods (each with its namespace, job, service, node, instance
//! and container) times 100 metric names, two chunk metas per series. The index is
//! built in memory; the writer writes to `io::sink()`. Nothing touches disk.
//!
//! Run: `cargo bench --bench index`; `-- --warm-up-time 1 --measurement-time 5` for a
//! quick pass. Throughput is in series. Under `cargo test` (criterion's test mode, one
//! iteration each) the block has 2,000 series so the run stays short.

use std::hint::black_box;
use std::io;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::format::chunks::{ChunkMeta, ChunkRef};
use strata::format::index::{IndexReader, IndexWriter};
use strata::gen::Rng;
use strata::labels::Labels;

const PODS: usize = 1_000;
const METRICS: usize = 100;
const TEST_MODE_PODS: usize = 20;
const T0: i64 = 1_700_000_000_000;
const TWO_HOURS_MS: i64 = 2 * 3600 * 1000;

/// Uniform in `[0, n)` from the crate's seeded generator, so the data is the same on
/// every run.
fn below(rng: &mut Rng, n: usize) -> usize {
    rng.below(n as u64) as usize
}

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[below(rng, from.len())]
}

/// `n` characters of Kubernetes's pod-name alphabet.
fn suffix(rng: &mut Rng, n: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..n).map(|_| ALPHABET[below(rng, ALPHABET.len())] as char).collect()
}

const NAMESPACES: [&str; 20] = [
    "payments",
    "checkout",
    "search",
    "catalog",
    "identity",
    "billing",
    "ledger",
    "notifications",
    "ingest",
    "analytics",
    "monitoring",
    "logging",
    "kube-system",
    "ingress",
    "cart",
    "shipping",
    "inventory",
    "pricing",
    "reviews",
    "recommendations",
];
const JOBS: [&str; 25] = [
    "api",
    "web",
    "worker",
    "scheduler",
    "gateway",
    "auth",
    "db-proxy",
    "cache",
    "queue",
    "indexer",
    "exporter",
    "collector",
    "frontend",
    "backend",
    "cron",
    "stream",
    "batch",
    "admin",
    "grpc",
    "graphql",
    "uploader",
    "renderer",
    "mailer",
    "sync",
    "router",
];
const CONTAINERS: [&str; 4] = ["app", "istio-proxy", "sidecar", "metrics"];
const METRIC_PREFIXES: [&str; 10] = [
    "http_server",
    "grpc_server",
    "process",
    "go_memstats",
    "container_cpu",
    "container_memory",
    "node_network",
    "db_client",
    "cache",
    "queue",
];
const METRIC_SUFFIXES: [&str; 10] = [
    "requests_total",
    "errors_total",
    "duration_seconds_sum",
    "duration_seconds_count",
    "bytes_total",
    "in_flight",
    "open_fds",
    "usage_seconds_total",
    "working_set_bytes",
    "last_gc_time_seconds",
];

/// One series of the block: its labels and chunk metas.
type Series = (Labels, Vec<ChunkMeta>);

/// The symbols and the series of the synthetic block, both sorted.
fn block(pods: usize) -> (Vec<Vec<u8>>, Vec<Series>) {
    let mut rng = Rng::new(0x1DE7);
    let metrics: Vec<String> = METRIC_PREFIXES
        .iter()
        .flat_map(|p| METRIC_SUFFIXES.iter().map(move |s| format!("{p}_{s}")))
        .take(METRICS)
        .collect();
    let nodes: Vec<String> = (0..60).map(|i| format!("ip-10-0-{}-{}.ec2.internal", i / 8, 10 + i * 3)).collect();
    let mut series = Vec::with_capacity(pods * METRICS);
    for p in 0..pods {
        let namespace = pick(&mut rng, &NAMESPACES);
        let job = pick(&mut rng, &JOBS);
        let pod = format!("{job}-{}-{}", suffix(&mut rng, 10), suffix(&mut rng, 5));
        let instance = format!(
            "10.{}.{}.{}:{}",
            1 + p / 250,
            below(&mut rng, 256),
            below(&mut rng, 256),
            [8080, 9090, 9100][below(&mut rng, 3)]
        );
        let node = &nodes[below(&mut rng, nodes.len())];
        let container = pick(&mut rng, &CONTAINERS);
        for m in &metrics {
            series.push(Labels::from_pairs([
                ("__name__", m.as_str()),
                ("container", container),
                ("instance", &instance),
                ("job", job),
                ("namespace", namespace),
                ("node", node),
                ("pod", &pod),
                ("service", job),
            ]));
        }
    }
    series.sort();
    series.dedup();
    let mut symbols: Vec<Vec<u8>> =
        series.iter().flat_map(|l| l.iter().flat_map(|x| [x.name.clone(), x.value.clone()])).collect();
    symbols.sort();
    symbols.dedup();
    // Two chunks per series, laid out in series order as a compactor writes them.
    let mut off = 8u32;
    let with_chunks = series
        .into_iter()
        .map(|l| {
            let chunks = (0..2)
                .map(|k| {
                    let min_time = T0 + k * TWO_HOURS_MS / 2 + below(&mut rng, 1000) as i64;
                    let c = ChunkMeta {
                        min_time,
                        max_time: min_time + TWO_HOURS_MS / 2 - 15_000,
                        chunk_ref: ChunkRef::new(0, off),
                    };
                    off += 150 + below(&mut rng, 100) as u32;
                    c
                })
                .collect();
            (l, chunks)
        })
        .collect();
    (symbols, with_chunks)
}

fn write_index<W: io::Write>(w: W, symbols: &[Vec<u8>], series: &[Series]) -> W {
    let mut iw = IndexWriter::new(w).expect("header");
    iw.add_symbols(symbols).expect("sorted symbols");
    for (l, c) in series {
        iw.add_series(l, c).expect("sorted series");
    }
    iw.finish().expect("finish")
}

/// Criterion's test mode (no `--bench` argument): `cargo test --all-targets`.
fn test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

fn bench_index(c: &mut Criterion) {
    let pods = if test_mode() { TEST_MODE_PODS } else { PODS };
    let (symbols, series) = block(pods);
    let n = series.len() as u64;
    let bytes = write_index(Vec::new(), &symbols, &series);
    eprintln!("index: {n} series, {} symbols, {} bytes", symbols.len(), bytes.len());

    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n));
    g.bench_function("write", |b| b.iter(|| write_index(io::sink(), black_box(&symbols), black_box(&series))));
    g.bench_function("read", |b| {
        let mut labels = Labels::new();
        let mut chunks = Vec::new();
        b.iter(|| {
            let r = IndexReader::new(black_box(&bytes)).expect("valid index");
            let mut acc = 0u64;
            for e in r.postings_entries() {
                for id in r.postings_at(e.offset).expect("valid postings") {
                    acc = acc.wrapping_add(id as u64);
                }
            }
            for id in r.all_postings().expect("valid postings") {
                r.series(id, &mut labels, &mut chunks).expect("valid series");
                acc = acc.wrapping_add(labels.len() as u64 + chunks.len() as u64);
            }
            black_box(acc)
        })
    });
    g.finish();
}

criterion_group!(benches, bench_index);
criterion_main!(benches);
