//! File transfers for a FILESYSTEM bucket: whole-file copies between the local disk
//! and the bucket directory, done by the kernel on a blocking thread.
//!
//! object_store's `LocalFileSystem` moves data through the heap: a get streams the
//! object in small chunks, a put takes the whole payload (or, multipart, part-sized
//! buffers) in memory. [`FsBucket`] copies file to file instead (`std::io::copy`
//! between two `File`s is `copy_file_range`/`sendfile` on Linux), keeping what the
//! object_store path guarantees:
//! - keys map to files exactly as `LocalFileSystem` (under the configured prefix, as
//!   `PrefixStore`) maps them: the mapping is `LocalFileSystem::path_to_filesystem`;
//! - a put is atomic: the data goes to `<file>#<n>` (the staging name
//!   `LocalFileSystem` uses and hides from listings), is fsynced, then renamed over
//!   `<file>`, then the directory is fsynced (object_store syncs neither);
//! - bucket-side failures come back as the `object_store::Error`s `LocalFileSystem`
//!   would have returned (`NotFound` for a missing object or a directory, `Generic`
//!   otherwise), so [`super::Bucket`] classifies and counts them as before;
//!   local-side failures come back as the `io::Error` to report with the local path.
//!
//! The compactor job may link instead of copying (`*_linked`): its downloaded sources are
//! only read and its outputs are fsynced and never written again, so a hard link (same
//! filesystem) gives the same bytes with no I/O; another filesystem gets the copy.
//!
//! Owns: the key → file mapping of a FILESYSTEM bucket and the staged, synced copy.
//! Must not: know about blocks, counters or error messages (the [`super::Bucket`]
//! methods wrap these functions).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;

/// The store name `LocalFileSystem` puts in its `Generic` errors.
const STORE: &str = "LocalFileSystem";

/// A FILESYSTEM bucket as files: the `LocalFileSystem` the bucket's object store is
/// built on and the configured prefix `PrefixStore` applies.
#[derive(Debug, Clone)]
pub struct FsBucket {
    fs: Arc<LocalFileSystem>,
    prefix: ObjectPath,
}

/// Which side of a copy failed.
#[derive(Debug)]
pub enum Failure {
    /// The local file (the upload's source, the download's destination).
    Local(io::Error),
    /// The bucket: the error `LocalFileSystem` itself would have returned.
    Store(object_store::Error),
}

impl FsBucket {
    /// `prefix` as `PrefixStore::new` takes it (the config's `prefix`, may be empty).
    pub fn new(fs: Arc<LocalFileSystem>, prefix: &str) -> FsBucket {
        FsBucket { fs, prefix: ObjectPath::from(prefix) }
    }

    /// The file behind `key`: `PrefixStore`'s full path, then `LocalFileSystem`'s
    /// mapping. (`ObjectPath::from` encodes `#`, so no key names a staging file.)
    pub fn path(&self, key: &str) -> object_store::Result<PathBuf> {
        let full: ObjectPath = self.prefix.parts().chain(ObjectPath::from(key).parts()).collect();
        self.fs.path_to_filesystem(&full)
    }

    /// Copies the local file `src` to `key`, atomically (staged, fsynced, renamed, the
    /// directory fsynced). Blocking. Returns the bytes copied.
    pub fn put_file(&self, key: &str, src: &Path) -> Result<u64, Failure> {
        // The local file first, as the object_store path reads it before writing.
        let mut from = File::open(src).map_err(Failure::Local)?;
        if from.metadata().map_err(Failure::Local)?.is_dir() {
            // What reading it would say.
            return Err(Failure::Local(io::Error::from_raw_os_error(rustix::io::Errno::ISDIR.raw_os_error())));
        }
        let dest = self.path(key).map_err(Failure::Store)?;
        let (to, staged) = new_staged(&dest).map_err(Failure::Store)?;
        let n = match fill_and_rename(&mut from, to, &staged, &dest) {
            Ok(n) => n,
            Err(e) => {
                let _ = std::fs::remove_file(&staged);
                return Err(e);
            }
        };
        sync_parent(&dest)?;
        Ok(n)
    }

    /// Copies `key` into a new local file `dst` (truncated if it exists, fsynced).
    /// Blocking. Returns the bytes copied. A missing object is `NotFound` and `dst` is
    /// not created.
    pub fn get_to_file(&self, key: &str, dst: &Path) -> Result<u64, Failure> {
        let path = self.path(key).map_err(Failure::Store)?;
        let mut from = open_object(&path).map_err(Failure::Store)?;
        let mut to = File::create(dst).map_err(Failure::Local)?;
        let n = io::copy(&mut from, &mut to).map_err(|e| {
            if is_write_failure(&e) {
                Failure::Local(e)
            } else {
                Failure::Store(generic(e))
            }
        })?;
        to.sync_all().map_err(Failure::Local)?;
        Ok(n)
    }

    /// As [`put_file`](Self::put_file), but `key` becomes a hard link to `src` when both
    /// are on one filesystem: no bytes move. Staged, renamed and the directory fsynced
    /// as a copy is. Falls back to the copy when the link cannot be made (another
    /// filesystem, no permission, too many links). Only for a `src` already durable and
    /// never written again: the object and the file are one inode afterwards.
    pub fn put_file_linked(&self, key: &str, src: &Path) -> Result<u64, Failure> {
        match self.link_in(key, src)? {
            Some(n) => Ok(n),
            None => self.put_file(key, src),
        }
    }

    /// The link of [`put_file_linked`](Self::put_file_linked); `None`: copy instead.
    fn link_in(&self, key: &str, src: &Path) -> Result<Option<u64>, Failure> {
        let meta = std::fs::metadata(src).map_err(Failure::Local)?;
        if !meta.is_file() {
            return Ok(None); // the copy reports it as object_store would
        }
        let dest = self.path(key).map_err(Failure::Store)?;
        let Ok(((), staged)) = stage(&dest, |name| std::fs::hard_link(src, name)) else {
            return Ok(None); // another filesystem, no permission, too many links: copy
        };
        if let Err(e) = std::fs::rename(&staged, &dest) {
            let _ = std::fs::remove_file(&staged);
            return Err(Failure::Store(generic(e)));
        }
        sync_parent(&dest)?;
        Ok(Some(meta.len()))
    }

    /// As [`get_to_file`](Self::get_to_file), but `dst` becomes a hard link to the
    /// object's file when both are on one filesystem (a copy otherwise, or when `dst`
    /// exists). Only for a `dst` nobody writes: it is the bucket's object.
    pub fn get_to_file_linked(&self, key: &str, dst: &Path) -> Result<u64, Failure> {
        let path = self.path(key).map_err(Failure::Store)?;
        let len = open_object(&path).and_then(|f| f.metadata().map_err(generic)).map_err(Failure::Store)?.len();
        match std::fs::hard_link(&path, dst) {
            Ok(()) => Ok(len),
            Err(_) => self.get_to_file(key, dst),
        }
    }
}

/// Copies `from` into the staging file `to`, syncs and closes it, renames it over
/// `dest`. Returns the bytes copied.
fn fill_and_rename(from: &mut File, mut to: File, staged: &Path, dest: &Path) -> Result<u64, Failure> {
    let n = io::copy(from, &mut to).map_err(|e| {
        if is_write_failure(&e) {
            Failure::Store(generic(e))
        } else {
            Failure::Local(e)
        }
    })?;
    to.sync_all().map_err(|e| Failure::Store(generic(e)))?;
    // Closed before the rename, as LocalFileSystem does (some FUSE filesystems upload on
    // close).
    drop(to);
    std::fs::rename(staged, dest).map_err(|e| Failure::Store(generic(e)))?;
    Ok(n)
}

/// Makes a rename to `dest` durable: fsyncs its directory.
fn sync_parent(dest: &Path) -> Result<(), Failure> {
    match dest.parent() {
        Some(dir) => File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Failure::Store(generic(e))),
        None => Ok(()),
    }
}

/// A kernel copy reports one error for both files: these kinds are the destination's
/// (no space, quota, too large, read-only); anything else is taken as the source's.
fn is_write_failure(e: &io::Error) -> bool {
    use rustix::io::Errno;
    // By errno: the io::ErrorKinds for these need rust 1.83.
    let write_side = [Errno::NOSPC, Errno::DQUOT, Errno::FBIG, Errno::ROFS];
    e.raw_os_error().is_some_and(|code| write_side.iter().any(|w| w.raw_os_error() == code))
}

fn generic(e: io::Error) -> object_store::Error {
    object_store::Error::Generic { store: STORE, source: Box::new(e) }
}

fn not_found(path: &Path, e: io::Error) -> object_store::Error {
    object_store::Error::NotFound { path: path.to_string_lossy().to_string(), source: Box::new(e) }
}

/// Opens an object's file as `LocalFileSystem::get` does: a missing file or a
/// directory is `NotFound`.
fn open_object(path: &Path) -> object_store::Result<File> {
    let opened = File::open(path).and_then(|f| Ok((f.metadata()?, f)));
    match opened {
        Ok((m, _)) if m.is_dir() => Err(not_found(path, io::Error::new(io::ErrorKind::NotFound, "is directory"))),
        Ok((_, f)) => Ok(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found(path, e)),
        Err(e) => Err(generic(e)),
    }
}

/// A new file `<dest>#<n>` (the first `n` from 1 not taken), parent directories
/// created: `LocalFileSystem`'s staging file, which its listings skip.
fn new_staged(dest: &Path) -> object_store::Result<(File, PathBuf)> {
    stage(dest, |name| OpenOptions::new().write(true).create_new(true).open(name)).map_err(generic)
}

/// Runs `make` on `<dest>#1`, `<dest>#2`, ... until it does not find the name taken
/// (creating `dest`'s directories once if they are missing); returns what it made and
/// the name.
fn stage<T>(dest: &Path, mut make: impl FnMut(&Path) -> io::Result<T>) -> io::Result<(T, PathBuf)> {
    let mut made_dirs = false;
    let mut n = 1u64;
    loop {
        let mut staged = dest.as_os_str().to_owned();
        staged.push(format!("#{n}"));
        let staged = PathBuf::from(staged);
        match make(&staged) {
            Ok(t) => return Ok((t, staged)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !made_dirs => match dest.parent() {
                Some(dir) => {
                    std::fs::create_dir_all(dir)?;
                    made_dirs = true;
                }
                None => return Err(e),
            },
            Err(e) => return Err(e),
        }
    }
}
