//! Native histogram chunks: integer histograms (encoding 2) and float histograms
//! (encoding 3).
//!
//! Owns: the sample model ([`Histogram`], [`FloatHistogram`], [`Span`],
//! [`CounterResetHint`]) and the chunk codec for both encodings.
//! Must not: know about segment files or CRCs. See `docs/format/chunks.md`.

/// The counter-reset hint of a sample; in a chunk, the top two bits of byte 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CounterResetHint {
    #[default]
    Unknown,
    CounterReset,
    NotCounterReset,
    Gauge,
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
