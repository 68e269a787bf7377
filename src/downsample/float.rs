//! Float aggregates: raw float samples into five-slot aggregate chunks, aggregate chunks
//! into coarser ones, and the counter-reset iterator that joins counter slots.
//!
//! Owns: Thanos's `downsampleRawLoop` + `downsampleFloatBatch` (raw → 5m) and
//! `downsampleFloatAggrBatch` (5m → 1h), and `ApplyCounterResetsSeriesIterator`.
//! Must not: read blocks or decide batch sizes of the aggregated path (`series`).

use super::batch::{downsample_batch, target_chunk_count, window_end, FloatAgg, RAW_ASSUMED_INTERVAL_MS};
use super::histmath::HResult;
use super::AggrChunk;
use crate::format::aggr::{self, AggrType, Slots, SubChunk};
use crate::format::chunks::Encoding;
use crate::format::histogram::STALE_NAN_BITS;
use crate::format::xor::{self, XorEncoder};

pub(crate) const COUNT: usize = AggrType::Count as usize;
pub(crate) const SUM: usize = AggrType::Sum as usize;
pub(crate) const MIN: usize = AggrType::Min as usize;
pub(crate) const MAX: usize = AggrType::Max as usize;
pub(crate) const COUNTER: usize = AggrType::Counter as usize;

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

pub(crate) fn append(e: &mut XorEncoder, t: i64, v: f64) -> HResult<()> {
    e.append(t, v)
        .map_err(|_| "an aggregate would hold more than 65535 samples, the most a chunk can count".to_string())
}

/// Encodes the five slots (`None`: unset) into an aggregate chunk's data.
pub(crate) fn encode_slots(slots: [Option<(Encoding, Vec<u8>)>; 5]) -> Vec<u8> {
    let subs: Slots<'_> =
        std::array::from_fn(|i| slots[i].as_ref().map(|(e, d)| SubChunk { encoding: *e as u8, data: d }));
    aggr::encode(&subs)
}

/// Splits a run of raw float samples into batches and aggregates each (Thanos's
/// `DownsampleRaw` for floats). Batches hold `len / chunks + 1` samples, extended to the
/// end of the window their last sample falls into, so the raw path never splits a window;
/// NaN samples are dropped from each batch; an empty batch yields no chunk.
pub(crate) fn raw_float_chunks(
    data: &[(i64, f64)],
    resolution: i64,
    batch: &mut Vec<(i64, f64)>,
    out: &mut Vec<AggrChunk>,
) -> HResult<()> {
    let (Some(first), Some(last)) = (data.first(), data.last()) else { return Ok(()) };
    let chunks = target_chunk_count(first.0, last.0, RAW_ASSUMED_INTERVAL_MS, resolution, data.len());
    raw_float_chunks_n(data, resolution, chunks, batch, out)
}

/// [`raw_float_chunks`] with the number of target chunks given (Thanos's
/// `downsampleRawLoop`).
pub(crate) fn raw_float_chunks_n(
    data: &[(i64, f64)],
    resolution: i64,
    chunks: usize,
    batch: &mut Vec<(i64, f64)>,
    out: &mut Vec<AggrChunk>,
) -> HResult<()> {
    let batch_size = data.len() / chunks.max(1) + 1;
    let mut rest = data;
    while !rest.is_empty() {
        let mut j = batch_size.min(rest.len());
        let end = window_end(rest[j - 1].0, resolution);
        while j < rest.len() && rest[j].0 <= end {
            j += 1;
        }
        let part = &rest[..j];
        rest = &rest[j..];
        if part.iter().any(|s| s.1.is_nan()) {
            batch.clear();
            batch.extend(part.iter().filter(|s| !s.1.is_nan()));
            if !batch.is_empty() {
                out.push(float_batch(batch, resolution)?);
            }
        } else {
            out.push(float_batch(part, resolution)?);
        }
    }
    Ok(())
}

/// One aggregate chunk from a batch of raw floats: count, sum, min and max per window;
/// the counter slot holds the first raw sample, the counter per window, and the last raw
/// value again at the last window's timestamp (a duplicate timestamp), which is how
/// readers detect a reset between two chunks.
fn float_batch(batch: &[(i64, f64)], resolution: i64) -> HResult<AggrChunk> {
    // `downsample_batch` with a `FloatAgg`, written out with the state in locals: this is
    // the loop every raw sample goes through.
    let mut e: [XorEncoder; 5] = Default::default();
    let (first_t, first_v) = batch[0];
    append(&mut e[COUNTER], first_t, first_v)?;
    let last_t = batch[batch.len() - 1].0;
    let mut next_t = window_end(first_t, resolution).min(last_t);
    let (mut count, mut sum, mut min, mut max) = (0u32, 0.0f64, f64::MAX, -f64::MAX);
    let (mut counter, mut last) = (first_v, first_v);
    let mut emit = |t: i64, count: u32, sum: f64, min: f64, max: f64, counter: f64| -> HResult<()> {
        append(&mut e[SUM], t, sum)?;
        append(&mut e[MIN], t, min)?;
        append(&mut e[MAX], t, max)?;
        append(&mut e[COUNT], t, count as f64)?;
        append(&mut e[COUNTER], t, counter)
    };
    let mint = next_t;
    for (i, &(t, v)) in batch.iter().enumerate() {
        if t > next_t {
            emit(next_t, count, sum, min, max, counter)?;
            (count, sum, min, max) = (0, 0.0, f64::MAX, -f64::MAX);
            next_t = window_end(t, resolution).min(last_t);
        }
        if i > 0 {
            // A drop is a reset: the counter restarted from zero.
            counter += if v < last { v } else { v - last };
        }
        last = v;
        sum += v;
        count += 1;
        min = if v < min { v } else { min };
        max = if v > max { v } else { max };
    }
    emit(next_t, count, sum, min, max, counter)?;
    append(&mut e[COUNTER], next_t, last)?;
    let [c, s, mn, mx, ctr] = e;
    let data = encode_slots([c, s, mn, mx, ctr].map(|e| Some((Encoding::Xor, e.finish()))));
    Ok(AggrChunk { min_time: mint, max_time: next_t, data })
}

/// Appends a chunk's samples to `out` as Thanos expands them: stale markers dropped, and
/// a sample earlier than the previous kept one dropped (the comparison starts at 0, so
/// negative timestamps are dropped too). Equal timestamps are kept.
pub(crate) fn keep_expanded(out: &mut Vec<(i64, f64)>, start: usize) {
    let mut last_t = 0i64;
    // Usually nothing is dropped: find the first sample that is, without writing.
    let mut first_dropped = start;
    while first_dropped < out.len() {
        let (t, v) = out[first_dropped];
        if is_stale(v) || t < last_t {
            break;
        }
        last_t = t;
        first_dropped += 1;
    }
    let mut w = first_dropped;
    for r in first_dropped..out.len() {
        let (t, v) = out[r];
        if is_stale(v) || t < last_t {
            continue;
        }
        out[w] = (t, v);
        w += 1;
        last_t = t;
    }
    out.truncate(w);
}

/// Decodes an XOR slot and appends its samples as Thanos expands them.
fn expand_xor_slot(sub: SubChunk<'_>, which: usize, out: &mut Vec<(i64, f64)>) -> HResult<()> {
    if sub.encoding != Encoding::Xor as u8 {
        return Err(format!(
            "{} slot holds a chunk of encoding {}, not XOR",
            AggrType::ALL[which].name(),
            sub.encoding
        ));
    }
    let start = out.len();
    xor::decode_into(sub.data, out).map_err(|e| format!("{} slot: {e}", AggrType::ALL[which].name()))?;
    keep_expanded(out, start);
    Ok(())
}

/// Buffers reused across batches.
#[derive(Default)]
pub(crate) struct AggrScratch {
    pub buf: Vec<(i64, f64)>,
    pub counters: Vec<Vec<(i64, f64)>>,
    pub hists: Vec<(i64, crate::format::histogram::FloatHistogram)>,
}

/// Aggregates one slot of every chunk of the batch with `pick` (count and sum: the sum of
/// the window; min: min; max: max). Returns the encoded slot, or `None` when no chunk has
/// samples in it.
pub(crate) fn aggregate_slot(
    chunks: &[Slots<'_>],
    which: usize,
    resolution: i64,
    pick: fn(&FloatAgg) -> f64,
    buf: &mut Vec<(i64, f64)>,
    range: &mut (i64, i64),
) -> HResult<Option<Vec<u8>>> {
    buf.clear();
    for c in chunks {
        if let Some(sub) = c[which] {
            expand_xor_slot(sub, which, buf)?;
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    let mut e = XorEncoder::new();
    downsample_batch(
        buf,
        |s| s.0,
        resolution,
        &mut FloatAgg::default(),
        |t, a| {
            range.0 = range.0.min(t);
            range.1 = range.1.max(t);
            append(&mut e, t, pick(a))
        },
    )?;
    Ok(Some(e.finish()))
}

/// One coarser aggregate chunk from a batch of float aggregate chunks (Thanos's
/// `downsampleFloatAggrBatch`). Count and sum add up, min and max take the extremes; the
/// counter slots are joined with [`CounterResets`] (resets between chunks detected through
/// each chunk's trailing raw value), then aggregated like raw counters, keeping the first
/// raw value and the true last raw value. `None` when no slot has any sample.
pub(crate) fn aggr_float_batch(
    chunks: &[Slots<'_>],
    resolution: i64,
    s: &mut AggrScratch,
) -> HResult<Option<AggrChunk>> {
    let mut range = (i64::MAX, i64::MIN);
    let mut slots: [Option<(Encoding, Vec<u8>)>; 5] = Default::default();
    type Pick = (usize, fn(&FloatAgg) -> f64);
    let picks: [Pick; 4] = [(COUNT, |a| a.sum), (SUM, |a| a.sum), (MIN, |a| a.min), (MAX, |a| a.max)];
    for (which, pick) in picks {
        slots[which] =
            aggregate_slot(chunks, which, resolution, pick, &mut s.buf, &mut range)?.map(|d| (Encoding::Xor, d));
    }

    let mut used = 0;
    for c in chunks {
        let Some(sub) = c[COUNTER] else { continue };
        if sub.encoding != Encoding::Xor as u8 {
            return Err(format!("counter slot holds a chunk of encoding {}, not XOR", sub.encoding));
        }
        if used == s.counters.len() {
            s.counters.push(Vec::new());
        }
        s.counters[used].clear();
        xor::decode_into(sub.data, &mut s.counters[used]).map_err(|e| format!("counter slot: {e}"))?;
        used += 1;
    }
    let parts: Vec<&[(i64, f64)]> = s.counters[..used].iter().map(|v| v.as_slice()).collect();
    let mut it = CounterResets::new(parts);
    s.buf.clear();
    while it.next() {
        s.buf.push(it.at());
    }
    keep_expanded(&mut s.buf, 0);
    if !s.buf.is_empty() {
        let mut e = XorEncoder::new();
        append(&mut e, s.buf[0].0, s.buf[0].1)?;
        let last_t = downsample_batch(
            &s.buf,
            |x| x.0,
            resolution,
            &mut FloatAgg::default(),
            |t, a| {
                range.0 = range.0.min(t);
                range.1 = range.1.max(t);
                append(&mut e, t, a.counter)
            },
        )?;
        append(&mut e, last_t, it.last_v())?;
        slots[COUNTER] = Some((Encoding::Xor, e.finish()));
    }
    if range.0 == i64::MAX {
        return Ok(None);
    }
    Ok(Some(AggrChunk { min_time: range.0, max_time: range.1, data: encode_slots(slots) }))
}

/// Joins the counter slots of consecutive aggregate chunks (or raw counter chunks) into one
/// monotonic series, as Thanos's `ApplyCounterResetsSeriesIterator` does. NaN samples are
/// skipped. A later timestamp adds the increase since the previous value, or the whole
/// value after a reset (a drop); a repeated timestamp is a chunk's "true last raw value"
/// marker and only updates the value the next comparison starts from; an earlier one is
/// ignored. After each chunk the iterator moves on to the first sample after the last
/// timestamp it returned.
pub struct CounterResets<'a> {
    chunks: Vec<&'a [(i64, f64)]>,
    i: usize,
    pos: usize,
    total: usize,
    last_t: i64,
    last_v: f64,
    total_v: f64,
    /// Whether the underlying chunk last produced a sample (Go's `lastValType`).
    last_float: bool,
}

impl<'a> CounterResets<'a> {
    pub fn new(chunks: Vec<&'a [(i64, f64)]>) -> Self {
        CounterResets { chunks, i: 0, pos: 0, total: 0, last_t: 0, last_v: 0.0, total_v: 0.0, last_float: false }
    }

    /// The current sample: the last timestamp returned and the counter with resets added.
    pub fn at(&self) -> (i64, f64) {
        (self.last_t, self.total_v)
    }

    /// The last raw value seen (a chunk's trailing marker included).
    pub fn last_v(&self) -> f64 {
        self.last_v
    }

    /// Advances to the next sample; false at the end.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> bool {
        // Set when a chunk ran out: Go then seeks to the sample after the last one returned.
        let mut seek: Option<i64> = None;
        loop {
            let Some(chunk) = self.chunks.get(self.i) else {
                self.last_float = false;
                return false;
            };
            let Some(&(t, v)) = chunk.get(self.pos) else {
                self.i += 1;
                self.pos = 0;
                self.last_float = false;
                let x = self.last_t.saturating_add(1);
                seek = Some(seek.map_or(x, |s| s.max(x)));
                continue;
            };
            self.pos += 1;
            self.last_float = true;
            if v.is_nan() {
                continue;
            }
            let returned = if self.total == 0 {
                self.total = 1;
                (self.last_t, self.last_v, self.total_v) = (t, v, v);
                true
            } else if t > self.last_t {
                if v >= self.last_v {
                    self.total_v += v - self.last_v;
                } else {
                    self.total_v += v;
                }
                (self.last_t, self.last_v) = (t, v);
                self.total += 1;
                true
            } else {
                if t == self.last_t {
                    self.last_v = v;
                }
                false
            };
            if returned && seek.is_none_or(|x| self.last_t >= x) {
                return true;
            }
        }
    }

    /// Moves to the first sample at or after `x` (Go's `Seek`, which walks with `next` so
    /// that no reset is missed). False when there is none.
    pub fn seek(&mut self, x: i64) -> bool {
        loop {
            if self.last_t >= x {
                return self.last_float;
            }
            if !self.next() {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(data: &[u8], which: AggrType) -> Vec<(i64, f64)> {
        crate::format::sample::decode_aggr(data, which)
            .map(|s| match s {
                crate::format::sample::ChunkSamples::Float(v) => v,
                other => panic!("not floats: {other:?}"),
            })
            .unwrap()
    }

    #[test]
    fn a_raw_batch_keeps_the_first_and_last_raw_value_in_the_counter_slot() {
        let data = [(10, 1.0), (20, 3.0), (30, 5.0), (50, 1.0), (60, 8.0), (70, 10.0)];
        let mut out = Vec::new();
        raw_float_chunks(&data, 50, &mut Vec::new(), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        let c = &out[0];
        assert_eq!((c.min_time, c.max_time), (49, 70));
        assert_eq!(slot(&c.data, AggrType::Count), vec![(49, 3.0), (70, 3.0)]);
        assert_eq!(slot(&c.data, AggrType::Counter), vec![(10, 1.0), (49, 5.0), (70, 15.0), (70, 10.0)]);
    }

    #[test]
    fn counter_resets_seek_walks_forward_and_reports_the_end() {
        let c = [(100, 10.0), (200, 20.0), (300, 10.0), (400, 20.0), (400, 5.0)];
        let mut it = CounterResets::new(vec![&c]);
        assert!(it.seek(150));
        assert_eq!(it.at(), (200, 20.0));
        assert!(it.next());
        assert_eq!(it.at(), (300, 30.0));
        let mut it = CounterResets::new(vec![&c]);
        assert!(!it.seek(500));
        let one = [(100, 10.0)];
        let mut it = CounterResets::new(vec![&one]);
        assert!(it.next());
        assert!(it.seek(50));
        assert_eq!(it.at(), (100, 10.0));
        assert!(!it.next());
    }
}
