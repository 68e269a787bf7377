//! XOR float chunks (chunk encoding 1): Gorilla-style delta-of-delta timestamps and
//! XOR-compressed values, bit for bit as Prometheus writes them.
//!
//! Owns: [`XorEncoder`] (samples → chunk bytes, byte-identical to Prometheus's appender)
//! and [`XorIter`] (chunk bytes → samples, never panicking on bad bytes), plus the value
//! XOR scheme ([`XorState`]) that histogram chunks reuse.
//! Must not: know about segment files or CRCs. See `docs/format/chunks.md` ("XOR").

use super::bstream::{BitReader, BitWriter};
use super::encoding::{put_uvarint, put_varint};
use crate::error::{FormatError, FormatResult};

/// The most samples a chunk header can count.
pub const MAX_SAMPLES: usize = u16::MAX as usize;

/// Sliding leading/trailing-zero window of the value XOR scheme.
#[derive(Clone, Copy, Debug)]
pub struct XorState {
    pub leading: u8,
    pub trailing: u8,
}

impl Default for XorState {
    fn default() -> Self {
        XorState { leading: 0xff, trailing: 0 }
    }
}

impl XorState {
    /// Writes `new` as the XOR against `prev`.
    #[inline]
    pub fn write(&mut self, w: &mut BitWriter, new: u64, prev: u64) {
        let delta = new ^ prev;
        if delta == 0 {
            w.write_bit(false);
            return;
        }
        w.write_bit(true);
        let lead = (delta.leading_zeros() as u8).min(31);
        let trail = delta.trailing_zeros() as u8;
        if self.leading != 0xff && lead >= self.leading && trail >= self.trailing {
            w.write_bit(false);
            w.write_bits(delta >> self.trailing, 64 - self.leading as u32 - self.trailing as u32);
            return;
        }
        self.leading = lead;
        self.trailing = trail;
        w.write_bit(true);
        w.write_bits(lead as u64, 5);
        let sig = 64 - lead as u32 - trail as u32;
        w.write_bits(sig as u64, 6); // 64 wraps to 0 in six bits
        w.write_bits(delta >> trail, sig);
    }

    /// Reads the next value given the previous one's bits.
    #[inline]
    pub fn read(&mut self, r: &mut BitReader<'_>, prev: u64) -> FormatResult<u64> {
        if !r.read_bit("value control bit")? {
            return Ok(prev);
        }
        if r.read_bit("value window bit")? {
            let lead = r.read_bits(5, "leading zeros")? as u8;
            let mut sig = r.read_bits(6, "significant bits")? as u8;
            if sig == 0 {
                sig = 64;
            }
            if lead as u32 + sig as u32 > 64 {
                return Err(FormatError::new("XOR value", r.bit_position() / 8, format!("leading zeros {lead} plus significant bits {sig} exceed 64")));
            }
            self.leading = lead;
            self.trailing = 64 - lead - sig;
        } else if self.leading == 0xff {
            return Err(FormatError::new("XOR value", r.bit_position() / 8, "value reuses a window before any was set"));
        }
        let sig = 64 - self.leading as u32 - self.trailing as u32;
        let bits = r.read_bits(sig, "value bits")?;
        Ok(prev ^ (bits << self.trailing))
    }
}

/// Builds one XOR chunk, sample by sample.
#[derive(Clone, Debug)]
pub struct XorEncoder {
    w: BitWriter,
    num: u16,
    t: i64,
    t_delta: u64,
    v: u64,
    state: XorState,
}

impl Default for XorEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl XorEncoder {
    pub fn new() -> Self {
        XorEncoder { w: BitWriter::with_prefix(&[0, 0], 128), num: 0, t: 0, t_delta: 0, v: 0, state: XorState::default() }
    }

    pub fn num_samples(&self) -> usize {
        self.num as usize
    }

    /// Bytes so far (header included).
    pub fn size(&self) -> usize {
        self.w.len()
    }

    /// Appends a sample. Timestamps should increase; the format itself only needs them to
    /// fit, so this does not check. Fails once the chunk holds [`MAX_SAMPLES`].
    pub fn append(&mut self, t: i64, v: f64) -> Result<(), ChunkFull> {
        if self.num as usize >= MAX_SAMPLES {
            return Err(ChunkFull);
        }
        let vb = v.to_bits();
        match self.num {
            0 => {
                let mut tmp = Vec::with_capacity(10);
                put_varint(&mut tmp, t);
                for &b in &tmp {
                    self.w.write_byte(b);
                }
                self.w.write_bits(vb, 64);
            }
            1 => {
                let mut tmp = Vec::with_capacity(10);
                let d = t.wrapping_sub(self.t) as u64;
                put_uvarint(&mut tmp, d);
                for &b in &tmp {
                    self.w.write_byte(b);
                }
                self.t_delta = d;
                self.state.write(&mut self.w, vb, self.v);
            }
            _ => {
                let d = t.wrapping_sub(self.t) as u64;
                let dod = d.wrapping_sub(self.t_delta) as i64;
                write_dod(&mut self.w, dod);
                self.t_delta = d;
                self.state.write(&mut self.w, vb, self.v);
            }
        }
        self.t = t;
        self.v = vb;
        self.num += 1;
        let n = self.num.to_be_bytes();
        self.w.header_mut()[..2].copy_from_slice(&n);
        Ok(())
    }

    /// A copy of the chunk so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.w.to_vec()
    }

    pub fn finish(self) -> Vec<u8> {
        self.w.into_bytes()
    }
}

/// The chunk already holds the most samples its header can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("chunk holds the maximum number of samples")]
pub struct ChunkFull;

/// `-(2^(n-1)-1) <= x <= 2^(n-1)`, Prometheus's asymmetric range test.
#[inline]
pub(crate) fn bit_range(x: i64, n: u32) -> bool {
    let half = 1i64 << (n - 1);
    -(half - 1) <= x && x <= half
}

#[inline]
fn write_dod(w: &mut BitWriter, dod: i64) {
    if dod == 0 {
        w.write_bit(false);
    } else if bit_range(dod, 14) {
        w.write_byte(0b10 << 6 | ((dod >> 8) as u8 & 0x3f));
        w.write_byte(dod as u8);
    } else if bit_range(dod, 17) {
        w.write_bits(0b110, 3);
        w.write_bits(dod as u64, 17);
    } else if bit_range(dod, 20) {
        w.write_bits(0b1110, 4);
        w.write_bits(dod as u64, 20);
    } else {
        w.write_bits(0b1111, 4);
        w.write_bits(dod as u64, 64);
    }
}

/// Encodes samples into one chunk.
pub fn encode(samples: &[(i64, f64)]) -> Result<Vec<u8>, ChunkFull> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v)?;
    }
    Ok(e.finish())
}

/// Number of samples in the header, or an error when the header is missing.
pub fn num_samples(data: &[u8]) -> FormatResult<usize> {
    if data.len() < 2 {
        return Err(FormatError::new("XOR chunk", 0, "chunk shorter than its 2-byte header"));
    }
    Ok(u16::from_be_bytes([data[0], data[1]]) as usize)
}

/// Iterates the samples of an XOR chunk.
#[derive(Clone)]
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: usize,
    read: usize,
    t: i64,
    t_delta: u64,
    v: u64,
    state: XorState,
    failed: bool,
}

impl<'a> XorIter<'a> {
    pub fn new(data: &'a [u8]) -> FormatResult<Self> {
        let total = num_samples(data)?;
        Ok(XorIter { r: BitReader::new(&data[2..], 2, "XOR chunk"), total, read: 0, t: 0, t_delta: 0, v: 0, state: XorState::default(), failed: false })
    }

    pub fn total(&self) -> usize {
        self.total
    }

    fn step(&mut self) -> FormatResult<(i64, f64)> {
        let r = &mut self.r;
        match self.read {
            0 => {
                self.t = r.read_varint("first timestamp")?;
                self.v = r.read_bits(64, "first value")?;
            }
            1 => {
                self.t_delta = r.read_uvarint("second timestamp delta")?;
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.v = self.state.read(r, self.v)?;
            }
            _ => {
                let dod = read_dod(r)?;
                self.t_delta = self.t_delta.wrapping_add(dod as u64);
                self.t = self.t.wrapping_add(self.t_delta as i64);
                self.v = self.state.read(r, self.v)?;
            }
        }
        self.read += 1;
        Ok((self.t, f64::from_bits(self.v)))
    }
}

#[inline]
fn read_dod(r: &mut BitReader<'_>) -> FormatResult<i64> {
    let mut prefix = 0u8;
    for _ in 0..4 {
        prefix <<= 1;
        if !r.read_bit("timestamp prefix")? {
            break;
        }
        prefix |= 1;
    }
    let sz = match prefix {
        0b0 => return Ok(0),
        0b10 => 14,
        0b110 => 17,
        0b1110 => 20,
        _ => return Ok(r.read_bits(64, "timestamp delta-of-delta")? as i64),
    };
    let mut u = r.read_bits(sz, "timestamp delta-of-delta")? as i64;
    if u > 1 << (sz - 1) {
        u -= 1 << sz;
    }
    Ok(u)
}

impl Iterator for XorIter<'_> {
    type Item = FormatResult<(i64, f64)>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.read >= self.total {
            return None;
        }
        let res = self.step();
        if res.is_err() {
            self.failed = true;
        }
        Some(res)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.total - self.read;
        (0, Some(n))
    }
}

/// Decodes every sample of a chunk.
pub fn decode(data: &[u8]) -> FormatResult<Vec<(i64, f64)>> {
    XorIter::new(data)?.collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn reference_vectors() {
        let c = encode(&[(1000, 1.0), (2000, 1.0), (3000, 1.0)]).unwrap();
        assert_eq!(hex(&c), "00 03 d0 0f 3f f0 00 00 00 00 00 00 e8 07 00");
        let c = encode(&[(1000, 1.0), (2000, 2.0)]).unwrap();
        assert_eq!(hex(&c), "00 02 d0 0f 3f f0 00 00 00 00 00 00 e8 07 c2 5f ff");
        let c = encode(&[(1000, 1.0), (2000, 2.0), (3010, 3.0)]).unwrap();
        assert!(hex(&c).ends_with("e8 07 c2 5f ff 80 0a d8 0c"), "{}", hex(&c));
        assert_eq!(c.len(), 21);
    }

    #[test]
    fn empty_chunk() {
        let c = encode(&[]).unwrap();
        assert_eq!(c, vec![0, 0]);
        assert!(decode(&c).unwrap().is_empty());
    }

    #[test]
    fn truncated_chunk_is_an_error_not_a_panic() {
        let c = encode(&[(1, 1.5), (7, 2.25), (100, -3.0)]).unwrap();
        for cut in 0..c.len() - 1 {
            let res = XorIter::new(&c[..cut]).and_then(|it| it.collect::<FormatResult<Vec<_>>>());
            assert!(res.is_err() || res.as_ref().unwrap().len() < 3, "cut {cut}");
        }
    }

    #[test]
    fn dod_bucket_edges_round_trip() {
        for dod in [8192i64, -8191, 8193, -8192, 65536, -65535, 65537, 524288, -524287, 524289, i64::MAX / 4] {
            let s = [(0i64, 0.0), (10, 1.0), (20 + dod, 2.0)];
            assert_eq!(decode(&encode(&s).unwrap()).unwrap(), s.to_vec(), "dod {dod}");
        }
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        let value = prop_oneof![
            any::<f64>(),
            (-1000i64..1000).prop_map(|x| x as f64),
            Just(f64::NAN),
            Just(f64::from_bits(0x7ff0000000000002)),
            Just(f64::INFINITY),
        ];
        (any::<i64>().prop_map(|t| t >> 8), proptest::collection::vec((prop_oneof![Just(0i64), 1i64..100_000, any::<i32>().prop_map(|x| x as i64)], value), 0..300)).prop_map(|(t0, steps)| {
            let mut t = t0;
            steps.into_iter().map(|(d, v)| {
                t = t.wrapping_add(d);
                (t, v)
            }).collect()
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trips(s in samples()) {
            let c = encode(&s).unwrap();
            let d = decode(&c).unwrap();
            prop_assert_eq!(d.len(), s.len());
            for (a, b) in d.iter().zip(&s) {
                prop_assert_eq!(a.0, b.0);
                prop_assert_eq!(a.1.to_bits(), b.1.to_bits());
            }
            // Decoding then encoding again is byte-identical.
            prop_assert_eq!(encode(&d).unwrap(), c);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(it) = XorIter::new(&b) {
                for s in it { if s.is_err() { break; } }
            }
        }
    }
}
