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

    /// Input that the caller gave (flags, selectors, series order handed to a writer).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
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
