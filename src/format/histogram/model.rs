//! The sample model: integer and float native histograms, their spans and counter-reset
//! hints, and why an encoder refuses a sample.

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
pub(super) const HEADER_LEN: usize = 3;

pub(super) fn is_stale(sum: f64) -> bool {
    sum.to_bits() == STALE_NAN_BITS
}

pub(super) fn is_known_schema(schema: i32) -> bool {
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
