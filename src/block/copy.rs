//! Copying a block through strata's reader and writer, chunk bytes untouched.
//!
//! This is the round trip the format tests rely on, and `strata compact`'s path for a
//! block that needs no merging: series are re-indexed, chunks are copied as bytes
//! (never decoded), tombstones are carried over with their series refs remapped.

use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::{Block, BlockWriter, ChunkToWrite};
use crate::error::{AtPath, Result};
use crate::format::meta::BlockMeta;
use crate::format::tombstones::Tombstones;

/// Writes a copy of `src` under `parent` as block `ulid`, with segment files of at most
/// `segment_size` bytes. The meta is the source's, with stats recomputed.
pub fn copy_block(src: &Block, parent: &Path, ulid: Ulid, segment_size: u64) -> Result<(PathBuf, BlockMeta)> {
    let index = src.index()?;
    let symbols: Vec<&[u8]> = index.symbols().collect::<std::result::Result<_, _>>().at(&src.index_path())?;
    let mut w = BlockWriter::with_segment_size(parent, ulid, &symbols, segment_size)?;
    let mut tombstones = Tombstones::default();
    for entry in src.series(&index)? {
        let entry = entry?;
        let raws = entry.chunks.iter().map(|m| src.chunk(m.chunk_ref).map(|c| (m, c))).collect::<Result<Vec<_>>>()?;
        let chunks: Vec<ChunkToWrite<'_>> = raws
            .iter()
            .map(|(m, c)| ChunkToWrite {
                encoding: c.encoding,
                data: c.data,
                min_time: m.min_time,
                max_time: m.max_time,
                record: Some(c.record),
            })
            .collect();
        if let Some(new_id) = w.add_series(&entry.labels, &chunks)? {
            for iv in src.tombstones.get(entry.id as u64) {
                tombstones.add(new_id as u64, *iv);
            }
        }
    }
    let mut meta = src.meta.clone();
    meta.ulid = ulid;
    if meta.compaction.sources == [src.meta.ulid] {
        meta.compaction.sources = vec![ulid];
    }
    w.finish(meta, Some(&tombstones))
}
