//! Backups of a real Prometheus 2.42 (Debian's package, on 127.0.0.1, scraping itself
//! every second, 1m blocks so it cuts blocks during the test) into S3 on moto_server:
//! the shipper (`strata bucket upload --wait`), `strata backup` through the admin API,
//! and `strata restore`, checked against promtool's dump and against the original
//! server's query_range answers. These tests fail, never skip, when prometheus, promtool
//! or moto_server is missing (scripts/install-test-deps.sh installs them).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata::block::list_blocks;
use strata::format::meta::BlockMeta;

use super::bucket::{strata_cmd, Backend, Fixture, PREFIX};
use super::{assert_same_samples, copy_dir, promtool_dump, scratch_copy, testdata};

const PROMETHEUS: &str = "/usr/bin/prometheus";
const SECRET: &str = "SECRET-prometheus-password-5678";
/// bcrypt of "test" (the example of Prometheus's basic auth guide), user "admin".
const ADMIN_TEST_BCRYPT: &str = "$2b$12$hNf2lSsxfm0.i4a.1kVpSOVyBCfIB51VRjgBUyv6kdnyTlgWj81Ay";

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `f` every 200ms until it gives a value, or panics after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn http(port: u16, method: &str, path: &str, basic: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let auth = basic.map(|b| format!("Authorization: Basic {b}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut body = resp[head_end..].to_vec();
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        let mut out = Vec::new();
        let mut b = &body[..];
        while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
            let n = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b[i + 2..i + 2 + n]);
            b = &b[i + 2 + n + 2..];
        }
        body = out;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus server on 127.0.0.1, SIGKILLed when dropped (also on a panic); a
/// watchdog shell kills it should the test process die first.
struct Prom {
    child: Child,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    basic: Option<&'static str>,
    _dir: tempfile::TempDir,
}

impl Prom {
    /// Starts a server on `data` (its own config and log in a temp dir): scraping itself
    /// every second, 1m blocks, the admin API if `admin`, basic auth (admin/test) if `auth`.
    fn start(data: &Path, admin: bool, auth: bool) -> Prom {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n{}",
                if auth { "    basic_auth:\n      username: admin\n      password: test\n" } else { "" }
            ),
        )
        .unwrap();
        let log = dir.path().join("prometheus.log");
        let mut cmd = Command::new(PROMETHEUS);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--storage.tsdb.min-block-duration=1m")
            .arg("--storage.tsdb.max-block-duration=1m")
            .arg("--log.level=info");
        if admin {
            cmd.arg("--web.enable-admin-api");
        }
        if auth {
            let web = dir.path().join("web.yml");
            std::fs::write(&web, format!("basic_auth_users:\n  admin: {ADMIN_TEST_BCRYPT}\n")).unwrap();
            cmd.arg(format!("--web.config.file={}", web.display()));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{PROMETHEUS} is required (scripts/install-test-deps.sh installs it): {e}"));
        let pid = child.id();
        let _ = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "while kill -0 {} 2>/dev/null && kill -0 {pid} 2>/dev/null; do sleep 1; done; kill -9 {pid} 2>/dev/null",
                std::process::id()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let basic = auth.then_some("YWRtaW46dGVzdA=="); // admin:test
        let mut p = Prom { child, port, data: data.to_path_buf(), log, basic, _dir: dir };
        let start = Instant::now();
        loop {
            if let Ok((200, _)) = http(port, "GET", "/-/ready", basic) {
                break;
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!(
                    "prometheus exited ({status}); its log:\n{}",
                    std::fs::read_to_string(&p.log).unwrap_or_default()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus not ready after 60s; its log:\n{}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `data` of a query_range answer.
    fn query_range(&self, q: &str, start_s: i64, end_s: i64) -> serde_json::Value {
        let path = format!("/api/v1/query_range?query={}&start={start_s}&end={end_s}&step=1", urlencode(q));
        let (code, body) = http(self.port, "GET", &path, self.basic).unwrap();
        assert_eq!(code, 200, "query_range {q}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        v["data"].clone()
    }
}

impl Drop for Prom {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `strata backup` against `prom` into `f`'s bucket, with `extra` flags.
fn backup(f: &Fixture, url: &str, tsdb: &Path, extra: &[&str]) -> Output {
    let out = strata_cmd()
        .args(["backup", "--prometheus.url", url, "--label", "replica=a", "--objstore.config-file"])
        .arg(&f.config)
        .arg("--tsdb.path")
        .arg(tsdb)
        .args(extra)
        .output()
        .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!all.contains(SECRET), "strata backup printed a secret:\n{all}");
    out
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The shipper: `strata bucket upload DIR --wait` with its log in `log`.
fn start_shipper(config: &Path, data: &Path, log: &Path) -> Child {
    strata_cmd()
        .args(["bucket", "upload"])
        .arg(data)
        .args(["--label", "replica=a", "--wait", "--wait-interval", "1s", "--http-address", "127.0.0.1:0"])
        .arg("--objstore.config-file")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// SIGTERM, then the exit status within 30s.
fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    wait_for("the shipper to stop", Duration::from_secs(30), || child.try_wait().unwrap())
}

fn shipper_state(data: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(data.join("thanos.shipper.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn uploaded_ids(state: &serde_json::Value) -> Vec<String> {
    state["uploaded"]
        .as_array()
        .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn local_metas(dir: &Path) -> Vec<BlockMeta> {
    let mut v: Vec<BlockMeta> = list_blocks(dir)
        .unwrap()
        .into_iter()
        .filter_map(|b| std::fs::read(b.path.join("meta.json")).ok().map(|m| BlockMeta::parse(&m).unwrap()))
        .collect();
    v.sort_by_key(|m| (m.min_time, m.ulid));
    v
}

/// promtool's dump of these blocks alone.
fn dump_blocks(blocks: &[PathBuf]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    for b in blocks {
        copy_dir(b, &tmp.path().join(b.file_name().unwrap()));
    }
    std::fs::create_dir_all(tmp.path().join("wal")).unwrap();
    promtool_dump(tmp.path(), &[])
}

/// PUT requests moto received for `<id>/meta.json`.
fn meta_puts(f: &Fixture, id: &str) -> usize {
    let Backend::S3 { moto, bucket } = &f.backend else { panic!("S3 only") };
    let key = format!("/{bucket}/{PREFIX}/{id}/meta.json");
    moto.requests().iter().filter(|(m, p)| m == "PUT" && *p == key).count()
}

/// Every block with a meta.json in the bucket is complete (each file its meta.json
/// lists is there with its size); returns their ULIDs.
fn complete_blocks(f: &Fixture) -> Vec<String> {
    let keys = f.keys();
    let mut out = Vec::new();
    for k in keys.keys().filter(|k| k.ends_with("/meta.json")) {
        let id = k.trim_end_matches("/meta.json").to_string();
        let meta = BlockMeta::parse(&f.get(k).unwrap()).unwrap();
        for file in &meta.thanos.as_ref().unwrap().files {
            if file.rel_path == "meta.json" {
                continue;
            }
            let size = keys.get(&format!("{id}/{}", file.rel_path));
            assert_eq!(
                size,
                Some(&(file.size_bytes as u64)),
                "block {id} is visible but {} is not complete",
                file.rel_path
            );
        }
        out.push(id);
    }
    out
}

#[test]
fn shipper_backup_and_restore_of_a_live_prometheus() {
    let f = Fixture::s3();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let t0_s = now_ms() / 1000 - 1;
    let prom = Prom::start(&data, true, false);

    // The shipper runs from the start; an early snapshot backup holds only head samples.
    let shipper_log = work.path().join("shipper.log");
    let mut shipper = start_shipper(&f.config, &data, &shipper_log);
    std::thread::sleep(Duration::from_secs(15));
    let out = backup(&f, &prom.url(), &data, &["--max-retries", "0"]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "early backup failed:\n{o}\n{e}");
    let head1: Vec<String> =
        o.lines().filter_map(|l| l.strip_prefix("uploaded ")).map(|l| l[..26].to_string()).collect();
    assert_eq!(head1.len(), 1, "one head block, no block cut yet:\n{o}");
    assert_eq!(std::fs::read_dir(data.join("snapshots")).unwrap().count(), 0, "the snapshot is removed");

    // Prometheus cuts a 1m block about 90s after its first sample, then one a minute.
    let state = wait_for("two blocks shipped", Duration::from_secs(300), || {
        let s = shipper_state(&data)?;
        (uploaded_ids(&s).len() >= 2).then_some(s)
    });
    let log = std::fs::read_to_string(&shipper_log).unwrap();
    let addr = log.split("address=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let http_port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(http(http_port, "GET", "/-/healthy", None).unwrap().0, 200);
    let shipped_count = wait_for("the metrics to count the uploads", Duration::from_secs(10), || {
        let n = uploaded_ids(&shipper_state(&data)?).len();
        let (_, body) = http(http_port, "GET", "/metrics", None).ok()?;
        body.lines().any(|l| l == format!("thanos_shipper_uploads_total {n}")).then_some(n)
    });
    let (_, metrics) = http(http_port, "GET", "/metrics", None).unwrap();
    assert!(metrics.contains("thanos_shipper_upload_failures_total 0"), "{metrics}");
    let last = metrics.lines().find_map(|l| l.strip_prefix("thanos_shipper_last_successful_upload_time ")).unwrap();
    assert!(last.parse::<f64>().unwrap() > t0_s as f64, "{last}");
    assert!(terminate(&mut shipper).success(), "the shipper stops cleanly on SIGTERM");

    // thanos.shipper.json in the sidecar's format, naming every shipped block, oldest first.
    let state = shipper_state(&data).unwrap_or(state);
    let obj = state.as_object().unwrap();
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["version", "uploaded"]);
    assert_eq!(state["version"], 1);
    let shipped = uploaded_ids(&state);
    assert!(shipped.len() >= shipped_count.min(2));
    let local = local_metas(&data);
    let local_ids: Vec<String> = local.iter().map(|m| m.ulid.to_string()).collect();
    assert_eq!(shipped[..], local_ids[..shipped.len()], "shipped in order; later blocks may be cut since");
    for id in &shipped {
        assert_eq!(meta_puts(&f, id), 1, "block {id} uploaded exactly once");
        let m = BlockMeta::parse(&f.get(&format!("{id}/meta.json")).unwrap()).unwrap();
        let t = m.thanos.unwrap();
        assert_eq!(t.source, "sidecar");
        assert_eq!(t.labels, BTreeMap::from([("replica".to_string(), "a".to_string())]));
        assert_eq!(m.compaction.level, 1);
    }
    assert_eq!(complete_blocks(&f).len(), shipped.len() + 1, "shipped blocks and the early head block, all whole");
    // The uploaded blocks' samples are the local blocks' (promtool's dump of each).
    let down = work.path().join("down");
    let out = f.strata(&["download", down.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for id in &shipped {
        assert_same_samples(
            &dump_blocks(&[down.join(id)]),
            &dump_blocks(&[data.join(id)]),
            &format!("shipped block {id}"),
        );
    }

    // A backup now: shipped blocks are skipped, the head goes up; its samples are in no block.
    let end_s = now_ms() / 1000 - 2;
    let out = backup(&f, &prom.url(), &data, &[]);
    let (o, e) = text(&out);
    assert!(out.status.success(), "backup failed:\n{o}\n{e}");
    for id in &shipped {
        assert!(o.contains(&format!("skipped {id}: already in")), "{id} not skipped:\n{o}");
    }
    assert!(o.lines().any(|l| l.starts_with("uploaded ")), "{o}");
    assert_eq!(std::fs::read_dir(data.join("snapshots")).unwrap().count(), 0, "the snapshot is removed");
    let last_shipped_max = local.iter().filter(|m| shipped.contains(&m.ulid.to_string())).map(|m| m.max_time).max();
    assert!(end_s * 1000 > last_shipped_max.unwrap() + 5000, "the compared range reaches into the head");

    // Restore into an empty directory: the early head block overlaps the first shipped
    // block and is merged with it.
    let restored = work.path().join("restored");
    let out = strata_cmd()
        .arg("restore")
        .arg(&restored)
        .args(["--min-time", &(t0_s * 1000).to_string(), "--max-time", &(end_s * 1000 + 60_000).to_string()])
        .arg("--objstore.config-file")
        .arg(&f.config)
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "restore failed:\n{o}\n{e}");
    assert!(o.lines().any(|l| l.starts_with("merged ") && l.contains(&head1[0])), "head block not merged:\n{o}");
    let metas = local_metas(&restored);
    for w in metas.windows(2) {
        assert!(w[0].max_time <= w[1].min_time, "restored blocks overlap: {} and {}", w[0].ulid, w[1].ulid);
    }
    // A second restore into the same directory is refused, and removes nothing.
    let out = strata_cmd().arg("restore").arg(&restored).arg("--objstore.config-file").arg(&f.config).output().unwrap();
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(e.trim().lines().count() == 1 && e.contains("is not empty") && e.contains("--force"), "{e}");
    assert_eq!(local_metas(&restored).len(), metas.len());
    // With --force it adds only what the directory lacks (here nothing: the merged
    // block holds its sources' data), and leaves what is there alone.
    std::fs::write(restored.join("keep-me"), "x").unwrap();
    let out = strata_cmd()
        .arg("restore")
        .arg(&restored)
        .arg("--force")
        .arg("--objstore.config-file")
        .arg(&f.config)
        .output()
        .unwrap();
    let (o, e) = text(&out);
    assert!(out.status.success(), "restore --force failed:\n{o}\n{e}");
    assert_eq!(local_metas(&restored), metas, "nothing restored twice:\n{o}\n{e}");
    assert_eq!(std::fs::read_to_string(restored.join("keep-me")).unwrap(), "x");
    std::fs::remove_file(restored.join("keep-me")).unwrap();

    // A second Prometheus on the restored directory answers as the original did.
    let copy = Prom::start(&restored, false, false);
    for q in [
        "up",
        "count({__name__=~\".+\"})",
        "{__name__=~\"prometheus_tsdb_head_series|prometheus_tsdb_head_samples_appended_total|scrape_samples_scraped\"}",
    ] {
        let want = prom.query_range(q, t0_s, end_s);
        let got = copy.query_range(q, t0_s, end_s);
        assert!(!want["result"].as_array().unwrap().is_empty(), "{q}: the original has no data");
        assert_eq!(got, want, "query_range {q} over [{t0_s}, {end_s}] differs after restore");
    }
}

#[test]
fn backup_errors_are_one_clear_line_without_secrets() {
    let f = Fixture::filesystem();
    let work = tempfile::tempdir().unwrap();
    let wrong = work.path().join("wrong-password");
    std::fs::write(&wrong, format!("{SECRET}\n")).unwrap();
    let right = work.path().join("password");
    std::fs::write(&right, "test\n").unwrap();
    let data = work.path().join("data");
    let prom = Prom::start(&data, true, true);
    let one_line = |out: &Output, want: &str| {
        let (o, e) = text(out);
        assert_eq!(out.status.code(), Some(1), "{o}\n{e}");
        // Progress logged at info level ("snapshot taken") is not an error line.
        let lines: Vec<&str> = e.trim().lines().filter(|l| !l.contains(" level=info ")).collect();
        assert_eq!(lines.len(), 1, "want one error line:\n{e}");
        assert!(lines[0].starts_with("strata: backup failed") && lines[0].contains(want), "{e}");
    };
    let url = prom.url();
    let d = data.to_str().unwrap();
    let wrong_s = wrong.to_str().unwrap();

    // Wrong credentials, basic auth or bearer token.
    let out = backup(&f, &url, &data, &["--prometheus.username", "admin", "--prometheus.password-file", wrong_s]);
    one_line(&out, "unauthorized");
    let out = backup(&f, &url, &data, &["--prometheus.bearer-token-file", wrong_s]);
    one_line(&out, "HTTP 401");

    // The right credentials, but a --tsdb.path that does not hold the snapshot.
    let elsewhere = work.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let auth = ["--prometheus.username", "admin", "--prometheus.password-file", right.to_str().unwrap()];
    let out = backup(&f, &url, &elsewhere, &auth);
    one_line(&out, "is not in");
    let (_, e) = text(&out);
    let name = e.split("backup failed: snapshot ").nth(1).unwrap().split(' ').next().unwrap();
    assert!(data.join("snapshots").join(name).is_dir(), "the server's snapshot is named in the line: {e}");
    // ... and with the right path, the same credentials work.
    let out = backup(&f, &url, Path::new(d), &auth);
    assert!(out.status.success(), "{:?}", text(&out));

    // A server without the admin API.
    let plain = Prom::start(&work.path().join("plain"), false, false);
    let out = backup(&f, &plain.url(), &plain.data, &[]);
    one_line(&out, "--web.enable-admin-api");
    drop(plain);

    // An unreachable server: transient, so retried, then one line.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let out = backup(&f, &closed, &data, &["--max-retries", "0"]);
    one_line(&out, "server unreachable");
    let out = backup(&f, &closed, &data, &["--max-retries", "2", "--retry-interval", "100ms"]);
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(e.lines().filter(|l| l.contains("level=warn") && l.contains("retrying")).count(), 2, "{e}");
    let last = e.trim().lines().last().unwrap();
    assert!(
        last.starts_with("strata: backup failed, giving up after 3 attempts") && last.contains("unreachable"),
        "{e}"
    );
}

/// A TCP proxy in front of moto that stalls the first request whose bytes contain the
/// pattern: nothing of that request reaches moto, the shipper waits for an answer, and
/// the test SIGKILLs it there.
struct StallingProxy {
    port: u16,
    pattern: Arc<Mutex<Option<Vec<u8>>>>,
    hit: Arc<AtomicBool>,
}

impl StallingProxy {
    fn start(upstream: u16) -> StallingProxy {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let pattern: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
        let hit = Arc::new(AtomicBool::new(false));
        let (p, h) = (pattern.clone(), hit.clone());
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                let (p, h) = (p.clone(), h.clone());
                std::thread::spawn(move || pump_up(client, server, &p, &h));
            }
        });
        StallingProxy { port, pattern, hit }
    }

    fn stall_on(&self, pattern: Option<String>) {
        *self.pattern.lock().unwrap() = pattern.map(String::into_bytes);
        self.hit.store(false, Ordering::SeqCst);
    }
}

fn pump_up(mut client: TcpStream, mut server: TcpStream, pattern: &Mutex<Option<Vec<u8>>>, hit: &AtomicBool) {
    let mut buf = vec![0u8; 1 << 16];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let pat = pattern.lock().unwrap().clone();
        if let Some(pat) = pat {
            let mut hay = tail.clone();
            hay.extend_from_slice(chunk);
            if let Some(i) = hay.windows(pat.len()).position(|w| w == pat.as_slice()) {
                let _ = server.write_all(&chunk[..i.saturating_sub(tail.len())]);
                hit.store(true, Ordering::SeqCst);
                // Hold the request until the client is gone (killed).
                while matches!(client.read(&mut buf), Ok(n) if n > 0) {}
                return;
            }
            tail = hay[hay.len().saturating_sub(pat.len())..].to_vec();
        }
        if server.write_all(chunk).is_err() {
            break;
        }
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
}

#[test]
fn shipper_killed_mid_upload_never_uploads_twice_nor_leaves_a_visible_partial() {
    let f = Fixture::s3();
    let Backend::S3 { moto, bucket } = &f.backend else { unreachable!() };
    let proxy = StallingProxy::start(moto.port);
    let config = f.dir.path().join("via-proxy.yaml");
    let yaml = std::fs::read_to_string(&f.config).unwrap();
    std::fs::write(&config, yaml.replace(&format!("127.0.0.1:{}", moto.port), &format!("127.0.0.1:{}", proxy.port)))
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for b in list_blocks(&testdata("varied")).unwrap() {
        copy_dir(&b.path, &data.join(b.ulid.to_string()));
    }
    let ids: Vec<String> = local_metas(&data).iter().map(|m| m.ulid.to_string()).collect();
    assert_eq!(ids.len(), 4);
    let key = |id: &str, rest: &str| format!("/{bucket}/{PREFIX}/{id}/{rest}");
    // (where to stop, the blocks complete in the bucket afterwards, the block left
    // partially uploaded with the objects it has)
    type Stage<'a> = (String, &'a str, usize, Option<(usize, &'a [&'a str])>);
    let stages: [Stage; 4] = [
        (format!("PUT {}", key(&ids[1], "chunks/")), "while block 2's chunks go up", 1, None),
        (
            format!("PUT {} ", key(&ids[1], "index")),
            "while block 2's index goes up (its chunks are there)",
            1,
            Some((1, &["chunks/000001"])),
        ),
        (
            format!("PUT {} ", key(&ids[2], "meta.json")),
            "while block 3's meta.json goes up",
            2,
            Some((2, &["chunks/000001", "index"])),
        ),
        (
            format!("HEAD {} ", key(&ids[3], "meta.json")),
            "after block 3 is complete, before the shipper file is written",
            3,
            None,
        ),
    ];
    let log = work.path().join("shipper.log");
    for (pattern, when, complete, partial) in &stages {
        proxy.stall_on(Some(pattern.clone()));
        let mut child = start_shipper(&config, &data, &log);
        wait_for(when, Duration::from_secs(60), || {
            if let Ok(Some(s)) = child.try_wait() {
                panic!("the shipper exited ({s}) {when}:\n{}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            proxy.hit.load(Ordering::SeqCst).then_some(())
        });
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Readers see exactly the complete blocks; a partial upload is no block.
        let visible = complete_blocks(&f);
        assert_eq!(visible, ids[..*complete].to_vec(), "killed {when}");
        let (o, e) = text(&f.strata(&["ls"]));
        assert_eq!(o.lines().collect::<Vec<_>>(), ids[..*complete].iter().map(String::as_str).collect::<Vec<_>>());
        let keys = f.keys();
        let of = |i: usize| -> Vec<String> {
            keys.keys().filter_map(|k| k.strip_prefix(&format!("{}/", ids[i]))).map(String::from).collect()
        };
        match partial {
            Some((i, objects)) => {
                assert_eq!(of(*i), objects.to_vec(), "killed {when}: the partial upload");
                assert!(e.contains(&format!("partial upload {}: no meta.json", ids[*i])), "{e}");
            }
            None => assert!(of(*complete).is_empty(), "killed {when}: nothing of block {} sent", complete + 1),
        }
        assert!(shipper_state(&data).is_none(), "no sync finished yet, so no shipper file ({when})");
    }

    // Restarted without interference: everything up, each block's meta.json sent once.
    proxy.stall_on(None);
    let mut child = start_shipper(&config, &data, &log);
    let state = wait_for("all four blocks recorded", Duration::from_secs(60), || {
        let s = shipper_state(&data)?;
        (uploaded_ids(&s).len() == 4).then_some(s)
    });
    assert!(terminate(&mut child).success());
    assert_eq!(uploaded_ids(&state), ids);
    assert_eq!(complete_blocks(&f), ids);
    for id in &ids {
        assert_eq!(meta_puts(&f, id), 1, "block {id}'s meta.json was sent more than once");
    }
    let leftovers: Vec<_> =
        std::fs::read_dir(data.join("thanos/upload")).map(|rd| rd.flatten().collect()).unwrap_or_default();
    assert!(leftovers.is_empty(), "upload copies left behind: {leftovers:?}");
    let (o, e) = text(&f.strata(&["ls"]));
    assert_eq!(o.lines().count(), 4);
    assert!(!e.contains("partial upload"), "{e}");
    // What is in the bucket is what was on disk.
    let down = work.path().join("down");
    let out = f.strata(&["download", down.to_str().unwrap()]);
    assert!(out.status.success());
    std::fs::create_dir_all(down.join("wal")).unwrap();
    let local = scratch_copy(&data);
    assert_same_samples(&promtool_dump(&down, &[]), &promtool_dump(local.path(), &[]), "shipped after kills");
}
