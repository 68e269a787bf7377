//! The bit stream under XOR and histogram chunks.
//!
//! Owns: MSB-first bit writing that reproduces Prometheus's byte layout exactly,
//! including its trailing-byte quirk (a whole-byte write always leaves one fresh byte
//! behind it, so a chunk whose last write is an aligned byte ends in an extra `0x00`),
//! and a fast bounds-checked reader.
//! Must not: know about samples. See `docs/format/chunks.md` ("Bit stream").

use crate::error::{FormatError, FormatResult};

/// Where bit writes go: [`BitWriter`], or a whole-chunk encoder's [`Pending`] bits over
/// a borrowed buffer. The value XOR scheme writes through it.
pub trait BitSink {
    /// `nbits` (1..=64) low bits of `u`, of which Prometheus's last operation wrote
    /// `last_op_bits` (see [`BitWriter::write_bits_as`]).
    fn put(&mut self, u: u64, nbits: u32, last_op_bits: u32);
}

/// Bits not yet flushed to a byte stream: a register (`acc`) that reaches the stream 8
/// bytes at a time, and what Prometheus's trailing-byte rule needs to know. Kept apart
/// from the stream so an encoder can hold it in locals (and CPU registers) for a whole
/// chunk.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pending {
    /// Pending bits, left-aligned.
    acc: u64,
    /// Number of pending bits (0..64).
    nacc: u32,
    /// Whether the last write was a whole number of bytes (see `BitWriter::write_bits`).
    byte_end: bool,
}

impl Pending {
    /// [`BitSink::put`] onto `stream`.
    #[inline(always)]
    pub fn put(&mut self, stream: &mut Vec<u8>, u: u64, nbits: u32, last_op_bits: u32) {
        debug_assert!((1..=64).contains(&nbits) && last_op_bits <= nbits);
        let v = u << (64 - nbits);
        if self.nacc + nbits < 64 {
            self.acc |= v >> self.nacc;
            self.nacc += nbits;
        } else {
            // Fill the register, flush it, keep the rest.
            let room = 64 - self.nacc;
            self.acc |= v >> self.nacc;
            stream.extend_from_slice(&self.acc.to_be_bytes());
            self.acc = if room == 64 { 0 } else { v << room };
            self.nacc = nbits - room;
        }
        self.byte_end = last_op_bits % 8 == 0 && last_op_bits > 0;
    }

    /// Bytes the pending bits occupy, including Prometheus's trailing byte.
    fn len(&self) -> usize {
        if self.byte_end {
            self.nacc as usize / 8 + 1
        } else {
            (self.nacc as usize).div_ceil(8)
        }
    }

    /// Appends the pending bits (and the trailing byte) to `stream`.
    pub fn flush(&self, stream: &mut Vec<u8>) {
        let n = self.len();
        stream.extend_from_slice(&self.acc.to_be_bytes()[..n.min(8)]);
        if n > 8 {
            stream.push(0);
        }
    }
}

/// Writes bits MSB-first the way Prometheus's `bstream` does.
///
/// Pending bits live in a register and reach the buffer 8 bytes at a time. The flushed
/// part always holds the prefix (a chunk header), which callers may rewrite in place
/// through [`header_mut`](Self::header_mut).
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    /// Flushed bytes.
    stream: Vec<u8>,
    pending: Pending,
}

impl BitSink for BitWriter {
    #[inline(always)]
    fn put(&mut self, u: u64, nbits: u32, last_op_bits: u32) {
        self.write_bits_as(u, nbits, last_op_bits)
    }
}

impl BitWriter {
    /// A writer whose stream starts with `prefix` (e.g. a chunk header); the next bit goes
    /// into a fresh byte.
    pub fn with_prefix(prefix: &[u8], capacity: usize) -> Self {
        let mut stream = Vec::with_capacity(capacity.max(prefix.len() + 8));
        stream.extend_from_slice(prefix);
        BitWriter { stream, pending: Pending::default() }
    }

    /// Starts over with `prefix`, keeping the allocation.
    pub fn reset(&mut self, prefix: &[u8]) {
        self.stream.clear();
        self.stream.extend_from_slice(prefix);
        self.pending = Pending::default();
    }

    /// Appends the whole stream to `out` (as [`into_bytes`](Self::into_bytes) would
    /// give it).
    pub fn append_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.stream);
        self.pending.flush(out);
    }

    #[inline]
    pub fn write_bit(&mut self, bit: bool) {
        self.write_bits(bit as u64, 1)
    }

    /// Eight bits; always leaves a new (partly filled or empty) byte at the end.
    #[inline]
    pub fn write_byte(&mut self, byte: u8) {
        self.write_bits(byte as u64, 8)
    }

    /// The low `nbits` bits of `u`, most significant first.
    ///
    /// Prometheus writes whole bytes first (each of which leaves a fresh byte behind it)
    /// and then single bits (which add a byte only when the last one is full). The bits
    /// land in the same places either way; only the stream's length differs, and it
    /// depends on the last operation alone: after a whole-byte write the last byte has
    /// 1 to 8 free bits, after a single bit 0 to 7. So the length follows from the bit
    /// count and whether the last `nbits` was a multiple of 8 (checked against an
    /// operation-by-operation model in the tests).
    #[inline]
    pub fn write_bits(&mut self, u: u64, nbits: u32) {
        self.write_bits_as(u, nbits, nbits)
    }

    /// Writes `nbits` bits that Prometheus writes as several operations, the last of
    /// which wrote `last_op_bits` bits: same bits, and the same trailing-byte state as
    /// that sequence leaves (see [`write_bits`](Self::write_bits)).
    #[inline]
    pub fn write_bits_as(&mut self, u: u64, nbits: u32, last_op_bits: u32) {
        debug_assert!(nbits <= 64 && last_op_bits <= nbits);
        if nbits > 0 {
            self.pending.put(&mut self.stream, u, nbits, last_op_bits);
        }
    }

    /// The stream's length in bytes.
    pub fn len(&self) -> usize {
        self.stream.len() + self.pending.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The flushed bytes, which always begin with the whole prefix.
    pub fn header(&self) -> &[u8] {
        &self.stream
    }
    pub fn header_mut(&mut self) -> &mut [u8] {
        &mut self.stream
    }

    /// A copy of the whole stream so far.
    pub fn to_vec(&self) -> Vec<u8> {
        self.clone().into_bytes()
    }

    pub fn into_bytes(mut self) -> Vec<u8> {
        self.pending.flush(&mut self.stream);
        self.stream
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
        assert_eq!(w.to_vec(), &[0xAB, 0x00]);
        w.write_bit(true);
        assert_eq!(w.to_vec(), &[0xAB, 0x80]);
        w.write_byte(0xFF);
        assert_eq!(w.to_vec(), &[0xAB, 0xFF, 0x80]);
    }

    /// Prometheus's bit writer, operation by operation, to check the fast one against.
    struct Naive {
        stream: Vec<u8>,
        count: u8,
    }

    impl Naive {
        fn bit(&mut self, bit: bool) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            if bit {
                self.stream[i] |= 1 << (self.count - 1);
            }
            self.count -= 1;
        }
        fn byte(&mut self, b: u8) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            self.stream[i] |= ((b as u16) >> (8 - self.count)) as u8;
            self.stream.push(((b as u16) << self.count) as u8);
        }
        fn bits(&mut self, u: u64, n: u32) {
            let mut u = if n == 0 { 0 } else { u << (64 - n) };
            let mut n = n;
            while n >= 8 {
                self.byte((u >> 56) as u8);
                u <<= 8;
                n -= 8;
            }
            while n > 0 {
                self.bit(u >> 63 == 1);
                u <<= 1;
                n -= 1;
            }
        }
    }

    proptest! {
        #[test]
        fn fast_writer_matches_prometheus_byte_for_byte(items in proptest::collection::vec((any::<u64>(), 0u32..=64, any::<bool>()), 0..200)) {
            let mut fast = BitWriter::with_prefix(&[0, 0], 8);
            let mut naive = Naive { stream: vec![0, 0], count: 0 };
            for &(v, n, single) in &items {
                if single {
                    fast.write_bit(v & 1 == 1);
                    naive.bit(v & 1 == 1);
                } else {
                    fast.write_bits(v, n);
                    naive.bits(v, n);
                }
                prop_assert_eq!(fast.to_vec(), naive.stream.clone());
                prop_assert_eq!(fast.len(), naive.stream.len());
            }
        }

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
