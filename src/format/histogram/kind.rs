//! What differs between integer (encoding 2) and float (encoding 3) histogram chunks: how
//! the count, zero count, sum and buckets of each sample are written and read. Everything
//! else (header, layout, timestamps, the append rules) is shared by [`super::Encoder`] and
//! [`super::ChunkIter`], which are generic over [`HistogramSample`].
//!
//! Integer chunks write the first sample's counts as varbit integers and each later one as
//! a delta of delta, the sum XOR-encoded; float chunks write every field XOR-encoded, each
//! with its own leading/trailing-zero window.

use std::fmt::Debug;

use super::layout::{Layout, LayoutRef};
use super::model::{is_stale, CounterResetHint, FloatHistogram, Histogram};
use super::varbit::{read_varbit_int, read_varbit_uint, write_varbit_int, write_varbit_uint};
use crate::error::FormatResult;
use crate::format::bstream::{BitReader, BitWriter};
use crate::format::xor::XorState;

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Histogram {}
    impl Sealed for super::FloatHistogram {}
}

/// A sample type a histogram chunk holds: [`Histogram`] (encoding 2) or [`FloatHistogram`]
/// (encoding 3). Sealed; the encoder and the iterator are generic over it.
pub trait HistogramSample: Clone + Default + sealed::Sealed {
    /// The running counts of a chunk: what the encoder wrote last, or the iterator read.
    #[doc(hidden)]
    type Counts: Counts<Self>;
    /// The section named in errors.
    #[doc(hidden)]
    const SECTION: &'static str;
    /// The fewest bits a bucket of a chunk's first sample takes, to bound forged counts.
    #[doc(hidden)]
    const FIRST_BUCKET_BITS: u64;

    fn counter_reset_hint(&self) -> CounterResetHint;

    /// Whether this sample is a stale marker.
    fn is_stale(&self) -> bool;

    /// The number of positive and negative buckets.
    #[doc(hidden)]
    fn bucket_lens(&self) -> (usize, usize);

    #[doc(hidden)]
    fn layout(&self) -> LayoutRef<'_>;
}

/// The per-kind half of the codec. Every method runs after the shared part of the sample
/// (layout and timestamp) has been written or read.
pub trait Counts<S>: Clone + Debug + Default {
    /// Whether `h`'s count is below the last sample's (Prometheus checks this before the
    /// layout).
    fn count_decreased(&self, h: &S) -> bool;
    /// Whether `h`'s zero count or any bucket is below the last sample's, for `h` of the
    /// same layout.
    fn buckets_decreased(&self, h: &S) -> bool;
    /// Writes the counts of a chunk's first sample; a stale marker writes no buckets.
    fn write_first(&mut self, w: &mut BitWriter, h: &S, stale: bool);
    /// Writes the counts of a later sample relative to the last one.
    fn write_next(&mut self, w: &mut BitWriter, h: &S, stale: bool);
    /// Reads what [`Counts::write_first`] wrote, for a layout of `pos` + `neg` buckets.
    fn read_first(&mut self, r: &mut BitReader<'_>, pos: usize, neg: usize) -> FormatResult<()>;
    /// Reads what [`Counts::write_next`] wrote.
    fn read_next(&mut self, r: &mut BitReader<'_>) -> FormatResult<()>;
    /// The sample last read, with the chunk's layout and the reader's hint.
    fn sample(&self, layout: &Layout, hint: CounterResetHint) -> S;
}

/// Implements [`HistogramSample`] for a model type: the fields both types share.
macro_rules! histogram_sample {
    ($sample:ty, $counts:ty, $section:literal, $first_bucket_bits:literal) => {
        impl HistogramSample for $sample {
            type Counts = $counts;
            const SECTION: &'static str = $section;
            const FIRST_BUCKET_BITS: u64 = $first_bucket_bits;

            fn counter_reset_hint(&self) -> CounterResetHint {
                self.counter_reset_hint
            }

            fn is_stale(&self) -> bool {
                is_stale(self.sum)
            }

            fn bucket_lens(&self) -> (usize, usize) {
                (self.positive_buckets.len(), self.negative_buckets.len())
            }

            fn layout(&self) -> LayoutRef<'_> {
                LayoutRef {
                    schema: self.schema,
                    zero_threshold: self.zero_threshold,
                    positive_spans: &self.positive_spans,
                    negative_spans: &self.negative_spans,
                    custom_values: &self.custom_values,
                }
            }
        }
    };
}

// A varbit bucket is at least one bit, a raw float 64.
histogram_sample!(Histogram, IntCounts, "histogram chunk", 1);
histogram_sample!(FloatHistogram, FloatCounts, "float histogram chunk", 64);

/// Integer counts: absolute values and their last delta; buckets are in-model deltas
/// (see [`Histogram`]) with their change over time.
#[derive(Clone, Debug, Default)]
pub struct IntCounts {
    count: u64,
    zero_count: u64,
    count_delta: i64,
    zero_count_delta: i64,
    sum: u64,
    sum_xor: XorState,
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
}

impl Counts<Histogram> for IntCounts {
    fn count_decreased(&self, h: &Histogram) -> bool {
        h.count < self.count
    }

    fn buckets_decreased(&self, h: &Histogram) -> bool {
        h.zero_count < self.zero_count
            || any_bucket_decreased(&self.positive, &h.positive_buckets)
            || any_bucket_decreased(&self.negative, &h.negative_buckets)
    }

    fn write_first(&mut self, w: &mut BitWriter, h: &Histogram, stale: bool) {
        let (count, zero_count) = if stale { (0, 0) } else { (h.count, h.zero_count) };
        write_varbit_uint(w, count);
        write_varbit_uint(w, zero_count);
        w.write_bits(h.sum.to_bits(), 64);
        self.positive.clear();
        self.negative.clear();
        if !stale {
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                write_varbit_int(w, b);
            }
            self.positive.extend_from_slice(&h.positive_buckets);
            self.negative.extend_from_slice(&h.negative_buckets);
        }
        self.positive_delta = vec![0; self.positive.len()];
        self.negative_delta = vec![0; self.negative.len()];
        self.count = count;
        self.zero_count = zero_count;
        self.count_delta = 0;
        self.zero_count_delta = 0;
        self.sum = h.sum.to_bits();
    }

    fn write_next(&mut self, w: &mut BitWriter, h: &Histogram, stale: bool) {
        let (count, zero_count) = if stale { (0, 0) } else { (h.count, h.zero_count) };
        let count_delta = (count as i64).wrapping_sub(self.count as i64);
        let zero_count_delta = (zero_count as i64).wrapping_sub(self.zero_count as i64);
        let (count_dod, zero_count_dod) = if stale {
            (0, 0)
        } else {
            (count_delta.wrapping_sub(self.count_delta), zero_count_delta.wrapping_sub(self.zero_count_delta))
        };
        write_varbit_int(w, count_dod);
        write_varbit_int(w, zero_count_dod);
        let sum = h.sum.to_bits();
        self.sum_xor.write(w, sum, self.sum);
        if !stale {
            write_bucket_dods(w, &h.positive_buckets, &mut self.positive, &mut self.positive_delta);
            write_bucket_dods(w, &h.negative_buckets, &mut self.negative, &mut self.negative_delta);
        }
        self.count = count;
        self.zero_count = zero_count;
        self.count_delta = count_delta;
        self.zero_count_delta = zero_count_delta;
        self.sum = sum;
    }

    fn read_first(&mut self, r: &mut BitReader<'_>, pos: usize, neg: usize) -> FormatResult<()> {
        self.count = read_varbit_uint(r, "count")?;
        self.zero_count = read_varbit_uint(r, "zero count")?;
        self.sum = r.read_bits(64, "sum")?;
        self.positive = (0..pos).map(|_| read_varbit_int(r, "bucket")).collect::<FormatResult<_>>()?;
        self.negative = (0..neg).map(|_| read_varbit_int(r, "bucket")).collect::<FormatResult<_>>()?;
        self.positive_delta = vec![0; pos];
        self.negative_delta = vec![0; neg];
        Ok(())
    }

    fn read_next(&mut self, r: &mut BitReader<'_>) -> FormatResult<()> {
        self.count_delta = self.count_delta.wrapping_add(read_varbit_int(r, "count delta of delta")?);
        self.count = (self.count as i64).wrapping_add(self.count_delta) as u64;
        self.zero_count_delta = self.zero_count_delta.wrapping_add(read_varbit_int(r, "zero count delta of delta")?);
        self.zero_count = (self.zero_count as i64).wrapping_add(self.zero_count_delta) as u64;
        self.sum = self.sum_xor.read(r, self.sum)?;
        if is_stale(f64::from_bits(self.sum)) {
            return Ok(());
        }
        for (b, d) in self
            .positive
            .iter_mut()
            .zip(self.positive_delta.iter_mut())
            .chain(self.negative.iter_mut().zip(self.negative_delta.iter_mut()))
        {
            *d = d.wrapping_add(read_varbit_int(r, "bucket delta of delta")?);
            *b = b.wrapping_add(*d);
        }
        Ok(())
    }

    fn sample(&self, layout: &Layout, hint: CounterResetHint) -> Histogram {
        let sum = f64::from_bits(self.sum);
        if is_stale(sum) {
            return Histogram { sum, ..Histogram::default() };
        }
        Histogram {
            counter_reset_hint: hint,
            schema: layout.schema,
            zero_threshold: layout.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum,
            positive_spans: layout.positive_spans.clone(),
            negative_spans: layout.negative_spans.clone(),
            positive_buckets: self.positive.clone(),
            negative_buckets: self.negative.clone(),
            custom_values: layout.custom_values.clone(),
        }
    }
}

/// Writes each bucket's delta of delta over time and updates the state.
fn write_bucket_dods(w: &mut BitWriter, buckets: &[i64], prev: &mut [i64], prev_delta: &mut [i64]) {
    for ((&b, p), pd) in buckets.iter().zip(prev.iter_mut()).zip(prev_delta.iter_mut()) {
        let delta = b.wrapping_sub(*p);
        write_varbit_int(w, delta.wrapping_sub(*pd));
        *pd = delta;
        *p = b;
    }
}

/// Whether any absolute bucket count (running sum of in-model deltas) went down, for two
/// bucket lists of the same layout.
fn any_bucket_decreased(prev: &[i64], new: &[i64]) -> bool {
    let (mut a, mut b) = (0i64, 0i64);
    prev.iter().zip(new).any(|(&p, &n)| {
        a = a.wrapping_add(p);
        b = b.wrapping_add(n);
        b < a
    })
}

/// One XOR-encoded field of a float histogram: its last value and its own window.
#[derive(Clone, Copy, Debug, Default)]
struct XorField {
    bits: u64,
    state: XorState,
}

impl XorField {
    fn raw(v: f64) -> Self {
        XorField { bits: v.to_bits(), state: XorState::default() }
    }

    fn write(&mut self, w: &mut BitWriter, v: f64) {
        let bits = v.to_bits();
        self.state.write(w, bits, self.bits);
        self.bits = bits;
    }

    fn read(&mut self, r: &mut BitReader<'_>) -> FormatResult<f64> {
        self.bits = self.state.read(r, self.bits)?;
        Ok(f64::from_bits(self.bits))
    }

    fn value(&self) -> f64 {
        f64::from_bits(self.bits)
    }
}

/// Float counts: every field is its own XOR stream.
#[derive(Clone, Debug, Default)]
pub struct FloatCounts {
    count: XorField,
    zero_count: XorField,
    sum: XorField,
    positive: Vec<XorField>,
    negative: Vec<XorField>,
}

impl Counts<FloatHistogram> for FloatCounts {
    fn count_decreased(&self, h: &FloatHistogram) -> bool {
        h.count < self.count.value()
    }

    fn buckets_decreased(&self, h: &FloatHistogram) -> bool {
        let decreased = |prev: &[XorField], new: &[f64]| prev.iter().zip(new).any(|(p, &n)| n < p.value());
        h.zero_count < self.zero_count.value()
            || decreased(&self.positive, &h.positive_buckets)
            || decreased(&self.negative, &h.negative_buckets)
    }

    fn write_first(&mut self, w: &mut BitWriter, h: &FloatHistogram, stale: bool) {
        let (count, zero_count) = if stale { (0.0, 0.0) } else { (h.count, h.zero_count) };
        for v in [count, zero_count, h.sum] {
            w.write_bits(v.to_bits(), 64);
        }
        self.count = XorField::raw(count);
        self.zero_count = XorField::raw(zero_count);
        self.sum = XorField::raw(h.sum);
        self.positive.clear();
        self.negative.clear();
        if !stale {
            for &b in h.positive_buckets.iter().chain(&h.negative_buckets) {
                w.write_bits(b.to_bits(), 64);
            }
            self.positive.extend(h.positive_buckets.iter().map(|&b| XorField::raw(b)));
            self.negative.extend(h.negative_buckets.iter().map(|&b| XorField::raw(b)));
        }
    }

    fn write_next(&mut self, w: &mut BitWriter, h: &FloatHistogram, stale: bool) {
        // A stale marker's count and zero count are written as zero, as Prometheus does.
        let (count, zero_count) = if stale { (0.0, 0.0) } else { (h.count, h.zero_count) };
        self.count.write(w, count);
        self.zero_count.write(w, zero_count);
        self.sum.write(w, h.sum);
        if !stale {
            for (field, &b) in self.positive.iter_mut().zip(&h.positive_buckets) {
                field.write(w, b);
            }
            for (field, &b) in self.negative.iter_mut().zip(&h.negative_buckets) {
                field.write(w, b);
            }
        }
    }

    fn read_first(&mut self, r: &mut BitReader<'_>, pos: usize, neg: usize) -> FormatResult<()> {
        let mut raw = |what| r.read_bits(64, what).map(|bits| XorField { bits, state: XorState::default() });
        self.count = raw("count")?;
        self.zero_count = raw("zero count")?;
        self.sum = raw("sum")?;
        self.positive = (0..pos).map(|_| raw("bucket")).collect::<FormatResult<_>>()?;
        self.negative = (0..neg).map(|_| raw("bucket")).collect::<FormatResult<_>>()?;
        Ok(())
    }

    fn read_next(&mut self, r: &mut BitReader<'_>) -> FormatResult<()> {
        self.count.read(r)?;
        self.zero_count.read(r)?;
        if is_stale(self.sum.read(r)?) {
            return Ok(());
        }
        for field in self.positive.iter_mut().chain(self.negative.iter_mut()) {
            field.read(r)?;
        }
        Ok(())
    }

    fn sample(&self, layout: &Layout, hint: CounterResetHint) -> FloatHistogram {
        let sum = self.sum.value();
        if is_stale(sum) {
            return FloatHistogram { sum, ..FloatHistogram::default() };
        }
        FloatHistogram {
            counter_reset_hint: hint,
            schema: layout.schema,
            zero_threshold: layout.zero_threshold,
            zero_count: self.zero_count.value(),
            count: self.count.value(),
            sum,
            positive_spans: layout.positive_spans.clone(),
            negative_spans: layout.negative_spans.clone(),
            positive_buckets: self.positive.iter().map(XorField::value).collect(),
            negative_buckets: self.negative.iter().map(XorField::value).collect(),
            custom_values: layout.custom_values.clone(),
        }
    }
}
