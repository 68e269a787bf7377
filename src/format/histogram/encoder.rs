//! The chunk encoder, one for both sample kinds: header, layout, timestamps and the rules
//! for which sample fits a chunk live here; how the counts are written lives in
//! [`super::kind`].

use super::kind::{Counts, HistogramSample};
use super::layout::Layout;
use super::model::{AppendError, CounterResetHint, FloatHistogram, Histogram, HEADER_LEN};
use super::varbit::write_varbit_int;
use crate::format::bstream::BitWriter;
use crate::format::xor::MAX_SAMPLES;

/// Builds one integer histogram chunk (encoding 2), sample by sample, bit for bit as
/// Prometheus 2.42's `HistogramAppender` writes it.
pub type HistogramEncoder = Encoder<Histogram>;

/// Builds one float histogram chunk (encoding 3), bit for bit as Prometheus 2.42's
/// `FloatHistogramAppender` writes it.
pub type FloatHistogramEncoder = Encoder<FloatHistogram>;

/// Whether a chunk holds counter or gauge histograms, decided by its header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// Builds one histogram chunk of either encoding ([`HistogramEncoder`],
/// [`FloatHistogramEncoder`]).
///
/// The chunk header takes the first sample's counter-reset hint;
/// [`set_counter_reset_header`](Self::set_counter_reset_header) overrides it. A chunk
/// whose header is `Gauge` takes gauge histograms, any other takes counter histograms and
/// refuses counter resets.
#[derive(Clone, Debug)]
pub struct Encoder<S: HistogramSample> {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    last_stale: bool,
    counts: S::Counts,
}

impl<S: HistogramSample> Default for Encoder<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: HistogramSample> Encoder<S> {
    pub fn new() -> Self {
        Encoder {
            w: BitWriter::with_prefix(&[0; HEADER_LEN], 128),
            num: 0,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            last_stale: false,
            counts: S::Counts::default(),
        }
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    /// Bytes so far (header included).
    pub fn size(&self) -> usize {
        self.w.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.w.to_vec()
    }

    pub fn finish(self) -> Vec<u8> {
        self.w.into_bytes()
    }

    /// The hint in the chunk header.
    pub fn counter_reset_header(&self) -> CounterResetHint {
        CounterResetHint::from_header_byte(self.w.header()[2])
    }

    /// Overrides the chunk header (Prometheus's `SetCounterResetHeader`). The first
    /// append sets it from the sample's hint, so call this after that.
    pub fn set_counter_reset_header(&mut self, hint: CounterResetHint) {
        let b = &mut self.w.header_mut()[2];
        *b = (*b & 0x3f) | hint.header_bits();
    }

    /// Appends a sample, or says why it needs a new chunk (the chunk is then unchanged).
    ///
    /// A stale marker (sum with [`super::STALE_NAN_BITS`]) is written without layout or
    /// buckets and always fits; after it only stale markers fit.
    pub fn append(&mut self, t: i64, h: &S) -> Result<(), AppendError> {
        let stale = h.is_stale();
        let layout = h.layout();
        if !stale {
            let (positive, negative) = h.bucket_lens();
            layout.check(positive, negative)?;
        }
        if self.num as usize >= MAX_SAMPLES {
            return Err(AppendError::Full);
        }
        if self.num == 0 {
            // A stale marker writes an empty layout and no buckets.
            let layout = if stale { Layout::default() } else { layout.to_layout() };
            self.begin_first(h.counter_reset_hint(), layout, t);
            self.counts.write_first(&mut self.w, h, stale);
        } else {
            match self.gate(h.counter_reset_hint(), stale)? {
                Some(Kind::Gauge) if !self.layout.matches(layout) => return Err(AppendError::LayoutChanged),
                Some(Kind::Counter) => self.check_counter(h)?,
                _ => {}
            }
            self.begin_next(t);
            self.counts.write_next(&mut self.w, h, stale);
        }
        self.last_stale = stale;
        self.num += 1;
        self.w.header_mut()[..2].copy_from_slice(&self.num.to_be_bytes());
        Ok(())
    }

    /// The checks for a later sample that do not look at counts. `None` means the sample
    /// is a stale marker, which any chunk takes; otherwise the chunk's kind, for the
    /// checks that remain.
    fn gate(&self, hint: CounterResetHint, stale: bool) -> Result<Option<Kind>, AppendError> {
        if stale {
            return Ok(None);
        }
        if self.last_stale {
            return Err(AppendError::AfterStale);
        }
        let kind = if self.counter_reset_header() == CounterResetHint::Gauge { Kind::Gauge } else { Kind::Counter };
        let sample_kind = if hint == CounterResetHint::Gauge { Kind::Gauge } else { Kind::Counter };
        if kind != sample_kind {
            return Err(AppendError::KindChanged);
        }
        if kind == Kind::Counter && hint == CounterResetHint::CounterReset {
            return Err(AppendError::CounterReset);
        }
        Ok(Some(kind))
    }

    /// Prometheus's `Appendable` for a counter chunk: the count is checked before the
    /// layout, the rest after.
    fn check_counter(&self, h: &S) -> Result<(), AppendError> {
        if self.counts.count_decreased(h) {
            return Err(AppendError::CounterReset);
        }
        if !self.layout.matches(h.layout()) {
            return Err(AppendError::LayoutChanged);
        }
        if self.counts.buckets_decreased(h) {
            return Err(AppendError::CounterReset);
        }
        Ok(())
    }

    /// Starts the first sample: header, layout and timestamp.
    fn begin_first(&mut self, hint: CounterResetHint, layout: Layout, t: i64) {
        self.set_counter_reset_header(hint);
        layout.write(&mut self.w);
        self.layout = layout;
        write_varbit_int(&mut self.w, t);
        self.t = t;
        self.t_delta = 0;
    }

    /// Starts a later sample: the timestamp's delta of delta.
    fn begin_next(&mut self, t: i64) {
        let t_delta = t.wrapping_sub(self.t);
        write_varbit_int(&mut self.w, t_delta.wrapping_sub(self.t_delta));
        self.t = t;
        self.t_delta = t_delta;
    }
}
