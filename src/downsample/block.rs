//! One block in, one downsampled block out, streamed on the shared staged pipeline
//! ([`crate::block::pipeline`]): a gathering thread reads series from the source index a
//! batch ahead, the rayon pool aggregates each batch (chunk bytes read straight from the
//! mapped segment files, per-worker scratch buffers), and a writer thread writes the
//! previous batch. A batch ends at a number of series or of input chunks,
//! whichever comes first, so memory is bounded by a few batches whatever the size of the
//! block and the length of its series (plus one series' samples per worker, and the
//! output index's postings).

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use ulid::Ulid;

use super::series::{downsample_series, InChunk, Scratch};
use super::{target_resolution, AggrChunk, DownsampleOptions, DownsampleProgress};
use crate::block::pipeline::{self, series_chunk};
use crate::block::writer::{sync_dir, write_synced};
use crate::block::{Block, BlockWriter, ChunkToWrite, META_FILE};
use crate::error::{AtPath, Error, Result};
use crate::format::chunks::{ChunkMeta, Encoding};
use crate::format::index::SeriesRefs;
use crate::format::meta::{BlockMeta, ThanosMeta, ZERO_TIME};
use crate::labels::LabelPairs;

/// A series read from the source index: labels borrowed from the mapped index.
struct Pending<'a> {
    id: u32,
    labels: Vec<(&'a [u8], &'a [u8])>,
    chunks: Vec<ChunkMeta>,
}

struct SeriesOut<'a> {
    labels: Vec<(&'a [u8], &'a [u8])>,
    chunks: Vec<AggrChunk>,
    bytes_in: u64,
}

/// The meta of the downsampled block, as Thanos's downsampler writes it: a copy of the
/// source's with the new resolution, `source: compactor` and format version 1. Time range,
/// `compaction` (level, sources, parents) and external labels stay the source's, which is
/// how a raw block is later recognised as downsampled. Stats, `segment_files` and
/// `index_stats` are filled in when the block is written. `files` and `upload_time` are
/// reset (Thanos sets both at upload).
pub fn downsampled_meta(src: &BlockMeta, resolution: i64) -> BlockMeta {
    let mut m = src.clone();
    m.version = 1;
    let t = m.thanos.get_or_insert_with(ThanosMeta::default);
    t.downsample.resolution = resolution;
    t.source = "compactor".into();
    t.files.clear();
    t.segment_files.clear();
    t.upload_time = ZERO_TIME.into();
    m
}

/// Downsamples `src` (raw → 5m, or 5m → 1h) into a new block under `out_parent`; see
/// [`downsample_block_with_progress`].
pub fn downsample_block(src: &Block, out_parent: &Path, opts: &DownsampleOptions) -> Result<(PathBuf, BlockMeta)> {
    downsample_block_with_progress(src, out_parent, opts, &|_| {})
}

/// Downsamples `src` into a new block under `out_parent`: raw blocks to 5m, 5m blocks to
/// 1h (1h blocks are an error). The block is written crash-safely and always written,
/// even when no series has data left (Thanos uploads such a block too, and it records
/// that the source is done). `progress` is called after every written batch. A broken
/// chunk or series fails the whole block with an error naming both; nothing is left
/// behind in `out_parent` then.
pub fn downsample_block_with_progress<'a>(
    src: &'a Block,
    out_parent: &Path,
    opts: &DownsampleOptions,
    progress: &(dyn Fn(DownsampleProgress) + Sync),
) -> Result<(PathBuf, BlockMeta)> {
    let from = src.meta.resolution();
    let to = target_resolution(from).ok_or_else(|| {
        Error::BadRequest(format!(
            "{}: block {} has resolution {from} ms, which is not downsampled further",
            src.dir.display(),
            src.meta.ulid
        ))
    })?;
    let index = src.index()?;
    let index_path = src.index_path();
    std::fs::create_dir_all(out_parent).at(out_parent)?;
    // Streamed from the mapped table; the reader decoded every symbol when it opened.
    let symbols = index.symbols().map_while(|r| r.ok());
    let mut writer = BlockWriter::with_segment_size(out_parent, Ulid::new(), symbols, opts.segment_size)?;
    let mut postings = index.all_postings().at(&index_path)?;
    let limits = opts.batch;

    let index_ref = &index;
    let index_path_ref = &index_path;
    let mut refs = SeriesRefs::default();
    let mut batches = 0;
    let gather = move || -> Result<Option<Vec<Pending<'a>>>> {
        let limit = limits.ramp(batches);
        batches += 1;
        let mut group = Vec::with_capacity(limit.series.min(4096));
        let (mut chunks, mut bytes) = (0usize, 0usize);
        while !limit.reached(group.len(), chunks, bytes) {
            let Some(id) = postings.next() else { break };
            let mut labels = Vec::with_capacity(refs.labels.len().max(8));
            index_ref.series_borrowed(id, &mut refs, &mut labels).at(index_path_ref)?;
            chunks += refs.chunks.len();
            bytes += refs.chunks.iter().map(|c| src.chunk_record_len(c.chunk_ref)).sum::<usize>();
            group.push(Pending { id, labels, chunks: std::mem::take(&mut refs.chunks) });
        }
        Ok((!group.is_empty()).then_some(group))
    };
    let process = |group: Vec<Pending<'a>>| {
        group.into_par_iter().map_init(Scratch::default, |s, p| series(src, p, from, to, s)).collect::<Result<Vec<_>>>()
    };
    let writer_ref = &mut writer;
    let write = move |batches: &mut dyn Iterator<Item = Vec<SeriesOut<'a>>>| -> Result<()> {
        let mut done = DownsampleProgress::default();
        for outs in batches {
            for s in outs {
                let chunks: Vec<ChunkToWrite<'_>> = s
                    .chunks
                    .iter()
                    .map(|c| ChunkToWrite {
                        encoding: Encoding::Aggr as u8,
                        data: &c.data,
                        min_time: c.min_time,
                        max_time: c.max_time,
                        record: None,
                    })
                    .collect();
                writer_ref.add_series(&s.labels, &chunks)?;
                done.series += 1;
                done.chunk_bytes_in += s.bytes_in;
                done.chunks_out += chunks.len() as u64;
            }
            progress(done);
        }
        Ok(())
    };
    pipeline::run(2, gather, process, write)?;

    let meta = downsampled_meta(&src.meta, to);
    // Thanos's downsampled blocks have no tombstones file.
    let (dir, mut meta) = writer.finish(meta, None)?;
    // Thanos replaces only numSamples, numSeries and numChunks of the copied stats.
    let (f, h) = (src.meta.stats.num_float_samples, src.meta.stats.num_histogram_samples);
    if meta.stats.num_float_samples != f || meta.stats.num_histogram_samples != h {
        meta.stats.num_float_samples = f;
        meta.stats.num_histogram_samples = h;
        replace_meta(&dir, &meta)?;
    }
    Ok((dir, meta))
}

/// Rewrites a complete block's meta.json atomically (temporary file, fsync, rename).
fn replace_meta(dir: &Path, meta: &BlockMeta) -> Result<()> {
    let tmp = dir.join(format!("{META_FILE}.tmp"));
    write_synced(&tmp, &meta.to_json())?;
    let dst = dir.join(META_FILE);
    std::fs::rename(&tmp, &dst).at(&dst)?;
    sync_dir(dir)
}

/// Aggregates one series, its chunk bytes borrowed from the source's mapped segments.
fn series<'a>(src: &'a Block, p: Pending<'a>, from: i64, to: i64, s: &mut Scratch) -> Result<SeriesOut<'a>> {
    let bad = |problem: String, path: PathBuf| {
        Error::BadSeries { path, series: p.labels.to_label_string(), problem }.in_block(src.meta.ulid)
    };
    let mut ins = Vec::with_capacity(p.chunks.len());
    let mut bytes_in = 0u64;
    for m in &p.chunks {
        let raw = series_chunk(src, m.chunk_ref, &p.labels)?;
        bytes_in += raw.data.len() as u64;
        ins.push(InChunk { min_time: m.min_time, max_time: m.max_time, encoding: raw.encoding, data: raw.data });
    }
    let mut chunks = Vec::new();
    downsample_series(&ins, from, to, src.tombstones.get(p.id as u64), s, &mut chunks)
        .map_err(|e| bad(e.to_string(), src.dir.clone()))?;
    Ok(SeriesOut { labels: p.labels, chunks, bytes_in })
}
