//! Native histogram chunks: integer histograms (encoding 2) and float histograms
//! (encoding 3).
//!
//! Owns: the sample model ([`Histogram`], [`FloatHistogram`], [`Span`],
//! [`CounterResetHint`]) and the chunk codec for both encodings: the varbit integers,
//! the chunk layout (zero threshold, schema, spans, custom bucket bounds), the encoder
//! ([`Encoder`], as [`HistogramEncoder`] and [`FloatHistogramEncoder`]) that reproduces
//! Prometheus 2.42's appenders byte for byte, and the iterator ([`ChunkIter`], as
//! [`HistogramIter`] and [`FloatHistogramIter`]) that never panics and never allocates
//! more than the input bytes can justify. Also the Go-compatible text form of a float
//! histogram (`impl Display for FloatHistogram`).
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
//!
//! Modules, by concern: `model` (the sample types), `varbit` (varbit integers), `layout`
//! (zero threshold, schema, spans, custom bounds), `kind` (what integer and float chunks
//! write differently, behind the [`HistogramSample`] trait), `encoder`, `iter`, `text`
//! (the Go text form and bucket bounds); `tests` and `props` hold the unit and property
//! tests.

mod encoder;
mod iter;
mod kind;
mod layout;
mod model;
mod text;
mod varbit;

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub use encoder::{Encoder, FloatHistogramEncoder, HistogramEncoder};
pub use iter::{ChunkIter, FloatHistogramIter, HistogramIter};
pub use kind::HistogramSample;
pub use model::{
    AppendError, CounterResetHint, FloatHistogram, Histogram, Span, CUSTOM_BUCKETS_SCHEMA, STALE_NAN_BITS,
};
pub use text::format_go_g;
pub(crate) use text::{ldexp, EXPONENTIAL_BOUNDS};
pub use varbit::{read_varbit_int, read_varbit_uint, write_varbit_int, write_varbit_uint};

use crate::error::FormatResult;

/// Appends every sample, cutting a new chunk whenever the current one refuses a sample.
/// A chunk cut for a detected counter reset gets the `CounterReset` header; any other
/// chunk's header is its first sample's hint.
fn encode_chunks<S: HistogramSample>(samples: &[(i64, S)]) -> Result<Vec<Vec<u8>>, AppendError> {
    let mut chunks = Vec::new();
    let mut enc = Encoder::<S>::new();
    for (t, sample) in samples {
        match enc.append(*t, sample) {
            Ok(()) => {}
            Err(e) if e.needs_new_chunk() => {
                chunks.push(std::mem::take(&mut enc).finish());
                enc.append(*t, sample)?;
                if e == AppendError::CounterReset {
                    enc.set_counter_reset_header(CounterResetHint::CounterReset);
                }
            }
            Err(e) => return Err(e),
        }
    }
    if enc.num_samples() != 0 {
        chunks.push(enc.finish());
    }
    Ok(chunks)
}

/// Encodes a series' integer histograms into as many chunks as the format needs: a new
/// chunk at a layout change, a counter reset, a switch between gauge and counter, the
/// first sample after a stale marker, and after 65535 samples. It does not cut for size;
/// callers that want Prometheus's 120-sample chunks pass 120 samples at a time.
pub fn encode_histograms(samples: &[(i64, Histogram)]) -> Result<Vec<Vec<u8>>, AppendError> {
    encode_chunks(samples)
}

/// The float-histogram counterpart of [`encode_histograms`].
pub fn encode_float_histograms(samples: &[(i64, FloatHistogram)]) -> Result<Vec<Vec<u8>>, AppendError> {
    encode_chunks(samples)
}

/// Decodes every sample of an integer histogram chunk.
pub fn decode_histograms(data: &[u8]) -> FormatResult<Vec<(i64, Histogram)>> {
    HistogramIter::new(data)?.collect()
}

/// Decodes every sample of a float histogram chunk.
pub fn decode_float_histograms(data: &[u8]) -> FormatResult<Vec<(i64, FloatHistogram)>> {
    FloatHistogramIter::new(data)?.collect()
}
