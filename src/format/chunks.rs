//! Chunk segment files (`chunks/000001`, ...) and chunk references.
//!
//! Owns: the segment header, the chunk record (`uvarint len | encoding | data | crc32c`),
//! [`ChunkRef`] packing, [`Encoding`] codes, and the cutting rule for 512 MiB segments.
//! Must not: decode chunk payloads (that is `xor`, `histogram`, `aggr`) or touch paths.
//! See `docs/format/chunks.md`.

use std::ops::Range;

use super::encoding::{crc32c, put_uvarint, read_uvarint, uvarint_len};
use crate::error::{FormatError, FormatResult};

pub const SEGMENT_MAGIC: u32 = 0x85BD_40DD;
pub const SEGMENT_VERSION: u8 = 1;
pub const SEGMENT_HEADER_LEN: usize = 8;
/// Prometheus's `DefaultChunkSegmentSize`.
pub const DEFAULT_SEGMENT_SIZE: u64 = 512 * 1024 * 1024;

/// A chunk's encoding byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Encoding {
    Xor = 1,
    Histogram = 2,
    FloatHistogram = 3,
    /// Thanos's downsampled aggregate chunk.
    Aggr = 0xff,
}

impl Encoding {
    pub fn from_byte(b: u8) -> Option<Encoding> {
        match b {
            1 => Some(Encoding::Xor),
            2 => Some(Encoding::Histogram),
            3 => Some(Encoding::FloatHistogram),
            0xff => Some(Encoding::Aggr),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Xor => "XOR",
            Encoding::Histogram => "histogram",
            Encoding::FloatHistogram => "float histogram",
            Encoding::Aggr => "aggregate",
        }
    }
}

/// Where a chunk lives: `segment` is the 0-based position of the file in the sorted
/// listing of `chunks/` (not the number in its name); `offset` is the byte offset of the
/// record's length field in that file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ChunkRef(pub u64);

impl ChunkRef {
    pub fn new(segment: u32, offset: u32) -> Self {
        ChunkRef((segment as u64) << 32 | offset as u64)
    }
    pub fn segment(self) -> u32 {
        (self.0 >> 32) as u32
    }
    pub fn offset(self) -> u32 {
        self.0 as u32
    }
}

impl std::fmt::Display for ChunkRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "segment {} offset {}", self.segment(), self.offset())
    }
}

/// A chunk's entry in the index: closed time range and location.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ChunkMeta {
    pub min_time: i64,
    pub max_time: i64,
    pub chunk_ref: ChunkRef,
}

/// One chunk as stored: encoding byte and payload, borrowed from the segment bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawChunk<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
    /// The whole record as stored (length, encoding, data, CRC), for copying it as is.
    pub record: &'a [u8],
}

impl RawChunk<'_> {
    pub fn encoding(&self) -> Option<Encoding> {
        Encoding::from_byte(self.encoding)
    }
    /// Bytes this chunk takes in a segment file.
    pub fn record_len(&self) -> usize {
        uvarint_len(self.data.len() as u64) + 1 + self.data.len() + 4
    }
}

/// Checks a segment file's 8-byte header.
pub fn check_segment_header(file: &[u8]) -> FormatResult<()> {
    if file.len() < SEGMENT_HEADER_LEN {
        return Err(FormatError::new(
            "chunk segment header",
            0,
            format!("file is {} bytes, shorter than the 8-byte header", file.len()),
        ));
    }
    let magic = u32::from_be_bytes([file[0], file[1], file[2], file[3]]);
    if magic != SEGMENT_MAGIC {
        return Err(FormatError::new(
            "chunk segment header",
            0,
            format!("magic {magic:#010x}, want {SEGMENT_MAGIC:#010x}"),
        ));
    }
    if file[4] != SEGMENT_VERSION {
        return Err(FormatError::new(
            "chunk segment header",
            4,
            format!("version {}, want {SEGMENT_VERSION}", file[4]),
        ));
    }
    Ok(())
}

/// Reads the chunk record at `offset` in a segment file, checking its bounds and CRC.
pub fn read_chunk(file: &[u8], offset: u32) -> FormatResult<RawChunk<'_>> {
    let off = offset as usize;
    let err = |o: usize, p: String| FormatError::new("chunk", o as u64, p);
    if off < SEGMENT_HEADER_LEN || off >= file.len() {
        return Err(err(off, format!("chunk offset {off} outside the segment (size {})", file.len())));
    }
    let (len, n) = read_uvarint(&file[off..]).ok_or_else(|| err(off, "malformed chunk length".into()))?;
    if n > 5 {
        return Err(err(off, format!("chunk length field takes {n} bytes, at most 5 allowed")));
    }
    let enc_at = off + n;
    let end = (enc_at as u64).saturating_add(1).saturating_add(len).saturating_add(4);
    if end > file.len() as u64 {
        return Err(err(off, format!("chunk of {len} bytes runs past the end of the segment (size {})", file.len())));
    }
    let data_end = enc_at + 1 + len as usize;
    let body = &file[enc_at..data_end];
    let stored = u32::from_be_bytes(file[data_end..data_end + 4].try_into().expect("4 bytes"));
    let actual = crc32c(body);
    if stored != actual {
        return Err(err(off, format!("chunk checksum mismatch: stored {stored:#010x}, computed {actual:#010x}")));
    }
    Ok(RawChunk { encoding: body[0], data: &body[1..], record: &file[off..data_end + 4] })
}

/// Iterates every chunk record of a segment file in order, with its offset. Used by
/// `verify`. Trailing zero bytes (a preallocated file that was not truncated) end it.
pub fn iter_segment(file: &[u8]) -> impl Iterator<Item = FormatResult<(u32, RawChunk<'_>)>> {
    let mut off = SEGMENT_HEADER_LEN;
    let mut done = check_segment_header(file).err().map(Err);
    std::iter::from_fn(move || {
        if let Some(e) = done.take() {
            off = usize::MAX;
            return Some(e);
        }
        if off >= file.len() || file[off..].iter().all(|&b| b == 0) {
            return None;
        }
        if off > u32::MAX as usize {
            return Some(Err(FormatError::new("chunk", off as u64, "segment file larger than 4 GiB")));
        }
        match read_chunk(file, off as u32) {
            Ok(c) => {
                let at = off as u32;
                off += c.record_len();
                Some(Ok((at, c)))
            }
            Err(e) => {
                off = usize::MAX;
                Some(Err(e))
            }
        }
    })
}

/// The segment header bytes.
pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..4].copy_from_slice(&SEGMENT_MAGIC.to_be_bytes());
    h[4] = SEGMENT_VERSION;
    h
}

/// Appends one chunk record to `out`.
pub fn write_chunk(out: &mut Vec<u8>, encoding: u8, data: &[u8]) {
    put_uvarint(out, data.len() as u64);
    out.push(encoding);
    out.extend_from_slice(data);
    out.extend_from_slice(&record_crc(encoding, data).to_be_bytes());
}

/// The CRC a record stores: over the encoding byte and the data.
pub fn record_crc(encoding: u8, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c(&[encoding]), data)
}

/// Room to leave in a buffer before a chunk's data that [`frame_in_place`] will frame:
/// the record's length (a uvarint of at most 5 bytes) and its encoding byte.
pub const RECORD_HEAD_ROOM: usize = 6;

/// Frames the data `buf[room + RECORD_HEAD_ROOM..]` (appended after `RECORD_HEAD_ROOM`
/// bytes of room at `room`) as a record where it lies: writes its length and encoding
/// just before it and appends the CRC, so an encoder can write a chunk straight into a
/// shared buffer. Unused room stays before the record. Returns the record's range and
/// the data's.
pub fn frame_in_place(buf: &mut Vec<u8>, room: usize, encoding: u8) -> (Range<usize>, Range<usize>) {
    let data = room + RECORD_HEAD_ROOM..buf.len();
    let mut head = [0u8; RECORD_HEAD_ROOM];
    let mut n = 0;
    let mut len = data.len() as u64;
    while len >= 0x80 {
        head[n] = len as u8 | 0x80;
        len >>= 7;
        n += 1;
    }
    head[n] = len as u8;
    head[n + 1] = encoding;
    let start = data.start - (n + 2);
    buf[start..data.start].copy_from_slice(&head[..n + 2]);
    let crc = record_crc(encoding, &buf[data.clone()]);
    buf.extend_from_slice(&crc.to_be_bytes());
    (start..buf.len(), data)
}

/// Size Prometheus budgets for a chunk when deciding to cut a new segment
/// (`MaxChunkLengthFieldSize + ChunkEncodingSize + len + crc`).
pub fn budget_len(data_len: usize) -> u64 {
    5 + 1 + data_len as u64 + 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_record_crc() {
        let data = [0x00, 0x03, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xe8, 0x07, 0x00];
        let mut out = segment_header().to_vec();
        write_chunk(&mut out, 1, &data);
        assert_eq!(out[8], 0x0f);
        assert_eq!(&out[out.len() - 4..], &0xd847c626u32.to_be_bytes());
        let c = read_chunk(&out, 8).unwrap();
        assert_eq!(c.data, &data);
        assert_eq!(c.encoding(), Some(Encoding::Xor));
    }

    #[test]
    fn ref_packing() {
        let r = ChunkRef::new(3, 77);
        assert_eq!((r.segment(), r.offset()), (3, 77));
        assert_eq!(r.0, 3 << 32 | 77);
    }

    #[test]
    fn flipped_byte_is_detected() {
        let mut out = segment_header().to_vec();
        write_chunk(&mut out, 1, &[0, 1, 2, 3, 4, 5]);
        for i in 8..out.len() {
            let mut bad = out.clone();
            bad[i] ^= 0x10;
            assert!(read_chunk(&bad, 8).is_err(), "flip at {i} went unnoticed");
        }
    }

    proptest! {
        #[test]
        fn framing_in_place_writes_the_record_write_chunk_writes(lead in 0usize..10, encoding in any::<u8>(), data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = vec![0xaa; lead];
            buf.resize(lead + RECORD_HEAD_ROOM, 0);
            buf.extend_from_slice(&data);
            let (record, at) = frame_in_place(&mut buf, lead, encoding);
            let mut want = Vec::new();
            write_chunk(&mut want, encoding, &data);
            prop_assert_eq!(&buf[record], want.as_slice());
            prop_assert_eq!(&buf[at], data.as_slice());
        }

        #[test]
        fn records_round_trip(chunks in proptest::collection::vec((1u8..4, proptest::collection::vec(any::<u8>(), 0..300)), 0..20)) {
            let mut out = segment_header().to_vec();
            let mut offs = Vec::new();
            for (e, d) in &chunks {
                offs.push(out.len() as u32);
                write_chunk(&mut out, *e, d);
            }
            let all: Vec<_> = iter_segment(&out).collect::<FormatResult<_>>().unwrap();
            prop_assert_eq!(all.len(), chunks.len());
            for ((off, c), ((e, d), o)) in all.iter().zip(chunks.iter().zip(&offs)) {
                prop_assert_eq!(off, o);
                prop_assert_eq!(c.encoding, *e);
                prop_assert_eq!(c.data, d.as_slice());
            }
        }

        #[test]
        fn arbitrary_segments_never_panic(b in proptest::collection::vec(any::<u8>(), 0..100), off: u32) {
            let _ = read_chunk(&b, off % 120);
            for c in iter_segment(&b) { if c.is_err() { break; } }
        }
    }
}
