//! `strata bucket` against real buckets: one conformance body run on a FILESYSTEM bucket
//! and on S3 served by moto_server (PyPI `moto[server]`, started here through
//! `scripts/moto.sh`; these tests fail, never skip, when it is missing). Blocks come from
//! promtool (testdata/small, testdata/varied) and what comes back is compared with
//! `promtool tsdb dump` of the input.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata::block::list_blocks;
use strata::format::meta::BlockMeta;

use super::{promtool_dump, repo, testdata, STRATA};

const SECRET: &str = "SECRETVALUE-never-printed-1234";
pub(crate) const PREFIX: &str = "tenant-a";

/// moto_server on 127.0.0.1, stopped (with its watchdog script) when dropped.
pub(crate) struct Moto {
    child: Child,
    pub(crate) port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Moto {
    fn start(env: &[(&str, &str)]) -> Moto {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("moto.log");
        let child = Command::new("bash")
            .arg(repo().join("scripts/moto.sh"))
            .arg(&log)
            .arg(std::process::id().to_string())
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("bash is required to run scripts/moto.sh");
        let mut moto = Moto { child, port: 0, log, _dir: dir };
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&moto.log).unwrap_or_default();
            if let Some(i) = text.find("Running on http://127.0.0.1:") {
                let rest = &text[i + "Running on http://127.0.0.1:".len()..];
                moto.port = rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap();
                break;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server did not start ({status}); scripts/install-test-deps.sh installs it. Its log:\n{text}"
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not start within 60s; its log:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// One HTTP/1.1 request with a dummy signature (moto, unless told to check
    /// credentials, takes any; without one it treats the caller as anonymous and refuses
    /// reads of private objects): (status, body).
    fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let auth =
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";
        write!(s, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: {auth}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.port, body.len()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP response") + 4;
        let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let mut body = resp[head_end..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        (status, body)
    }

    fn create_bucket(&self, name: &str) {
        let (status, body) = self.http("PUT", &format!("/{name}"), b"");
        assert_eq!(status, 200, "create bucket {name}: {}", String::from_utf8_lossy(&body));
    }

    /// `(method, path)` of every request moto has logged so far, in order.
    pub(crate) fn requests(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        text.lines()
            .filter_map(|l| {
                let q = l.split('"').nth(1)?;
                let mut parts = q.split(' ');
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SIGTERM to the script; its trap stops moto.
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

/// The strata binary, never through an HTTP proxy (moto is on loopback; reqwest, unlike
/// Go, would send loopback requests to a proxy named in the environment).
pub(crate) fn strata_cmd() -> Command {
    let mut c = Command::new(STRATA);
    c.env("NO_PROXY", "127.0.0.1,localhost").env("no_proxy", "127.0.0.1,localhost");
    c
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + n]);
        b = &b[i + 2 + n + 2..];
    }
    out
}

pub(crate) enum Backend {
    Filesystem { root: PathBuf },
    S3 { moto: Moto, bucket: String },
}

/// A bucket under test: its config file, and raw access to its objects that does not
/// go through strata (to check what strata wrote and to plant broken objects).
pub(crate) struct Fixture {
    pub(crate) backend: Backend,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

impl Fixture {
    pub(crate) fn filesystem() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("bucket");
        let config = dir.path().join("bucket.yaml");
        std::fs::write(
            &config,
            format!("type: FILESYSTEM\nconfig:\n  directory: {}\nprefix: {PREFIX}\n", root.display()),
        )
        .unwrap();
        Fixture { backend: Backend::Filesystem { root }, dir, config }
    }

    pub(crate) fn s3() -> Fixture {
        let moto = Moto::start(&[]);
        let bucket = "strata-conformance".to_string();
        moto.create_bucket(&bucket);
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("bucket.yaml");
        std::fs::write(
            &config,
            format!(
                "type: s3\nconfig:\n  bucket: {bucket}\n  endpoint: 127.0.0.1:{}\n  region: us-east-1\n  insecure: true\n  access_key: strata-test\n  secret_key: {SECRET}\n  part_size: 5242880\n  http_config:\n    idle_conn_timeout: 1m\n    response_header_timeout: 1m\nprefix: /{PREFIX}/\n",
                moto.port
            ),
        )
        .unwrap();
        Fixture { backend: Backend::S3 { moto, bucket }, dir, config }
    }

    pub(crate) fn strata(&self, args: &[&str]) -> Output {
        let out =
            strata_cmd().arg("bucket").args(args).arg("--objstore.config-file").arg(&self.config).output().unwrap();
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains(SECRET), "strata bucket {args:?} printed the secret key:\n{all}");
        out
    }

    /// Runs `strata bucket ARGS`, checks it succeeded, returns (stdout, stderr).
    pub(crate) fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.strata(args);
        let (o, e) =
            (String::from_utf8_lossy(&out.stdout).to_string(), String::from_utf8_lossy(&out.stderr).to_string());
        assert!(out.status.success(), "strata bucket {args:?} failed ({}):\n{o}\n{e}", out.status);
        (o, e)
    }

    fn raw_key(key: &str) -> String {
        format!("{PREFIX}/{key}")
    }

    pub(crate) fn get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.backend {
            Backend::Filesystem { root } => std::fs::read(root.join(Self::raw_key(key))).ok(),
            Backend::S3 { moto, bucket } => {
                let (status, body) = moto.http("GET", &format!("/{bucket}/{}", Self::raw_key(key)), b"");
                (status == 200).then_some(body)
            }
        }
    }

    pub(crate) fn put(&self, key: &str, data: &[u8]) {
        match &self.backend {
            Backend::Filesystem { root } => {
                let p = root.join(Self::raw_key(key));
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                std::fs::write(p, data).unwrap();
            }
            Backend::S3 { moto, bucket } => {
                let (status, body) = moto.http("PUT", &format!("/{bucket}/{}", Self::raw_key(key)), data);
                assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            }
        }
    }

    /// Every key under the prefix, with sizes.
    pub(crate) fn keys(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        match &self.backend {
            Backend::Filesystem { root } => {
                fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
                    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                        let p = e.path();
                        if p.is_dir() {
                            walk(base, &p, out);
                        } else {
                            out.insert(
                                p.strip_prefix(base).unwrap().to_string_lossy().into_owned(),
                                e.metadata().unwrap().len(),
                            );
                        }
                    }
                }
                let base = root.join(PREFIX);
                walk(&base, &base, &mut out);
            }
            Backend::S3 { moto, bucket } => {
                let (status, body) =
                    moto.http("GET", &format!("/{bucket}?list-type=2&max-keys=1000&prefix={PREFIX}/"), b"");
                assert_eq!(status, 200);
                let xml = String::from_utf8(body).unwrap();
                assert!(!xml.contains("<IsTruncated>true</IsTruncated>"));
                for c in xml.split("<Contents>").skip(1) {
                    let tag = |t: &str| {
                        c.split(&format!("<{t}>")).nth(1).unwrap().split(&format!("</{t}>")).next().unwrap().to_string()
                    };
                    out.insert(
                        tag("Key").strip_prefix(&format!("{PREFIX}/")).unwrap().to_string(),
                        tag("Size").parse().unwrap(),
                    );
                }
            }
        }
        out
    }

    /// `(method, key)` of the requests strata sent for keys under `block/`, in order
    /// (S3 only: moto logs every request).
    pub(crate) fn requests_for(&self, block: &str) -> Option<Vec<(String, String)>> {
        match &self.backend {
            Backend::Filesystem { .. } => None,
            Backend::S3 { moto, bucket } => {
                let p = format!("/{bucket}/{PREFIX}/{block}/");
                Some(
                    moto.requests()
                        .into_iter()
                        .filter_map(|(m, path)| path.strip_prefix(&p).map(|k| (m, k.to_string())))
                        .collect(),
                )
            }
        }
    }
}

fn ulids(dir: &Path) -> Vec<String> {
    list_blocks(dir).unwrap().into_iter().map(|b| b.ulid.to_string()).collect()
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

/// Downloads with `args` into a fresh directory and returns the promtool dump of it.
fn download_and_dump(f: &Fixture, args: &[&str]) -> (tempfile::TempDir, String) {
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("data");
    let mut a = vec!["download", dir.to_str().unwrap()];
    a.extend_from_slice(args);
    f.ok(&a);
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    let dump = promtool_dump(&dir, &[]);
    (out, dump)
}

/// The shared conformance body: every `strata bucket` tool and the block protocol.
fn conformance(f: &Fixture) {
    let small = testdata("small");
    let varied = testdata("varied");
    let small_id = ulids(&small).remove(0);
    let varied_ids = ulids(&varied);

    // An empty bucket.
    let (o, _) = f.ok(&["ls"]);
    assert_eq!(o, "");

    // A failed upload never leaves a meta.json: it is a partial upload (filesystem:
    // a directory where `index` should go makes its PUT fail after the chunks).
    if let Backend::Filesystem { root } = &f.backend {
        let obstacle = root.join(PREFIX).join(&small_id).join("index");
        std::fs::create_dir_all(obstacle.join("x")).unwrap();
        let out = f.strata(&["upload", small.to_str().unwrap(), "--label", "cluster=small"]);
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(f.get(&format!("{small_id}/meta.json")).is_none(), "meta.json uploaded although index failed");
        let (o, e) = f.ok(&["ls"]);
        assert_eq!(o, "", "a partial upload is not a block");
        assert!(e.contains(&format!("partial upload {small_id}: no meta.json")), "{e}");
        std::fs::remove_dir_all(&obstacle).unwrap();
    }

    // Upload both fixtures with external labels; the sources are not modified.
    let before: Vec<Vec<u8>> = [&small, &varied]
        .iter()
        .flat_map(|d| list_blocks(d).unwrap())
        .map(|b| std::fs::read(b.path.join("meta.json")).unwrap())
        .collect();
    let (o, _) = f.ok(&["upload", small.to_str().unwrap(), "--label", "cluster=small"]);
    assert_eq!(o.matches("uploaded ").count(), 1, "{o}");
    let (o, _) = f.ok(&[
        "upload",
        varied.to_str().unwrap(),
        "--label",
        "cluster=eu1",
        "--label",
        "replica=a",
        "--source",
        "sidecar",
    ]);
    assert_eq!(o.matches("uploaded ").count(), 4, "{o}");
    let after: Vec<Vec<u8>> = [&small, &varied]
        .iter()
        .flat_map(|d| list_blocks(d).unwrap())
        .map(|b| std::fs::read(b.path.join("meta.json")).unwrap())
        .collect();
    assert_eq!(before, after, "upload must not touch the local blocks");
    // Again: every block is already there.
    let (o, _) = f.ok(&["upload", varied.to_str().unwrap(), "--label", "cluster=eu1", "--label", "replica=a"]);
    assert_eq!(o.matches("skipped ").count(), 4, "{o}");

    // What is in the bucket: chunks, index, meta.json per block; never tombstones.
    let keys = f.keys();
    let mut all_ids: Vec<String> = varied_ids.clone();
    all_ids.push(small_id.clone());
    all_ids.sort();
    for (id, src) in varied_ids.iter().map(|i| (i, &varied)).chain(std::iter::once((&small_id, &small))) {
        let mut want: Vec<String> =
            vec![format!("{id}/chunks/000001"), format!("{id}/index"), format!("{id}/meta.json")];
        want.sort();
        let got: Vec<String> = keys.keys().filter(|k| k.starts_with(id.as_str())).cloned().collect();
        assert_eq!(got, want, "objects of block {id}");
        for rel in ["chunks/000001", "index"] {
            assert_eq!(
                f.get(&format!("{id}/{rel}")).unwrap(),
                std::fs::read(src.join(id).join(rel)).unwrap(),
                "{id}/{rel} uploaded byte for byte"
            );
        }
        let meta = BlockMeta::parse(&f.get(&format!("{id}/meta.json")).unwrap()).unwrap();
        let t = meta.thanos.as_ref().expect("uploaded meta.json has a thanos section");
        assert_eq!(t.downsample.resolution, 0);
        let files: Vec<(&str, i64)> = t.files.iter().map(|f| (f.rel_path.as_str(), f.size_bytes)).collect();
        let size = |rel: &str| std::fs::metadata(src.join(id).join(rel)).unwrap().len() as i64;
        assert_eq!(
            files,
            [("chunks/000001", size("chunks/000001")), ("index", size("index")), ("meta.json", 0)],
            "thanos.files of {id}"
        );
        let uploaded = strata::time::parse_rfc3339_ms(&t.upload_time).expect("upload_time is RFC 3339");
        assert!((uploaded / 1000 - now_s()).abs() < 600, "upload_time {} is now", t.upload_time);
        if *id == small_id {
            assert_eq!(t.labels, BTreeMap::from([("cluster".to_string(), "small".to_string())]));
            assert_eq!(t.source, "bucket.upload");
        } else {
            assert_eq!(
                t.labels,
                BTreeMap::from([("cluster".to_string(), "eu1".to_string()), ("replica".to_string(), "a".to_string())])
            );
            assert_eq!(t.source, "sidecar");
        }
    }

    // Upload order, as the server saw it: chunks, then index, then meta.json last.
    if let Some(reqs) = f.requests_for(&varied_ids[1]) {
        let puts: Vec<&str> = reqs.iter().filter(|(m, _)| m == "PUT").map(|(_, k)| k.as_str()).collect();
        assert_eq!(puts, ["chunks/000001", "index", "meta.json"], "upload order");
    }

    // ls, ls -o wide, inspect.
    let (o, _) = f.ok(&["ls"]);
    assert_eq!(o.lines().collect::<Vec<_>>(), all_ids, "ls");
    let (o, _) = f.ok(&["ls", "-o", "wide"]);
    let row = o.lines().find(|l| l.starts_with(&small_id)).unwrap();
    assert!(row.contains("{cluster=\"small\"}") && row.contains("bucket.upload") && row.contains("raw"), "{row}");
    let (o, _) = f.ok(&["inspect"]);
    assert!(o.starts_with("BLOCK ULID"), "{o}");
    for id in &varied_ids {
        let m = BlockMeta::parse(&std::fs::read(varied.join(id).join("meta.json")).unwrap()).unwrap();
        let row = o.lines().find(|l| l.starts_with(id.as_str())).unwrap_or_else(|| panic!("{id} in\n{o}"));
        for want in [
            m.stats.num_samples.to_string(),
            m.stats.num_series.to_string(),
            m.min_time.to_string(),
            "{cluster=\"eu1\",replica=\"a\"}".to_string(),
            "sidecar".to_string(),
        ] {
            assert!(row.contains(&want), "{want} in {row}");
        }
    }
    // Another prefix sees none of it.
    let other = f.dir.path().join("other-prefix.yaml");
    std::fs::write(&other, std::fs::read_to_string(&f.config).unwrap().replace(PREFIX, "tenant-b")).unwrap();
    let out = strata_cmd().args(["bucket", "ls", "--objstore.config-file", other.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success() && out.stdout.is_empty(), "{out:?}");

    // Download: what promtool dumps of the restored directory is the input, exactly.
    let (_keep, dump) = download_and_dump(f, &["--label", "cluster=eu1", "--verify"]);
    assert_eq!(dump, std::fs::read_to_string(testdata("varied.dump.txt")).unwrap(), "download of varied");
    let (keep, dump) = download_and_dump(f, &["--label", "cluster=small", "--compact.blocks-fetch-concurrency", "1"]);
    assert_eq!(dump, std::fs::read_to_string(testdata("small.dump.txt")).unwrap(), "download of small");
    let restored = keep.path().join("data").join(&small_id);
    for rel in ["index", "chunks/000001"] {
        assert_eq!(std::fs::read(restored.join(rel)).unwrap(), std::fs::read(small.join(&small_id).join(rel)).unwrap());
    }
    let out = super::strata(&["verify", keep.path().join("data").to_str().unwrap()]);
    assert!(out.status.success(), "strata verify of a download: {}", String::from_utf8_lossy(&out.stderr));
    // A time range selects the blocks that overlap it (the third varied block only).
    let third = BlockMeta::parse(&std::fs::read(varied.join(&varied_ids[2]).join("meta.json")).unwrap()).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (o, _) = f.ok(&[
        "download",
        out.path().to_str().unwrap(),
        "--min-time",
        &third.min_time.to_string(),
        "--max-time",
        &(third.max_time - 1).to_string(),
    ]);
    assert_eq!(ulids(out.path()), [varied_ids[2].clone()], "{o}");
    // Again into the same directory: skipped, nothing half-written left behind.
    let (o, _) = f.ok(&[
        "download",
        out.path().to_str().unwrap(),
        "--min-time",
        "2023-11-15T02:00:06.016Z",
        "--max-time",
        "2023-11-15T03:00:00Z",
    ]);
    assert!(o.contains("skipped"), "{o}");
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);

    // verify downloads and checks every block.
    let (_, e) = f.ok(&["verify"]);
    assert!(e.contains("5 blocks ok"), "{e}");
    let (_, e) = f.ok(&["verify", "--id", &small_id]);
    assert!(e.contains("1 blocks ok"), "{e}");

    // Markers: written as Go's json.Marshal writes them, never overwritten, removable.
    let target = &varied_ids[0];
    let (o, _) = f.ok(&["mark", "--id", target, "--marker", "no-compact-mark.json", "--details", "too big <x>"]);
    assert!(o.contains("wrote no-compact-mark.json"), "{o}");
    let raw = String::from_utf8(f.get(&format!("{target}/no-compact-mark.json")).unwrap()).unwrap();
    assert!(
        raw.starts_with(&format!(
            "{{\"id\":\"{target}\",\"version\":1,\"details\":\"too big \\u003cx\\u003e\",\"no_compact_time\":"
        )),
        "{raw}"
    );
    assert!(raw.ends_with(",\"reason\":\"manual\"}"), "{raw}");
    let (o, _) = f.ok(&["mark", "--id", target, "--marker", "no-compact-mark.json", "--details", "again"]);
    assert!(o.contains("already has"), "{o}");
    assert_eq!(
        String::from_utf8(f.get(&format!("{target}/no-compact-mark.json")).unwrap()).unwrap(),
        raw,
        "the first marker stands"
    );
    f.ok(&["mark", "--id", target, "--marker", "no-downsample-mark.json"]);
    let (o, _) = f.ok(&["ls", "-o", "wide"]);
    assert!(o.lines().find(|l| l.starts_with(target.as_str())).unwrap().ends_with("no-compact,no-downsample"), "{o}");
    let (o, _) = f.ok(&["mark", "--id", target, "--marker", "no-compact-mark.json", "--remove"]);
    assert!(o.contains("removed"), "{o}");
    assert!(f.get(&format!("{target}/no-compact-mark.json")).is_none());
    let out = f.strata(&["mark", "--id", target, "--marker", "bogus.json"]);
    assert_eq!(out.status.code(), Some(2));
    let out = f.strata(&["mark", "--id", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--marker", "deletion-mark.json"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no meta.json"),
        "a block that is not there cannot be marked"
    );

    // Deletion: cleanup honours --delete-delay, then deletes meta.json first and the
    // deletion mark last.
    let victim = &varied_ids[1];
    let (o, _) = f.ok(&["mark", "--id", victim, "--marker", "deletion-mark.json", "--details", "test"]);
    assert!(o.contains("wrote deletion-mark.json"), "{o}");
    let mark: serde_json::Value =
        serde_json::from_slice(&f.get(&format!("{victim}/deletion-mark.json")).unwrap()).unwrap();
    assert_eq!(mark["version"], 1);
    assert!((mark["deletion_time"].as_i64().unwrap() - now_s()).abs() < 600);
    let (o, _) = f.ok(&["cleanup"]);
    assert_eq!(o, "", "marked just now, delete delay 48h: nothing to delete");
    // Marks planted 49h and 47h ago: only the first is past the default 48h delay.
    let old = &varied_ids[2];
    let recent = &varied_ids[3];
    f.put(
        &format!("{old}/deletion-mark.json"),
        format!("{{\"id\":\"{old}\",\"version\":1,\"deletion_time\":{}}}", now_s() - 49 * 3600).as_bytes(),
    );
    f.put(
        &format!("{recent}/deletion-mark.json"),
        format!("{{\"id\":\"{recent}\",\"version\":1,\"deletion_time\":{}}}", now_s() - 47 * 3600).as_bytes(),
    );
    // An unparsable marker is a warning, and the block stays.
    f.put(&format!("{small_id}/deletion-mark.json"), b"{\"id\":");
    let (o, e) = f.ok(&["cleanup"]);
    assert_eq!(o.lines().count(), 1, "{o}\n{e}");
    assert!(o.starts_with(&format!("deleted {old} (marked for deletion 49h0m")), "{o}");
    assert!(e.contains(&format!("block {small_id}: deletion-mark.json is unparsable")), "{e}");
    assert!(!f.keys().keys().any(|k| k.starts_with(old.as_str())), "every object of {old} is gone");
    let (o, _) = f.ok(&["cleanup", "--delete-delay", "0s"]);
    assert_eq!(o.lines().count(), 2, "{o}");
    for id in [victim, recent] {
        assert!(!f.keys().keys().any(|k| k.starts_with(id.as_str())), "every object of {id} is gone");
    }
    if let Some(reqs) = f.requests_for(victim) {
        let deletes: Vec<&str> = reqs.iter().filter(|(m, _)| m == "DELETE").map(|(_, k)| k.as_str()).collect();
        assert_eq!(deletes.first(), Some(&"meta.json"), "{deletes:?}");
        assert_eq!(deletes.last(), Some(&"deletion-mark.json"), "{deletes:?}");
        assert_eq!(deletes.len(), 4, "{deletes:?}");
    }
    let (o, _) = f.ok(&["ls"]);
    let mut left = vec![varied_ids[0].clone(), small_id.clone()];
    left.sort();
    assert_eq!(o.lines().collect::<Vec<_>>(), left);

    // Partial uploads: reported with their age; a young one is never deleted (it may
    // still be uploading), an old one is.
    let young = "01JAAAAAAAAAAAAAAAAAAAAAAA";
    f.put(&format!("{young}/chunks/000001"), b"half a block");
    let (o, e) = f.ok(&["ls"]);
    assert!(!o.contains(young), "{o}");
    assert!(e.contains(&format!("partial upload {young}: no meta.json (1 objects, nothing written for ")), "{e}");
    let (o, e) = f.ok(&["cleanup", "--delete-delay", "0s"]);
    assert!(!o.contains(young) && e.contains(&format!("left partial upload {young} alone")), "{o}\n{e}");
    if let Backend::Filesystem { root } = &f.backend {
        // Backdate the object 3 days: now it is an aborted upload.
        let p = root.join(PREFIX).join(young).join("chunks/000001");
        let three_days_ago = SystemTime::now() - Duration::from_secs(72 * 3600);
        std::fs::File::options().write(true).open(&p).unwrap().set_modified(three_days_ago).unwrap();
        let (o, _) = f.ok(&["cleanup"]);
        assert!(o.contains(&format!("deleted {young} (aborted partial upload, nothing written for 72h")), "{o}");
        assert!(!root.join(PREFIX).join(young).exists(), "empty directories are removed too");
    }

    // A block with a 12 MB segment: on S3 (part_size 5 MiB) it goes up as a multipart
    // upload and must come back byte for byte.
    let gen = tempfile::tempdir().unwrap();
    let out = super::strata(&[
        "gen",
        "--output",
        gen.path().to_str().unwrap(),
        "--series",
        "5000",
        "--duration",
        "2h",
        "--label",
        "cluster=big",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let big = ulids(gen.path()).remove(0);
    let seg = gen.path().join(&big).join("chunks/000001");
    assert!(std::fs::metadata(&seg).unwrap().len() > 10 << 20, "the segment spans several parts");
    f.ok(&["upload", gen.path().to_str().unwrap(), "--label", "cluster=big"]);
    if let Some(reqs) = f.requests_for(&big) {
        assert!(
            reqs.iter().any(|(m, k)| m == "POST" && k.starts_with("chunks/000001?uploads")),
            "multipart upload expected: {reqs:?}"
        );
        let puts: Vec<&str> =
            reqs.iter().filter(|(m, _)| m == "PUT").map(|(_, k)| k.split('?').next().unwrap()).collect();
        assert_eq!(puts.last(), Some(&"meta.json"), "{puts:?}");
    }
    let back = tempfile::tempdir().unwrap();
    f.ok(&["download", back.path().to_str().unwrap(), "--label", "cluster=big", "--verify"]);
    for rel in ["chunks/000001", "index"] {
        assert!(
            std::fs::read(back.path().join(&big).join(rel)).unwrap()
                == std::fs::read(gen.path().join(&big).join(rel)).unwrap(),
            "{rel} of the big block differs after the round trip"
        );
    }
}

#[test]
fn filesystem_bucket_conformance() {
    conformance(&Fixture::filesystem());
}

#[test]
fn s3_bucket_on_moto_conformance() {
    conformance(&Fixture::s3());
}

/// Runs `strata bucket ls` with the given YAML inline; returns (exit code, stderr).
fn ls_with(yaml: &str) -> (Option<i32>, String) {
    let out = strata_cmd().args(["bucket", "ls", "--objstore.config", yaml]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !stderr.contains(SECRET) && !String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "secret printed:\n{stderr}"
    );
    (out.status.code(), stderr)
}

#[test]
fn config_errors_name_the_key_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (format!("type: S3\nconfig:\n  bucket: b\n  endpoint: e\n  secret_key: {SECRET}\n  access_key: a\n  http_config:\n    idle_conn_timeout: 1m\n    idle_timeout: 1m\n"), "config.http_config.idle_timeout: unknown key \"idle_timeout\" in config.http_config"),
        ("type: S3\nconfig:\n  endpoint: 127.0.0.1:9000\n".to_string(), "config.bucket: missing required key"),
        ("type: S3\nconfig:\n  bucket: b\n".to_string(), "config.endpoint: missing required key"),
        ("type: floppy\nconfig: {}\n".to_string(), "type: unknown bucket type \"floppy\""),
        ("type: SWIFT\nconfig: {}\n".to_string(), "type: SWIFT is a Thanos bucket type strata does not support"),
        (format!("type: S3\nconfig: {{bucket: b, endpoint: e, secret_key: {SECRET}}}\n"), "config.access_key: missing while secret_key is set"),
        ("type: FILESYSTEM\nconfig:\n  directory: /tmp/x\nextra: 1\n".to_string(), "extra: unknown key \"extra\" at the top level"),
        ("type: FILESYSTEM\nconfig:\n  directory: [\n".to_string(), "not valid YAML"),
    ];
    for (yaml, want) in &cases {
        let (code, stderr) = ls_with(yaml);
        assert_eq!(code, Some(2), "{yaml}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line for {yaml}:\n{stderr}");
        assert!(stderr.contains(want), "{yaml}: want {want:?} in {stderr}");
        // The same through a file names the file.
        let file = dir.path().join("bucket.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out =
            strata_cmd().args(["bucket", "ls", "--objstore.config-file", file.to_str().unwrap()]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr.contains(want) && stderr.contains(file.to_str().unwrap()) && !stderr.contains(SECRET),
            "{stderr}"
        );
    }
    // Inline and file give the same bucket.
    let root = dir.path().join("fs-bucket");
    let yaml = format!("type: filesystem\nconfig:\n  directory: {}\n", root.display());
    let file = dir.path().join("ok.yaml");
    std::fs::write(&file, &yaml).unwrap();
    let inline = strata_cmd()
        .args(["bucket", "upload", testdata("small").to_str().unwrap(), "--label", "a=b", "--objstore.config", &yaml])
        .output()
        .unwrap();
    assert!(inline.status.success(), "{}", String::from_utf8_lossy(&inline.stderr));
    let ls = strata_cmd().args(["bucket", "ls", "--objstore.config-file", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&ls.stdout).trim(), ulids(&testdata("small"))[0]);
    // Both, or neither.
    let both = strata_cmd()
        .args(["bucket", "ls", "--objstore.config", &yaml, "--objstore.config-file", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&both.stderr).contains("both set"));
    let neither = strata_cmd().args(["bucket", "ls"]).output().unwrap();
    assert_eq!(neither.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&neither.stderr).contains("--objstore.config-file"));
}

#[test]
fn s3_failures_are_one_clear_line_without_secrets() {
    let moto = Moto::start(&[]);
    moto.create_bucket("strata-there");
    let s3 = |bucket: &str, endpoint: &str, extra: &str| {
        format!("type: S3\nconfig:\n  bucket: {bucket}\n  endpoint: {endpoint}\n  insecure: true\n  access_key: strata-test\n  secret_key: {SECRET}\n{extra}")
    };

    // A missing bucket.
    let (code, stderr) = ls_with(&s3("strata-missing", &format!("127.0.0.1:{}", moto.port), ""));
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("s3://strata-missing")
            && stderr.contains("the bucket does not exist")
            && stderr.contains("NoSuchBucket"),
        "{stderr}"
    );

    // signature_version2 is accepted, with a warning; the request is signed V4 and works.
    let (code, stderr) =
        ls_with(&s3("strata-there", &format!("127.0.0.1:{}", moto.port), "  signature_version2: true\n"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("warning") && stderr.contains("signature_version2"), "{stderr}");

    // An endpoint nobody listens on (a port just freed), with few retries to stay quick.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, stderr) = ls_with(&s3("strata-there", &format!("127.0.0.1:{port}"), "  max_retries: 2\n"));
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("endpoint unreachable")
            && stderr.contains("Connection refused")
            && stderr.contains("after 2 retries"),
        "{stderr}"
    );

    // Wrong credentials: a moto that checks them after its first request.
    let strict = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]);
    strict.create_bucket("strata-auth");
    let (code, stderr) = ls_with(&s3("strata-auth", &format!("127.0.0.1:{}", strict.port), ""));
    assert_eq!(code, Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("access denied") && stderr.contains("InvalidAccessKeyId"), "{stderr}");
    let out = strata_cmd()
        .args([
            "bucket",
            "upload",
            testdata("small").to_str().unwrap(),
            "--label",
            "a=b",
            "--objstore.config",
            &s3("strata-auth", &format!("127.0.0.1:{}", strict.port), ""),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("access denied") && !stderr.contains(SECRET), "{stderr}");
}
