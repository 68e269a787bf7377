//! The bucket viewer: `strata bucket web` and `strata run --wait` serve the blocks page
//! and its API. The API is called with a real HTTP client (curl), markers are checked in
//! the bucket, and headless Chromium (Debian's `chromium`) renders the page.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use crate::bucket::{strata_cmd, Backend, Fixture};
use crate::*;

fn upload(f: &Fixture, dir: &Path, labels: &[&str]) {
    let mut args = vec!["upload", dir.to_str().unwrap()];
    for l in labels {
        args.extend(["--label", l]);
    }
    let out = f.strata(&args);
    assert!(out.status.success(), "upload: {}", String::from_utf8_lossy(&out.stderr));
}

/// A bucket with several groups, levels and resolutions: `cluster=eu1` 16 days compacted
/// up to 14d blocks and downsampled to 5m and 1h (its sources left marked for deletion),
/// `cluster=us1` two overlapping replicas of 8h in 2h blocks, `cluster=ap1` one day of 2h
/// blocks.
fn varied_bucket(f: &Fixture) {
    let src = tempfile::tempdir().unwrap();
    gen(src.path(), &SIXTEEN_DAYS);
    upload(f, src.path(), &["cluster=eu1"]);
    let data = tempfile::tempdir().unwrap();
    let out = strata_cmd()
        .args([
            "run",
            "--objstore.config-file",
            f.config.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--consistency-delay",
            "0s",
            "--http-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));
    let us = tempfile::tempdir().unwrap();
    gen(
        us.path(),
        &["--series", "30", "--duration", "8h", "--replicas", "2", "--start", "1700697600000", "--churn", "0.1"],
    );
    upload(f, us.path(), &["cluster=us1"]);
    let ap = tempfile::tempdir().unwrap();
    gen(ap.path(), &["--series", "30", "--duration", "1d", "--start", "1700611200000"]);
    upload(f, ap.path(), &["cluster=ap1"]);
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

/// `curl` with the status code on the last line; returns (code, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

fn blocks_api(addr: &str, query: &str) -> serde_json::Value {
    let (code, body) = curl(&[&format!("http://{addr}/api/v1/blocks{query}")]);
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not JSON: {e}: {body}"))
}

/// The marker file of a block in a filesystem bucket, if any.
fn marker_in_bucket(f: &Fixture, id: &str, name: &str) -> Option<serde_json::Value> {
    let Backend::Filesystem { root } = &f.backend else { unreachable!() };
    fn find(dir: &Path, tail: &str) -> Option<PathBuf> {
        for e in std::fs::read_dir(dir).ok()?.flatten() {
            let p = e.path();
            if p.is_dir() {
                if let Some(hit) = find(&p, tail) {
                    return Some(hit);
                }
            } else if p.to_string_lossy().ends_with(tail) {
                return Some(p);
            }
        }
        None
    }
    let p = find(root, &format!("{id}/{name}"))?;
    Some(serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
}

fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
            "--window-size=1400,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium");
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn bucket_web_serves_blocks_marks_them_and_renders_in_chromium() {
    let f = Fixture::filesystem();
    varied_bucket(&f);
    let mut cmd = strata_cmd();
    cmd.args(["bucket", "web", "--http-address", "127.0.0.1:0", "--label", "cluster", "--objstore.config-file"])
        .arg(&f.config);
    let (child, addr) = start_server(&mut cmd, "blocks refreshed");
    let _kill = Kill(child);

    // Thanos's shape: {"status":"success","data":{"blocks":[meta.json...],"label","refreshedAt","err"}}.
    let v = blocks_api(&addr, "");
    assert_eq!(v["status"], "success", "{v}");
    let d = &v["data"];
    assert_eq!(d["label"], "cluster");
    assert!(d["refreshedAt"].is_string() && d["err"].is_null(), "{d}");
    let blocks = d["blocks"].as_array().unwrap();
    for b in blocks {
        for k in ["ulid", "minTime", "maxTime", "stats", "compaction", "version", "thanos"] {
            assert!(!b[k].is_null(), "{k} missing: {b}");
        }
    }
    let ls = String::from_utf8_lossy(&f.strata(&["ls"]).stdout).to_string();
    assert_eq!(blocks.len(), ls.lines().filter(|l| l.trim().len() == 26).count(), "{ls}");
    let clusters: std::collections::BTreeSet<&str> =
        blocks.iter().map(|b| b["thanos"]["labels"]["cluster"].as_str().unwrap()).collect();
    assert_eq!(clusters, ["ap1", "eu1", "us1"].into());
    let resolutions: std::collections::BTreeSet<i64> =
        blocks.iter().map(|b| b["thanos"]["downsample"]["resolution"].as_i64().unwrap()).collect();
    assert_eq!(resolutions, [0, 300_000, 3_600_000].into());
    let levels: std::collections::BTreeSet<i64> =
        blocks.iter().map(|b| b["compaction"]["level"].as_i64().unwrap()).collect();
    assert!(levels.len() >= 2, "{levels:?}");
    let loaded = blocks_api(&addr, "?view=loaded");
    assert!(loaded["data"]["blocks"].as_array().unwrap().len() <= blocks.len());

    // Marks through the API land in the bucket.
    let id_of = |cluster: &str| {
        blocks
            .iter()
            .find(|b| b["thanos"]["labels"]["cluster"] == cluster)
            .map(|b| b["ulid"].as_str().unwrap().to_string())
            .unwrap()
    };
    let (ap, us) = (id_of("ap1"), id_of("us1"));
    let url = format!("http://{addr}/api/v1/blocks/mark");
    let (code, body) = curl(&[
        "-X",
        "POST",
        "--data-urlencode",
        &format!("id={ap}"),
        "-d",
        "action=NO_COMPACTION",
        "--data-urlencode",
        "detail=kept by hand",
        &url,
    ]);
    assert_eq!((code, body.as_str()), (200, r#"{"status":"success"}"#));
    let m = marker_in_bucket(&f, &ap, "no-compact-mark.json").expect("no-compact mark in the bucket");
    assert_eq!(
        (m["id"].as_str(), m["details"].as_str(), m["reason"].as_str()),
        (Some(ap.as_str()), Some("kept by hand"), Some("manual"))
    );
    let (code, _) = curl(&["-d", &format!("id={us}&action=DELETION&detail=gone"), &url]);
    assert_eq!(code, 200);
    assert_eq!(marker_in_bucket(&f, &us, "deletion-mark.json").expect("deletion mark")["details"], "gone");
    let v = blocks_api(&addr, "");
    assert_eq!(v["data"]["markers"][&us][0], "deletion-mark.json", "{}", v["data"]["markers"]);
    // Bad requests are refused in Thanos's error shape, and write nothing.
    let (code, body) = curl(&["-d", &format!("id={us}&action=BOGUS"), &url]);
    assert_eq!(code, 400, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!((e["status"].as_str(), e["errorType"].as_str()), (Some("error"), Some("bad_data")));
    let (code, _) = curl(&["-d", "id=not-a-ulid&action=DELETION", &url]);
    assert_eq!(code, 400);

    // The page, rendered by a real browser: one panel per label set, blocks drawn.
    let dom = String::from_utf8_lossy(&chromium(&["--dump-dom"], &format!("http://{addr}/blocks")).stdout).to_string();
    assert_eq!(dom.matches("class=\"panel\"").count(), 3, "{dom}");
    assert!(dom.contains("cluster=\"eu1\"") && dom.contains("5m · level") && dom.contains("1h · level"), "{dom}");
    assert!(dom.contains(&us) && dom.contains("overlap"), "{dom}");
    let png = tempfile::tempdir().unwrap().keep().join("blocks.png");
    // With the widest raw block selected (its details and the mark buttons shown).
    let widest = blocks
        .iter()
        .filter(|b| b["thanos"]["downsample"]["resolution"] == 0)
        .max_by_key(|b| b["maxTime"].as_i64().unwrap() - b["minTime"].as_i64().unwrap())
        .unwrap()["ulid"]
        .as_str()
        .unwrap()
        .to_string();
    let dom =
        String::from_utf8_lossy(&chromium(&["--dump-dom"], &format!("http://{addr}/#{widest}")).stdout).to_string();
    assert!(dom.contains(&format!("<h2>{widest}</h2>")) && dom.contains("Mark for deletion"), "{dom}");
    chromium(&[&format!("--screenshot={}", png.display())], &format!("http://{addr}/#{widest}"));
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000, "{} bytes", bytes.len());
    if let Ok(dest) = std::env::var("STRATA_SCREENSHOT") {
        std::fs::copy(&png, dest).unwrap();
    }
}

#[test]
fn marks_are_refused_with_disable_admin_operations_and_run_wait_serves_the_viewer() {
    let f = Fixture::filesystem();
    upload(&f, &testdata("small"), &["cluster=eu1"]);
    let id = String::from_utf8_lossy(&f.strata(&["ls"]).stdout).trim().to_string();
    let mut cmd = strata_cmd();
    cmd.args([
        "bucket",
        "web",
        "--http-address",
        "127.0.0.1:0",
        "--disable-admin-operations",
        "--objstore.config-file",
    ])
    .arg(&f.config);
    let (child, addr) = start_server(&mut cmd, "blocks refreshed");
    let kill = Kill(child);
    let (code, body) = curl(&["-d", &format!("id={id}&action=DELETION"), &format!("http://{addr}/api/v1/blocks/mark")]);
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("Admin operations are disabled"), "{body}");
    assert!(marker_in_bucket(&f, &id, "deletion-mark.json").is_none());
    drop(kill);

    // The compactor serves the same viewer.
    let data = tempfile::tempdir().unwrap();
    let mut cmd = strata_cmd();
    cmd.args(["run", "--wait", "--wait-interval", "1h", "--consistency-delay", "0s", "--http-address", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .arg("--objstore.config-file")
        .arg(&f.config);
    let (child, addr) = start_server(&mut cmd, "iteration done");
    let _kill = Kill(child);
    let (code, page) = curl(&[&format!("http://{addr}/")]);
    assert_eq!(code, 200);
    assert!(page.contains("<script src=\"/static/app.js\">"), "{page}");
    let (code, js) = curl(&[&format!("http://{addr}/static/app.js")]);
    assert!(code == 200 && js.contains("/api/v1/blocks"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = blocks_api(&addr, "?view=loaded");
        if v["data"]["blocks"].as_array().is_some_and(|b| b.iter().any(|b| b["ulid"] == id.as_str())) {
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, _) =
        curl(&["-d", &format!("id={id}&action=NO_COMPACTION&detail=x"), &format!("http://{addr}/api/v1/blocks/mark")]);
    assert_eq!(code, 200);
    assert!(marker_in_bucket(&f, &id, "no-compact-mark.json").is_some());
}
