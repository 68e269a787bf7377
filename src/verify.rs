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

use crate::block::{segment_names, CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE};
use crate::error::{FormatError, Result};
use crate::format::aggr::{self, AggrType};
use crate::format::chunks::{check_segment_header, iter_segment, read_chunk, Encoding};
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

/// Verifies one block directory.
pub fn verify_block(dir: &Path) -> Result<(Vec<Problem>, Counts)> {
    let mut r = Report { block: dir, problems: Vec::new() };
    let mut counts = Counts::default();

    let meta = match std::fs::read(dir.join(META_FILE)) {
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
    };

    // Segments: header, and every record's CRC, whether or not the index points at it.
    let chunks_dir = dir.join(CHUNKS_DIR);
    let mut segments: Vec<(String, FileBytes)> = Vec::new();
    // Chunk records found broken by the scan: (segment, offset) -> index into problems,
    // so the series pass can name the series instead of reporting the chunk twice.
    let mut broken: HashMap<(usize, u32), usize> = HashMap::new();
    match segment_names(&chunks_dir) {
        Ok(names) => {
            for name in names {
                let file = format!("{CHUNKS_DIR}/{name}");
                match FileBytes::open(&chunks_dir.join(&name)) {
                    Ok(bytes) => {
                        match check_segment_header(&bytes) {
                            Ok(()) => {
                                for rec in iter_segment(&bytes) {
                                    if let Err(e) = rec {
                                        broken.insert((segments.len(), e.offset as u32), r.problems.len());
                                        r.format(&file, &e);
                                        break;
                                    }
                                }
                            }
                            Err(e) => r.format(&file, &e),
                        }
                        segments.push((name, bytes));
                    }
                    Err(e) => r.add(&file, format!("cannot read: {e}")),
                }
            }
        }
        Err(e) => r.add(CHUNKS_DIR, format!("cannot list: {e}")),
    }

    let tombstones = match std::fs::read(dir.join(TOMBSTONES_FILE)) {
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
    };

    let index_bytes = match FileBytes::open(&dir.join(INDEX_FILE)) {
        Ok(b) => b,
        Err(e) => {
            r.add(INDEX_FILE, format!("cannot read: {e}"));
            return Ok((r.problems, counts));
        }
    };
    let index = match IndexReader::new(&index_bytes) {
        Ok(i) => i,
        Err(e) => {
            r.format(INDEX_FILE, &e);
            return Ok((r.problems, counts));
        }
    };
    index.check(|e| r.format(INDEX_FILE, &e));

    let (min_t, max_t) = meta.as_ref().map(|m| (m.min_time, m.max_time)).unwrap_or((i64::MIN, i64::MAX));
    let downsampled = meta.as_ref().is_some_and(|m| m.resolution() != 0);
    // A broken all-postings list was reported by `check` above.
    let ids: Vec<u32> = index.all_postings().map(|p| p.collect()).unwrap_or_default();
    let mut labels = Labels::new();
    let mut chunks = Vec::new();
    for &id in &ids {
        if index.series(id, &mut labels, &mut chunks).is_err() {
            continue; // already reported by index.check
        }
        counts.series += 1;
        for c in &chunks {
            counts.chunks += 1;
            let seg = c.chunk_ref.segment() as usize;
            let Some((name, bytes)) = segments.get(seg) else {
                r.add(
                    INDEX_FILE,
                    format!(
                        "series {labels}: chunk ref {} names segment {seg}, but the block has {} segment files",
                        c.chunk_ref,
                        segments.len()
                    ),
                );
                continue;
            };
            let file = format!("{CHUNKS_DIR}/{name}");
            let raw = match read_chunk(bytes, c.chunk_ref.offset()) {
                Ok(raw) => raw,
                Err(e) => {
                    let msg = format!("series {labels}: chunk {}: {}", c.chunk_ref, e.problem);
                    match broken.get(&(seg, c.chunk_ref.offset())) {
                        Some(&i) => r.problems[i].message = msg,
                        None => r.add(&file, msg),
                    }
                    continue;
                }
            };
            // Thanos's health check: a chunk may not start before minTime or end after
            // maxTime. (Samples at maxTime itself are outside the half-open range, but
            // Thanos accepts such blocks, so strata does too.)
            if c.min_time < min_t || c.max_time > max_t {
                r.add(
                    INDEX_FILE,
                    format!(
                        "series {labels}: chunk [{}, {}] lies outside the block's range [{min_t}, {max_t})",
                        c.min_time, c.max_time
                    ),
                );
            }
            // Decode and check times.
            let decoded = match Encoding::from_byte(raw.encoding) {
                Some(Encoding::Aggr) => {
                    if !downsampled {
                        r.add(&file, format!("series {labels}: chunk {}: aggregate chunk in a raw block", c.chunk_ref));
                    }
                    check_aggr(raw.data, c.min_time, c.max_time).map(|(n, ts, problems)| {
                        for p in problems {
                            r.add(&file, format!("series {labels}: chunk {}: {p}", c.chunk_ref));
                        }
                        (n, ts)
                    })
                }
                _ => {
                    if downsampled {
                        // Thanos's store gateway reads only aggregate chunks from such blocks.
                        r.add(&file, format!("series {labels}: chunk {}: chunk of encoding {} in a downsampled block (readers expect aggregate chunks)", c.chunk_ref, raw.encoding));
                    }
                    decode(raw.encoding, raw.data).map(|s| (s.len() as u64, s.timestamps()))
                }
            };
            match decoded {
                Ok((n, ts)) => {
                    counts.samples += n;
                    if ts.windows(2).any(|w| w[0] >= w[1]) && raw.encoding != Encoding::Aggr as u8 {
                        r.add(
                            &file,
                            format!("series {labels}: chunk {}: samples not in increasing time order", c.chunk_ref),
                        );
                    }
                    if raw.encoding != Encoding::Aggr as u8 {
                        if let (Some(&first), Some(&last)) = (ts.first(), ts.last()) {
                            if first != c.min_time || last != c.max_time {
                                r.add(
                                    INDEX_FILE,
                                    format!(
                                        "series {labels}: chunk {} spans [{first}, {last}] but the index says [{}, {}]",
                                        c.chunk_ref, c.min_time, c.max_time
                                    ),
                                );
                            }
                        } else {
                            r.add(&file, format!("series {labels}: chunk {} holds no samples", c.chunk_ref));
                        }
                    }
                }
                Err(e) => r.add(&file, format!("series {labels}: chunk {}: {e}", c.chunk_ref)),
            }
        }
    }
    for &s in tombstones.by_series.keys() {
        let ok =
            if index.version() == 2 { ids.binary_search(&(s as u32)).is_ok() && s <= u32::MAX as u64 } else { true };
        if !ok {
            r.add(TOMBSTONES_FILE, format!("tombstone for series ref {s}, which is not in the index"));
        }
    }

    if let Some(m) = &meta {
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
            let names: Vec<&String> = segments.iter().map(|(n, _)| n).collect();
            if !t.segment_files.is_empty() && t.segment_files.iter().collect::<Vec<_>>() != names {
                r.add(
                    META_FILE,
                    format!("thanos.segment_files {:?} differs from the files in chunks/ {:?}", t.segment_files, names),
                );
            }
        }
    }
    Ok((r.problems, counts))
}

/// Checks the slots of an aggregate chunk; returns the count slot's samples, its
/// timestamps, and the problems that do not stop decoding:
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
fn check_aggr(data: &[u8], mint: i64, maxt: i64) -> std::result::Result<(u64, Vec<i64>, Vec<String>), FormatError> {
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
    Ok((count.len() as u64, ts, problems))
}
