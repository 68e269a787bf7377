//! Unit tests: Prometheus byte vectors, the append rules, the reader's hints and errors,
//! the text form.

use super::iter::sample_hint;
use super::layout::*;
use super::model::*;
use super::props::int_bits;
use super::text::*;
use super::*;
use crate::format::bstream::{BitReader, BitWriter};
use crate::format::xor::MAX_SAMPLES;

pub(super) fn stale() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

pub(super) fn pow2(e: i32) -> f64 {
    f64::from_bits(((e + 1023) as u64) << 52)
}

pub(super) fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(super) fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

pub(super) fn spans(s: &[(i32, u32)]) -> Vec<Span> {
    s.iter().map(|&(offset, length)| Span { offset, length }).collect()
}

/// A counter histogram of schema 0 with one positive span over `buckets` (deltas).
pub(super) fn counter(count: u64, buckets: &[i64]) -> Histogram {
    Histogram {
        count,
        sum: count as f64,
        positive_spans: spans(&[(0, buckets.len() as u32)]),
        positive_buckets: buckets.to_vec(),
        ..Histogram::default()
    }
}

pub(super) fn float_counter(count: f64, buckets: &[f64]) -> FloatHistogram {
    FloatHistogram {
        count,
        sum: count,
        positive_spans: spans(&[(0, buckets.len() as u32)]),
        positive_buckets: buckets.to_vec(),
        ..FloatHistogram::default()
    }
}

pub(super) fn hints_int(data: &[u8]) -> Vec<CounterResetHint> {
    decode_histograms(data).unwrap().iter().map(|(_, h)| h.counter_reset_hint).collect()
}

// ---- varbit -------------------------------------------------------------------

#[test]
fn varbit_bucket_edges_round_trip_in_their_widths() {
    let ints: [(i64, u64); 26] = [
        (0, 1),
        (1, 5),
        (4, 5),
        (-3, 5),
        (5, 9),
        (-4, 9),
        (32, 9),
        (-31, 9),
        (33, 13),
        (256, 13),
        (-255, 13),
        (257, 17),
        (2048, 17),
        (-2047, 17),
        (2049, 24),
        (131072, 24),
        (-131071, 24),
        (131073, 32),
        (16777216, 32),
        (-16777215, 32),
        (16777217, 64),
        (1 << 55, 64),
        (-(1 << 55) + 1, 64),
        ((1 << 55) + 1, 72),
        (i64::MIN, 72),
        (i64::MAX, 72),
    ];
    for (v, bits) in ints {
        let mut w = BitWriter::default();
        write_varbit_int(&mut w, v);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes, 0, "test");
        assert_eq!(read_varbit_int(&mut r, "v").unwrap(), v);
        assert_eq!(r.bit_position(), bits, "width of {v}");
    }
    let uints: [(u64, u64); 17] = [
        (0, 1),
        (1, 5),
        (7, 5),
        (8, 9),
        (63, 9),
        (64, 13),
        (511, 13),
        (512, 17),
        (4095, 17),
        (4096, 24),
        (262143, 24),
        (262144, 32),
        (33554431, 32),
        (33554432, 64),
        ((1 << 56) - 1, 64),
        (1 << 56, 72),
        (u64::MAX, 72),
    ];
    for (v, bits) in uints {
        let mut w = BitWriter::default();
        write_varbit_uint(&mut w, v);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes, 0, "test");
        assert_eq!(read_varbit_uint(&mut r, "v").unwrap(), v);
        assert_eq!(r.bit_position(), bits, "width of {v}");
    }
}

#[test]
fn varbit_sign_rule_keeps_the_top_of_the_range_positive() {
    // Prefix `10`, then three payload bits: 100 is +4, 101 is -3, 111 is -1.
    for (bits, want) in [(0b10_100u64, 4i64), (0b10_101, -3), (0b10_111, -1), (0b10_001, 1)] {
        let mut w = BitWriter::default();
        w.write_bits(bits, 5);
        let bytes = w.into_bytes();
        assert_eq!(read_varbit_int(&mut BitReader::new(&bytes, 0, "test"), "v").unwrap(), want);
    }
}

// ---- layout fields ------------------------------------------------------------

#[test]
fn zero_threshold_one_byte_codes() {
    let cases = [
        (0.0, Some(0)),
        (-0.0, Some(0)),
        (pow2(-128), Some(116)),
        (pow2(-243), Some(1)),
        (pow2(10), Some(254)),
        (1.0, Some(244)),
        (pow2(-244), None),
        (pow2(11), None),
        (0.001, None),
        (-1.0, None),
        (1.5 * pow2(-128), None),
        (f64::NAN, None),
        (f64::INFINITY, None),
        (5e-324, None),
    ];
    for (v, code) in cases {
        assert_eq!(zero_threshold_code(v), code, "{v:e}");
        let mut w = BitWriter::default();
        write_zero_threshold(&mut w, v);
        let bytes = w.into_bytes();
        // One byte (plus the writer's trailing byte) or 0xFF and 64 bits.
        assert_eq!(bytes.len(), if code.is_some() { 2 } else { 10 }, "{v:e}");
        let back = read_zero_threshold(&mut BitReader::new(&bytes, 0, "test")).unwrap();
        assert_eq!(back.to_bits(), normalized_threshold(v).to_bits(), "{v:e}");
    }
}

#[test]
fn custom_bound_forms() {
    let cases = [
        (0.0, Some(1)),
        (-0.0, Some(1)),
        (0.001, Some(2)),
        (0.1, Some(101)),
        (2.5, Some(2501)),
        (33554.43, Some(33554431)),
        (33554.431, None),
        (0.0001, None),
        (-0.001, None),
        (f64::NAN, None),
        (f64::INFINITY, None),
        (1e300, None),
    ];
    for (v, code) in cases {
        assert_eq!(custom_bound_code(v), code, "{v:e}");
        let mut w = BitWriter::default();
        write_custom_bound(&mut w, v);
        let bytes = w.into_bytes();
        let back = read_custom_bound(&mut BitReader::new(&bytes, 0, "test")).unwrap();
        assert_eq!(back.to_bits(), normalized_custom_bound(v).to_bits(), "{v:e}");
    }
}

// ---- vectors from Prometheus --------------------------------------------------

/// Chunks written by Prometheus v2.42.0's own `chunkenc` appenders for these samples.
///
/// The first, by hand: header `00 01 00`; zero threshold 0 is the byte `00`; then
/// schema 0 `0`, no positive spans `0`, no negative spans `0`, t=1000 as `11110` and
/// twelve bits `001111101000`, count `0`, zero count `0`, sum 0.0 as 64 zero bits:
/// `00011110 00111110 10000000` and zeros, 86 bits in 11 bytes.
fn prometheus_vectors() -> Vec<(&'static str, Vec<(i64, Histogram)>)> {
    let zt = pow2(-128);
    let h2 = |hint, count, sum, buckets: &[i64]| Histogram {
        counter_reset_hint: hint,
        schema: 3,
        zero_threshold: zt,
        count,
        sum,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: buckets.to_vec(),
        ..Histogram::default()
    };
    let gauge = |zero_count, count, buckets: &[i64]| Histogram {
        counter_reset_hint: CounterResetHint::Gauge,
        schema: -2,
        zero_threshold: 0.001,
        zero_count,
        count,
        sum: -1.0,
        negative_spans: spans(&[(-1, 1), (2, 2)]),
        negative_buckets: buckets.to_vec(),
        ..Histogram::default()
    };
    vec![
        ("000100001e3e800000000000000000", vec![(1000, Histogram::default())]),
        (
            "000200749c6478fa2640040000000000008c7c7d126b12e370",
            vec![
                (1000, h2(CounterResetHint::Unknown, 3, 2.5, &[1, 1])),
                (2000, h2(CounterResetHint::NotCounterReset, 5, 4.5, &[2, 0])),
            ],
        ),
        (
            "0003c0ff3f50624dd2f1a9fcb251bca5bbbcaffc00000000000027763eb75a56183fc000000000000002",
            vec![
                (-5, gauge(2, 7, &[3, -1, 0])),
                (10, gauge(1, 4, &[1, 1, -2])),
                (25, Histogram { sum: stale(), ..Histogram::default() }),
            ],
        ),
        (
            "000180fec41878c4ff40000000000000",
            vec![(
                7,
                Histogram {
                    counter_reset_hint: CounterResetHint::CounterReset,
                    schema: 8,
                    zero_threshold: pow2(10),
                    count: 1,
                    zero_count: 1,
                    sum: 0.25,
                    ..Histogram::default()
                },
            )],
        ),
    ]
}

#[test]
fn integer_chunks_match_prometheus_bytes() {
    for (want, samples) in prometheus_vectors() {
        let chunks = encode_histograms(&samples).unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(hex(&chunks[0]), want);
        let decoded = decode_histograms(&unhex(want)).unwrap();
        let bits = |v: &[(i64, Histogram)]| v.iter().map(|(t, h)| (*t, int_bits(h))).collect::<Vec<_>>();
        assert_eq!(bits(&decoded), bits(&samples), "{want}");
    }
}

#[test]
fn float_chunks_match_prometheus_bytes() {
    let zt = pow2(-128);
    let f = |hint, count, sum, buckets: &[f64]| FloatHistogram {
        counter_reset_hint: hint,
        schema: 3,
        zero_threshold: zt,
        count,
        sum,
        positive_spans: spans(&[(0, 2)]),
        positive_buckets: buckets.to_vec(),
        ..FloatHistogram::default()
    };
    let samples = vec![
        (1000, f(CounterResetHint::Unknown, 3.0, 2.5, &[1.0, 2.0])),
        (2000, f(CounterResetHint::NotCounterReset, 5.0, 4.5, &[2.0, 2.0])),
    ];
    let want = "000200749c6478fa1002000000000000000000000000000010010000000000000ffc00000000000010000000000000003c7d1ac3ed625e12fff8";
    assert_eq!(hex(&encode_float_histograms(&samples).unwrap()[0]), want);
    assert_eq!(decode_float_histograms(&unhex(want)).unwrap(), samples);

    // A chunk that starts with a stale marker: empty layout, zero count and zero
    // count written raw, then XOR-encoded for the next marker.
    let stale_samples = vec![
        (0, FloatHistogram { sum: stale(), ..FloatHistogram::default() }),
        (15, FloatHistogram { sum: stale(), ..FloatHistogram::default() }),
    ];
    let want = "000200000000000000000000000000000000000007ff0000000000002c78";
    assert_eq!(hex(&encode_float_histograms(&stale_samples).unwrap()[0]), want);
    let back = decode_float_histograms(&unhex(want)).unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|(_, h)| h.is_stale() && h.positive_buckets.is_empty()));
}

#[test]
fn empty_chunk_is_three_zero_bytes() {
    assert_eq!(HistogramEncoder::new().finish(), vec![0, 0, 0]);
    assert_eq!(FloatHistogramEncoder::new().finish(), vec![0, 0, 0]);
    assert!(decode_histograms(&[0, 0, 0]).unwrap().is_empty());
    assert!(decode_float_histograms(&[0, 0, 0xC0]).unwrap().is_empty());
    assert!(encode_histograms(&[]).unwrap().is_empty());
}

// ---- counter-reset hints ------------------------------------------------------

#[test]
fn reader_hints_follow_prometheus_2_42() {
    use CounterResetHint::*;
    let mut e = HistogramEncoder::new();
    for (t, c) in [(1, 1), (2, 2), (3, 3)] {
        e.append(t, &counter(c, &[1])).unwrap();
    }
    e.append(4, &Histogram { sum: stale(), ..Histogram::default() }).unwrap();
    let base = e.finish();
    for (header, want) in [
        (Unknown, [Unknown, NotCounterReset, NotCounterReset]),
        (CounterReset, [CounterReset, NotCounterReset, NotCounterReset]),
        (NotCounterReset, [Unknown, NotCounterReset, NotCounterReset]),
        (Gauge, [Gauge, Gauge, Gauge]),
    ] {
        let mut c = base.clone();
        c[2] = header.header_bits() | 0x15; // the low six bits are ignored
        assert_eq!(HistogramIter::new(&c).unwrap().counter_reset_header(), header);
        let mut got = hints_int(&c);
        assert_eq!(got.pop(), Some(Unknown), "a stale marker carries no hint");
        assert_eq!(got, want, "header {header:?}");
    }
}

#[test]
fn header_comes_from_the_first_sample_and_can_be_overridden() {
    let mut e = HistogramEncoder::new();
    e.append(1, &Histogram { counter_reset_hint: CounterResetHint::CounterReset, ..counter(1, &[]) }).unwrap();
    assert_eq!(e.bytes()[2], 0x80);
    e.set_counter_reset_header(CounterResetHint::NotCounterReset);
    assert_eq!(e.counter_reset_header(), CounterResetHint::NotCounterReset);
    assert_eq!(e.finish()[2], 0x40);
}

// ---- encoder refusals ---------------------------------------------------------

#[test]
fn counter_chunk_refusals_leave_the_chunk_unchanged() {
    use AppendError::*;
    let mut e = HistogramEncoder::new();
    let first = Histogram { zero_count: 5, ..counter(10, &[2, 1]) };
    e.append(1000, &first).unwrap();
    e.append(2000, &Histogram { count: 12, zero_count: 5, ..counter(12, &[2, 2]) }).unwrap();
    let before = e.bytes().to_vec();
    let prev = Histogram { zero_count: 5, ..counter(12, &[2, 2]) };
    let cases: Vec<(&str, Histogram, AppendError)> = vec![
        ("count went down", Histogram { count: 11, ..prev.clone() }, CounterReset),
        ("zero count went down", Histogram { zero_count: 4, ..prev.clone() }, CounterReset),
        ("second bucket went from 4 to 3", Histogram { positive_buckets: vec![3, 0], ..prev.clone() }, CounterReset),
        (
            "hint says reset",
            Histogram { counter_reset_hint: CounterResetHint::CounterReset, ..prev.clone() },
            CounterReset,
        ),
        ("schema changed", Histogram { schema: 1, ..prev.clone() }, LayoutChanged),
        ("threshold changed", Histogram { zero_threshold: 0.5, ..prev.clone() }, LayoutChanged),
        ("spans changed", Histogram { positive_spans: spans(&[(1, 2)]), ..prev.clone() }, LayoutChanged),
        ("count went down and layout changed", Histogram { count: 1, schema: 2, ..prev.clone() }, CounterReset),
        (
            "gauge into counter chunk",
            Histogram { counter_reset_hint: CounterResetHint::Gauge, ..prev.clone() },
            KindChanged,
        ),
        (
            "spans cover 3 buckets, 2 given",
            Histogram { positive_spans: spans(&[(0, 3)]), ..prev.clone() },
            Invalid(String::new()),
        ),
        ("unknown schema", Histogram { schema: 60, ..prev.clone() }, Invalid(String::new())),
        (
            "custom bounds with exponential schema",
            Histogram { custom_values: vec![1.0], ..prev.clone() },
            Invalid(String::new()),
        ),
    ];
    for (name, h, want) in cases {
        let got = e.append(3000, &h).unwrap_err();
        match want {
            Invalid(_) => assert!(matches!(got, Invalid(_)), "{name}: {got:?}"),
            _ => assert_eq!(got, want, "{name}"),
        }
        assert_eq!(got.needs_new_chunk(), !matches!(got, Invalid(_)));
        assert_eq!(e.bytes(), &before[..], "{name}");
        assert_eq!(e.num_samples(), 2);
    }
    // -0.0 and 0.0 thresholds write the same layout.
    e.append(3000, &Histogram { zero_threshold: -0.0, ..prev.clone() }).unwrap();
    // A stale marker fits any chunk, even with a layout that does not match its buckets.
    e.append(4000, &Histogram { sum: stale(), schema: 7, positive_spans: spans(&[(0, 9)]), ..Histogram::default() })
        .unwrap();
    assert_eq!(e.append(5000, &prev), Err(AfterStale));
    e.append(5000, &Histogram { sum: stale(), ..Histogram::default() }).unwrap();
    assert_eq!(e.num_samples(), 5);
}

#[test]
fn gauge_chunks_take_decreases_but_not_counters_or_new_layouts() {
    let g =
        |count, buckets: &[i64]| Histogram { counter_reset_hint: CounterResetHint::Gauge, ..counter(count, buckets) };
    let mut e = HistogramEncoder::new();
    e.append(1, &g(10, &[5, 5])).unwrap();
    e.append(2, &g(3, &[1, -1])).unwrap();
    assert_eq!(e.counter_reset_header(), CounterResetHint::Gauge);
    assert_eq!(e.append(3, &counter(20, &[5, 5])), Err(AppendError::KindChanged));
    assert_eq!(e.append(3, &Histogram { schema: 1, ..g(20, &[5, 5]) }), Err(AppendError::LayoutChanged));
    assert_eq!(hints_int(&e.finish()), vec![CounterResetHint::Gauge; 2]);
}

#[test]
fn float_counter_refusals() {
    let mut e = FloatHistogramEncoder::new();
    e.append(1, &float_counter(10.0, &[1.0, 2.0])).unwrap();
    assert_eq!(e.append(2, &float_counter(9.0, &[1.0, 2.0])), Err(AppendError::CounterReset));
    assert_eq!(e.append(2, &float_counter(11.0, &[1.0, 1.5])), Err(AppendError::CounterReset));
    assert_eq!(e.append(2, &float_counter(11.0, &[1.0])), Err(AppendError::LayoutChanged));
    // NaN compares false, so it is no reset, as in Prometheus.
    e.append(2, &float_counter(f64::NAN, &[1.0, 2.0])).unwrap();
    e.append(3, &float_counter(1.0, &[1.0, 2.0])).unwrap();
    assert_eq!(e.num_samples(), 3);
}

#[test]
fn custom_bounds_are_part_of_the_layout() {
    let h = |cv: Vec<f64>| Histogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 3,
        positive_spans: spans(&[(0, 3)]),
        positive_buckets: vec![1, 0, 0],
        custom_values: cv,
        ..Histogram::default()
    };
    let mut e = HistogramEncoder::new();
    e.append(1, &h(vec![0.0, 2.5, 1e300])).unwrap();
    e.append(2, &h(vec![-0.0, 2.5, 1e300])).unwrap();
    assert_eq!(e.append(3, &h(vec![0.0, 2.5])), Err(AppendError::LayoutChanged));
    assert_eq!(e.append(3, &h(vec![0.0, 2.5, 1e301])), Err(AppendError::LayoutChanged));
    let back = decode_histograms(&e.finish()).unwrap();
    assert_eq!(back[1].1.custom_values, vec![0.0, 2.5, 1e300]);
}

#[test]
fn full_chunk_refuses_sample_65536() {
    let mut e = HistogramEncoder::new();
    let h = Histogram::default();
    for t in 0..MAX_SAMPLES as i64 {
        e.append(t, &h).unwrap();
    }
    assert_eq!(e.append(1 << 20, &h), Err(AppendError::Full));
    let c = e.finish();
    assert_eq!(&c[..2], &[0xff, 0xff]);
    assert_eq!(HistogramIter::new(&c).unwrap().count(), MAX_SAMPLES);
    let series: Vec<_> = (0..MAX_SAMPLES as i64 + 2).map(|t| (t, h.clone())).collect();
    let chunks = encode_histograms(&series).unwrap();
    assert_eq!(chunks.iter().map(|c| HistogramIter::new(c).unwrap().total()).collect::<Vec<_>>(), vec![MAX_SAMPLES, 2]);
}

// ---- whole series -------------------------------------------------------------

#[test]
fn encode_histograms_cuts_where_the_format_needs() {
    let series = vec![
        (1, counter(1, &[1])),
        (2, counter(2, &[2])),
        (3, counter(1, &[1])),    // reset: new chunk, header CounterReset
        (4, counter(2, &[1, 1])), // layout: new chunk, header from hint
        (5, Histogram { sum: stale(), ..Histogram::default() }),
        (6, counter(3, &[1, 1])), // after stale: new chunk
        (7, Histogram { counter_reset_hint: CounterResetHint::Gauge, ..counter(0, &[0, 0]) }), // kind
    ];
    let chunks = encode_histograms(&series).unwrap();
    let shape: Vec<(usize, u8)> = chunks.iter().map(|c| (HistogramIter::new(c).unwrap().total(), c[2])).collect();
    assert_eq!(shape, vec![(2, 0x00), (1, 0x80), (2, 0x00), (1, 0x00), (1, 0xC0)]);
    let back: Vec<(i64, Histogram)> = chunks.iter().flat_map(|c| decode_histograms(c).unwrap()).collect();
    assert_eq!(back.len(), series.len());
    for ((t, a), (u, b)) in back.iter().zip(&series) {
        assert_eq!(t, u);
        assert_eq!(
            int_bits(&Histogram { counter_reset_hint: b.counter_reset_hint, ..a.clone() }),
            int_bits(b),
            "t={t}"
        );
    }
    assert!(matches!(
        encode_histograms(&[(1, Histogram { schema: 99, ..Histogram::default() })]),
        Err(AppendError::Invalid(_))
    ));
}

#[test]
fn to_float_accumulates_deltas() {
    let h = Histogram {
        counter_reset_hint: CounterResetHint::NotCounterReset,
        count: 9,
        zero_count: 2,
        sum: 1.5,
        positive_spans: spans(&[(0, 3)]),
        positive_buckets: vec![1, 2, -1],
        negative_spans: spans(&[(2, 2)]),
        negative_buckets: vec![4, -4],
        ..Histogram::default()
    };
    let f = h.to_float();
    assert_eq!(f.positive_buckets, vec![1.0, 3.0, 2.0]);
    assert_eq!(f.negative_buckets, vec![4.0, 0.0]);
    assert_eq!(
        (f.count, f.zero_count, f.sum, f.counter_reset_hint),
        (9.0, 2.0, 1.5, CounterResetHint::NotCounterReset)
    );
    assert_eq!(f.positive_spans, h.positive_spans);
}

// ---- text form ----------------------------------------------------------------

#[test]
fn display_matches_prometheus_string() {
    let f =
        |schema, zero_threshold, zero_count, count, sum, p: &[(i32, u32)], pb: &[f64], n: &[(i32, u32)], nb: &[f64]| {
            FloatHistogram {
                schema,
                zero_threshold,
                zero_count,
                count,
                sum,
                positive_spans: spans(p),
                positive_buckets: pb.to_vec(),
                negative_spans: spans(n),
                negative_buckets: nb.to_vec(),
                ..FloatHistogram::default()
            }
        };
    // Outputs of Prometheus v2.42.0's FloatHistogram.String() for the same values.
    let cases = [
        (
            f(0, 0.001, 2.0, 5.0, 10.0, &[(0, 2)], &[1.0, 2.0], &[(0, 1)], &[1.0]),
            "{count:5, sum:10, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:1, (1,2]:2}",
        ),
        (
            f(3, 0.0, 0.0, 1.5e6, f64::NAN, &[(-3, 2), (1, 3)], &[1.0, 0.0, 2.25, 1234567.0, 0.00001], &[(5, 2)], &[0.0, 7.0]),
            "{count:1.5e+06, sum:NaN, [-1.6817928305074288,-1.5422108254079407):7, (0.7071067811865475,0.7711054127039704]:1, \
             (0.9170040432046711,1]:2.25, (1,1.0905077326652577]:1.234567e+06, (1.0905077326652577,1.189207115002721]:1e-05}",
        ),
        (
            f(-4, 0.0, 3.0, 3.0, -0.0, &[(63, 2), (0, 0), (1, 1)], &[1.0, 2.0, 3.0], &[], &[]),
            "{count:3, sum:-0, [-0,0]:3, (4.185580496821357e+298,2.7430620343968443e+303]:1, \
             (2.7430620343968443e+303,1.7976931348623157e+308]:2, (+Inf,+Inf]:3}",
        ),
        (
            f(8, pow2(-128), 1e-7, 123456789012345678901234.0, f64::INFINITY, &[(262143, 3)], &[1.0, 2.0, 3.0], &[(-262145, 2)], &[1.0, 2.0]),
            "{count:1.2345678901234569e+23, sum:+Inf, [-5.562684646268003e-309,-5.54764345897028e-309):2, \
             [-5.54764345897028e-309,-5.532642942199414e-309):1, [-2.938735877055719e-39,2.938735877055719e-39]:1e-07, \
             (1.787984555534544e+308,1.7928322734501122e+308]:1, (1.7928322734501122e+308,1.7976931348623157e+308]:2, \
             (1.7976931348623157e+308,+Inf]:3}",
        ),
    ];
    for (h, want) in cases {
        assert_eq!(h.to_string(), want);
    }
    // Custom buckets (Prometheus 3 rules; 2.42 has none): the first bucket is closed
    // below at -Inf, the last one reaches +Inf.
    let custom = FloatHistogram {
        schema: CUSTOM_BUCKETS_SCHEMA,
        count: 6.0,
        positive_spans: spans(&[(0, 4)]),
        positive_buckets: vec![1.0, 0.0, 2.0, 3.0],
        custom_values: vec![1.0, 2.5, 5.0],
        ..FloatHistogram::default()
    };
    assert_eq!(custom.to_string(), "{count:6, sum:0, [-Inf,1]:1, (2.5,5]:2, (5,+Inf]:3}");
    let stale_marker = FloatHistogram { sum: stale(), ..FloatHistogram::default() };
    assert_eq!(stale_marker.to_string(), "{count:0, sum:NaN}");
}

#[test]
fn format_go_g_matches_go() {
    // Outputs of Go's fmt.Sprintf("%g", v).
    let cases = [
        (1.0, "1"),
        (1500000.0, "1.5e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (f64::NAN, "NaN"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (123456789012345678901234.0, "1.2345678901234569e+23"),
        (123456.0, "123456"),
        (-0.0, "-0"),
        (0.0, "0"),
        (pow2(-25), "2.9802322387695312e-08"),
        (5e-324, "5e-324"),
        (f64::MAX, "1.7976931348623157e+308"),
        (0.1, "0.1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (-2.5, "-2.5"),
        (1e21, "1e+21"),
        // Exactly halfway between two 17-digit strings: Go rounds to even.
        (1338928179998149.0 + 0.25, "1.3389281799981492e+15"),
        (1.5e-323, "1.5e-323"),
        (1.0 / 3.0, "0.3333333333333333"),
        (pow2(70), "1.1805916207174113e+21"),
    ];
    for (v, want) in cases {
        assert_eq!(format_go_g(v), want, "{v:e}");
    }
}

// ---- bad input ----------------------------------------------------------------

/// Chunk bytes with the given header and a hand-built bit stream.
pub(super) fn chunk(num: u16, header: u8, build: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
    let [a, b] = num.to_be_bytes();
    let mut w = BitWriter::with_prefix(&[a, b, header], 64);
    build(&mut w);
    w.into_bytes()
}

pub(super) fn int_err(data: &[u8]) -> String {
    match decode_histograms(data) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("decoded {} samples from {}", v.len(), hex(data)),
    }
}

pub(super) fn float_err(data: &[u8]) -> String {
    match decode_float_histograms(data) {
        Err(e) => e.to_string(),
        Ok(v) => panic!("decoded {} samples from {}", v.len(), hex(data)),
    }
}

#[test]
fn chunks_shorter_than_the_header_are_errors() {
    for len in 0..3 {
        let data = vec![0u8; len];
        assert!(HistogramIter::new(&data).is_err());
        assert!(FloatHistogramIter::new(&data).is_err());
    }
}

#[test]
fn every_header_byte_is_read() {
    let one = encode_histograms(&[(5, counter(1, &[1]))]).unwrap().remove(0);
    for b in 0..=255u8 {
        let mut c = one.clone();
        c[2] = b;
        let hint = CounterResetHint::from_header_byte(b);
        assert_eq!(hint.header_bits(), b & 0xC0);
        let got = decode_histograms(&c).unwrap();
        assert_eq!(got[0].1.counter_reset_hint, sample_hint(hint, 1));
    }
}

#[test]
fn unknown_schemas_are_refused() {
    let layout = |schema: i64| {
        chunk(1, 0, |w| {
            w.write_byte(0);
            write_varbit_int(w, schema);
            for _ in 0..3 {
                write_varbit_uint(w, 0); // spans, spans, custom bounds
            }
            for _ in 0..3 {
                write_varbit_int(w, 0); // t, count, zero count
            }
            w.write_bits(0, 64);
        })
    };
    for schema in [-10i64, 53, -52, -54, 1000, i32::MAX as i64 + 1, i64::MIN] {
        assert!(int_err(&layout(schema)).contains("unknown schema"), "{schema}");
    }
    for schema in [-9i64, -4, 0, 8, 52, -53] {
        assert_eq!(decode_histograms(&layout(schema)).unwrap()[0].1.schema, schema as i32);
    }
}

#[test]
fn forged_counts_are_refused_before_allocating() {
    let prefix = |w: &mut BitWriter, schema: i64| {
        w.write_byte(0);
        write_varbit_int(w, schema);
    };
    // 2^56-1 positive spans.
    let c = chunk(1, 0, |w| {
        prefix(w, 0);
        write_varbit_uint(w, (1 << 56) - 1);
    });
    assert!(int_err(&c).contains("do not fit"));
    // One span of u32::MAX buckets in a tiny chunk.
    let one_span = |length: u64, offset: i64| {
        chunk(1, 0, |w| {
            prefix(w, 0);
            write_varbit_uint(w, 1);
            write_varbit_uint(w, length);
            write_varbit_int(w, offset);
            write_varbit_uint(w, 0);
            w.write_bits(0, 64);
        })
    };
    assert!(int_err(&one_span(u32::MAX as u64, 0)).contains("do not fit"));
    assert!(float_err(&one_span(u32::MAX as u64, 0)).contains("do not fit"));
    // Out-of-range span fields.
    assert!(int_err(&one_span(1 << 32, 0)).contains("out of range"));
    assert!(int_err(&one_span(1, 1 << 31)).contains("out of range"));
    // Float buckets are 64 bits each in the first sample: 2 buckets need 128 bits.
    let c = one_span(2, 0);
    assert!(float_err(&c[..c.len().min(20)]).contains("do not fit"));
    // 2^40 custom bounds.
    let c = chunk(1, 0, |w| {
        prefix(w, CUSTOM_BUCKETS_SCHEMA as i64);
        write_varbit_uint(w, 0);
        write_varbit_uint(w, 0);
        write_varbit_uint(w, 1 << 40);
        w.write_bits(0, 64);
    });
    assert!(int_err(&c).contains("do not fit"));
}

#[test]
fn truncated_chunks_fail_or_stop_short() {
    let series: Vec<_> = (0..6).map(|i| (i * 1000, counter(10 + i as u64, &[1, i, -2]))).collect();
    let c = encode_histograms(&series).unwrap().remove(0);
    for cut in 0..c.len() {
        let res = HistogramIter::new(&c[..cut]).and_then(|it| it.collect::<FormatResult<Vec<_>>>());
        assert!(res.is_err() || res.as_ref().unwrap().len() < series.len() || cut + 1 >= c.len(), "cut {cut}");
    }
}
