//! Finding blocks in a data directory.

use std::path::{Path, PathBuf};

use ulid::Ulid;

use crate::error::{AtPath, Result};

/// A block directory found in a data directory.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BlockDirEntry {
    pub ulid: Ulid,
    pub path: PathBuf,
}

/// Lists the block directories of `dir`, sorted by ULID. A directory counts as a block
/// when its name is a ULID. Everything else a Prometheus data directory holds (`wal/`,
/// `chunks_head/`, `lock`, `queries.active`, `*.tmp-for-creation`,
/// `*.tmp-for-deletion`, snapshots) is passed over. `dir` may also be a block itself.
pub fn list_blocks(dir: &Path) -> Result<Vec<BlockDirEntry>> {
    if dir.join(crate::block::META_FILE).is_file() {
        // A single block; its directory name need not be a ULID (meta.json has it).
        let ulid =
            dir.file_name().and_then(|n| n.to_str()).and_then(|n| Ulid::from_string(n).ok()).unwrap_or(Ulid::nil());
        return Ok(vec![BlockDirEntry { ulid, path: dir.to_path_buf() }]);
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).at(dir)? {
        let e = e.at(dir)?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.len() != 26 {
            continue;
        }
        let Ok(ulid) = Ulid::from_string(name) else { continue };
        if e.file_type().at(&e.path())?.is_dir() {
            out.push(BlockDirEntry { ulid, path: e.path() });
        }
    }
    out.sort();
    Ok(out)
}
