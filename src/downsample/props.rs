//! Invariants of downsampling, checked on random series: the count aggregate adds up to
//! the raw samples that are not NaN, at 5m and again at 1h; and the counter aggregate,
//! joined across chunks as a reader joins it, gives the raw series' increase over whole
//! windows (so `rate` over downsampled data equals `rate` over raw data).

use proptest::prelude::*;

use super::float::CounterResets;
use super::series::{downsample_series, InChunk, Scratch};
use super::AggrChunk;
use crate::format::aggr::AggrType;
use crate::format::chunks::Encoding;
use crate::format::histogram::STALE_NAN_BITS;
use crate::format::meta::{RES_1H, RES_5M};
use crate::format::sample::{decode_aggr, ChunkSamples};
use crate::format::xor;

#[derive(Clone, Debug)]
enum Step {
    /// The counter grows by this much.
    Inc(u16),
    /// The counter restarts at this value.
    Reset(u8),
    Nan,
    Stale,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        20 => any::<u16>().prop_map(Step::Inc),
        1 => any::<u8>().prop_map(Step::Reset),
        1 => Just(Step::Nan),
        1 => Just(Step::Stale),
    ]
}

/// Gaps between samples: mostly a scrape interval, sometimes a few ms, sometimes hours.
fn gap() -> impl Strategy<Value = i64> {
    prop_oneof![10 => 14_000i64..16_000, 2 => 1i64..1000, 1 => 60_000i64..8 * 3_600_000]
}

/// A raw series: (t, v) with increasing t, integer counter values, NaN and stale markers
/// as generated, cut into XOR chunks of the given sizes.
fn series() -> impl Strategy<Value = (Vec<(i64, f64)>, Vec<usize>)> {
    (
        0i64..10 * 86_400_000,
        proptest::collection::vec((gap(), step()), 1..2500),
        proptest::collection::vec(1usize..300, 1..40),
    )
        .prop_map(|(start, steps, cuts)| {
            let mut t = start;
            let mut c = 0.0f64;
            let mut out = Vec::with_capacity(steps.len());
            for (dt, s) in steps {
                t += dt;
                let v = match s {
                    Step::Inc(d) => {
                        c += d as f64;
                        c
                    }
                    Step::Reset(v) => {
                        c = v as f64;
                        c
                    }
                    Step::Nan => f64::NAN,
                    Step::Stale => f64::from_bits(STALE_NAN_BITS),
                };
                out.push((t, v));
            }
            (out, cuts)
        })
}

fn chunks_of(samples: &[(i64, f64)], cuts: &[usize]) -> Vec<(i64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = samples;
    let mut k = 0;
    while !rest.is_empty() {
        let n = cuts[k % cuts.len()].min(rest.len());
        k += 1;
        let (c, r) = rest.split_at(n);
        out.push((c[0].0, c[n - 1].0, xor::encode(c).unwrap()));
        rest = r;
    }
    out
}

fn run(chunks: &[(i64, i64, u8, Vec<u8>)], from: i64, to: i64) -> Vec<AggrChunk> {
    let ins: Vec<InChunk<'_>> =
        chunks.iter().map(|(a, b, e, d)| InChunk { min_time: *a, max_time: *b, encoding: *e, data: d }).collect();
    let mut out = Vec::new();
    downsample_series(&ins, from, to, &[], &mut Scratch::default(), &mut out).unwrap();
    out
}

fn slot(c: &AggrChunk, a: AggrType) -> Vec<(i64, f64)> {
    match decode_aggr(&c.data, a).unwrap() {
        ChunkSamples::Float(v) => v,
        _ => unreachable!(),
    }
}

fn count_total(chunks: &[AggrChunk]) -> f64 {
    chunks.iter().flat_map(|c| slot(c, AggrType::Count)).map(|s| s.1).sum()
}

/// The counter series a reader builds from the counter slots of consecutive chunks.
fn joined(chunks: &[AggrChunk]) -> Vec<(i64, f64)> {
    let parts: Vec<Vec<(i64, f64)>> = chunks.iter().map(|c| slot(c, AggrType::Counter)).collect();
    let mut it = CounterResets::new(parts.iter().map(|p| p.as_slice()).collect());
    let mut out = Vec::new();
    while it.next() {
        out.push(it.at());
    }
    out
}

/// The raw counter with resets added back, at each raw sample (NaN and stale skipped).
fn raw_totals(samples: &[(i64, f64)]) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let (mut total, mut prev) = (0.0, 0.0);
    for &(t, v) in samples.iter().filter(|s| !s.1.is_nan()) {
        if out.is_empty() {
            total = v;
        } else if v < prev {
            total += v;
        } else {
            total += v - prev;
        }
        prev = v;
        out.push((t, total));
    }
    out
}

/// Every joined counter sample equals the raw total at the last raw sample at or before
/// its time.
fn assert_counter_matches_raw(joined: &[(i64, f64)], raw: &[(i64, f64)]) -> Result<(), TestCaseError> {
    for &(t, v) in joined {
        let at = raw.partition_point(|s| s.0 <= t);
        prop_assert!(at > 0, "counter sample at {} before any raw sample", t);
        prop_assert_eq!(v, raw[at - 1].1, "counter at {}", t);
    }
    prop_assert!(joined.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1), "joined counter is monotonic");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn count_adds_up_to_the_raw_samples_that_are_not_nan((samples, cuts) in series()) {
        let raw: Vec<_> = chunks_of(&samples, &cuts).into_iter().map(|(a, b, d)| (a, b, Encoding::Xor as u8, d)).collect();
        let five = run(&raw, 0, RES_5M);
        let non_nan = samples.iter().filter(|s| !s.1.is_nan()).count();
        prop_assert_eq!(count_total(&five) as usize, non_nan);
        let input: Vec<_> = five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
        let hour = run(&input, RES_5M, RES_1H);
        prop_assert_eq!(count_total(&hour) as usize, non_nan);
        for c in five.iter().chain(&hour) {
            let counts = slot(c, AggrType::Count);
            prop_assert_eq!((c.min_time, c.max_time), (counts[0].0, counts[counts.len() - 1].0));
        }
        prop_assert!(five.windows(2).all(|w| w[0].max_time < w[1].min_time), "5m chunks do not overlap");
    }

    #[test]
    fn the_counter_aggregate_gives_the_raw_increase_over_whole_windows((samples, cuts) in series()) {
        let raw: Vec<_> = chunks_of(&samples, &cuts).into_iter().map(|(a, b, d)| (a, b, Encoding::Xor as u8, d)).collect();
        let totals = raw_totals(&samples);
        let five = run(&raw, 0, RES_5M);
        let j5 = joined(&five);
        assert_counter_matches_raw(&j5, &totals)?;
        // Every window of the count aggregate has a counter sample at its stamp, so the
        // increase between any two window ends (a rate's numerator) is the raw increase.
        for c in &five {
            for (t, _) in slot(c, AggrType::Count) {
                prop_assert!(j5.iter().any(|s| s.0 == t), "no counter sample at window {}", t);
            }
        }
        let input: Vec<_> = five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
        let hour = run(&input, RES_5M, RES_1H);
        assert_counter_matches_raw(&joined(&hour), &totals)?;
        if let (Some(a), Some(b)) = (totals.first(), totals.last()) {
            let j1 = joined(&hour);
            prop_assert_eq!(j1.first().map(|s| s.1), Some(a.1));
            prop_assert_eq!(j1.last().map(|s| s.1), Some(b.1), "the last 1h counter is the raw total");
        }
    }
}

/// Random bytes where chunks should be, and well-formed chunks of absurd samples (any
/// timestamps, any floats, slots present or not): downsampling returns an error or
/// chunks, never panics.
mod robustness {
    use super::*;
    use crate::format::aggr::{encode, SubChunk};

    /// A valid float histogram with a random schema, zero threshold and layout.
    fn random_histogram() -> impl Strategy<Value = crate::format::histogram::FloatHistogram> {
        use crate::format::histogram::{FloatHistogram, Span};
        (
            -4i32..=8,
            prop_oneof![Just(0.0), Just(2f64.powi(-128)), Just(0.001), Just(0.5)],
            proptest::collection::vec((0i32..4, 1u32..4), 0..4),
            proptest::collection::vec((0i32..4, 1u32..3), 0..3),
            0u32..1000,
        )
            .prop_map(|(schema, zt, pos, neg, seed)| {
                let spans = |v: &[(i32, u32)], first: i32| {
                    v.iter()
                        .enumerate()
                        .map(|(i, &(o, l))| Span { offset: if i == 0 { first + o } else { o }, length: l })
                        .collect::<Vec<_>>()
                };
                let ps = spans(&pos, -3);
                let ns = spans(&neg, -2);
                let n = |s: &[Span]| s.iter().map(|x| x.length as usize).sum::<usize>();
                let pb: Vec<f64> = (0..n(&ps)).map(|i| ((seed as usize * 7 + i * 13) % 50) as f64).collect();
                let nb: Vec<f64> = (0..n(&ns)).map(|i| ((seed as usize * 3 + i * 5) % 20) as f64).collect();
                let zc = (seed % 9) as f64;
                FloatHistogram {
                    schema,
                    zero_threshold: zt,
                    zero_count: zc,
                    count: zc + pb.iter().sum::<f64>() + nb.iter().sum::<f64>(),
                    sum: seed as f64 * 0.5,
                    positive_spans: ps,
                    negative_spans: ns,
                    positive_buckets: pb,
                    negative_buckets: nb,
                    ..FloatHistogram::default()
                }
            })
    }

    fn arbitrary_samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        proptest::collection::vec((any::<i64>(), any::<f64>()), 1..200).prop_map(|mut v| {
            v.sort_by_key(|s| s.0);
            v
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_chunk_bytes_never_panic(enc in prop_oneof![Just(1u8), Just(2u8), Just(3u8), Just(0xffu8), any::<u8>()], data in proptest::collection::vec(any::<u8>(), 0..300), from in prop_oneof![Just(0i64), Just(RES_5M)]) {
            let chunks = [(0i64, 1i64, enc, data)];
            let ins: Vec<InChunk<'_>> = chunks.iter().map(|(a, b, e, d)| InChunk { min_time: *a, max_time: *b, encoding: *e, data: d }).collect();
            let to = if from == 0 { RES_5M } else { RES_1H };
            let _ = downsample_series(&ins, from, to, &[], &mut Scratch::default(), &mut Vec::new());
        }

        #[test]
        fn absurd_samples_never_panic(raw in arbitrary_samples(), slots in proptest::collection::vec((arbitrary_samples(), proptest::bool::ANY), 5)) {
            let chunk = xor::encode(&raw).unwrap();
            let ins = [InChunk { min_time: raw[0].0, max_time: raw[raw.len() - 1].0, encoding: Encoding::Xor as u8, data: &chunk }];
            let _ = downsample_series(&ins, 0, RES_5M, &[], &mut Scratch::default(), &mut Vec::new());
            let subs: Vec<Vec<u8>> = slots.iter().map(|(s, _)| xor::encode(s).unwrap()).collect();
            let parts: [Option<SubChunk<'_>>; 5] = std::array::from_fn(|i| slots[i].1.then(|| SubChunk { encoding: Encoding::Xor as u8, data: &subs[i] }));
            let data = encode(&parts);
            let ins = [InChunk { min_time: i64::MIN, max_time: i64::MAX, encoding: Encoding::Aggr as u8, data: &data }];
            let _ = downsample_series(&ins, RES_5M, RES_1H, &[], &mut Scratch::default(), &mut Vec::new());
        }

        #[test]
        fn random_histograms_never_panic(hs in proptest::collection::vec(random_histogram(), 1..120), gauge in proptest::bool::ANY) {
            use crate::format::histogram::{encode_float_histograms, CounterResetHint};
            let samples: Vec<(i64, crate::format::histogram::FloatHistogram)> = hs
                .into_iter()
                .enumerate()
                .map(|(i, mut h)| {
                    if gauge {
                        h.counter_reset_hint = CounterResetHint::Gauge;
                    }
                    (i as i64 * 100_000, h)
                })
                .collect();
            let encoded = encode_float_histograms(&samples).unwrap();
            let mut at = 0;
            let mut chunks = Vec::new();
            for c in &encoded {
                let n = u16::from_be_bytes([c[0], c[1]]) as usize;
                chunks.push(InChunk { min_time: samples[at].0, max_time: samples[at + n - 1].0, encoding: Encoding::FloatHistogram as u8, data: c });
                at += n;
            }
            let mut out = Vec::new();
            if downsample_series(&chunks, 0, RES_5M, &[], &mut Scratch::default(), &mut out).is_ok() {
                let five: Vec<(i64, i64, Vec<u8>)> = out.iter().map(|c| (c.min_time, c.max_time, c.data.clone())).collect();
                let ins: Vec<InChunk<'_>> = five.iter().map(|(a, b, d)| InChunk { min_time: *a, max_time: *b, encoding: Encoding::Aggr as u8, data: d }).collect();
                let _ = downsample_series(&ins, RES_5M, RES_1H, &[], &mut Scratch::default(), &mut Vec::new());
            }
        }
    }
}
