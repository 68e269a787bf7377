//! The bit stream under XOR and histogram chunks.
//!
//! Owns: MSB-first bit writing that reproduces Prometheus's byte layout exactly,
//! including its trailing-byte quirk (a whole-byte write always leaves one fresh byte
//! behind it, so a chunk whose last write is an aligned byte ends in an extra `0x00`),
//! and a fast bounds-checked reader.
//! Must not: know about samples. See `docs/format/chunks.md` ("Bit stream").

use crate::error::{FormatError, FormatResult};

/// Writes bits MSB-first the way Prometheus's `bstream` does.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    stream: Vec<u8>,
    /// Free bits in the last byte of `stream` (0..=8).
    free: u8,
}

impl BitWriter {
    /// A writer whose stream starts with `prefix` (e.g. a chunk header); the next bit goes
    /// into a fresh byte.
    pub fn with_prefix(prefix: &[u8], capacity: usize) -> Self {
        let mut stream = Vec::with_capacity(capacity.max(prefix.len()));
        stream.extend_from_slice(prefix);
        BitWriter { stream, free: 0 }
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.stream.push(0);
            self.free = 8;
        }
        if bit {
            let i = self.stream.len() - 1;
            self.stream[i] |= 1 << (self.free - 1);
        }
        self.free -= 1;
    }

    /// Eight bits; always leaves a new (partly filled or empty) byte at the end.
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        if self.free == 0 {
            self.stream.push(0);
            self.free = 8;
        }
        let i = self.stream.len() - 1;
        self.stream[i] |= ((byte as u16) >> (8 - self.free)) as u8;
        self.stream.push(((byte as u16) << self.free) as u8);
    }

    /// The low `nbits` bits of `u`, most significant first; whole bytes, then single bits.
    #[inline]
    pub fn write_bits(&mut self, u: u64, nbits: u32) {
        debug_assert!(nbits <= 64);
        if nbits == 0 {
            return;
        }
        let mut u = u << (64 - nbits);
        let mut n = nbits;
        while n >= 8 {
            self.write_byte((u >> 56) as u8);
            u <<= 8;
            n -= 8;
        }
        while n > 0 {
            self.write_bit(u >> 63 == 1);
            u <<= 1;
            n -= 1;
        }
    }

    pub fn bytes(&self) -> &[u8] {
        &self.stream
    }
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.stream
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.stream
    }
    pub fn len(&self) -> usize {
        self.stream.len()
    }
    pub fn is_empty(&self) -> bool {
        self.stream.is_empty()
    }
}

/// Reads bits MSB-first from a byte slice. Reading past the end is an error.
#[derive(Clone)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` not yet loaded into `acc`.
    next: usize,
    /// Loaded bits, left-aligned.
    acc: u64,
    /// Number of valid bits in `acc`.
    have: u32,
    section: &'static str,
    base: u64,
}

impl<'a> BitReader<'a> {
    /// `base` is the absolute offset of `data[0]`, for error messages.
    pub fn new(data: &'a [u8], base: u64, section: &'static str) -> Self {
        BitReader { data, next: 0, acc: 0, have: 0, section, base }
    }

    #[inline]
    fn refill(&mut self) {
        if self.next + 8 <= self.data.len() {
            let w = u64::from_be_bytes(self.data[self.next..self.next + 8].try_into().expect("8 bytes"));
            self.acc |= w >> self.have;
            let take = (63 - self.have) / 8;
            self.next += take as usize;
            self.have += take * 8;
        } else {
            while self.have <= 56 && self.next < self.data.len() {
                self.acc |= (self.data[self.next] as u64) << (56 - self.have);
                self.next += 1;
                self.have += 8;
            }
        }
    }

    fn eof(&self, what: &str) -> FormatError {
        FormatError::new(self.section, self.base + self.next as u64, format!("bit stream ends while reading {what}"))
    }

    /// Bits consumed so far.
    pub fn bit_position(&self) -> u64 {
        self.next as u64 * 8 - self.have as u64
    }

    #[inline]
    pub fn read_bit(&mut self, what: &str) -> FormatResult<bool> {
        if self.have == 0 {
            self.refill();
            if self.have == 0 {
                return Err(self.eof(what));
            }
        }
        let bit = self.acc >> 63 == 1;
        self.acc <<= 1;
        self.have -= 1;
        Ok(bit)
    }

    /// Up to 64 bits as the low bits of the result.
    #[inline]
    pub fn read_bits(&mut self, nbits: u32, what: &str) -> FormatResult<u64> {
        debug_assert!(nbits <= 64);
        if nbits == 0 {
            return Ok(0);
        }
        if nbits > 56 {
            let hi = self.read_bits(nbits - 32, what)?;
            let lo = self.read_bits(32, what)?;
            return Ok(hi << 32 | lo);
        }
        if self.have < nbits {
            self.refill();
            if self.have < nbits {
                return Err(self.eof(what));
            }
        }
        let v = self.acc >> (64 - nbits);
        self.acc <<= nbits;
        self.have -= nbits;
        Ok(v)
    }

    #[inline]
    pub fn read_byte(&mut self, what: &str) -> FormatResult<u8> {
        Ok(self.read_bits(8, what)? as u8)
    }

    /// A Go uvarint whose bytes sit in the bit stream (possibly unaligned).
    pub fn read_uvarint(&mut self, what: &str) -> FormatResult<u64> {
        let mut x: u64 = 0;
        let mut s = 0u32;
        for i in 0..10 {
            let b = self.read_byte(what)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return Err(self.eof_or_overflow(what));
                }
                return Ok(x | (b as u64) << s);
            }
            x |= ((b & 0x7f) as u64) << s;
            s += 7;
        }
        Err(self.eof_or_overflow(what))
    }

    fn eof_or_overflow(&self, what: &str) -> FormatError {
        FormatError::new(self.section, self.base + self.next as u64, format!("{what}: uvarint overflows 64 bits"))
    }

    /// A Go zigzag varint whose bytes sit in the bit stream.
    pub fn read_varint(&mut self, what: &str) -> FormatResult<i64> {
        Ok(super::encoding::unzigzag(self.read_uvarint(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn aligned_byte_write_leaves_an_extra_zero_byte() {
        let mut w = BitWriter::with_prefix(&[], 8);
        w.write_byte(0xAB);
        assert_eq!(w.bytes(), &[0xAB, 0x00]);
        w.write_bit(true);
        assert_eq!(w.bytes(), &[0xAB, 0x80]);
        w.write_byte(0xFF);
        assert_eq!(w.bytes(), &[0xAB, 0xFF, 0x80]);
    }

    proptest! {
        #[test]
        fn bits_round_trip(items in proptest::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for &(v, n) in &items {
                w.write_bits(v, n);
            }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes, 0, "test");
            for &(v, n) in &items {
                let mask = if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
                prop_assert_eq!(r.read_bits(n, "v").unwrap(), v & mask);
            }
        }
    }
}
