//! Object storage: the bucket a Thanos compactor works on, through `object_store`.
//!
//! Layers, bottom up:
//! - [`config`]: Thanos's objstore YAML, parsed strictly; [`store`] builds the
//!   object_store client it describes (S3, GCS, Azure, local filesystem) and counts
//!   HTTP attempts and retried failures.
//! - [`Bucket`] (this file): object operations (get, put, list, delete) with the
//!   configured prefix, one-line classified errors ([`error`]) and per-operation
//!   counters ([`BucketStats`]). On a FILESYSTEM bucket, whole-file uploads and
//!   downloads are kernel file copies ([`filesystem`]) instead of object_store streams.
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
pub mod filesystem;
pub mod replicate;
pub mod store;
pub mod sync;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutMultipartOptions, PutOptions};
use tokio::io::AsyncWriteExt;

pub use block::{BlockObjects, DeleteReport, DownloadOptions, MarkerRead, MetaRead, UploadOptions};
pub use config::{ConfigError, ObjstoreConfig, Provider};
pub use error::{BucketError, ErrorKind, Result, StoreError};
use filesystem::{Failure, FsBucket};
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
    /// A FILESYSTEM bucket's files: `put_file` and `get_to_file` copy them directly.
    filesystem: Option<FsBucket>,
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
            filesystem: built.filesystem,
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
            filesystem: None,
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
    /// upload above it; on a FILESYSTEM bucket, a file copy. Returns the number of
    /// bytes sent.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<u64> {
        self.put_file_with(key, file, false).await
    }

    /// As [`put_file`](Self::put_file); with `link`, a FILESYSTEM bucket on the same
    /// filesystem gets a hard link instead of a copy (see `filesystem.rs`): only for a
    /// durable file nobody writes again.
    pub async fn put_file_with(&self, key: &str, file: &Path, link: bool) -> Result<u64> {
        let size = tokio::fs::metadata(file).await.map_err(|e| LocalError::io(file, e))?.len();
        if let Some(fs) = self.direct() {
            self.count(Op::Upload);
            let (key_owned, src) = (key.to_string(), file.to_path_buf());
            let done = tokio::task::spawn_blocking(move || match link {
                true => fs.put_file_linked(&key_owned, &src),
                false => fs.put_file(&key_owned, &src),
            })
            .await;
            return self.copied(done, Op::Upload, "put", key, file);
        }
        // The payload is the mapped file itself (zero-copy `Bytes`): parts in flight and
        // retries cost page cache, not heap, whatever the part size.
        let path_buf = file.to_path_buf();
        let data = tokio::task::spawn_blocking(move || crate::mmap::FileBytes::open(&path_buf))
            .await
            .map_err(|e| LocalError::Task { what: "file map", problem: e.to_string() })??;
        let data = Bytes::from_owner(data);
        if data.len() as u64 != size {
            return Err(LocalError::BadWrite {
                path: file.to_path_buf(),
                problem: format!("changed while being uploaded ({size} bytes, then {})", data.len()),
            }
            .into());
        }
        if !self.upload.multipart || size <= self.upload.part_size {
            let n = data.len() as u64;
            self.put(key, data).await?;
            return Ok(n);
        }
        self.count(Op::Upload);
        let path = ObjectPath::from(key);
        let opts = PutMultipartOptions { attributes: self.upload.attributes.clone(), ..Default::default() };
        let mut upload =
            self.store.put_multipart_opts(&path, opts).await.map_err(|e| self.fail(Op::Upload, "put", key, &e))?;
        let part = usize::try_from(self.upload.part_size).unwrap_or(usize::MAX).max(5 << 20);
        // Parts are started in order (each `put_part` takes the next part number), at
        // most two at once; the first failure stops the rest and aborts the upload.
        let parts = (0..data.len()).step_by(part).map(|start| data.slice(start..(start + part).min(data.len())));
        let sent = futures::stream::iter(parts)
            .map(|p| upload.put_part(p.into()))
            .buffer_unordered(2)
            .try_for_each(|()| std::future::ready(Ok(())))
            .await;
        if let Err(e) = sent {
            let _ = upload.abort().await;
            return Err(self.fail(Op::Upload, "put", key, &e));
        }
        upload.complete().await.map_err(|e| self.fail(Op::Upload, "put", key, &e))?;
        Ok(size)
    }

    /// Streams an object into a new local file (fsynced); on a FILESYSTEM bucket, a
    /// file copy. Returns the bytes written; `NotFound` is an error here.
    pub async fn get_to_file(&self, key: &str, file: &Path) -> Result<u64> {
        self.get_to_file_with(key, file, false).await
    }

    /// As [`get_to_file`](Self::get_to_file); with `link`, a FILESYSTEM bucket on the
    /// same filesystem gives a hard link instead of a copy: only for a file nobody writes.
    pub async fn get_to_file_with(&self, key: &str, file: &Path, link: bool) -> Result<u64> {
        self.count(Op::Get);
        if let Some(fs) = self.direct() {
            let (key_owned, dst) = (key.to_string(), file.to_path_buf());
            let done = tokio::task::spawn_blocking(move || match link {
                true => fs.get_to_file_linked(&key_owned, &dst),
                false => fs.get_to_file(&key_owned, &dst),
            })
            .await;
            return self.copied(done, Op::Get, "get", key, file);
        }
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

    /// The FILESYSTEM bucket to copy files into and out of, unless objects carry
    /// attributes (`LocalFileSystem` refuses those: the object_store path says so).
    fn direct(&self) -> Option<FsBucket> {
        self.filesystem.clone().filter(|_| self.upload.attributes.is_empty())
    }

    /// A direct copy's outcome as the object_store path reports it: bucket-side
    /// failures classified and counted, local ones naming the local file.
    fn copied(
        &self,
        done: std::result::Result<std::result::Result<u64, Failure>, tokio::task::JoinError>,
        op: Op,
        verb: &'static str,
        key: &str,
        file: &Path,
    ) -> Result<u64> {
        match done {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(Failure::Local(e))) => Err(LocalError::io(file, e).into()),
            Ok(Err(Failure::Store(e))) => Err(self.fail(op, verb, key, &e)),
            Err(e) => Err(self.fail(op, verb, key, &object_store::Error::JoinError { source: e })),
        }
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

    /// A FILESYSTEM bucket with prefix `tenant` under `dir/bucket` as `Bucket::open`
    /// builds it (files copied directly), a client of the same files through
    /// object_store's streams only, and the directory the objects are in.
    async fn fs_buckets(dir: &Path) -> (Bucket, Bucket, std::path::PathBuf) {
        let root = dir.join("bucket");
        let yaml = format!("type: FILESYSTEM\nconfig: {{directory: '{}'}}\nprefix: tenant\n", root.display());
        let cfg = ObjstoreConfig::parse(&yaml).unwrap();
        let direct = Bucket::open(&cfg).await.unwrap();
        assert!(direct.direct().is_some(), "a FILESYSTEM bucket copies files");
        let fs = object_store::local::LocalFileSystem::new_with_prefix(&root).unwrap().with_automatic_cleanup(true);
        let streamed =
            Bucket::from_store(Arc::new(object_store::prefix::PrefixStore::new(fs, "tenant")), cfg.describe());
        assert!(streamed.direct().is_none());
        (direct, streamed, root.join("tenant"))
    }

    /// Every file under `dir`, relative, sorted (none if `dir` is gone: deleting the
    /// last object removes the directories it was in).
    fn files_under(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for e in entries {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }

    fn op(b: &Bucket, name: &str) -> (u64, u64) {
        b.stats().operations.iter().find(|o| o.0 == name).map(|o| (o.1, o.2)).unwrap()
    }

    #[test]
    fn linked_transfers_share_the_inode_on_one_filesystem_and_copy_across() {
        use std::os::unix::fs::MetadataExt;
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (b, streamed, files) = fs_buckets(dir.path()).await;
            let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
            let src = dir.path().join("out");
            std::fs::write(&src, b"chunk bytes").unwrap();
            let key = "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001";
            // Same filesystem: the object is the file, staged and renamed like a copy
            // (a leftover staging name is skipped, not reused).
            std::fs::create_dir_all(files.join("01JAAAAAAAAAAAAAAAAAAAAAAA/chunks")).unwrap();
            std::fs::write(files.join(format!("{key}#1")), b"half").unwrap();
            assert_eq!(b.put_file_with(key, &src, true).await.unwrap(), 11);
            assert_eq!(ino(&files.join(key)), ino(&src));
            assert_eq!(std::fs::read(files.join(format!("{key}#1"))).unwrap(), b"half");
            assert_eq!(streamed.list("").await.unwrap().iter().map(|o| o.size).collect::<Vec<_>>(), [11]);
            let back = dir.path().join("back");
            assert_eq!(b.get_to_file_with(key, &back, true).await.unwrap(), 11);
            assert_eq!(ino(&back), ino(&src));
            // Removing either name leaves the other whole.
            std::fs::remove_file(&src).unwrap();
            std::fs::remove_file(&back).unwrap();
            assert_eq!(std::fs::read(files.join(key)).unwrap(), b"chunk bytes");
            // A missing object is still NotFound, and nothing is created.
            let e = b.get_to_file_with("01JAAAAAAAAAAAAAAAAAAAAAAA/index", &back, true).await.unwrap_err();
            assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
            assert!(!back.exists());
            // Another filesystem (tmpfs): copied, both ways.
            let shm = tempfile::tempdir_in("/dev/shm").unwrap();
            let far = shm.path().join("out");
            std::fs::write(&far, b"from tmpfs").unwrap();
            let key2 = "01JAAAAAAAAAAAAAAAAAAAAAAA/index";
            assert_eq!(b.put_file_with(key2, &far, true).await.unwrap(), 10);
            assert_ne!(ino(&files.join(key2)), ino(&far));
            assert_eq!(std::fs::read(files.join(key2)).unwrap(), b"from tmpfs");
            let far_back = shm.path().join("back");
            assert_eq!(b.get_to_file_with(key2, &far_back, true).await.unwrap(), 10);
            assert_eq!(std::fs::read(&far_back).unwrap(), b"from tmpfs");
            assert_eq!(
                files_under(&files),
                [key.to_string(), format!("{key}#1"), key2.to_string()],
                "no staging file of its own left"
            );
        });
    }

    #[test]
    fn filesystem_bucket_copies_files_whole_and_atomically() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (b, streamed, files) = fs_buckets(dir.path()).await;
            let data: Vec<u8> =
                (0..(64u32 << 20) + 12345).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
            assert!(data.len() as u64 > UploadSettings::default().part_size);
            let src = dir.path().join("big");
            std::fs::write(&src, &data).unwrap();
            let key = "01JAAAAAAAAAAAAAAAAAAAAAAA/chunks/000001";
            assert_eq!(b.put_file(key, &src).await.unwrap(), data.len() as u64);
            assert!(std::fs::read(files.join(key)).unwrap() == data, "the object is <directory>/<prefix>/<key>");
            assert_eq!(files_under(&dir.path().join("bucket")), [format!("tenant/{key}")], "no staging file left");
            let listed = streamed.list("01JAAAAAAAAAAAAAAAAAAAAAAA").await.unwrap();
            assert_eq!(listed.iter().map(|o| (o.key.as_str(), o.size)).collect::<Vec<_>>(), [(key, data.len() as u64)]);

            let back = dir.path().join("back");
            assert_eq!(b.get_to_file(key, &back).await.unwrap(), data.len() as u64);
            assert!(std::fs::read(&back).unwrap() == data);

            // Overwritten by a smaller file: replaced whole; downloaded over a larger
            // local file: truncated.
            std::fs::write(&src, b"small").unwrap();
            assert_eq!(b.put_file(key, &src).await.unwrap(), 5);
            assert_eq!(b.head(key).await.unwrap().map(|o| o.size), Some(5));
            assert_eq!(b.get_to_file(key, &back).await.unwrap(), 5);
            assert_eq!(std::fs::read(&back).unwrap(), b"small");

            // A staging file a crashed writer left is neither reused nor listed.
            std::fs::write(files.join(format!("{key}#1")), b"half").unwrap();
            std::fs::write(&src, b"again").unwrap();
            assert_eq!(b.put_file(key, &src).await.unwrap(), 5);
            assert_eq!(std::fs::read(files.join(key)).unwrap(), b"again");
            assert_eq!(std::fs::read(files.join(format!("{key}#1"))).unwrap(), b"half");
            assert_eq!(streamed.list("").await.unwrap().len(), 1);
            assert_eq!(
                files_under(&files),
                [key.to_string(), format!("{key}#1")],
                "only the crashed writer's staging file remains"
            );

            // An empty file.
            std::fs::write(&src, b"").unwrap();
            assert_eq!(b.put_file("e/meta.json", &src).await.unwrap(), 0);
            assert_eq!(b.get_to_file("e/meta.json", &back).await.unwrap(), 0);
            assert_eq!(std::fs::metadata(&back).unwrap().len(), 0);
            assert_eq!((op(&b, "upload"), op(&b, "get")), ((4, 0), (3, 0)));
        });
    }

    #[test]
    fn filesystem_copies_map_keys_as_object_store_does() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (b, streamed, files) = fs_buckets(dir.path()).await;
            let src = dir.path().join("src");
            let back = dir.path().join("back");
            // `#` is encoded (`k%2312`): a key never looks like a staging file `<name>#<n>`.
            for key in [
                "01JAAAAAAAAAAAAAAAAAAAAAAA/meta.json",
                "a b/c%d#e~",
                "k#12",
                "x/./y/../z",
                "/lead//trail/",
                "ünï/cødé",
            ] {
                // Written directly, read through object_store, and the other way round.
                std::fs::write(&src, key.as_bytes()).unwrap();
                b.put_file(key, &src).await.unwrap();
                assert_eq!(streamed.get(key).await.unwrap().as_deref(), Some(key.as_bytes()), "{key}");
                streamed.delete(key).await.unwrap();
                streamed.put_file(key, &src).await.unwrap();
                assert_eq!(b.get_to_file(key, &back).await.unwrap(), key.len() as u64, "{key}");
                assert_eq!(std::fs::read(&back).unwrap(), key.as_bytes());
                let listed: Vec<String> = streamed.list("").await.unwrap().into_iter().map(|o| o.key).collect();
                assert_eq!(listed, [ObjectPath::from(key).to_string()], "{key}");
                b.delete(key).await.unwrap();
                assert!(files_under(&files).is_empty(), "{key}: {:?}", files_under(&files));
            }
        });
    }

    /// Makes a directory read-only for this process, root included: mode 0555, and the
    /// immutable flag (root ignores modes; the flag needs root and ext4, xfs or btrfs).
    /// Undone on drop.
    struct ReadOnly(std::path::PathBuf);

    impl ReadOnly {
        fn new(dir: &Path) -> ReadOnly {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555)).unwrap();
            let f = std::fs::File::open(dir).unwrap();
            if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
                let _ = rustix::fs::ioctl_setflags(&f, flags | rustix::fs::IFlags::IMMUTABLE);
            }
            let ro = ReadOnly(dir.to_path_buf());
            let probe = dir.join("probe");
            if std::fs::File::create(&probe).is_ok() {
                let _ = std::fs::remove_file(&probe);
                panic!(
                    "cannot make {} read-only here (root on a filesystem without the immutable flag)",
                    dir.display()
                );
            }
            ro
        }
    }

    impl Drop for ReadOnly {
        fn drop(&mut self) {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(f) = std::fs::File::open(&self.0) {
                if let Ok(flags) = rustix::fs::ioctl_getflags(&f) {
                    let _ = rustix::fs::ioctl_setflags(&f, flags - rustix::fs::IFlags::IMMUTABLE);
                }
            }
            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
        }
    }

    #[test]
    fn filesystem_copy_failures_are_reported_as_object_store_reports_them() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let (b, streamed, files) = fs_buckets(dir.path()).await;
            let src = dir.path().join("src");
            std::fs::write(&src, b"data").unwrap();

            // A missing object: NotFound, counted as a failed get, no local file made.
            let dst = dir.path().join("dst");
            let e = b.get_to_file("01JAAAAAAAAAAAAAAAAAAAAAAA/index", &dst).await.unwrap_err();
            assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
            let s = streamed.get_to_file("01JAAAAAAAAAAAAAAAAAAAAAAA/index", &dst).await.unwrap_err();
            assert_eq!(e.to_string(), s.to_string());
            assert!(!dst.exists());
            assert_eq!(op(&b, "get"), (1, 1));
            // A directory is not an object.
            b.put_file("d/x", &src).await.unwrap();
            let e = b.get_to_file("d", &dst).await.unwrap_err();
            assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");

            // The bucket side refuses: a bucket error, as object_store says it, counted,
            // nothing left behind.
            b.put_file("blk", &src).await.unwrap();
            let e = b.put_file("blk/index", &src).await.unwrap_err();
            assert!(matches!(e, BucketError::Store(_)), "a file where a directory should be: {e:?}");
            assert_eq!(e.to_string(), streamed.put_file("blk/index", &src).await.unwrap_err().to_string());
            assert_eq!(op(&b, "upload"), (3, 1));
            let before = files_under(&files);
            {
                let _ro = ReadOnly::new(&files);
                for key in ["k", "new/index"] {
                    let e = b.put_file(key, &src).await.unwrap_err();
                    assert!(matches!(e, BucketError::Store(_)), "read-only bucket directory: {e:?}");
                    assert_eq!(e.to_string(), streamed.put_file(key, &src).await.unwrap_err().to_string());
                }
            }
            assert_eq!(files_under(&files), before);

            // The local side fails: a local error naming the local file, as before.
            for (missing, is_dir) in [(dir.path().join("nothing"), false), (dir.path().to_path_buf(), true)] {
                let e = b.put_file("k", &missing).await.unwrap_err();
                assert!(matches!(e, BucketError::Local(_)), "{e:?}");
                assert!(e.to_string().starts_with(&missing.display().to_string()), "{e}");
                assert_eq!(e.to_string(), streamed.put_file("k", &missing).await.unwrap_err().to_string(), "{is_dir}");
            }
            let into = dir.path().join("no/such/dir");
            let e = b.get_to_file("blk", &into).await.unwrap_err();
            assert!(matches!(e, BucketError::Local(_)) && e.to_string().contains("no/such/dir"), "{e:?}");
            assert_eq!(e.to_string(), streamed.get_to_file("blk", &into).await.unwrap_err().to_string());
            assert!(files_under(&files).iter().all(|f| !f.contains('#')), "{:?}", files_under(&files));
        });
    }
}
