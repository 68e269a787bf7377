//! The compaction merge: sample-level deduplication (one-to-one and penalty) on vectors,
//! and a whole vertical merge of two HA replicas' blocks.
//!
//! Data: seeded. The vector benches build two replicas of a 15 s scrape, the second one
//! second later, in memory (no disk). The block bench generates two overlapping 2h
//! blocks with `strata::gen` once, then measures `merge_blocks` writing into a fresh
//! directory each iteration (under /dev/shm when it exists, so the disk is not what is
//! measured).
//!
//! Run: `cargo bench --bench merge`; throughput is in input samples.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::block::{list_blocks, Block};
use strata::compact::dedup::{merge_into, DedupFunc};
use strata::compact::merge::{merge_blocks, MergeOptions};
use strata::compact::plan::GroupKey;
use strata::compact::run::compacted_meta;
use strata::gen::{generate, GenOptions};

type Samples = Vec<(i64, f64)>;

fn replicas(n: usize) -> (Samples, Samples) {
    let a = (0..n).map(|i| (i as i64 * 15_000, i as f64)).collect();
    let b = (0..n).map(|i| (i as i64 * 15_000 + 1000, i as f64 + 0.5)).collect();
    (a, b)
}

fn dedup(c: &mut Criterion) {
    let (a, b) = replicas(120_000);
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements((a.len() + b.len()) as u64));
    let mut out = Vec::new();
    for (name, f) in [("one_to_one", DedupFunc::OneToOne), ("penalty", DedupFunc::Penalty)] {
        g.bench_function(name, |bench| bench.iter(|| merge_into(f, &[black_box(&a), black_box(&b)], &mut out)));
    }
    g.finish();
}

fn scratch_root() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

fn vertical(c: &mut Criterion) {
    // Test mode (`cargo test --all-targets` runs benches once without `--bench`): small.
    let series = if std::env::args().any(|a| a == "--bench") { 5_000 } else { 200 };
    let input = tempfile::tempdir_in(scratch_root()).unwrap();
    let opts = GenOptions { series, replicas: 2, ..Default::default() };
    generate(input.path(), &opts).unwrap();
    let blocks: Vec<Block> = list_blocks(input.path()).unwrap().iter().map(|e| Block::open(&e.path).unwrap()).collect();
    let refs: Vec<&Block> = blocks.iter().collect();
    let samples: u64 = blocks.iter().map(|b| b.meta.stats.num_samples).sum();
    let group = GroupKey::new(0, Default::default(), &[]);
    let mut g = c.benchmark_group("merge");
    g.throughput(Throughput::Elements(samples));
    g.sample_size(10);
    g.bench_function("vertical_2_replicas", |bench| {
        bench.iter(|| {
            let out = tempfile::tempdir_in(scratch_root()).unwrap();
            let ulid = ulid::Ulid::new();
            let metas: Vec<_> = blocks.iter().map(|b| &b.meta).collect();
            let meta = compacted_meta(&metas, &group, ulid);
            merge_blocks(&refs, out.path(), ulid, meta, &MergeOptions::default(), &|_| {}).unwrap().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, dedup, vertical);
criterion_main!(benches);
