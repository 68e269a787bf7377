//! `strata run` against a real bucket (a FILESYSTEM bucket and S3 on moto_server): the
//! same test body for both, as the bucket conformance tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::bucket::{strata_cmd, Fixture};
use crate::*;
use strata::block::{list_blocks, Block};

/// Copies the `small` block to `dir` under a new ULID (a second replica's upload).
fn replica_copy(dir: &Path) {
    let src = list_blocks(&testdata("small")).unwrap()[0].path.clone();
    let mut meta = Block::open(&src).unwrap().meta;
    let ulid = ulid::Ulid::new();
    let dst = dir.join(ulid.to_string());
    copy_dir(&src, &dst);
    meta.ulid = ulid;
    meta.compaction.sources = vec![ulid];
    std::fs::write(dst.join("meta.json"), meta.to_json()).unwrap();
}

fn upload_replicas(f: &Fixture) {
    for r in ["A", "B"] {
        let tmp = tempfile::tempdir().unwrap();
        replica_copy(tmp.path());
        let label = format!("replica={r}");
        let out = f.strata(&["upload", tmp.path().to_str().unwrap(), "--label", "cluster=eu1", "--label", &label]);
        assert!(out.status.success(), "upload: {}", String::from_utf8_lossy(&out.stderr));
    }
}

fn run_args<'a>(f: &'a Fixture, data: &'a Path) -> Vec<String> {
    [
        "run",
        "--objstore.config-file",
        f.config.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--consistency-delay",
        "0s",
        "--delete-delay",
        "0s",
        "--deduplication.replica-label",
        "replica",
        "--http-address",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn ls(f: &Fixture) -> Vec<String> {
    let out = f.strata(&["ls"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.trim().to_string()).filter(|l| l.len() == 26).collect()
}

fn one_iteration_deduplicates_replicas(f: &Fixture) {
    upload_replicas(f);
    assert_eq!(ls(f).len(), 2);
    let data = tempfile::tempdir().unwrap();
    let out = strata_cmd().args(run_args(f, data.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "strata run: {err}");
    assert!(err.contains("msg=\"iteration done\" compactions=1"), "{err}");
    assert!(err.contains("phase=compact group=") && err.contains("sources="), "{err}");
    // The sources are gone (delete delay 0s); one block is left.
    let blocks = ls(f);
    assert_eq!(blocks.len(), 1, "{blocks:?}\n{err}");
    // Its samples are exactly one replica's, and its labels lost the replica label.
    let local = tempfile::tempdir().unwrap();
    let d = f.strata(&["download", local.path().to_str().unwrap(), "--min-time", "0", "--max-time", "9999999999999"]);
    assert!(d.status.success(), "download: {}", String::from_utf8_lossy(&d.stderr));
    let meta = Block::open(&list_blocks(local.path()).unwrap()[0].path).unwrap().meta;
    let t = meta.thanos.clone().unwrap();
    assert_eq!(t.labels, [("cluster".to_string(), "eu1".to_string())].into());
    assert_eq!(t.source, "compactor");
    assert_eq!(meta.compaction.level, 2);
    std::fs::create_dir_all(local.path().join("wal")).unwrap();
    assert_same_samples(
        &promtool_dump(local.path(), &[]),
        &std::fs::read_to_string(testdata("small.dump.txt")).unwrap(),
        "bucket job",
    );
    // Local scratch space is cleaned as soon as a job ends.
    let left: Vec<_> = walk(data.path());
    assert!(left.iter().all(|p| p.is_dir()), "files left in --data-dir: {left:?}");
    // A second run has nothing to do.
    let out = strata_cmd().args(run_args(f, data.path())).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("compactions=0"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn walk(p: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            out.push(e.path());
            out.extend(walk(&e.path()));
        }
    }
    out
}

#[test]
fn run_deduplicates_replicas_in_a_filesystem_bucket() {
    one_iteration_deduplicates_replicas(&Fixture::filesystem());
}

#[test]
fn run_deduplicates_replicas_in_s3() {
    one_iteration_deduplicates_replicas(&Fixture::s3());
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut r = String::new();
    s.read_to_string(&mut r).ok()?;
    Some(r)
}

fn metric(body: &str, name: &str) -> f64 {
    body.lines().filter(|l| l.starts_with(name)).map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap()).sum()
}

#[test]
fn metrics_move_while_the_job_waits_and_sigterm_stops_it() {
    let f = Fixture::filesystem();
    upload_replicas(&f);
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&f, data.path());
    args.extend(["--wait".to_string(), "--wait-interval".to_string(), "1s".to_string()]);
    let (mut child, addr) = start_server(strata_cmd().args(&args), "address=");
    let start = Instant::now();
    let body = loop {
        let b = http_get(&addr, "/metrics").unwrap_or_default();
        if metric(&b, "thanos_compact_iterations_total") >= 2.0 {
            break b;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "iterations did not move:\n{b}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(metric(&body, "thanos_compact_group_compactions_total") >= 1.0, "{body}");
    assert!(metric(&body, "thanos_compact_blocks_cleaned_total") >= 2.0, "{body}");
    assert!(http_get(&addr, "/-/ready").unwrap().starts_with("HTTP/1.1 200"));
    assert!(http_get(&addr, "/-/healthy").unwrap().starts_with("HTTP/1.1 200"));
    // SIGTERM: the job finishes cleanly.
    std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "strata run ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_corrupt_source_is_marked_no_compact_and_other_groups_compact() {
    let f = Fixture::filesystem();
    // Group "good": two replicas. Group "bad": two replicas, one with a flipped chunk byte.
    for (cluster, corrupt) in [("good", false), ("bad", true)] {
        for r in ["A", "B"] {
            let tmp = tempfile::tempdir().unwrap();
            replica_copy(tmp.path());
            if corrupt && r == "B" {
                let b = list_blocks(tmp.path()).unwrap()[0].path.join("chunks/000001");
                let mut bytes = std::fs::read(&b).unwrap();
                bytes[20] ^= 0x40;
                std::fs::write(&b, bytes).unwrap();
            }
            let (c, l) = (format!("cluster={cluster}"), format!("replica={r}"));
            let out = f.strata(&["upload", tmp.path().to_str().unwrap(), "--label", &c, "--label", &l]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let data = tempfile::tempdir().unwrap();
    let out = strata_cmd().args(run_args(&f, data.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("compactions=1") && err.contains("no_compact_marked=1"), "{err}");
    assert!(
        err.contains("bad block marked no-compact")
            && err.contains("chunks/000001")
            && err.contains("checksum mismatch"),
        "{err}"
    );
    // The bad group's blocks are all still there, one with a no-compact mark naming the problem.
    let wide = f.strata(&["ls", "-o", "wide"]);
    let text = String::from_utf8_lossy(&wide.stdout);
    assert_eq!(ls(&f).len(), 3, "good group compacted into one, bad group untouched:\n{text}");
    let marked: Vec<&str> = text.lines().filter(|l| l.contains("no-compact")).collect();
    assert_eq!(marked.len(), 1, "{text}");
}

#[test]
fn a_source_chunk_that_disagrees_with_its_index_blames_the_source_not_the_job() {
    // Four adjacent 2 h blocks and a newer one; the oldest is replaced by a block whose
    // only chunk ends 5 s before the time its index gives. A leveled compaction copies
    // that chunk as it is, so the output fails verification: the source gets the
    // no-compact mark (instead of the group failing every iteration), nothing is deleted.
    let f = Fixture::filesystem();
    let src = tempfile::tempdir().unwrap();
    gen(src.path(), &["--series", "20", "--duration", "10h"]);
    let mut blocks: Vec<_> =
        list_blocks(src.path()).unwrap().into_iter().map(|b| Block::open(&b.path).unwrap()).collect();
    blocks.sort_by_key(|b| b.meta.min_time);
    let (min_t, max_t) = (blocks[0].meta.min_time, blocks[0].meta.max_time);
    std::fs::remove_dir_all(&blocks[0].dir).unwrap();
    let samples: Vec<(i64, f64)> = (0..100).map(|i| (min_t + i * 15_000, i as f64)).collect();
    let data = strata::format::xor::encode(&samples).unwrap();
    let ulid = ulid::Ulid::new();
    let mut w = strata::block::BlockWriter::new(src.path(), ulid, ["__name__", "bad"]).unwrap();
    let chunk = strata::block::ChunkToWrite {
        encoding: 1,
        data: &data,
        min_time: min_t,
        max_time: samples[99].0 + 5_000,
        record: None,
    };
    w.add_series(&strata::labels::Labels::from_pairs([("__name__", "bad")]), &[chunk]).unwrap();
    w.finish(strata::format::meta::BlockMeta::new(ulid, min_t, max_t), None).unwrap();
    let up = f.strata(&["upload", src.path().to_str().unwrap(), "--label", "cluster=x"]);
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let before = ls(&f).len();

    let work = tempfile::tempdir().unwrap();
    let out = strata_cmd().args(run_args(&f, work.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no_compact_marked=1"), "{err}");
    let line = err.lines().find(|l| l.contains("bad block marked no-compact")).unwrap_or_else(|| panic!("{err}"));
    assert!(
        line.contains(&ulid.to_string()) && line.contains("inherited") && line.contains("but the index says"),
        "{line}"
    );
    let wide = f.strata(&["ls", "-o", "wide"]);
    let text = String::from_utf8_lossy(&wide.stdout);
    let marked: Vec<&str> = text.lines().filter(|l| l.contains("no-compact")).collect();
    assert!(marked.len() == 1 && marked[0].contains(&ulid.to_string()), "{text}");
    // Every other block in the bucket, compacted or not, passes verification: the output
    // that inherited the bad chunk never became a block.
    let others: Vec<String> = ls(&f).into_iter().filter(|id| *id != ulid.to_string()).collect();
    assert!(others.len() >= before.min(4) - 3 && ls(&f).contains(&ulid.to_string()), "{text}");
    for id in &others {
        let v = f.strata(&["verify", "--id", id]);
        assert!(
            v.status.success(),
            "{id}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
}

/// What a Thanos reader deduplicating by `replica` sees: blocks without a deletion mark,
/// minus those whose sources another block holds (Thanos's deduplicate filter, applied
/// with the replica label removed, as the querier merges replicas). Returns their metas.
fn visible(config: &Path) -> Vec<strata::format::meta::BlockMeta> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = strata::bucket::ObjstoreConfig::parse(&std::fs::read_to_string(config).unwrap()).unwrap();
        let bucket = strata::bucket::Bucket::open(&cfg).await.unwrap();
        let opts = strata::bucket::sync::SyncOptions {
            concurrency: 8,
            consistency_delay_ms: 0,
            delete_delay_ms: 0,
            deduplicate: false,
            now_ms: None,
        };
        let synced = strata::bucket::sync::sync(&bucket, &opts).await.unwrap();
        let live: Vec<_> = synced.blocks.into_iter().filter(|b| b.deletion_mark.is_none()).collect();
        let grouped: Vec<_> = live
            .iter()
            .cloned()
            .map(|mut b| {
                if let Some(t) = b.meta.thanos.as_mut() {
                    t.labels =
                        strata::compact::plan::GroupKey::new(0, t.labels.clone(), &["replica".to_string()]).labels;
                }
                b
            })
            .collect();
        let dups = strata::bucket::sync::duplicates(&grouped);
        live.into_iter().filter(|b| !dups.contains_key(&b.id())).map(|b| b.meta).collect()
    })
}

fn visible_dump(f: &Fixture) -> String {
    let metas = visible(&f.config);
    let local = tempfile::tempdir().unwrap();
    let ids: Vec<String> = metas.iter().map(|m| m.ulid.to_string()).collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = strata::bucket::ObjstoreConfig::parse(&std::fs::read_to_string(&f.config).unwrap()).unwrap();
        let bucket = strata::bucket::Bucket::open(&cfg).await.unwrap();
        for m in &metas {
            bucket.download_block(m.ulid, local.path(), &Default::default()).await.unwrap();
        }
    });
    assert_eq!(list_blocks(local.path()).unwrap().len(), ids.len());
    ok_stdout(strata(&["dump", local.path().to_str().unwrap()]), "dump visible")
}

#[test]
fn sigkill_during_the_job_never_loses_or_doubles_samples() {
    // Two replicas of 8h of 2h blocks, uploaded as sidecars would.
    let src = tempfile::tempdir().unwrap();
    let g = strata(&[
        "gen",
        "--output",
        src.path().to_str().unwrap(),
        "--series",
        "300",
        "--duration",
        "8h",
        "--replicas",
        "2",
        "--replica-label",
        "replica",
        "--label",
        "cluster=eu1",
        "--scrape-interval",
        "30s",
    ]);
    assert!(g.status.success());
    // Split the blocks by replica, to upload each with its external labels.
    let split = tempfile::tempdir().unwrap();
    for b in list_blocks(src.path()).unwrap() {
        let r = Block::open(&b.path).unwrap().meta.external_labels()["replica"].clone();
        copy_dir(&b.path, &split.path().join(&r).join(b.path.file_name().unwrap()));
    }
    let make = || {
        let f = Fixture::filesystem();
        for r in ["r0", "r1"] {
            let label = format!("replica={r}");
            let out = f.strata(&[
                "upload",
                split.path().join(r).to_str().unwrap(),
                "--label",
                "cluster=eu1",
                "--label",
                &label,
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        f
    };
    let reference = make();
    let want = visible_dump(&reference);
    let data = tempfile::tempdir().unwrap();
    let t0 = Instant::now();
    let out = strata_cmd().args(run_args(&reference, data.path())).output().unwrap();
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let layout = |f: &Fixture| {
        let mut v: Vec<(i64, i64)> = visible(&f.config).iter().map(|m| (m.min_time, m.max_time)).collect();
        v.sort();
        v
    };
    let goal = layout(&reference);
    assert_eq!(visible_dump(&reference), want);

    for i in 0..8 {
        let f = make();
        let delay = took.mul_f64(0.1 + 1.0 * i as f64 / 8.0);
        let mut child =
            strata_cmd().args(run_args(&f, data.path())).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // No visible block shares a source with another: nothing a querier double-counts.
        let vis = visible(&f.config);
        let mut seen = std::collections::BTreeSet::new();
        for m in &vis {
            for s in &m.compaction.sources {
                assert!(seen.insert(*s), "kill {i} ({delay:?}): source {s} visible twice");
            }
        }
        // And every sample is still visible.
        assert_eq!(visible_dump(&f), want, "kill {i} ({delay:?}) lost samples");
        // The next run converges to the same layout.
        let out = strata_cmd().args(run_args(&f, data.path())).output().unwrap();
        assert!(out.status.success(), "rerun after kill {i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(layout(&f), goal, "kill {i}: layout differs");
        assert_eq!(visible_dump(&f), want);
    }
}

#[test]
fn the_job_downsamples_after_compacting() {
    let f = Fixture::filesystem();
    let src = tempfile::tempdir().unwrap();
    gen(src.path(), &SIXTEEN_DAYS);
    let out = f.strata(&["upload", src.path().to_str().unwrap(), "--label", "cluster=eu1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let data = tempfile::tempdir().unwrap();
    let out = strata_cmd().args(run_args(&f, data.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let vis = visible(&f.config);
    let res: std::collections::BTreeSet<i64> = vis.iter().map(|m| m.resolution()).collect();
    assert_eq!(res, [0, 300_000, 3_600_000].into(), "{err}");
    // Downsampled blocks keep the raw block's time range and sources.
    let raw14 = vis
        .iter()
        .find(|m| m.resolution() == 0 && m.max_time - m.min_time == 14 * 86_400_000)
        .expect("14-day raw block");
    for r in [300_000, 3_600_000] {
        let d = vis.iter().find(|m| m.resolution() == r).unwrap();
        assert_eq!(
            (d.min_time, d.max_time, &d.compaction.sources),
            (raw14.min_time, raw14.max_time, &raw14.compaction.sources)
        );
        assert_eq!(d.thanos.as_ref().unwrap().labels["cluster"], "eu1");
    }
    // The next run has nothing to do.
    let out = strata_cmd().args(run_args(&f, data.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("compactions=0 downsampled=0"), "{err}");
}

#[test]
fn instances_share_a_bucket_through_relabel_selectors() {
    let f = Fixture::filesystem();
    for cluster in ["a", "b"] {
        for r in ["A", "B"] {
            let tmp = tempfile::tempdir().unwrap();
            replica_copy(tmp.path());
            let (c, l) = (format!("cluster={cluster}"), format!("replica={r}"));
            let out = f.strata(&["upload", tmp.path().to_str().unwrap(), "--label", &c, "--label", &l]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let data = tempfile::tempdir().unwrap();
    let run_with = |extra: &[&str]| {
        let mut args = run_args(&f, data.path());
        args.extend(extra.iter().map(|s| s.to_string()));
        let out = strata_cmd().args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    let clusters = || -> Vec<(String, u32)> {
        let mut v: Vec<(String, u32)> = visible(&f.config)
            .iter()
            .map(|m| (m.thanos.as_ref().unwrap().labels["cluster"].clone(), m.compaction.level))
            .collect();
        v.sort();
        v
    };
    // A time range that ends before the data: nothing is touched.
    let err = run_with(&["--max-time", "1000"]);
    assert!(err.contains("compactions=0"), "{err}");
    // Instance 1 owns cluster a only.
    let err = run_with(&["--selector.relabel-config", "- action: keep\n  source_labels: [cluster]\n  regex: a\n"]);
    assert!(err.contains("compactions=1"), "{err}");
    assert_eq!(clusters(), vec![("a".into(), 2), ("b".into(), 1), ("b".into(), 1)]);
    // Instance 2 owns everything but a.
    let err = run_with(&["--selector.relabel-config", "- action: drop\n  source_labels: [cluster]\n  regex: a\n"]);
    assert!(err.contains("compactions=1"), "{err}");
    assert_eq!(clusters(), vec![("a".into(), 2), ("b".into(), 2)]);
}

/// A loopback TCP proxy in front of `target` that answers every `fail_every`-th new
/// connection with `503 Slow Down` (after reading the request head) and passes the
/// others through untouched. Stops when the test process ends.
fn faulty_proxy(target: u16, fail_every: usize) -> u16 {
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut client) = conn else { continue };
            std::thread::spawn(move || {
                if n % fail_every == fail_every - 1 {
                    // Read the request head, then refuse it the way S3 throttles.
                    let mut head = Vec::new();
                    let mut b = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && client.read(&mut b).map(|n| n == 1).unwrap_or(false) {
                        head.push(b[0]);
                    }
                    let body =
                        "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
                    let _ = write!(client, "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    return;
                }
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)) else { return };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let up = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c2, &mut s2);
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let _ = std::io::copy(&mut server, &mut client);
                let _ = client.shutdown(std::net::Shutdown::Write);
                let _ = up.join();
            });
        }
    });
    port
}

#[test]
fn transient_s3_errors_are_retried_and_the_iteration_completes() {
    let f = Fixture::s3();
    upload_replicas(&f);
    let crate::bucket::Backend::S3 { moto, .. } = &f.backend else { unreachable!() };
    // The same bucket through a proxy that throttles every third new connection.
    let port = faulty_proxy(moto.port, 3);
    let cfg = std::fs::read_to_string(&f.config)
        .unwrap()
        .replace(&format!("127.0.0.1:{}", moto.port), &format!("127.0.0.1:{port}"));
    let faulty = f.dir.path().join("faulty.yaml");
    std::fs::write(&faulty, cfg).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&f, data.path());
    let i = args.iter().position(|a| a == "--objstore.config-file").unwrap();
    args[i + 1] = faulty.to_str().unwrap().to_string();
    let out = strata_cmd().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("compactions=1"), "{err}");
    let retried: u64 = err
        .split("retried_failures=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(retried > 0, "no request failed through the proxy:\n{err}");
    // The outcome is the same as without faults.
    assert_eq!(ls(&f).len(), 1);
    let local = tempfile::tempdir().unwrap();
    let d = f.strata(&["download", local.path().to_str().unwrap(), "--min-time", "0", "--max-time", "9999999999999"]);
    assert!(d.status.success());
    std::fs::create_dir_all(local.path().join("wal")).unwrap();
    assert_same_samples(
        &promtool_dump(local.path(), &[]),
        &std::fs::read_to_string(testdata("small.dump.txt")).unwrap(),
        "through a faulty proxy",
    );
}

#[test]
fn halt_on_error_stops_at_a_bad_block_as_thanos_does() {
    let f = Fixture::filesystem();
    for r in ["A", "B"] {
        let tmp = tempfile::tempdir().unwrap();
        replica_copy(tmp.path());
        if r == "B" {
            let b = list_blocks(tmp.path()).unwrap()[0].path.join("chunks/000001");
            let mut bytes = std::fs::read(&b).unwrap();
            bytes[20] ^= 0x40;
            std::fs::write(&b, bytes).unwrap();
        }
        let l = format!("replica={r}");
        assert!(f
            .strata(&["upload", tmp.path().to_str().unwrap(), "--label", "cluster=eu1", "--label", &l])
            .status
            .success());
    }
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&f, data.path());
    args.extend(["--halt-on-error".to_string(), "--log.format".to_string(), "json".to_string()]);
    let out = strata_cmd().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("halting") && err.contains("checksum mismatch"), "{err}");
    // JSON logs, one object per line.
    for line in err.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        assert!(v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(), "{line}");
    }
    // Nothing was marked or deleted.
    let wide = String::from_utf8_lossy(&f.strata(&["ls", "-o", "wide"]).stdout).to_string();
    assert_eq!(ls(&f).len(), 2);
    assert!(!wide.contains("no-compact") && !wide.contains("deletion"), "{wide}");
}

#[test]
fn an_unreachable_bucket_fails_a_one_shot_run_instead_of_hanging() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bucket.yaml");
    std::fs::write(&cfg, format!("type: S3\nconfig:\n  bucket: b\n  endpoint: 127.0.0.1:{port}\n  insecure: true\n  access_key: k\n  secret_key: very-secret\n  max_retries: 1\n")).unwrap();
    let start = Instant::now();
    let out = strata_cmd()
        .args([
            "run",
            "--objstore.config-file",
            cfg.to_str().unwrap(),
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
            "--http-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("compactor stopped") && err.contains("unreachable"), "{err}");
    assert!(!err.contains("very-secret"));
    assert!(start.elapsed() < Duration::from_secs(60), "took {:?}", start.elapsed());
}

#[test]
fn sources_left_unmarked_by_a_crash_are_garbage_collected_not_compacted_again() {
    let f = Fixture::filesystem();
    upload_replicas(&f);
    let sources = ls(&f);
    let data = tempfile::tempdir().unwrap();
    // Keep marked blocks around (48h delete delay), then take the marks away again: the
    // state a crash between uploading the output and marking its sources leaves.
    let mut args = run_args(&f, data.path());
    let i = args.iter().position(|a| a == "--delete-delay").unwrap();
    args[i + 1] = "48h".into();
    let out = strata_cmd().args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for id in &sources {
        let o = f.strata(&["mark", "--id", id, "--marker", "deletion-mark.json", "--remove"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let out = strata_cmd().args(&args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("compactions=0") && err.contains("garbage_collected=2"), "{err}");
}

/// Generates `series` series over `duration` in 2h blocks, two HA replicas, and uploads
/// them once per cluster (`cluster=<c>`, `replica=r0|r1`): per cluster, vertical plans
/// merge the replicas, then leveled plans join the ranges.
fn upload_generated(f: &Fixture, series: u32, duration: &str, clusters: &[&str]) {
    let src = tempfile::tempdir().unwrap();
    let g = strata(&[
        "gen",
        "--output",
        src.path().to_str().unwrap(),
        "--series",
        &series.to_string(),
        "--duration",
        duration,
        "--replicas",
        "2",
        "--replica-label",
        "replica",
        "--label",
        "cluster=x",
        "--scrape-interval",
        "30s",
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let split = tempfile::tempdir().unwrap();
    for b in list_blocks(src.path()).unwrap() {
        let r = Block::open(&b.path).unwrap().meta.external_labels()["replica"].clone();
        copy_dir(&b.path, &split.path().join(&r).join(b.path.file_name().unwrap()));
    }
    for c in clusters {
        for r in ["r0", "r1"] {
            let (cl, rl) = (format!("cluster={c}"), format!("replica={r}"));
            let dir = split.path().join(r);
            // Each cluster's copy needs its own ULIDs.
            let copy = tempfile::tempdir().unwrap();
            for b in list_blocks(&dir).unwrap() {
                let mut meta = Block::open(&b.path).unwrap().meta;
                let ulid = ulid::Ulid::new();
                let dst = copy.path().join(ulid.to_string());
                copy_dir(&b.path, &dst);
                meta.ulid = ulid;
                meta.compaction.sources = vec![ulid];
                std::fs::write(dst.join("meta.json"), meta.to_json()).unwrap();
            }
            let out = f.strata(&["upload", copy.path().to_str().unwrap(), "--label", &cl, "--label", &rl]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
    }
}

/// `msg` of a logfmt or JSON line.
fn msg_of(line: &str) -> String {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
        return v["msg"].as_str().unwrap_or("").to_string();
    }
    field_of(line, "msg")
}

/// A logfmt field's value (quotes removed), or a JSON field as text.
fn field_of(line: &str, key: &str) -> String {
    if line.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        return match &v[key] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        };
    }
    let pat = format!("{key}=");
    let Some(i) = line.find(&pat).filter(|&i| i == 0 || line.as_bytes()[i - 1] == b' ') else { return String::new() };
    let rest = &line[i + pat.len()..];
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut esc = false;
        for c in q.chars() {
            match (esc, c) {
                (true, c) => {
                    out.push(c);
                    esc = false
                }
                (false, '\\') => esc = true,
                (false, '"') => break,
                (false, c) => out.push(c),
            }
        }
        out
    } else {
        rest.split(' ').next().unwrap_or("").to_string()
    }
}

#[test]
fn events_stream_while_the_iteration_runs_in_logfmt_and_json() {
    for format in ["logfmt", "json"] {
        let f = Fixture::filesystem();
        upload_generated(&f, 2000, "8h", &["a", "b"]);
        let data = tempfile::tempdir().unwrap();
        let mut args = run_args(&f, data.path());
        args.extend(["--log.format".to_string(), format.to_string()]);
        let t0 = Instant::now();
        let mut child = strata_cmd().args(&args).stderr(Stdio::piped()).spawn().unwrap();
        // Each line with the moment it arrived.
        let lines: Vec<(Duration, String)> =
            BufReader::new(child.stderr.take().unwrap()).lines().map(|l| (t0.elapsed(), l.unwrap())).collect();
        let status = child.wait().unwrap();
        let all: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
        let text = all.join("\n");
        assert!(status.success(), "{text}");
        for l in &all {
            if format == "json" {
                let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}"));
                assert!(v["ts"].is_string() && v["level"].is_string() && v["msg"].is_string(), "{l}");
            } else {
                assert!(l.starts_with("ts=") && l.contains(" level=") && l.contains(" msg="), "not logfmt: {l}");
            }
        }
        let pos = |m: &str| all.iter().position(|l| msg_of(l) == m).unwrap_or_else(|| panic!("no {m:?} in\n{text}"));
        let (first_plan, first_done, done) =
            (pos("compaction started"), pos("compacted, sources marked for deletion"), pos("iteration done"));
        assert!(first_plan < first_done && first_done < done, "{text}");
        // The first plan's events were read well before the iteration ended...
        let (t_plan, t_done) = (lines[first_done].0, lines[done].0);
        assert!(
            t_done > t_plan + Duration::from_millis(300),
            "plan done at {t_plan:?}, iteration at {t_done:?}:\n{text}"
        );
        // ...and say so themselves.
        let (ts_plan, ts_done) = (field_of(all[first_plan], "ts"), field_of(all[done], "ts"));
        assert!(ts_plan < ts_done, "timestamps {ts_plan} and {ts_done}:\n{text}");
        let started = all.iter().filter(|l| msg_of(l) == "compaction started").count();
        assert!(started >= 4, "{text}");
        // Plan events carry group, sources, bytes and series; transfers their throughput.
        let p = all[first_plan];
        for k in ["group", "sources", "bytes", "series"] {
            assert!(!field_of(p, k).is_empty(), "{k} missing in {p}");
        }
        let d = all.iter().find(|l| msg_of(l) == "block downloaded").expect("download events");
        for k in ["block", "bytes", "duration_ms", "mib_per_s"] {
            assert!(!field_of(d, k).is_empty(), "{k} missing in {d}");
        }
        assert!(all.iter().any(|l| msg_of(l) == "block uploaded"), "{text}");
        // Each output says how long its merge took, then how long its verification took
        // (while its chunks went up); it is a block in the bucket only after that.
        let merged = pos("merged");
        assert!(first_plan < merged && merged < first_done, "{text}");
        for k in ["group", "output", "series", "samples", "merge_ms"] {
            assert!(!field_of(all[merged], k).is_empty(), "{k} missing in {}", all[merged]);
        }
        let output = field_of(all[merged], "output");
        let of = |m: &str, key: &str| {
            all.iter()
                .position(|l| msg_of(l) == m && field_of(l, key) == output)
                .unwrap_or_else(|| panic!("no {m:?} for {output} in\n{text}"))
        };
        let (verified, uploaded) = (of("verified", "output"), of("block uploaded", "block"));
        assert!(merged < verified && verified < uploaded, "{text}");
        assert!(field_of(all[verified], "verify_ms").parse::<u64>().is_ok(), "{}", all[verified]);
        assert!(field_of(all[done], "compactions").parse::<u32>().unwrap() >= 4, "{text}");
    }
}

/// Unmounts a tmpfs when the test ends, however it ends.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// Every object of a filesystem bucket with its bytes.
fn bucket_objects(f: &Fixture) -> std::collections::BTreeMap<String, Vec<u8>> {
    let crate::bucket::Backend::Filesystem { root } = &f.backend else { unreachable!() };
    walk(root)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| (p.strip_prefix(root).unwrap().display().to_string(), std::fs::read(&p).unwrap()))
        .collect()
}

#[test]
fn a_data_dir_too_small_for_a_plan_skips_it_fails_the_run_and_leaves_the_bucket_alone() {
    let f = Fixture::filesystem();
    upload_generated(&f, 300, "2h", &["a"]);
    let before = bucket_objects(&f);
    let bytes: usize = before.values().map(|v| v.len()).sum();
    assert!(bytes > 256 << 10, "test data too small for the tmpfs: {bytes} bytes");
    let mnt = tempfile::tempdir().unwrap();
    let m = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=128k", "tmpfs", mnt.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(m.status.success(), "mount: {}", String::from_utf8_lossy(&m.stderr));
    let _guard = Unmount(mnt.path().to_path_buf());
    let data = mnt.path().join("data");
    let out = strata_cmd().args(run_args(&f, &data)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    let skipped: Vec<&str> = err.lines().filter(|l| l.contains("not enough free space")).collect();
    assert_eq!(skipped.len(), 1, "{err}");
    let line = skipped[0];
    assert!(line.contains(&format!("dir={}", data.display())), "{line}");
    let needed: u64 = field_of(line, "needed_bytes").parse().unwrap();
    let available: u64 = field_of(line, "available_bytes").parse().unwrap();
    assert!(needed > available && available <= 128 << 10, "{line}");
    assert!(!field_of(line, "group").is_empty() && !field_of(line, "sources").is_empty(), "{line}");
    // One clear final line says the run failed and why.
    let last = err.lines().rev().find(|l| !l.contains("bucket requests")).unwrap();
    assert!(last.contains("level=error") && last.contains("not enough disk space"), "{err}");
    assert!(!err.contains("bucket: "), "a local problem reported as a bucket one:\n{err}");
    // Nothing was marked, uploaded or deleted.
    assert_eq!(bucket_objects(&f), before, "the bucket changed");
    // With room, the same run compacts everything.
    let roomy = tempfile::tempdir().unwrap();
    let out = strata_cmd().args(run_args(&f, roomy.path())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("compactions=1"), "{err}");
    assert_eq!(ls(&f).len(), 1);
}

/// The sum of a metric's samples whose line starts with `name` followed by `{` or ` `.
fn metric_exact(body: &str, name: &str) -> f64 {
    body.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with('{') || r.starts_with(' ')))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[test]
fn todo_gauges_fall_and_progress_gauges_move_while_the_backlog_is_worked_off() {
    let f = Fixture::filesystem();
    upload_generated(&f, 2000, "8h", &["a", "b"]);
    let data = tempfile::tempdir().unwrap();
    let mut args = run_args(&f, data.path());
    args.extend(["--wait", "--wait-interval", "1h", "--compact.progress-interval", "1s"].map(String::from));
    let (mut child, addr) = start_server(strata_cmd().args(&args), "address=");
    let start = Instant::now();
    // (todo compactions, todo blocks, plans running, bytes done, bytes total, series done, series total)
    let mut seen: Vec<[f64; 7]> = Vec::new();
    loop {
        let b = http_get(&addr, "/metrics").unwrap_or_default();
        if !b.contains("thanos_compact_todo_compactions") {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        seen.push([
            metric_exact(&b, "thanos_compact_todo_compactions"),
            metric_exact(&b, "thanos_compact_todo_compaction_blocks"),
            metric_exact(&b, "strata_compact_plans_running"),
            metric_exact(&b, "strata_compact_progress_bytes_done"),
            metric_exact(&b, "strata_compact_progress_bytes"),
            metric_exact(&b, "strata_compact_progress_series_done"),
            metric_exact(&b, "strata_compact_progress_series"),
        ]);
        if metric_exact(&b, "thanos_compact_iterations_total") >= 1.0 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(300), "no iteration finished");
        std::thread::sleep(Duration::from_millis(30));
    }
    let _ = std::process::Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let _ = child.wait();
    let table: Vec<String> = seen.iter().map(|s| format!("{s:?}")).collect();
    let table = table.join("\n");
    // The backlog: positive at the first sync, then falling to zero, never rising.
    assert!(seen[0][0] >= 4.0 && seen[0][1] >= 8.0, "{table}");
    assert_eq!(seen.last().unwrap()[0], 0.0, "{table}");
    assert!(seen.windows(2).all(|w| w[1][0] <= w[0][0]), "todo compactions rose:\n{table}");
    let distinct_todo: std::collections::BTreeSet<u64> = seen.iter().map(|s| s[0] as u64).collect();
    assert!(distinct_todo.len() >= 3, "todo compactions did not fall step by step:\n{table}");
    // Progress of running plans: totals set while a plan runs, done moving toward them.
    let running: Vec<&[f64; 7]> = seen.iter().filter(|s| s[2] >= 1.0).collect();
    assert!(!running.is_empty(), "never saw a plan running:\n{table}");
    assert!(running.iter().all(|s| s[4] > 0.0 && s[6] > 0.0 && s[3] <= s[4] && s[5] <= s[6]), "{table}");
    let progress: std::collections::BTreeSet<(u64, u64)> =
        running.iter().map(|s| (s[3] as u64, s[5] as u64)).filter(|p| *p != (0, 0)).collect();
    assert!(progress.len() >= 2, "progress gauges did not move:\n{table}");
    // When the iteration is over, nothing is running.
    assert_eq!(seen.last().unwrap()[2], 0.0, "{table}");
}
