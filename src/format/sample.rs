//! Decoding any stored chunk into samples.
//!
//! Owns: the dispatch from a chunk's encoding byte to its decoder, and [`Value`], the
//! value of one sample (float, integer histogram, float histogram).
//! Must not: filter or merge samples.

use super::aggr::{self, AggrType};
use super::chunks::Encoding;
use super::histogram::{FloatHistogram, FloatHistogramIter, Histogram, HistogramIter};
use crate::error::{FormatError, FormatResult};

/// The value of one sample.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Float(f64),
    Histogram(Box<Histogram>),
    FloatHistogram(Box<FloatHistogram>),
}

/// All samples of one chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum ChunkSamples {
    Float(Vec<(i64, f64)>),
    Histogram(Vec<(i64, Histogram)>),
    FloatHistogram(Vec<(i64, FloatHistogram)>),
}

impl ChunkSamples {
    pub fn len(&self) -> usize {
        match self {
            ChunkSamples::Float(v) => v.len(),
            ChunkSamples::Histogram(v) => v.len(),
            ChunkSamples::FloatHistogram(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Timestamps in order.
    pub fn timestamps(&self) -> Vec<i64> {
        match self {
            ChunkSamples::Float(v) => v.iter().map(|s| s.0).collect(),
            ChunkSamples::Histogram(v) => v.iter().map(|s| s.0).collect(),
            ChunkSamples::FloatHistogram(v) => v.iter().map(|s| s.0).collect(),
        }
    }
    /// Moves the samples out as `(t, Value)` pairs.
    pub fn into_values(self) -> Vec<(i64, Value)> {
        match self {
            ChunkSamples::Float(v) => v.into_iter().map(|(t, x)| (t, Value::Float(x))).collect(),
            ChunkSamples::Histogram(v) => v.into_iter().map(|(t, h)| (t, Value::Histogram(Box::new(h)))).collect(),
            ChunkSamples::FloatHistogram(v) => {
                v.into_iter().map(|(t, h)| (t, Value::FloatHistogram(Box::new(h)))).collect()
            }
        }
    }
}

/// Decodes a float or histogram chunk. Aggregate chunks need a slot: use [`decode_aggr`].
pub fn decode(encoding: u8, data: &[u8]) -> FormatResult<ChunkSamples> {
    match Encoding::from_byte(encoding) {
        Some(Encoding::Xor) => Ok(ChunkSamples::Float(super::xor::decode(data)?)),
        Some(Encoding::Histogram) => {
            Ok(ChunkSamples::Histogram(HistogramIter::new(data)?.collect::<FormatResult<_>>()?))
        }
        Some(Encoding::FloatHistogram) => {
            Ok(ChunkSamples::FloatHistogram(FloatHistogramIter::new(data)?.collect::<FormatResult<_>>()?))
        }
        Some(Encoding::Aggr) => Err(FormatError::new(
            "chunk",
            0,
            "aggregate chunk: choose an aggregate (count, sum, min, max, counter) to read it",
        )),
        None => Err(FormatError::new("chunk", 0, format!("unknown chunk encoding {encoding}"))),
    }
}

/// Decodes one slot of an aggregate chunk.
pub fn decode_aggr(data: &[u8], which: AggrType) -> FormatResult<ChunkSamples> {
    let slots = aggr::parse(data)?;
    let sub = aggr::slot(&slots, which)?;
    if sub.encoding == Encoding::Aggr as u8 {
        return Err(FormatError::new("aggregate chunk", 0, "an aggregate slot may not itself be an aggregate chunk"));
    }
    decode(sub.encoding, sub.data)
}
