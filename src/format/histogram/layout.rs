//! The layout of a histogram chunk: what every sample of a chunk shares (zero threshold,
//! schema, spans, custom bounds), written once after the header.

use super::model::{is_known_schema, AppendError, Span, CUSTOM_BUCKETS_SCHEMA};
use super::varbit::{read_varbit_uint, write_varbit_int, write_varbit_uint};
use crate::error::FormatResult;
use crate::format::bstream::{BitReader, BitWriter};

/// The zero threshold as the chunk stores it: `-0.0` is written as the zero byte and reads
/// back as `+0.0`.
pub(super) fn normalized_threshold(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

/// The one-byte code of a zero threshold, if it has one: 0 for zero, `e + 244` for a
/// power of two `2^e` with `-243 <= e <= 10`.
pub(super) fn zero_threshold_code(v: f64) -> Option<u8> {
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

pub(super) fn write_zero_threshold(w: &mut BitWriter, v: f64) {
    match zero_threshold_code(v) {
        Some(code) => w.write_byte(code),
        None => {
            w.write_byte(0xff);
            w.write_bits(v.to_bits(), 64);
        }
    }
}

pub(super) fn read_zero_threshold(r: &mut BitReader<'_>) -> FormatResult<f64> {
    match r.read_byte("zero threshold")? {
        0 => Ok(0.0),
        0xff => Ok(f64::from_bits(r.read_bits(64, "zero threshold")?)),
        // 0.5 * 2^(b-243), always a normal number.
        b => Ok(f64::from_bits(((b as u64) + 1023 - 244) << 52)),
    }
}

/// Custom bounds are stored as varbit `round(x*1000)+1` when `x*1000` is a whole number
/// in `0..=33554430`; otherwise as a zero bit and the raw 64 bits.
pub(super) fn custom_bound_code(v: f64) -> Option<u64> {
    let scaled = v * 1000.0;
    // NaN fails both comparisons, as in Go, and then fails the whole-number test.
    if !(0.0..=33_554_430.0).contains(&scaled) {
        return None;
    }
    let rounded = scaled.round();
    (rounded / 1000.0 == v).then_some(rounded as u64 + 1)
}

/// A custom bound as it reads back: `-0.0` becomes `+0.0`, every other value is exact.
pub(super) fn normalized_custom_bound(v: f64) -> f64 {
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

pub(super) fn write_custom_bound(w: &mut BitWriter, v: f64) {
    match custom_bound_code(v) {
        Some(code) => write_varbit_uint(w, code),
        None => {
            w.write_bit(false);
            w.write_bits(v.to_bits(), 64);
        }
    }
}

pub(super) fn read_custom_bound(r: &mut BitReader<'_>) -> FormatResult<f64> {
    match read_varbit_uint(r, "custom bound")? {
        0 => Ok(f64::from_bits(r.read_bits(64, "custom bound")?)),
        code => Ok((code - 1) as f64 / 1000.0),
    }
}

/// What every sample of a chunk shares, as the first sample writes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Layout {
    pub(super) schema: i32,
    pub(super) zero_threshold: f64,
    pub(super) positive_spans: Vec<Span>,
    pub(super) negative_spans: Vec<Span>,
    /// Empty unless `schema` is [`CUSTOM_BUCKETS_SCHEMA`].
    pub(super) custom_values: Vec<f64>,
}

/// Borrowed layout fields of a sample about to be appended.
#[derive(Clone, Copy)]
pub struct LayoutRef<'h> {
    pub(super) schema: i32,
    pub(super) zero_threshold: f64,
    pub(super) positive_spans: &'h [Span],
    pub(super) negative_spans: &'h [Span],
    pub(super) custom_values: &'h [f64],
}

impl<'h> LayoutRef<'h> {
    /// Checks what the format needs of a non-stale sample with these bucket counts.
    pub(super) fn check(&self, positive_buckets: usize, negative_buckets: usize) -> Result<(), AppendError> {
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

    pub(super) fn to_layout(self) -> Layout {
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
    pub(super) fn matches(&self, h: LayoutRef<'_>) -> bool {
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

    pub(super) fn write(&self, w: &mut BitWriter) {
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

    pub(super) fn bucket_counts(&self) -> (u64, u64) {
        let count = |spans: &[Span]| spans.iter().fold(0u64, |n, s| n.saturating_add(s.length as u64));
        (count(&self.positive_spans), count(&self.negative_spans))
    }
}
