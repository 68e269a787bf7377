//! The merge executor: N source blocks in, one block out.
//!
//! Owns: the k-way merge of series across sources in label order; per series, copying
//! chunks that overlap nothing as bytes (never decoded), dropping byte-identical
//! duplicate chunks, merging overlapping chunks sample by sample (one-to-one) or
//! deduplicating a series' whole sample stream as the Thanos querier does (penalty;
//! chunks the result takes whole stay bytes), and re-encoding merged samples into
//! chunks of at most 120 samples; trimming chunks that stick
//! out of their block's range or are hit by tombstones. Series are processed in batches
//! in parallel (rayon) while a writer thread writes the previous batch, so memory is
//! bounded by a batch of series plus the output index's postings.
//! Must not: decide which blocks to merge (the planner) or delete anything.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use ulid::Ulid;

use super::dedup::{merge as merge_samples, merge_into, merge_into_reusing, split_overlapping, DedupFunc};
use crate::block::pipeline::{self, series_chunk, BatchLimits};
use crate::block::{Block, BlockWriter, ChunkToWrite, SegmentOptions};
use crate::error::{AtPath, Error, Result};
use crate::format::chunks::{frame_in_place, ChunkMeta, Encoding, DEFAULT_SEGMENT_SIZE, RECORD_HEAD_ROOM};
use crate::format::index::{IndexReader, Postings, SeriesRefs};
use crate::format::meta::BlockMeta;
use crate::format::sample::{decode, encode, Value};
use crate::format::tombstones::Tombstones;
use crate::labels::{LabelPairs, Labels};

/// Samples per re-encoded chunk, as Prometheus's compactor cuts them.
pub const SAMPLES_PER_CHUNK: usize = 120;

/// Source chunk bytes per batch. A vertical merge's output is about as large as its input
/// (interleaved replicas encode a little larger), and about three batches' outputs are in
/// memory at once (being merged, queued, being written).
pub const MERGE_BATCH_BYTES: usize = 4 << 20;

/// Knobs of one merge.
#[derive(Clone, Debug)]
pub struct MergeOptions {
    pub dedup: DedupFunc,
    /// How much of the sources a batch handed to the worker threads may hold (series,
    /// chunks, chunk bytes), so memory grows neither with the number of series nor with
    /// the samples per series.
    pub batch: BatchLimits,
    pub segment_size: u64,
    /// Chunk segments written around the page cache (see [`SegmentOptions`]); the job
    /// turns it off because it reads each output back twice (verify, upload).
    pub direct_io: bool,
    /// Write an (empty) tombstones file, as Prometheus does. Thanos output has none.
    pub write_tombstones: bool,
}

impl MergeOptions {
    fn segments(&self) -> SegmentOptions {
        SegmentOptions { size: self.segment_size, direct_io: self.direct_io }
    }
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            dedup: DedupFunc::OneToOne,
            batch: BatchLimits { series: 2048, chunks: 16_384, bytes: MERGE_BATCH_BYTES },
            segment_size: DEFAULT_SEGMENT_SIZE,
            direct_io: true,
            write_tombstones: true,
        }
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
    /// Copied from a source block's segment file: the payload and the whole record.
    Source {
        data: &'a [u8],
        record: &'a [u8],
    },
    /// Re-encoded and framed as a record (CRC included, computed by the worker), in the
    /// sub-batch's `arena`: the record's range and the payload's.
    Arena {
        record: Range<usize>,
        data: Range<usize>,
    },
    Owned(Vec<u8>),
}

struct OutRef<'a> {
    encoding: u8,
    data: Bytes<'a>,
    min_time: i64,
    max_time: i64,
}

/// A run of merged series, as one worker produced them: every series' chunk list in
/// one vector and every re-encoded chunk in one buffer, so a series costs no allocation
/// of its own.
#[derive(Default)]
struct SubOut<'a> {
    /// Per series: its labels (a range of the batch's `labels`) and its chunks (a range
    /// of `chunks`).
    series: Vec<(Range<u32>, Range<u32>)>,
    chunks: Vec<OutRef<'a>>,
    arena: Vec<u8>,
}

impl SubOut<'_> {
    /// Adds chunks the sample encoder made (owned bytes, framed by the writer).
    fn push_encoded(&mut self, chunks: Vec<OutChunk<'_>>) {
        self.chunks.extend(chunks.into_iter().map(|c| OutRef {
            encoding: c.encoding,
            data: Bytes::Owned(c.data.into_owned()),
            min_time: c.min_time,
            max_time: c.max_time,
        }));
    }

    /// Encodes `piece` (at most 120 samples) as one XOR chunk straight into the arena,
    /// framed there as a segment record.
    fn push_xor(&mut self, piece: &[(i64, f64)]) {
        let room = self.arena.len();
        self.arena.resize(room + RECORD_HEAD_ROOM, 0);
        crate::format::xor::encode_into(piece, &mut self.arena).expect("at most 120 samples");
        let (record, data) = frame_in_place(&mut self.arena, room, Encoding::Xor as u8);
        self.chunks.push(OutRef {
            encoding: Encoding::Xor as u8,
            data: Bytes::Arena { record, data },
            min_time: piece[0].0,
            max_time: piece[piece.len() - 1].0,
        });
    }
}

/// A source's next series: labels borrowed from its index, chunk metas. The heap holds
/// one per source; its buffers are reused from series to series.
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

/// Reads source `p.src`'s next series into `p`; `false` when the source has no more.
fn read_next<'a>(
    srcs: &[Source<'a>],
    postings: &mut [Postings<'a>],
    refs: &mut SeriesRefs,
    p: &mut Pending<'a>,
) -> Result<bool> {
    let Some(id) = postings[p.src].next() else { return Ok(false) };
    let src = &srcs[p.src];
    std::mem::swap(&mut refs.chunks, &mut p.chunks);
    src.index.series_borrowed(id, refs, &mut p.labels).map_err(|e| Error::corrupt(src.block.index_path(), e))?;
    std::mem::swap(&mut refs.chunks, &mut p.chunks);
    p.id = id;
    Ok(true)
}

/// One part of an output series: a source's series with that label set.
struct Part {
    src: usize,
    id: u32,
    /// Its chunk metas, a range of the batch's `metas`.
    chunks: Range<u32>,
}

/// A batch of series as the gathering thread hands it over, in flat buffers (a few
/// allocations per batch, none per series): each series' labels, every part's chunk
/// metas, the parts, and per series its range of parts and of labels.
#[derive(Default)]
struct Gathered<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    metas: Vec<ChunkMeta>,
    parts: Vec<Part>,
    series: Vec<(Range<u32>, Range<u32>)>,
}

/// Series per unit of work handed to one worker within a batch.
const SUB_BATCH: usize = 32;

/// One source block prepared for merging.
struct Source<'a> {
    block: &'a Block,
    index: IndexReader<'a>,
}

/// Merges `sources` into a new block `ulid` under `parent` with `meta` (time range,
/// compaction and thanos sections already set; stats are filled in). Returns `None`
/// when nothing is left (every series deleted).
pub fn merge_blocks<'a>(
    sources: &'a [&'a Block],
    parent: &Path,
    ulid: Ulid,
    meta: BlockMeta,
    opts: &MergeOptions,
    progress: &(dyn Fn(MergeProgress) + Sync),
) -> Result<Option<(PathBuf, BlockMeta)>> {
    let srcs: Vec<Source<'_>> =
        sources.iter().map(|b| Ok(Source { block: b, index: b.index()? })).collect::<Result<_>>()?;

    // Per-source series, merged by label set through a heap that owns each source's
    // next series (labels borrowed from the mapped index, nothing copied).
    let mut postings = Vec::with_capacity(srcs.len());
    for s in &srcs {
        postings.push(s.index.all_postings().at(&s.block.index_path())?);
    }
    let mut heap: BinaryHeap<Reverse<Pending<'_>>> = BinaryHeap::new();
    let mut refs = SeriesRefs::default();
    for i in 0..srcs.len() {
        let mut p = Pending { labels: Vec::new(), src: i, id: 0, chunks: Vec::new() };
        if read_next(&srcs, &mut postings, &mut refs, &mut p)? {
            heap.push(Reverse(p));
        }
    }

    let limits = opts.batch;
    let srcs_ref = &srcs;

    // Gathering series (heap, index decoding) runs a batch ahead of the workers.
    let mut batches = 0;
    let gather = move || -> Result<Option<Gathered<'a>>> {
        let limit = limits.ramp(batches);
        batches += 1;
        let mut bytes = 0;
        let mut g = Gathered::default();
        while !limit.reached(g.series.len(), g.metas.len(), bytes) {
            let Some(Reverse(mut cur)) = heap.pop() else { break };
            let start = g.parts.len() as u32;
            let l0 = g.labels.len();
            g.labels.extend_from_slice(&cur.labels);
            let lr = l0..g.labels.len();
            loop {
                let m0 = g.metas.len() as u32;
                let block = srcs_ref[cur.src].block;
                bytes += cur.chunks.iter().map(|c| block.chunk_record_len(c.chunk_ref)).sum::<usize>();
                g.metas.extend_from_slice(&cur.chunks);
                g.parts.push(Part { src: cur.src, id: cur.id, chunks: m0..g.metas.len() as u32 });
                if read_next(srcs_ref, &mut postings, &mut refs, &mut cur)? {
                    let prev = &g.labels[lr.clone()];
                    if cur.labels.cmp_pairs(prev).is_le() {
                        let block = srcs_ref[cur.src].block;
                        return Err(bad(
                            block,
                            block.index_path(),
                            &cur.labels,
                            format!("series out of order (after {})", prev.to_label_string()),
                        ));
                    }
                    heap.push(Reverse(cur));
                }
                match heap.peek() {
                    Some(Reverse(p)) if p.labels[..] == g.labels[lr.clone()] => cur = heap.pop().expect("peeked").0,
                    _ => break,
                }
            }
            g.series.push((start..g.parts.len() as u32, lr.start as u32..lr.end as u32));
        }
        Ok((!g.series.is_empty()).then_some(g))
    };

    let make_writer = move || -> Result<BlockWriter> {
        // The output's symbols: every source's symbols (a superset of what survives),
        // written while the first batch is gathered and merged, streamed from the mapped
        // tables (nothing is collected) unless a table is damaged and out of order.
        let mut sorted = true;
        for s in srcs_ref {
            let mut prev: Option<&[u8]> = None;
            for sym in s.index.symbols() {
                let sym = sym.map_err(|e| Error::corrupt(s.block.index_path(), e))?;
                sorted &= prev.is_none_or(|p| p < sym);
                prev = Some(sym);
            }
        }
        let tables = || srcs_ref.iter().map(|s| s.index.symbols().map_while(|r| r.ok()));
        let writer = if sorted {
            BlockWriter::with_segments(parent, ulid, merge_sorted_unique(tables()), opts.segments())?
        } else {
            let mut all: Vec<&[u8]> = tables().flatten().collect();
            all.sort_unstable();
            all.dedup();
            BlockWriter::with_segments(parent, ulid, &all, opts.segments())?
        };
        Ok(writer)
    };
    execute(srcs_ref, gather, make_writer, meta, opts, progress)
}

/// Merges one source block's series into a new block under new label sets: `series`
/// lists, sorted by label set, each output series and the source's series refs that go
/// into it (their chunks merged one-to-one where they overlap, whatever `opts.dedup`
/// says). The source's tombstones are applied; series not listed are left out. The
/// symbol table is the output label sets'.
pub fn merge_mapped<'a>(
    source: &'a Block,
    series: &'a [(Labels, Vec<u32>)],
    parent: &Path,
    ulid: Ulid,
    meta: BlockMeta,
    opts: &MergeOptions,
    progress: &(dyn Fn(MergeProgress) + Sync),
) -> Result<Option<(PathBuf, BlockMeta)>> {
    if let Some(w) = series.windows(2).find(|w| w[0].0 >= w[1].0) {
        return Err(Error::BadWrite {
            path: parent.to_path_buf(),
            problem: format!("merge_mapped: output series out of order: {} then {}", w[0].0, w[1].0),
        });
    }
    let opts = MergeOptions { dedup: DedupFunc::OneToOne, ..opts.clone() };
    let srcs = vec![Source { block: source, index: source.index()? }];
    let srcs_ref = &srcs;
    let limits = opts.batch;
    let (mut next, mut batches) = (0, 0);
    let mut refs = SeriesRefs::default();
    let gather = move || -> Result<Option<Gathered<'a>>> {
        let limit = limits.ramp(batches);
        batches += 1;
        let mut bytes = 0;
        let mut g = Gathered::default();
        while next < series.len() && !limit.reached(g.series.len(), g.metas.len(), bytes) {
            let (labels, ids) = &series[next];
            next += 1;
            let start = g.parts.len() as u32;
            let l0 = g.labels.len();
            g.labels.extend(labels.iter().map(|l| (l.name.as_slice(), l.value.as_slice())));
            for &id in ids {
                srcs_ref[0].index.series_refs(id, &mut refs).map_err(|e| Error::corrupt(source.index_path(), e))?;
                bytes += refs.chunks.iter().map(|c| source.chunk_record_len(c.chunk_ref)).sum::<usize>();
                let m0 = g.metas.len() as u32;
                g.metas.extend_from_slice(&refs.chunks);
                g.parts.push(Part { src: 0, id, chunks: m0..g.metas.len() as u32 });
            }
            g.series.push((start..g.parts.len() as u32, l0 as u32..g.labels.len() as u32));
        }
        Ok((!g.series.is_empty()).then_some(g))
    };
    let segments = opts.segments();
    let make_writer = move || -> Result<BlockWriter> {
        let mut all: Vec<&[u8]> =
            series.iter().flat_map(|(l, _)| l.iter().flat_map(|l| [l.name.as_slice(), l.value.as_slice()])).collect();
        all.sort_unstable();
        all.dedup();
        BlockWriter::with_segments(parent, ulid, &all, segments)
    };
    execute(srcs_ref, gather, make_writer, meta, &opts, progress)
}

/// Runs the merge pipeline over the batches `gather` returns (series in output order)
/// into the block writer `make_writer` starts (on the writer thread, while the first
/// batches are gathered and merged).
fn execute<'a>(
    srcs_ref: &[Source<'a>],
    gather: impl FnMut() -> Result<Option<Gathered<'a>>> + Send,
    make_writer: impl FnOnce() -> Result<BlockWriter> + Send,
    meta: BlockMeta,
    opts: &MergeOptions,
    progress: &(dyn Fn(MergeProgress) + Sync),
) -> Result<Option<(PathBuf, BlockMeta)>> {
    let dedup = opts.dedup;
    // Each batch in units of SUB_BATCH series across the rayon pool.
    let process = |g: Gathered<'a>| -> Result<(Gathered<'a>, Vec<SubOut<'a>>)> {
        let subs: Vec<Range<usize>> =
            (0..g.series.len()).step_by(SUB_BATCH).map(|s| s..(s + SUB_BATCH).min(g.series.len())).collect();
        let outs: Vec<SubOut<'_>> = subs
            .into_par_iter()
            .map_init(Scratch::default, |scratch, range| {
                let mut out = SubOut::default();
                for s in range {
                    merge_series(srcs_ref, &g, s, dedup, scratch, &mut out)?;
                }
                // The arena grew by doubling; the unit now waits to be written, and a few
                // batches of units are in memory at once, so give the slack back.
                out.arena.shrink_to_fit();
                Ok(out)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((g, outs))
    };

    let write = |batches: &mut dyn Iterator<Item = (Gathered<'a>, Vec<SubOut<'a>>)>| -> Result<(u64, BlockWriter)> {
        let mut writer = make_writer()?;
        let mut done = MergeProgress::default();
        let mut written = 0u64;
        for (gathered, outs) in batches {
            for sub in &outs {
                let mut chunks: Vec<ChunkToWrite<'_>> = Vec::new();
                for (labels, range) in &sub.series {
                    chunks.clear();
                    chunks.extend(sub.chunks[range.start as usize..range.end as usize].iter().map(|c| {
                        let (data, record): (&[u8], Option<&[u8]>) = match &c.data {
                            Bytes::Source { data, record } => (data, Some(record)),
                            Bytes::Arena { record, data } => {
                                (&sub.arena[data.clone()], Some(&sub.arena[record.clone()]))
                            }
                            Bytes::Owned(v) => (v, None),
                        };
                        ChunkToWrite { encoding: c.encoding, data, min_time: c.min_time, max_time: c.max_time, record }
                    }));
                    if writer
                        .add_series(&gathered.labels[labels.start as usize..labels.end as usize], &chunks)?
                        .is_some()
                    {
                        written += 1;
                        done.chunks += chunks.len() as u64;
                        done.bytes += chunks.iter().map(|c| c.data.len() as u64).sum::<u64>();
                    }
                    done.series += 1;
                }
            }
            progress(done);
        }
        Ok((written, writer))
    };

    let result = pipeline::run(1, gather, process, write);
    let (written, writer) = result?;
    if written == 0 {
        // Dropping the writer removes its temporary directory.
        return Ok(None);
    }
    let tombstones = Tombstones::default();
    let out = writer.finish(meta, if opts.write_tombstones { Some(&tombstones) } else { None })?;
    Ok(Some(out))
}

/// The union of sorted lists of byte strings, sorted and without duplicates, merged as
/// it is read.
fn merge_sorted_unique<'a, I: Iterator<Item = &'a [u8]>>(
    lists: impl Iterator<Item = I>,
) -> impl Iterator<Item = &'a [u8]> {
    let mut lists: Vec<I> = lists.collect();
    let mut heap: BinaryHeap<Reverse<(&'a [u8], usize)>> =
        lists.iter_mut().enumerate().filter_map(|(i, l)| l.next().map(|s| Reverse((s, i)))).collect();
    let mut last: Option<&'a [u8]> = None;
    std::iter::from_fn(move || {
        while let Some(Reverse((s, i))) = heap.pop() {
            if let Some(next) = lists[i].next() {
                heap.push(Reverse((next, i)));
            }
            if last != Some(s) {
                last = Some(s);
                return Some(s);
            }
        }
        None
    })
}

/// A source chunk of one series, located and possibly trimmed.
struct Item<'a> {
    source: usize,
    /// The part of the output series it comes from (a source's series, or one of the
    /// series a rewrite maps onto the same label set): the unit of one sample stream.
    stream: usize,
    min_time: i64,
    max_time: i64,
    encoding: u8,
    data: Cow<'a, [u8]>,
    /// The source's whole record, for a chunk used as it is.
    record: Option<&'a [u8]>,
}

impl Item<'_> {
    /// This chunk failed to decode: an error that names the chunk and blames its block.
    fn undecodable(&self, srcs: &[Source<'_>], labels: &[(&[u8], &[u8])], err: impl std::fmt::Display) -> Error {
        let block = srcs[self.source].block;
        bad(block, block.dir.clone(), labels, format!("chunk [{}, {}]: {err}", self.min_time, self.max_time))
    }
}

/// A series of source `block` is wrong: an error that blames that block.
fn bad(block: &Block, file: PathBuf, labels: &[(&[u8], &[u8])], problem: String) -> Error {
    Error::BadSeries { path: file, series: labels.to_label_string(), problem }.in_block(block.meta.ulid)
}

/// Buffers reused across the series one worker merges.
#[derive(Default)]
struct Scratch<'a> {
    /// The series' chunks from every source, located and possibly trimmed.
    items: Vec<Item<'a>>,
    /// Indices (into `items`) of an overlap group's chunks that are not duplicates.
    keep: Vec<usize>,
    /// Decoded samples per source of an overlap group.
    streams: Vec<(usize, Vec<(i64, f64)>)>,
    merged: Vec<(i64, f64)>,
    /// Buffers of the penalty path ([`merge_series_penalty`]).
    penalty: PenaltyScratch,
}

/// Merges series `s` of batch `g` (its chunks from every source that has it) into `out`.
fn merge_series<'a>(
    srcs: &[Source<'a>],
    g: &Gathered<'a>,
    s: usize,
    dedup: DedupFunc,
    scratch: &mut Scratch<'a>,
    out: &mut SubOut<'a>,
) -> Result<()> {
    let (parts, labels_range) = &g.series[s];
    let labels = &g.labels[labels_range.start as usize..labels_range.end as usize];
    let Scratch { items, keep, streams, merged, penalty } = scratch;
    items.clear();
    locate_chunks(srcs, g, parts.clone(), labels, items)?;
    let first_chunk = out.chunks.len();
    if dedup == DedupFunc::Penalty && merge_series_penalty(srcs, labels, items, penalty, out)? {
        out.series.push((labels_range.clone(), first_chunk as u32..out.chunks.len() as u32));
        return Ok(());
    }
    items.sort_by_key(|c| (c.min_time, c.max_time));

    let mut at = 0;
    while at < items.len() {
        // The overlap group at the front: items[at..end].
        let mut end = at + 1;
        let mut group_max = items[at].max_time;
        while end < items.len() && items[end].min_time <= group_max {
            group_max = group_max.max(items[end].max_time);
            end += 1;
        }
        // Byte-identical duplicates (same range, same bytes) are dropped.
        keep.clear();
        for k in at..end {
            let c = &items[k];
            if !keep.iter().any(|&p| {
                items[p].min_time == c.min_time
                    && items[p].max_time == c.max_time
                    && items[p].encoding == c.encoding
                    && items[p].data == c.data
            }) {
                keep.push(k);
            }
        }
        if let [only] = keep[..] {
            let c = &mut items[only];
            let data = match (std::mem::replace(&mut c.data, Cow::Borrowed(&[])), c.record) {
                (Cow::Borrowed(data), Some(record)) => Bytes::Source { data, record },
                (data, _) => Bytes::Owned(data.into_owned()),
            };
            out.chunks.push(OutRef { encoding: c.encoding, data, min_time: c.min_time, max_time: c.max_time });
        } else if keep.iter().all(|&k| items[k].encoding == Encoding::Xor as u8) {
            merge_float_group(srcs, labels, items, keep, streams, merged, dedup, out)?;
        } else {
            merge_value_group(srcs, labels, items, keep, dedup, out)?;
        }
        at = end;
    }
    out.series.push((labels_range.clone(), first_chunk as u32..out.chunks.len() as u32));
    Ok(())
}

/// Every chunk of one output series from every source, located (bytes borrowed from the
/// mapped segments) and, where a chunk sticks out of its block's range or tombstones hit
/// it, re-encoded without those samples.
fn locate_chunks<'a>(
    srcs: &[Source<'a>],
    g: &Gathered<'a>,
    parts: Range<u32>,
    labels: &[(&'a [u8], &'a [u8])],
    items: &mut Vec<Item<'a>>,
) -> Result<()> {
    for (stream, e) in g.parts[parts.start as usize..parts.end as usize].iter().enumerate() {
        let i = e.src;
        let block = srcs[i].block;
        let (bmin, bmax) = (block.meta.min_time, block.meta.max_time - 1);
        let deleted = block.tombstones.get(e.id as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for m in &g.metas[e.chunks.start as usize..e.chunks.end as usize] {
            if m.max_time < m.min_time || prev.is_some_and(|p| m.min_time <= p.max_time) {
                return Err(bad(
                    block,
                    block.index_path(),
                    labels,
                    format!(
                        "chunk at {} [{}, {}] is out of order or overlaps the chunk before it",
                        m.chunk_ref, m.min_time, m.max_time
                    ),
                ));
            }
            prev = Some(m);
            let raw = series_chunk(block, m.chunk_ref, labels)?;
            let sticks_out = m.min_time < bmin || m.max_time > bmax;
            let hit = deleted.iter().any(|iv| iv.overlaps(m.min_time, m.max_time));
            if !sticks_out && !hit {
                items.push(Item {
                    source: i,
                    stream,
                    min_time: m.min_time,
                    max_time: m.max_time,
                    encoding: raw.encoding,
                    data: Cow::Borrowed(raw.data),
                    record: Some(raw.record),
                });
                continue;
            }
            // Re-encode as one chunk without the samples outside the range or deleted.
            let samples = decode(raw.encoding, raw.data)
                .map_err(|err| bad(block, seg_path(block, m), labels, format!("chunk at {}: {err}", m.chunk_ref)))?;
            let kept: Vec<(i64, Value)> = samples
                .into_values()
                .into_iter()
                .filter(|(t, _)| *t >= bmin && *t <= bmax && !deleted.iter().any(|iv| iv.contains(*t)))
                .collect();
            for c in encode_values(&kept, usize::MAX).map_err(|p| bad(block, seg_path(block, m), labels, p))? {
                items.push(Item {
                    source: i,
                    stream,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    encoding: c.encoding,
                    data: c.data,
                    record: None,
                });
            }
        }
    }
    Ok(())
}

/// Merges an overlap group of XOR chunks (`keep`, indices into `items`), the common case:
/// no boxing, straight XOR in and out, buffers reused from series to series.
#[allow(clippy::too_many_arguments)]
fn merge_float_group<'a>(
    srcs: &[Source<'a>],
    labels: &[(&[u8], &[u8])],
    items: &[Item<'a>],
    keep: &[usize],
    streams: &mut Vec<(usize, Vec<(i64, f64)>)>,
    merged: &mut Vec<(i64, f64)>,
    dedup: DedupFunc,
    out: &mut SubOut<'a>,
) -> Result<()> {
    let mut used = 0;
    for &k in keep.iter() {
        let c = &items[k];
        let slot = match streams[..used].iter().position(|(s, _)| *s == c.stream) {
            Some(slot) => slot,
            None => {
                if used == streams.len() {
                    streams.push((c.stream, Vec::new()));
                }
                streams[used].0 = c.stream;
                streams[used].1.clear();
                used += 1;
                used - 1
            }
        };
        crate::format::xor::decode_into(&c.data, &mut streams[slot].1)
            .map_err(|err| c.undecodable(srcs, labels, err))?;
    }
    for (_, v) in streams[..used].iter_mut() {
        if !v.is_sorted_by_key(|s| s.0) {
            v.sort_by_key(|s| s.0);
        }
    }
    let mut few: [&[(i64, f64)]; 4] = [&[]; 4];
    let many: Vec<&[(i64, f64)]>;
    let refs: &[&[(i64, f64)]] = if used <= few.len() {
        for (slot, (_, v)) in few.iter_mut().zip(&streams[..used]) {
            *slot = v;
        }
        &few[..used]
    } else {
        many = streams[..used].iter().map(|(_, v)| v.as_slice()).collect();
        &many
    };
    merge_into(dedup, refs, merged);
    // Re-encoded merges of interleaved replicas come out larger than the inputs.
    out.arena.reserve(keep.iter().map(|&k| items[k].data.len()).sum::<usize>() * 3 / 2 + 64);
    for piece in merged.chunks(SAMPLES_PER_CHUNK) {
        out.push_xor(piece);
    }
    Ok(())
}

/// Merges an overlap group with histogram chunks (`keep`, indices into `items`): one
/// stream per source stream, boxed values, re-encoded at 120 samples a chunk.
fn merge_value_group<'a>(
    srcs: &[Source<'a>],
    labels: &[(&[u8], &[u8])],
    items: &[Item<'a>],
    keep: &[usize],
    dedup: DedupFunc,
    out: &mut SubOut<'a>,
) -> Result<()> {
    let mut streams: Vec<(usize, Vec<(i64, Value)>)> = Vec::new();
    for &k in keep.iter() {
        let c = &items[k];
        let samples = decode(c.encoding, &c.data).map_err(|err| c.undecodable(srcs, labels, err))?;
        let vals = samples.into_values();
        match streams.iter_mut().find(|(s, _)| *s == c.stream) {
            Some((_, v)) => v.extend(vals),
            None => streams.push((c.stream, vals)),
        }
    }
    for (_, v) in streams.iter_mut() {
        v.sort_by_key(|s| s.0);
    }
    let merged = merge_samples(dedup, streams.into_iter().map(|(_, v)| v).collect());
    let first = srcs[items[keep[0]].source].block;
    out.push_encoded(encode_values(&merged, SAMPLES_PER_CHUNK).map_err(|p| bad(first, first.dir.clone(), labels, p))?);
    Ok(())
}

/// Buffers of the penalty path, reused from series to series.
#[derive(Default)]
struct PenaltyScratch {
    /// Per chunk (in `items` order), the querier's stream it belongs to.
    stream_of: Vec<u32>,
    ends: Vec<i64>,
    /// Per decoded chunk, in decoding order (stream by stream, each in time order): its
    /// first sample's index in `floats` or `values`, its sample count, its index in
    /// `items`.
    decoded: Vec<(u32, u32, u32)>,
    /// Per decoded sample: the decoded chunk it came from.
    owner: Vec<u32>,
    /// Every stream's samples, stream after stream: floats when every chunk is XOR,
    /// else boxed values.
    floats: Vec<(i64, f64)>,
    values: Vec<(i64, Value)>,
    /// The same samples as (timestamp, index into `floats`/`values`), and where each
    /// stream starts and ends in it.
    ts: Vec<(i64, u32)>,
    bounds: Vec<usize>,
    merged: Vec<(i64, u32)>,
    tmp: Vec<(i64, u32)>,
    piece: Vec<(i64, f64)>,
}

impl PenaltyScratch {
    /// Decodes the `n` streams' chunks, stream after stream, into `floats` (or `values`),
    /// with `ts`, `bounds`, `owner` and `decoded` describing where each sample came from.
    fn decode_streams(
        &mut self,
        srcs: &[Source<'_>],
        labels: &[(&[u8], &[u8])],
        items: &[Item<'_>],
        n: usize,
        floats_only: bool,
    ) -> Result<()> {
        let PenaltyScratch { stream_of, decoded, owner, floats, values, ts, bounds, .. } = self;
        decoded.clear();
        owner.clear();
        floats.clear();
        values.clear();
        ts.clear();
        bounds.clear();
        bounds.push(0);
        for s in 0..n as u32 {
            for (k, c) in items.iter().enumerate() {
                if stream_of[k] != s {
                    continue;
                }
                let start = ts.len();
                let done = if floats_only {
                    crate::format::xor::decode_into(&c.data, floats)
                        .map(|()| ts.extend(floats[start..].iter().map(|&(t, _)| (t, 0))))
                } else {
                    decode(c.encoding, &c.data).map(|d| {
                        values.extend(d.into_values());
                        ts.extend(values[start..].iter().map(|(t, _)| (*t, 0)));
                    })
                };
                done.map_err(|err| c.undecodable(srcs, labels, err))?;
                for (i, e) in ts[start..].iter_mut().enumerate() {
                    e.1 = (start + i) as u32;
                }
                owner.resize(ts.len(), decoded.len() as u32);
                decoded.push((start as u32, (ts.len() - start) as u32, k as u32));
            }
            bounds.push(ts.len());
        }
        Ok(())
    }
}

/// Penalty deduplication of one series, giving what a deduplicating Thanos querier
/// returns for it over the merge's range (see the `dedup` module comment): the series'
/// chunks from every source are pooled, byte-identical ones kept once, dealt into the
/// querier's streams, and the streams chained with the penalty rule over the whole
/// series at once, whatever the chunk, cluster or block boundaries. A source chunk the
/// result takes whole (all its samples in a row, nothing between them) is copied as
/// bytes; the other samples are re-encoded in chunks of at most 120. Returns `false`,
/// having only put `items` in the querier's order and dropped duplicates, when the
/// chunks form one stream (nothing overlaps): the caller copies them as they are.
fn merge_series_penalty<'a>(
    srcs: &[Source<'a>],
    labels: &[(&'a [u8], &'a [u8])],
    items: &mut Vec<Item<'a>>,
    scr: &mut PenaltyScratch,
    out: &mut SubOut<'a>,
) -> Result<bool> {
    // The proxy's order: min time, max time, encoding, then bytes, descending.
    items.sort_by(|a, b| {
        (a.min_time, a.max_time, a.encoding)
            .cmp(&(b.min_time, b.max_time, b.encoding))
            .then_with(|| b.data.cmp(&a.data))
    });
    items.dedup_by(|b, a| {
        a.min_time == b.min_time && a.max_time == b.max_time && a.encoding == b.encoding && a.data == b.data
    });
    let n = split_overlapping(items.iter().map(|c| (c.min_time, c.max_time)), &mut scr.stream_of, &mut scr.ends);
    if n < 2 {
        return Ok(false);
    }
    let floats_only = items.iter().all(|c| c.encoding == Encoding::Xor as u8);
    scr.decode_streams(srcs, labels, items, n, floats_only)?;
    let PenaltyScratch { decoded, owner, floats, values, ts, bounds, merged, tmp, piece, .. } = scr;

    let mut few: [&[(i64, u32)]; 4] = [&[]; 4];
    let many: Vec<&[(i64, u32)]>;
    let refs: &[&[(i64, u32)]] = if n <= few.len() {
        for (slot, w) in few.iter_mut().zip(bounds.windows(2)) {
            *slot = &ts[w[0]..w[1]];
        }
        &few[..n]
    } else {
        many = bounds.windows(2).map(|w| &ts[w[0]..w[1]]).collect();
        &many
    };
    merge_into_reusing(DedupFunc::Penalty, refs, merged, tmp);

    // Re-encodes merged[range] into chunks of at most 120 samples.
    let first = srcs[items[0].source].block;
    let mut encode = |range: Range<usize>, out: &mut SubOut<'a>| -> Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let run = &merged[range];
        if floats_only {
            out.arena.reserve(run.len() * 3 + 64);
            for part in run.chunks(SAMPLES_PER_CHUNK) {
                piece.clear();
                piece.extend(part.iter().map(|&(_, g)| floats[g as usize]));
                out.push_xor(piece);
            }
        } else {
            let vals: Vec<(i64, Value)> = run.iter().map(|&(_, g)| values[g as usize].clone()).collect();
            out.push_encoded(
                encode_values(&vals, SAMPLES_PER_CHUNK).map_err(|p| bad(first, first.dir.clone(), labels, p))?,
            );
        }
        Ok(())
    };

    // Runs of the result that are a whole source chunk are that chunk's bytes.
    let (mut at, mut pending) = (0, 0);
    while at < merged.len() {
        let g = merged[at].1;
        let (start, len, k) = decoded[owner[g as usize] as usize];
        let len = len as usize;
        let whole = g == start
            && at + len <= merged.len()
            && merged[at..at + len].iter().zip(start..).all(|(&(_, tag), want)| tag == want);
        if !whole {
            at += 1;
            continue;
        }
        encode(pending..at, out)?;
        let c = &mut items[k as usize];
        let data = match (std::mem::replace(&mut c.data, Cow::Borrowed(&[])), c.record) {
            (Cow::Borrowed(data), Some(record)) => Bytes::Source { data, record },
            (data, _) => Bytes::Owned(data.into_owned()),
        };
        out.chunks.push(OutRef { encoding: c.encoding, data, min_time: c.min_time, max_time: c.max_time });
        at += len;
        pending = at;
    }
    encode(pending..merged.len(), out)?;
    Ok(true)
}

fn seg_path(block: &Block, m: &ChunkMeta) -> PathBuf {
    block.segments().get(m.chunk_ref.segment() as usize).map(|s| s.path.clone()).unwrap_or_else(|| block.dir.clone())
}

/// [`crate::format::sample::encode`], as chunks the block writer takes.
pub fn encode_values(
    samples: &[(i64, Value)],
    per_chunk: usize,
) -> std::result::Result<Vec<OutChunk<'static>>, String> {
    let chunks = encode(samples, per_chunk).map_err(|e| e.to_string())?;
    Ok(chunks
        .into_iter()
        .map(|c| OutChunk {
            encoding: c.encoding as u8,
            data: Cow::Owned(c.data),
            min_time: c.min_time,
            max_time: c.max_time,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn symbol_tables_merge_to_their_sorted_union(tables in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(0u8..4, 0..3), 0..20), 0..5)) {
            // Symbol tables are sorted and unique (damaged ones are sorted before merging).
            let mut tables = tables;
            for t in tables.iter_mut() {
                t.sort();
                t.dedup();
            }
            let got: Vec<&[u8]> = merge_sorted_unique(tables.iter().map(|t| t.iter().map(|s| s.as_slice()))).collect();
            let mut want: Vec<&[u8]> = tables.iter().flatten().map(|s| s.as_slice()).collect();
            want.sort();
            want.dedup();
            prop_assert_eq!(got, want);
        }
    }
}
