//! One block directory: open it, read its series and chunks; write a new one.
//!
//! Owns: the mapping between a block's files (`meta.json`, `index`, `chunks/NNNNNN`,
//! `tombstones`) and the format readers, attaching the path to every error; listing the
//! blocks of a data directory; and [`BlockWriter`], which builds a block crash-safely.
//! Must not: plan, merge or delete blocks it did not create.

mod copy;
mod dir;
mod direct;
pub mod pipeline;
pub mod writer;

pub use copy::copy_block;
pub use dir::{list_blocks, BlockDirEntry};
pub use writer::{BlockWriter, ChunkToWrite, SegmentOptions, WriteStats};

use std::path::{Path, PathBuf};

use crate::error::{AtPath, Error, FormatError, Result};
use crate::format::chunks::{check_segment_header, read_chunk, ChunkMeta, ChunkRef, RawChunk};
use crate::format::index::IndexReader;
use crate::format::meta::BlockMeta;
use crate::format::tombstones::Tombstones;
use crate::labels::Labels;
use crate::mmap::FileBytes;

pub const META_FILE: &str = "meta.json";
pub const INDEX_FILE: &str = "index";
pub const CHUNKS_DIR: &str = "chunks";
pub const TOMBSTONES_FILE: &str = "tombstones";

/// One segment file of a block.
pub struct Segment {
    /// File name, e.g. `000001`.
    pub name: String,
    pub path: PathBuf,
    pub bytes: FileBytes,
}

/// An opened block: meta parsed, files mapped, tombstones loaded.
pub struct Block {
    pub dir: PathBuf,
    pub meta: BlockMeta,
    pub tombstones: Tombstones,
    index: FileBytes,
    segments: Vec<Segment>,
}

/// Segment file names of `chunks/`, sorted; the position in this list is a chunk ref's
/// segment number.
pub fn segment_names(chunks_dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(chunks_dir).at(chunks_dir)? {
        let e = e.at(chunks_dir)?;
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl Block {
    /// Opens the block in `dir`: meta.json, index and every segment (headers checked),
    /// tombstones (a missing file reads as empty).
    /// Errors name the block: its directory's ULID, or the one in its meta.json.
    pub fn open(dir: &Path) -> Result<Block> {
        let named = dir.file_name().and_then(|n| n.to_str()).and_then(|n| ulid::Ulid::from_string(n).ok());
        let mut from_meta = None;
        Self::open_unnamed(dir, &mut from_meta).map_err(|e| match named.or(from_meta) {
            Some(id) => e.in_block(id),
            None => e,
        })
    }

    fn open_unnamed(dir: &Path, ulid: &mut Option<ulid::Ulid>) -> Result<Block> {
        let meta_path = dir.join(META_FILE);
        let meta_bytes = std::fs::read(&meta_path).at(&meta_path)?;
        let meta = BlockMeta::parse(&meta_bytes).at(&meta_path)?;
        *ulid = Some(meta.ulid);
        let index_path = dir.join(INDEX_FILE);
        let index = FileBytes::open(&index_path)?;
        let chunks_dir = dir.join(CHUNKS_DIR);
        let mut segments = Vec::new();
        let names = if chunks_dir.is_dir() { segment_names(&chunks_dir)? } else { Vec::new() };
        for name in names {
            let path = chunks_dir.join(&name);
            let bytes = FileBytes::open(&path)?;
            check_segment_header(&bytes).at(&path)?;
            segments.push(Segment { name, path, bytes });
        }
        let ts_path = dir.join(TOMBSTONES_FILE);
        let tombstones = match std::fs::read(&ts_path) {
            Ok(b) => Tombstones::read(&b).at(&ts_path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tombstones::default(),
            Err(e) => return Err(Error::io(&ts_path, e)),
        };
        Ok(Block { dir: dir.to_path_buf(), meta, tombstones, index, segments })
    }

    pub fn index_path(&self) -> PathBuf {
        self.dir.join(INDEX_FILE)
    }

    pub fn index_bytes(&self) -> &[u8] {
        &self.index
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Parses the index (TOC, symbol table and postings offset table are checked).
    pub fn index(&self) -> Result<IndexReader<'_>> {
        IndexReader::new(&self.index).at(&self.index_path()).map_err(|e| e.in_block(self.meta.ulid))
    }

    /// The chunk a ref points at, CRC-checked.
    pub fn chunk(&self, r: ChunkRef) -> Result<RawChunk<'_>> {
        self.chunk_unnamed(r).map_err(|e| e.in_block(self.meta.ulid))
    }

    fn chunk_unnamed(&self, r: ChunkRef) -> Result<RawChunk<'_>> {
        let seg = self.segments.get(r.segment() as usize).ok_or_else(|| {
            Error::corrupt(
                self.dir.join(CHUNKS_DIR),
                FormatError::new(
                    "chunk ref",
                    r.0,
                    format!(
                        "chunk ref {r} names segment {} but the block has {} segment files",
                        r.segment(),
                        self.segments.len()
                    ),
                ),
            )
        })?;
        read_chunk(&seg.bytes, r.offset()).at(&seg.path)
    }

    /// The size of the chunk record `r` points at (length, encoding, data, CRC), read from
    /// its length field alone: what a batch of series costs before it is read. A ref that
    /// points nowhere counts as 0 (reading the chunk reports it).
    pub fn chunk_record_len(&self, r: ChunkRef) -> usize {
        let Some(seg) = self.segments.get(r.segment() as usize) else { return 0 };
        let at = r.offset() as usize;
        match seg.bytes.get(at..).and_then(crate::format::encoding::read_uvarint) {
            Some((len, n)) => n + 1 + len as usize + 4,
            None => 0,
        }
    }

    /// Iterates series in index order with their chunk metas.
    pub fn series<'a>(&'a self, index: &'a IndexReader<'a>) -> Result<impl Iterator<Item = Result<SeriesEntry>> + 'a> {
        let ids = index.all_postings().at(&self.index_path())?;
        let path = self.index_path();
        Ok(ids.map(move |id| {
            let mut e = SeriesEntry { id, labels: Labels::new(), chunks: Vec::new() };
            index.series(id, &mut e.labels, &mut e.chunks).at(&path)?;
            Ok(e)
        }))
    }
}

/// A series as listed in the index.
#[derive(Clone, Debug, Default)]
pub struct SeriesEntry {
    pub id: u32,
    pub labels: Labels,
    pub chunks: Vec<ChunkMeta>,
}
