//! One series, from its chunks to its aggregate chunks: the per-series part of Thanos's
//! `Downsample`, over bytes (no files), so that tests and benchmarks can drive it.
//!
//! Raw input: the chunks are checked for overlaps, expanded (stale markers, samples going
//! back in time, negative timestamps and, unlike Thanos, samples deleted by tombstones are
//! dropped; integer histograms become float histograms) and cut into runs wherever the
//! series switches between floats and histograms; each run is aggregated.
//! Aggregated input: raw chunks found in a downsampled block are first aggregated at 5m,
//! empty ones skipped; consecutive chunks of one kind (float or histogram aggregates) form
//! a group; each group is cut into batches of whole input chunks and each batch becomes one
//! output chunk.

use std::borrow::Cow;

use super::batch::target_chunk_count;
use super::float::{aggr_float_batch, keep_expanded, raw_float_chunks, AggrScratch, COUNTER};
use super::histagg::{aggr_hist_batch, expand_float_histograms, expand_histograms, raw_hist_chunks};
use super::AggrChunk;
use crate::format::aggr::{self, Slots};
use crate::format::chunks::Encoding;
use crate::format::histogram::FloatHistogram;
use crate::format::meta::RES_5M;
use crate::format::tombstones::Interval;
use crate::format::xor;
use crate::FormatError;

/// A chunk of the input series, as the index lists it and the segment holds it.
#[derive(Clone, Copy, Debug)]
pub struct InChunk<'a> {
    pub min_time: i64,
    pub max_time: i64,
    pub encoding: u8,
    pub data: &'a [u8],
}

/// Buffers one worker reuses from series to series.
#[derive(Default)]
pub struct Scratch {
    floats: Vec<(i64, f64)>,
    batch: Vec<(i64, f64)>,
    hists: Vec<(i64, FloatHistogram)>,
    aggr: AggrScratch,
}

/// Why one series could not be downsampled; the caller adds the block, the file and the
/// series.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SeriesError {
    /// Thanos refuses such a series too.
    #[error(
        "found overlapping chunks within series: [{0}, {1}] and [{2}, {3}]; chunks must be ordered by min time and must not overlap"
    )]
    Overlap(i64, i64, i64, i64),
    #[error("{0}")]
    Decode(#[from] FormatError),
    #[error("aggregate chunk in a raw block")]
    AggregateInRaw,
    #[error("unexpected chunk encoding {0}")]
    Encoding(u8),
    #[error("target resolution {to} is not lower than the input's {from}")]
    Resolution { from: i64, to: i64 },
    /// Histogram arithmetic the data does not allow (e.g. schemas that cannot be merged).
    #[error("{0}")]
    Histogram(String),
}

impl From<String> for SeriesError {
    fn from(problem: String) -> Self {
        SeriesError::Histogram(problem)
    }
}

fn is_histogram(encoding: u8) -> bool {
    encoding == Encoding::Histogram as u8 || encoding == Encoding::FloatHistogram as u8
}

/// Thanos refuses a series whose chunks overlap (or are out of order).
fn check_overlaps(chunks: &[InChunk<'_>]) -> Result<(), SeriesError> {
    for w in chunks.windows(2) {
        if w[0].max_time >= w[1].min_time {
            return Err(SeriesError::Overlap(w[0].min_time, w[0].max_time, w[1].min_time, w[1].max_time));
        }
    }
    Ok(())
}

/// Appends a raw chunk's samples, as Thanos expands them, to the float or the histogram
/// buffer.
fn expand_raw(
    c: &InChunk<'_>,
    deleted: &[Interval],
    floats: &mut Vec<(i64, f64)>,
    hists: &mut Vec<(i64, FloatHistogram)>,
) -> Result<(), SeriesError> {
    match Encoding::from_byte(c.encoding) {
        Some(Encoding::Xor) => {
            let start = floats.len();
            xor::decode_into(c.data, floats)?;
            if !deleted.is_empty() {
                let mut w = start;
                for r in start..floats.len() {
                    if !deleted.iter().any(|d| d.contains(floats[r].0)) {
                        floats[w] = floats[r];
                        w += 1;
                    }
                }
                floats.truncate(w);
            }
            keep_expanded(floats, start);
            Ok(())
        }
        Some(Encoding::Histogram) => Ok(expand_histograms(c.data, deleted, hists)?),
        Some(Encoding::FloatHistogram) => Ok(expand_float_histograms(c.data, deleted, hists)?),
        Some(Encoding::Aggr) => Err(SeriesError::AggregateInRaw),
        None => Err(SeriesError::Encoding(c.encoding)),
    }
}

/// Aggregates one series into `out` (appended, in time order). `from` is the input's
/// resolution (0: raw), `to` the output's; `deleted` are the series' tombstones (applied
/// to raw input only). Errors are sentences about the series.
pub fn downsample_series(
    chunks: &[InChunk<'_>],
    from: i64,
    to: i64,
    deleted: &[Interval],
    s: &mut Scratch,
    out: &mut Vec<AggrChunk>,
) -> Result<(), SeriesError> {
    if from >= to {
        return Err(SeriesError::Resolution { from, to });
    }
    check_overlaps(chunks)?;
    if from == 0 {
        raw_series(chunks, to, deleted, s, out)
    } else {
        aggregated_series(chunks, from, to, s, out)
    }
}

fn raw_series(
    chunks: &[InChunk<'_>],
    to: i64,
    deleted: &[Interval],
    s: &mut Scratch,
    out: &mut Vec<AggrChunk>,
) -> Result<(), SeriesError> {
    let Some(first) = chunks.first() else { return Ok(()) };
    s.floats.clear();
    s.hists.clear();
    let mut hist = is_histogram(first.encoding);
    for c in chunks {
        if is_histogram(c.encoding) != hist {
            flush(hist, to, s, out)?;
            hist = !hist;
        }
        expand_raw(c, deleted, &mut s.floats, &mut s.hists)?;
    }
    flush(hist, to, s, out)
}

fn flush(hist: bool, to: i64, s: &mut Scratch, out: &mut Vec<AggrChunk>) -> Result<(), SeriesError> {
    if hist {
        raw_hist_chunks(&s.hists, to, out)?;
        s.hists.clear();
    } else {
        raw_float_chunks(&s.floats, to, &mut s.batch, out)?;
        s.floats.clear();
    }
    Ok(())
}

/// An input chunk of the aggregated path, converted to an aggregate if it was raw.
struct Fixed<'a> {
    min_time: i64,
    max_time: i64,
    data: Cow<'a, [u8]>,
}

fn aggregated_series(
    chunks: &[InChunk<'_>],
    from: i64,
    to: i64,
    s: &mut Scratch,
    out: &mut Vec<AggrChunk>,
) -> Result<(), SeriesError> {
    let mut fixed: Vec<Fixed<'_>> = Vec::with_capacity(chunks.len());
    for c in chunks {
        if c.encoding == Encoding::Aggr as u8 {
            fixed.push(Fixed { min_time: c.min_time, max_time: c.max_time, data: Cow::Borrowed(c.data) });
            continue;
        }
        // A raw chunk in a downsampled block: aggregated at 5m first; an empty one is
        // skipped (Thanos issue #5272).
        if c.data.len() >= 2 && u16::from_be_bytes([c.data[0], c.data[1]]) == 0 {
            continue;
        }
        s.floats.clear();
        s.hists.clear();
        expand_raw(c, &[], &mut s.floats, &mut s.hists)?;
        let mut converted = Vec::new();
        if is_histogram(c.encoding) {
            raw_hist_chunks(&s.hists, RES_5M, &mut converted)?;
        } else {
            raw_float_chunks(&s.floats, RES_5M, &mut s.batch, &mut converted)?;
        }
        fixed.extend(converted.into_iter().map(|a| Fixed {
            min_time: a.min_time,
            max_time: a.max_time,
            data: Cow::Owned(a.data),
        }));
    }
    let slots: Vec<Slots<'_>> = fixed.iter().map(|f| aggr::parse(&f.data)).collect::<Result<_, _>>()?;
    let kinds: Vec<bool> = slots.iter().map(|sl| sl[COUNTER].is_some_and(|c| is_histogram(c.encoding))).collect();
    let mut i = 0;
    while i < slots.len() {
        let mut j = i + 1;
        while j < slots.len() && kinds[j] == kinds[i] {
            j += 1;
        }
        aggregate_group(&slots[i..j], kinds[i], fixed[i].min_time, fixed[j - 1].max_time, from, to, &mut s.aggr, out)?;
        i = j;
    }
    Ok(())
}

/// One group of consecutive aggregate chunks of one kind (Thanos's `downsampleAggr`):
/// batches of `chunks / target` whole input chunks (at least one; Thanos loops forever when
/// this is zero), each into one output chunk.
#[allow(clippy::too_many_arguments)]
fn aggregate_group(
    slots: &[Slots<'_>],
    hist: bool,
    mint: i64,
    maxt: i64,
    from: i64,
    to: i64,
    s: &mut AggrScratch,
    out: &mut Vec<AggrChunk>,
) -> Result<(), SeriesError> {
    let samples: usize = slots
        .iter()
        .map(|sl| {
            sl[0].filter(|c| c.data.len() >= 2).map_or(0, |c| u16::from_be_bytes([c.data[0], c.data[1]]) as usize)
        })
        .sum();
    let target = target_chunk_count(mint, maxt, from, to, samples);
    aggregate_batches(slots, hist, target, to, s, out)
}

/// Cuts a group into batches of `chunks / target` whole input chunks (Thanos's
/// `downsampleAggrLoop`), at least one per batch, and aggregates each.
pub(crate) fn aggregate_batches(
    slots: &[Slots<'_>],
    hist: bool,
    target: usize,
    to: i64,
    s: &mut AggrScratch,
    out: &mut Vec<AggrChunk>,
) -> Result<(), SeriesError> {
    let batch = (slots.len() / target.max(1)).max(1);
    for part in slots.chunks(batch) {
        let c = if hist { aggr_hist_batch(part, to, s)? } else { aggr_float_batch(part, to, s)? };
        out.extend(c);
    }
    Ok(())
}
