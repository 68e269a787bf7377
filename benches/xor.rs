//! XOR chunk decode and encode, the inner loop of every compaction and downsampling.
//!
//! Data: seeded synthetic chunks of 120 samples (30 minutes at a 15 s scrape, the size
//! Prometheus cuts at), in three shapes that bracket real data: a counter with a few
//! milliseconds of scrape jitter, a gauge of random floats (worst case for the value
//! XOR), and a constant series (best case). Nothing touches disk.
//!
//! Run: `cargo bench --bench xor`; `-- --warm-up-time 1 --measurement-time 5` for a
//! quick pass. Throughput is in samples.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::format::xor::{self, XorEncoder, XorIter};
use strata::gen::Rng;

/// Samples per chunk, as Prometheus cuts them at a 15 s scrape interval.
const SAMPLES: usize = 120;
/// Distinct chunks per shape, so branch predictors see varied input.
const CHUNKS: usize = 64;
const SCRAPE_MS: i64 = 15_000;
const T0: i64 = 1_700_000_000_000;

/// Uniform in `[lo, hi)` from the crate's seeded generator, so the data is the same on
/// every run.
fn range(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + rng.below((hi - lo) as u64) as i64
}

/// Scrape timestamps at 15 s with up to ±`jitter_ms` of jitter.
fn timestamps(rng: &mut Rng, jitter_ms: i64) -> Vec<i64> {
    (0..SAMPLES as i64)
        .map(|i| T0 + i * SCRAPE_MS + if jitter_ms > 0 { range(rng, -jitter_ms, jitter_ms + 1) } else { 0 })
        .collect()
}

/// A monotonically increasing counter (integer increments, as request counters are).
fn counter(rng: &mut Rng) -> Vec<(i64, f64)> {
    let mut v = range(rng, 0, 1_000_000) as f64;
    timestamps(rng, 5)
        .into_iter()
        .map(|t| {
            v += range(rng, 0, 500) as f64;
            (t, v)
        })
        .collect()
}

/// A gauge of random floats, e.g. a ratio or temperature with full precision.
fn gauge(rng: &mut Rng) -> Vec<(i64, f64)> {
    timestamps(rng, 5).into_iter().map(|t| (t, rng.unit() * 1000.0)).collect()
}

/// A constant series scraped exactly on time (`up`, build info, ...).
fn constant(rng: &mut Rng) -> Vec<(i64, f64)> {
    timestamps(rng, 0).into_iter().map(|t| (t, 1.0)).collect()
}

/// What a vertical merge of two HA replicas re-encodes: two counters scraped one second
/// apart, interleaved (timestamps alternate 1 s and 14 s apart, values alternate
/// between the replicas' own readings).
fn replicas(rng: &mut Rng) -> Vec<(i64, f64)> {
    let (mut a, mut b) = (range(rng, 0, 1_000_000) as f64, range(rng, 0, 1_000_000) as f64);
    timestamps(rng, 5)
        .into_iter()
        .take(SAMPLES / 2)
        .flat_map(|t| {
            a += range(rng, 0, 500) as f64;
            b += range(rng, 0, 500) as f64;
            [(t, a), (t + 1000, b)]
        })
        .collect()
}

type Shape = (&'static str, fn(&mut Rng) -> Vec<(i64, f64)>);

const SHAPES: [Shape; 4] = [("counter", counter), ("gauge", gauge), ("constant", constant), ("replicas", replicas)];

/// `xor::decode_into`, the word-at-a-time decoder `sample::decode` uses, into a reused
/// buffer.
fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor/decode");
    g.throughput(Throughput::Elements((SAMPLES * CHUNKS) as u64));
    for (name, shape) in SHAPES {
        let mut rng = Rng::new(0x5EED);
        let chunks: Vec<Vec<u8>> =
            (0..CHUNKS).map(|_| xor::encode(&shape(&mut rng)).expect("120 samples fit")).collect();
        g.bench_with_input(BenchmarkId::from_parameter(name), &chunks, |b, chunks| {
            let mut out = Vec::with_capacity(SAMPLES);
            b.iter(|| {
                let mut acc = 0u64;
                for c in chunks {
                    out.clear();
                    xor::decode_into(c, &mut out).expect("valid chunk");
                    acc = acc.wrapping_add(out.len() as u64);
                }
                black_box((acc, &out));
            })
        });
    }
    g.finish();
}

/// `XorIter`, the sample-at-a-time iterator.
fn bench_iter(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor/iter");
    g.throughput(Throughput::Elements((SAMPLES * CHUNKS) as u64));
    for (name, shape) in SHAPES {
        let mut rng = Rng::new(0x5EED);
        let chunks: Vec<Vec<u8>> =
            (0..CHUNKS).map(|_| xor::encode(&shape(&mut rng)).expect("120 samples fit")).collect();
        g.bench_with_input(BenchmarkId::from_parameter(name), &chunks, |b, chunks| {
            b.iter(|| {
                let mut acc = 0u64;
                for c in chunks {
                    for s in XorIter::new(c).expect("valid chunk") {
                        let (t, v) = s.expect("valid chunk");
                        acc = acc.wrapping_add(t as u64 ^ v.to_bits());
                    }
                }
                black_box(acc)
            })
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("xor/encode");
    g.throughput(Throughput::Elements((SAMPLES * CHUNKS) as u64));
    for (name, shape) in SHAPES {
        let mut rng = Rng::new(0x5EED);
        let series: Vec<Vec<(i64, f64)>> = (0..CHUNKS).map(|_| shape(&mut rng)).collect();
        // `xor::encode_into`, the whole-chunk encoder the merge uses, into a reused buffer.
        g.bench_with_input(BenchmarkId::new("encode_into", name), &series, |b, series| {
            let mut out = Vec::with_capacity(CHUNKS * SAMPLES * 20);
            b.iter(|| {
                out.clear();
                for s in series {
                    xor::encode_into(black_box(s), &mut out).expect("120 samples fit");
                }
                black_box(out.len())
            })
        });
        // `XorEncoder::append`, sample by sample (downsampling's and the histogram codecs' path).
        g.bench_with_input(BenchmarkId::new("append", name), &series, |b, series| {
            let mut e = XorEncoder::new();
            let mut out = Vec::with_capacity(CHUNKS * SAMPLES * 20);
            b.iter(|| {
                out.clear();
                for s in series {
                    for &(t, v) in black_box(s) {
                        e.append(t, v).expect("120 samples fit");
                    }
                    e.finish_into(&mut out);
                }
                black_box(out.len())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_decode, bench_iter, bench_encode);
criterion_main!(benches);
