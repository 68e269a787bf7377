//! Property tests: every encoder/decoder pair round-trips, chunk cutting keeps every
//! sample, and no input bytes make a reader panic or over-allocate.

use proptest::collection::vec;
use proptest::prelude::*;

use super::iter::sample_hint;
use super::layout::*;
use super::model::*;
use super::tests::*;
use super::*;
use crate::format::bstream::{BitReader, BitWriter};

#[derive(Clone, Debug)]
struct Lay {
    schema: i32,
    zero_threshold: f64,
    positive_spans: Vec<Span>,
    negative_spans: Vec<Span>,
    custom_values: Vec<f64>,
}

impl Lay {
    fn buckets(&self) -> (usize, usize) {
        let n = |s: &[Span]| s.iter().map(|s| s.length as usize).sum();
        (n(&self.positive_spans), n(&self.negative_spans))
    }
}

fn not_neg_zero(v: &f64) -> bool {
    v.to_bits() != (-0.0f64).to_bits()
}

fn arb_threshold() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        (-243i32..=10).prop_map(pow2),
        Just(pow2(-244)),
        Just(pow2(11)),
        1e-9f64..1.0,
        any::<f64>().prop_filter("-0 reads back as 0", not_neg_zero),
    ]
}

fn arb_spans() -> impl Strategy<Value = Vec<Span>> {
    vec((prop_oneof![-20i32..20, any::<i32>()], 0u32..5), 0..4)
        .prop_map(|v| v.into_iter().map(|(offset, length)| Span { offset, length }).collect())
}

fn arb_custom_bound() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u32..40_000_000).prop_map(|k| k as f64 / 1000.0),
        -1000.0f64..1000.0,
        any::<f64>().prop_filter("-0 reads back as 0", not_neg_zero),
    ]
}

fn arb_layout() -> impl Strategy<Value = Lay> {
    prop_oneof![
        4 => (-4i32..=8, arb_threshold(), arb_spans(), arb_spans()).prop_map(|(schema, zero_threshold, positive_spans, negative_spans)| Lay {
            schema,
            zero_threshold,
            positive_spans,
            negative_spans,
            custom_values: vec![],
        }),
        1 => (arb_spans(), vec(arb_custom_bound(), 0..6)).prop_map(|(positive_spans, custom_values)| Lay {
            schema: CUSTOM_BUCKETS_SCHEMA,
            zero_threshold: 0.0,
            positive_spans,
            negative_spans: vec![],
            custom_values,
        }),
    ]
}

fn arb_sum() -> impl Strategy<Value = f64> {
    prop_oneof![(-1000i32..1000).prop_map(|x| x as f64 / 4.0), any::<f64>()]
        .prop_filter("not a stale marker", |v| !is_stale(*v))
}

fn arb_dt() -> impl Strategy<Value = i64> {
    prop_oneof![Just(15_000i64), 0i64..100_000, any::<i64>()]
}

/// Raw material for one sample.
#[derive(Clone, Debug)]
struct Step {
    dt: i64,
    a: u64,
    b: u64,
    sum: f64,
    buckets: Vec<i64>,
    hint: u8,
}

fn arb_steps(n_buckets: usize) -> impl Strategy<Value = Vec<Step>> {
    vec(
        (arb_dt(), any::<u64>(), any::<u64>(), arb_sum(), vec(prop_oneof![-3i64..4, any::<i64>()], n_buckets), 0u8..4),
        1..30,
    )
    .prop_map(|v| v.into_iter().map(|(dt, a, b, sum, buckets, hint)| Step { dt, a, b, sum, buckets, hint }).collect())
}

/// A series that fits one chunk: (layout, gauge?, first timestamp, steps, stale from).
fn arb_chunk_material() -> impl Strategy<Value = (Lay, bool, i64, Vec<Step>, usize)> {
    (arb_layout(), any::<bool>(), any::<i64>()).prop_flat_map(|(lay, gauge, t0)| {
        let (p, n) = lay.buckets();
        (Just(lay), Just(gauge), Just(t0), arb_steps(p + n)).prop_flat_map(|(lay, gauge, t0, steps)| {
            let len = steps.len();
            (Just(lay), Just(gauge), Just(t0), Just(steps), prop_oneof![Just(len), 0..=len])
        })
    })
}

fn counter_hint(first: bool, h: u8) -> CounterResetHint {
    match (first, h % 3) {
        (true, 1) => CounterResetHint::CounterReset,
        (_, 2) => CounterResetHint::NotCounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// Integer samples that one chunk accepts: a gauge series with any values, or a
/// counter series whose count, zero count and buckets never go down; stale markers
/// (with junk layouts) from `stale_from` on.
fn int_series(lay: &Lay, gauge: bool, t0: i64, steps: &[Step], stale_from: usize) -> Vec<(i64, Histogram)> {
    let (np, _) = lay.buckets();
    let (mut t, mut count, mut zero_count) = (t0, 0u64, 0u64);
    let mut absolute = vec![0i64; steps.first().map_or(0, |s| s.buckets.len())];
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        t = t.wrapping_add(s.dt);
        if i >= stale_from {
            let junk = Histogram {
                sum: stale(),
                schema: s.hint as i32 * 40,
                positive_spans: lay.positive_spans.clone(),
                ..Histogram::default()
            };
            out.push((t, junk));
            continue;
        }
        let buckets = if gauge {
            count = s.a;
            zero_count = s.b;
            s.buckets.clone()
        } else {
            count = count.saturating_add(s.a >> (s.a % 64));
            zero_count = zero_count.saturating_add(s.b % 1000);
            for (abs, &d) in absolute.iter_mut().zip(&s.buckets) {
                *abs = abs.saturating_add((d % 1000).abs());
            }
            // In-model deltas, each side starting from zero.
            let deltas = |side: &[i64]| {
                let mut prev = 0i64;
                side.iter().map(|&a| a.wrapping_sub(std::mem::replace(&mut prev, a))).collect::<Vec<_>>()
            };
            [deltas(&absolute[..np]), deltas(&absolute[np..])].concat()
        };
        let hint = if gauge { CounterResetHint::Gauge } else { counter_hint(i == 0, s.hint) };
        out.push((
            t,
            Histogram {
                counter_reset_hint: hint,
                schema: lay.schema,
                zero_threshold: lay.zero_threshold,
                zero_count,
                count,
                sum: s.sum,
                positive_spans: lay.positive_spans.clone(),
                negative_spans: lay.negative_spans.clone(),
                positive_buckets: buckets[..np].to_vec(),
                negative_buckets: buckets[np..].to_vec(),
                custom_values: lay.custom_values.clone(),
            },
        ));
    }
    out
}

fn float_series(lay: &Lay, gauge: bool, t0: i64, steps: &[Step], stale_from: usize) -> Vec<(i64, FloatHistogram)> {
    let (np, _) = lay.buckets();
    let (mut t, mut count, mut zero_count) = (t0, 0.0f64, 0.0f64);
    let mut absolute = vec![0.0f64; steps.first().map_or(0, |s| s.buckets.len())];
    let mut out = Vec::new();
    for (i, s) in steps.iter().enumerate() {
        t = t.wrapping_add(s.dt);
        if i >= stale_from {
            out.push((t, FloatHistogram { sum: stale(), count: s.sum, ..FloatHistogram::default() }));
            continue;
        }
        if gauge {
            count = f64::from_bits(s.a);
            zero_count = (s.b % 100) as f64 / 8.0;
            for (abs, &d) in absolute.iter_mut().zip(&s.buckets) {
                *abs = if d % 7 == 0 { f64::from_bits(d as u64) } else { d as f64 / 3.0 };
            }
        } else {
            count += (s.a % 10_000) as f64 / 4.0;
            zero_count += (s.b % 100) as f64;
            for (abs, &d) in absolute.iter_mut().zip(&s.buckets) {
                *abs += (d % 1000).abs() as f64 * 0.1;
            }
        }
        let hint = if gauge { CounterResetHint::Gauge } else { counter_hint(i == 0, s.hint) };
        out.push((
            t,
            FloatHistogram {
                counter_reset_hint: hint,
                schema: lay.schema,
                zero_threshold: lay.zero_threshold,
                zero_count,
                count,
                sum: s.sum,
                positive_spans: lay.positive_spans.clone(),
                negative_spans: lay.negative_spans.clone(),
                positive_buckets: absolute[..np].to_vec(),
                negative_buckets: absolute[np..].to_vec(),
                custom_values: lay.custom_values.clone(),
            },
        ));
    }
    out
}

/// What the reader returns for sample `i` of a chunk with `header`.
fn expected_int(h: &Histogram, header: CounterResetHint, i: usize) -> Histogram {
    if h.is_stale() {
        Histogram { sum: h.sum, ..Histogram::default() }
    } else {
        Histogram { counter_reset_hint: sample_hint(header, i as u16 + 1), ..h.clone() }
    }
}

fn expected_float(h: &FloatHistogram, header: CounterResetHint, i: usize) -> FloatHistogram {
    if h.is_stale() {
        FloatHistogram { sum: h.sum, ..FloatHistogram::default() }
    } else {
        FloatHistogram { counter_reset_hint: sample_hint(header, i as u16 + 1), ..h.clone() }
    }
}

/// Float histograms compared bit for bit (NaN counts and buckets included).
pub(super) fn float_bits(h: &FloatHistogram) -> (FloatHistogram, Vec<u64>) {
    let mut bits = vec![h.count.to_bits(), h.zero_count.to_bits(), h.sum.to_bits(), h.zero_threshold.to_bits()];
    bits.extend(h.positive_buckets.iter().chain(&h.negative_buckets).chain(&h.custom_values).map(|v| v.to_bits()));
    let blank = FloatHistogram {
        count: 0.0,
        zero_count: 0.0,
        sum: 0.0,
        zero_threshold: 0.0,
        positive_buckets: vec![],
        negative_buckets: vec![],
        custom_values: vec![],
        ..h.clone()
    };
    (blank, bits)
}

pub(super) fn int_bits(h: &Histogram) -> (Histogram, Vec<u64>) {
    let mut bits = vec![h.sum.to_bits(), h.zero_threshold.to_bits()];
    bits.extend(h.custom_values.iter().map(|v| v.to_bits()));
    (Histogram { sum: 0.0, zero_threshold: 0.0, custom_values: vec![], ..h.clone() }, bits)
}

/// The reader never returns more than the input bytes can hold.
fn bounded_int(data: &[u8], h: &Histogram) -> bool {
    let bits = data.len() * 8;
    h.positive_buckets.len() + h.negative_buckets.len() <= bits
        && (h.positive_spans.len() + h.negative_spans.len()) * 2 <= bits
        && h.custom_values.len() * 5 <= bits
}

fn bounded_float(data: &[u8], h: &FloatHistogram) -> bool {
    let bits = data.len() * 8;
    (h.positive_buckets.len() + h.negative_buckets.len()) * 64 <= bits
        && (h.positive_spans.len() + h.negative_spans.len()) * 2 <= bits
        && h.custom_values.len() * 5 <= bits
}

proptest! {
    #[test]
    fn varbit_round_trips(ints in vec(any::<i64>(), 0..50), uints in vec(any::<u64>(), 0..50)) {
        let mut w = BitWriter::default();
        for (&i, &u) in ints.iter().zip(&uints) {
            write_varbit_int(&mut w, i);
            write_varbit_uint(&mut w, u);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes, 0, "test");
        for (&i, &u) in ints.iter().zip(&uints) {
            prop_assert_eq!(read_varbit_int(&mut r, "i").unwrap(), i);
            prop_assert_eq!(read_varbit_uint(&mut r, "u").unwrap(), u);
        }
    }

    #[test]
    fn layout_fields_round_trip(v in any::<f64>()) {
        let mut w = BitWriter::default();
        write_zero_threshold(&mut w, v);
        write_custom_bound(&mut w, v);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes, 0, "test");
        prop_assert_eq!(read_zero_threshold(&mut r).unwrap().to_bits(), normalized_threshold(v).to_bits());
        prop_assert_eq!(read_custom_bound(&mut r).unwrap().to_bits(), normalized_custom_bound(v).to_bits());
    }

    #[test]
    fn integer_chunk_round_trips((lay, gauge, t0, steps, stale_from) in arb_chunk_material()) {
        let series = int_series(&lay, gauge, t0, &steps, stale_from);
        let mut e = HistogramEncoder::new();
        for (t, h) in &series {
            prop_assert_eq!(e.append(*t, h), Ok(()));
        }
        let header = e.counter_reset_header();
        let chunk = e.finish();
        prop_assert_eq!(encode_histograms(&series).unwrap(), vec![chunk.clone()]);
        let back = decode_histograms(&chunk).unwrap();
        prop_assert_eq!(back.len(), series.len());
        for (i, ((t, got), (u, want))) in back.iter().zip(&series).enumerate() {
            prop_assert_eq!(t, u);
            prop_assert_eq!(int_bits(got), int_bits(&expected_int(want, header, i)));
        }
        // Decoding then encoding again is byte-identical.
        let mut again = HistogramEncoder::new();
        for (t, h) in &back {
            prop_assert_eq!(again.append(*t, h), Ok(()));
        }
        again.set_counter_reset_header(HistogramIter::new(&chunk).unwrap().counter_reset_header());
        prop_assert_eq!(hex(&again.finish()), hex(&chunk));
    }

    #[test]
    fn float_chunk_round_trips((lay, gauge, t0, steps, stale_from) in arb_chunk_material()) {
        let series = float_series(&lay, gauge, t0, &steps, stale_from);
        let mut e = FloatHistogramEncoder::new();
        for (t, h) in &series {
            prop_assert_eq!(e.append(*t, h), Ok(()));
        }
        let header = e.counter_reset_header();
        let chunk = e.finish();
        prop_assert_eq!(encode_float_histograms(&series).unwrap(), vec![chunk.clone()]);
        let back = decode_float_histograms(&chunk).unwrap();
        prop_assert_eq!(back.len(), series.len());
        for (i, ((t, got), (u, want))) in back.iter().zip(&series).enumerate() {
            prop_assert_eq!(t, u);
            prop_assert_eq!(float_bits(got), float_bits(&expected_float(want, header, i)));
        }
        let mut again = FloatHistogramEncoder::new();
        for (t, h) in &back {
            prop_assert_eq!(again.append(*t, h), Ok(()));
        }
        again.set_counter_reset_header(FloatHistogramIter::new(&chunk).unwrap().counter_reset_header());
        prop_assert_eq!(hex(&again.finish()), hex(&chunk));
    }

    /// Any series of valid samples survives `encode_histograms`: the chunks hold the
    /// samples in order, each chunk keeps the format's rules, and each re-encodes to the
    /// same bytes.
    #[test]
    fn mixed_series_survive_chunk_cutting(
        lays in (arb_layout(), arb_layout()),
        picks in vec((any::<bool>(), 0u8..4, 0u8..10, any::<u64>(), any::<u64>(), arb_sum(), vec(-5i64..20, 0..40)), 1..60),
    ) {
        let mut t = 0i64;
        let series: Vec<(i64, Histogram)> = picks.iter().map(|(second, hint, kind, a, b, sum, raw)| {
            t += 1000;
            let lay = if *second { &lays.1 } else { &lays.0 };
            let (np, nn) = lay.buckets();
            let bucket = |i: usize| raw.get(i).copied().unwrap_or(1);
            let h = Histogram {
                counter_reset_hint: [CounterResetHint::Unknown, CounterResetHint::CounterReset, CounterResetHint::NotCounterReset, CounterResetHint::Gauge][*hint as usize],
                schema: lay.schema,
                zero_threshold: lay.zero_threshold,
                zero_count: b % 4,
                count: a % 8,
                sum: if *kind == 0 { stale() } else { *sum },
                positive_spans: lay.positive_spans.clone(),
                negative_spans: lay.negative_spans.clone(),
                positive_buckets: (0..np).map(bucket).collect(),
                negative_buckets: (np..np + nn).map(bucket).collect(),
                custom_values: lay.custom_values.clone(),
            };
            (t, h)
        }).collect();
        let chunks = encode_histograms(&series).unwrap();
        let mut at = 0;
        for c in &chunks {
            let it = HistogramIter::new(c).unwrap();
            let header = it.counter_reset_header();
            let back: Vec<_> = it.collect::<FormatResult<_>>().unwrap();
            prop_assert!(!back.is_empty());
            let mut again = HistogramEncoder::new();
            let mut seen_stale = false;
            for (i, (t, got)) in back.iter().enumerate() {
                let (u, want) = &series[at + i];
                prop_assert_eq!(t, u);
                prop_assert_eq!(int_bits(got), int_bits(&expected_int(want, header, i)));
                prop_assert!(!seen_stale || got.is_stale(), "only stale markers after a stale marker");
                seen_stale |= got.is_stale();
                prop_assert_eq!(again.append(*t, got), Ok(()));
            }
            again.set_counter_reset_header(header);
            prop_assert_eq!(hex(&again.finish()), hex(c));
            at += back.len();
        }
        prop_assert_eq!(at, series.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic_nor_overallocate(mut data in vec(any::<u8>(), 0..300), count in any::<u16>()) {
        if data.len() >= 2 {
            data[..2].copy_from_slice(&count.to_be_bytes());
        }
        if let Ok(it) = HistogramIter::new(&data) {
            for s in it {
                match s {
                    Ok((_, h)) => prop_assert!(bounded_int(&data, &h)),
                    Err(_) => break,
                }
            }
        }
        if let Ok(it) = FloatHistogramIter::new(&data) {
            for s in it {
                match s {
                    Ok((_, h)) => prop_assert!(bounded_float(&data, &h)),
                    Err(_) => break,
                }
            }
        }
    }

    #[test]
    fn damaged_chunks_never_panic(
        (lay, gauge, t0, steps, stale_from) in arb_chunk_material(),
        flips in vec((any::<prop::sample::Index>(), 0u8..8), 0..4),
        keep in any::<prop::sample::Index>(),
    ) {
        let int = encode_histograms(&int_series(&lay, gauge, t0, &steps, stale_from)).unwrap().remove(0);
        let float = encode_float_histograms(&float_series(&lay, gauge, t0, &steps, stale_from)).unwrap().remove(0);
        for (mut c, is_int) in [(int, true), (float, false)] {
            for (i, bit) in &flips {
                let i = i.index(c.len());
                c[i] ^= 1 << bit;
            }
            c.truncate(keep.index(c.len() + 1));
            if is_int {
                for s in HistogramIter::new(&c).into_iter().flatten() {
                    match s { Ok((_, h)) => prop_assert!(bounded_int(&c, &h)), Err(_) => break }
                }
            } else {
                for s in FloatHistogramIter::new(&c).into_iter().flatten() {
                    match s { Ok((_, h)) => prop_assert!(bounded_float(&c, &h)), Err(_) => break }
                }
            }
        }
    }

    #[test]
    fn display_never_panics(
        schema in prop_oneof![-4i32..=8, Just(CUSTOM_BUCKETS_SCHEMA), any::<i32>()],
        spans in vec((any::<i32>(), 0u32..4), 0..4),
        buckets in vec(any::<f64>(), 0..12),
        custom_values in vec(any::<f64>(), 0..4),
        zero in (any::<f64>(), any::<f64>()),
    ) {
        let h = FloatHistogram {
            schema,
            zero_threshold: zero.0,
            zero_count: zero.1,
            positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            negative_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            positive_buckets: buckets.clone(),
            negative_buckets: buckets,
            custom_values,
            ..FloatHistogram::default()
        };
        let s = h.to_string();
        let well_formed = s.starts_with("{count:") && s.ends_with('}');
        prop_assert!(well_formed, "{}", s);
    }

    #[test]
    fn format_go_g_reads_back(v in any::<f64>()) {
        let s = format_go_g(v);
        let back: f64 = s.parse().unwrap();
        prop_assert!(back.to_bits() == v.to_bits() || (v.is_nan() && back.is_nan()), "{} -> {}", v, s);
    }
}
