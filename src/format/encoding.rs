//! Primitive encodings shared by every TSDB file: big-endian integers, Go's uvarint and
//! zigzag varint, length-prefixed strings, CRC32 Castagnoli.
//!
//! Owns: bounds-checked reading of those primitives out of a `&[u8]` ([`Decoder`]) and
//! writing them into a `Vec<u8>`. Every read names the field it reads, so a short or
//! malformed buffer becomes a [`FormatError`] with the section and absolute offset.
//! Must not: know about any file layout. See `docs/format/primitives.md`.

use crate::error::{FormatError, FormatResult};

/// CRC32 Castagnoli of `bytes`, as every TSDB file stores it (big-endian on disk).
#[inline]
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A bounds-checked cursor over a byte slice.
///
/// `base` is the absolute offset of `buf[0]` in the file, so errors report file offsets.
#[derive(Clone)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
    section: &'static str,
}

impl<'a> Decoder<'a> {
    pub fn new(buf: &'a [u8], base: u64, section: &'static str) -> Self {
        Decoder { buf, pos: 0, base, section }
    }

    /// The absolute offset of the next byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
    pub fn position(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
    pub fn section(&self) -> &'static str {
        self.section
    }
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// An error at the current position.
    pub fn err(&self, problem: impl Into<String>) -> FormatError {
        FormatError::new(self.section, self.offset(), problem)
    }

    fn short(&self, field: &str, need: usize) -> FormatError {
        self.err(format!("{field}: need {need} bytes, only {} left", self.remaining()))
    }

    pub fn bytes(&mut self, n: usize, field: &str) -> FormatResult<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.short(field, n));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn skip(&mut self, n: usize, field: &str) -> FormatResult<()> {
        self.bytes(n, field).map(|_| ())
    }

    pub fn u8(&mut self, field: &str) -> FormatResult<u8> {
        Ok(self.bytes(1, field)?[0])
    }

    pub fn be32(&mut self, field: &str) -> FormatResult<u32> {
        let b = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn be64(&mut self, field: &str) -> FormatResult<u64> {
        let b = self.bytes(8, field)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    /// Go `binary.Uvarint`: at most 10 bytes, the 10th may only hold one bit.
    pub fn uvarint(&mut self, field: &str) -> FormatResult<u64> {
        match read_uvarint(&self.buf[self.pos..]) {
            Some((v, n)) => {
                self.pos += n;
                Ok(v)
            }
            None => Err(self.err(format!("{field}: malformed or truncated uvarint"))),
        }
    }

    /// A uvarint that must fit in u32 (refs, counts, lengths).
    pub fn uvarint32(&mut self, field: &str) -> FormatResult<u32> {
        let at = self.offset();
        let v = self.uvarint(field)?;
        u32::try_from(v)
            .map_err(|_| FormatError::new(self.section, at, format!("{field}: {v} does not fit in 32 bits")))
    }

    /// Go `binary.Varint` (zigzag).
    pub fn varint(&mut self, field: &str) -> FormatResult<i64> {
        let u = self.uvarint(field)?;
        Ok(unzigzag(u))
    }

    /// A uvarint length followed by that many bytes.
    pub fn uvarint_bytes(&mut self, field: &str) -> FormatResult<&'a [u8]> {
        let n = self.uvarint(field)?;
        if n > self.remaining() as u64 {
            return Err(self.err(format!("{field}: length {n} runs past the end ({} bytes left)", self.remaining())));
        }
        self.bytes(n as usize, field)
    }
}

/// Decodes a Go uvarint from the front of `b`; returns the value and its length.
#[inline]
pub fn read_uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return None; // overflow
            }
            return Some((x | (byte as u64) << s, i + 1));
        }
        x |= ((byte & 0x7f) as u64) << s;
        s += 7;
    }
    None
}

#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Appends `v` as a Go uvarint.
#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v))
}

/// Length of `v` as a uvarint.
#[inline]
pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn put_uvarint_bytes(out: &mut Vec<u8>, s: &[u8]) {
    put_uvarint(out, s.len() as u64);
    out.extend_from_slice(s);
}

pub fn put_be32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_be64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn uvarint_rejects_overflow_and_truncation() {
        assert_eq!(read_uvarint(&[0x80]), None);
        assert_eq!(read_uvarint(&[0xff; 10]), None);
        let mut b = vec![0xff; 9];
        b.push(0x01);
        assert_eq!(read_uvarint(&b), Some((u64::MAX, 10)));
    }

    #[test]
    fn decoder_reports_field_and_offset() {
        let mut d = Decoder::new(&[1, 2, 3], 100, "test section");
        d.u8("first").unwrap();
        let e = d.be32("word").unwrap_err();
        assert_eq!(e.offset, 101);
        assert!(e.problem.contains("word"), "{e}");
    }

    proptest! {
        #[test]
        fn uvarint_round_trips(v: u64) {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            prop_assert_eq!(b.len(), uvarint_len(v));
            prop_assert_eq!(read_uvarint(&b), Some((v, b.len())));
        }

        #[test]
        fn varint_round_trips(v: i64) {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let mut d = Decoder::new(&b, 0, "t");
            prop_assert_eq!(d.varint("v").unwrap(), v);
            prop_assert!(d.is_empty());
        }
    }
}
