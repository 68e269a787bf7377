//! The crate's public error type.
//!
//! Owns: the one `Error` every library function returns, and [`FormatError`], the
//! path-free error of the `format` layer (which sees only bytes). The block layer wraps
//! a `FormatError` with the file it came from, so every corruption report names the
//! file, the section and the byte offset.
//!
//! Must not: print, exit, or use `anyhow` (that is the CLI's job).

use std::fmt;
use std::path::{Path, PathBuf};

use ulid::Ulid;

/// What went wrong while decoding bytes, and where, independent of any file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// The structure being read, e.g. `"index symbol table"` or `"XOR chunk"`.
    pub section: &'static str,
    /// Byte offset within the buffer handed to the decoder (for files: within the file).
    pub offset: u64,
    /// A sentence on what is wrong.
    pub problem: String,
}

impl FormatError {
    pub fn new(section: &'static str, offset: u64, problem: impl Into<String>) -> Self {
        FormatError { section, offset, problem: problem.into() }
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at offset {}: {}", self.section, self.offset, self.problem)
    }
}

impl std::error::Error for FormatError {}

/// Result of the format layer.
pub type FormatResult<T> = std::result::Result<T, FormatError>;

/// The library's error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be opened, read, written, synced or renamed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A file's bytes do not follow the format.
    #[error("{}: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: FormatError,
    },

    /// A series or chunk inside a block is wrong in a way that names the series.
    #[error("{}: series {series}: {problem}", path.display())]
    BadSeries { path: PathBuf, series: String, problem: String },

    /// Something that happened inside one block: the block's ULID, so that a caller
    /// can tell which block to blame without reading it out of a path.
    #[error("block {block}: {source}")]
    InBlock {
        block: Ulid,
        #[source]
        source: Box<Error>,
    },

    /// A request the caller made cannot be carried out as given: a path that is not a
    /// directory, a setting out of range, a rule that does not parse, an aggregate
    /// missing for a downsampled block.
    #[error("{0}")]
    BadRequest(String),

    /// A writer was handed something its format forbids (series out of order, chunks
    /// overlapping, a file that would outgrow its offsets): a bug in the caller, or a
    /// source that was damaged already; `path` is the file being written.
    #[error("{}: {problem}", path.display())]
    BadWrite { path: PathBuf, problem: String },

    /// A worker task ended without a result (it panicked or was cancelled).
    #[error("{what} failed: {problem}")]
    Task { what: &'static str, problem: String },

    /// A network address could not be listened on.
    #[error("{addr}: cannot listen: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Attaches the block this error happened in (once: an error already in a block keeps
    /// the innermost).
    pub fn in_block(self, block: Ulid) -> Self {
        match self {
            e @ Error::InBlock { .. } => e,
            e => Error::InBlock { block, source: Box::new(e) },
        }
    }

    /// The block whose bytes are at fault: an error inside a block that says its data is
    /// corrupt or its series are wrong. Local I/O failures and everything else blame no
    /// block (nothing is marked because of strata's own trouble).
    pub fn blamed_block(&self) -> Option<Ulid> {
        match self {
            Error::InBlock { block, source } => match **source {
                Error::Corrupt { .. } | Error::BadSeries { .. } => Some(*block),
                ref inner => inner.blamed_block(),
            },
            _ => None,
        }
    }

    /// The error without its block context.
    pub fn innermost(&self) -> &Error {
        match self {
            Error::InBlock { source, .. } => source.innermost(),
            e => e,
        }
    }

    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }
    pub fn corrupt(path: impl AsRef<Path>, source: FormatError) -> Self {
        Error::Corrupt { path: path.as_ref().to_path_buf(), source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attach a path to a format-layer result.
pub trait AtPath<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> AtPath<T> for FormatResult<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::corrupt(path, e))
    }
}

impl<T> AtPath<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod blame_tests {
    use super::*;

    #[test]
    fn only_bad_data_inside_a_block_blames_it() {
        let id = Ulid::from_parts(1, 2);
        let corrupt = Error::corrupt("/d/x/index", FormatError::new("index", 5, "bad")).in_block(id);
        assert_eq!(corrupt.blamed_block(), Some(id));
        assert_eq!(corrupt.to_string(), format!("block {id}: /d/x/index: index at offset 5: bad"));
        let series = Error::BadSeries { path: "/d/x".into(), series: "{a=\"1\"}".into(), problem: "p".into() };
        assert_eq!(series.in_block(id).blamed_block(), Some(id));
        // Reading a downloaded source failed locally: strata's trouble, not the block's.
        let io = Error::io("/d/x/chunks/000001", std::io::Error::other("EIO")).in_block(id);
        assert_eq!(io.blamed_block(), None);
        // No block context, no blame.
        assert_eq!(Error::corrupt("/d/x", FormatError::new("s", 0, "p")).blamed_block(), None);
        // The innermost block wins.
        let inner = Ulid::from_parts(3, 4);
        let twice = Error::corrupt("/p", FormatError::new("s", 0, "p")).in_block(inner).in_block(id);
        assert_eq!(twice.blamed_block(), Some(inner));
    }
}
