//! Object storage: the bucket a Thanos compactor works on, through `object_store`.
//!
//! Layers, bottom up:
//! - [`config`]: Thanos's objstore YAML, parsed strictly; [`store`] builds the
//!   object_store client it describes (S3, GCS, Azure, local filesystem) and counts
//!   HTTP attempts and retried failures.
//! - [`Bucket`] (this file): object operations (get, put, list, delete) with the
//!   configured prefix, one-line classified errors ([`error`]) and per-operation
//!   counters ([`BucketStats`]).
//! - [`block`]: the Thanos block protocol on top: block ULIDs, meta.json, markers,
//!   upload (meta.json last, then checked), download (into a temporary directory,
//!   renamed when complete), delete (meta.json first, the deletion mark last).
//! - [`sync`]: one pass over the bucket: every block's meta and markers, fetched
//!   concurrently, filtered like Thanos's fetcher (consistency delay, deletion marks,
//!   duplicates), partial uploads reported with their age; and the cleanup it implies.
//!
//! Everything here is async (tokio) and stays at this edge: block reading, writing and
//! verification are synchronous and run in `spawn_blocking`. See `docs/bucket.md`.

pub mod block;
pub mod config;
pub mod error;
pub mod replicate;
pub mod store;
pub mod sync;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMultipartOptions, PutOptions, WriteMultipart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use block::{BlockObjects, DeleteReport, DownloadOptions, MarkerRead, MetaRead, UploadOptions};
pub use config::{ConfigError, ObjstoreConfig, Provider};
pub use error::{BucketError, ErrorKind, Result, StoreError};
pub use store::{HttpCounters, UploadSettings};
pub use sync::{BlockInfo, CleanupOptions, CleanupReport, Exclusion, PartialBlock, SyncOptions, Synced};

use crate::error::Error as LocalError;

/// The bucket operations counted, named as Thanos's
/// `thanos_objstore_bucket_operations_total{operation}` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Get,
    Upload,
    Delete,
    Iter,
    Attributes,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Get, Op::Upload, Op::Delete, Op::Iter, Op::Attributes];

    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Upload => "upload",
            Op::Delete => "delete",
            Op::Iter => "iter",
            Op::Attributes => "attributes",
        }
    }
}

#[derive(Debug, Default)]
struct OpCounters {
    ops: [AtomicU64; 5],
    failures: [AtomicU64; 5],
}

/// A snapshot of a bucket client's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BucketStats {
    /// `(operation, attempted, failed)` for every [`Op`]; "not found" is not a failure.
    pub operations: Vec<(&'static str, u64, u64)>,
    /// HTTP requests sent, retries included (0 for a filesystem bucket).
    pub http_requests: u64,
    /// HTTP attempts that failed in a retryable way (5xx, throttling, timeouts,
    /// dropped connections); object_store retried each with exponential backoff.
    pub transient_failures: u64,
    pub server_errors: u64,
    pub throttled: u64,
    pub timeouts: u64,
    pub network_errors: u64,
}

/// An object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the configured prefix, e.g. `01J.../chunks/000001`.
    pub key: String,
    pub size: u64,
    /// Last modification, ms since the epoch.
    pub last_modified_ms: i64,
}

/// A bucket client: an object store (with the configured prefix applied), counters,
/// upload settings. Cheap to clone; clones share counters.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    name: String,
    http: Arc<HttpCounters>,
    ops: Arc<OpCounters>,
    upload: UploadSettings,
    secrets: Arc<Vec<String>>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bucket").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Bucket {
    /// Builds the client a configuration describes. Nothing is sent yet except, for an
    /// S3 bucket on `s3.amazonaws.com` with no region, the region lookup; call
    /// [`Bucket::check`] to fail fast on a wrong endpoint, bucket or credentials.
    pub async fn open(cfg: &ObjstoreConfig) -> Result<Bucket> {
        let http = Arc::new(HttpCounters::default());
        let built = store::build(cfg, http.clone()).await?;
        Ok(Bucket {
            store: built.store,
            name: cfg.describe(),
            http,
            ops: Arc::default(),
            upload: built.upload,
            secrets: Arc::new(built.secrets),
        })
    }

    /// A client over any object store (tests use `object_store::memory::InMemory`).
    pub fn from_store(store: Arc<dyn ObjectStore>, name: impl Into<String>) -> Bucket {
        Bucket {
            store,
            name: name.into(),
            http: Arc::default(),
            ops: Arc::default(),
            upload: UploadSettings::default(),
            secrets: Arc::default(),
        }
    }

    /// Overrides the upload settings (part size, multipart, attributes).
    pub fn with_upload_settings(mut self, upload: UploadSettings) -> Bucket {
        self.upload = upload;
        self
    }

    /// The bucket as messages name it (`s3://bucket/prefix`); no secrets.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The underlying store (prefix applied).
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn stats(&self) -> BucketStats {
        let h = &self.http;
        BucketStats {
            operations: Op::ALL
                .iter()
                .enumerate()
                .map(|(i, op)| {
                    (op.name(), self.ops.ops[i].load(Ordering::Relaxed), self.ops.failures[i].load(Ordering::Relaxed))
                })
                .collect(),
            http_requests: h.requests.load(Ordering::Relaxed),
            transient_failures: h.transient_failures(),
            server_errors: h.server_errors.load(Ordering::Relaxed),
            throttled: h.throttled.load(Ordering::Relaxed),
            timeouts: h.timeouts.load(Ordering::Relaxed),
            network_errors: h.network_errors.load(Ordering::Relaxed),
        }
    }

    /// One listing of the bucket's top level: fails with a classified error when the
    /// endpoint is unreachable, the bucket missing or the credentials wrong.
    pub async fn check(&self) -> Result<()> {
        self.list_dir("").await.map(|_| ())
    }

    fn count(&self, op: Op) {
        self.ops.ops[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn fail(&self, op: Op, verb: &'static str, key: &str, e: &object_store::Error) -> BucketError {
        self.ops.failures[op as usize].fetch_add(1, Ordering::Relaxed);
        let secrets = self.secrets.clone();
        let redact = move |mut s: String| {
            for secret in secrets.iter() {
                s = s.replace(secret.as_str(), "<redacted>");
            }
            s
        };
        BucketError::Store(StoreError::from_object_store(&self.name, verb, key, e, &redact))
    }

    /// The object's bytes, or `None` if there is no such object.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.count(Op::Get);
        let path = ObjectPath::from(key);
        let r = match self.store.get(&path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.fail(Op::Get, "get", key, &e)),
        };
        match r.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(Op::Get, "get", key, &e)),
        }
    }

    /// Writes an object from memory (one PUT).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        self.count(Op::Upload);
        let opts = PutOptions { attributes: self.upload.attributes.clone(), ..Default::default() };
        self.store
            .put_opts(&ObjectPath::from(key), data.into(), opts)
            .await
            .map(|_| ())
            .map_err(|e| self.fail(Op::Upload, "put", key, &e))
    }

    /// Writes an object from a local file: one PUT up to the part size, a multipart
    /// upload above it. Returns the number of bytes sent.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<u64> {
        let size = tokio::fs::metadata(file).await.map_err(|e| LocalError::io(file, e))?.len();
        if !self.upload.multipart || size <= self.upload.part_size {
            let data = tokio::fs::read(file).await.map_err(|e| LocalError::io(file, e))?;
            let n = data.len() as u64;
            self.put(key, Bytes::from(data)).await?;
            return Ok(n);
        }
        self.count(Op::Upload);
        let path = ObjectPath::from(key);
        let opts = PutMultipartOptions { attributes: self.upload.attributes.clone(), ..Default::default() };
        let upload =
            self.store.put_multipart_opts(&path, opts).await.map_err(|e| self.fail(Op::Upload, "put", key, &e))?;
        let part = usize::try_from(self.upload.part_size).unwrap_or(usize::MAX).max(5 << 20);
        let mut w = WriteMultipart::new_with_chunk_size(upload, part);
        let mut f = tokio::fs::File::open(file).await.map_err(|e| LocalError::io(file, e))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        loop {
            let n = match f.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(LocalError::io(file, e).into());
                }
            };
            if n == 0 {
                break;
            }
            // At most two parts in flight per file: memory stays at a few part sizes.
            if let Err(e) = w.wait_for_capacity(2).await {
                return Err(self.fail(Op::Upload, "put", key, &e));
            }
            w.write(&buf[..n]);
            sent += n as u64;
        }
        w.finish().await.map_err(|e| self.fail(Op::Upload, "put", key, &e))?;
        Ok(sent)
    }

    /// Streams an object into a new local file (fsynced). Returns the bytes written;
    /// `NotFound` is an error here.
    pub async fn get_to_file(&self, key: &str, file: &Path) -> Result<u64> {
        self.count(Op::Get);
        let r = self.store.get(&ObjectPath::from(key)).await.map_err(|e| self.fail(Op::Get, "get", key, &e))?;
        let mut out = tokio::fs::File::create(file).await.map_err(|e| LocalError::io(file, e))?;
        let mut stream = r.into_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.fail(Op::Get, "get", key, &e))?;
            out.write_all(&chunk).await.map_err(|e| LocalError::io(file, e))?;
            n += chunk.len() as u64;
        }
        out.flush().await.map_err(|e| LocalError::io(file, e))?;
        out.sync_all().await.map_err(|e| LocalError::io(file, e))?;
        Ok(n)
    }

    /// Size and time of an object, or `None` if there is none.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>> {
        self.count(Op::Attributes);
        match self.store.head(&ObjectPath::from(key)).await {
            Ok(m) => Ok(Some(info(m))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail(Op::Attributes, "head", key, &e)),
        }
    }

    /// Deletes an object; deleting a missing one is not an error. `false` when the store
    /// said there was none (a filesystem does; S3 does not tell).
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.count(Op::Delete);
        match self.store.delete(&ObjectPath::from(key)).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.fail(Op::Delete, "delete", key, &e)),
        }
    }

    /// Every object under `prefix/` (recursively), sorted by key. `""` lists the bucket.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.count(Op::Iter);
        let p = ObjectPath::from(prefix);
        let mut stream = self.store.list(if prefix.is_empty() { None } else { Some(&p) });
        let mut out = Vec::new();
        while let Some(m) = stream.next().await {
            match m {
                Ok(m) => out.push(info(m)),
                Err(object_store::Error::NotFound { .. }) if !prefix.is_empty() => {}
                Err(e) => return Err(self.fail(Op::Iter, "list", prefix, &e)),
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// One level under `prefix/`: the "directories" (names without the trailing slash)
    /// and the objects.
    pub async fn list_dir(&self, prefix: &str) -> Result<(Vec<String>, Vec<ObjectInfo>)> {
        self.count(Op::Iter);
        let p = ObjectPath::from(prefix);
        let r = match self.store.list_with_delimiter(if prefix.is_empty() { None } else { Some(&p) }).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) if !prefix.is_empty() => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(self.fail(Op::Iter, "list", prefix, &e)),
        };
        let mut dirs: Vec<String> = r.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_string)).collect();
        dirs.sort();
        let mut objects: Vec<ObjectInfo> = r.objects.into_iter().map(info).collect();
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok((dirs, objects))
    }
}

fn info(m: object_store::ObjectMeta) -> ObjectInfo {
    ObjectInfo { key: m.location.to_string(), size: m.size, last_modified_ms: m.last_modified.timestamp_millis() }
}

/// A tokio runtime for command-line tools: the bucket edge is async, the caller is not.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    /// The job loop spawns these futures on a multi-threaded runtime.
    #[test]
    fn futures_are_send() {
        fn send<T: Send>(_: T) {}
        let b = Bucket::from_store(Arc::new(InMemory::new()), "mem");
        let id = ulid::Ulid::nil();
        let dir = std::path::Path::new("/nonexistent");
        send(b.get("k"));
        send(b.put_file("k", dir));
        send(b.get_to_file("k", dir));
        send(b.list(""));
        send(b.upload_block(dir, &UploadOptions::default()));
        send(b.download_block(id, dir, &DownloadOptions::default()));
        send(b.delete_block(id));
        send(b.mark_for_deletion(id, ""));
        send(sync::sync(&b, &SyncOptions::default()));
        send(sync::cleanup(&b, &Synced::default(), &CleanupOptions::default()));
        fn sync_send<T: Send + Sync + Clone + 'static>() {}
        sync_send::<Bucket>();
    }

    #[test]
    fn object_operations_and_counters() {
        rt().block_on(async {
            let b = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            assert_eq!(b.get("a/x").await.unwrap(), None);
            b.put("a/x", Bytes::from_static(b"hello")).await.unwrap();
            b.put("a/b/y", Bytes::from_static(b"!")).await.unwrap();
            b.put("ab/z", Bytes::from_static(b"")).await.unwrap();
            assert_eq!(b.get("a/x").await.unwrap().as_deref(), Some(&b"hello"[..]));
            let keys: Vec<String> = b.list("a").await.unwrap().into_iter().map(|o| o.key).collect();
            assert_eq!(keys, ["a/b/y", "a/x"], "a prefix is a directory, not a string prefix");
            let (dirs, objs) = b.list_dir("").await.unwrap();
            assert_eq!(dirs, ["a", "ab"]);
            assert!(objs.is_empty());
            assert_eq!(b.head("a/x").await.unwrap().map(|o| o.size), Some(5));
            assert!(b.delete("a/x").await.unwrap());
            // Deleting a missing key is not an error (S3 does not even say).
            b.delete("a/x").await.unwrap();
            let s = b.stats();
            let get = s.operations.iter().find(|o| o.0 == "get").unwrap();
            assert_eq!((get.1, get.2), (2, 0), "a missing object is not a failure");
        });
    }

    #[test]
    fn large_files_go_up_in_parts_and_come_back_whole() {
        rt().block_on(async {
            let b = Bucket::from_store(Arc::new(InMemory::new()), "mem")
                .with_upload_settings(UploadSettings { part_size: 5 << 20, ..Default::default() });
            let dir = tempfile::tempdir().unwrap();
            let src = dir.path().join("big");
            let data: Vec<u8> = (0..(12u32 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
            std::fs::write(&src, &data).unwrap();
            assert_eq!(b.put_file("x/big", &src).await.unwrap(), data.len() as u64);
            let back = dir.path().join("back");
            assert_eq!(b.get_to_file("x/big", &back).await.unwrap(), data.len() as u64);
            assert!(std::fs::read(&back).unwrap() == data);
            let e = b.get_to_file("x/missing", &dir.path().join("m")).await.unwrap_err();
            assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
        });
    }
}
