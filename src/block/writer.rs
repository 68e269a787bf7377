//! Writing a block directory crash-safely.
//!
//! Everything goes into `<parent>/<ULID>.tmp-for-creation/`; files and directories are
//! fsynced, and only then is the directory renamed to `<parent>/<ULID>`. A reader (or
//! Prometheus) therefore sees either no block or a complete one. A writer that is
//! dropped without `finish` removes its temporary directory.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use ulid::Ulid;

use super::direct::SegmentFile;
use super::{CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE};
use crate::error::{AtPath, Error, Result};
use crate::format::chunks::{
    budget_len, record_crc, segment_header, ChunkMeta, ChunkRef, Encoding, DEFAULT_SEGMENT_SIZE, SEGMENT_HEADER_LEN,
};
use crate::format::encoding::put_uvarint;
use crate::format::index::{IndexWriter, WriteError};
use crate::format::meta::BlockMeta;
use crate::format::tombstones::Tombstones;
use crate::labels::LabelPairs;

/// A chunk handed to the writer: its encoding, payload and closed time range.
#[derive(Clone, Copy, Debug)]
pub struct ChunkToWrite<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
    pub min_time: i64,
    pub max_time: i64,
    /// The chunk already framed as a segment record (length, encoding, `data`, CRC):
    /// copied from a source segment, or framed by whoever encoded it. Written as is;
    /// `None` has the writer frame it.
    pub record: Option<&'a [u8]>,
}

impl ChunkToWrite<'_> {
    /// Samples counted in the chunk's header (the count slot for aggregate chunks).
    pub fn num_samples(&self) -> u64 {
        match Encoding::from_byte(self.encoding) {
            Some(Encoding::Aggr) => crate::format::aggr::count_samples(self.data),
            _ if self.data.len() >= 2 => u16::from_be_bytes([self.data[0], self.data[1]]) as u64,
            _ => 0,
        }
    }
}

/// What a finished block holds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub num_series: u64,
    pub num_chunks: u64,
    pub num_samples: u64,
    pub num_float_samples: u64,
    pub num_histogram_samples: u64,
    /// Largest series entry in the index, in bytes (Thanos `index_stats`).
    pub series_max_size: i64,
    /// Largest chunk record, in bytes (Thanos `index_stats`).
    pub chunk_max_size: i64,
    pub segment_files: Vec<String>,
}

/// Chunk bytes written between two early writebacks (see [`Writeback`]).
const WRITEBACK_BYTES: u64 = 16 << 20;

/// Starts the disk writing segment data while the block is still being built: every
/// [`WRITEBACK_BYTES`], a second handle of the open segment file is fsynced on a
/// background thread, so the final fsync before the rename finds little left to write
/// and the disk works while the merge computes. A kick is skipped while the previous
/// one is still syncing (the writer never waits for it). Durability still rests on the
/// final fsync of every file; a failed early sync is reported by [`finish`](Self::finish).
#[derive(Default)]
struct Writeback {
    tx: Option<std::sync::mpsc::SyncSender<(File, PathBuf)>>,
    thread: Option<std::thread::JoinHandle<Result<()>>>,
    since: u64,
}

impl Writeback {
    /// Counts `bytes` written to `file`; hands it to the syncing thread once enough are.
    fn wrote(&mut self, bytes: u64, file: &File, path: &Path) {
        self.since += bytes;
        if self.since < WRITEBACK_BYTES {
            return;
        }
        self.kick(file, path);
    }

    fn kick(&mut self, file: &File, path: &Path) {
        self.since = 0;
        if self.tx.is_none() {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(File, PathBuf)>(1);
            let spawned = std::thread::Builder::new().name("strata-writeback".into()).spawn(move || -> Result<()> {
                for (f, p) in rx {
                    f.sync_data().at(&p)?;
                }
                Ok(())
            });
            // Without a thread, the final fsync does all the work, as it would anyway.
            let Ok(thread) = spawned else { return };
            self.tx = Some(tx);
            self.thread = Some(thread);
        }
        if let (Some(tx), Ok(f)) = (&self.tx, file.try_clone()) {
            let _ = tx.try_send((f, path.to_path_buf()));
        }
    }

    /// Stops the thread; the first error of an early sync, if any.
    fn finish(&mut self) -> Result<()> {
        self.tx = None;
        match self.thread.take() {
            Some(t) => t.join().expect("writeback thread panicked"),
            None => Ok(()),
        }
    }
}

/// How a block's chunk segments are written.
#[derive(Clone, Copy, Debug)]
pub struct SegmentOptions {
    /// Size limit of one segment file.
    pub size: u64,
    /// Write around the page cache (`O_DIRECT`, where the filesystem takes it): right for
    /// output nobody reads again soon (offline compaction), wrong for output read back at
    /// once (the job verifies and uploads each block it writes). See `direct.rs`.
    pub direct_io: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions { size: DEFAULT_SEGMENT_SIZE, direct_io: true }
    }
}

struct SegmentWriter {
    dir: PathBuf,
    limit: u64,
    direct_io: bool,
    file: Option<SegmentFile>,
    /// Finished segment files, fsynced together when the block is finished.
    closed: Vec<(File, PathBuf)>,
    seq: u32,
    size: u64,
    buf: Vec<u8>,
    names: Vec<String>,
    writeback: Writeback,
}

impl SegmentWriter {
    fn cut(&mut self) -> Result<()> {
        self.close_current()?;
        self.seq += 1;
        let name = format!("{:06}", self.seq);
        let path = self.dir.join(&name);
        let mut w = SegmentFile::create(&path, self.direct_io)?;
        w.write_all(&segment_header())?;
        self.size = SEGMENT_HEADER_LEN as u64;
        self.names.push(name);
        self.file = Some(w);
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(w) = self.file.take() {
            let path = w.path().to_path_buf();
            let buffered = !w.is_direct();
            let f = w.close()?;
            if buffered {
                self.writeback.kick(&f, &path);
            }
            self.closed.push((f, path));
        }
        Ok(())
    }

    /// Writes one series' chunks with Prometheus's cutting rule (`Writer.WriteChunks`):
    /// the first chunks go into the current file while they fit (each budgeted at its
    /// length plus 10 bytes of framing); once one does not fit, a new file is cut, and
    /// from then on a new file is cut whenever the next batch would outgrow an empty one.
    fn write_series(
        &mut self,
        chunks: &[ChunkToWrite<'_>],
        metas: &mut Vec<ChunkMeta>,
        max_chunk: &mut i64,
    ) -> Result<()> {
        if self.file.is_none() {
            self.cut()?;
        }
        let header = SEGMENT_HEADER_LEN as u64;
        // Split into batches, each written to its own file after the first.
        let mut cuts: Vec<usize> = Vec::new();
        let mut batch = 0u64;
        let mut first_batch = true;
        for (i, c) in chunks.iter().enumerate() {
            let size = budget_len(c.data.len());
            batch += size;
            let mut cut = i != 0 && batch + header > self.limit;
            if first_batch && self.size > header {
                cut = batch + self.size > self.limit;
                if cut {
                    first_batch = false;
                }
            }
            if cut {
                cuts.push(i);
                batch = size;
            }
        }
        let mut next_cut = cuts.into_iter().peekable();
        for (i, c) in chunks.iter().enumerate() {
            if next_cut.peek() == Some(&i) {
                next_cut.next();
                if i > 0 || self.size > header {
                    self.cut()?;
                }
            }
            let offset = u32::try_from(self.size).map_err(|_| Error::BadWrite {
                path: self.file.as_ref().map_or_else(|| self.dir.clone(), |f| f.path().to_path_buf()),
                problem: "segment file would exceed 4 GiB".into(),
            })?;
            // The record (see `chunks::write_chunk`) goes straight into the file's
            // buffer: the payload is copied once.
            let w = self.file.as_mut().expect("segment open");
            let len = match c.record {
                Some(record) => {
                    debug_assert!(
                        record.len() > c.data.len() + 5
                            && record[record.len() - 4 - c.data.len()..record.len() - 4] == *c.data
                    );
                    w.write_all(record)?;
                    record.len() as u64
                }
                None => {
                    self.buf.clear();
                    put_uvarint(&mut self.buf, c.data.len() as u64);
                    self.buf.push(c.encoding);
                    let crc = record_crc(c.encoding, c.data);
                    w.write_all(&self.buf)?;
                    w.write_all(c.data)?;
                    w.write_all(&crc.to_be_bytes())?;
                    (self.buf.len() + c.data.len() + 4) as u64
                }
            };
            if let Some(f) = w.buffered_file() {
                self.writeback.wrote(len, f, w.path());
            }
            self.size += len;
            *max_chunk = (*max_chunk).max(len as i64);
            let segment = self.names.len() as u32 - 1;
            metas.push(ChunkMeta {
                min_time: c.min_time,
                max_time: c.max_time,
                chunk_ref: ChunkRef::new(segment, offset),
            });
        }
        Ok(())
    }
}

/// Builds one block. Create it with the block's symbols (every label name and value of
/// every series, sorted), add series in label order, then [`finish`](Self::finish).
pub struct BlockWriter {
    parent: PathBuf,
    ulid: Ulid,
    tmp: PathBuf,
    segments: SegmentWriter,
    index: Option<IndexWriter<BufWriter<File>>>,
    stats: WriteStats,
    metas: Vec<ChunkMeta>,
    done: bool,
}

fn index_err(path: &Path, e: WriteError) -> Error {
    match e {
        WriteError::Io(e) => Error::io(path, e),
        WriteError::Invalid(problem) => Error::BadWrite { path: path.to_path_buf(), problem },
    }
}

impl BlockWriter {
    /// Starts a block `ulid` under `parent` (the data directory).
    pub fn new<S: AsRef<[u8]>>(parent: &Path, ulid: Ulid, symbols: impl IntoIterator<Item = S>) -> Result<BlockWriter> {
        Self::with_segment_size(parent, ulid, symbols, DEFAULT_SEGMENT_SIZE)
    }

    /// As [`new`](Self::new) with a different segment size (tests use small ones).
    pub fn with_segment_size<S: AsRef<[u8]>>(
        parent: &Path,
        ulid: Ulid,
        symbols: impl IntoIterator<Item = S>,
        segment_size: u64,
    ) -> Result<BlockWriter> {
        Self::with_segments(parent, ulid, symbols, SegmentOptions { size: segment_size, ..Default::default() })
    }

    /// As [`new`](Self::new) with segments written as `segments` says.
    pub fn with_segments<S: AsRef<[u8]>>(
        parent: &Path,
        ulid: Ulid,
        symbols: impl IntoIterator<Item = S>,
        segments: SegmentOptions,
    ) -> Result<BlockWriter> {
        let tmp = parent.join(format!("{ulid}.tmp-for-creation"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).at(&tmp)?;
        }
        let chunks = tmp.join(CHUNKS_DIR);
        fs::create_dir_all(&chunks).at(&chunks)?;
        let index_path = tmp.join(INDEX_FILE);
        let f = File::create(&index_path).at(&index_path)?;
        let mut index =
            IndexWriter::new(BufWriter::with_capacity(1 << 20, f)).map_err(|e| index_err(&index_path, e))?;
        index.add_symbols(symbols).map_err(|e| index_err(&index_path, e))?;
        Ok(BlockWriter {
            parent: parent.to_path_buf(),
            ulid,
            tmp,
            segments: SegmentWriter {
                dir: chunks,
                limit: segments.size,
                direct_io: segments.direct_io,
                file: None,
                closed: Vec::new(),
                seq: 0,
                size: 0,
                buf: Vec::new(),
                names: Vec::new(),
                writeback: Writeback::default(),
            },
            index: Some(index),
            stats: WriteStats::default(),
            metas: Vec::new(),
            done: false,
        })
    }

    pub fn ulid(&self) -> Ulid {
        self.ulid
    }

    /// Adds a series with its chunks (in time order, not overlapping) and returns its
    /// series ref in the new index. A series with no chunks is skipped, as Prometheus
    /// skips it (`None`).
    pub fn add_series<L: LabelPairs + ?Sized>(
        &mut self,
        labels: &L,
        chunks: &[ChunkToWrite<'_>],
    ) -> Result<Option<u32>> {
        if chunks.is_empty() {
            return Ok(None);
        }
        let mut metas = std::mem::take(&mut self.metas);
        metas.clear();
        self.segments.write_series(chunks, &mut metas, &mut self.stats.chunk_max_size)?;
        let index_path = self.tmp.join(INDEX_FILE);
        let index = self.index.as_mut().expect("index open");
        let id = index.add_series(labels, &metas).map_err(|e| index_err(&index_path, e))?;
        self.stats.series_max_size = self.stats.series_max_size.max(index.last_entry_len() as i64);
        self.stats.num_series += 1;
        self.stats.num_chunks += chunks.len() as u64;
        for c in chunks {
            let n = c.num_samples();
            self.stats.num_samples += n;
            match Encoding::from_byte(c.encoding) {
                Some(Encoding::Histogram) | Some(Encoding::FloatHistogram) => self.stats.num_histogram_samples += n,
                _ => self.stats.num_float_samples += n,
            }
        }
        self.metas = metas;
        Ok(Some(id))
    }

    pub fn stats(&self) -> &WriteStats {
        &self.stats
    }

    /// Completes the block: index, the tombstones file (Prometheus always writes one,
    /// empty after compaction; Thanos's compactor output has none: pass `None`),
    /// meta.json with the stats filled in, fsync, rename into place. Returns the final
    /// directory and the meta written.
    pub fn finish(mut self, mut meta: BlockMeta, tombstones: Option<&Tombstones>) -> Result<(PathBuf, BlockMeta)> {
        self.segments.close_current()?;
        // The segment files are made durable while the index is finished (its postings
        // are sorted and written only now), the remaining fsyncs after that.
        let segments: Vec<(File, PathBuf)> = std::mem::take(&mut self.segments.closed);
        let mut writeback = std::mem::take(&mut self.segments.writeback);
        let (index_file, index_path) = std::thread::scope(|s| -> Result<(File, PathBuf)> {
            let synced = s.spawn(|| -> Result<()> {
                writeback.finish()?;
                sync_all_concurrently(segments.iter().map(|(f, p)| (f, p.as_path())))
            });
            let index_path = self.tmp.join(INDEX_FILE);
            let index = self
                .index
                .take()
                .expect("index open")
                .finish()
                .map_err(|e| index_err(&index_path, e))
                .and_then(|w| w.into_inner().map_err(|e| Error::io(&index_path, e.into_error())));
            let segments_synced = synced.join().expect("fsync thread panicked");
            let index = index?;
            segments_synced?;
            Ok((index, index_path))
        })?;
        let mut files: Vec<(File, PathBuf)> = vec![(index_file, index_path)];
        if let Some(t) = tombstones {
            let p = self.tmp.join(TOMBSTONES_FILE);
            files.push((write_unsynced(&p, &t.write())?, p));
        }
        self.stats.segment_files = self.segments.names.clone();
        meta.ulid = self.ulid;
        meta.stats.num_series = self.stats.num_series;
        meta.stats.num_chunks = self.stats.num_chunks;
        meta.stats.num_samples = self.stats.num_samples;
        meta.stats.num_float_samples = self.stats.num_float_samples;
        meta.stats.num_histogram_samples = self.stats.num_histogram_samples;
        meta.stats.num_tombstones = tombstones.map(|t| t.num_intervals()).unwrap_or(0);
        if let Some(t) = meta.thanos.as_mut() {
            t.segment_files = self.stats.segment_files.clone();
            t.index_stats.series_max_size = self.stats.series_max_size;
            t.index_stats.chunk_max_size = self.stats.chunk_max_size;
        }
        let meta_path = self.tmp.join(META_FILE);
        files.push((write_unsynced(&meta_path, &meta.to_json())?, meta_path));
        // Every file, then both directories, made durable before the rename; the
        // fsyncs of independent files run at the same time.
        sync_all_concurrently(files.iter().map(|(f, p)| (f, p.as_path())))?;
        let dirs = [self.tmp.join(CHUNKS_DIR), self.tmp.clone()];
        let handles = dirs.iter().map(|d| File::open(d).at(d).map(|f| (f, d.as_path()))).collect::<Result<Vec<_>>>()?;
        sync_all_concurrently(handles.iter().map(|(f, p)| (f, *p)))?;
        let fin = self.parent.join(self.ulid.to_string());
        fs::rename(&self.tmp, &fin).at(&fin)?;
        sync_dir(&self.parent)?;
        self.done = true;
        Ok((fin, meta))
    }
}

/// Writes a file without fsyncing it; returns the open handle for a later fsync.
fn write_unsynced(path: &Path, bytes: &[u8]) -> Result<File> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    Ok(f)
}

/// Fsyncs files (or directories) at the same time, one thread each; the first error wins.
pub fn sync_all_concurrently<'a>(files: impl Iterator<Item = (&'a File, &'a Path)>) -> Result<()> {
    let files: Vec<(&File, &Path)> = files.collect();
    if files.len() <= 1 {
        return files.into_iter().try_for_each(|(f, p)| f.sync_all().at(p));
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = files.iter().map(|&(f, p)| s.spawn(move || f.sync_all().at(p))).collect();
        handles.into_iter().map(|h| h.join().expect("fsync thread panicked")).collect::<Result<Vec<()>>>().map(|_| ())
    })
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Writes a file and fsyncs it.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).at(path)?;
    f.write_all(bytes).at(path)?;
    f.sync_all().at(path)
}

/// Fsyncs a directory so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}
