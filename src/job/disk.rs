//! Disk preflight for `--data-dir`: before a plan downloads anything, the free space of
//! the filesystem must hold its sources plus an estimate of its output, minus what the
//! plans already running have reserved.
//!
//! Owns: [`DiskBudget`] (free space from `statvfs`, reservations released on drop) and
//! the estimate of what a plan needs.
//! Must not: decide what to do with a plan that does not fit (the job skips it).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(|e| Error::io(dir, e.into()))?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// What a plan needs on disk: its sources downloaded, plus an estimate of its output of
/// one and a half times the sources. A leveled merge writes each chunk once (output about
/// the size of the sources), but a vertical merge of HA replicas keeps the samples of both
/// and re-encodes them: measured 1.35x the sources together for replicas scraped 1s apart.
pub fn plan_needs(source_bytes: u64) -> u64 {
    source_bytes.saturating_add(source_bytes.saturating_mul(3) / 2)
}

/// Not enough room for a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoSpace {
    pub dir: PathBuf,
    pub needed: u64,
    /// Free bytes minus what running plans reserved.
    pub available: u64,
}

/// The free space of one directory shared by concurrent plans.
#[derive(Clone, Debug)]
pub struct DiskBudget {
    dir: PathBuf,
    reserved: Arc<Mutex<u64>>,
}

/// Space held for one running plan until it is dropped.
#[derive(Debug)]
pub struct Reservation {
    bytes: u64,
    reserved: Arc<Mutex<u64>>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut r = self.reserved.lock().expect("disk budget lock");
        *r = r.saturating_sub(self.bytes);
    }
}

impl DiskBudget {
    pub fn new(dir: &Path) -> DiskBudget {
        DiskBudget { dir: dir.to_path_buf(), reserved: Arc::new(Mutex::new(0)) }
    }

    /// Reserves `needed` bytes, or says how much is there. The free space is read now,
    /// so files the running plans already wrote count once: a running plan's
    /// reservation is what it may still write, at most what it reserved.
    pub fn reserve(&self, needed: u64) -> Result<std::result::Result<Reservation, NoSpace>> {
        let free = free_space(&self.dir)?;
        let mut r = self.reserved.lock().expect("disk budget lock");
        let available = free.saturating_sub(*r);
        if needed > available {
            return Ok(Err(NoSpace { dir: self.dir.clone(), needed, available }));
        }
        *r += needed;
        Ok(Ok(Reservation { bytes: needed, reserved: self.reserved.clone() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_add_up_and_are_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let free = free_space(dir.path()).unwrap();
        assert!(free > 0);
        let b = DiskBudget::new(dir.path());
        let half = free / 2;
        let r1 = b.reserve(half).unwrap().unwrap();
        // What is left after the first reservation cannot hold as much again plus a margin.
        let no = b.reserve(free - half + (1 << 30)).unwrap().unwrap_err();
        assert!(no.available <= free - half + (1 << 20), "{no:?}");
        assert_eq!(no.dir, dir.path());
        drop(r1);
        assert!(b.reserve(half).unwrap().is_ok());
        assert_eq!(plan_needs(10), 25);
    }

    #[test]
    fn a_missing_directory_is_a_local_error_naming_it() {
        let e = free_space(Path::new("/nonexistent/strata-data")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/strata-data"), "{e}");
    }
}
