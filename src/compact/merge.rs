//! The merge executor: N source blocks in, one block out.
//!
//! Owns: the k-way merge of series across sources in label order; per series, copying
//! chunks that overlap nothing as bytes (never decoded), dropping byte-identical
//! duplicate chunks, merging overlapping chunks sample by sample (one-to-one or penalty)
//! and re-encoding them into chunks of at most 120 samples; trimming chunks that stick
//! out of their block's range or are hit by tombstones. Series are processed in batches
//! in parallel (rayon) while a writer thread writes the previous batch, so memory is
//! bounded by a batch of series plus the output index's postings.
//! Must not: decide which blocks to merge (the planner) or delete anything.

use std::borrow::Cow;
use std::collections::BinaryHeap;
use std::cmp::Reverse;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;
use ulid::Ulid;

use super::dedup::{merge as merge_samples, merge_into, DedupFunc};
use crate::block::{Block, BlockWriter, ChunkToWrite};
use crate::error::{AtPath, Error, Result};
use crate::format::chunks::{ChunkMeta, Encoding, DEFAULT_SEGMENT_SIZE};
use crate::format::histogram::{encode_float_histograms, encode_histograms, FloatHistogram, Histogram};
use crate::format::index::{IndexReader, Postings, SeriesRefs};
use crate::format::meta::BlockMeta;
use crate::format::sample::{decode, Value};
use crate::format::tombstones::Tombstones;
use crate::labels::LabelPairs;

/// Samples per re-encoded chunk, as Prometheus's compactor cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Knobs of one merge.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    pub dedup: DedupFunc,
    /// Series per batch handed to the worker threads.
    pub batch_series: usize,
    /// Chunks per batch (a batch ends at whichever limit comes first), so memory does not
    /// grow with the number of samples per series.
    pub batch_chunks: usize,
    pub segment_size: u64,
    /// Write an (empty) tombstones file, as Prometheus does. Thanos output has none.
    pub write_tombstones: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions { dedup: DedupFunc::OneToOne, batch_series: 2048, batch_chunks: 16_384, segment_size: DEFAULT_SEGMENT_SIZE, write_tombstones: true }
    }
}

/// Progress of a merge, reported after each written batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct MergeProgress {
    pub series: u64,
    pub chunks: u64,
    pub bytes: u64,
}

/// A chunk of the output: copied bytes (borrowed from a source's map) or new bytes.
#[derive(Clone, Debug)]
pub struct OutChunk<'a> {
    pub encoding: u8,
    pub data: Cow<'a, [u8]>,
    pub min_time: i64,
    pub max_time: i64,
}

/// Where an output chunk's bytes are.
enum Bytes<'a> {
    /// Copied from a source block's segment file.
    Source(&'a [u8]),
    /// Re-encoded, in the series' `arena`.
    Arena(usize, usize),
    Owned(Vec<u8>),
}

struct OutRef<'a> {
    encoding: u8,
    data: Bytes<'a>,
    min_time: i64,
    max_time: i64,
}

/// One merged series: its labels, its chunks, and one buffer holding every chunk it
/// re-encoded (a single allocation per series rather than one per chunk).
struct SeriesOut<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    chunks: Vec<OutRef<'a>>,
    arena: Vec<u8>,
}

/// A source's next series: labels borrowed from its index, chunk metas.
struct Pending<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    src: usize,
    id: u32,
    chunks: Vec<ChunkMeta>,
}

impl PartialEq for Pending<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.labels == o.labels && self.src == o.src
    }
}
impl Eq for Pending<'_> {}
impl PartialOrd for Pending<'_> {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending<'_> {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.labels.cmp(&o.labels).then(self.src.cmp(&o.src))
    }
}

/// Reads source `i`'s next series, if any.
fn next_pending<'a>(srcs: &[Source<'a>], postings: &mut [Postings<'a>], refs: &mut SeriesRefs, i: usize) -> Result<Option<Pending<'a>>> {
    let Some(id) = postings[i].next() else { return Ok(None) };
    let mut labels = Vec::with_capacity(refs.labels.len().max(8));
    srcs[i].index.series_borrowed(id, refs, &mut labels).at(&srcs[i].block.index_path())?;
    Ok(Some(Pending { labels, src: i, id, chunks: std::mem::take(&mut refs.chunks) }))
}

/// One source block prepared for merging.
struct Source<'a> {
    block: &'a Block,
    index: IndexReader<'a>,
}

/// Merges `sources` into a new block `ulid` under `parent` with `meta` (time range,
/// compaction and thanos sections already set; stats are filled in). Returns `None`
/// when nothing is left (every series deleted).
pub fn merge_blocks(sources: &[&Block], parent: &Path, ulid: Ulid, meta: BlockMeta, opts: &MergeOptions, progress: &(dyn Fn(MergeProgress) + Sync)) -> Result<Option<(PathBuf, BlockMeta)>> {
    let srcs: Vec<Source<'_>> = sources.iter().map(|b| Ok(Source { block: b, index: b.index()? })).collect::<Result<_>>()?;

    // The output's symbols: every source's symbols (a superset of what survives).
    // Each table is sorted already, so they are merged rather than sorted together.
    let mut symbols: Vec<&[u8]> = Vec::new();
    for s in &srcs {
        let mut table: Vec<&[u8]> = Vec::new();
        for sym in s.index.symbols() {
            table.push(sym.at(&s.block.index_path())?);
        }
        symbols = merge_sorted_unique(symbols, table);
    }
    let mut writer = BlockWriter::with_segment_size(parent, ulid, &symbols, opts.segment_size)?;
    drop(symbols);

    // Per-source series, merged by label set through a heap that owns each source's
    // next series (labels borrowed from the mapped index, nothing copied).
    let mut postings = Vec::with_capacity(srcs.len());
    for s in &srcs {
        postings.push(s.index.all_postings().at(&s.block.index_path())?);
    }
    let mut heap: BinaryHeap<Reverse<Pending<'_>>> = BinaryHeap::new();
    let mut refs = SeriesRefs::default();
    for i in 0..srcs.len() {
        if let Some(p) = next_pending(&srcs, &mut postings, &mut refs, i)? {
            heap.push(Reverse(p));
        }
    }

    let batch = opts.batch_series.max(1);
    let batch_chunks = opts.batch_chunks.max(1);
    let dedup = opts.dedup;
    let result: Result<(u64, bool)> = std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<Vec<SeriesOut<'_>>>(1);
        let writer_ref = &mut writer;
        let handle = scope.spawn(move || -> Result<u64> {
            let mut done = MergeProgress::default();
            let mut written = 0u64;
            for outs in rx {
                for s in outs {
                    let chunks: Vec<ChunkToWrite<'_>> = s
                        .chunks
                        .iter()
                        .map(|c| {
                            let data: &[u8] = match &c.data {
                                Bytes::Source(b) => b,
                                Bytes::Arena(a, b) => &s.arena[*a..*b],
                                Bytes::Owned(v) => v,
                            };
                            ChunkToWrite { encoding: c.encoding, data, min_time: c.min_time, max_time: c.max_time }
                        })
                        .collect();
                    if writer_ref.add_series(&s.labels, &chunks)?.is_some() {
                        written += 1;
                        done.chunks += chunks.len() as u64;
                        done.bytes += chunks.iter().map(|c| c.data.len() as u64).sum::<u64>();
                    }
                    done.series += 1;
                }
                progress(done);
            }
            Ok(written)
        });

        // Gathering series (heap, index decoding) runs on its own thread, a batch ahead
        // of the workers, so it overlaps the parallel merge.
        let (gtx, grx) = sync_channel::<Vec<Vec<Pending<'_>>>>(1);
        let srcs_ref = &srcs;
        let gatherer = scope.spawn(move || -> Result<()> {
            loop {
                let mut group: Vec<Vec<Pending<'_>>> = Vec::with_capacity(batch);
                let mut chunks = 0usize;
                while group.len() < batch && chunks < batch_chunks {
                    let Some(Reverse(first)) = heap.pop() else { break };
                    let mut parts = vec![first];
                    while heap.peek().is_some_and(|Reverse(p)| p.labels == parts[0].labels) {
                        parts.push(heap.pop().expect("peeked").0);
                    }
                    for p in &parts {
                        if let Some(next) = next_pending(srcs_ref, &mut postings, &mut refs, p.src)? {
                            if next.labels.cmp_pairs(&p.labels).is_le() {
                                return Err(Error::BadSeries { path: srcs_ref[p.src].block.index_path(), series: next.labels.to_label_string(), problem: format!("series out of order (after {})", p.labels.to_label_string()) });
                            }
                            heap.push(Reverse(next));
                        }
                    }
                    chunks += parts.iter().map(|p| p.chunks.len()).sum::<usize>();
                    group.push(parts);
                }
                if group.is_empty() || gtx.send(group).is_err() {
                    return Ok(());
                }
            }
        });
        let process = || -> Result<()> {
            for group in grx.iter() {
                let outs: Vec<SeriesOut<'_>> = group.into_par_iter().map_init(Scratch::default, |scratch, parts| merge_series(&srcs, parts, dedup, scratch)).collect::<Result<Vec<_>>>()?;
                if tx.send(outs).is_err() {
                    return Ok(()); // the writer stopped; its error is reported below
                }
            }
            Ok(())
        };
        let processed = process();
        drop(grx);
        drop(tx);
        let gathered = gatherer.join().expect("gathering thread panicked");
        let written = handle.join().expect("writer thread panicked");
        // The first failure in pipeline order: reading, merging, writing.
        gathered?;
        processed?;
        let written = written?;
        Ok((written, false))
    });
    let (written, _) = result?;
    if written == 0 {
        // Dropping the writer removes its temporary directory.
        return Ok(None);
    }
    let tombstones = Tombstones::default();
    let out = writer.finish(meta, if opts.write_tombstones { Some(&tombstones) } else { None })?;
    Ok(Some(out))
}

/// The union of two lists of byte strings, sorted and without duplicates. Lists that
/// are sorted (symbol tables always are, unless damaged) are merged in one pass.
fn merge_sorted_unique<'a>(a: Vec<&'a [u8]>, b: Vec<&'a [u8]>) -> Vec<&'a [u8]> {
    if !a.is_sorted() || !b.is_sorted() {
        let mut all = a;
        all.extend(b);
        all.sort_unstable();
        all.dedup();
        return all;
    }
    let mut out = Vec::with_capacity(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out.dedup();
    out
}

/// A source chunk of one series, located and possibly trimmed.
struct Item<'a> {
    source: usize,
    min_time: i64,
    max_time: i64,
    encoding: u8,
    data: Cow<'a, [u8]>,
}

fn bad(file: PathBuf, labels: &[(&[u8], &[u8])], problem: String) -> Error {
    Error::BadSeries { path: file, series: labels.to_label_string(), problem }
}

/// Buffers reused across the series one worker merges.
#[derive(Default)]
struct Scratch {
    /// Decoded samples per source of an overlap group.
    streams: Vec<(usize, Vec<(i64, f64)>)>,
    merged: Vec<(i64, f64)>,
}

/// Merges one series' chunks from every source that has it.
fn merge_series<'a>(srcs: &[Source<'a>], mut parts: Vec<Pending<'a>>, dedup: DedupFunc, scratch: &mut Scratch) -> Result<SeriesOut<'a>> {
    let labels = std::mem::take(&mut parts[0].labels);
    let mut items: Vec<Item<'a>> = Vec::new();
    for e in &parts {
        let i = &e.src;
        let src = &srcs[*i];
        let block = src.block;
        let (bmin, bmax) = (block.meta.min_time, block.meta.max_time - 1);
        let deleted = block.tombstones.get(e.id as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for m in &e.chunks {
            if m.max_time < m.min_time || prev.is_some_and(|p| m.min_time <= p.max_time) {
                return Err(bad(block.index_path(), &labels, format!("chunk at {} [{}, {}] is out of order or overlaps the chunk before it in block {}", m.chunk_ref, m.min_time, m.max_time, block.meta.ulid)));
            }
            prev = Some(m);
            let raw = block.chunk(m.chunk_ref).map_err(|e| match e {
                Error::Corrupt { path, source } => Error::BadSeries { path, series: labels.to_label_string(), problem: format!("block {}: chunk at {}: {}", block.meta.ulid, m.chunk_ref, source) },
                other => other,
            })?;
            let sticks_out = m.min_time < bmin || m.max_time > bmax;
            let hit = deleted.iter().any(|iv| iv.overlaps(m.min_time, m.max_time));
            if !sticks_out && !hit {
                items.push(Item { source: *i, min_time: m.min_time, max_time: m.max_time, encoding: raw.encoding, data: Cow::Borrowed(raw.data) });
                continue;
            }
            // Re-encode as one chunk without the samples outside the range or deleted.
            let samples = decode(raw.encoding, raw.data).map_err(|err| bad(seg_path(block, m), &labels, format!("block {}: chunk at {}: {err}", block.meta.ulid, m.chunk_ref)))?;
            let kept: Vec<(i64, Value)> = samples.into_values().into_iter().filter(|(t, _)| *t >= bmin && *t <= bmax && !deleted.iter().any(|iv| iv.contains(*t))).collect();
            for c in encode_values(&kept, usize::MAX).map_err(|p| bad(seg_path(block, m), &labels, p))? {
                items.push(Item { source: *i, min_time: c.min_time, max_time: c.max_time, encoding: c.encoding, data: c.data });
            }
        }
    }
    items.sort_by_key(|c| (c.min_time, c.max_time));

    let mut out: Vec<OutRef<'a>> = Vec::with_capacity(items.len());
    let mut arena: Vec<u8> = Vec::new();
    // Re-encoded merges of interleaved replicas come out larger than either input.
    let arena_hint = items.iter().map(|c| c.data.len()).sum::<usize>() * 3 / 2 + 64;
    while !items.is_empty() {
        // The overlap group at the front.
        let mut j = 1;
        let mut group_max = items[0].max_time;
        while j < items.len() && items[j].min_time <= group_max {
            group_max = group_max.max(items[j].max_time);
            j += 1;
        }
        let mut group: Vec<Item<'a>> = items.drain(..j).collect();
        // Byte-identical duplicates (same range, same bytes) are dropped.
        let mut k = 0;
        while k < group.len() {
            let dup = (0..k).any(|p| group[p].min_time == group[k].min_time && group[p].max_time == group[k].max_time && group[p].encoding == group[k].encoding && group[p].data == group[k].data);
            if dup {
                group.remove(k);
            } else {
                k += 1;
            }
        }
        if group.len() == 1 {
            let c = group.pop().expect("one");
            let data = match c.data {
                Cow::Borrowed(b) => Bytes::Source(b),
                Cow::Owned(v) => Bytes::Owned(v),
            };
            out.push(OutRef { encoding: c.encoding, data, min_time: c.min_time, max_time: c.max_time });
        } else if group.iter().all(|c| c.encoding == Encoding::Xor as u8) {
            // Floats only (the common case): no boxing, straight XOR in and out, buffers
            // reused from series to series.
            let mut used = 0;
            for c in &group {
                let k = match scratch.streams[..used].iter().position(|(s, _)| *s == c.source) {
                    Some(k) => k,
                    None => {
                        if used == scratch.streams.len() {
                            scratch.streams.push((c.source, Vec::new()));
                        }
                        scratch.streams[used].0 = c.source;
                        scratch.streams[used].1.clear();
                        used += 1;
                        used - 1
                    }
                };
                let buf = &mut scratch.streams[k].1;
                crate::format::xor::decode_into(&c.data, buf).map_err(|err| bad(srcs[c.source].block.dir.clone(), &labels, format!("block {}: chunk [{}, {}]: {err}", srcs[c.source].block.meta.ulid, c.min_time, c.max_time)))?;
            }
            for (_, v) in scratch.streams[..used].iter_mut() {
                if !v.is_sorted_by_key(|s| s.0) {
                    v.sort_by_key(|s| s.0);
                }
            }
            let refs: Vec<&[(i64, f64)]> = scratch.streams[..used].iter().map(|(_, v)| v.as_slice()).collect();
            merge_into(dedup, &refs, &mut scratch.merged);
            if arena.capacity() == 0 {
                arena.reserve(arena_hint);
            }
            for piece in scratch.merged.chunks(SAMPLES_PER_CHUNK) {
                let start = arena.len();
                crate::format::xor::encode_into(piece, &mut arena).expect("at most 120 samples");
                out.push(OutRef { encoding: Encoding::Xor as u8, data: Bytes::Arena(start, arena.len()), min_time: piece[0].0, max_time: piece[piece.len() - 1].0 });
            }
        } else {
            // One stream per source (a source's chunks never overlap each other).
            let mut streams: Vec<(usize, Vec<(i64, Value)>)> = Vec::new();
            for c in &group {
                let samples = decode(c.encoding, &c.data).map_err(|err| bad(srcs[c.source].block.dir.clone(), &labels, format!("block {}: chunk [{}, {}]: {err}", srcs[c.source].block.meta.ulid, c.min_time, c.max_time)))?;
                let vals = samples.into_values();
                match streams.iter_mut().find(|(s, _)| *s == c.source) {
                    Some((_, v)) => v.extend(vals),
                    None => streams.push((c.source, vals)),
                }
            }
            for (_, v) in streams.iter_mut() {
                v.sort_by_key(|s| s.0);
            }
            let merged = merge_samples(dedup, streams.into_iter().map(|(_, v)| v).collect());
            for c in encode_values(&merged, SAMPLES_PER_CHUNK).map_err(|p| Error::BadSeries { path: srcs[group[0].source].block.dir.clone(), series: labels.to_label_string(), problem: p })? {
                out.push(OutRef { encoding: c.encoding, data: Bytes::Owned(c.data.into_owned()), min_time: c.min_time, max_time: c.max_time });
            }
        }
    }
    Ok(SeriesOut { labels, chunks: out, arena })
}

fn seg_path(block: &Block, m: &ChunkMeta) -> PathBuf {
    block.segments().get(m.chunk_ref.segment() as usize).map(|s| s.path.clone()).unwrap_or_else(|| block.dir.clone())
}

/// Encodes samples into chunks of at most `per_chunk` samples, cutting also where the
/// value type changes and wherever the histogram encoders need a new chunk.
pub fn encode_values(samples: &[(i64, Value)], per_chunk: usize) -> std::result::Result<Vec<OutChunk<'static>>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let kind = std::mem::discriminant(&samples[i].1);
        let mut j = i;
        while j < samples.len() && std::mem::discriminant(&samples[j].1) == kind {
            j += 1;
        }
        let run = &samples[i..j];
        for piece in run.chunks(per_chunk.clamp(1, crate::format::xor::MAX_SAMPLES)) {
            match &piece[0].1 {
                Value::Float(_) => {
                    let floats: Vec<(i64, f64)> = piece.iter().filter_map(|(t, v)| if let Value::Float(x) = v { Some((*t, *x)) } else { None }).collect();
                    let mut data = Vec::new();
                    crate::format::xor::encode_into(&floats, &mut data).map_err(|e| e.to_string())?;
                    out.push(OutChunk { encoding: Encoding::Xor as u8, data: Cow::Owned(data), min_time: piece[0].0, max_time: piece[piece.len() - 1].0 });
                }
                Value::Histogram(_) => {
                    let hs: Vec<(i64, Histogram)> = piece.iter().filter_map(|(t, v)| if let Value::Histogram(h) = v { Some((*t, (**h).clone())) } else { None }).collect();
                    push_cut(&mut out, &hs, Encoding::Histogram, encode_histograms(&hs).map_err(|e| e.to_string())?)?;
                }
                Value::FloatHistogram(_) => {
                    let hs: Vec<(i64, FloatHistogram)> = piece.iter().filter_map(|(t, v)| if let Value::FloatHistogram(h) = v { Some((*t, (**h).clone())) } else { None }).collect();
                    push_cut(&mut out, &hs, Encoding::FloatHistogram, encode_float_histograms(&hs).map_err(|e| e.to_string())?)?;
                }
            }
        }
        i = j;
    }
    Ok(out)
}

/// Assigns time ranges to the chunks a histogram encoder cut, by their sample counts.
fn push_cut<T>(out: &mut Vec<OutChunk<'static>>, samples: &[(i64, T)], enc: Encoding, chunks: Vec<Vec<u8>>) -> std::result::Result<(), String> {
    let mut at = 0;
    for c in chunks {
        let n = u16::from_be_bytes([c[0], c[1]]) as usize;
        if n == 0 || at + n > samples.len() {
            return Err("histogram encoder produced an inconsistent chunk".into());
        }
        out.push(OutChunk { encoding: enc as u8, data: Cow::Owned(c), min_time: samples[at].0, max_time: samples[at + n - 1].0 });
        at += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn symbol_tables_merge_to_their_sorted_union(a in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3), 0..20), b in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3), 0..20), sort_a in any::<bool>()) {
            let mut a = a;
            let mut b = b;
            // Symbol tables are sorted and unique; a damaged one need not be.
            if sort_a {
                a.sort();
                a.dedup();
            }
            b.sort();
            b.dedup();
            let got = merge_sorted_unique(a.iter().map(|s| s.as_slice()).collect(), b.iter().map(|s| s.as_slice()).collect());
            let mut want: Vec<&[u8]> = a.iter().chain(&b).map(|s| s.as_slice()).collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(got, want);
        }
    }
}
