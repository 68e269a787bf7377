//! The Thanos block protocol over a [`Bucket`] (`pkg/block/block.go`,
//! `pkg/block/metadata/markers.go`; formats.md §8).
//!
//! A block is the objects under `<ULID>/`: `chunks/NNNNNN`, `index`, `meta.json` and
//! any markers (`deletion-mark.json`, `no-compact-mark.json`, `no-downsample-mark.json`).
//! - **Upload**: every file under `chunks/`, then `index`, then `meta.json` last, with
//!   `thanos.files` and `thanos.upload_time` filled in; never `tombstones`. Then every
//!   object is checked to be there with its size. A reader that sees `meta.json` sees a
//!   complete block; one without `meta.json` is a partial upload.
//! - **Delete**: `meta.json` first (the block disappears for readers at once), then
//!   every other object except `deletion-mark.json`, which goes last so an interrupted
//!   delete is still known to be one.
//! - **Download**: into `<ULID>.tmp-for-creation/` (which Prometheus and strata pass
//!   over and clean up), sizes checked against the listing and `thanos.files`, fsynced,
//!   optionally verified, then renamed to `<ULID>/`.
//!
//! Must not: decide *which* blocks to upload, delete or mark (the job and the tools do).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde::de::DeserializeOwned;
use ulid::Ulid;

use super::error::{BucketError, Result};
use super::{Bucket, ObjectInfo};
use crate::block::{CHUNKS_DIR, INDEX_FILE, META_FILE, TOMBSTONES_FILE};
use crate::error::Error as LocalError;
use crate::format::meta::{
    marker_json, parse_marker, BlockMeta, DeletionMark, FileEntry, NoCompactMark, NoDownsampleMark, DELETION_MARK,
    NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK,
};
use crate::time::{now_ms, now_nanos, rfc3339_nano};

/// The marker files, in the order they are reported.
pub const MARKERS: [&str; 3] = [DELETION_MARK, NO_COMPACT_MARK, NO_DOWNSAMPLE_MARK];

/// `<ULID>/<rel>`.
pub fn block_key(id: Ulid, rel: &str) -> String {
    format!("{id}/{rel}")
}

/// `meta.json` as read from the bucket.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // one per block read, moved once: boxing buys nothing
pub enum MetaRead {
    Ok(BlockMeta),
    /// No meta.json: a partial upload, or a block being deleted.
    Missing,
    /// meta.json is there but unusable (not JSON, wrong version, another block's ULID).
    Corrupt(String),
}

/// A marker as read from the bucket.
#[derive(Clone, Debug, PartialEq)]
pub enum MarkerRead<T> {
    Ok(T),
    Missing,
    /// Not parsable or not version 1: Thanos treats it as a partially uploaded marker,
    /// that is, as absent, with a warning.
    Unparsable(String),
}

impl<T> MarkerRead<T> {
    pub fn ok(self) -> Option<T> {
        match self {
            MarkerRead::Ok(t) => Some(t),
            _ => None,
        }
    }
}

/// What one listing of `<ULID>/` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockObjects {
    pub meta: Option<ObjectInfo>,
    pub index: Option<ObjectInfo>,
    /// The markers present, by file name.
    pub markers: Vec<String>,
    /// Whether `chunks/` holds anything.
    pub has_chunks: bool,
    /// Every other object directly under `<ULID>/`.
    pub other: Vec<ObjectInfo>,
}

/// How a block is uploaded.
#[derive(Clone, Debug)]
pub struct UploadOptions {
    /// Chunk segment files uploaded at once.
    pub concurrency: usize,
    /// The meta.json to upload instead of the one in the directory (e.g. with external
    /// labels added). `thanos.files` and `thanos.upload_time` are filled in either way.
    pub meta: Option<BlockMeta>,
    /// A FILESYSTEM bucket on the same filesystem gets hard links, not copies: only for
    /// a block that is durable and never written again (the job's own output).
    pub link: bool,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions { concurrency: 4, meta: None, link: false }
    }
}

/// How a block is downloaded.
#[derive(Clone, Debug)]
pub struct DownloadOptions {
    /// Files fetched at once (`--compact.blocks-fetch-concurrency`).
    pub concurrency: usize,
    /// Run [`crate::verify::verify_block`] before the block is renamed into place; any
    /// problem fails the download.
    pub verify: bool,
    /// From a FILESYSTEM bucket on the same filesystem, hard links instead of copies:
    /// only for a download that is read and removed, never written (the job's sources).
    pub link: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions { concurrency: 4, verify: false, link: false }
    }
}

/// What [`Bucket::delete_block`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Objects deleted, in the order they went (meta.json first, the deletion mark last).
    pub deleted: Vec<String>,
}

/// Parses meta.json bytes of block `id`.
pub fn parse_meta(id: Ulid, bytes: &[u8]) -> MetaRead {
    match BlockMeta::parse(bytes) {
        Ok(m) if m.ulid != id => MetaRead::Corrupt(format!("meta.json names block {} instead", m.ulid)),
        Ok(m) => MetaRead::Ok(m),
        Err(e) => MetaRead::Corrupt(e.to_string()),
    }
}

/// Runs every check of `strata verify` on a downloaded block in `dir`; the first problem
/// fails the download.
async fn verify_downloaded(id: Ulid, dir: &Path) -> Result<()> {
    let t = dir.to_path_buf();
    let (problems, _) = tokio::task::spawn_blocking(move || crate::verify::verify_block(&t))
        .await
        .map_err(|e| BucketError::block(id, format!("verify task failed: {e}")))??;
    if let Some(p) = problems.first() {
        return Err(BucketError::block(
            id,
            format!(
                "downloaded block fails verification ({} problems), first: {}: {}",
                problems.len(),
                p.file,
                p.message
            ),
        ));
    }
    Ok(())
}

impl Bucket {
    /// ULIDs of the blocks (`<ULID>/` directories) in the bucket, sorted. Other
    /// top-level names (`debug/`, `bucket-cache/`, ...) are passed over.
    pub async fn block_ids(&self) -> Result<Vec<Ulid>> {
        let (dirs, _) = self.list_dir("").await?;
        let mut ids: Vec<Ulid> =
            dirs.iter().filter(|d| d.len() == 26).filter_map(|d| Ulid::from_string(d).ok()).collect();
        ids.sort();
        Ok(ids)
    }

    /// One non-recursive listing of `<ULID>/`.
    pub async fn block_objects(&self, id: Ulid) -> Result<BlockObjects> {
        let (dirs, objects) = self.list_dir(&id.to_string()).await?;
        let mut b = BlockObjects { has_chunks: dirs.iter().any(|d| d == CHUNKS_DIR), ..Default::default() };
        for o in objects {
            let name = o.key.rsplit('/').next().unwrap_or("").to_string();
            match name.as_str() {
                META_FILE => b.meta = Some(o),
                INDEX_FILE => b.index = Some(o),
                n if MARKERS.contains(&n) => b.markers.push(name),
                _ => b.other.push(o),
            }
        }
        Ok(b)
    }

    /// Reads `<ULID>/meta.json`.
    pub async fn read_meta(&self, id: Ulid) -> Result<MetaRead> {
        Ok(match self.get(&block_key(id, META_FILE)).await? {
            None => MetaRead::Missing,
            Some(b) => parse_meta(id, &b),
        })
    }

    /// Reads a marker (`name` is one of [`MARKERS`]; `T` its struct).
    pub async fn read_marker<T: DeserializeOwned>(&self, id: Ulid, name: &'static str) -> Result<MarkerRead<T>> {
        Ok(match self.get(&block_key(id, name)).await? {
            None => MarkerRead::Missing,
            Some(b) => match parse_marker::<T>(&b, name) {
                Ok(m) => MarkerRead::Ok(m),
                Err(e) => MarkerRead::Unparsable(e.to_string()),
            },
        })
    }

    /// Writes a marker unless one is there already (Thanos never overwrites a marker:
    /// the first deletion time stands). `Ok(false)` when it was already there. The
    /// block must exist (have a meta.json).
    pub async fn write_marker(&self, id: Ulid, name: &'static str, json: Vec<u8>) -> Result<bool> {
        let key = block_key(id, name);
        if self.head(&key).await?.is_some() {
            return Ok(false);
        }
        if self.head(&block_key(id, META_FILE)).await?.is_none() {
            return Err(BucketError::block(
                id,
                format!("cannot write {name}: the block has no meta.json in {}", self.name()),
            ));
        }
        self.put(&key, Bytes::from(json)).await?;
        Ok(true)
    }

    /// Marks a block for deletion now (`deletion-mark.json`); `Ok(false)` if it already was.
    pub async fn mark_for_deletion(&self, id: Ulid, details: &str) -> Result<bool> {
        let m = DeletionMark { id, version: 1, details: details.to_string(), deletion_time: now_ms() / 1000 };
        self.write_marker(id, DELETION_MARK, marker_json(&m)).await
    }

    /// Marks a block not to be compacted (`reason`: `manual`, `index-size-exceeding`,
    /// `block-index-out-of-order-chunk`, `downsample-vertical-compaction`, ...).
    pub async fn mark_no_compact(&self, id: Ulid, reason: &str, details: &str) -> Result<bool> {
        let m = NoCompactMark {
            id,
            version: 1,
            details: details.to_string(),
            no_compact_time: now_ms() / 1000,
            reason: reason.to_string(),
        };
        self.write_marker(id, NO_COMPACT_MARK, marker_json(&m)).await
    }

    /// Marks a block not to be downsampled.
    pub async fn mark_no_downsample(&self, id: Ulid, reason: &str, details: &str) -> Result<bool> {
        let m = NoDownsampleMark {
            id,
            version: 1,
            details: details.to_string(),
            no_downsample_time: now_ms() / 1000,
            reason: reason.to_string(),
        };
        self.write_marker(id, NO_DOWNSAMPLE_MARK, marker_json(&m)).await
    }

    /// Removes a marker; `Ok(false)` if there was none.
    pub async fn remove_marker(&self, id: Ulid, name: &'static str) -> Result<bool> {
        let key = block_key(id, name);
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.delete(&key).await
    }

    /// Uploads the block in `dir` (Thanos's `block.Upload`): chunks, then index, then
    /// meta.json with `thanos.files` and `thanos.upload_time`; then checks every object's
    /// size. The meta must carry a thanos section with external labels (as Thanos
    /// requires), and the block must not be in the bucket yet. On failure before
    /// meta.json the objects this call wrote are removed (best effort); if the check
    /// after it fails, meta.json is removed again so no reader sees the block.
    /// Returns the meta.json as uploaded.
    pub async fn upload_block(&self, dir: &Path, opts: &UploadOptions) -> Result<BlockMeta> {
        match self.upload_block_after(dir, opts, async { Ok::<(), std::convert::Infallible>(()) }).await? {
            Ok(meta) => Ok(meta),
            Err(never) => match never {},
        }
    }

    /// As [`upload_block`](Self::upload_block), with meta.json written only once `gate`
    /// has succeeded too: the chunks and the index go up while `gate` runs (the job checks
    /// the block it just wrote meanwhile). If `gate` fails, the objects written are
    /// removed (best effort) and its error is returned inside `Ok`; the bucket never holds
    /// a meta.json for a block `gate` refused.
    pub async fn upload_block_after<E>(
        &self,
        dir: &Path,
        opts: &UploadOptions,
        gate: impl std::future::Future<Output = std::result::Result<(), E>>,
    ) -> Result<std::result::Result<BlockMeta, E>> {
        let started = std::time::Instant::now();
        let mut meta = match &opts.meta {
            Some(m) => m.clone(),
            None => {
                let p = dir.join(META_FILE);
                let bytes = tokio::fs::read(&p).await.map_err(|e| LocalError::io(&p, e))?;
                BlockMeta::parse(&bytes).map_err(|e| LocalError::corrupt(&p, e))?
            }
        };
        let id = meta.ulid;
        if let Some(name) = dir.file_name().and_then(|n| n.to_str()).and_then(|n| Ulid::from_string(n).ok()) {
            if name != id {
                return Err(BucketError::block(
                    id,
                    format!("{}: directory name and meta.json ULID differ", dir.display()),
                ));
            }
        }
        match &meta.thanos {
            Some(t) if !t.labels.is_empty() => {}
            _ => return Err(BucketError::block(id, "empty external labels are not allowed for a block in a Thanos bucket (set them in meta.json's thanos section)")),
        }
        let files = gather_files(dir).await?;
        if self.head(&block_key(id, META_FILE)).await?.is_some() {
            return Err(BucketError::block(id, format!("already in {} (it has a meta.json)", self.name())));
        }
        {
            let t = meta.thanos.as_mut().expect("checked above");
            t.files = files
                .iter()
                .map(|(rel, size)| FileEntry { rel_path: rel.clone(), size_bytes: *size as i64, hash: None })
                .collect();
            t.files.push(FileEntry { rel_path: META_FILE.to_string(), size_bytes: 0, hash: None });
            t.files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
            t.upload_time = rfc3339_nano(now_nanos());
        }
        let meta_bytes = meta.to_json();

        let mut written: Vec<String> = Vec::new();
        // Both run to the end, so `written` names every object that may exist.
        let (result, gated) = futures::join!(self.upload_objects(dir, id, &files, opts, &mut written), gate);
        if result.is_err() || gated.is_err() {
            for k in &written {
                let _ = self.delete(k).await;
            }
            if let Err(e) = gated {
                return Ok(Err(e));
            }
            result?;
        }
        let meta_key = block_key(id, META_FILE);
        self.put(&meta_key, Bytes::from(meta_bytes.clone())).await?;

        // Every object there, with its size.
        let check = async {
            let listed: BTreeMap<String, u64> =
                self.list(&id.to_string()).await?.into_iter().map(|o| (o.key, o.size)).collect();
            let want = files
                .iter()
                .map(|(rel, size)| (rel.clone(), *size))
                .chain(std::iter::once((META_FILE.to_string(), meta_bytes.len() as u64)));
            for (rel, size) in want {
                match listed.get(&block_key(id, &rel)) {
                    None => {
                        return Err(BucketError::block(
                            id,
                            format!("after upload, {rel} is missing from {}", self.name()),
                        ))
                    }
                    Some(&got) if got != size => {
                        return Err(BucketError::block(
                            id,
                            format!("after upload, {rel} is {got} bytes in {}, {size} on disk", self.name()),
                        ))
                    }
                    Some(_) => {}
                }
            }
            Ok(())
        };
        if let Err(e) = check.await {
            let _ = self.delete(&meta_key).await;
            return Err(e);
        }
        let bytes = files.iter().map(|(_, s)| *s).sum::<u64>() + meta_bytes.len() as u64;
        transfer_event("block uploaded", id, bytes, files.len() + 1, started.elapsed(), self.name());
        Ok(Ok(meta))
    }

    async fn upload_objects(
        &self,
        dir: &Path,
        id: Ulid,
        files: &[(String, u64)],
        opts: &UploadOptions,
        written: &mut Vec<String>,
    ) -> Result<()> {
        let (concurrency, link) = (opts.concurrency.max(1), opts.link);
        // Owned jobs: futures borrowing from an iterator's items would not be `Send`.
        let chunks: Vec<(String, PathBuf)> = files
            .iter()
            .filter(|(rel, _)| rel.starts_with("chunks/"))
            .map(|(rel, _)| (block_key(id, rel), dir.join(rel)))
            .collect();
        let rest = files.iter().filter(|(rel, _)| !rel.starts_with("chunks/"));
        let mut stream = futures::stream::iter(chunks)
            .map(|(key, path)| async move {
                let r = self.put_file_with(&key, &path, link).await;
                (key, r)
            })
            .buffer_unordered(concurrency);
        let mut first_err = None;
        while let Some((key, r)) = stream.next().await {
            match r {
                Ok(_) => written.push(key),
                Err(e) => {
                    // Every started upload may have written something: remember it.
                    written.push(key);
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        // Then the index (the only other file): chunks it points into are all there.
        for (rel, _) in rest {
            let key = block_key(id, rel);
            written.push(key.clone());
            self.put_file_with(&key, &dir.join(rel), link).await?;
        }
        Ok(())
    }

    /// Downloads block `id` into `parent/<ULID>/` (see the module doc). Fails if that
    /// directory exists. Returns its path.
    pub async fn download_block(&self, id: Ulid, parent: &Path, opts: &DownloadOptions) -> Result<PathBuf> {
        let started = std::time::Instant::now();
        let dest = parent.join(id.to_string());
        if tokio::fs::try_exists(&dest).await.map_err(|e| LocalError::io(&dest, e))? {
            return Err(BucketError::block(id, format!("{} exists already", dest.display())));
        }
        let (meta, meta_bytes) = self.download_meta(id).await?;
        let objects = self.downloadable_files(id, &meta).await?;

        let tmp = parent.join(format!("{id}.tmp-for-creation"));
        let guard = TmpDir(Some(tmp.clone()));
        if tokio::fs::try_exists(&tmp).await.unwrap_or(false) {
            tokio::fs::remove_dir_all(&tmp).await.map_err(|e| LocalError::io(&tmp, e))?;
        }
        tokio::fs::create_dir_all(tmp.join(CHUNKS_DIR)).await.map_err(|e| LocalError::io(&tmp, e))?;
        let meta_bytes_len = meta_bytes.len() as u64;
        self.fetch_block_files(id, &tmp, &objects, meta_bytes, opts).await?;
        if opts.verify {
            verify_downloaded(id, &tmp).await?;
        }
        tokio::fs::rename(&tmp, &dest).await.map_err(|e| LocalError::io(&dest, e))?;
        guard.disarm();
        let d = dest.clone();
        let p = parent.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || crate::block::writer::sync_dir(&p).map(|_| d)).await;
        let bytes = objects.iter().map(|(_, s)| *s).sum::<u64>() + meta_bytes_len;
        transfer_event("block downloaded", id, bytes, objects.len() + 1, started.elapsed(), self.name());
        Ok(dest)
    }

    /// Block `id`'s meta.json, parsed, and its bytes as stored.
    async fn download_meta(&self, id: Ulid) -> Result<(BlockMeta, Bytes)> {
        let meta_bytes = self.get(&block_key(id, META_FILE)).await?.ok_or_else(|| {
            BucketError::block(
                id,
                format!("no meta.json in {} (a partial upload, or a block being deleted)", self.name()),
            )
        })?;
        match parse_meta(id, &meta_bytes) {
            MetaRead::Ok(m) => Ok((m, meta_bytes)),
            MetaRead::Corrupt(why) => Err(BucketError::block(id, format!("meta.json in {}: {why}", self.name()))),
            MetaRead::Missing => unreachable!(),
        }
    }

    /// The index, tombstones and chunk files of block `id` with their sizes, checked
    /// against the files its meta.json lists (what the uploader recorded must match
    /// what is there).
    async fn downloadable_files(&self, id: Ulid, meta: &BlockMeta) -> Result<Vec<(String, u64)>> {
        let prefix = format!("{id}/");
        let objects: Vec<(String, u64)> = self
            .list(&id.to_string())
            .await?
            .into_iter()
            .filter_map(|o| {
                let rel = o.key.strip_prefix(&prefix)?.to_string();
                let wanted = rel == INDEX_FILE
                    || rel == TOMBSTONES_FILE
                    || (rel.starts_with("chunks/") && rel.len() > 7 && !rel[7..].contains('/'));
                wanted.then_some((rel, o.size))
            })
            .collect();
        if !objects.iter().any(|(r, _)| r == INDEX_FILE) {
            return Err(BucketError::block(id, format!("no index in {}", self.name())));
        }
        let Some(t) = &meta.thanos else { return Ok(objects) };
        for f in t.files.iter().filter(|f| f.rel_path != META_FILE) {
            match objects.iter().find(|(r, _)| *r == f.rel_path) {
                None => {
                    return Err(BucketError::block(
                        id,
                        format!("{} is listed in meta.json but missing from {}", f.rel_path, self.name()),
                    ))
                }
                Some((_, size)) if f.size_bytes != 0 && *size != f.size_bytes as u64 => {
                    return Err(BucketError::block(
                        id,
                        format!("{} is {size} bytes in {}, meta.json says {}", f.rel_path, self.name(), f.size_bytes),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(objects)
    }

    /// Downloads `objects` of block `id` into `tmp`, `concurrency` at once, each checked
    /// against its listed size; then writes meta.json and syncs the directories.
    async fn fetch_block_files(
        &self,
        id: Ulid,
        tmp: &Path,
        objects: &[(String, u64)],
        meta_bytes: Bytes,
        opts: &DownloadOptions,
    ) -> Result<()> {
        let (concurrency, link) = (opts.concurrency, opts.link);
        let jobs: Vec<(String, PathBuf, String, u64)> =
            objects.iter().map(|(rel, size)| (block_key(id, rel), tmp.join(rel), rel.clone(), *size)).collect();
        futures::stream::iter(jobs)
            .map(|(key, path, rel, size)| async move {
                let n = self.get_to_file_with(&key, &path, link).await?;
                if n != size {
                    return Err(BucketError::block(
                        id,
                        format!("{rel}: downloaded {n} bytes, the bucket listed {size}"),
                    ));
                }
                Ok(())
            })
            .buffer_unordered(concurrency.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        let meta_path = tmp.join(META_FILE);
        let t = tmp.to_path_buf();
        tokio::task::spawn_blocking(move || -> crate::Result<()> {
            crate::block::writer::write_synced(&meta_path, &meta_bytes)?;
            crate::block::writer::sync_dir(&t.join(CHUNKS_DIR))?;
            crate::block::writer::sync_dir(&t)
        })
        .await
        .map_err(|e| BucketError::block(id, format!("sync task failed: {e}")))??;
        Ok(())
    }

    /// Deletes block `id` in Thanos's order: meta.json, then every other object but the
    /// deletion mark, then the deletion mark. Safe to repeat after an interruption.
    pub async fn delete_block(&self, id: Ulid) -> Result<DeleteReport> {
        let mut report = DeleteReport::default();
        let meta_key = block_key(id, META_FILE);
        let mark_key = block_key(id, DELETION_MARK);
        if self.head(&meta_key).await?.is_some() {
            self.delete(&meta_key).await?;
            report.deleted.push(meta_key.clone());
        }
        let rest: Vec<String> = self
            .list(&id.to_string())
            .await?
            .into_iter()
            .map(|o| o.key)
            .filter(|k| *k != meta_key && *k != mark_key)
            .collect();
        let deleted: Vec<String> =
            futures::stream::iter(rest.into_iter().map(|k| async move { self.delete(&k).await.map(|_| k) }))
                .buffer_unordered(8)
                .try_collect()
                .await?;
        report.deleted.extend(deleted);
        if self.head(&mark_key).await?.is_some() {
            self.delete(&mark_key).await?;
            report.deleted.push(mark_key);
        }
        Ok(report)
    }
}

/// One event per block moved: bytes, duration and throughput.
fn transfer_event(msg: &'static str, id: Ulid, bytes: u64, files: usize, took: std::time::Duration, bucket: &str) {
    let secs = took.as_secs_f64();
    let mib_per_s = if secs > 0.0 { (bytes as f64 / 1048576.0 / secs * 100.0).round() / 100.0 } else { 0.0 };
    tracing::info!(block = %id, bytes, files, duration_ms = took.as_millis() as u64, mib_per_s, bucket, "{msg}");
}

/// The files a block upload sends, with sizes, sorted: every file in `chunks/`, and
/// `index`. Checks they exist first, as Thanos does.
pub async fn gather_files(dir: &Path) -> Result<Vec<(String, u64)>> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || -> crate::Result<Vec<(String, u64)>> {
        let chunks = d.join(CHUNKS_DIR);
        let mut out = Vec::new();
        let rd = std::fs::read_dir(&chunks).map_err(|e| LocalError::io(&chunks, e))?;
        for e in rd {
            let e = e.map_err(|e| LocalError::io(&chunks, e))?;
            let md = e.metadata().map_err(|err| LocalError::io(e.path(), err))?;
            if md.is_file() {
                out.push((format!("{CHUNKS_DIR}/{}", e.file_name().to_string_lossy()), md.len()));
            }
        }
        let index = d.join(INDEX_FILE);
        let md = std::fs::metadata(&index).map_err(|e| LocalError::io(&index, e))?;
        if !md.is_file() {
            return Err(LocalError::BadRequest(format!("{}: not a file", index.display())));
        }
        out.push((INDEX_FILE.to_string(), md.len()));
        out.sort();
        Ok(out)
    })
    .await
    .map_err(|e| BucketError::Setup(format!("task failed: {e}")))?
    .map_err(BucketError::from)
}

/// Removes a half-written download directory unless disarmed.
struct TmpDir(Option<PathBuf>);

impl TmpDir {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    fn small_block() -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/small");
        crate::block::list_blocks(&dir).unwrap().remove(0).path
    }

    fn with_labels(dir: &Path) -> BlockMeta {
        let mut m = BlockMeta::parse(&std::fs::read(dir.join(META_FILE)).unwrap()).unwrap();
        let mut t = crate::format::meta::ThanosMeta::default();
        t.labels.insert("cluster".into(), "test".into());
        t.source = "test".into();
        m.thanos = Some(t);
        m
    }

    #[test]
    fn upload_download_delete_round_trip_in_memory() {
        rt().block_on(async {
            let b = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let src = small_block();
            let meta = with_labels(&src);
            let id = meta.ulid;
            let up =
                b.upload_block(&src, &UploadOptions { meta: Some(meta.clone()), ..Default::default() }).await.unwrap();
            let t = up.thanos.as_ref().unwrap();
            let rels: Vec<&str> = t.files.iter().map(|f| f.rel_path.as_str()).collect();
            assert_eq!(rels, ["chunks/000001", "index", "meta.json"]);
            assert!(t.files.iter().find(|f| f.rel_path == "meta.json").unwrap().size_bytes == 0);
            assert!(!crate::time::is_zero_time(&t.upload_time));
            assert_eq!(b.block_ids().await.unwrap(), [id]);
            assert!(
                b.list(&id.to_string()).await.unwrap().iter().all(|o| !o.key.ends_with("tombstones")),
                "tombstones are never uploaded"
            );
            match b.read_meta(id).await.unwrap() {
                MetaRead::Ok(m) => assert_eq!(m, up),
                other => panic!("{other:?}"),
            }
            // A second upload of the same block is refused, and leaves it whole.
            let again =
                b.upload_block(&src, &UploadOptions { meta: Some(meta), ..Default::default() }).await.unwrap_err();
            assert!(again.to_string().contains("already in mem"), "{again}");

            let tmp = tempfile::tempdir().unwrap();
            let got = b
                .download_block(id, tmp.path(), &DownloadOptions { verify: true, ..Default::default() })
                .await
                .unwrap();
            assert_eq!(std::fs::read(got.join("index")).unwrap(), std::fs::read(src.join("index")).unwrap());
            assert_eq!(
                std::fs::read(got.join("chunks/000001")).unwrap(),
                std::fs::read(src.join("chunks/000001")).unwrap()
            );
            assert!(!tmp.path().join(format!("{id}.tmp-for-creation")).exists());

            assert!(b.mark_for_deletion(id, "test").await.unwrap());
            assert!(!b.mark_for_deletion(id, "again").await.unwrap(), "the first mark stands");
            let mark: DeletionMark = b.read_marker(id, DELETION_MARK).await.unwrap().ok().unwrap();
            assert_eq!(mark.details, "test");
            let r = b.delete_block(id).await.unwrap();
            assert_eq!(r.deleted.first().map(String::as_str), Some(format!("{id}/meta.json").as_str()));
            assert_eq!(r.deleted.last().map(String::as_str), Some(format!("{id}/deletion-mark.json").as_str()));
            assert!(b.list("").await.unwrap().is_empty());
        });
    }

    #[test]
    fn a_refused_gate_leaves_no_trace_and_an_accepted_one_commits_after_it() {
        rt().block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let yaml = format!("type: FILESYSTEM\nconfig: {{directory: '{}'}}\n", dir.path().join("b").display());
            let b = Bucket::open(&crate::bucket::ObjstoreConfig::parse(&yaml).unwrap()).await.unwrap();
            let src = small_block();
            let meta = with_labels(&src);
            let id = meta.ulid;
            let opts = UploadOptions { meta: Some(meta), ..Default::default() };
            // Refused after the chunks went up: nothing of the block stays.
            let gate = async {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                Err::<(), _>("bad block")
            };
            assert_eq!(b.upload_block_after(&src, &opts, gate).await.unwrap(), Err("bad block"));
            assert!(b.list(&id.to_string()).await.unwrap().is_empty());
            assert!(b.block_ids().await.unwrap().is_empty());
            // Accepted: meta.json is written only once the gate is through.
            let seen_meta = std::sync::atomic::AtomicBool::new(false);
            let gate = async {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                seen_meta.store(b.head(&block_key(id, META_FILE)).await.unwrap().is_some(), Ordering::SeqCst);
                Ok::<(), &str>(())
            };
            let up = b.upload_block_after(&src, &opts, gate).await.unwrap().unwrap();
            assert!(!seen_meta.load(Ordering::SeqCst), "meta.json written before the gate passed");
            assert_eq!(up.ulid, id);
            assert_eq!(b.block_ids().await.unwrap(), [id]);
        });
    }

    #[test]
    fn upload_refuses_blocks_without_external_labels() {
        rt().block_on(async {
            let b = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let e = b.upload_block(&small_block(), &UploadOptions::default()).await.unwrap_err();
            assert!(e.to_string().contains("external labels"), "{e}");
            assert!(b.list("").await.unwrap().is_empty());
        });
    }

    #[test]
    fn unparsable_markers_and_metas_are_reported_not_fatal() {
        rt().block_on(async {
            let b = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let id = Ulid::new();
            b.put(&block_key(id, DELETION_MARK), Bytes::from_static(b"{\"id\":")).await.unwrap();
            assert!(matches!(
                b.read_marker::<DeletionMark>(id, DELETION_MARK).await.unwrap(),
                MarkerRead::Unparsable(_)
            ));
            b.put(
                &block_key(id, NO_COMPACT_MARK),
                Bytes::from(format!("{{\"id\":\"{id}\",\"version\":2,\"no_compact_time\":1,\"reason\":\"manual\"}}")),
            )
            .await
            .unwrap();
            assert!(
                matches!(b.read_marker::<NoCompactMark>(id, NO_COMPACT_MARK).await.unwrap(), MarkerRead::Unparsable(_)),
                "version must be 1"
            );
            b.put(&block_key(id, META_FILE), Bytes::from_static(b"not json")).await.unwrap();
            assert!(matches!(b.read_meta(id).await.unwrap(), MetaRead::Corrupt(_)));
            let other = Ulid::new();
            let m = BlockMeta::new(other, 0, 1);
            b.put(&block_key(id, META_FILE), Bytes::from(m.to_json())).await.unwrap();
            assert!(matches!(b.read_meta(id).await.unwrap(), MetaRead::Corrupt(w) if w.contains("names block")));
        });
    }
}
