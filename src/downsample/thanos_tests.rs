//! Thanos's own downsampling tests (`pkg/compact/downsample/downsample_test.go` at
//! thanos-io/thanos@e103a81), run against strata's implementation. The float cases are
//! data, transcribed by `testdata/downsample/transcribe_thanos_tests.py` into
//! `thanos_cases.json`; the native histogram cases are built here from the same generators
//! Prometheus's `tsdbutil` uses, with expected values computed independently (plain
//! element-wise arithmetic on the generators' formulas, not `histmath`).

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::float::{keep_expanded, raw_float_chunks_n, AggrScratch, CounterResets};
use super::series::{aggregate_batches, downsample_series, InChunk, Scratch};
use super::AggrChunk;
use crate::format::aggr::{self, AggrType};
use crate::format::chunks::Encoding;
use crate::format::histogram::{
    encode_float_histograms, CounterResetHint, FloatHistogram, FloatHistogramIter, Span, STALE_NAN_BITS,
};
use crate::format::meta::{RES_1H, RES_5M};
use crate::format::sample::{decode_aggr, ChunkSamples};
use crate::format::xor::{self, XorEncoder};

const CASES: &str = include_str!("../../testdata/downsample/thanos_cases.json");
/// Prometheus's `value.NormalNaN`.
const NORMAL_NAN: u64 = 0x7ff8_0000_0000_0001;

fn cases() -> Json {
    serde_json::from_str(CASES).expect("thanos_cases.json parses")
}

fn val(v: &Json) -> f64 {
    match v {
        Json::Number(n) => n.as_f64().expect("a number"),
        Json::String(s) => match s.as_str() {
            "NaN" => f64::from_bits(NORMAL_NAN),
            "StaleNaN" => f64::from_bits(STALE_NAN_BITS),
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => panic!("unknown value {other}"),
        },
        other => panic!("unexpected {other}"),
    }
}

fn samples(v: &Json) -> Vec<(i64, f64)> {
    v.as_array().expect("samples").iter().map(|s| (s[0].as_i64().expect("t"), val(&s[1]))).collect()
}

fn slot_name(a: AggrType) -> &'static str {
    a.name()
}

/// An XOR chunk of raw samples, as the Go tests build them: time range from the first and
/// last sample.
fn xor_chunk(s: &[(i64, f64)]) -> (i64, i64, Vec<u8>) {
    (s[0].0, s[s.len() - 1].0, xor::encode(s).unwrap())
}

/// An aggregate chunk as Thanos's `encodeTestAggrSeries` builds one for floats: all five
/// slots hold an XOR chunk (empty when the map has no samples for it), and the time range
/// spans every sample of every slot.
fn aggr_chunk(m: &serde_json::Map<String, Json>) -> (i64, i64, Vec<u8>) {
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    let subs: Vec<Vec<u8>> = AggrType::ALL
        .iter()
        .map(|a| {
            let mut e = XorEncoder::new();
            for (t, v) in m.get(slot_name(*a)).map(samples).unwrap_or_default() {
                mint = mint.min(t);
                maxt = maxt.max(t);
                e.append(t, v).unwrap();
            }
            e.finish()
        })
        .collect();
    let slots: aggr::Slots<'_> =
        std::array::from_fn(|i| Some(aggr::SubChunk { encoding: Encoding::Xor as u8, data: &subs[i] }));
    (mint, maxt, aggr::encode(&slots))
}

/// The samples of every set slot of an aggregate chunk, as Thanos's tests read them back.
fn read_back(c: &AggrChunk) -> BTreeMap<&'static str, Vec<(i64, u64)>> {
    let slots = aggr::parse(&c.data).unwrap();
    let mut m = BTreeMap::new();
    for a in AggrType::ALL {
        if slots[a as usize].is_none() {
            continue;
        }
        let ChunkSamples::Float(v) = decode_aggr(&c.data, a).unwrap() else { panic!("{} slot is not XOR", a.name()) };
        m.insert(slot_name(a), v.into_iter().map(|(t, x)| (t, bits(x))).collect());
    }
    m
}

/// Value bits, every NaN but the stale marker as one NaN.
fn bits(x: f64) -> u64 {
    if x.is_nan() && x.to_bits() != STALE_NAN_BITS {
        NORMAL_NAN
    } else {
        x.to_bits()
    }
}

fn expected(v: &Json) -> Vec<BTreeMap<&'static str, Vec<(i64, u64)>>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let m = m.as_object().unwrap();
            AggrType::ALL
                .iter()
                .filter_map(|a| {
                    m.get(slot_name(*a))
                        .map(|s| (slot_name(*a), samples(s).into_iter().map(|(t, x)| (t, bits(x))).collect()))
                })
                .collect()
        })
        .collect()
}

/// An input chunk: (mint, maxt, encoding, data).
type TestChunk = (i64, i64, u8, Vec<u8>);

fn run(chunks: &[TestChunk], from: i64, to: i64) -> Result<Vec<AggrChunk>, String> {
    let ins: Vec<InChunk<'_>> =
        chunks.iter().map(|(a, b, e, d)| InChunk { min_time: *a, max_time: *b, encoding: *e, data: d }).collect();
    let mut out = Vec::new();
    downsample_series(&ins, from, to, &[], &mut Scratch::default(), &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[test]
fn thanos_test_downsample_cases() {
    let all = cases();
    let list = all["downsample"].as_array().unwrap();
    assert_eq!(list.len(), 11, "every case of TestDownsample is transcribed");
    for case in list {
        let name = case["name"].as_str().unwrap();
        let res = case["resolution"].as_i64().unwrap();
        let (chunks, from): (Vec<TestChunk>, i64) = if let Some(raw) = case.get("in_raw") {
            (
                raw.as_array()
                    .unwrap()
                    .iter()
                    .map(|c| xor_chunk(&samples(c)))
                    .map(|(a, b, d)| (a, b, Encoding::Xor as u8, d))
                    .collect(),
                0,
            )
        } else {
            // As Thanos's test: the input's resolution is one below the target.
            (
                case["in_aggr"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| aggr_chunk(m.as_object().unwrap()))
                    .map(|(a, b, d)| (a, b, Encoding::Aggr as u8, d))
                    .collect(),
                res - 1,
            )
        };
        let got = run(&chunks, from, res);
        if case.get("error").is_some() {
            assert!(got.is_err(), "{name}: want an error, got {got:?}");
            assert!(got.unwrap_err().contains("overlapping chunks"), "{name}");
            continue;
        }
        let got = got.unwrap_or_else(|e| panic!("{name}: {e}"));
        let got: Vec<_> = got.iter().map(read_back).collect();
        assert_eq!(got, expected(&case["expected"]), "{name}");
    }
}

#[test]
fn thanos_test_downsample_counter_boundary_reset() {
    let all = cases();
    let c = &all["counter_boundary_reset"];
    let raw = samples(&c["raw"]);
    let (r1, r2) = (c["raw_resolution"].as_i64().unwrap(), c["aggr_resolution"].as_i64().unwrap());
    // More target chunks than samples: every window gets its own chunk.
    let mut out = Vec::new();
    raw_float_chunks_n(&raw, r1, raw.len() + 1, &mut Vec::new(), &mut out).unwrap();
    assert_eq!(out.len() as i64, c["raw_chunks"].as_i64().unwrap());
    let counters = |chunks: &[AggrChunk]| -> Vec<Vec<(i64, f64)>> {
        chunks
            .iter()
            .map(|ch| match decode_aggr(&ch.data, AggrType::Counter).unwrap() {
                ChunkSamples::Float(v) => v,
                _ => unreachable!(),
            })
            .collect()
    };
    let iterate = |parts: &[Vec<(i64, f64)>]| -> Vec<(i64, f64)> {
        let mut it = CounterResets::new(parts.iter().map(|p| p.as_slice()).collect());
        let mut v = Vec::new();
        while it.next() {
            v.push(it.at());
        }
        v
    };
    let raw_counters = counters(&out);
    assert_eq!(raw_counters.concat(), samples(&c["raw_counter_samples"]));
    assert_eq!(iterate(&raw_counters), samples(&c["raw_counter_iterate"]));

    let slots: Vec<aggr::Slots<'_>> = out.iter().map(|ch| aggr::parse(&ch.data).unwrap()).collect();
    let mut out2 = Vec::new();
    let want = c["aggr_chunks"].as_i64().unwrap() as usize;
    aggregate_batches(&slots, false, want, r2, &mut AggrScratch::default(), &mut out2).unwrap();
    assert_eq!(out2.len(), want);
    let aggr_counters = counters(&out2);
    assert_eq!(aggr_counters.concat(), samples(&c["aggr_counter_samples"]));
    assert_eq!(iterate(&aggr_counters), samples(&c["aggr_counter_iterate"]));
}

#[test]
fn thanos_test_expand_chunk_iterator() {
    let all = cases();
    let c = &all["expand_chunk_iterator"];
    let mut v = samples(&c["input"]);
    keep_expanded(&mut v, 0);
    let want = samples(&c["expected"]);
    assert_eq!(
        v.iter().map(|s| (s.0, bits(s.1))).collect::<Vec<_>>(),
        want.iter().map(|s| (s.0, bits(s.1))).collect::<Vec<_>>()
    );
}

#[test]
fn thanos_test_apply_counter_resets_iterator() {
    let all = cases();
    let list = all["apply_counter_resets"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    for case in list {
        let parts: Vec<Vec<(i64, f64)>> = case["chunks"].as_array().unwrap().iter().map(samples).collect();
        let mut it = CounterResets::new(parts.iter().map(|p| p.as_slice()).collect());
        let mut got = Vec::new();
        while it.next() {
            got.push(it.at());
        }
        assert_eq!(got, samples(&case["expected"]), "{}", case["name"]);
        assert!(got.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1), "monotonic");
    }
}

#[test]
fn thanos_test_downsample_aggr_and_non_empty_xor_chunks() {
    let all = cases();
    let c = &all["aggr_and_non_empty_xor"];
    let (a, b, d) = aggr_chunk(c["aggr"].as_object().unwrap());
    let raw = samples(&c["raw"]);
    // The raw chunk's index entry carries an inverted range, as in the Go test.
    let chunks =
        vec![(a, b, Encoding::Aggr as u8, d), (i64::MAX, i64::MIN, Encoding::Xor as u8, xor::encode(&raw).unwrap())];
    let got: Vec<_> = run(&chunks, RES_5M, RES_1H).unwrap().iter().map(read_back).collect();
    assert_eq!(got, expected(&c["expected"]));
}

#[test]
fn thanos_test_downsample_aggr_and_empty_xor_chunks() {
    let all = cases();
    let c = &all["aggr_and_empty_xor"];
    let (a, b, d) = aggr_chunk(c["aggr"].as_object().unwrap());
    let alone = run(&[(a, b, Encoding::Aggr as u8, d.clone())], RES_5M, RES_1H).unwrap();
    let with_empty = run(
        &[(a, b, Encoding::Aggr as u8, d), (i64::MAX, i64::MIN, Encoding::Xor as u8, XorEncoder::new().finish())],
        RES_5M,
        RES_1H,
    )
    .unwrap();
    assert_eq!(with_empty, alone, "an empty XOR chunk in a downsampled block is skipped");
}

/// Thanos's `validateAggrChunks`: every slot readable, count and sum aligned.
fn validate(chunks: &[AggrChunk]) {
    for c in chunks {
        let m = read_back(c);
        assert_eq!(m.len(), 5, "all five slots are set");
        let ts = |k| m[k].iter().map(|s: &(i64, u64)| s.0).collect::<Vec<_>>();
        assert_eq!(ts("count"), ts("sum"), "sum and count timestamps are aligned");
        assert!(c.min_time != i64::MAX && c.max_time >= c.min_time);
    }
}

#[test]
fn thanos_test_downsample_and_read_resulting_data() {
    let all = cases();
    let data = samples(&all["read_resulting_data"]);
    assert_eq!(data.len(), 593);
    let (a, b, d) = xor_chunk(&data);
    let five = run(&[(a, b, Encoding::Xor as u8, d)], 0, RES_5M).unwrap();
    assert!(!five.is_empty());
    validate(&five);
    let as_input: Vec<_> =
        five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
    let hour = run(&as_input, RES_5M, RES_1H).unwrap();
    assert!(!hour.is_empty());
    validate(&hour);
}

// ---------------------------------------------------------------------------------------
// Native histograms.

/// Prometheus's `tsdbutil.GenerateTestFloatHistogram(i)`.
fn test_fh(i: i64) -> FloatHistogram {
    let b = vec![(i + 1) as f64, (i + 2) as f64, (i + 1) as f64, (i + 1) as f64];
    let spans = vec![Span { offset: 0, length: 2 }, Span { offset: 1, length: 2 }];
    FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: 1,
        zero_threshold: 0.001,
        zero_count: 2.0 + i as f64,
        count: 12.0 + (i * 9) as f64,
        sum: 18.4 * (i + 1) as f64,
        positive_spans: spans.clone(),
        negative_spans: spans,
        positive_buckets: b.clone(),
        negative_buckets: b,
        custom_values: Vec::new(),
    }
}

/// `GenerateTestFloatHistograms(n)`: histograms 0..n, all but the first `NotCounterReset`.
fn test_fhs(n: i64) -> Vec<FloatHistogram> {
    (0..n)
        .map(|i| {
            let mut h = test_fh(i);
            if i > 0 {
                h.counter_reset_hint = CounterResetHint::NotCounterReset;
            }
            h
        })
        .collect()
}

/// Element-wise sum, left to right (Go's `Add` over equal layouts).
fn elementwise_sum(hs: &[FloatHistogram], hint: CounterResetHint) -> FloatHistogram {
    let mut s = hs[0].clone();
    for h in &hs[1..] {
        s.count += h.count;
        s.zero_count += h.zero_count;
        s.sum += h.sum;
        s.positive_buckets.iter_mut().zip(&h.positive_buckets).for_each(|(a, b)| *a += b);
        s.negative_buckets.iter_mut().zip(&h.negative_buckets).for_each(|(a, b)| *a += b);
    }
    s.counter_reset_hint = hint;
    s
}

/// Float histogram chunks as a TSDB head would cut them (a new chunk at each reset).
fn hist_chunks(samples: &[(i64, FloatHistogram)]) -> Vec<(i64, i64, u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    for c in encode_float_histograms(samples).unwrap() {
        let n = u16::from_be_bytes([c[0], c[1]]) as usize;
        out.push((samples[at].0, samples[at + n - 1].0, Encoding::FloatHistogram as u8, c));
        at += n;
    }
    out
}

fn read_hist(c: &AggrChunk, a: AggrType) -> Vec<(i64, FloatHistogram)> {
    match decode_aggr(&c.data, a).unwrap() {
        ChunkSamples::FloatHistogram(v) => v,
        other => panic!("{} slot is not a float histogram chunk: {other:?}", a.name()),
    }
}

fn read_floats(c: &AggrChunk, a: AggrType) -> Vec<(i64, f64)> {
    match decode_aggr(&c.data, a).unwrap() {
        ChunkSamples::Float(v) => v,
        other => panic!("{} slot is not XOR: {other:?}", a.name()),
    }
}

/// Equal within 1e-9 (Thanos's `cmpopts.EquateApprox(0, 1e-9)`), layout and hint exact.
fn assert_hist_eq(got: &FloatHistogram, want: &FloatHistogram, what: &str) {
    let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-9 * a.abs().max(b.abs());
    assert_eq!(
        (got.schema, got.zero_threshold, got.counter_reset_hint),
        (want.schema, want.zero_threshold, want.counter_reset_hint),
        "{what}: schema, threshold, hint"
    );
    assert_eq!(
        (&got.positive_spans, &got.negative_spans),
        (&want.positive_spans, &want.negative_spans),
        "{what}: spans"
    );
    let vals = |h: &FloatHistogram| {
        [vec![h.count, h.zero_count, h.sum], h.positive_buckets.clone(), h.negative_buckets.clone()].concat()
    };
    let (g, w) = (vals(got), vals(want));
    assert_eq!(g.len(), w.len(), "{what}");
    assert!(g.iter().zip(&w).all(|(a, b)| close(*a, *b)), "{what}: {got:?} != {want:?}");
}

#[test]
fn thanos_test_downsample_native_histograms_regular() {
    // TestDownsampleNativeHistograms, "regular NH downsampling".
    let h = FloatHistogram {
        count: 2.0,
        sum: 0.000551209,
        schema: 3,
        zero_threshold: 2.938735877055719e-39,
        positive_spans: vec![Span { offset: -97, length: 1 }, Span { offset: 4, length: 1 }],
        positive_buckets: vec![1.0, 1.0],
        ..FloatHistogram::default()
    };
    let mut data = vec![(1688526018213i64, h.clone())];
    let mut t = 1688526018213 + 60000;
    while t < 1688562258213 {
        data.push((t, h.clone()));
        t += 60000;
    }
    let five = run(&hist_chunks(&data), 0, RES_5M).unwrap();
    assert_eq!(five.len(), 1);
    let slots = aggr::parse(&five[0].data).unwrap();
    assert!(
        slots[AggrType::Min as usize].is_none() && slots[AggrType::Max as usize].is_none(),
        "min and max are unset"
    );
    let counts = read_floats(&five[0], AggrType::Count);
    for (i, (_, c)) in counts.iter().enumerate() {
        assert_eq!(*c, if i == 120 { 4.0 } else { 5.0 });
    }
    let counters = read_hist(&five[0], AggrType::Counter);
    assert_eq!(counters.len(), 1 + data.len() / 5);
    for (i, (_, c)) in counters.iter().enumerate() {
        let mut want = h.clone();
        want.counter_reset_hint = if i == 0 { CounterResetHint::Unknown } else { CounterResetHint::NotCounterReset };
        assert_eq!(c, &want, "counter {i}");
    }
    let mut sum5 = h.clone();
    sum5.count = 10.0;
    sum5.sum = 0.002756045;
    sum5.positive_buckets = vec![5.0, 5.0];
    sum5.counter_reset_hint = CounterResetHint::Gauge;
    let sums = read_hist(&five[0], AggrType::Sum);
    for (i, (_, s)) in sums.iter().enumerate() {
        let mut want = sum5.clone();
        if i == 120 {
            want.count = 8.0;
            want.positive_buckets = vec![4.0, 4.0];
            want.sum = 0.002204836;
        }
        assert_eq!(s, &want, "5m sum {i}");
    }

    let input: Vec<_> = five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
    let hour = run(&input, RES_5M, RES_1H).unwrap();
    let mut sum1 = sum5.clone();
    sum1.count = 120.0;
    sum1.sum = 0.03307253999999999;
    sum1.positive_buckets = vec![60.0, 60.0];
    for c in &hour {
        for (i, (_, s)) in read_hist(c, AggrType::Sum).iter().enumerate() {
            let mut want = sum1.clone();
            if i == 10 {
                want.count = 8.0;
                want.positive_buckets = vec![4.0, 4.0];
                want.sum = 0.002204836;
            }
            assert_eq!(s, &want, "1h sum {i}");
        }
    }
}

#[test]
#[allow(clippy::approx_constant)] // Thanos's test value.
fn thanos_test_downsample_native_histograms_float_then_histogram() {
    // TestDownsampleNativeHistograms, "same series is float and then histogram": a
    // histogram chunk followed by a float chunk goes to 5m and on to 1h without error.
    let h = FloatHistogram {
        count: 2.0,
        sum: 0.000551209,
        schema: 3,
        zero_threshold: 2.938735877055719e-39,
        positive_spans: vec![Span { offset: -97, length: 1 }, Span { offset: 4, length: 1 }],
        positive_buckets: vec![1.0, 1.0],
        ..FloatHistogram::default()
    };
    let mut hs = vec![(1688526018213i64, h.clone())];
    let mut fs = Vec::new();
    let (mut t, mut i) = (1688526018213 + 60000, 0);
    while t < 1688562258213 {
        if i > 50 {
            fs.push((t, 3.14));
        } else {
            hs.push((t, h.clone()));
        }
        t += 60000;
        i += 1;
    }
    let mut chunks = hist_chunks(&hs);
    let (a, b, d) = xor_chunk(&fs);
    chunks.push((a, b, Encoding::Xor as u8, d));
    let five = run(&chunks, 0, RES_5M).unwrap();
    assert!(five.len() >= 2);
    let input: Vec<_> = five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
    let hour = run(&input, RES_5M, RES_1H).unwrap();
    assert!(hour.len() >= 2);
}

#[test]
fn thanos_test_downsample_native_histogram_with_counter_resets() {
    // TestDownSampleNativeHistogram, "float histogram with 30 samples with counter resets
    // and 30s scrape interval" (the case that test runs): runs of 15, 5 and 10.
    let hs: Vec<FloatHistogram> = [15, 5, 10].iter().flat_map(|&n| test_fhs(n)).collect();
    let samples: Vec<(i64, FloatHistogram)> =
        hs.iter().enumerate().map(|(i, h)| (i as i64 * 30_000, h.clone())).collect();
    let five = run(&hist_chunks(&samples), 0, RES_5M).unwrap();
    assert_eq!(five.len(), 1);
    let c = &five[0];
    assert_eq!(read_floats(c, AggrType::Count), vec![(299_999, 10.0), (599_999, 10.0), (870_000, 10.0)]);
    // The counter adds each run's last value: resets add the whole new value back.
    let counter_after = |runs: &[i64], hint| {
        let lasts: Vec<FloatHistogram> = runs.iter().map(|&n| test_fh(n - 1)).collect();
        elementwise_sum(&lasts, hint)
    };
    let counters = read_hist(c, AggrType::Counter);
    let want = [
        (299_999, counter_after(&[10], CounterResetHint::Unknown)),
        (599_999, counter_after(&[15, 5], CounterResetHint::NotCounterReset)),
        (870_000, counter_after(&[15, 5, 10], CounterResetHint::NotCounterReset)),
    ];
    assert_eq!(counters.len(), 3);
    for ((t, g), (wt, w)) in counters.iter().zip(&want) {
        assert_eq!(t, wt);
        assert_hist_eq(g, w, "5m counter");
    }
    let sums = read_hist(c, AggrType::Sum);
    let want_sums = [
        elementwise_sum(&hs[..10], CounterResetHint::Gauge),
        elementwise_sum(&hs[10..20], CounterResetHint::Gauge),
        elementwise_sum(&hs[20..], CounterResetHint::Gauge),
    ];
    for ((_, g), w) in sums.iter().zip(&want_sums) {
        assert_hist_eq(g, w, "5m sum");
    }

    let hour = run(&[(c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())], RES_5M, RES_1H).unwrap();
    assert_eq!(hour.len(), 1);
    assert_eq!(read_floats(&hour[0], AggrType::Count), vec![(870_000, 30.0)]);
    let counters = read_hist(&hour[0], AggrType::Counter);
    assert_eq!(counters.len(), 1);
    assert_hist_eq(&counters[0].1, &counter_after(&[15, 5, 10], CounterResetHint::Unknown), "1h counter");
    let sums = read_hist(&hour[0], AggrType::Sum);
    assert_hist_eq(&sums[0].1, &elementwise_sum(&hs, CounterResetHint::Gauge), "1h sum");
}

#[test]
fn thanos_test_downsample_mixed_chunk_types() {
    // TestDownsampleMixedChunkTypes: 20 histograms then 20 floats, every 15 s.
    let hs: Vec<(i64, FloatHistogram)> =
        test_fhs(20).into_iter().enumerate().map(|(i, h)| (15_000 * (i as i64 + 1), h)).collect();
    let fs: Vec<(i64, f64)> = (0..20).map(|i| (15_000 * (21 + i as i64), i as f64)).collect();
    let mut chunks = hist_chunks(&hs);
    let (a, b, d) = xor_chunk(&fs);
    chunks.push((a, b, Encoding::Xor as u8, d));
    let five = run(&chunks, 0, RES_5M).unwrap();
    assert_eq!(five.len(), 2);
    assert_eq!(read_floats(&five[0], AggrType::Count), vec![(299_999, 19.0), (300_000, 1.0)]);
    let counters = read_hist(&five[0], AggrType::Counter);
    assert_hist_eq(&counters[0].1, &test_fh(18), "counter 0");
    let mut h19 = test_fh(19);
    h19.counter_reset_hint = CounterResetHint::NotCounterReset;
    assert_hist_eq(&counters[1].1, &h19, "counter 1");
    let all: Vec<FloatHistogram> = hs.iter().map(|s| s.1.clone()).collect();
    let sums = read_hist(&five[0], AggrType::Sum);
    assert_hist_eq(&sums[0].1, &elementwise_sum(&all[..19], CounterResetHint::Gauge), "sum 0");
    h19.counter_reset_hint = CounterResetHint::Gauge;
    assert_hist_eq(&sums[1].1, &h19, "sum 1");
    assert_eq!(read_floats(&five[1], AggrType::Count), vec![(599_999, 19.0), (600_000, 1.0)]);
    assert_eq!(
        read_floats(&five[1], AggrType::Counter),
        vec![(315_000, 0.0), (599_999, 18.0), (600_000, 19.0), (600_000, 19.0)]
    );
    assert_eq!(read_floats(&five[1], AggrType::Sum), vec![(599_999, 171.0), (600_000, 19.0)]);

    let input: Vec<_> = five.iter().map(|c| (c.min_time, c.max_time, Encoding::Aggr as u8, c.data.clone())).collect();
    let hour = run(&input, RES_5M, RES_1H).unwrap();
    assert_eq!(hour.len(), 2);
    assert_eq!(read_floats(&hour[0], AggrType::Count), vec![(300_000, 20.0)]);
    let c = read_hist(&hour[0], AggrType::Counter);
    assert_hist_eq(&c[0].1, &test_fh(19), "1h counter");
    let s = read_hist(&hour[0], AggrType::Sum);
    assert_hist_eq(&s[0].1, &elementwise_sum(&all, CounterResetHint::Gauge), "1h sum");
    assert_eq!(read_floats(&hour[1], AggrType::Count), vec![(600_000, 20.0)]);
    assert_eq!(read_floats(&hour[1], AggrType::Counter), vec![(315_000, 0.0), (600_000, 19.0), (600_000, 19.0)]);
    assert_eq!(read_floats(&hour[1], AggrType::Sum), vec![(600_000, 190.0)]);
}

#[test]
fn histogram_slots_read_back_with_prometheus_3_hints() {
    // The first sample of a counter slot reads back `Unknown` in Prometheus 3; strata's
    // reader passes a `CounterReset` header through, so check the header itself.
    let hs: Vec<(i64, FloatHistogram)> =
        test_fhs(3).into_iter().enumerate().map(|(i, h)| (i as i64 * 1000, h)).collect();
    let five = run(&hist_chunks(&hs), 0, RES_5M).unwrap();
    let slots = aggr::parse(&five[0].data).unwrap();
    let counter = slots[AggrType::Counter as usize].unwrap();
    let sum = slots[AggrType::Sum as usize].unwrap();
    assert_eq!(
        FloatHistogramIter::new(counter.data).unwrap().counter_reset_header(),
        CounterResetHint::NotCounterReset
    );
    assert_eq!(FloatHistogramIter::new(sum.data).unwrap().counter_reset_header(), CounterResetHint::Gauge);
}
