//! Backups of a live Prometheus server into a Thanos bucket, and restores out of it.
//!
//! Owns three flows over the same bucket protocol ([`crate::bucket::block`]):
//! - [`shipper`]: continuous shipping of a Prometheus data directory, as a Thanos sidecar
//!   does (`thanos.shipper.json` in the sidecar's format, level-1 blocks only unless told
//!   otherwise, hard links so Prometheus may delete a block while it is uploaded).
//! - [`snapshot`]: a snapshot through Prometheus's admin API
//!   (`POST /api/v1/admin/tsdb/snapshot`, head included), uploaded and then removed.
//! - [`restore`]: the raw blocks of a time range downloaded into an empty directory,
//!   overlapping ones merged (with [`crate::compact::merge`]) so Prometheus starts on it.
//!
//! Must not: write inside a Prometheus block (metas with external labels are uploaded
//! from memory), delete anything in a data directory it did not create, or log a
//! credential.

pub mod restore;
pub mod shipper;
pub mod snapshot;

use std::path::PathBuf;

use ulid::Ulid;

use crate::bucket::BucketError;

/// How a request to the Prometheus server failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApiFailure {
    /// No connection, or no answer in time.
    Unreachable,
    /// HTTP 401 or 403: credentials missing or wrong.
    Unauthorized,
    /// The server runs without `--web.enable-admin-api`.
    AdminApiDisabled,
    /// A 5xx answer (other than the admin API being off): worth retrying.
    ServerError,
    /// Anything else (an unexpected status or body).
    Other,
}

impl ApiFailure {
    fn text(self) -> &'static str {
        match self {
            ApiFailure::Unreachable => "server unreachable",
            ApiFailure::Unauthorized => "unauthorized (check the basic auth or bearer token credentials)",
            ApiFailure::AdminApiDisabled => "the admin API is disabled (start Prometheus with --web.enable-admin-api)",
            ApiFailure::ServerError => "server error",
            ApiFailure::Other => "unexpected answer",
        }
    }
}

/// The backup layer's error: one line each, naming the server, directory or block.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The bucket failed (its error names the bucket, operation and object).
    #[error(transparent)]
    Bucket(#[from] BucketError),

    /// Local disk or a local block.
    #[error(transparent)]
    Local(#[from] crate::Error),

    /// The Prometheus server's API refused or failed. `detail` never holds a credential.
    #[error("{url}: {what}: {}{}", kind.text(), if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Api { url: String, what: &'static str, kind: ApiFailure, detail: String },

    /// The server took a snapshot, but it is not where strata looks for it.
    #[error(
        "snapshot {name} is not in {} (the server wrote it under its own data directory; \
         --tsdb.path must be that directory as seen from here). The snapshot stays on the server's disk",
        dir.display()
    )]
    SnapshotNotFound { name: String, dir: PathBuf },

    /// A block to ship or restore is unusable.
    #[error("block {id}: {problem}")]
    Block { id: Ulid, problem: String },

    /// Input the caller gave (a non-empty restore directory, a bad option).
    #[error("{0}")]
    Invalid(String),
}

impl BackupError {
    /// Worth trying again later: the server or the bucket may be back.
    pub fn is_transient(&self) -> bool {
        match self {
            BackupError::Bucket(e) => e.is_transient(),
            BackupError::Api { kind, .. } => matches!(kind, ApiFailure::Unreachable | ApiFailure::ServerError),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, BackupError>;
