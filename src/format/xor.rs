//! XOR float chunks (chunk encoding 1): Gorilla-style delta-of-delta timestamps and
//! XOR-compressed values, bit for bit as Prometheus writes them.
//!
//! Owns: [`XorEncoder`] (samples → chunk bytes, one at a time, byte-identical to
//! Prometheus's appender) and [`encode_into`] (a whole chunk at once, same bytes, the
//! merge's hot path); [`XorIter`] and [`decode_into`] (chunk bytes → samples, streaming
//! or whole, never panicking on bad bytes); the value XOR scheme ([`XorState`]) that
//! histogram chunks reuse.
//! Must not: know about segment files or CRCs. See `docs/format/chunks.md` ("XOR").

use super::bstream::{BitReader, BitSink, BitWriter, Pending};
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
    /// Writes `new` as the XOR against `prev`. Control bits and payload go out in as few
    /// writes as fit in 64 bits, with Prometheus's byte layout.
    #[inline(always)]
    pub fn write<W: BitSink>(&mut self, w: &mut W, new: u64, prev: u64) {
        let delta = new ^ prev;
        if delta == 0 {
            w.put(0, 1, 1);
            return;
        }
        let lead = (delta.leading_zeros() as u8).min(31);
        let trail = delta.trailing_zeros() as u8;
        if self.leading != 0xff && lead >= self.leading && trail >= self.trailing {
            // '10' then the bits inside the current window.
            let sig = 64 - self.leading as u32 - self.trailing as u32;
            let payload = delta >> self.trailing;
            if sig <= 62 {
                w.put(0b10 << sig | payload, 2 + sig, sig);
            } else {
                w.put(0b10, 2, 2);
                w.put(payload, sig, sig);
            }
            return;
        }
        self.leading = lead;
        self.trailing = trail;
        let sig = 64 - lead as u32 - trail as u32;
        // '11', 5 bits of leading zeros, 6 bits of significant bits (64 written as 0).
        let head = 0b11 << 11 | (lead as u64) << 6 | (sig as u64 & 0x3f);
        let payload = delta >> trail;
        if sig <= 51 {
            w.put(head << sig | payload, 13 + sig, sig);
        } else {
            w.put(head, 13, 6);
            w.put(payload, sig, sig);
        }
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
                return Err(FormatError::new(
                    "XOR value",
                    r.bit_position() / 8,
                    format!("leading zeros {lead} plus significant bits {sig} exceed 64"),
                ));
            }
            self.leading = lead;
            self.trailing = 64 - lead - sig;
        } else if self.leading == 0xff {
            return Err(FormatError::new(
                "XOR value",
                r.bit_position() / 8,
                "value reuses a window before any was set",
            ));
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
        XorEncoder {
            w: BitWriter::with_prefix(&[0, 0], 256),
            num: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            state: XorState::default(),
        }
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

    /// Appends the finished chunk to `out` and starts a new, empty chunk, keeping the
    /// encoder's allocation.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        self.w.append_to(out);
        self.w.reset(&[0, 0]);
        self.num = 0;
        self.t = 0;
        self.t_delta = 0;
        self.v = 0;
        self.state = XorState::default();
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
    // Prefix and payload in one write. What the trailing-byte state is after the
    // timestamp does not matter: a value write always follows.
    if dod == 0 {
        w.write_bit(false);
    } else if bit_range(dod, 14) {
        w.write_bits(0b10 << 14 | (dod as u64 & 0x3fff), 16);
    } else if bit_range(dod, 17) {
        w.write_bits(0b110 << 17 | (dod as u64 & 0x1ffff), 20);
    } else if bit_range(dod, 20) {
        w.write_bits(0b1110 << 20 | (dod as u64 & 0xfffff), 24);
    } else {
        w.write_bits(0b1111, 4);
        w.write_bits(dod as u64, 64);
    }
}

/// Encodes samples into one chunk.
pub fn encode(samples: &[(i64, f64)]) -> Result<Vec<u8>, ChunkFull> {
    let mut out = Vec::new();
    encode_into(samples, &mut out)?;
    Ok(out)
}

/// Bits on their way into a byte vector, the [`Pending`] register held in locals for
/// the length of one [`encode_into`] call, so it stays in a CPU register.
struct FastBits<'o> {
    out: &'o mut Vec<u8>,
    pending: Pending,
}

impl BitSink for FastBits<'_> {
    #[inline(always)]
    fn put(&mut self, u: u64, nbits: u32, last_op_bits: u32) {
        self.pending.put(self.out, u, nbits, last_op_bits)
    }
}

impl FastBits<'_> {
    /// A Go uvarint, one whole-byte write per byte as Prometheus writes it.
    fn put_uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.put((x as u8 | 0x80) as u64, 8, 8);
            x >>= 7;
        }
        self.put(x, 8, 8);
    }

    fn finish(self) {
        self.pending.flush(self.out);
    }
}

/// Encodes `samples` as one chunk appended to `out`: the same bytes as feeding them to
/// an [`XorEncoder`], without its per-sample bookkeeping (the merge's hot path).
/// Fails, writing nothing, when there are more than [`MAX_SAMPLES`].
pub fn encode_into(samples: &[(i64, f64)], out: &mut Vec<u8>) -> Result<(), ChunkFull> {
    if samples.len() > MAX_SAMPLES {
        return Err(ChunkFull);
    }
    // Room for a typical chunk (at most 8 bytes a sample); the rare wider one grows
    // `out` as it goes. Reserving the worst case (19 bytes a sample) would make a
    // caller's shared buffer reallocate far more often than its contents need.
    out.reserve(2 + 20 + samples.len() * 8);
    out.extend_from_slice(&(samples.len() as u16).to_be_bytes());
    let Some((&(t0, v0), rest)) = samples.split_first() else { return Ok(()) };
    let mut w = FastBits { out, pending: Pending::default() };
    w.put_uvarint(super::encoding::zigzag(t0));
    let v0 = v0.to_bits();
    w.put(v0, 64, 64);
    let Some((&(t1, v1), rest)) = rest.split_first() else {
        w.finish();
        return Ok(());
    };
    let mut t_delta = t1.wrapping_sub(t0) as u64;
    w.put_uvarint(t_delta);
    let mut state = XorState::default();
    let mut v = v1.to_bits();
    state.write(&mut w, v, v0);
    let mut t = t1;
    for &(ts, val_f) in rest {
        let d = ts.wrapping_sub(t) as u64;
        let dod = d.wrapping_sub(t_delta) as i64;
        t = ts;
        t_delta = d;
        if dod == 0 {
            w.put(0, 1, 1);
        } else if bit_range(dod, 14) {
            w.put(0b10 << 14 | (dod as u64 & 0x3fff), 16, 16);
        } else if bit_range(dod, 17) {
            w.put(0b110 << 17 | (dod as u64 & 0x1ffff), 20, 20);
        } else if bit_range(dod, 20) {
            w.put(0b1110 << 20 | (dod as u64 & 0xfffff), 24, 24);
        } else {
            w.put(0b1111, 4, 4);
            w.put(dod as u64, 64, 64);
        }
        let vb = val_f.to_bits();
        state.write(&mut w, vb, v);
        v = vb;
    }
    w.finish();
    Ok(())
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
        Ok(XorIter {
            r: BitReader::new(&data[2..], 2, "XOR chunk"),
            total,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            state: XorState::default(),
            failed: false,
        })
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
    let mut out = Vec::new();
    decode_into(data, &mut out)?;
    Ok(out)
}

/// 64 bits of `data` starting at bit `pos`, MSB first; bytes past the end read as zero.
/// At least the first 57 bits are the stream's (a load is byte-aligned and shifted).
#[inline(always)]
fn bits_at(data: &[u8], pos: usize) -> u64 {
    let at = pos >> 3;
    let word = match data.get(at..at + 8) {
        Some(b) => u64::from_be_bytes(b.try_into().expect("8 bytes")),
        None => tail_word(data, at),
    };
    word << (pos & 7)
}

/// The word at byte `at` when fewer than 8 bytes are left, zero-padded.
#[cold]
fn tail_word(data: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if at < data.len() {
        let n = data.len() - at;
        b[..n].copy_from_slice(&data[at..]);
    }
    u64::from_be_bytes(b)
}

/// `n` (1..=64) bits at bit `pos`.
#[inline(always)]
fn read_bits_at(data: &[u8], pos: usize, n: u32) -> u64 {
    if n <= 57 {
        bits_at(data, pos) >> (64 - n)
    } else {
        let hi = bits_at(data, pos) >> 32;
        let lo = bits_at(data, pos + 32) >> (96 - n);
        hi << (n - 32) | lo
    }
}

/// A uvarint at byte-aligned or unaligned bit `pos`; `None` when longer than 10 bytes
/// or overflowing.
fn uvarint_at(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut x = 0u64;
    for i in 0..10 {
        let b = (bits_at(data, *pos) >> 56) as u8;
        *pos += 8;
        if b < 0x80 {
            if i == 9 && b > 1 {
                return None;
            }
            return Some(x | (b as u64) << (7 * i));
        }
        x |= ((b & 0x7f) as u64) << (7 * i);
    }
    None
}

/// Decodes every sample of a chunk, appending to `out`; faster than [`XorIter`]: each
/// field is read with one word load at its bit position and no other state than that
/// position. On error `out` may hold a prefix.
pub fn decode_into(data: &[u8], out: &mut Vec<(i64, f64)>) -> FormatResult<()> {
    let total = num_samples(data)?;
    let body = &data[2..];
    let limit = body.len() * 8;
    let past_end = |what: &str, pos: usize| {
        FormatError::new("XOR chunk", 2 + (pos / 8) as u64, format!("bit stream ends while reading {what}"))
    };
    if total == 0 {
        return Ok(());
    }
    out.reserve(total);
    let mut pos = 0usize;
    let u = uvarint_at(body, &mut pos).ok_or_else(|| past_end("first timestamp", pos))?;
    let mut t = super::encoding::unzigzag(u);
    let mut v = read_bits_at(body, pos, 64);
    pos += 64;
    if pos > limit {
        return Err(past_end("a sample", limit));
    }
    out.push((t, f64::from_bits(v)));
    if total == 1 {
        return Ok(());
    }
    let mut t_delta = uvarint_at(body, &mut pos).ok_or_else(|| past_end("second timestamp delta", pos))?;
    t = t.wrapping_add(t_delta as i64);
    let (mut leading, mut trailing, mut sig) = (0xffu32, 0u32, 0u32);
    for n in 1..total {
        // One load per sample where the fields fit (a load has at least 57 valid bits):
        // `r` holds the upcoming bits, `avail` how many of them are real.
        let mut r = bits_at(body, pos);
        let mut avail = 64 - (pos & 7) as u32;
        if n > 1 {
            // Delta-of-delta: '0', or up to four prefix bits and a 14/17/20/64-bit payload.
            if (r as i64) >= 0 {
                r <<= 1;
                avail -= 1;
                pos += 1;
            } else {
                let ones = (!r).leading_zeros();
                let dod = if ones < 4 {
                    let sz = 11 + 3 * ones; // 14, 17, 20
                    let prefix = ones + 1;
                    let mut u = ((r << prefix) >> (64 - sz)) as i64;
                    if u > 1 << (sz - 1) {
                        u -= 1 << sz;
                    }
                    r <<= prefix + sz;
                    avail -= prefix + sz;
                    pos += (prefix + sz) as usize;
                    u
                } else {
                    let u = read_bits_at(body, pos + 4, 64) as i64;
                    pos += 68;
                    r = bits_at(body, pos);
                    avail = 64 - (pos & 7) as u32;
                    u
                };
                t_delta = t_delta.wrapping_add(dod as u64);
            }
            t = t.wrapping_add(t_delta as i64);
        }
        // Value: '0' same; '10' reuse the window; '11' new window (5 + 6 bits). At
        // least 33 bits are left in `r`, enough for the control bits and the header.
        debug_assert!(avail >= 13);
        if (r as i64) < 0 {
            // Reuse or new window: which one comes is data, not pattern, so both are
            // computed and one is selected; only malformed input branches.
            let fresh = r & 1 << 62 != 0;
            let lead = (r >> 57) as u32 & 31;
            let mut s = (r >> 51) as u32 & 63;
            if s == 0 {
                s = 64;
            }
            if fresh && lead + s > 64 {
                return Err(FormatError::new(
                    "XOR value",
                    2 + ((pos + 13) / 8) as u64,
                    format!("leading zeros {lead} plus significant bits {s} exceed 64"),
                ));
            }
            if !fresh && leading == 0xff {
                return Err(FormatError::new(
                    "XOR value",
                    2 + ((pos + 2) / 8) as u64,
                    "value reuses a window before any was set",
                ));
            }
            if fresh {
                leading = lead;
                sig = s;
                trailing = 64 - lead - s;
            }
            let head = if fresh { 13 } else { 2 };
            let bits = if head + sig <= avail {
                (r << head) >> (64 - sig)
            } else {
                read_bits_at(body, pos + head as usize, sig)
            };
            pos += (head + sig) as usize;
            v ^= bits << trailing;
        } else {
            pos += 1;
        }
        if pos > limit {
            return Err(past_end("a sample", limit));
        }
        out.push((t, f64::from_bits(v)));
    }
    Ok(())
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

    fn bits(r: &FormatResult<Vec<(i64, f64)>>) -> Option<Vec<(i64, u64)>> {
        r.as_ref().ok().map(|v| v.iter().map(|&(t, x)| (t, x.to_bits())).collect())
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        let value = prop_oneof![
            any::<f64>(),
            (-1000i64..1000).prop_map(|x| x as f64),
            Just(f64::NAN),
            Just(f64::from_bits(0x7ff0000000000002)),
            Just(f64::INFINITY),
        ];
        (
            any::<i64>().prop_map(|t| t >> 8),
            proptest::collection::vec(
                (prop_oneof![Just(0i64), 1i64..100_000, any::<i32>().prop_map(|x| x as i64)], value),
                0..300,
            ),
        )
            .prop_map(|(t0, steps)| {
                let mut t = t0;
                steps
                    .into_iter()
                    .map(|(d, v)| {
                        t = t.wrapping_add(d);
                        (t, v)
                    })
                    .collect()
            })
    }

    /// Prometheus's XOR appender, one bit-stream operation per Go call (writeBit,
    /// writeBits, writeByte), to check the combined writes against.
    fn reference_encode(samples: &[(i64, f64)]) -> Vec<u8> {
        let mut w = BitWriter::with_prefix(&[0, 0], 64);
        let (mut t, mut td, mut v) = (0i64, 0u64, 0u64);
        let (mut lead, mut trail) = (0xffu8, 0u8);
        for (n, &(ts, val)) in samples.iter().enumerate() {
            let vb = val.to_bits();
            let mut tmp = Vec::new();
            if n == 0 {
                put_varint(&mut tmp, ts);
                tmp.iter().for_each(|&b| w.write_byte(b));
                w.write_bits(vb, 64);
            } else {
                if n == 1 {
                    td = ts.wrapping_sub(t) as u64;
                    put_uvarint(&mut tmp, td);
                    tmp.iter().for_each(|&b| w.write_byte(b));
                } else {
                    let d = ts.wrapping_sub(t) as u64;
                    let dod = d.wrapping_sub(td) as i64;
                    td = d;
                    if dod == 0 {
                        w.write_bit(false);
                    } else if bit_range(dod, 14) {
                        w.write_bits(0b10, 2);
                        w.write_bits(dod as u64, 14);
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
                let delta = vb ^ v;
                if delta == 0 {
                    w.write_bit(false);
                } else {
                    w.write_bit(true);
                    let l = (delta.leading_zeros() as u8).min(31);
                    let tr = delta.trailing_zeros() as u8;
                    if lead != 0xff && l >= lead && tr >= trail {
                        w.write_bit(false);
                        w.write_bits(delta >> trail, 64 - lead as u32 - trail as u32);
                    } else {
                        lead = l;
                        trail = tr;
                        w.write_bit(true);
                        w.write_bits(l as u64, 5);
                        let sig = 64 - l as u32 - tr as u32;
                        w.write_bits(sig as u64, 6);
                        w.write_bits(delta >> tr, sig);
                    }
                }
            }
            t = ts;
            v = vb;
        }
        let mut out = w.into_bytes();
        out[..2].copy_from_slice(&(samples.len() as u16).to_be_bytes());
        out
    }

    proptest! {
        #[test]
        fn encoder_matches_prometheus_operation_by_operation(s in samples()) {
            prop_assert_eq!(encode(&s).unwrap(), reference_encode(&s));
        }

        #[test]
        /// `XorEncoder` (sample by sample, reused) and `encode_into` (whole chunks) write
        /// the same bytes.
        fn reused_encoder_matches_a_fresh_one(a in samples(), b in samples()) {
            let mut e = XorEncoder::new();
            let mut out = Vec::new();
            for &(t, v) in &a { e.append(t, v).unwrap(); }
            e.finish_into(&mut out);
            let split = out.len();
            for &(t, v) in &b { e.append(t, v).unwrap(); }
            e.finish_into(&mut out);
            let (ea, eb) = (encode(&a).unwrap(), encode(&b).unwrap());
            prop_assert_eq!(&out[..split], ea.as_slice());
            prop_assert_eq!(&out[split..], eb.as_slice());
        }

        #[test]
        /// `encode_into` appends after what `out` holds (the merge's shared arena) and
        /// leaves no spare bytes behind.
        fn encode_into_appends_exactly_the_chunk(prefix in proptest::collection::vec(any::<u8>(), 0..300), s in samples()) {
            let mut out = prefix.clone();
            encode_into(&s, &mut out).unwrap();
            prop_assert_eq!(&out[..prefix.len()], prefix.as_slice());
            let want = reference_encode(&s);
            prop_assert_eq!(&out[prefix.len()..], want.as_slice());
        }

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

        #[test]
        fn fast_decoder_agrees_with_the_iterator(s in samples(), cut in any::<prop::sample::Index>(), flip in any::<(prop::sample::Index, u8)>()) {
            let c = encode(&s).unwrap();
            let slow: FormatResult<Vec<_>> = XorIter::new(&c).and_then(|it| it.collect());
            prop_assert_eq!(bits(&decode(&c)), bits(&slow));
            // Truncated and damaged chunks: both fail, or both give the same samples.
            let short = &c[..cut.index(c.len() + 1)];
            let slow: FormatResult<Vec<_>> = XorIter::new(short).and_then(|it| it.collect());
            prop_assert_eq!(decode(short).is_ok(), slow.is_ok());
            if let Ok(v) = slow { prop_assert_eq!(bits(&decode(short)), bits(&Ok(v))); }
            let mut bad = c.clone();
            if bad.len() > 2 {
                let i = 2 + flip.0.index(bad.len() - 2);
                bad[i] ^= flip.1 | 1;
            }
            let slow: FormatResult<Vec<_>> = XorIter::new(&bad).and_then(|it| it.collect());
            prop_assert_eq!(decode(&bad).is_ok(), slow.is_ok());
            if let Ok(v) = slow { prop_assert_eq!(bits(&decode(&bad)), bits(&Ok(v))); }
        }
    }
}
