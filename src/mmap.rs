//! Read-only file bytes: a memory map where possible, a heap copy otherwise.
//!
//! Owns: the crate's only `unsafe` code. Everything else sees `&[u8]`.
//! Must not: interpret the bytes.
#![allow(unsafe_code)]

use std::fs::File;
use std::ops::Deref;
use std::path::Path;

use crate::error::{AtPath, Result};

/// Bytes of one whole file.
pub enum FileBytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `path` read-only. Empty files, and systems where mapping fails, fall back to
    /// reading the file into memory. `STRATA_NO_MMAP=1` forces the fallback.
    pub fn open(path: &Path) -> Result<FileBytes> {
        let file = File::open(path).at(path)?;
        let len = file.metadata().at(path)?.len();
        if len > 0 && std::env::var_os("STRATA_NO_MMAP").is_none() {
            // SAFETY: the map is read-only, and strata never writes a block file it has
            // mapped: blocks are immutable once renamed into place, and writers work in a
            // separate `*.tmp-for-creation` directory. Another process truncating the
            // file while it is mapped would raise SIGBUS; that is the same contract
            // Prometheus and Thanos live with for block files, which are never modified
            // in place by any of them.
            if let Ok(map) = unsafe { memmap2::Mmap::map(&file) } {
                return Ok(FileBytes::Mapped(map));
            }
        }
        let bytes = std::fs::read(path).at(path)?;
        Ok(FileBytes::Owned(bytes))
    }

    /// Reads the file into memory without mapping it.
    pub fn read(path: &Path) -> Result<FileBytes> {
        Ok(FileBytes::Owned(std::fs::read(path).at(path)?))
    }
}

/// For `bytes::Bytes::from_owner`: an upload's payload straight from the mapped file.
impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl Deref for FileBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(m) => m,
            FileBytes::Owned(v) => v,
        }
    }
}
