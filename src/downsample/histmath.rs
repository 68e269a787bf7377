//! Float native histogram arithmetic, as the downsampler needs it: copy to a lower
//! schema, add, subtract, counter-reset detection, zero-bucket reconciliation.
//!
//! Owns: reproducing Prometheus v3.9.1's `model/histogram/float_histogram.go` (the version
//! Thanos vendors, `v0.309.1`) closely enough that the resulting bucket *values* and
//! span layouts are the ones Thanos's downsampler computes: `CopyToSchema`, `Add`, `Sub`,
//! `DetectReset`, `zeroCountForLargerThreshold`, `reconcileZeroBuckets`, `addBuckets`,
//! `reduceResolution`, `adjustCounterReset`, `getBound`.
//! Must not: encode chunks, or panic where Go panics (those cases return an error).
//!
//! Custom-bucket histograms (schema -53) are supported when every histogram of a series
//! batch has the same bounds. Mismatched bounds, which Prometheus v3.9 reconciles to
//! their intersection, are refused with an error.

use crate::format::histogram::{CounterResetHint, FloatHistogram, Span, CUSTOM_BUCKETS_SCHEMA};

/// A problem, as a sentence; the series driver adds the block and series.
pub(crate) type HResult<T> = std::result::Result<T, String>;

const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

pub(crate) fn is_custom(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA
}

fn is_exponential(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

// Bucket bounds in [0.5, 1) at schema 8 (Prometheus's `exponentialBounds[8]`); a lower
// schema `s` uses every `2^(8-s)`-th entry. One table, kept in format::histogram.
use crate::format::histogram::EXPONENTIAL_BOUNDS as BOUNDS;

use crate::format::histogram::ldexp;

/// The upper bound of exponential bucket `idx` (`getBoundExponential`).
pub(crate) fn bound_exponential(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = (idx as i64) << schema.unsigned_abs().min(63);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    if schema > 8 {
        // Go indexes past its table and panics; the formula gives the same bounds.
        return (idx as f64 / 2f64.powi(schema.min(1023))).exp2();
    }
    let frac = BOUNDS[((idx & ((1 << schema) - 1)) as usize) << (8 - schema)];
    let exp = ((idx as i64) >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// The upper bound of bucket `idx` (`getBound`).
fn bound(idx: i32, schema: i32, custom: &[f64]) -> f64 {
    if is_custom(schema) {
        let len = custom.len() as i64;
        return match idx as i64 {
            i if i == len => f64::INFINITY,
            -1 => f64::NEG_INFINITY,
            i if (0..len).contains(&i) => custom[i as usize],
            _ => f64::NAN,
        };
    }
    bound_exponential(idx, schema)
}

/// `((idx - 1) >> (origin - target)) + 1`: the bucket `idx` falls into at a lower schema.
fn target_idx(idx: i32, origin: i32, target: i32) -> i32 {
    ((idx - 1) >> (origin - target).clamp(0, 31)) + 1
}

/// One bucket as an iterator yields it: its index (in the iterator's target schema) and
/// count.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Bucket {
    index: i32,
    count: f64,
}

/// The buckets of one side, merged to `target` (≤ the histogram's schema) and without
/// those whose upper bound is ≤ `abs_start` (exponential schemas only), as Prometheus's
/// `floatBucketIterator` yields them.
fn buckets(h: &FloatHistogram, positive: bool, abs_start: f64, target: i32) -> Vec<Bucket> {
    let (spans, counts) =
        if positive { (&h.positive_spans, &h.positive_buckets) } else { (&h.negative_spans, &h.negative_buckets) };
    let mut out: Vec<Bucket> = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut k = 0usize;
    'spans: for s in spans.iter() {
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else { break 'spans };
            let t = if h.schema == target { idx } else { target_idx(idx, h.schema, target) };
            match out.last_mut() {
                // Consecutive buckets that fall into one target bucket are merged.
                Some(b) if h.schema != target && b.index == t => b.count += c,
                _ => out.push(Bucket { index: t, count: if h.schema == target { c } else { 0.0 + c } }),
            }
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    if abs_start != 0.0 && is_exponential(target) {
        let skip = out.iter().take_while(|b| bound_exponential(b.index, target) <= abs_start).count();
        out.drain(..skip);
    }
    out
}

/// A bucket with its bounds, for the zero-threshold code.
struct Bounded {
    lower: f64,
    upper: f64,
    count: f64,
}

fn bounded(h: &FloatHistogram, positive: bool) -> Vec<Bounded> {
    buckets(h, positive, 0.0, h.schema)
        .into_iter()
        .map(|b| {
            let (hi, lo) = (bound(b.index, h.schema, &h.custom_values), bound(b.index - 1, h.schema, &h.custom_values));
            if positive {
                Bounded { lower: lo, upper: hi, count: b.count }
            } else {
                Bounded { lower: -hi, upper: -lo, count: b.count }
            }
        })
        .collect()
}

/// Prometheus's `FloatHistogram.Copy`.
pub(crate) fn copy(h: &FloatHistogram) -> FloatHistogram {
    let mut c = FloatHistogram {
        counter_reset_hint: h.counter_reset_hint,
        schema: h.schema,
        count: h.count,
        sum: h.sum,
        positive_spans: h.positive_spans.clone(),
        positive_buckets: h.positive_buckets.clone(),
        ..FloatHistogram::default()
    };
    if is_custom(h.schema) {
        c.custom_values = h.custom_values.clone();
    } else {
        c.zero_threshold = h.zero_threshold;
        c.zero_count = h.zero_count;
        c.negative_spans = h.negative_spans.clone();
        c.negative_buckets = h.negative_buckets.clone();
    }
    c
}

/// `reduceResolution` for absolute (not delta) bucket counts.
fn reduce_resolution(spans: &[Span], counts: &[f64], origin: i32, target: i32) -> HResult<(Vec<Span>, Vec<f64>)> {
    let mut t_spans: Vec<Span> = Vec::new();
    let mut t_counts: Vec<f64> = Vec::new();
    let (mut idx, mut k, mut last) = (0i32, 0usize, 0i32);
    for (n, s) in spans.iter().enumerate() {
        if n > 0 && s.offset < 0 {
            return Err(format!("histogram span {} has the negative offset {}", n + 1, s.offset));
        }
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else {
                return Err(format!("histogram has {} buckets but its spans need more", counts.len()));
            };
            let t = target_idx(idx, origin, target);
            if t_spans.is_empty() {
                t_spans.push(Span { offset: t, length: 1 });
                t_counts.push(c);
                last = t;
            } else if last == t {
                *t_counts.last_mut().expect("a bucket") += c;
            } else if last + 1 == t {
                t_spans.last_mut().expect("a span").length += 1;
                last += 1;
                t_counts.push(c);
            } else if last + 1 < t {
                t_spans.push(Span { offset: t - last - 1, length: 1 });
                last = t;
                t_counts.push(c);
            }
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    if k != counts.len() {
        return Err(format!("histogram spans need {k} buckets but it has {}", counts.len()));
    }
    Ok((t_spans, t_counts))
}

/// Prometheus's `CopyToSchema`: a copy at a lower (or the same) resolution. A reduced
/// copy carries no counter-reset hint, as in Go.
pub(crate) fn copy_to_schema(h: &FloatHistogram, target: i32) -> HResult<FloatHistogram> {
    if target == h.schema {
        return Ok(copy(h));
    }
    if is_custom(h.schema) || is_custom(target) {
        return Err(format!(
            "cannot convert a histogram from schema {} to schema {target} (custom buckets mixed with exponential ones)",
            h.schema
        ));
    }
    if target > h.schema {
        return Err(format!("cannot copy a histogram from schema {} to the higher schema {target}", h.schema));
    }
    let (positive_spans, positive_buckets) =
        reduce_resolution(&h.positive_spans, &h.positive_buckets, h.schema, target)?;
    let (negative_spans, negative_buckets) =
        reduce_resolution(&h.negative_spans, &h.negative_buckets, h.schema, target)?;
    Ok(FloatHistogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema: target,
        zero_threshold: h.zero_threshold,
        zero_count: h.zero_count,
        count: h.count,
        sum: h.sum,
        positive_spans,
        negative_spans,
        positive_buckets,
        negative_buckets,
        custom_values: Vec::new(),
    })
}

/// `adjustCounterReset`: the hint of a sum or difference.
fn adjust_counter_reset(h: &mut FloatHistogram, other: &FloatHistogram) {
    use CounterResetHint::*;
    let (a, b) = (h.counter_reset_hint, other.counter_reset_hint);
    h.counter_reset_hint = match (a, b) {
        _ if a == b => a,
        (Gauge, _) => Gauge,
        (_, Gauge) => Gauge,
        (Unknown, _) => Unknown,
        (_, Unknown) => Unknown,
        // CounterReset against NotCounterReset: a collision, resolved to unknown.
        _ => Unknown,
    };
}

/// `zeroCountForLargerThreshold`: the zero count `h` would have with the zero threshold
/// `larger` (moved up to a bucket boundary when it falls inside a populated bucket), and
/// that threshold.
pub(crate) fn zero_count_for_larger_threshold(h: &FloatHistogram, mut larger: f64) -> (f64, f64) {
    if larger == h.zero_threshold {
        return (h.zero_count, larger);
    }
    let pos = bounded(h, true);
    let neg = bounded(h, false);
    'outer: loop {
        let mut count = h.zero_count;
        for b in &pos {
            if b.lower >= larger {
                break;
            }
            count += b.count;
            if b.upper > larger {
                if b.count != 0.0 {
                    larger = b.upper;
                }
                break;
            }
        }
        for b in &neg {
            if b.upper <= -larger {
                break;
            }
            count += b.count;
            if b.lower < -larger {
                if b.count != 0.0 {
                    larger = -b.lower;
                    continue 'outer;
                }
                break;
            }
        }
        return (count, larger);
    }
}

/// `trimBucketsInZeroBucket`: zeroes the buckets inside the zero bucket, then drops every
/// empty bucket (`Compact(0)`).
fn trim_buckets_in_zero_bucket(h: &mut FloatHistogram) {
    let thr = h.zero_threshold;
    let n = bounded(h, true).iter().take_while(|b| b.lower < thr).count();
    h.positive_buckets.iter_mut().take(n).for_each(|c| *c = 0.0);
    let n = bounded(h, false).iter().take_while(|b| b.upper > -thr).count();
    h.negative_buckets.iter_mut().take(n).for_each(|c| *c = 0.0);
    compact_empty(&mut h.positive_spans, &mut h.positive_buckets);
    compact_empty(&mut h.negative_spans, &mut h.negative_buckets);
}

/// `Compact(0)`: spans covering exactly the non-empty buckets, adjacent runs merged.
fn compact_empty(spans: &mut Vec<Span>, counts: &mut Vec<f64>) {
    let kept: Vec<(i32, f64)> = indexed(spans, counts).into_iter().filter(|&(_, c)| c != 0.0).collect();
    let (s, c) = spans_of(&kept);
    *spans = s;
    *counts = c;
}

/// `(index, count)` of every bucket described by `spans`.
pub(crate) fn indexed(spans: &[Span], counts: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(counts.len());
    let mut idx = 0i32;
    let mut k = 0;
    'spans: for s in spans {
        idx = idx.wrapping_add(s.offset);
        for _ in 0..s.length {
            let Some(&c) = counts.get(k) else { break 'spans };
            out.push((idx, c));
            idx = idx.wrapping_add(1);
            k += 1;
        }
    }
    out
}

/// Canonical spans (maximal runs) for buckets given by ascending index.
pub(crate) fn spans_of(buckets: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut next = 0i32;
    for (i, &(idx, _)) in buckets.iter().enumerate() {
        if i > 0 && idx == next {
            spans.last_mut().expect("a span").length += 1;
        } else {
            spans.push(Span { offset: if i == 0 { idx } else { idx - next }, length: 1 });
        }
        next = idx + 1;
    }
    (spans, buckets.iter().map(|b| b.1).collect())
}

/// `reconcileZeroBuckets`: widens `h`'s zero bucket to cover `other`'s (and the other way
/// round); returns the zero count `other` would have with the common threshold.
fn reconcile_zero_buckets(h: &mut FloatHistogram, other: &FloatHistogram) -> f64 {
    let mut other_count = other.zero_count;
    let mut other_thr = other.zero_threshold;
    // Each step raises a threshold to one of finitely many bucket bounds; the cap only
    // guards against NaN thresholds, which never compare equal.
    for _ in 0..10_000 {
        if other_thr == h.zero_threshold {
            break;
        }
        if h.zero_threshold > other_thr {
            (other_count, other_thr) = zero_count_for_larger_threshold(other, h.zero_threshold);
        }
        if other_thr > h.zero_threshold {
            (h.zero_count, h.zero_threshold) = zero_count_for_larger_threshold(h, other_thr);
            trim_buckets_in_zero_bucket(h);
        }
    }
    other_count
}

/// `addBuckets`: adds (or, with `negative`, subtracts) the buckets `b` to the buckets `a`,
/// inserting missing buckets into `a`'s spans exactly where Prometheus inserts them.
/// Buckets of `b` whose upper bound is ≤ `threshold` are ignored (exponential schemas).
#[allow(clippy::too_many_arguments)]
fn add_buckets(
    schema: i32,
    threshold: f64,
    negative: bool,
    mut spans_a: Vec<Span>,
    mut counts_a: Vec<f64>,
    spans_b: &[Span],
    counts_b: &[f64],
) -> (Vec<Span>, Vec<f64>) {
    let mut i_span: i64 = -1;
    let mut i_bucket: i64 = -1;
    let mut i_in_span: i32 = 0;
    let mut index_a: i32 = 0;
    let mut index_b: i32 = 0;
    let mut k_b = 0usize;
    let mut below_threshold = true;
    for span_b in spans_b {
        index_b = index_b.wrapping_add(span_b.offset);
        for _ in 0..span_b.length {
            'next: {
                if below_threshold && is_exponential(schema) && bound_exponential(index_b, schema) <= threshold {
                    break 'next;
                }
                below_threshold = false;
                let Some(&c) = counts_b.get(k_b) else { break 'next };
                let bucket_b = if negative { -c } else { c };
                if i_span == -1 {
                    if spans_a.is_empty() || spans_a[0].offset > index_b {
                        // A bucket before all others.
                        counts_a.insert(0, bucket_b);
                        if !spans_a.is_empty() && spans_a[0].offset == index_b + 1 {
                            spans_a[0].length += 1;
                            spans_a[0].offset -= 1;
                            break 'next;
                        }
                        spans_a.insert(0, Span { offset: index_b, length: 1 });
                        if spans_a.len() > 1 {
                            spans_a[1].offset -= index_b + 1;
                        }
                        break 'next;
                    } else if spans_a[0].offset == index_b {
                        counts_a[0] += bucket_b;
                        break 'next;
                    }
                    i_span = 0;
                    i_bucket = 0;
                    i_in_span = 0;
                    index_a = spans_a[0].offset;
                }
                let mut delta = index_b - index_a;
                loop {
                    let remaining = spans_a[i_span as usize].length as i32 - i_in_span;
                    if delta < remaining {
                        i_bucket += delta as i64;
                        i_in_span += delta;
                        counts_a[i_bucket as usize] += bucket_b;
                        break;
                    }
                    delta -= remaining;
                    i_bucket += remaining as i64;
                    i_span += 1;
                    let n = spans_a.len() as i64;
                    if i_span == n || delta < spans_a[i_span as usize].offset {
                        // The bucket is in the gap behind the previous span.
                        counts_a.insert(i_bucket as usize, bucket_b);
                        if delta == 0 {
                            // Right after the previous span: extend it.
                            if i_span < n {
                                spans_a[i_span as usize].offset -= 1;
                            }
                            i_span -= 1;
                            i_in_span = spans_a[i_span as usize].length as i32;
                            spans_a[i_span as usize].length += 1;
                        } else if i_span < n && delta == spans_a[i_span as usize].offset - 1 {
                            // Right before the next span: extend that one.
                            i_in_span = 0;
                            spans_a[i_span as usize].offset -= 1;
                            spans_a[i_span as usize].length += 1;
                        } else {
                            i_in_span = 0;
                            if i_span < n {
                                spans_a[i_span as usize].offset -= delta + 1;
                            }
                            spans_a.insert(i_span as usize, Span { offset: delta, length: 1 });
                        }
                        break 'next;
                    }
                    delta -= spans_a[i_span as usize].offset;
                    i_in_span = 0;
                }
            }
            index_a = index_b;
            index_b = index_b.wrapping_add(1);
            k_b += 1;
        }
    }
    (spans_a, counts_a)
}

fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `h += other` (Prometheus's `Add`), or `h -= other` with `subtract` (`Sub`).
pub(crate) fn add(h: &mut FloatHistogram, other: &FloatHistogram, subtract: bool) -> HResult<()> {
    if is_custom(h.schema) != is_custom(other.schema) {
        return Err("cannot add histograms with a mix of exponential and custom bucket schemas".into());
    }
    if is_custom(h.schema) && !custom_bounds_match(&h.custom_values, &other.custom_values) {
        return Err("cannot add custom-bucket histograms whose bounds differ (not supported)".into());
    }
    adjust_counter_reset(h, other);
    if !is_custom(h.schema) {
        let other_zero = reconcile_zero_buckets(h, other);
        if subtract {
            h.zero_count -= other_zero;
        } else {
            h.zero_count += other_zero;
        }
    }
    if subtract {
        h.count -= other.count;
        h.sum -= other.sum;
    } else {
        h.count += other.count;
        h.sum += other.sum;
    }
    let mut hp = (std::mem::take(&mut h.positive_spans), std::mem::take(&mut h.positive_buckets));
    let mut hn = (std::mem::take(&mut h.negative_spans), std::mem::take(&mut h.negative_buckets));
    let reduced;
    type Side<'a> = (&'a [Span], &'a [f64]);
    let (op, on): (Side<'_>, Side<'_>);
    if !is_custom(h.schema) && other.schema < h.schema {
        hp = reduce_resolution(&hp.0, &hp.1, h.schema, other.schema)?;
        hn = reduce_resolution(&hn.0, &hn.1, h.schema, other.schema)?;
        h.schema = other.schema;
        op = (&other.positive_spans, &other.positive_buckets);
        on = (&other.negative_spans, &other.negative_buckets);
    } else if !is_custom(h.schema) && other.schema > h.schema {
        reduced = (
            reduce_resolution(&other.positive_spans, &other.positive_buckets, other.schema, h.schema)?,
            reduce_resolution(&other.negative_spans, &other.negative_buckets, other.schema, h.schema)?,
        );
        op = (&reduced.0 .0, &reduced.0 .1);
        on = (&reduced.1 .0, &reduced.1 .1);
    } else {
        op = (&other.positive_spans, &other.positive_buckets);
        on = (&other.negative_spans, &other.negative_buckets);
    }
    (h.positive_spans, h.positive_buckets) = add_buckets(h.schema, h.zero_threshold, subtract, hp.0, hp.1, op.0, op.1);
    if is_custom(h.schema) {
        (h.negative_spans, h.negative_buckets) = hn;
    } else {
        (h.negative_spans, h.negative_buckets) =
            add_buckets(h.schema, h.zero_threshold, subtract, hn.0, hn.1, on.0, on.1);
    }
    Ok(())
}

/// `detectReset` over two bucket lists (same schema): a populated bucket of `prev` that
/// is missing or smaller in `curr`.
fn buckets_reset(curr: &[Bucket], prev: &[Bucket]) -> bool {
    let mut c = curr.iter().peekable();
    for p in prev {
        while c.peek().is_some_and(|b| b.index < p.index) {
            c.next();
        }
        match c.peek() {
            Some(b) if b.index == p.index => {
                if b.count < p.count {
                    return true;
                }
            }
            // Missing in the current histogram: a reset if it held anything.
            _ => {
                if p.count != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

/// Prometheus's `DetectReset`: whether `h` follows `previous` only through a counter reset.
pub(crate) fn detect_reset(h: &FloatHistogram, previous: &FloatHistogram) -> HResult<bool> {
    match h.counter_reset_hint {
        CounterResetHint::CounterReset => return Ok(true),
        CounterResetHint::NotCounterReset => return Ok(false),
        _ => {}
    }
    if h.count < previous.count {
        return Ok(true);
    }
    if is_custom(h.schema) {
        if !is_custom(previous.schema) {
            return Ok(true);
        }
        if !custom_bounds_match(&h.custom_values, &previous.custom_values) {
            return Err("cannot compare custom-bucket histograms whose bounds differ (not supported)".into());
        }
    }
    if h.schema > previous.schema {
        return Ok(true);
    }
    if h.zero_threshold < previous.zero_threshold {
        return Ok(true);
    }
    let (prev_zero, thr) = zero_count_for_larger_threshold(previous, h.zero_threshold);
    if thr != h.zero_threshold {
        return Ok(true);
    }
    if h.zero_count < prev_zero {
        return Ok(true);
    }
    if is_custom(previous.schema) != is_custom(h.schema) {
        // Go would panic merging a custom schema into an exponential one.
        return Err("cannot compare custom-bucket and exponential histograms".into());
    }
    for positive in [true, false] {
        let curr = buckets(h, positive, h.zero_threshold, h.schema);
        let prev = buckets(previous, positive, h.zero_threshold, h.schema);
        if buckets_reset(&curr, &prev) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh(schema: i32, spans: &[(i32, u32)], counts: &[f64]) -> FloatHistogram {
        FloatHistogram {
            schema,
            zero_threshold: 0.001,
            count: counts.iter().sum(),
            positive_spans: spans.iter().map(|&(offset, length)| Span { offset, length }).collect(),
            positive_buckets: counts.to_vec(),
            ..FloatHistogram::default()
        }
    }

    #[test]
    fn bounds_match_prometheus_at_every_schema() {
        // Schema 0: powers of two; schema -1: powers of four; schema 3 uses the table.
        assert_eq!(bound_exponential(0, 0), 1.0);
        assert_eq!(bound_exponential(3, 0), 8.0);
        assert_eq!(bound_exponential(-2, 0), 0.25);
        assert_eq!(bound_exponential(2, -1), 16.0);
        assert_eq!(bound_exponential(1, 3), 1.0905077326652577);
        // -97 at schema 3: table entry 7 (of 8), times 2^-12.
        assert_eq!(bound_exponential(-97, 3), 0.9170040432046711 / 4096.0);
        assert_eq!(bound_exponential(1024, 0), f64::MAX);
        assert_eq!(bound_exponential(1025, 0), f64::INFINITY);
        // Subnormal bounds round once, like Go's Ldexp.
        assert_eq!(bound_exponential(-1074, 0), 5e-324);
        assert_eq!(bound_exponential(-1075, 0), 0.0);
    }

    #[test]
    fn add_buckets_inserts_before_between_and_after_spans() {
        // a: buckets 2,3 and 7; b: buckets 0, 4, 6, 9.
        let a = fh(0, &[(2, 2), (3, 1)], &[1.0, 1.0, 1.0]);
        let b = fh(0, &[(0, 1), (3, 1), (1, 1), (2, 1)], &[10.0, 20.0, 30.0, 40.0]);
        let mut s = a.clone();
        add(&mut s, &b, false).unwrap();
        assert_eq!(
            indexed(&s.positive_spans, &s.positive_buckets),
            vec![(0, 10.0), (2, 1.0), (3, 1.0), (4, 20.0), (6, 30.0), (7, 1.0), (9, 40.0)]
        );
        assert_eq!(s.count, 103.0);
        // Prometheus keeps the spans it grew, adjacent ones unmerged.
        assert_eq!(
            s.positive_spans,
            vec![
                Span { offset: 0, length: 1 },
                Span { offset: 1, length: 3 },
                Span { offset: 1, length: 2 },
                Span { offset: 1, length: 1 }
            ]
        );
        let mut d = s.clone();
        add(&mut d, &b, true).unwrap();
        assert_eq!(
            indexed(&d.positive_spans, &d.positive_buckets),
            vec![(0, 0.0), (2, 1.0), (3, 1.0), (4, 0.0), (6, 0.0), (7, 1.0), (9, 0.0)]
        );
    }

    #[test]
    fn reducing_schema_merges_pairs_of_buckets() {
        // Schema 1 buckets 1..=4 fall into schema 0 buckets 1, 1, 2, 2.
        let h = fh(1, &[(1, 4)], &[1.0, 2.0, 3.0, 4.0]);
        let r = copy_to_schema(&h, 0).unwrap();
        assert_eq!(indexed(&r.positive_spans, &r.positive_buckets), vec![(1, 3.0), (2, 7.0)]);
        assert_eq!(r.counter_reset_hint, CounterResetHint::Unknown);
        assert!(copy_to_schema(&h, 2).is_err());
    }

    #[test]
    fn reset_detection_follows_counts_buckets_and_hints() {
        let a = fh(0, &[(0, 2)], &[1.0, 2.0]);
        let mut b = fh(0, &[(0, 3)], &[1.0, 2.0, 5.0]);
        assert!(!detect_reset(&b, &a).unwrap());
        b.positive_buckets[1] = 1.0;
        b.count += 5.0;
        assert!(detect_reset(&b, &a).unwrap(), "a bucket went down");
        b.counter_reset_hint = CounterResetHint::NotCounterReset;
        assert!(!detect_reset(&b, &a).unwrap(), "the hint wins");
        let c = fh(0, &[(1, 1)], &[9.0]);
        assert!(detect_reset(&c, &a).unwrap(), "a populated bucket vanished");
        let hi = fh(1, &[(0, 2)], &[9.0, 9.0]);
        assert!(detect_reset(&hi, &a).unwrap(), "a schema increase is a reset");
    }

    #[test]
    fn a_larger_zero_threshold_absorbs_buckets_below_it() {
        let mut h = fh(0, &[(-3, 4)], &[1.0, 2.0, 3.0, 4.0]); // (1/16,1/8], (1/8,1/4], (1/4,1/2], (1/2,1]
        h.zero_count = 5.0;
        h.zero_threshold = 0.0625;
        // 0.2 falls inside the populated bucket (1/8, 1/4]: the threshold moves to 1/4.
        assert_eq!(zero_count_for_larger_threshold(&h, 0.2), (5.0 + 1.0 + 2.0, 0.25));
        let mut other = h.clone();
        other.zero_threshold = 0.25;
        other.zero_count = 0.0;
        other.positive_spans = vec![Span { offset: -1, length: 2 }];
        other.positive_buckets = vec![3.0, 4.0];
        add(&mut h, &other, false).unwrap();
        assert_eq!(h.zero_threshold, 0.25);
        assert_eq!(h.zero_count, 8.0);
        assert_eq!(indexed(&h.positive_spans, &h.positive_buckets), vec![(-1, 6.0), (0, 8.0)]);
    }
}
