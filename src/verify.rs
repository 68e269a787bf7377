//! `strata verify`: every check a reader can make on a block, reported as a list of
//! problems instead of stopping at the first.
//!
//! Owns: the checks (meta.json, index CRCs and structure, sort orders, every chunk's
//! record and CRC, chunk refs, sample order and ranges, stats against the data,
//! tombstones). Never panics on any bytes: every decoder it calls returns errors.
//! Must not: repair or modify anything.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::block::{segment_names, CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE};
use crate::error::{FormatError, Result};
use crate::format::aggr::{self, AggrType};
use crate::format::chunks::{check_segment_header, iter_segment, read_chunk, ChunkMeta, Encoding};
use crate::format::index::IndexReader;
use crate::format::meta::BlockMeta;
use crate::format::sample::decode;
use crate::format::tombstones::Tombstones;
use crate::labels::Labels;
use crate::mmap::FileBytes;

/// One problem found in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The block directory.
    pub block: PathBuf,
    /// The file inside the block (`index`, `chunks/000001`, `meta.json`, ...).
    pub file: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.block.display(), self.file, self.message)
    }
}

struct Report<'a> {
    block: &'a Path,
    problems: Vec<Problem>,
    /// New messages for problems already in the block's report (by index): a broken
    /// chunk record found by the segment scan, named with its series by the series pass.
    renamed: Vec<(usize, String)>,
}

impl Report<'_> {
    fn add(&mut self, file: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            block: self.block.to_path_buf(),
            file: file.to_string(),
            message: message.into(),
        });
    }
    fn format(&mut self, file: &str, e: &FormatError) {
        self.add(file, e.to_string());
    }
}

/// What verification counted, for the caller's summary.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    pub series: u64,
    pub chunks: u64,
    pub samples: u64,
}

/// Series per parallel task of [`verify_block`].
const SERIES_PER_TASK: usize = 4096;

/// Verifies one block directory: `meta.json`, the chunk segments, the tombstones, the
/// index and every series' chunks, then the meta's stats against what was found.
pub fn verify_block(dir: &Path) -> Result<(Vec<Problem>, Counts)> {
    let mut r = Report { block: dir, problems: Vec::new(), renamed: Vec::new() };
    let mut counts = Counts::default();
    let meta = check_meta(&mut r, dir);
    let segments = check_segments(&mut r, dir);
    let tombstones = check_tombstones(&mut r, dir);
    let Some(index_bytes) = open_index(&mut r, dir) else { return Ok((r.problems, counts)) };
    let index = match IndexReader::new(&index_bytes) {
        Ok(i) => i,
        Err(e) => {
            r.format(INDEX_FILE, &e);
            return Ok((r.problems, counts));
        }
    };
    index.check(|e| r.format(INDEX_FILE, &e));
    // A broken all-postings list was reported by `check` above.
    let ids: Vec<u32> = index.all_postings().map(|p| p.collect()).unwrap_or_default();
    let block = BlockScope::of(meta.as_ref());
    // Series are checked in parallel, a few thousand per task; the problems keep the
    // index's series order.
    let pieces: Vec<(Report<'_>, Counts)> = ids
        .par_chunks(SERIES_PER_TASK)
        .map(|part| {
            let mut r = Report { block: dir, problems: Vec::new(), renamed: Vec::new() };
            let mut counts = Counts::default();
            let (mut labels, mut chunks, mut scratch) = (Labels::new(), Vec::new(), Vec::new());
            for &id in part {
                if index.series(id, &mut labels, &mut chunks).is_err() {
                    continue; // already reported by index.check
                }
                counts.series += 1;
                for c in &chunks {
                    counts.chunks += 1;
                    counts.samples += check_chunk(&mut r, &segments, &block, &labels, c, &mut scratch);
                }
            }
            (r, counts)
        })
        .collect();
    for (piece, c) in pieces {
        for (i, message) in piece.renamed {
            r.problems[i].message = message;
        }
        r.problems.extend(piece.problems);
        counts.series += c.series;
        counts.chunks += c.chunks;
        counts.samples += c.samples;
    }
    check_tombstone_refs(&mut r, &tombstones, index.version(), &ids);
    if let Some(m) = &meta {
        check_meta_against_data(&mut r, m, &counts, &segments);
    }
    Ok((r.problems, counts))
}

/// Reads and parses `meta.json`.
fn check_meta(r: &mut Report<'_>, dir: &Path) -> Option<BlockMeta> {
    match std::fs::read(dir.join(META_FILE)) {
        Ok(b) => match BlockMeta::parse(&b) {
            Ok(m) => Some(m),
            Err(e) => {
                r.format(META_FILE, &e);
                None
            }
        },
        Err(e) => {
            r.add(META_FILE, format!("cannot read: {e}"));
            None
        }
    }
}

/// The chunk segment files, opened, with the records the scan found broken.
struct Segments {
    /// Name and bytes of each segment file, in order.
    files: Vec<(String, FileBytes)>,
    /// Chunk records found broken by the scan: (segment, offset) -> index into problems,
    /// so the series pass can name the series instead of reporting the chunk twice.
    broken: HashMap<(usize, u32), usize>,
}

/// Opens every segment and checks its header and every record's CRC, whether or not the
/// index points at it.
fn check_segments(r: &mut Report<'_>, dir: &Path) -> Segments {
    let chunks_dir = dir.join(CHUNKS_DIR);
    let mut segments = Segments { files: Vec::new(), broken: HashMap::new() };
    let names = match segment_names(&chunks_dir) {
        Ok(names) => names,
        Err(e) => {
            r.add(CHUNKS_DIR, format!("cannot list: {e}"));
            return segments;
        }
    };
    // Each segment is scanned on its own thread (a compacted block has one per 512 MiB):
    // the scan reads every byte, from disk when the block was just written around the
    // page cache. Results are applied in segment order.
    enum Scan {
        Unreadable(String),
        BadHeader(FormatError),
        Read(Option<FormatError>),
    }
    let scanned: Vec<(String, Option<FileBytes>, Scan)> = names
        .into_par_iter()
        .map(|name| match FileBytes::open(&chunks_dir.join(&name)) {
            Err(e) => (name, None, Scan::Unreadable(e.to_string())),
            Ok(bytes) => {
                let scan = match check_segment_header(&bytes) {
                    Ok(()) => Scan::Read(iter_segment(&bytes).find_map(|rec| rec.err())),
                    Err(e) => Scan::BadHeader(e),
                };
                (name, Some(bytes), scan)
            }
        })
        .collect();
    for (name, bytes, scan) in scanned {
        let file = format!("{CHUNKS_DIR}/{name}");
        match scan {
            Scan::Unreadable(e) => r.add(&file, format!("cannot read: {e}")),
            Scan::BadHeader(e) => r.format(&file, &e),
            Scan::Read(Some(e)) => {
                segments.broken.insert((segments.files.len(), e.offset as u32), r.problems.len());
                r.format(&file, &e);
            }
            Scan::Read(None) => {}
        }
        if let Some(bytes) = bytes {
            segments.files.push((name, bytes));
        }
    }
    segments
}

/// Reads the tombstones file; a block without one has none.
fn check_tombstones(r: &mut Report<'_>, dir: &Path) -> Tombstones {
    match std::fs::read(dir.join(TOMBSTONES_FILE)) {
        Ok(b) => match Tombstones::read(&b) {
            Ok(t) => t,
            Err(e) => {
                r.format(TOMBSTONES_FILE, &e);
                Tombstones::default()
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tombstones::default(),
        Err(e) => {
            r.add(TOMBSTONES_FILE, format!("cannot read: {e}"));
            Tombstones::default()
        }
    }
}

fn open_index(r: &mut Report<'_>, dir: &Path) -> Option<FileBytes> {
    match FileBytes::open(&dir.join(INDEX_FILE)) {
        Ok(b) => Some(b),
        Err(e) => {
            r.add(INDEX_FILE, format!("cannot read: {e}"));
            None
        }
    }
}

/// What the chunk checks need of the block's meta: its time range and whether it is
/// downsampled. Without a readable meta, every range is accepted and the block is raw.
struct BlockScope {
    min_t: i64,
    max_t: i64,
    downsampled: bool,
}

impl BlockScope {
    fn of(meta: Option<&BlockMeta>) -> Self {
        let (min_t, max_t) = meta.map(|m| (m.min_time, m.max_time)).unwrap_or((i64::MIN, i64::MAX));
        BlockScope { min_t, max_t, downsampled: meta.is_some_and(|m| m.resolution() != 0) }
    }
}

/// Checks one chunk of a series: its ref, its record, its range against the block's and
/// its samples against the index. Returns the number of samples it holds.
fn check_chunk(
    r: &mut Report<'_>,
    segments: &Segments,
    block: &BlockScope,
    labels: &Labels,
    c: &ChunkMeta,
    scratch: &mut Vec<(i64, f64)>,
) -> u64 {
    let seg = c.chunk_ref.segment() as usize;
    let Some((name, bytes)) = segments.files.get(seg) else {
        r.add(
            INDEX_FILE,
            format!(
                "series {labels}: chunk ref {} names segment {seg}, but the block has {} segment files",
                c.chunk_ref,
                segments.files.len()
            ),
        );
        return 0;
    };
    let file = format!("{CHUNKS_DIR}/{name}");
    let raw = match read_chunk(bytes, c.chunk_ref.offset()) {
        Ok(raw) => raw,
        Err(e) => {
            let msg = format!("series {labels}: chunk {}: {}", c.chunk_ref, e.problem);
            match segments.broken.get(&(seg, c.chunk_ref.offset())) {
                Some(&i) => r.renamed.push((i, msg)),
                None => r.add(&file, msg),
            }
            return 0;
        }
    };
    // Thanos's health check: a chunk may not start before minTime or end after
    // maxTime. (Samples at maxTime itself are outside the half-open range, but
    // Thanos accepts such blocks, so strata does too.)
    let (min_t, max_t) = (block.min_t, block.max_t);
    if c.min_time < min_t || c.max_time > max_t {
        r.add(
            INDEX_FILE,
            format!(
                "series {labels}: chunk [{}, {}] lies outside the block's range [{min_t}, {max_t})",
                c.min_time, c.max_time
            ),
        );
    }
    let here = ChunkPlace { file: &file, labels, meta: c };
    check_samples(r, &here, raw.encoding, raw.data, block.downsampled, scratch)
}

/// Where a chunk is, for its problems.
struct ChunkPlace<'a> {
    /// The segment file, `chunks/NNNNNN`.
    file: &'a str,
    labels: &'a Labels,
    meta: &'a ChunkMeta,
}

/// Decodes a chunk and checks its samples' times against each other and the index.
/// Returns the number of samples. XOR chunks (nearly all of them) are decoded into
/// `scratch`, reused from chunk to chunk.
fn check_samples(
    r: &mut Report<'_>,
    at: &ChunkPlace<'_>,
    encoding: u8,
    data: &[u8],
    downsampled: bool,
    scratch: &mut Vec<(i64, f64)>,
) -> u64 {
    let (file, labels, c) = (at.file, at.labels, at.meta);
    if encoding == Encoding::Aggr as u8 {
        if !downsampled {
            r.add(file, format!("series {labels}: chunk {}: aggregate chunk in a raw block", c.chunk_ref));
        }
        return match check_aggr(data, c.min_time, c.max_time) {
            Ok((n, problems)) => {
                for p in problems {
                    r.add(file, format!("series {labels}: chunk {}: {p}", c.chunk_ref));
                }
                n
            }
            Err(e) => {
                r.add(file, format!("series {labels}: chunk {}: {e}", c.chunk_ref));
                0
            }
        };
    }
    if downsampled {
        // Thanos's store gateway reads only aggregate chunks from such blocks.
        r.add(file, format!("series {labels}: chunk {}: chunk of encoding {encoding} in a downsampled block (readers expect aggregate chunks)", c.chunk_ref));
    }
    let times = if encoding == Encoding::Xor as u8 {
        scratch.clear();
        crate::format::xor::decode_into(data, scratch).map(|()| Times::of(scratch.iter().map(|s| s.0)))
    } else {
        decode(encoding, data).map(|s| Times::of(s.timestamps().into_iter()))
    };
    let t = match times {
        Ok(t) => t,
        Err(e) => {
            r.add(file, format!("series {labels}: chunk {}: {e}", c.chunk_ref));
            return 0;
        }
    };
    if !t.increasing {
        r.add(file, format!("series {labels}: chunk {}: samples not in increasing time order", c.chunk_ref));
    }
    match t.span {
        Some((first, last)) if first != c.min_time || last != c.max_time => r.add(
            INDEX_FILE,
            format!(
                "series {labels}: chunk {} spans [{first}, {last}] but the index says [{}, {}]",
                c.chunk_ref, c.min_time, c.max_time
            ),
        ),
        Some(_) => {}
        None => r.add(file, format!("series {labels}: chunk {} holds no samples", c.chunk_ref)),
    }
    t.count
}

/// What the checks need of a chunk's timestamps.
struct Times {
    count: u64,
    /// First and last; `None` for no samples.
    span: Option<(i64, i64)>,
    /// Each strictly after the one before.
    increasing: bool,
}

impl Times {
    fn of(ts: impl Iterator<Item = i64>) -> Times {
        let mut t = Times { count: 0, span: None, increasing: true };
        for x in ts {
            t.count += 1;
            t.span = match t.span {
                None => Some((x, x)),
                Some((first, last)) => {
                    t.increasing &= x > last;
                    Some((first, x))
                }
            };
        }
        t
    }
}

/// Every tombstone must name a series of the index (v2 refs are 32-bit series ids; v1
/// refs are offsets, which are not checked).
fn check_tombstone_refs(r: &mut Report<'_>, tombstones: &Tombstones, index_version: u8, ids: &[u32]) {
    for &s in tombstones.by_series.keys() {
        let ok = if index_version == 2 { ids.binary_search(&(s as u32)).is_ok() && s <= u32::MAX as u64 } else { true };
        if !ok {
            r.add(TOMBSTONES_FILE, format!("tombstone for series ref {s}, which is not in the index"));
        }
    }
}

/// The meta's stats against what the block holds (only when nothing else is wrong, since
/// broken series cannot be counted), and Thanos's segment file list against `chunks/`.
fn check_meta_against_data(r: &mut Report<'_>, m: &BlockMeta, counts: &Counts, segments: &Segments) {
    let st = &m.stats;
    for (what, have, want) in [
        ("numSeries", st.num_series, counts.series),
        ("numChunks", st.num_chunks, counts.chunks),
        ("numSamples", st.num_samples, counts.samples),
    ] {
        if have != want && r.problems.is_empty() {
            r.add(META_FILE, format!("stats.{what} is {have} but the block holds {want}"));
        }
    }
    if let Some(t) = &m.thanos {
        let names: Vec<&String> = segments.files.iter().map(|(n, _)| n).collect();
        if !t.segment_files.is_empty() && t.segment_files.iter().collect::<Vec<_>>() != names {
            r.add(
                META_FILE,
                format!("thanos.segment_files {:?} differs from the files in chunks/ {:?}", t.segment_files, names),
            );
        }
    }
}

/// Checks the slots of an aggregate chunk; returns the count slot's sample count and the
/// problems that do not stop decoding:
/// - every slot decodes, and the count slot is set (it is the chunk's sample count);
/// - count timestamps strictly increase, lie within the index's `[mint, maxt]`, and count
///   values are whole numbers ≥ 0;
/// - sum, min and max, when set, share the count's timestamps (Thanos's querier averages
///   sum / count sample by sample and fails on misaligned slots);
/// - float aggregates have all five slots (Thanos's reader fails on a trailing unset
///   counter slot), and their counter slot starts with the first raw sample (at or before
///   `mint`) and ends with the last raw value repeated at the last timestamp;
/// - histogram aggregates (counter slot a float histogram chunk) have a float histogram
///   sum and no min or max.
fn check_aggr(data: &[u8], mint: i64, maxt: i64) -> std::result::Result<(u64, Vec<String>), FormatError> {
    use crate::format::sample::ChunkSamples;
    let slots = aggr::parse(data)?;
    let mut decoded: Vec<Option<ChunkSamples>> = Vec::with_capacity(5);
    for t in AggrType::ALL {
        match slots[t as usize] {
            Some(sub) => decoded.push(Some(decode(sub.encoding, sub.data).map_err(|mut e| {
                e.problem = format!("{} slot: {}", t.name(), e.problem);
                e
            })?)),
            None => decoded.push(None),
        }
    }
    let Some(ChunkSamples::Float(count)) = &decoded[AggrType::Count as usize] else {
        return Err(FormatError::new("aggregate chunk", 0, "count slot is not set or not an XOR chunk"));
    };
    let ts: Vec<i64> = count.iter().map(|s| s.0).collect();
    let mut problems = Vec::new();
    if ts.windows(2).any(|w| w[0] >= w[1]) {
        problems.push("count slot timestamps do not strictly increase".to_string());
    }
    if let (Some(&first), Some(&last)) = (ts.first(), ts.last()) {
        if first < mint || last > maxt {
            problems.push(format!("count slot spans [{first}, {last}] outside the index's [{mint}, {maxt}]"));
        }
    }
    if let Some(&(t, v)) = count.iter().find(|s| !(s.1 >= 0.0 && s.1.fract() == 0.0)) {
        problems.push(format!("count slot holds {v} at {t}, not a whole number of samples"));
    }
    let hist = slots[AggrType::Counter as usize]
        .is_some_and(|c| c.encoding == Encoding::FloatHistogram as u8 || c.encoding == Encoding::Histogram as u8);
    for t in [AggrType::Sum, AggrType::Min, AggrType::Max] {
        if let Some(s) = &decoded[t as usize] {
            if s.timestamps() != ts {
                problems.push(format!("{} slot timestamps differ from the count slot's", t.name()));
            }
        }
    }
    if hist {
        for t in [AggrType::Min, AggrType::Max] {
            if slots[t as usize].is_some() {
                problems.push(format!("histogram aggregate has a {} slot", t.name()));
            }
        }
        if !matches!(decoded[AggrType::Sum as usize], None | Some(ChunkSamples::FloatHistogram(_))) {
            problems.push("histogram aggregate's sum slot is not a float histogram chunk".to_string());
        }
    } else {
        if let Some(t) = AggrType::ALL.iter().find(|t| slots[**t as usize].is_none()) {
            problems.push(format!("float aggregate without a {} slot", t.name()));
        }
        match &decoded[AggrType::Counter as usize] {
            Some(ChunkSamples::Float(c)) => {
                let cts: Vec<i64> = c.iter().map(|s| s.0).collect();
                if cts.windows(2).any(|w| w[0] > w[1]) {
                    problems.push("counter slot timestamps go back in time".to_string());
                }
                if cts.len() < 2 || cts[cts.len() - 1] != cts[cts.len() - 2] {
                    problems
                        .push("counter slot does not end with the last raw value at a repeated timestamp".to_string());
                } else if cts[0] > mint {
                    problems.push(format!(
                        "counter slot starts at {}, after the chunk's mint {mint} (no first raw value)",
                        cts[0]
                    ));
                }
            }
            Some(_) => problems.push("counter slot is not an XOR chunk".to_string()),
            None => {}
        }
    }
    Ok((count.len() as u64, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::{BlockWriter, ChunkToWrite};
    use crate::format::xor;
    use crate::labels::Labels;
    use ulid::Ulid;

    /// A chunk's samples, and the min and max time the index is to say it has.
    type TestChunk = (Vec<(i64, f64)>, i64, i64);

    /// A one-series block whose chunks are `chunks`.
    fn block(dir: &Path, chunks: &[TestChunk]) -> PathBuf {
        let encoded: Vec<Vec<u8>> = chunks.iter().map(|(s, _, _)| xor::encode(s).unwrap()).collect();
        let labels = Labels::from_pairs([("__name__", "up")]);
        let mut w = BlockWriter::new(dir, Ulid::new(), ["__name__", "up"]).unwrap();
        let cw: Vec<ChunkToWrite<'_>> = chunks
            .iter()
            .zip(&encoded)
            .map(|((_, min_time, max_time), data)| ChunkToWrite {
                encoding: Encoding::Xor as u8,
                data,
                min_time: *min_time,
                max_time: *max_time,
                record: None,
            })
            .collect();
        w.add_series(&labels, &cw).unwrap();
        let ulid = w.ulid();
        w.finish(BlockMeta::new(ulid, 0, 10_000), None).unwrap().0
    }

    fn messages(dir: &Path) -> Vec<String> {
        verify_block(dir).unwrap().0.into_iter().map(|p| format!("{}: {}", p.file, p.message)).collect()
    }

    #[test]
    fn sample_times_are_checked_against_each_other_and_the_index() {
        let tmp = tempfile::tempdir().unwrap();
        let good = block(tmp.path(), &[(vec![(0, 1.0), (15, 2.0)], 0, 15), (vec![(30, 3.0)], 30, 30)]);
        assert_eq!(messages(&good), Vec::<String>::new());

        let tmp = tempfile::tempdir().unwrap();
        let unordered = block(tmp.path(), &[(vec![(0, 1.0), (15, 2.0), (15, 3.0)], 0, 15)]);
        let m = messages(&unordered);
        assert!(m.iter().any(|m| m.contains("samples not in increasing time order")), "{m:?}");

        let tmp = tempfile::tempdir().unwrap();
        let misplaced = block(tmp.path(), &[(vec![(0, 1.0), (15, 2.0)], 0, 20)]);
        let m = messages(&misplaced);
        assert!(
            m.iter().any(|m| m.starts_with("index: ") && m.contains("spans [0, 15] but the index says [0, 20]")),
            "{m:?}"
        );
    }

    #[test]
    fn times_of_counts_spans_and_orders() {
        let t = Times::of([5, 7, 9].into_iter());
        assert_eq!((t.count, t.span, t.increasing), (3, Some((5, 9)), true));
        let t = Times::of([5, 5].into_iter());
        assert_eq!((t.count, t.span, t.increasing), (2, Some((5, 5)), false));
        let t = Times::of(std::iter::empty());
        assert_eq!((t.count, t.span, t.increasing), (0, None, true));
    }
}
