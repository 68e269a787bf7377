//! Snapshot backups through Prometheus's admin API.
//!
//! `POST /api/v1/admin/tsdb/snapshot[?skip_head=true]` makes the server hard-link its
//! blocks into `<data dir>/snapshots/<name>/` and (unless `skip_head`) write its in-memory
//! head out as one more block there; the answer is
//! `{"status":"success","data":{"name":"<name>"}}` (Prometheus `web/api/v1/api.go`,
//! `snapshot`). [`backup`] asks for one, finds it under the data directory as this
//! process sees it, uploads its blocks with the given external labels (blocks already in
//! the bucket, e.g. shipped by a sidecar, are skipped: a snapshot keeps the blocks'
//! ULIDs), and removes the snapshot directory, whether the upload worked or not.
//!
//! Credentials (basic auth or a bearer token) are sent, never logged or put in an
//! error: [`Auth`]'s `Debug` hides them and request errors are reported without URL.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use ulid::Ulid;

use super::{ApiFailure, BackupError, Result};
use crate::block::{list_blocks, META_FILE};
use crate::bucket::block::block_key;
use crate::bucket::{Bucket, UploadOptions};
use crate::error::{AtPath, Error as LocalError};
use crate::format::meta::{BlockMeta, ThanosMeta};

/// Credentials for the Prometheus server.
#[derive(Clone)]
pub enum Auth {
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { username, .. } => write!(f, "Basic({username}, <hidden>)"),
            Auth::Bearer(_) => write!(f, "Bearer(<hidden>)"),
        }
    }
}

/// A client of one Prometheus server's admin API.
#[derive(Clone, Debug)]
pub struct Prometheus {
    /// Base URL without a trailing slash and without credentials.
    url: String,
    auth: Option<Auth>,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct ApiAnswer {
    status: String,
    #[serde(default)]
    data: Option<SnapshotData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct SnapshotData {
    name: String,
}

impl Prometheus {
    /// `url` is the server's base URL (`http://prometheus:9090`, or with the path prefix
    /// of `--web.route-prefix`). Credentials in the URL are refused: they would end up
    /// in logs; give them through `auth`.
    pub fn new(url: &str, auth: Option<Auth>, timeout: Duration) -> Result<Prometheus> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| BackupError::Invalid(format!("--prometheus.url {url:?}: not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(BackupError::Invalid(format!("--prometheus.url {url:?}: want an http:// or https:// URL")));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(BackupError::Invalid(
                "--prometheus.url: credentials in the URL are refused (they would be logged); use a password or bearer token file".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| BackupError::Invalid(format!("cannot build the HTTP client: {e}")))?;
        Ok(Prometheus { url: url.trim_end_matches('/').to_string(), auth, client })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Asks for a snapshot; returns its name (the directory under `snapshots/`).
    pub async fn snapshot(&self, skip_head: bool) -> Result<String> {
        const WHAT: &str = "cannot take a snapshot";
        let url = format!("{}/api/v1/admin/tsdb/snapshot?skip_head={skip_head}", self.url);
        let mut req = self.client.post(&url);
        req = match &self.auth {
            Some(Auth::Basic { username, password }) => req.basic_auth(username, Some(password)),
            Some(Auth::Bearer(t)) => req.bearer_auth(t),
            None => req,
        };
        let fail = |kind, detail: String| BackupError::Api { url: self.url.clone(), what: WHAT, kind, detail };
        let resp = req.send().await.map_err(|e| {
            let kind = if e.is_connect() || e.is_timeout() { ApiFailure::Unreachable } else { ApiFailure::Other };
            fail(kind, describe(&e))
        })?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| fail(ApiFailure::Unreachable, describe(&e)))?;
        let answer: Option<ApiAnswer> = serde_json::from_slice(&body).ok();
        let api_error = answer.as_ref().and_then(|a| a.error.clone()).unwrap_or_default();
        if !status.is_success() {
            let detail = if api_error.is_empty() {
                format!("HTTP {}: {}", status.as_u16(), one_line(&body))
            } else {
                format!("HTTP {}: {api_error}", status.as_u16())
            };
            let kind = match status.as_u16() {
                401 | 403 => ApiFailure::Unauthorized,
                _ if api_error.contains("admin APIs disabled") => ApiFailure::AdminApiDisabled,
                s if s >= 500 => ApiFailure::ServerError,
                _ => ApiFailure::Other,
            };
            return Err(fail(kind, detail));
        }
        match answer {
            Some(ApiAnswer { status, data: Some(d), .. }) if status == "success" && valid_name(&d.name) => Ok(d.name),
            _ => Err(fail(ApiFailure::Other, format!("HTTP {}: {}", status.as_u16(), one_line(&body)))),
        }
    }
}

/// A snapshot name must be one directory name (the server picks it; it is joined to a
/// local path here).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\\')
}

/// A request error without its URL, on one line.
fn describe(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        let text = match c.downcast_ref::<reqwest::Error>() {
            Some(r) => {
                let kind = if r.is_timeout() {
                    "timed out"
                } else if r.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                kind.to_string()
            }
            None => c.to_string(),
        };
        if !parts.contains(&text) {
            parts.push(text);
        }
        cur = c.source();
    }
    parts.join(": ")
}

fn one_line(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let s: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() > 200 {
        format!("{}...", s.chars().take(200).collect::<String>())
    } else {
        s
    }
}

/// What a backup uploads.
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// The server's data directory as this process sees it (snapshots are under
    /// `snapshots/` there).
    pub tsdb_path: PathBuf,
    /// External labels of the uploaded blocks (at least one).
    pub labels: BTreeMap<String, String>,
    /// Leave the in-memory head out of the snapshot.
    pub skip_head: bool,
    /// Chunk files uploaded at once per block.
    pub concurrency: usize,
}

/// What a backup did.
#[derive(Debug, Default)]
pub struct BackupReport {
    pub snapshot: String,
    /// Blocks uploaded, with the meta.json as uploaded.
    pub uploaded: Vec<BlockMeta>,
    /// Blocks already in the bucket.
    pub skipped: Vec<Ulid>,
    /// Blocks without samples (an empty head), not uploaded.
    pub empty: Vec<Ulid>,
}

/// Takes a snapshot and uploads it (see the module doc).
pub async fn backup(prom: &Prometheus, bucket: &Bucket, opts: &BackupOptions) -> Result<BackupReport> {
    if opts.labels.is_empty() {
        return Err(BackupError::Invalid("at least one external label is needed (--label k=v)".into()));
    }
    let snapshots = opts.tsdb_path.join("snapshots");
    let name = prom.snapshot(opts.skip_head).await?;
    let dir = snapshots.join(&name);
    tracing::info!(snapshot = name.as_str(), skip_head = opts.skip_head, "snapshot taken");
    if !dir.is_dir() {
        return Err(BackupError::SnapshotNotFound { name, dir: snapshots });
    }
    let guard = RemoveSnapshot(dir.clone());
    let r = upload_snapshot(&dir, bucket, opts).await;
    drop(guard);
    let mut report = r?;
    report.snapshot = name;
    Ok(report)
}

/// Uploads the blocks of a snapshot directory.
pub async fn upload_snapshot(dir: &Path, bucket: &Bucket, opts: &BackupOptions) -> Result<BackupReport> {
    let mut report = BackupReport::default();
    for e in list_blocks(dir)? {
        let path = e.path.join(META_FILE);
        let bytes = std::fs::read(&path).at(&path)?;
        let mut meta = BlockMeta::parse(&bytes).at(&path)?;
        let id = meta.ulid;
        if meta.stats.num_samples == 0 {
            tracing::info!(block = %id, "empty block, not uploaded");
            report.empty.push(id);
            continue;
        }
        if bucket.head(&block_key(id, META_FILE)).await?.is_some() {
            tracing::info!(block = %id, "already in the bucket, skipped");
            report.skipped.push(id);
            continue;
        }
        let t = meta.thanos.get_or_insert_with(ThanosMeta::default);
        t.labels = opts.labels.clone();
        t.source = "bucket.upload".into();
        let up = bucket
            .upload_block(
                &e.path,
                &UploadOptions { concurrency: opts.concurrency.max(1), meta: Some(meta), link: false },
            )
            .await?;
        tracing::info!(block = %id, mint = up.min_time, maxt = up.max_time, samples = up.stats.num_samples, "block uploaded");
        report.uploaded.push(up);
    }
    Ok(report)
}

/// Removes the snapshot directory when dropped (it holds hard links into the server's
/// blocks and, with the head, a block of its own).
struct RemoveSnapshot(PathBuf);

impl Drop for RemoveSnapshot {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => tracing::info!(path = %self.0.display(), "snapshot removed"),
            Err(e) => tracing::warn!(
                err = %LocalError::io(&self.0, e),
                "cannot remove the snapshot directory; remove it by hand"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let a = Auth::Basic { username: "admin".into(), password: "s3cret".into() };
        assert!(!format!("{a:?}").contains("s3cret"));
        assert!(!format!("{:?}", Auth::Bearer("tok3n".into())).contains("tok3n"));
        let e = Prometheus::new("http://admin:s3cret@localhost:9090", None, Duration::from_secs(1)).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(Prometheus::new("ftp://x", None, Duration::from_secs(1)).is_err());
    }

    #[test]
    fn snapshot_names_are_single_directory_names() {
        assert!(valid_name("20260101T000000Z-1a2b3c4d5e6f7a8b"));
        for bad in ["", ".", "..", "../x", "a/b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn an_unreachable_server_is_one_transient_line() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // A port nothing listens on: bind, read the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let p = Prometheus::new(&format!("http://127.0.0.1:{port}"), None, Duration::from_secs(2)).unwrap();
        let e = rt.block_on(p.snapshot(false)).unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("server unreachable") && !text.contains('\n'), "{text}");
    }
}
