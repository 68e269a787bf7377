//! Native histogram aggregates: raw histograms into aggregate chunks whose count slot is
//! XOR and whose sum and counter slots are float histogram chunks (min and max unset), and
//! such chunks into coarser ones.
//!
//! Owns: Thanos's `histogramAggregator`, `downsampleHistogramBatch`,
//! `downsampleHistogramAggrBatch`, and writing one slot's histograms as one chunk.
//! Must not: do histogram arithmetic itself (`histmath`).
//!
//! Thanos appends each window's histogram to the slot with Prometheus's appender, which
//! recodes the chunk to the union of bucket layouts as new buckets appear. strata writes
//! the same union layout in one go: every histogram of the slot is expanded to the union of
//! their buckets (missing buckets as zero) and encoded as one chunk. Where Prometheus's
//! appender would instead start a new chunk (the zero threshold changes, a counter drops)
//! and Thanos would then keep only that new chunk, dropping the slot's earlier windows,
//! strata keeps every window (see `docs/downsampling.md`).

use std::borrow::Cow;

use super::batch::{downsample_batch, target_chunk_count, window_end, Aggregate, RAW_ASSUMED_INTERVAL_MS};
use super::float::{append, encode_slots, AggrScratch, COUNT, COUNTER, SUM};
use super::histmath::{
    self, add, copy, copy_to_schema, detect_reset, indexed, spans_of, zero_count_for_larger_threshold, HResult,
};
use super::AggrChunk;
use crate::format::aggr::Slots;
use crate::format::chunks::Encoding;
use crate::format::histogram::{
    AppendError, CounterResetHint, FloatHistogram, FloatHistogramEncoder, FloatHistogramIter, HistogramIter, Span,
};
use crate::format::tombstones::Interval;
use crate::format::xor::XorEncoder;

/// Window statistics of histograms (Thanos's `histogramAggregator`): the histogram count
/// and sum restart with every window; the counter (resets added back) runs across the
/// batch. Every sample is first reduced to the batch's smallest schema.
pub(crate) struct HistAgg {
    total: usize,
    pub count: usize,
    pub sum: Option<FloatHistogram>,
    pub counter: Option<FloatHistogram>,
    previous: Option<FloatHistogram>,
    schema: i32,
}

impl HistAgg {
    pub fn new(schema: i32) -> Self {
        HistAgg { total: 0, count: 0, sum: None, counter: None, previous: None, schema }
    }
}

impl Aggregate<(i64, FloatHistogram)> for HistAgg {
    fn reset(&mut self) {
        self.count = 0;
        self.sum = None;
    }

    fn add(&mut self, s: &(i64, FloatHistogram)) -> HResult<()> {
        let original = &s.1;
        if original.schema < self.schema {
            return Err(format!(
                "histogram schema {} is below the batch's smallest schema {}",
                original.schema, self.schema
            ));
        }
        let fh: Cow<'_, FloatHistogram> = if original.schema > self.schema {
            Cow::Owned(copy_to_schema(original, self.schema)?)
        } else {
            Cow::Borrowed(original)
        };
        match (&mut self.counter, &self.previous) {
            (Some(counter), Some(previous)) if self.total > 0 => {
                // The reset check looks at the sample before its schema was reduced, so a
                // schema increase counts as a reset, as in Thanos.
                if fh.counter_reset_hint != CounterResetHint::Gauge && detect_reset(original, previous)? {
                    add(counter, &fh, false)?;
                } else {
                    let mut delta = copy(&fh);
                    add(&mut delta, previous, true)?;
                    add(counter, &delta, false)?;
                }
            }
            _ => self.counter = Some(copy(&fh)),
        }
        match &mut self.sum {
            None => self.sum = Some(copy(&fh)),
            Some(sum) => add(sum, &fh, false)?,
        }
        if let Some(sum) = &mut self.sum {
            // A gauge, so that a smaller window sum never reads as a reset.
            sum.counter_reset_hint = CounterResetHint::Gauge;
        }
        self.previous = Some(fh.into_owned());
        self.count += 1;
        self.total += 1;
        Ok(())
    }

    fn total(&self) -> usize {
        self.total
    }
}

/// The smallest schema among the histograms (stale markers are already gone).
fn min_schema(samples: &[(i64, FloatHistogram)]) -> i32 {
    samples.iter().map(|s| s.1.schema).min().unwrap_or(i32::MAX)
}

/// One aggregate chunk from a batch of raw histograms (Thanos's
/// `downsampleHistogramBatch`): per window the histogram count (XOR), the sum of the
/// window's histograms and the counter, both float histograms. When the batch's first
/// histogram is a gauge, both histogram slots are gauges. No raw first/last values are
/// kept for histograms.
pub(crate) fn hist_batch(batch: &[(i64, FloatHistogram)], resolution: i64) -> HResult<AggrChunk> {
    let gauge = batch.first().is_some_and(|s| s.1.counter_reset_hint == CounterResetHint::Gauge);
    let mut counts = XorEncoder::new();
    let mut sums: Vec<(i64, FloatHistogram)> = Vec::new();
    let mut counters: Vec<(i64, FloatHistogram)> = Vec::new();
    let (mut mint, mut maxt) = (i64::MAX, i64::MIN);
    downsample_batch(
        batch,
        |s| s.0,
        resolution,
        &mut HistAgg::new(min_schema(batch)),
        |t, a| {
            mint = mint.min(t);
            maxt = maxt.max(t);
            if gauge {
                if let Some(c) = &mut a.counter {
                    c.counter_reset_hint = CounterResetHint::Gauge;
                }
                if let Some(s) = &mut a.sum {
                    s.counter_reset_hint = CounterResetHint::Gauge;
                }
            }
            counters.extend(a.counter.clone().map(|c| (t, c)));
            sums.extend(a.sum.clone().map(|s| (t, s)));
            append(&mut counts, t, a.count as f64)
        },
    )?;
    let mut slots: [Option<(Encoding, Vec<u8>)>; 5] = Default::default();
    slots[COUNT] = Some((Encoding::Xor, counts.finish()));
    slots[SUM] = Some((Encoding::FloatHistogram, encode_slot(sums)?));
    slots[COUNTER] = Some((Encoding::FloatHistogram, encode_slot(counters)?));
    Ok(AggrChunk { min_time: mint, max_time: maxt, data: encode_slots(slots) })
}

/// Refuses spans after the first with a negative offset (Prometheus's `Validate` and
/// `reduceResolution` refuse them too), so the bucket arithmetic sees ascending indices.
fn check_spans(t: i64, positive: &[Span], negative: &[Span]) -> HResult<()> {
    if positive.iter().chain(negative).enumerate().any(|(i, s)| i != 0 && i != positive.len() && s.offset < 0) {
        return Err(format!("histogram at {t} has a span with a negative offset"));
    }
    Ok(())
}

/// Appends an integer histogram chunk's samples as float histograms, as Thanos expands
/// them (see [`expand_float_histograms`]).
pub(crate) fn expand_histograms(
    data: &[u8],
    deleted: &[Interval],
    out: &mut Vec<(i64, FloatHistogram)>,
) -> HResult<()> {
    let it = HistogramIter::new(data).map_err(|e| e.to_string())?;
    let mut last_t = 0i64;
    for s in it {
        let (t, h) = s.map_err(|e| e.to_string())?;
        if h.is_stale() || t < last_t || deleted.iter().any(|d| d.contains(t)) {
            continue;
        }
        check_spans(t, &h.positive_spans, &h.negative_spans)?;
        let mut f = h.to_float();
        if f.counter_reset_hint == CounterResetHint::CounterReset {
            f.counter_reset_hint = CounterResetHint::Unknown;
        }
        last_t = t;
        out.push((t, f));
    }
    Ok(())
}

/// Splits a run of raw histograms into batches and aggregates each, exactly as
/// [`super::float::raw_float_chunks`] does for floats; histograms whose sum is NaN are
/// dropped from each batch.
pub(crate) fn raw_hist_chunks(
    data: &[(i64, FloatHistogram)],
    resolution: i64,
    out: &mut Vec<AggrChunk>,
) -> HResult<()> {
    let (Some(first), Some(last)) = (data.first(), data.last()) else { return Ok(()) };
    let chunks = target_chunk_count(first.0, last.0, RAW_ASSUMED_INTERVAL_MS, resolution, data.len());
    let batch_size = data.len() / chunks + 1;
    let mut rest = data;
    let mut batch: Vec<(i64, FloatHistogram)> = Vec::new();
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        let end = window_end(rest[j - 1].0, resolution);
        while j < rest.len() && rest[j].0 <= end {
            j += 1;
        }
        batch.clear();
        batch.extend(rest[..j].iter().filter(|s| !s.1.sum.is_nan()).cloned());
        rest = &rest[j..];
        if !batch.is_empty() {
            out.push(hist_batch(&batch, resolution)?);
        }
    }
    Ok(())
}

/// Appends a float histogram chunk's samples as Thanos expands them (stale markers and
/// samples earlier than the previous kept one dropped), with the counter-reset hints
/// Prometheus v3.9 gives them: the first sample of a counter chunk is `Unknown` whatever
/// the header says, later ones `NotCounterReset`, every sample of a gauge chunk `Gauge`.
pub(crate) fn expand_float_histograms(
    data: &[u8],
    deleted: &[Interval],
    out: &mut Vec<(i64, FloatHistogram)>,
) -> HResult<()> {
    let it = FloatHistogramIter::new(data).map_err(|e| e.to_string())?;
    let mut last_t = 0i64;
    for s in it {
        let (t, mut h) = s.map_err(|e| e.to_string())?;
        if h.is_stale() || t < last_t || deleted.iter().any(|d| d.contains(t)) {
            continue;
        }
        check_spans(t, &h.positive_spans, &h.negative_spans)?;
        if h.counter_reset_hint == CounterResetHint::CounterReset {
            h.counter_reset_hint = CounterResetHint::Unknown;
        }
        last_t = t;
        out.push((t, h));
    }
    Ok(())
}

/// One coarser aggregate chunk from a batch of histogram aggregate chunks (Thanos's
/// `downsampleHistogramAggrBatch`): the counter slots are aggregated again as counters
/// (a drop between chunks is a reset), the sum slots summed per window, the count slots
/// added up. `None` when no slot has any sample.
pub(crate) fn aggr_hist_batch(
    chunks: &[Slots<'_>],
    resolution: i64,
    s: &mut AggrScratch,
) -> HResult<Option<AggrChunk>> {
    let hbuf = &mut s.hists;
    let mut range = (i64::MAX, i64::MIN);
    let mut slots: [Option<(Encoding, Vec<u8>)>; 5] = Default::default();
    for (which, take) in [(COUNTER, true), (SUM, false)] {
        hbuf.clear();
        for c in chunks {
            if let Some(sub) = c[which] {
                if sub.encoding != Encoding::FloatHistogram as u8 {
                    return Err(format!(
                        "{} slot holds a chunk of encoding {}, not a float histogram",
                        if take { "counter" } else { "sum" },
                        sub.encoding
                    ));
                }
                expand_float_histograms(sub.data, &[], hbuf)?;
            }
        }
        if hbuf.is_empty() {
            continue;
        }
        let mut out: Vec<(i64, FloatHistogram)> = Vec::new();
        downsample_batch(
            hbuf,
            |x| x.0,
            resolution,
            &mut HistAgg::new(min_schema(hbuf)),
            |t, a| {
                range.0 = range.0.min(t);
                range.1 = range.1.max(t);
                let h = if take { &a.counter } else { &a.sum };
                out.extend(h.clone().map(|h| (t, h)));
                Ok(())
            },
        )?;
        slots[which] = Some((Encoding::FloatHistogram, encode_slot(out)?));
    }
    let counts = super::float::aggregate_slot(chunks, COUNT, resolution, |a| a.sum, &mut s.buf, &mut range)?;
    slots[COUNT] = counts.map(|d| (Encoding::Xor, d));
    if range.0 == i64::MAX {
        return Ok(None);
    }
    Ok(Some(AggrChunk { min_time: range.0, max_time: range.1, data: encode_slots(slots) }))
}

/// Writes one slot's histograms (one per window, in time order) as a single float
/// histogram chunk in the union of their layouts. The header follows the first histogram
/// as Prometheus's appender sets it: `Gauge` for a gauge, `CounterReset` when it says so,
/// otherwise `NotCounterReset`. Histograms with different zero thresholds are widened to
/// the largest (their buckets below it merged into the zero bucket).
pub(crate) fn encode_slot(mut samples: Vec<(i64, FloatHistogram)>) -> HResult<Vec<u8>> {
    let Some(first) = samples.first() else { return Ok(FloatHistogramEncoder::new().finish()) };
    let schema = first.1.schema;
    let custom = first.1.custom_values.clone();
    if samples.iter().any(|s| s.1.schema != schema) {
        return Err("histograms of one aggregate slot have different schemas".into());
    }
    if samples.iter().any(|s| s.1.custom_values != custom) {
        return Err("custom-bucket histograms of one aggregate slot have different bounds (not supported)".into());
    }
    let mut thr = samples.iter().map(|s| s.1.zero_threshold).fold(f64::NEG_INFINITY, f64::max);
    if samples.iter().any(|s| s.1.zero_threshold != thr) {
        // Raise the common threshold until no histogram has a populated bucket across it.
        for _ in 0..10_000 {
            let raised = samples.iter().map(|s| zero_count_for_larger_threshold(&s.1, thr).1).fold(thr, f64::max);
            if raised == thr {
                break;
            }
            thr = raised;
        }
        for (_, h) in samples.iter_mut() {
            if h.zero_threshold != thr {
                let mut widened = histmath::copy(h);
                let (zc, _) = zero_count_for_larger_threshold(h, thr);
                widened.zero_count = zc;
                widened.zero_threshold = thr;
                let keep = |spans: &[Span], counts: &[f64]| {
                    let b: Vec<(i32, f64)> = indexed(spans, counts)
                        .into_iter()
                        // Both sides: a bucket's smaller absolute bound is that of index - 1.
                        .filter(|&(idx, _)| histmath::bound_exponential(idx - 1, schema) >= thr)
                        .collect();
                    spans_of(&b)
                };
                (widened.positive_spans, widened.positive_buckets) = keep(&h.positive_spans, &h.positive_buckets);
                (widened.negative_spans, widened.negative_buckets) = keep(&h.negative_spans, &h.negative_buckets);
                *h = widened;
            }
        }
    }
    // The union of bucket indices, per side.
    let union = |side: &dyn Fn(&FloatHistogram) -> Vec<(i32, f64)>| {
        let mut idx: Vec<i32> = samples.iter().flat_map(|s| side(&s.1).into_iter().map(|b| b.0)).collect();
        idx.sort_unstable();
        idx.dedup();
        idx
    };
    let pos = union(&|h| indexed(&h.positive_spans, &h.positive_buckets));
    let neg = union(&|h| indexed(&h.negative_spans, &h.negative_buckets));
    let expand = |layout: &[i32], have: Vec<(i32, f64)>| -> Vec<(i32, f64)> {
        let mut it = have.into_iter().peekable();
        layout
            .iter()
            .map(|&i| {
                while it.peek().is_some_and(|b| b.0 < i) {
                    it.next();
                }
                match it.peek() {
                    Some(&(j, c)) if j == i => (i, c),
                    _ => (i, 0.0),
                }
            })
            .collect()
    };
    for (_, h) in samples.iter_mut() {
        let p = expand(&pos, indexed(&h.positive_spans, &h.positive_buckets));
        let n = expand(&neg, indexed(&h.negative_spans, &h.negative_buckets));
        (h.positive_spans, h.positive_buckets) = spans_of(&p);
        (h.negative_spans, h.negative_buckets) = spans_of(&n);
        h.zero_threshold = thr;
    }
    let first_hint = samples[0].1.counter_reset_hint;
    let header = match first_hint {
        CounterResetHint::Gauge => CounterResetHint::Gauge,
        CounterResetHint::CounterReset => CounterResetHint::CounterReset,
        _ => CounterResetHint::NotCounterReset,
    };
    match encode_as(&mut samples, header) {
        Ok(b) => Ok(b),
        // A counter slot whose values drop cannot be a counter chunk; Thanos would start a
        // new chunk and lose the earlier windows. Keep them all, as a gauge chunk.
        Err(AppendError::CounterReset) | Err(AppendError::KindChanged) if header != CounterResetHint::Gauge => {
            encode_as(&mut samples, CounterResetHint::Gauge)
                .map_err(|e| format!("cannot encode an aggregate histogram slot: {e}"))
        }
        Err(e) => Err(format!("cannot encode an aggregate histogram slot: {e}")),
    }
}

fn encode_as(samples: &mut [(i64, FloatHistogram)], header: CounterResetHint) -> Result<Vec<u8>, AppendError> {
    let mut e = FloatHistogramEncoder::new();
    for (i, (t, h)) in samples.iter_mut().enumerate() {
        h.counter_reset_hint = match header {
            CounterResetHint::Gauge => CounterResetHint::Gauge,
            _ if i == 0 => header,
            _ => CounterResetHint::NotCounterReset,
        };
        e.append(*t, h)?;
    }
    Ok(e.finish())
}
