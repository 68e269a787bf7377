//! Decoding any stored chunk into samples, and encoding samples of any kind into chunks.
//!
//! Owns: the dispatch from a chunk's encoding byte to its decoder, the reverse (samples to
//! XOR or histogram chunks, [`encode`]), and [`Value`], the value of one sample (float,
//! integer histogram, float histogram).
//! Must not: filter or merge samples.

use super::aggr::{self, AggrType};
use super::chunks::Encoding;
use super::histogram::{
    encode_float_histograms, encode_histograms, AppendError, FloatHistogram, FloatHistogramIter, Histogram,
    HistogramIter,
};
use super::xor::{ChunkFull, MAX_SAMPLES};
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

/// One chunk cut by [`encode`]: its encoding, its bytes and the times of its first and
/// last sample.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedChunk {
    pub encoding: Encoding,
    pub data: Vec<u8>,
    pub min_time: i64,
    pub max_time: i64,
}

/// Why samples cannot be encoded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum EncodeError {
    /// A histogram the format cannot hold (spans disagree with buckets, unknown schema).
    #[error(transparent)]
    Histogram(#[from] AppendError),
    #[error(transparent)]
    Full(#[from] ChunkFull),
    #[error("histogram encoder produced an inconsistent chunk")]
    Inconsistent,
}

/// Encodes samples into chunks of at most `per_chunk` samples (Prometheus cuts at 120),
/// cutting also where the value type changes and wherever the histogram encoders need a
/// new chunk (see [`encode_histograms`]).
pub fn encode(samples: &[(i64, Value)], per_chunk: usize) -> Result<Vec<EncodedChunk>, EncodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let kind = std::mem::discriminant(&samples[i].1);
        let mut j = i;
        while j < samples.len() && std::mem::discriminant(&samples[j].1) == kind {
            j += 1;
        }
        for piece in samples[i..j].chunks(per_chunk.clamp(1, MAX_SAMPLES)) {
            encode_run(piece, &mut out)?;
        }
        i = j;
    }
    Ok(out)
}

/// Encodes samples that all have the same kind of value and fit one XOR chunk.
fn encode_run(piece: &[(i64, Value)], out: &mut Vec<EncodedChunk>) -> Result<(), EncodeError> {
    match &piece[0].1 {
        Value::Float(_) => {
            let floats = values(piece, |v| if let Value::Float(x) = v { Some(*x) } else { None });
            let mut data = Vec::new();
            super::xor::encode_into(&floats, &mut data)?;
            let (min_time, max_time) = (piece[0].0, piece[piece.len() - 1].0);
            out.push(EncodedChunk { encoding: Encoding::Xor, data, min_time, max_time });
        }
        Value::Histogram(_) => {
            let hs = values(piece, |v| if let Value::Histogram(h) = v { Some((**h).clone()) } else { None });
            push_cut(out, &hs, Encoding::Histogram, encode_histograms(&hs)?)?;
        }
        Value::FloatHistogram(_) => {
            let hs = values(piece, |v| if let Value::FloatHistogram(h) = v { Some((**h).clone()) } else { None });
            push_cut(out, &hs, Encoding::FloatHistogram, encode_float_histograms(&hs)?)?;
        }
    }
    Ok(())
}

/// The samples whose value `pick` takes, with their timestamps.
fn values<T>(samples: &[(i64, Value)], pick: impl Fn(&Value) -> Option<T>) -> Vec<(i64, T)> {
    samples.iter().filter_map(|(t, v)| pick(v).map(|x| (*t, x))).collect()
}

/// Assigns time ranges to the chunks a histogram encoder cut, by their sample counts.
fn push_cut<T>(
    out: &mut Vec<EncodedChunk>,
    samples: &[(i64, T)],
    encoding: Encoding,
    chunks: Vec<Vec<u8>>,
) -> Result<(), EncodeError> {
    let mut at = 0;
    for data in chunks {
        let n = u16::from_be_bytes([data[0], data[1]]) as usize;
        if n == 0 || at + n > samples.len() {
            return Err(EncodeError::Inconsistent);
        }
        out.push(EncodedChunk { encoding, data, min_time: samples[at].0, max_time: samples[at + n - 1].0 });
        at += n;
    }
    Ok(())
}
