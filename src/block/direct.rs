//! Chunk segment files written with direct I/O (`O_DIRECT`) where the filesystem takes
//! it, through the page cache where it does not.
//!
//! Owns: one segment file being written in order, its staging buffers and the thread
//! that hands full buffers to the disk. Must not: know what the bytes are (the segment
//! format is the block writer's), fsync (the block writer makes every file durable
//! before the rename, as for buffered files).
//!
//! Why: a compactor writes gigabytes that nobody reads again soon. Through the page
//! cache each byte is first copied into a newly allocated cache page, written back later
//! and dropped when the block is removed; on the project's 2-core VM that copy alone ran
//! at 0.4-1.3 GB/s, slower than the disk (dd of 2.94 GB: 6.3-8.4 s buffered with fsync,
//! 1.6-2.5 s with `oflag=direct`, docs/performance.md). With `O_DIRECT` the disk reads
//! the staging buffer itself: the writer fills one 2 MiB buffer while the I/O thread
//! writes the other.
//!
//! Direct writes need the buffer address, the file offset and the length aligned to the
//! device's logical block size; everything here is aligned to 4096, the largest in
//! common use. The last, partial buffer of a file is padded with zeros to 4096 and the
//! file is truncated to its real length afterwards. A filesystem that refuses `O_DIRECT`
//! at open (tmpfs) gets a buffered file; one that accepts it at open but refuses a write
//! (EINVAL) gets the rest of that file, from the refused write on, through a buffered
//! handle on the same path.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{AtPath, Error, Result};

/// Alignment of direct writes: buffer address, file offset and length.
const ALIGN: usize = 4096;
/// One staging buffer; two exist per file being written.
const STAGING: usize = 2 << 20;
/// The buffered writer's buffer, where direct I/O is not available.
const BUFFERED: usize = 1 << 20;

/// A segment file being written; see the module docs.
pub(crate) struct SegmentFile {
    path: PathBuf,
    inner: Inner,
}

enum Inner {
    Buffered(BufWriter<File>),
    Direct(Direct),
}

impl SegmentFile {
    /// Creates (or truncates) `path`: with direct I/O when `direct` asks for it and the
    /// filesystem takes it, through the page cache otherwise.
    pub fn create(path: &Path, direct: bool) -> Result<SegmentFile> {
        if !direct {
            let f = File::create(path).at(path)?;
            return Ok(SegmentFile {
                path: path.to_path_buf(),
                inner: Inner::Buffered(BufWriter::with_capacity(BUFFERED, f)),
            });
        }
        let direct = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path);
        let inner = match direct {
            Ok(f) => Inner::Direct(Direct::start(f, path)?),
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                Inner::Buffered(BufWriter::with_capacity(BUFFERED, File::create(path).at(path)?))
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(SegmentFile { path: path.to_path_buf(), inner })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the bytes go around the page cache.
    pub fn is_direct(&self) -> bool {
        matches!(self.inner, Inner::Direct(_))
    }

    /// The open file of a buffered segment (for early writeback); `None` when direct.
    pub fn buffered_file(&self) -> Option<&File> {
        match &self.inner {
            Inner::Buffered(w) => Some(w.get_ref()),
            Inner::Direct(_) => None,
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.inner {
            Inner::Buffered(w) => w.write_all(bytes).at(&self.path),
            Inner::Direct(d) => d.write_all(bytes, &self.path),
        }
    }

    /// Writes what is still buffered and returns the file, not yet fsynced.
    pub fn close(self) -> Result<File> {
        match self.inner {
            Inner::Buffered(w) => w.into_inner().map_err(|e| Error::io(&self.path, e.into_error())),
            Inner::Direct(d) => d.close(&self.path),
        }
    }
}

/// A staging buffer whose usable part starts at a 4096-aligned address. The Vec's heap
/// allocation does not move when the struct does, so the offset stays valid.
struct Aligned {
    raw: Vec<u8>,
    start: usize,
}

impl Aligned {
    fn new() -> Aligned {
        let raw = vec![0u8; STAGING + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        Aligned { raw, start }
    }

    fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + STAGING]
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + STAGING]
    }
}

/// A full buffer for the I/O thread: write `len` bytes of it at `offset`.
struct Job {
    buf: Aligned,
    offset: u64,
    len: usize,
}

struct Direct {
    file: Arc<File>,
    /// The buffer being filled, and how much of it is.
    buf: Aligned,
    filled: usize,
    /// File offset of `buf`'s first byte.
    offset: u64,
    spare: Option<Aligned>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Aligned>,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Direct {
    fn start(file: File, path: &Path) -> Result<Direct> {
        let file = Arc::new(file);
        let (jobs, rx) = sync_channel::<Job>(1);
        let (back, done) = sync_channel::<Aligned>(2);
        let (f, p) = (file.clone(), path.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("strata-segment-io".into())
            .spawn(move || write_jobs(&f, &p, rx, back))
            .at(path)?;
        Ok(Direct {
            file,
            buf: Aligned::new(),
            filled: 0,
            offset: 0,
            spare: Some(Aligned::new()),
            jobs: Some(jobs),
            done,
            thread: Some(thread),
        })
    }

    fn write_all(&mut self, mut bytes: &[u8], path: &Path) -> Result<()> {
        while !bytes.is_empty() {
            let n = (STAGING - self.filled).min(bytes.len());
            self.buf.bytes_mut()[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == STAGING {
                self.submit(STAGING, path)?;
            }
        }
        Ok(())
    }

    /// Hands the current buffer (`len` bytes of it, aligned) to the I/O thread and takes
    /// a free one, waiting for the disk when both are in use.
    fn submit(&mut self, len: usize, path: &Path) -> Result<()> {
        let next = match self.spare.take() {
            Some(b) => b,
            None => match self.done.recv() {
                Ok(b) => b,
                Err(_) => return Err(self.failure(path)),
            },
        };
        let buf = std::mem::replace(&mut self.buf, next);
        let job = Job { buf, offset: self.offset, len };
        let sent = self.jobs.as_ref().map(|j| j.send(job).is_ok()).unwrap_or(false);
        if !sent {
            return Err(self.failure(path));
        }
        self.offset += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// The I/O thread's error once it has stopped.
    fn failure(&mut self, path: &Path) -> Error {
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Err(e))) => Error::io(path, e),
            _ => Error::io(path, std::io::Error::other("segment writer thread stopped")),
        }
    }

    fn close(mut self, path: &Path) -> Result<File> {
        let size = self.offset + self.filled as u64;
        if self.filled > 0 {
            let padded = self.filled.next_multiple_of(ALIGN);
            self.buf.bytes_mut()[self.filled..padded].fill(0);
            self.submit(padded, path)?;
        }
        self.jobs = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(Ok(()))) => {}
            Some(Ok(Err(e))) => return Err(Error::io(path, e)),
            _ => return Err(Error::io(path, std::io::Error::other("segment writer thread panicked"))),
        }
        self.file.set_len(size).at(path)?;
        let Direct { file, .. } = self;
        Arc::try_unwrap(file).map_err(|_| Error::io(path, std::io::Error::other("segment file still shared")))
    }
}

/// The I/O thread: writes each job at its offset and returns the buffer. A write the
/// filesystem refuses with EINVAL moves this file to a buffered handle for good.
fn write_jobs(file: &File, path: &Path, jobs: Receiver<Job>, back: SyncSender<Aligned>) -> std::io::Result<()> {
    let mut fallback: Option<File> = None;
    for job in jobs {
        let bytes = &job.buf.bytes()[..job.len];
        let written = match &fallback {
            Some(f) => f.write_all_at(bytes, job.offset),
            None => match file.write_all_at(bytes, job.offset) {
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    let f = OpenOptions::new().write(true).open(path)?;
                    let r = f.write_all_at(bytes, job.offset);
                    fallback = Some(f);
                    r
                }
                r => r,
            },
        };
        written?;
        if back.send(job.buf).is_err() {
            break;
        }
    }
    // Bytes written through the fallback handle reach the disk with the block's fsync of
    // `file`: both handles are the same inode.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn writes_every_byte_in_order_and_truncates_the_padding() {
        let dir = tempfile::tempdir().unwrap();
        // Sizes around the staging buffer and the alignment, written in odd pieces.
        for size in [0, 1, 4095, 4096, 4097, STAGING - 1, STAGING, STAGING + 1, 3 * STAGING + 12345] {
            let path = dir.path().join(format!("seg-{size}"));
            let want = pattern(size);
            let mut f = SegmentFile::create(&path, true).unwrap();
            for piece in want.chunks(7919) {
                f.write_all(piece).unwrap();
            }
            let file = f.close().unwrap();
            file.sync_all().unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), want, "size {size}");
        }
    }

    #[test]
    fn buffers_are_aligned() {
        for _ in 0..8 {
            let b = Aligned::new();
            assert_eq!(b.bytes().as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.bytes().len(), STAGING);
        }
    }

    #[test]
    fn tmpfs_works_direct_or_not() {
        // tmpfs took no O_DIRECT before Linux 6.6 and takes it since; either way the
        // bytes must arrive.
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("seg");
        let mut f = SegmentFile::create(&path, true).unwrap();
        f.write_all(b"abc").unwrap();
        f.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abc");
    }

    #[test]
    fn buffered_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let mut f = SegmentFile::create(&path, false).unwrap();
        assert!(!f.is_direct());
        let want = pattern(STAGING + 17);
        f.write_all(&want).unwrap();
        f.close().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }
}
