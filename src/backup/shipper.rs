//! Continuous shipping of a live Prometheus data directory, as a Thanos sidecar does
//! (`pkg/shipper/shipper.go`).
//!
//! Each [`Shipper::sync`] lists the finished blocks (`<ULID>/` directories; Prometheus's
//! `*.tmp-for-creation` and `*.tmp-for-deletion` are never touched), oldest first, and
//! uploads each one not recorded in `thanos.shipper.json` and not yet in the bucket:
//! its files are hard-linked into `thanos/upload/<ULID>/` first (Prometheus may delete
//! the block meanwhile; the links keep the data), then uploaded by
//! [`Bucket::upload_block`] (chunks, index, meta.json last) with the external labels and
//! `thanos.source` set in the uploaded meta.json only. A block that disappears before its
//! files are linked is abandoned: nothing of it was sent.
//!
//! `thanos.shipper.json` is the sidecar's file (`{"version": 1, "uploaded": [...]}`),
//! rewritten atomically after every sync with the blocks that still exist locally, so a
//! Thanos sidecar and strata can take over from each other. A crash between an upload
//! and the rewrite costs nothing: the next sync finds meta.json in the bucket and records
//! the block without sending it again. A crash during an upload leaves objects without
//! meta.json, which readers pass over and the next sync overwrites.
//!
//! Only level-1 blocks are shipped by default: Prometheus's own compactions of them
//! would overlap what was shipped. With `upload_compacted`, older compacted blocks go up
//! once too, unless they overlap a block with the same labels already in the bucket.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{BackupError, Result};
use crate::block::writer::{sync_dir, write_synced};
use crate::block::{list_blocks, CHUNKS_DIR, INDEX_FILE, META_FILE};
use crate::bucket::block::block_key;
use crate::bucket::{Bucket, MetaRead, UploadOptions};
use crate::error::{AtPath, Error as LocalError};
use crate::format::meta::{BlockMeta, ThanosMeta};

/// The shipper's record of what it uploaded, in the data directory.
pub const SHIPPER_FILE: &str = "thanos.shipper.json";
/// Where blocks are hard-linked while they are uploaded (relative to the data directory).
pub const UPLOAD_DIR: &str = "thanos/upload";

/// `thanos.shipper.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipperState {
    pub version: u32,
    /// Blocks uploaded (or found in the bucket), oldest first. Go writes `null` for none.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub uploaded: Vec<Ulid>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Vec<Ulid>, D::Error> {
    Ok(Option::<Vec<Ulid>>::deserialize(d)?.unwrap_or_default())
}

/// Reads `DIR/thanos.shipper.json`: `Ok(None)` when there is none; an error naming the
/// file when it is not the sidecar's format (version 1).
pub fn read_state(dir: &Path) -> Result<Option<ShipperState>> {
    let path = dir.join(SHIPPER_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LocalError::io(&path, e).into()),
    };
    let state: ShipperState = serde_json::from_slice(&bytes)
        .map_err(|e| BackupError::Invalid(format!("{}: not a shipper file: {e}", path.display())))?;
    if state.version != 1 {
        return Err(BackupError::Invalid(format!(
            "{}: version {} (only version 1 is known)",
            path.display(),
            state.version
        )));
    }
    Ok(Some(state))
}

/// Writes `DIR/thanos.shipper.json` atomically (temporary file, fsync, rename, directory
/// fsync), tab-indented as the sidecar writes it.
pub fn write_state(dir: &Path, state: &ShipperState) -> Result<()> {
    let path = dir.join(SHIPPER_FILE);
    let tmp = dir.join(format!("{SHIPPER_FILE}.tmp"));
    let mut buf = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut buf, serde_json::ser::PrettyFormatter::with_indent(b"\t"));
    state.serialize(&mut ser).map_err(|e| BackupError::Invalid(format!("{}: {e}", path.display())))?;
    buf.push(b'\n');
    write_synced(&tmp, &buf)?;
    std::fs::rename(&tmp, &path).at(&path)?;
    sync_dir(dir)?;
    Ok(())
}

/// One of [`ShipperMetrics`], sharing its value.
#[derive(Clone, Debug)]
pub enum ShipperMetric {
    Counter(Counter),
    Gauge(Gauge),
    Seconds(Gauge<f64, AtomicU64>),
}

/// The shipper's metrics, named as the Thanos sidecar names them. Clones share values.
#[derive(Clone, Debug, Default)]
pub struct ShipperMetrics {
    dir_syncs: Counter,
    dir_sync_failures: Counter,
    uploads: Counter,
    upload_failures: Counter,
    /// Unix seconds of the last upload; 0 before the first.
    last_upload: Gauge<f64, AtomicU64>,
    upload_compacted_done: Gauge,
}

impl ShipperMetrics {
    /// Every metric with its name (counters without the `_total` suffix, which the
    /// registry adds) and help text, for registering.
    pub fn all(&self) -> Vec<(&'static str, &'static str, ShipperMetric)> {
        use ShipperMetric::{Counter as C, Gauge as G, Seconds as S};
        vec![
            ("thanos_shipper_dir_syncs", "Total number of dir syncs", C(self.dir_syncs.clone())),
            ("thanos_shipper_dir_sync_failures", "Total number of failed dir syncs", C(self.dir_sync_failures.clone())),
            ("thanos_shipper_uploads", "Total number of uploaded blocks", C(self.uploads.clone())),
            (
                "thanos_shipper_upload_failures",
                "Total number of block upload failures",
                C(self.upload_failures.clone()),
            ),
            (
                "thanos_shipper_last_successful_upload_time",
                "Unix timestamp (in seconds) of the last successful block upload; 0 before the first.",
                S(self.last_upload.clone()),
            ),
            (
                "thanos_shipper_upload_compacted_done",
                "If 1 it means shipper uploaded all compacted blocks from the filesystem.",
                G(self.upload_compacted_done.clone()),
            ),
        ]
    }

    pub fn uploads(&self) -> u64 {
        self.uploads.get()
    }

    pub fn upload_failures(&self) -> u64 {
        self.upload_failures.get()
    }

    pub fn upload_compacted_done(&self) -> bool {
        self.upload_compacted_done.get() == 1
    }
}

/// How blocks are shipped.
#[derive(Clone, Debug)]
pub struct ShipperOptions {
    /// External labels written into each uploaded meta.json (at least one).
    pub labels: BTreeMap<String, String>,
    /// `thanos.source` (`sidecar`).
    pub source: String,
    /// Also ship compacted blocks (level above 1) once.
    pub upload_compacted: bool,
    /// Chunk files uploaded at once per block.
    pub concurrency: usize,
}

/// What one sync did.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Blocks uploaded by this sync, oldest first.
    pub uploaded: Vec<Ulid>,
    /// Blocks found in the bucket already (uploaded before the last record was written,
    /// or by someone else), now recorded.
    pub found_in_bucket: Vec<Ulid>,
    /// Blocks that disappeared (Prometheus retention or compaction) before they could be
    /// linked; nothing of them was sent.
    pub abandoned: Vec<Ulid>,
}

/// Ships the blocks of one data directory into one bucket.
pub struct Shipper {
    dir: PathBuf,
    bucket: Bucket,
    opts: ShipperOptions,
    metrics: ShipperMetrics,
}

/// How one block's upload ended.
#[allow(clippy::large_enum_variant)] // one per block, moved once: boxing buys nothing
enum Shipped {
    Uploaded(BlockMeta),
    /// The block was gone before all its files were linked.
    Gone(String),
}

impl Shipper {
    pub fn new(dir: &Path, bucket: Bucket, opts: ShipperOptions) -> Result<Shipper> {
        if opts.labels.is_empty() {
            return Err(BackupError::Invalid(
                "at least one external label is needed (Thanos refuses blocks without them)".into(),
            ));
        }
        if !dir.is_dir() {
            return Err(BackupError::Invalid(format!("{}: not a directory", dir.display())));
        }
        Ok(Shipper { dir: dir.to_path_buf(), bucket, opts, metrics: ShipperMetrics::default() })
    }

    /// The metrics (a clone shares their values).
    pub fn metrics(&self) -> ShipperMetrics {
        self.metrics.clone()
    }

    /// Syncs every `interval` until `stop` completes (the sync under way is finished
    /// first). A failed sync is logged and retried at the next interval.
    pub async fn run(&self, interval: Duration, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            if let Err(e) = self.sync().await {
                tracing::error!(err = %e, "shipper sync failed; retrying at the next interval");
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        tracing::info!("shipper stopped");
    }

    /// One pass over the data directory (see the module doc).
    pub async fn sync(&self) -> Result<SyncReport> {
        let r = self.sync_inner().await;
        self.metrics.dir_syncs.inc();
        if r.is_err() {
            self.metrics.dir_sync_failures.inc();
        }
        r
    }

    async fn sync_inner(&self) -> Result<SyncReport> {
        let (recorded, on_disk) = match read_state(&self.dir) {
            Ok(Some(s)) => (s.uploaded.clone(), Some(s)),
            Ok(None) => (Vec::new(), None),
            Err(e) => {
                tracing::warn!(err = %e, "reading the shipper file failed; it will be rewritten");
                (Vec::new(), None)
            }
        };
        self.remove_stale_upload_dirs()?;
        let metas = self.local_metas()?;
        let mut state = ShipperState { version: 1, uploaded: Vec::new() };
        let mut report = SyncReport::default();
        let mut overlap_check: Option<Vec<BlockMeta>> = None;
        let mut failure = None;
        for meta in metas {
            let id = meta.ulid;
            if recorded.contains(&id) {
                state.uploaded.push(id);
                continue;
            }
            if meta.stats.num_samples == 0 {
                tracing::debug!(block = %id, "ignoring empty block");
                continue;
            }
            if meta.compaction.level > 1 && !self.opts.upload_compacted {
                continue;
            }
            match self.bucket.head(&block_key(id, META_FILE)).await {
                Ok(Some(_)) => {
                    state.uploaded.push(id);
                    report.found_in_bucket.push(id);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    failure = Some(e.into());
                    break;
                }
            }
            if meta.compaction.level > 1 {
                if let Err(e) = self.check_no_overlap(&meta, &mut overlap_check).await {
                    failure = Some(e);
                    break;
                }
            }
            match self.ship(meta).await {
                Ok(Shipped::Uploaded(m)) => {
                    state.uploaded.push(id);
                    report.uploaded.push(id);
                    self.metrics.uploads.inc();
                    self.metrics.last_upload.set(crate::time::now_ms() as f64 / 1000.0);
                    let bytes: i64 = m.thanos.as_ref().map(|t| t.files.iter().map(|f| f.size_bytes).sum()).unwrap_or(0);
                    tracing::info!(block = %id, level = m.compaction.level, mint = m.min_time, maxt = m.max_time, bytes, "block uploaded");
                }
                Ok(Shipped::Gone(why)) => {
                    report.abandoned.push(id);
                    tracing::info!(block = %id, reason = why.as_str(), "block disappeared before its upload; abandoned, nothing was sent");
                }
                Err(e) => {
                    // As the sidecar does: stop here so blocks go up in order.
                    self.metrics.upload_failures.inc();
                    failure = Some(BackupError::Block { id, problem: format!("upload failed: {e}") });
                    break;
                }
            }
        }
        // Blocks after a failure stay unrecorded (they were not looked at); recorded
        // ones still on disk stay recorded.
        if failure.is_some() {
            for id in &recorded {
                if !state.uploaded.contains(id) && self.dir.join(id.to_string()).is_dir() {
                    state.uploaded.push(*id);
                }
            }
        }
        // Rewritten (and fsynced) only when it changes.
        if on_disk.as_ref() != Some(&state) {
            if let Err(e) = write_state(&self.dir, &state) {
                tracing::warn!(err = %e, "updating the shipper file failed");
            }
        }
        match failure {
            Some(e) => Err(e),
            None => {
                if self.opts.upload_compacted {
                    self.metrics.upload_compacted_done.set(1);
                }
                Ok(report)
            }
        }
    }

    /// Metas of the finished blocks, oldest first. A block deleted while it is listed is
    /// passed over; an unreadable meta.json is logged and passed over.
    fn local_metas(&self) -> Result<Vec<BlockMeta>> {
        let mut metas = Vec::new();
        for e in list_blocks(&self.dir)? {
            let path = e.path.join(META_FILE);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
                Err(err) => return Err(LocalError::io(&path, err).into()),
            };
            match BlockMeta::parse(&bytes) {
                Ok(m) if m.ulid == e.ulid => metas.push(m),
                Ok(m) => {
                    tracing::warn!(path = %path.display(), names = %m.ulid, "meta.json names another block; not shipped")
                }
                Err(err) => tracing::warn!(path = %path.display(), err = %err, "unreadable meta.json; not shipped"),
            }
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        Ok(metas)
    }

    /// Upload directories a killed shipper left behind.
    fn remove_stale_upload_dirs(&self) -> Result<()> {
        let up = self.dir.join(UPLOAD_DIR);
        let rd = match std::fs::read_dir(&up) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(LocalError::io(&up, e).into()),
        };
        for e in rd {
            let e = e.at(&up)?;
            if e.file_name().to_str().is_some_and(|n| Ulid::from_string(n).is_ok()) {
                std::fs::remove_dir_all(e.path()).at(&e.path())?;
            }
        }
        Ok(())
    }

    /// Refuses a compacted block that overlaps a block with the same external labels in
    /// the bucket (the bucket's metas are read once per sync, when first needed).
    async fn check_no_overlap(&self, meta: &BlockMeta, cache: &mut Option<Vec<BlockMeta>>) -> Result<()> {
        if cache.is_none() {
            let mut metas = Vec::new();
            for id in self.bucket.block_ids().await? {
                if let MetaRead::Ok(m) = self.bucket.read_meta(id).await? {
                    if m.external_labels() == self.opts.labels {
                        metas.push(m);
                    }
                }
            }
            *cache = Some(metas);
        }
        let metas = cache.as_ref().expect("filled above");
        if let Some(o) = metas.iter().find(|o| o.min_time < meta.max_time && meta.min_time < o.max_time) {
            return Err(BackupError::Block {
                id: meta.ulid,
                problem: format!(
                    "compacted block [{}, {}) overlaps block {} [{}, {}) in {} with the same labels; not shipped",
                    meta.min_time,
                    meta.max_time,
                    o.ulid,
                    o.min_time,
                    o.max_time,
                    self.bucket.name()
                ),
            });
        }
        Ok(())
    }

    async fn ship(&self, mut meta: BlockMeta) -> Result<Shipped> {
        let id = meta.ulid;
        let src = self.dir.join(id.to_string());
        let updir = self.dir.join(UPLOAD_DIR).join(id.to_string());
        let _cleanup = RemoveOnDrop(updir.clone());
        tracing::info!(block = %id, "upload new block");
        let start = Instant::now();
        let (s, u) = (src.clone(), updir.clone());
        let linked = tokio::task::spawn_blocking(move || hardlink_block(&s, &u))
            .await
            .map_err(|e| BackupError::Invalid(format!("link task failed: {e}")))??;
        if let Some(why) = linked {
            return Ok(Shipped::Gone(why));
        }
        let t = meta.thanos.get_or_insert_with(ThanosMeta::default);
        t.labels = self.opts.labels.clone();
        t.source = self.opts.source.clone();
        let opts = UploadOptions { concurrency: self.opts.concurrency.max(1), meta: Some(meta), link: false };
        let up = self.bucket.upload_block(&updir, &opts).await?;
        tracing::debug!(block = %id, took = ?start.elapsed(), "upload done");
        Ok(Shipped::Uploaded(up))
    }
}

/// Hard-links `src`'s chunks and index into `dst` (created fresh). `Ok(Some(why))` when
/// the source is gone (a file or the directory disappeared): the block is being deleted.
fn hardlink_block(src: &Path, dst: &Path) -> Result<Option<String>> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    if dst.exists() {
        std::fs::remove_dir_all(dst).at(dst)?;
    }
    let dst_chunks = dst.join(CHUNKS_DIR);
    std::fs::create_dir_all(&dst_chunks).at(&dst_chunks)?;
    let src_chunks = src.join(CHUNKS_DIR);
    let mut files = Vec::new();
    match std::fs::read_dir(&src_chunks) {
        Ok(rd) => {
            for e in rd {
                match e {
                    Ok(e) => files.push(format!("{CHUNKS_DIR}/{}", e.file_name().to_string_lossy())),
                    Err(err) if gone(&err) => return Ok(Some(format!("{}: {err}", src_chunks.display()))),
                    Err(err) => return Err(LocalError::io(&src_chunks, err).into()),
                }
            }
        }
        Err(err) if gone(&err) => return Ok(Some(format!("{}: {err}", src_chunks.display()))),
        Err(err) => return Err(LocalError::io(&src_chunks, err).into()),
    }
    files.push(INDEX_FILE.to_string());
    for rel in &files {
        let (from, to) = (src.join(rel), dst.join(rel));
        match std::fs::hard_link(&from, &to) {
            Ok(()) => {}
            Err(err) if gone(&err) => return Ok(Some(format!("{}: {err}", from.display()))),
            Err(err) => return Err(LocalError::io(&to, err).into()),
        }
    }
    // Still there after linking: the links hold a complete block. (A block deleted
    // mid-way may have lost a file that was listed; the check above caught that.)
    if !src.join(META_FILE).is_file() {
        return Ok(Some(format!("{} disappeared while it was linked", src.display())));
    }
    Ok(None)
}

/// Removes a directory when dropped (the hard-linked upload copy).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if self.0.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.0) {
                tracing::warn!(path = %self.0.display(), err = %e, "cannot remove the upload directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use std::sync::Arc;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
    }

    /// A data directory holding copies of testdata/varied's blocks (made by promtool).
    fn data_dir() -> (tempfile::TempDir, Vec<BlockMeta>) {
        let tmp = tempfile::tempdir().unwrap();
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/varied");
        let mut metas = Vec::new();
        for b in list_blocks(&src).unwrap() {
            let dst = tmp.path().join(b.ulid.to_string());
            std::fs::create_dir_all(dst.join(CHUNKS_DIR)).unwrap();
            for rel in [META_FILE, INDEX_FILE] {
                std::fs::copy(b.path.join(rel), dst.join(rel)).unwrap();
            }
            for c in std::fs::read_dir(b.path.join(CHUNKS_DIR)).unwrap() {
                let c = c.unwrap();
                std::fs::copy(c.path(), dst.join(CHUNKS_DIR).join(c.file_name())).unwrap();
            }
            metas.push(BlockMeta::parse(&std::fs::read(dst.join(META_FILE)).unwrap()).unwrap());
        }
        metas.sort_by_key(|m| (m.min_time, m.ulid));
        (tmp, metas)
    }

    fn opts() -> ShipperOptions {
        ShipperOptions {
            labels: [("replica".to_string(), "a".to_string())].into(),
            source: "sidecar".into(),
            upload_compacted: false,
            concurrency: 2,
        }
    }

    #[test]
    fn state_file_is_the_sidecars_format_and_null_reads_as_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(read_state(tmp.path()).unwrap(), None);
        let id = Ulid::from_string("01HXM6N2YJ1Z3D4XWCY7VDAB9K").unwrap();
        write_state(tmp.path(), &ShipperState { version: 1, uploaded: vec![id] }).unwrap();
        let text = std::fs::read_to_string(tmp.path().join(SHIPPER_FILE)).unwrap();
        assert_eq!(text, "{\n\t\"version\": 1,\n\t\"uploaded\": [\n\t\t\"01HXM6N2YJ1Z3D4XWCY7VDAB9K\"\n\t]\n}\n");
        assert!(!tmp.path().join(format!("{SHIPPER_FILE}.tmp")).exists());
        std::fs::write(tmp.path().join(SHIPPER_FILE), "{\"version\":1,\"uploaded\":null}").unwrap();
        assert_eq!(read_state(tmp.path()).unwrap().unwrap().uploaded, Vec::<Ulid>::new());
        std::fs::write(tmp.path().join(SHIPPER_FILE), "{\"version\":2,\"uploaded\":[]}").unwrap();
        let e = read_state(tmp.path()).unwrap_err().to_string();
        assert!(e.contains("thanos.shipper.json: version 2"), "{e}");
    }

    #[test]
    fn ships_each_level_one_block_once_with_labels_and_records_it() {
        rt().block_on(async {
            let (dir, metas) = data_dir();
            let bucket = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let s = Shipper::new(dir.path(), bucket.clone(), opts()).unwrap();
            let r = s.sync().await.unwrap();
            let want: Vec<Ulid> =
                metas.iter().filter(|m| m.compaction.level == 1 && m.stats.num_samples > 0).map(|m| m.ulid).collect();
            assert!(!want.is_empty());
            assert_eq!(r.uploaded, want);
            for id in &want {
                let MetaRead::Ok(m) = bucket.read_meta(*id).await.unwrap() else { panic!("{id} not uploaded") };
                let t = m.thanos.unwrap();
                assert_eq!(t.source, "sidecar");
                assert_eq!(t.labels, opts().labels);
            }
            assert_eq!(read_state(dir.path()).unwrap().unwrap().uploaded, want);
            assert!(!dir.path().join(UPLOAD_DIR).join(want[0].to_string()).exists(), "upload copy removed");
            // The local blocks keep their own meta.json.
            let local = BlockMeta::parse(&std::fs::read(dir.path().join(want[0].to_string()).join(META_FILE)).unwrap())
                .unwrap();
            assert_eq!(local, metas.iter().find(|m| m.ulid == want[0]).unwrap().clone());
            // Nothing new: nothing sent.
            let again = s.sync().await.unwrap();
            assert!(again.uploaded.is_empty() && again.found_in_bucket.is_empty());
            assert_eq!(s.metrics().uploads(), want.len() as u64);
            // A lost shipper file: blocks are found in the bucket, not sent again.
            std::fs::remove_file(dir.path().join(SHIPPER_FILE)).unwrap();
            let lost = s.sync().await.unwrap();
            assert!(lost.uploaded.is_empty());
            assert_eq!(lost.found_in_bucket, want);
            assert_eq!(read_state(dir.path()).unwrap().unwrap().uploaded, want);
        });
    }

    #[test]
    fn a_block_gone_before_it_is_linked_is_abandoned_and_nothing_is_sent() {
        rt().block_on(async {
            let (dir, metas) = data_dir();
            let bucket = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let s = Shipper::new(dir.path(), bucket.clone(), opts()).unwrap();
            let m = metas[0].clone();
            // Prometheus's deletion: rename out of sight, then remove.
            let p = dir.path().join(m.ulid.to_string());
            std::fs::rename(&p, dir.path().join(format!("{}.tmp-for-deletion", m.ulid))).unwrap();
            match s.ship(m.clone()).await.unwrap() {
                Shipped::Gone(why) => assert!(why.contains("chunks"), "{why}"),
                Shipped::Uploaded(_) => panic!("a deleted block was uploaded"),
            }
            assert!(bucket.list("").await.unwrap().is_empty(), "nothing of it was sent");
            assert!(!dir.path().join(UPLOAD_DIR).join(m.ulid.to_string()).exists());
            // A sync passes over the renamed directory.
            let r = s.sync().await.unwrap();
            assert!(!r.uploaded.contains(&m.ulid));
        });
    }

    #[test]
    fn compacted_blocks_go_up_only_when_asked_and_not_over_an_overlap() {
        rt().block_on(async {
            let (dir, metas) = data_dir();
            let set_meta = |m: &BlockMeta| {
                std::fs::write(dir.path().join(m.ulid.to_string()).join(META_FILE), m.to_json()).unwrap()
            };
            let mut m0 = metas[0].clone();
            m0.compaction.level = 2;
            set_meta(&m0);
            let bucket = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let s = Shipper::new(dir.path(), bucket.clone(), opts()).unwrap();
            let r = s.sync().await.unwrap();
            assert!(!r.uploaded.contains(&m0.ulid), "level 2 is not shipped by default");
            assert_eq!(r.uploaded.len(), metas.len() - 1);
            let compacted = ShipperOptions { upload_compacted: true, ..opts() };
            let s2 = Shipper::new(dir.path(), bucket.clone(), compacted.clone()).unwrap();
            assert_eq!(s2.sync().await.unwrap().uploaded, [m0.ulid]);
            assert!(s2.metrics().upload_compacted_done());

            // A compacted block overlapping a shipped one with the same labels is refused.
            let (dir, metas) = data_dir();
            let mut m2 = metas[2].clone();
            m2.compaction.level = 2;
            m2.min_time = metas[1].min_time + 1;
            std::fs::write(dir.path().join(m2.ulid.to_string()).join(META_FILE), m2.to_json()).unwrap();
            let bucket = Bucket::from_store(Arc::new(InMemory::new()), "mem");
            let s3 = Shipper::new(dir.path(), bucket.clone(), compacted).unwrap();
            let e = s3.sync().await.unwrap_err().to_string();
            assert!(e.contains(&format!("block {}", m2.ulid)) && e.contains("overlaps"), "{e}");
            assert_eq!(bucket.read_meta(m2.ulid).await.unwrap(), MetaRead::Missing);
            let state = read_state(dir.path()).unwrap().unwrap();
            assert!(state.uploaded.contains(&metas[0].ulid) && state.uploaded.contains(&metas[1].ulid));
            assert!(!state.uploaded.contains(&m2.ulid));
        });
    }
}
