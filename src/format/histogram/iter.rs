//! The chunk iterator, one for both sample kinds: it reads the header, the layout and the
//! timestamps and leaves the counts to [`super::kind`]. It never panics and never
//! allocates more than the input bytes can justify.

use super::kind::{Counts, HistogramSample};
use super::layout::{read_custom_bound, read_zero_threshold, Layout};
use super::model::{
    is_known_schema, CounterResetHint, FloatHistogram, Histogram, Span, CUSTOM_BUCKETS_SCHEMA, HEADER_LEN,
};
use super::varbit::{read_varbit_int, read_varbit_uint};
use crate::error::{FormatError, FormatResult};
use crate::format::bstream::BitReader;

/// Iterates the samples of an integer histogram chunk (encoding 2).
pub type HistogramIter<'a> = ChunkIter<'a, Histogram>;

/// Iterates the samples of a float histogram chunk (encoding 3).
pub type FloatHistogramIter<'a> = ChunkIter<'a, FloatHistogram>;

/// The hint a reader gives the `n`th sample (1-based) of a chunk with header `header`.
///
/// This follows Prometheus v2.42's `counterResetHint`: every sample of a gauge chunk is
/// `Gauge`; in a counter chunk the samples after the first are `NotCounterReset`, and the
/// first is `CounterReset` when the header says so and `Unknown` otherwise (a
/// `NotCounterReset` header is not trusted, since the previous chunk may be gone).
/// Prometheus 3 no longer passes `CounterReset` through; we keep v2.42's choice so that
/// re-encoding a decoded chunk restores its `CounterReset` header. Stale markers are
/// returned with `Unknown`, like Prometheus's `Histogram{Sum: StaleNaN}`.
pub(super) fn sample_hint(header: CounterResetHint, n: u16) -> CounterResetHint {
    match header {
        CounterResetHint::Gauge => CounterResetHint::Gauge,
        _ if n > 1 => CounterResetHint::NotCounterReset,
        CounterResetHint::CounterReset => CounterResetHint::CounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// Iterates the samples of a histogram chunk of either encoding ([`HistogramIter`],
/// [`FloatHistogramIter`]).
///
/// Stops after the first error; every count read from the chunk is checked against the
/// bits left, so no input makes it allocate much more than its own size.
#[derive(Clone)]
pub struct ChunkIter<'a, S: HistogramSample> {
    r: BitReader<'a>,
    /// Length of the bit stream, to bound counts read from it.
    end_bits: u64,
    total: u16,
    read: u16,
    header: CounterResetHint,
    layout: Layout,
    t: i64,
    t_delta: i64,
    failed: bool,
    counts: S::Counts,
}

impl<'a, S: HistogramSample> ChunkIter<'a, S> {
    pub fn new(data: &'a [u8]) -> FormatResult<Self> {
        if data.len() < HEADER_LEN {
            return Err(FormatError::new(
                S::SECTION,
                0,
                format!("chunk of {} bytes is shorter than its 3-byte header", data.len()),
            ));
        }
        let stream = &data[HEADER_LEN..];
        Ok(ChunkIter {
            r: BitReader::new(stream, HEADER_LEN as u64, S::SECTION),
            end_bits: stream.len() as u64 * 8,
            total: u16::from_be_bytes([data[0], data[1]]),
            read: 0,
            header: CounterResetHint::from_header_byte(data[2]),
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            failed: false,
            counts: S::Counts::default(),
        })
    }

    fn remaining_bits(&self) -> u64 {
        self.end_bits.saturating_sub(self.r.bit_position())
    }

    fn err(&self, problem: impl Into<String>) -> FormatError {
        FormatError::new(S::SECTION, HEADER_LEN as u64 + self.r.bit_position() / 8, problem)
    }

    /// `count` items of at least `min_bits` bits each must fit in the rest of the stream;
    /// this is what keeps a forged count from allocating more than the input justifies.
    fn check_fits(&self, count: u64, min_bits: u64, what: &str) -> FormatResult<usize> {
        let remaining = self.remaining_bits();
        match count.checked_mul(min_bits) {
            Some(bits) if bits <= remaining => Ok(count as usize),
            _ => Err(self.err(format!("{what}: {count} do not fit in the {remaining} bits left"))),
        }
    }

    fn read_spans(&mut self, what: &'static str) -> FormatResult<Vec<Span>> {
        let n = read_varbit_uint(&mut self.r, what)?;
        // A span is at least two bits: a one-bit length and a one-bit offset.
        let n = self.check_fits(n, 2, what)?;
        let mut spans = Vec::with_capacity(n);
        for _ in 0..n {
            let length = read_varbit_uint(&mut self.r, "span length")?;
            let offset = read_varbit_int(&mut self.r, "span offset")?;
            let (Ok(length), Ok(offset)) = (u32::try_from(length), i32::try_from(offset)) else {
                return Err(self.err(format!("span length {length} or offset {offset} out of range")));
            };
            spans.push(Span { offset, length });
        }
        Ok(spans)
    }

    fn read_layout(&mut self) -> FormatResult<()> {
        let zero_threshold = read_zero_threshold(&mut self.r)?;
        let raw = read_varbit_int(&mut self.r, "schema")?;
        let schema = match i32::try_from(raw) {
            Ok(s) if is_known_schema(s) => s,
            _ => return Err(self.err(format!("unknown schema {raw}"))),
        };
        let positive_spans = self.read_spans("positive spans")?;
        let negative_spans = self.read_spans("negative spans")?;
        let mut custom_values = Vec::new();
        if schema == CUSTOM_BUCKETS_SCHEMA {
            let n = read_varbit_uint(&mut self.r, "custom bounds")?;
            // A bound is at least five bits (a varbit of 1..=7) or 65 (a raw float).
            let n = self.check_fits(n, 5, "custom bounds")?;
            custom_values.reserve_exact(n);
            for _ in 0..n {
                custom_values.push(read_custom_bound(&mut self.r)?);
            }
        }
        self.layout = Layout { schema, zero_threshold, positive_spans, negative_spans, custom_values };
        Ok(())
    }

    /// The number of samples the header announces.
    pub fn total(&self) -> usize {
        self.total as usize
    }

    /// The hint in the chunk header (which the first sample's hint does not always show).
    pub fn counter_reset_header(&self) -> CounterResetHint {
        self.header
    }

    fn step(&mut self) -> FormatResult<(i64, S)> {
        if self.read == 0 {
            self.read_first()?;
        } else {
            let dod = read_varbit_int(&mut self.r, "timestamp delta of delta")?;
            self.t_delta = self.t_delta.wrapping_add(dod);
            self.t = self.t.wrapping_add(self.t_delta);
            self.counts.read_next(&mut self.r)?;
        }
        self.read += 1;
        Ok((self.t, self.counts.sample(&self.layout, sample_hint(self.header, self.read))))
    }

    /// Reads the layout, the first timestamp and the first sample's counts. The bucket
    /// counts the layout announces are checked to fit first.
    fn read_first(&mut self) -> FormatResult<()> {
        self.read_layout()?;
        let (pos, neg) = self.layout.bucket_counts();
        self.check_fits(pos.saturating_add(neg), S::FIRST_BUCKET_BITS, "buckets")?;
        self.t = read_varbit_int(&mut self.r, "first timestamp")?;
        self.counts.read_first(&mut self.r, pos as usize, neg as usize)
    }
}

impl<S: HistogramSample> Iterator for ChunkIter<'_, S> {
    type Item = FormatResult<(i64, S)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let res = self.step();
        self.failed = res.is_err();
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some((self.total - self.read) as usize))
        }
    }
}
