//! Native histogram chunks: integer histograms (encoding 2) and float histograms
//! (encoding 3).
//!
//! Owns: the sample model ([`Histogram`], [`FloatHistogram`], [`Span`],
//! [`CounterResetHint`]) and the chunk codec for both encodings: the varbit integers,
//! the chunk layout (zero threshold, schema, spans, custom bucket bounds), the encoders
//! ([`HistogramEncoder`], [`FloatHistogramEncoder`]) that reproduce Prometheus 2.42's
//! appenders byte for byte, and the iterators ([`HistogramIter`], [`FloatHistogramIter`])
//! that never panic and never allocate more than the input bytes can justify. Also the
//! Go-compatible text form of a float histogram (`impl Display for FloatHistogram`).
//! Must not: know about segment files or CRCs. See `docs/format/chunks.md`.
//!
//! Chunk layout (checked against `tsdb/chunkenc/{histogram,float_histogram,
//! histogram_meta,varbit}.go` at Prometheus v2.42.0; custom bounds from v3.9.1):
//!
//! ```text
//! bytes 0-1  number of samples, big-endian u16
//! byte  2    counter-reset header in the top two bits (low six bits ignored)
//! bits  ...  layout: zero threshold, schema, positive spans, negative spans,
//!            custom bounds (schema -53 only); then the samples; then zero padding
//! ```
//!
//! One chunk holds one layout. Prometheus's appender may *recode* a chunk to the union of
//! two layouts when new buckets appear; this encoder does not. It reports
//! [`AppendError::LayoutChanged`] and the caller cuts a new chunk instead, which readers
//! cannot tell from a chunk Prometheus cut for its own reasons.

use std::fmt;

use super::bstream::{BitReader, BitWriter};
use super::xor::{bit_range, XorState, MAX_SAMPLES};
use crate::error::{FormatError, FormatResult};

/// The counter-reset hint of a sample; in a chunk, the top two bits of byte 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
}

impl CounterResetHint {
    /// The header bits for this hint, as they sit in byte 2 of a chunk.
    pub fn header_bits(self) -> u8 {
        match self {
            CounterResetHint::Unknown => 0x00,
            CounterResetHint::NotCounterReset => 0x40,
            CounterResetHint::CounterReset => 0x80,
            CounterResetHint::Gauge => 0xC0,
        }
    }

    /// The hint stored in the top two bits of a chunk's byte 2. Every value is valid:
    /// the low six bits are ignored, as Prometheus ignores them.
    pub fn from_header_byte(b: u8) -> Self {
        match b & 0xC0 {
            0x40 => CounterResetHint::NotCounterReset,
            0x80 => CounterResetHint::CounterReset,
            0xC0 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        }
    }
}

/// A run of consecutive buckets: `offset` buckets after the previous span's end (for the
/// first span, from bucket index 0), `length` buckets long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    pub offset: i32,
    pub length: u32,
}

/// An integer native histogram. Bucket counts are stored as deltas, as in Prometheus's
/// model: the first bucket is absolute, each later one is the difference from the
/// previous bucket (positive and negative sides kept separate).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Histogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<i64>,
    pub negative_buckets: Vec<i64>,
    /// Upper bounds of custom buckets; only for schema -53.
    pub custom_values: Vec<f64>,
}

/// A float native histogram; bucket counts are absolute.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct FloatHistogram {
    pub counter_reset_hint: CounterResetHint,
    pub schema: i32,
    pub zero_threshold: f64,
    pub zero_count: f64,
    pub count: f64,
    pub sum: f64,
    pub positive_spans: Vec<Span>,
    pub negative_spans: Vec<Span>,
    pub positive_buckets: Vec<f64>,
    pub negative_buckets: Vec<f64>,
    pub custom_values: Vec<f64>,
}

/// Bits of Prometheus's stale marker (`value.StaleNaN`); a histogram whose sum has these
/// bits is a stale marker and carries no buckets.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The schema of histograms with custom bucket bounds (`custom_values`).
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;

/// Exponential schemas a reader accepts (Prometheus's "reserved" range; only -4..=8 are
/// produced today).
const KNOWN_EXPONENTIAL_SCHEMAS: std::ops::RangeInclusive<i32> = -9..=52;

/// Bytes before the bit stream: sample count (2) and the counter-reset header (1).
const HEADER_LEN: usize = 3;

const SECTION_INT: &str = "histogram chunk";
const SECTION_FLOAT: &str = "float histogram chunk";

fn is_stale(sum: f64) -> bool {
    sum.to_bits() == STALE_NAN_BITS
}

fn is_known_schema(schema: i32) -> bool {
    schema == CUSTOM_BUCKETS_SCHEMA || KNOWN_EXPONENTIAL_SCHEMAS.contains(&schema)
}

impl Histogram {
    /// Whether this sample is a stale marker.
    pub fn is_stale(&self) -> bool {
        is_stale(self.sum)
    }

    /// The same histogram with absolute float bucket counts (Prometheus's `ToFloat`: the
    /// running sum of the deltas is kept in `f64`).
    pub fn to_float(&self) -> FloatHistogram {
        fn absolute(deltas: &[i64]) -> Vec<f64> {
            let mut current = 0.0;
            deltas
                .iter()
                .map(|&d| {
                    current += d as f64;
                    current
                })
                .collect()
        }
        FloatHistogram {
            counter_reset_hint: self.counter_reset_hint,
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count as f64,
            count: self.count as f64,
            sum: self.sum,
            positive_spans: self.positive_spans.clone(),
            negative_spans: self.negative_spans.clone(),
            positive_buckets: absolute(&self.positive_buckets),
            negative_buckets: absolute(&self.negative_buckets),
            custom_values: self.custom_values.clone(),
        }
    }
}

impl FloatHistogram {
    /// Whether this sample is a stale marker.
    pub fn is_stale(&self) -> bool {
        is_stale(self.sum)
    }
}

/// Why a sample cannot go into the current chunk.
///
/// Every variant but [`AppendError::Invalid`] means "cut a new chunk and append the
/// sample there" ([`AppendError::needs_new_chunk`]); the chunk is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    /// The chunk already holds 65535 samples, the most its header can count.
    #[error("chunk holds the maximum number of samples")]
    Full,
    /// Schema, zero threshold, spans or custom bounds differ from the chunk's first sample.
    #[error("histogram layout differs from the chunk's")]
    LayoutChanged,
    /// A counter reset: the hint says so, or the count, zero count or a bucket went down.
    /// The new chunk's header should say `CounterReset`.
    #[error("counter reset")]
    CounterReset,
    /// A gauge histogram into a counter chunk, or a counter histogram into a gauge chunk.
    #[error("gauge and counter histograms cannot share a chunk")]
    KindChanged,
    /// A non-stale sample after a stale marker.
    #[error("only stale markers may follow a stale marker in a chunk")]
    AfterStale,
    /// The histogram cannot be encoded at all (spans disagree with buckets, unknown
    /// schema, custom bounds with an exponential schema).
    #[error("invalid histogram: {0}")]
    Invalid(String),
}

impl AppendError {
    /// Whether appending to a fresh chunk would succeed.
    pub fn needs_new_chunk(&self) -> bool {
        !matches!(self, AppendError::Invalid(_))
    }
}

// ---------------------------------------------------------------------------------------
// Varbit integers.

/// Payload widths of the varbit buckets, indexed by the number of leading one bits of the
/// prefix (0 = the value zero; 8 = a raw 64-bit value with no terminating zero bit).
const VARBIT_WIDTHS: [u32; 9] = [0, 3, 6, 9, 12, 18, 25, 56, 64];

/// Writes the prefix of varbit bucket `k` (1..=8): `k` one bits and, below 8, a zero bit.
#[inline]
fn write_varbit_prefix(w: &mut BitWriter, k: u32) {
    if k == 8 {
        w.write_bits(0xff, 8);
    } else {
        w.write_bits(((1u64 << k) - 1) << 1, k + 1);
    }
}

/// Writes `v` in the varbit encoding for signed integers (`putVarbitInt`): a prefix of up
/// to eight bits picks the payload width from 0, 3, 6, 9, 12, 18, 25, 56 or 64 bits.
pub fn write_varbit_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (k, &n) in VARBIT_WIDTHS.iter().enumerate().take(8).skip(1) {
        if bit_range(v, n) {
            write_varbit_prefix(w, k as u32);
            w.write_bits(v as u64, n);
            return;
        }
    }
    write_varbit_prefix(w, 8);
    w.write_bits(v as u64, 64);
}

/// Writes `v` in the varbit encoding for unsigned integers (`putVarbitUint`): the same
/// prefixes as [`write_varbit_int`], with the unsigned ranges 0, ≤7, ≤63, ... .
pub fn write_varbit_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (k, &n) in VARBIT_WIDTHS.iter().enumerate().take(8).skip(1) {
        if v >> n == 0 {
            write_varbit_prefix(w, k as u32);
            w.write_bits(v, n);
            return;
        }
    }
    write_varbit_prefix(w, 8);
    w.write_bits(v, 64);
}

/// Reads a varbit prefix and returns the payload width it announces.
#[inline]
fn read_varbit_width(r: &mut BitReader<'_>, what: &str) -> FormatResult<u32> {
    let mut ones = 0;
    while ones < 8 && r.read_bit(what)? {
        ones += 1;
    }
    Ok(VARBIT_WIDTHS[ones])
}

/// Reads a value written by [`write_varbit_int`]. Every bit pattern is valid, so the only
/// error is running out of bits.
pub fn read_varbit_int(r: &mut BitReader<'_>, what: &str) -> FormatResult<i64> {
    let n = read_varbit_width(r, what)?;
    let u = r.read_bits(n, what)?;
    if n == 0 || n == 64 {
        return Ok(u as i64);
    }
    // Prometheus's sign rule: the positive range reaches 2^(n-1) itself.
    let half = 1u64 << (n - 1);
    Ok(if u > half { u.wrapping_sub(1u64 << n) as i64 } else { u as i64 })
}

/// Reads a value written by [`write_varbit_uint`].
pub fn read_varbit_uint(r: &mut BitReader<'_>, what: &str) -> FormatResult<u64> {
    let n = read_varbit_width(r, what)?;
    r.read_bits(n, what)
}

// ---------------------------------------------------------------------------------------
// Layout.

/// The zero threshold as the chunk stores it: `-0.0` is written as the zero byte and reads
/// back as `+0.0`.
fn normalized_threshold(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// The one-byte code of a zero threshold, if it has one: 0 for zero, `e + 244` for a
/// power of two `2^e` with `-243 <= e <= 10`.
fn zero_threshold_code(v: f64) -> Option<u8> {
    if v == 0.0 {
        return Some(0);
    }
    let bits = v.to_bits();
    let biased = (bits >> 52) & 0x7ff;
    let is_normal_power_of_two = v > 0.0 && bits & ((1 << 52) - 1) == 0 && biased != 0 && biased != 0x7ff;
    let e = biased as i64 - 1023;
    if is_normal_power_of_two && (-243..=10).contains(&e) {
        Some((e + 244) as u8)
    } else {
        None
    }
}

fn write_zero_threshold(w: &mut BitWriter, v: f64) {
    match zero_threshold_code(v) {
        Some(code) => w.write_byte(code),
        None => {
            w.write_byte(0xff);
            w.write_bits(v.to_bits(), 64);
        }
    }
}

fn read_zero_threshold(r: &mut BitReader<'_>) -> FormatResult<f64> {
    match r.read_byte("zero threshold")? {
        0 => Ok(0.0),
        0xff => Ok(f64::from_bits(r.read_bits(64, "zero threshold")?)),
        // 0.5 * 2^(b-243), always a normal number.
        b => Ok(f64::from_bits(((b as u64) + 1023 - 244) << 52)),
    }
}

/// Custom bounds are stored as varbit `round(x*1000)+1` when `x*1000` is a whole number
/// in `0..=33554430`; otherwise as a zero bit and the raw 64 bits.
fn custom_bound_code(v: f64) -> Option<u64> {
    let scaled = v * 1000.0;
    // NaN fails both comparisons, as in Go, and then fails the whole-number test.
    if !(0.0..=33_554_430.0).contains(&scaled) {
        return None;
    }
    let rounded = scaled.round();
    (rounded / 1000.0 == v).then_some(rounded as u64 + 1)
}

/// A custom bound as it reads back: `-0.0` becomes `+0.0`, every other value is exact.
fn normalized_custom_bound(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

fn write_custom_bound(w: &mut BitWriter, v: f64) {
    match custom_bound_code(v) {
        Some(code) => write_varbit_uint(w, code),
        None => {
            w.write_bit(false);
            w.write_bits(v.to_bits(), 64);
        }
    }
}

fn read_custom_bound(r: &mut BitReader<'_>) -> FormatResult<f64> {
    match read_varbit_uint(r, "custom bound")? {
        0 => Ok(f64::from_bits(r.read_bits(64, "custom bound")?)),
        code => Ok((code - 1) as f64 / 1000.0),
    }
}

/// What every sample of a chunk shares, as the first sample writes it.
#[derive(Clone, Debug, Default, PartialEq)]
struct Layout {
    schema: i32,
    zero_threshold: f64,
    positive_spans: Vec<Span>,
    negative_spans: Vec<Span>,
    /// Empty unless `schema` is [`CUSTOM_BUCKETS_SCHEMA`].
    custom_values: Vec<f64>,
}

/// Borrowed layout fields of a sample about to be appended.
#[derive(Clone, Copy)]
struct LayoutRef<'h> {
    schema: i32,
    zero_threshold: f64,
    positive_spans: &'h [Span],
    negative_spans: &'h [Span],
    custom_values: &'h [f64],
}

impl<'h> LayoutRef<'h> {
    fn of_int(h: &'h Histogram) -> Self {
        LayoutRef {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive_spans: &h.positive_spans,
            negative_spans: &h.negative_spans,
            custom_values: &h.custom_values,
        }
    }

    fn of_float(h: &'h FloatHistogram) -> Self {
        LayoutRef {
            schema: h.schema,
            zero_threshold: h.zero_threshold,
            positive_spans: &h.positive_spans,
            negative_spans: &h.negative_spans,
            custom_values: &h.custom_values,
        }
    }

    /// Checks what the format needs of a non-stale sample with these bucket counts.
    fn check(&self, positive_buckets: usize, negative_buckets: usize) -> Result<(), AppendError> {
        if !is_known_schema(self.schema) {
            return Err(AppendError::Invalid(format!("unknown schema {}", self.schema)));
        }
        if self.schema != CUSTOM_BUCKETS_SCHEMA && !self.custom_values.is_empty() {
            return Err(AppendError::Invalid(format!("schema {} cannot have custom bounds", self.schema)));
        }
        for (side, spans, buckets) in
            [("positive", self.positive_spans, positive_buckets), ("negative", self.negative_spans, negative_buckets)]
        {
            let spanned = spans.iter().fold(0u64, |n, s| n.saturating_add(s.length as u64));
            if spanned != buckets as u64 {
                return Err(AppendError::Invalid(format!(
                    "{side} spans cover {spanned} buckets but {buckets} are given"
                )));
            }
        }
        Ok(())
    }

    fn to_layout(self) -> Layout {
        Layout {
            schema: self.schema,
            zero_threshold: normalized_threshold(self.zero_threshold),
            positive_spans: self.positive_spans.to_vec(),
            negative_spans: self.negative_spans.to_vec(),
            custom_values: if self.schema == CUSTOM_BUCKETS_SCHEMA {
                self.custom_values.iter().map(|&v| normalized_custom_bound(v)).collect()
            } else {
                Vec::new()
            },
        }
    }
}

impl Layout {
    /// Whether `h` would write exactly this layout.
    fn matches(&self, h: LayoutRef<'_>) -> bool {
        self.schema == h.schema
            && self.zero_threshold.to_bits() == normalized_threshold(h.zero_threshold).to_bits()
            && self.positive_spans == h.positive_spans
            && self.negative_spans == h.negative_spans
            && (self.schema != CUSTOM_BUCKETS_SCHEMA
                || (self.custom_values.len() == h.custom_values.len()
                    && self
                        .custom_values
                        .iter()
                        .zip(h.custom_values)
                        .all(|(a, &b)| a.to_bits() == normalized_custom_bound(b).to_bits())))
    }

    fn write(&self, w: &mut BitWriter) {
        write_zero_threshold(w, self.zero_threshold);
        write_varbit_int(w, self.schema as i64);
        for spans in [&self.positive_spans, &self.negative_spans] {
            write_varbit_uint(w, spans.len() as u64);
            for s in spans {
                write_varbit_uint(w, s.length as u64);
                write_varbit_int(w, s.offset as i64);
            }
        }
        if self.schema == CUSTOM_BUCKETS_SCHEMA {
            write_varbit_uint(w, self.custom_values.len() as u64);
            for &v in &self.custom_values {
                write_custom_bound(w, v);
            }
        }
    }

    fn bucket_counts(&self) -> (u64, u64) {
        let count = |spans: &[Span]| spans.iter().fold(0u64, |n, s| n.saturating_add(s.length as u64));
        (count(&self.positive_spans), count(&self.negative_spans))
    }
}

// ---------------------------------------------------------------------------------------
// Encoders.

/// Whether a chunk holds counter or gauge histograms, decided by its header.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// State both encoders share: the bit stream, the layout and the timestamps.
#[derive(Clone, Debug)]
struct EncoderCore {
    w: BitWriter,
    num: u16,
    layout: Layout,
    t: i64,
    t_delta: i64,
    last_stale: bool,
}

impl EncoderCore {
    fn new() -> Self {
        EncoderCore {
            w: BitWriter::with_prefix(&[0; HEADER_LEN], 128),
            num: 0,
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            last_stale: false,
        }
    }

    fn header(&self) -> CounterResetHint {
        CounterResetHint::from_header_byte(self.w.header()[2])
    }

    fn set_header(&mut self, hint: CounterResetHint) {
        let b = &mut self.w.header_mut()[2];
        *b = (*b & 0x3f) | hint.header_bits();
    }

    /// Refuses a sample once the header cannot count more.
    fn has_room(&self) -> Result<(), AppendError> {
        if self.num as usize >= MAX_SAMPLES {
            return Err(AppendError::Full);
        }
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
        let kind = if self.header() == CounterResetHint::Gauge { Kind::Gauge } else { Kind::Counter };
        let sample_kind = if hint == CounterResetHint::Gauge { Kind::Gauge } else { Kind::Counter };
        if kind != sample_kind {
            return Err(AppendError::KindChanged);
        }
        if kind == Kind::Counter && hint == CounterResetHint::CounterReset {
            return Err(AppendError::CounterReset);
        }
        Ok(Some(kind))
    }

    /// Starts the first sample: header, layout and timestamp.
    fn begin_first(&mut self, hint: CounterResetHint, layout: Layout, t: i64) {
        self.set_header(hint);
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

    fn end_sample(&mut self, stale: bool) {
        self.last_stale = stale;
        self.num += 1;
        self.w.header_mut()[..2].copy_from_slice(&self.num.to_be_bytes());
    }
}

/// Builds one integer histogram chunk (encoding 2), sample by sample, bit for bit as
/// Prometheus 2.42's `HistogramAppender` writes it.
///
/// The chunk header takes the first sample's counter-reset hint;
/// [`set_counter_reset_header`](Self::set_counter_reset_header) overrides it. A chunk
/// whose header is `Gauge` takes gauge histograms, any other takes counter histograms and
/// refuses counter resets.
#[derive(Clone, Debug)]
pub struct HistogramEncoder {
    core: EncoderCore,
    count: u64,
    zero_count: u64,
    count_delta: i64,
    zero_count_delta: i64,
    sum: u64,
    sum_xor: XorState,
    /// In-model bucket deltas of the previous sample, and their change over time.
    positive: Vec<i64>,
    negative: Vec<i64>,
    positive_delta: Vec<i64>,
    negative_delta: Vec<i64>,
}

impl Default for HistogramEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl HistogramEncoder {
    pub fn new() -> Self {
        HistogramEncoder {
            core: EncoderCore::new(),
            count: 0,
            zero_count: 0,
            count_delta: 0,
            zero_count_delta: 0,
            sum: 0,
            sum_xor: XorState::default(),
            positive: Vec::new(),
            negative: Vec::new(),
            positive_delta: Vec::new(),
            negative_delta: Vec::new(),
        }
    }

    pub fn num_samples(&self) -> usize {
        self.core.num as usize
    }

    /// Bytes so far (header included).
    pub fn size(&self) -> usize {
        self.core.w.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.core.w.to_vec()
    }

    pub fn finish(self) -> Vec<u8> {
        self.core.w.into_bytes()
    }

    /// The hint in the chunk header.
    pub fn counter_reset_header(&self) -> CounterResetHint {
        self.core.header()
    }

    /// Overrides the chunk header (Prometheus's `SetCounterResetHeader`). The first
    /// append sets it from the sample's hint, so call this after that.
    pub fn set_counter_reset_header(&mut self, hint: CounterResetHint) {
        self.core.set_header(hint);
    }

    /// Appends a sample, or says why it needs a new chunk (the chunk is then unchanged).
    ///
    /// A stale marker (sum with [`STALE_NAN_BITS`]) is written without layout or buckets
    /// and always fits; after it only stale markers fit.
    pub fn append(&mut self, t: i64, h: &Histogram) -> Result<(), AppendError> {
        let stale = h.is_stale();
        let layout = LayoutRef::of_int(h);
        if !stale {
            layout.check(h.positive_buckets.len(), h.negative_buckets.len())?;
        }
        self.core.has_room()?;
        if self.core.num == 0 {
            self.append_first(t, h, stale);
        } else {
            match self.core.gate(h.counter_reset_hint, stale)? {
                Some(Kind::Gauge) if !self.core.layout.matches(layout) => return Err(AppendError::LayoutChanged),
                Some(Kind::Counter) => self.check_counter(h)?,
                _ => {}
            }
            self.append_next(t, h, stale);
        }
        self.core.end_sample(stale);
        Ok(())
    }

    /// Prometheus's `Appendable` for a chunk with the same layout: the count is checked
    /// before the layout, the rest after.
    fn check_counter(&self, h: &Histogram) -> Result<(), AppendError> {
        if h.count < self.count {
            return Err(AppendError::CounterReset);
        }
        if !self.core.layout.matches(LayoutRef::of_int(h)) {
            return Err(AppendError::LayoutChanged);
        }
        if h.zero_count < self.zero_count
            || any_bucket_decreased(&self.positive, &h.positive_buckets)
            || any_bucket_decreased(&self.negative, &h.negative_buckets)
        {
            return Err(AppendError::CounterReset);
        }
        Ok(())
    }

    fn append_first(&mut self, t: i64, h: &Histogram, stale: bool) {
        // A stale marker writes an empty layout and no buckets.
        let layout = if stale { Layout::default() } else { LayoutRef::of_int(h).to_layout() };
        let (count, zero_count) = if stale { (0, 0) } else { (h.count, h.zero_count) };
        self.core.begin_first(h.counter_reset_hint, layout, t);
        let w = &mut self.core.w;
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

    fn append_next(&mut self, t: i64, h: &Histogram, stale: bool) {
        let (count, zero_count) = if stale { (0, 0) } else { (h.count, h.zero_count) };
        let count_delta = (count as i64).wrapping_sub(self.count as i64);
        let zero_count_delta = (zero_count as i64).wrapping_sub(self.zero_count as i64);
        let (count_dod, zero_count_dod) = if stale {
            (0, 0)
        } else {
            (count_delta.wrapping_sub(self.count_delta), zero_count_delta.wrapping_sub(self.zero_count_delta))
        };
        self.core.begin_next(t);
        let w = &mut self.core.w;
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

/// Builds one float histogram chunk (encoding 3), bit for bit as Prometheus 2.42's
/// `FloatHistogramAppender` writes it. Same rules as [`HistogramEncoder`].
#[derive(Clone, Debug)]
pub struct FloatHistogramEncoder {
    core: EncoderCore,
    count: XorField,
    zero_count: XorField,
    sum: XorField,
    positive: Vec<XorField>,
    negative: Vec<XorField>,
}

impl Default for FloatHistogramEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FloatHistogramEncoder {
    pub fn new() -> Self {
        FloatHistogramEncoder {
            core: EncoderCore::new(),
            count: XorField::default(),
            zero_count: XorField::default(),
            sum: XorField::default(),
            positive: Vec::new(),
            negative: Vec::new(),
        }
    }

    pub fn num_samples(&self) -> usize {
        self.core.num as usize
    }

    /// Bytes so far (header included).
    pub fn size(&self) -> usize {
        self.core.w.len()
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.core.w.to_vec()
    }

    pub fn finish(self) -> Vec<u8> {
        self.core.w.into_bytes()
    }

    /// The hint in the chunk header.
    pub fn counter_reset_header(&self) -> CounterResetHint {
        self.core.header()
    }

    /// Overrides the chunk header; see [`HistogramEncoder::set_counter_reset_header`].
    pub fn set_counter_reset_header(&mut self, hint: CounterResetHint) {
        self.core.set_header(hint);
    }

    /// Appends a sample, or says why it needs a new chunk (the chunk is then unchanged).
    pub fn append(&mut self, t: i64, h: &FloatHistogram) -> Result<(), AppendError> {
        let stale = h.is_stale();
        let layout = LayoutRef::of_float(h);
        if !stale {
            layout.check(h.positive_buckets.len(), h.negative_buckets.len())?;
        }
        self.core.has_room()?;
        if self.core.num == 0 {
            self.append_first(t, h, stale);
        } else {
            match self.core.gate(h.counter_reset_hint, stale)? {
                Some(Kind::Gauge) if !self.core.layout.matches(layout) => return Err(AppendError::LayoutChanged),
                Some(Kind::Counter) => self.check_counter(h)?,
                _ => {}
            }
            self.append_next(t, h, stale);
        }
        self.core.end_sample(stale);
        Ok(())
    }

    fn check_counter(&self, h: &FloatHistogram) -> Result<(), AppendError> {
        if h.count < self.count.value() {
            return Err(AppendError::CounterReset);
        }
        if !self.core.layout.matches(LayoutRef::of_float(h)) {
            return Err(AppendError::LayoutChanged);
        }
        let decreased = |prev: &[XorField], new: &[f64]| prev.iter().zip(new).any(|(p, &n)| n < p.value());
        if h.zero_count < self.zero_count.value()
            || decreased(&self.positive, &h.positive_buckets)
            || decreased(&self.negative, &h.negative_buckets)
        {
            return Err(AppendError::CounterReset);
        }
        Ok(())
    }

    fn append_first(&mut self, t: i64, h: &FloatHistogram, stale: bool) {
        let layout = if stale { Layout::default() } else { LayoutRef::of_float(h).to_layout() };
        let (count, zero_count) = if stale { (0.0, 0.0) } else { (h.count, h.zero_count) };
        self.core.begin_first(h.counter_reset_hint, layout, t);
        let w = &mut self.core.w;
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

    fn append_next(&mut self, t: i64, h: &FloatHistogram, stale: bool) {
        // A stale marker's count and zero count are written as zero, as Prometheus does.
        let (count, zero_count) = if stale { (0.0, 0.0) } else { (h.count, h.zero_count) };
        self.core.begin_next(t);
        let w = &mut self.core.w;
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
}

// ---------------------------------------------------------------------------------------
// Iterators.

/// The hint a reader gives the `n`th sample (1-based) of a chunk with header `header`.
///
/// This follows Prometheus v2.42's `counterResetHint`: every sample of a gauge chunk is
/// `Gauge`; in a counter chunk the samples after the first are `NotCounterReset`, and the
/// first is `CounterReset` when the header says so and `Unknown` otherwise (a
/// `NotCounterReset` header is not trusted, since the previous chunk may be gone).
/// Prometheus 3 no longer passes `CounterReset` through; we keep v2.42's choice so that
/// re-encoding a decoded chunk restores its `CounterReset` header. Stale markers are
/// returned with `Unknown`, like Prometheus's `Histogram{Sum: StaleNaN}`.
fn sample_hint(header: CounterResetHint, n: u16) -> CounterResetHint {
    match header {
        CounterResetHint::Gauge => CounterResetHint::Gauge,
        _ if n > 1 => CounterResetHint::NotCounterReset,
        CounterResetHint::CounterReset => CounterResetHint::CounterReset,
        _ => CounterResetHint::Unknown,
    }
}

/// Reading state both iterators share.
#[derive(Clone)]
struct IterCore<'a> {
    r: BitReader<'a>,
    /// Length of the bit stream, to bound counts read from it.
    end_bits: u64,
    section: &'static str,
    total: u16,
    read: u16,
    header: CounterResetHint,
    layout: Layout,
    t: i64,
    t_delta: i64,
    failed: bool,
}

impl<'a> IterCore<'a> {
    fn new(data: &'a [u8], section: &'static str) -> FormatResult<Self> {
        if data.len() < HEADER_LEN {
            return Err(FormatError::new(
                section,
                0,
                format!("chunk of {} bytes is shorter than its 3-byte header", data.len()),
            ));
        }
        let stream = &data[HEADER_LEN..];
        Ok(IterCore {
            r: BitReader::new(stream, HEADER_LEN as u64, section),
            end_bits: stream.len() as u64 * 8,
            section,
            total: u16::from_be_bytes([data[0], data[1]]),
            read: 0,
            header: CounterResetHint::from_header_byte(data[2]),
            layout: Layout::default(),
            t: 0,
            t_delta: 0,
            failed: false,
        })
    }

    fn remaining_bits(&self) -> u64 {
        self.end_bits.saturating_sub(self.r.bit_position())
    }

    fn err(&self, problem: impl Into<String>) -> FormatError {
        FormatError::new(self.section, HEADER_LEN as u64 + self.r.bit_position() / 8, problem)
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

    /// Reads the layout and the first timestamp; returns the bucket counts, checked to fit
    /// when each bucket of the first sample takes at least `bucket_bits`.
    fn read_first(&mut self, bucket_bits: u64) -> FormatResult<(usize, usize)> {
        self.read_layout()?;
        let (pos, neg) = self.layout.bucket_counts();
        self.check_fits(pos.saturating_add(neg), bucket_bits, "buckets")?;
        self.t = read_varbit_int(&mut self.r, "first timestamp")?;
        Ok((pos as usize, neg as usize))
    }

    fn read_t_dod(&mut self) -> FormatResult<()> {
        let dod = read_varbit_int(&mut self.r, "timestamp delta of delta")?;
        self.t_delta = self.t_delta.wrapping_add(dod);
        self.t = self.t.wrapping_add(self.t_delta);
        Ok(())
    }

    /// The hint for the sample just read.
    fn hint(&self) -> CounterResetHint {
        sample_hint(self.header, self.read)
    }

    fn done(&self) -> bool {
        self.failed || self.read >= self.total
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.failed {
            (0, Some(0))
        } else {
            (0, Some((self.total - self.read) as usize))
        }
    }
}

/// Iterates the samples of an integer histogram chunk (encoding 2).
///
/// Stops after the first error; every count read from the chunk is checked against the
/// bits left, so no input makes it allocate much more than its own size.
#[derive(Clone)]
pub struct HistogramIter<'a> {
    core: IterCore<'a>,
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

impl<'a> HistogramIter<'a> {
    pub fn new(data: &'a [u8]) -> FormatResult<Self> {
        Ok(HistogramIter {
            core: IterCore::new(data, SECTION_INT)?,
            count: 0,
            zero_count: 0,
            count_delta: 0,
            zero_count_delta: 0,
            sum: 0,
            sum_xor: XorState::default(),
            positive: Vec::new(),
            negative: Vec::new(),
            positive_delta: Vec::new(),
            negative_delta: Vec::new(),
        })
    }

    /// The number of samples the header announces.
    pub fn total(&self) -> usize {
        self.core.total as usize
    }

    /// The hint in the chunk header (which the first sample's hint does not always show).
    pub fn counter_reset_header(&self) -> CounterResetHint {
        self.core.header
    }

    fn step(&mut self) -> FormatResult<(i64, Histogram)> {
        if self.core.read == 0 {
            self.read_first()?;
        } else {
            self.read_next()?;
        }
        self.core.read += 1;
        Ok((self.core.t, self.current()))
    }

    fn read_first(&mut self) -> FormatResult<()> {
        let (pos, neg) = self.core.read_first(1)?;
        let r = &mut self.core.r;
        self.count = read_varbit_uint(r, "count")?;
        self.zero_count = read_varbit_uint(r, "zero count")?;
        self.sum = r.read_bits(64, "sum")?;
        self.positive = (0..pos).map(|_| read_varbit_int(r, "bucket")).collect::<FormatResult<_>>()?;
        self.negative = (0..neg).map(|_| read_varbit_int(r, "bucket")).collect::<FormatResult<_>>()?;
        self.positive_delta = vec![0; pos];
        self.negative_delta = vec![0; neg];
        Ok(())
    }

    fn read_next(&mut self) -> FormatResult<()> {
        self.core.read_t_dod()?;
        let r = &mut self.core.r;
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

    fn current(&self) -> Histogram {
        let sum = f64::from_bits(self.sum);
        if is_stale(sum) {
            return Histogram { sum, ..Histogram::default() };
        }
        let layout = &self.core.layout;
        Histogram {
            counter_reset_hint: self.core.hint(),
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

impl Iterator for HistogramIter<'_> {
    type Item = FormatResult<(i64, Histogram)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.core.done() {
            return None;
        }
        let res = self.step();
        self.core.failed = res.is_err();
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.core.size_hint()
    }
}

/// Iterates the samples of a float histogram chunk (encoding 3). Same guarantees as
/// [`HistogramIter`].
#[derive(Clone)]
pub struct FloatHistogramIter<'a> {
    core: IterCore<'a>,
    count: XorField,
    zero_count: XorField,
    sum: XorField,
    positive: Vec<XorField>,
    negative: Vec<XorField>,
}

impl<'a> FloatHistogramIter<'a> {
    pub fn new(data: &'a [u8]) -> FormatResult<Self> {
        Ok(FloatHistogramIter {
            core: IterCore::new(data, SECTION_FLOAT)?,
            count: XorField::default(),
            zero_count: XorField::default(),
            sum: XorField::default(),
            positive: Vec::new(),
            negative: Vec::new(),
        })
    }

    /// The number of samples the header announces.
    pub fn total(&self) -> usize {
        self.core.total as usize
    }

    /// The hint in the chunk header (which the first sample's hint does not always show).
    pub fn counter_reset_header(&self) -> CounterResetHint {
        self.core.header
    }

    fn step(&mut self) -> FormatResult<(i64, FloatHistogram)> {
        if self.core.read == 0 {
            self.read_first()?;
        } else {
            self.read_next()?;
        }
        self.core.read += 1;
        Ok((self.core.t, self.current()))
    }

    fn read_first(&mut self) -> FormatResult<()> {
        let (pos, neg) = self.core.read_first(64)?;
        let r = &mut self.core.r;
        let mut raw = |what| r.read_bits(64, what).map(|bits| XorField { bits, state: XorState::default() });
        self.count = raw("count")?;
        self.zero_count = raw("zero count")?;
        self.sum = raw("sum")?;
        self.positive = (0..pos).map(|_| raw("bucket")).collect::<FormatResult<_>>()?;
        self.negative = (0..neg).map(|_| raw("bucket")).collect::<FormatResult<_>>()?;
        Ok(())
    }

    fn read_next(&mut self) -> FormatResult<()> {
        self.core.read_t_dod()?;
        let r = &mut self.core.r;
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

    fn current(&self) -> FloatHistogram {
        let sum = self.sum.value();
        if is_stale(sum) {
            return FloatHistogram { sum, ..FloatHistogram::default() };
        }
        let layout = &self.core.layout;
        FloatHistogram {
            counter_reset_hint: self.core.hint(),
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

impl Iterator for FloatHistogramIter<'_> {
    type Item = FormatResult<(i64, FloatHistogram)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.core.done() {
            return None;
        }
        let res = self.step();
        self.core.failed = res.is_err();
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.core.size_hint()
    }
}

// ---------------------------------------------------------------------------------------
// Whole-series helpers.

/// What [`encode_chunks`] needs of an encoder.
trait ChunkEncoder: Default {
    type Sample;
    fn append(&mut self, t: i64, sample: &Self::Sample) -> Result<(), AppendError>;
    fn set_header(&mut self, hint: CounterResetHint);
    fn is_empty(&self) -> bool;
    fn finish(self) -> Vec<u8>;
}

impl ChunkEncoder for HistogramEncoder {
    type Sample = Histogram;
    fn append(&mut self, t: i64, sample: &Histogram) -> Result<(), AppendError> {
        HistogramEncoder::append(self, t, sample)
    }
    fn set_header(&mut self, hint: CounterResetHint) {
        self.set_counter_reset_header(hint);
    }
    fn is_empty(&self) -> bool {
        self.num_samples() == 0
    }
    fn finish(self) -> Vec<u8> {
        HistogramEncoder::finish(self)
    }
}

impl ChunkEncoder for FloatHistogramEncoder {
    type Sample = FloatHistogram;
    fn append(&mut self, t: i64, sample: &FloatHistogram) -> Result<(), AppendError> {
        FloatHistogramEncoder::append(self, t, sample)
    }
    fn set_header(&mut self, hint: CounterResetHint) {
        self.set_counter_reset_header(hint);
    }
    fn is_empty(&self) -> bool {
        self.num_samples() == 0
    }
    fn finish(self) -> Vec<u8> {
        FloatHistogramEncoder::finish(self)
    }
}

/// Appends every sample, cutting a new chunk whenever the current one refuses a sample.
/// A chunk cut for a detected counter reset gets the `CounterReset` header; any other
/// chunk's header is its first sample's hint.
fn encode_chunks<E: ChunkEncoder>(samples: &[(i64, E::Sample)]) -> Result<Vec<Vec<u8>>, AppendError> {
    let mut chunks = Vec::new();
    let mut enc = E::default();
    for (t, sample) in samples {
        match enc.append(*t, sample) {
            Ok(()) => {}
            Err(e) if e.needs_new_chunk() => {
                chunks.push(std::mem::take(&mut enc).finish());
                enc.append(*t, sample)?;
                if e == AppendError::CounterReset {
                    enc.set_header(CounterResetHint::CounterReset);
                }
            }
            Err(e) => return Err(e),
        }
    }
    if !enc.is_empty() {
        chunks.push(enc.finish());
    }
    Ok(chunks)
}

/// Encodes a series' integer histograms into as many chunks as the format needs: a new
/// chunk at a layout change, a counter reset, a switch between gauge and counter, the
/// first sample after a stale marker, and after 65535 samples. It does not cut for size;
/// callers that want Prometheus's 120-sample chunks pass 120 samples at a time.
pub fn encode_histograms(samples: &[(i64, Histogram)]) -> Result<Vec<Vec<u8>>, AppendError> {
    encode_chunks::<HistogramEncoder>(samples)
}

/// The float-histogram counterpart of [`encode_histograms`].
pub fn encode_float_histograms(samples: &[(i64, FloatHistogram)]) -> Result<Vec<Vec<u8>>, AppendError> {
    encode_chunks::<FloatHistogramEncoder>(samples)
}

/// Decodes every sample of an integer histogram chunk.
pub fn decode_histograms(data: &[u8]) -> FormatResult<Vec<(i64, Histogram)>> {
    HistogramIter::new(data)?.collect()
}

/// Decodes every sample of a float histogram chunk.
pub fn decode_float_histograms(data: &[u8]) -> FormatResult<Vec<(i64, FloatHistogram)>> {
    FloatHistogramIter::new(data)?.collect()
}

// ---------------------------------------------------------------------------------------
// Text form.

impl fmt::Display for FloatHistogram {
    /// Prometheus's `FloatHistogram.String()` (v2.42): count and sum, then the non-empty
    /// buckets from the lowest to the highest value, the zero bucket between the negative
    /// and the positive ones, every number as Go's `%g`. For example
    /// `{count:5, sum:10, [-1,-0.5):1, [-0.001,0.001]:2, (0.5,1]:2}`.
    ///
    /// Where Go would panic (schemas without a bounds table, buckets fewer than the spans
    /// announce, custom bounds shorter than the buckets) this prints what it can instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{count:{}, sum:{}", format_go_g(self.count), format_go_g(self.sum))?;
        let mut negative = Vec::new();
        for_each_bucket(self, false, |idx, count| negative.push((idx, count)));
        for &(idx, count) in negative.iter().rev() {
            write_bucket(f, self, false, idx, count)?;
        }
        if self.zero_count != 0.0 {
            write!(
                f,
                ", [{},{}]:{}",
                format_go_g(-self.zero_threshold),
                format_go_g(self.zero_threshold),
                format_go_g(self.zero_count)
            )?;
        }
        let mut res = Ok(());
        for_each_bucket(self, true, |idx, count| {
            if res.is_ok() {
                res = write_bucket(f, self, true, idx, count);
            }
        });
        res?;
        f.write_str("}")
    }
}

/// Calls `visit(index, count)` for each non-empty bucket of one side, in span order,
/// skipping buckets whose upper bound is not above zero (Go's `absoluteStartValue`).
fn for_each_bucket(h: &FloatHistogram, positive: bool, mut visit: impl FnMut(i32, f64)) {
    let (spans, buckets) =
        if positive { (&h.positive_spans, &h.positive_buckets) } else { (&h.negative_spans, &h.negative_buckets) };
    let mut counts = buckets.iter();
    let mut idx = 0i32;
    for (i, span) in spans.iter().enumerate() {
        idx = if i == 0 { span.offset } else { idx.wrapping_add(span.offset) };
        for _ in 0..span.length {
            let Some(&count) = counts.next() else { return };
            let skip = h.schema != CUSTOM_BUCKETS_SCHEMA && bucket_bound(idx, h.schema, &h.custom_values) <= 0.0;
            if count != 0.0 && !skip {
                visit(idx, count);
            }
            idx = idx.wrapping_add(1);
        }
    }
}

fn write_bucket(f: &mut fmt::Formatter<'_>, h: &FloatHistogram, positive: bool, idx: i32, count: f64) -> fmt::Result {
    let upper_of = |i: i32| bucket_bound(i, h.schema, &h.custom_values);
    let (lower, upper) = if positive {
        (upper_of(idx.wrapping_sub(1)), upper_of(idx))
    } else {
        (-upper_of(idx), -upper_of(idx.wrapping_sub(1)))
    };
    let (lower_inclusive, upper_inclusive) =
        if h.schema == CUSTOM_BUCKETS_SCHEMA { (idx == 0, true) } else { (lower < 0.0, upper > 0.0) };
    write!(
        f,
        ", {}{},{}{}:{}",
        if lower_inclusive { '[' } else { '(' },
        format_go_g(lower),
        format_go_g(upper),
        if upper_inclusive { ']' } else { ')' },
        format_go_g(count)
    )
}

/// The upper bound of bucket `idx` (Prometheus's `getBound`).
fn bucket_bound(idx: i32, schema: i32, custom_values: &[f64]) -> f64 {
    if schema == CUSTOM_BUCKETS_SCHEMA {
        let i = idx as i64;
        return match i {
            -1 => f64::NEG_INFINITY,
            _ if i == custom_values.len() as i64 => f64::INFINITY,
            _ => usize::try_from(i).ok().and_then(|i| custom_values.get(i).copied()).unwrap_or(f64::NAN),
        };
    }
    if schema < 0 {
        let shift = schema.unsigned_abs();
        let exp = if shift >= 64 { 0 } else { (idx as i64).wrapping_shl(shift) };
        if exp == 1024 {
            // The last finite bucket ends at the largest float, not at 2^1024 = +Inf.
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    if schema > 8 {
        // Go has no table here and panics; the formula gives the same bounds.
        return (idx as f64 / 2f64.powi(schema.min(1023))).exp2();
    }
    let frac_idx = (idx & ((1 << schema) - 1)) as usize;
    let frac = EXPONENTIAL_BOUNDS[frac_idx << (8 - schema)];
    let exp = ((idx as i64) >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac * 2^exp`, rounded once as Go's `math.Ldexp` does; `frac` is a normal number.
pub(crate) fn ldexp(frac: f64, exp: i64) -> f64 {
    if frac == 0.0 || !frac.is_finite() {
        return frac;
    }
    let bits = frac.to_bits();
    let mut e = exp.saturating_add(((bits >> 52) & 0x7ff) as i64 - 1023);
    if e < -1075 {
        return 0f64.copysign(frac);
    }
    if e > 1023 {
        return f64::INFINITY.copysign(frac);
    }
    let mut m = 1.0;
    if e < -1022 {
        // Subnormal: build the value 2^53 higher and scale down in one rounding step.
        e += 53;
        m = 1.0 / (1u64 << 53) as f64;
    }
    m * f64::from_bits((bits & !(0x7ff << 52)) | (((e + 1023) as u64) << 52))
}

/// Prometheus's `exponentialBounds[8]`: `0.5 * 2^(i/256)` for `i` in `0..256`, copied
/// digit for digit from `model/histogram/generic.go` (v2.42.0). The tables of the lower
/// schemas are every `2^(8-schema)`th entry of this one.
#[rustfmt::skip]
pub(crate) const EXPONENTIAL_BOUNDS: [f64; 256] = [
    0.5, 0.5013556375251013, 0.5027149505564014, 0.5040779490592088,
    0.5054446430258502, 0.5068150424757447, 0.5081891574554764, 0.509566998038869,
    0.5109485743270583, 0.5123338964485679, 0.5137229745593818, 0.5151158188430205,
    0.5165124395106142, 0.5179128468009786, 0.5193170509806894, 0.520725062344158,
    0.5221368912137069, 0.5235525479396449, 0.5249720429003435, 0.526395386502313,
    0.5278225891802786, 0.5292536613972564, 0.5306886136446309, 0.5321274564422321,
    0.5335702003384117, 0.5350168559101208, 0.5364674337629877, 0.5379219445313954,
    0.5393803988785598, 0.5408428074966075, 0.5423091811066545, 0.5437795304588847,
    0.5452538663326288, 0.5467321995364429, 0.5482145409081883, 0.549700901315111,
    0.5511912916539204, 0.5526857228508706, 0.5541842058618393, 0.5556867516724088,
    0.5571933712979462, 0.5587040757836845, 0.5602188762048033, 0.5617377836665098,
    0.5632608093041209, 0.564787964283144, 0.5663192597993595, 0.5678547070789026,
    0.5693943173783458, 0.5709381019847808, 0.572486072215902, 0.5740382394200894,
    0.5755946149764913, 0.5771552102951081, 0.5787200368168754, 0.5802891060137493,
    0.5818624293887887, 0.5834400184762408, 0.585021884841625, 0.5866080400818185,
    0.5881984958251406, 0.5897932637314379, 0.5913923554921704, 0.5929957828304968,
    0.5946035575013605, 0.5962156912915756, 0.5978321960199137, 0.5994530835371903,
    0.6010783657263515, 0.6027080545025619, 0.6043421618132907, 0.6059806996384005,
    0.6076236799902344, 0.6092711149137041, 0.6109230164863786, 0.6125793968185725,
    0.6142402680534349, 0.6159056423670379, 0.6175755319684665, 0.6192499490999082,
    0.620928906036742, 0.622612415087629, 0.6243004885946023, 0.6259931389331581,
    0.6276903785123455, 0.6293922197748583, 0.6310986751971253, 0.6328097572894031,
    0.6345254785958666, 0.6362458516947014, 0.637970889198196, 0.6397006037528346,
    0.6414350080393891, 0.6431741147730128, 0.6449179367033329, 0.6466664866145447,
    0.6484197773255048, 0.6501778216898253, 0.6519406325959679, 0.6537082229673385,
    0.6554806057623822, 0.6572577939746774, 0.659039800633032, 0.6608266388015788,
    0.6626183215798706, 0.6644148621029772, 0.6662162735415805, 0.6680225691020727,
    0.6698337620266515, 0.6716498655934177, 0.6734708931164728, 0.6752968579460171,
    0.6771277734684463, 0.6789636531064505, 0.6808045103191123, 0.6826503586020058,
    0.6845012114872953, 0.6863570825438342, 0.688217985377265, 0.690083933630119,
    0.6919549409819159, 0.6938310211492645, 0.6957121878859629, 0.6975984549830999,
    0.6994898362691555, 0.7013863456101023, 0.7032879969095076, 0.7051948041086352,
    0.7071067811865475, 0.7090239421602076, 0.7109463010845827, 0.7128738720527471,
    0.7148066691959849, 0.7167447066838943, 0.718687998724491, 0.7206365595643126,
    0.7225904034885232, 0.7245495448210174, 0.7265139979245261, 0.7284837772007218,
    0.7304588970903234, 0.7324393720732029, 0.7344252166684908, 0.7364164454346837,
    0.7384130729697496, 0.7404151139112358, 0.7424225829363761, 0.7444354947621984,
    0.7464538641456323, 0.7484777058836176, 0.7505070348132126, 0.7525418658117031,
    0.7545822137967112, 0.7566280937263048, 0.7586795205991071, 0.7607365094544071,
    0.762799075372269, 0.7648672334736434, 0.7669409989204777, 0.7690203869158282,
    0.7711054127039704, 0.7731960915705107, 0.7752924388424999, 0.7773944698885442,
    0.7795022001189185, 0.7816156449856788, 0.7837348199827764, 0.7858597406461707,
    0.7879904225539431, 0.7901268813264122, 0.7922691326262467, 0.7944171921585818,
    0.7965710756711334, 0.7987307989543135, 0.8008963778413465, 0.8030678282083853,
    0.805245165974627, 0.8074284071024302, 0.8096175675974316, 0.8118126635086642,
    0.8140137109286738, 0.8162207259936375, 0.8184337248834821, 0.820652723822003,
    0.8228777390769823, 0.8251087869603088, 0.8273458838280969, 0.8295890460808079,
    0.8318382901633681, 0.8340936325652911, 0.8363550898207981, 0.8386226785089391,
    0.8408964152537144, 0.8431763167241966, 0.8454623996346523, 0.8477546807446661,
    0.8500531768592616, 0.8523579048290255, 0.8546688815502312, 0.8569861239649629,
    0.8593096490612387, 0.8616394738731368, 0.8639756154809185, 0.8663180910111553,
    0.8686669176368529, 0.871022112577578, 0.8733836930995842, 0.8757516765159389,
    0.8781260801866495, 0.8805069215187917, 0.8828942179666361, 0.8852879870317771,
    0.8876882462632604, 0.890095013257712, 0.8925083056594671, 0.8949281411607002,
    0.8973545375015533, 0.8997875124702672, 0.9022270839033115, 0.9046732696855155,
    0.9071260877501991, 0.909585556079304, 0.9120516927035263, 0.9145245157024483,
    0.9170040432046711, 0.9194902933879467, 0.9219832844793128, 0.9244830347552253,
    0.9269895625416926, 0.92950288621441, 0.9320230241988943, 0.9345499949706191,
    0.9370838170551498, 0.93962450902828, 0.9421720895161669, 0.9447265771954693,
    0.9472879907934827, 0.9498563490882775, 0.9524316709088368, 0.9550139751351947,
    0.9576032806985735, 0.9601996065815236, 0.9628029718180622, 0.9654133954938133,
    0.9680308967461471, 0.9706554947643201, 0.9732872087896164, 0.9759260581154889,
    0.9785720620876999, 0.9812252401044634, 0.9838856116165875, 0.9865531961276168,
    0.9892280131939752, 0.9919100824251095, 0.9945994234836328, 0.9972960560854698,
];

/// Go's `%g`; see [`crate::gofmt::format_g`].
pub fn format_go_g(v: f64) -> String {
    crate::gofmt::format_g(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn stale() -> f64 {
        f64::from_bits(STALE_NAN_BITS)
    }

    fn pow2(e: i32) -> f64 {
        f64::from_bits(((e + 1023) as u64) << 52)
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn spans(s: &[(i32, u32)]) -> Vec<Span> {
        s.iter().map(|&(offset, length)| Span { offset, length }).collect()
    }

    /// A counter histogram of schema 0 with one positive span over `buckets` (deltas).
    fn counter(count: u64, buckets: &[i64]) -> Histogram {
        Histogram {
            count,
            sum: count as f64,
            positive_spans: spans(&[(0, buckets.len() as u32)]),
            positive_buckets: buckets.to_vec(),
            ..Histogram::default()
        }
    }

    fn float_counter(count: f64, buckets: &[f64]) -> FloatHistogram {
        FloatHistogram {
            count,
            sum: count,
            positive_spans: spans(&[(0, buckets.len() as u32)]),
            positive_buckets: buckets.to_vec(),
            ..FloatHistogram::default()
        }
    }

    fn hints_int(data: &[u8]) -> Vec<CounterResetHint> {
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
            (
                "second bucket went from 4 to 3",
                Histogram { positive_buckets: vec![3, 0], ..prev.clone() },
                CounterReset,
            ),
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
        e.append(
            4000,
            &Histogram { sum: stale(), schema: 7, positive_spans: spans(&[(0, 9)]), ..Histogram::default() },
        )
        .unwrap();
        assert_eq!(e.append(5000, &prev), Err(AfterStale));
        e.append(5000, &Histogram { sum: stale(), ..Histogram::default() }).unwrap();
        assert_eq!(e.num_samples(), 5);
    }

    #[test]
    fn gauge_chunks_take_decreases_but_not_counters_or_new_layouts() {
        let g = |count, buckets: &[i64]| Histogram {
            counter_reset_hint: CounterResetHint::Gauge,
            ..counter(count, buckets)
        };
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
        assert_eq!(
            chunks.iter().map(|c| HistogramIter::new(c).unwrap().total()).collect::<Vec<_>>(),
            vec![MAX_SAMPLES, 2]
        );
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
        let f = |schema,
                 zero_threshold,
                 zero_count,
                 count,
                 sum,
                 p: &[(i32, u32)],
                 pb: &[f64],
                 n: &[(i32, u32)],
                 nb: &[f64]| FloatHistogram {
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
    fn chunk(num: u16, header: u8, build: impl FnOnce(&mut BitWriter)) -> Vec<u8> {
        let [a, b] = num.to_be_bytes();
        let mut w = BitWriter::with_prefix(&[a, b, header], 64);
        build(&mut w);
        w.into_bytes()
    }

    fn int_err(data: &[u8]) -> String {
        match decode_histograms(data) {
            Err(e) => e.to_string(),
            Ok(v) => panic!("decoded {} samples from {}", v.len(), hex(data)),
        }
    }

    fn float_err(data: &[u8]) -> String {
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

    // ---- properties ---------------------------------------------------------------

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
            (
                arb_dt(),
                any::<u64>(),
                any::<u64>(),
                arb_sum(),
                vec(prop_oneof![-3i64..4, any::<i64>()], n_buckets),
                0u8..4,
            ),
            1..30,
        )
        .prop_map(|v| {
            v.into_iter().map(|(dt, a, b, sum, buckets, hint)| Step { dt, a, b, sum, buckets, hint }).collect()
        })
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
    fn float_bits(h: &FloatHistogram) -> (FloatHistogram, Vec<u64>) {
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

    fn int_bits(h: &Histogram) -> (Histogram, Vec<u64>) {
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
}
