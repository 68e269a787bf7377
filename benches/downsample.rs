//! Downsampling, the per-series hot path: raw float chunks to 5m aggregate chunks, and 5m
//! aggregate chunks to 1h, over bytes in memory (no disk, no index).
//!
//! Data: seeded. 64 series of 48 hours scraped every 15 s (11 520 samples each, cut into
//! XOR chunks of 120 as Prometheus cuts them), in two shapes: a counter with a few ms of
//! scrape jitter and a gauge of random floats. The 1h bench takes the 5m output of the
//! counters. A whole-block run (`strata gen` + `strata downsample`, peak memory) is in
//! docs/downsampling.md.
//!
//! Run: `cargo bench --bench downsample`. Throughput is in bytes of input chunk data (the
//! figure Thanos users quote); samples per second are bytes/s divided by the bytes per
//! sample printed at the start.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use strata::downsample::series::{downsample_series, InChunk, Scratch};
use strata::downsample::AggrChunk;
use strata::format::chunks::Encoding;
use strata::format::meta::{RES_1H, RES_5M};
use strata::format::xor;

const SERIES: usize = 64;
const SAMPLES: usize = 48 * 240;
const T0: i64 = 1_700_000_000_000;

use strata::gen::Rng;

/// One series' raw chunks: (mint, maxt, XOR bytes).
type Series = Vec<(i64, i64, Vec<u8>)>;

fn series(rng: &mut Rng, counter: bool) -> Series {
    let mut v = rng.below(1_000_000) as f64;
    let samples: Vec<(i64, f64)> = (0..SAMPLES as i64)
        .map(|i| {
            let t = T0 + i * 15_000 + rng.below(11) as i64 - 5;
            v = if counter { v + rng.below(500) as f64 } else { rng.unit() * 1000.0 };
            (t, v)
        })
        .collect();
    samples.chunks(120).map(|c| (c[0].0, c[c.len() - 1].0, xor::encode(c).expect("120 samples fit"))).collect()
}

fn inputs(s: &Series, encoding: u8) -> Vec<InChunk<'_>> {
    s.iter().map(|(a, b, d)| InChunk { min_time: *a, max_time: *b, encoding, data: d }).collect()
}

fn downsample_all(
    data: &[Series],
    encoding: u8,
    from: i64,
    to: i64,
    scratch: &mut Scratch,
    out: &mut Vec<AggrChunk>,
) -> usize {
    let mut n = 0;
    for s in data {
        out.clear();
        downsample_series(&inputs(s, encoding), from, to, &[], scratch, out).expect("valid series");
        n += out.len();
    }
    n
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("downsample");
    let mut five_min: Vec<Series> = Vec::new();
    for (name, counter) in [("raw_to_5m/counter", true), ("raw_to_5m/gauge", false)] {
        let mut rng = Rng::new(0x5EED);
        let data: Vec<Series> = (0..SERIES).map(|_| series(&mut rng, counter)).collect();
        let bytes: usize = data.iter().flatten().map(|c| c.2.len()).sum();
        eprintln!(
            "{name}: {} samples in {bytes} bytes of chunk data ({:.2} bytes per sample)",
            SERIES * SAMPLES,
            bytes as f64 / (SERIES * SAMPLES) as f64
        );
        g.throughput(Throughput::Bytes(bytes as u64));
        let mut scratch = Scratch::default();
        let mut out = Vec::new();
        g.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, data| {
            b.iter(|| black_box(downsample_all(data, Encoding::Xor as u8, 0, RES_5M, &mut scratch, &mut out)))
        });
        if counter {
            five_min = data
                .iter()
                .map(|s| {
                    let mut o = Vec::new();
                    downsample_series(&inputs(s, Encoding::Xor as u8), 0, RES_5M, &[], &mut scratch, &mut o)
                        .expect("valid series");
                    o.into_iter().map(|a| (a.min_time, a.max_time, a.data)).collect()
                })
                .collect();
        }
    }
    let bytes: usize = five_min.iter().flatten().map(|c| c.2.len()).sum();
    g.throughput(Throughput::Bytes(bytes as u64));
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    g.bench_with_input(BenchmarkId::from_parameter("5m_to_1h/counter"), &five_min, |b, data| {
        b.iter(|| black_box(downsample_all(data, Encoding::Aggr as u8, RES_5M, RES_1H, &mut scratch, &mut out)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
