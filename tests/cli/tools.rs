//! `strata rewrite`, `strata bucket rewrite|replicate|retention|downsample` against real
//! buckets (a FILESYSTEM bucket and S3 on moto_server) and promtool: deletions checked
//! sample by sample against `promtool tsdb dump` of the input, relabel merges against
//! the expected union, dry runs against the bucket's objects, crash safety with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::bucket::{strata_cmd, Fixture};
use crate::*;
use strata::block::list_blocks;
use strata::format::meta::BlockMeta;

/// 2h-aligned start of the generated data, in seconds.
const T0: i64 = 1_700_006_400;
/// The interval the deletion tests delete, in ms.
const DEL_MIN: i64 = (T0 + 600) * 1000;
const DEL_MAX: i64 = (T0 + 1200) * 1000;

/// One block made by promtool from OpenMetrics: `m` for jobs x and y on instances a and
/// b over one hour. Instance b scrapes at other intervals, so dropping the instance
/// label makes series whose samples partly share timestamps (with equal values: the
/// value is the timestamp, plus 100000 for job y).
fn make_input() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut om = String::from("# TYPE m gauge\n");
    for (job, base) in [("x", 0), ("y", 100_000)] {
        for (inst, step, from) in [("a", 30, 0), ("b", 20, 1800)] {
            let mut t = from;
            while t < 3600 {
                om.push_str(&format!("m{{instance=\"{inst}\",job=\"{job}\"}} {} {}\n", base + t, T0 + t));
                t += step;
            }
        }
    }
    om.push_str("# EOF\n");
    let om_path = dir.path().join("input.om");
    std::fs::write(&om_path, om).unwrap();
    let data = dir.path().join("data");
    let out =
        promtool(&["tsdb", "create-blocks-from", "openmetrics", om_path.to_str().unwrap(), data.to_str().unwrap()]);
    assert!(out.status.success(), "promtool: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(list_blocks(&data).unwrap().len(), 1);
    std::fs::create_dir_all(data.join("wal")).unwrap();
    dir
}

fn data(d: &tempfile::TempDir) -> PathBuf {
    d.path().join("data")
}

/// The dump minus the samples of `job="x"` in [DEL_MIN, DEL_MAX].
fn without_deleted(dump: &Parsed) -> Parsed {
    dump.iter()
        .map(|(l, s)| {
            let keep: Vec<_> = if l.contains("job=\"x\"") {
                s.iter().copied().filter(|(t, _)| *t < DEL_MIN || *t > DEL_MAX).collect()
            } else {
                s.clone()
            };
            (l.clone(), keep)
        })
        .filter(|(_, s)| !s.is_empty())
        .collect()
}

/// The dump with the instance label dropped: colliding series become one, one sample
/// per timestamp.
fn without_instance(dump: &Parsed) -> Parsed {
    let mut out: BTreeMap<String, BTreeMap<i64, u64>> = BTreeMap::new();
    for (l, s) in dump {
        let i = l.find(", instance=\"").expect("instance label");
        let end = l[i + 12..].find('"').unwrap() + i + 13;
        let key = format!("{}{}", &l[..i], &l[end..]);
        let m = out.entry(key).or_default();
        for (t, v) in s {
            let prev = m.insert(*t, *v);
            assert!(prev.is_none_or(|p| p == *v), "the fixture gives equal values at shared timestamps");
        }
    }
    out.into_iter().map(|(k, m)| (k, m.into_iter().collect())).collect()
}

fn dump_of(dir: &Path) -> Parsed {
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    parse_dump(&promtool_dump(dir, &[]))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

const DELETE_X: &str = "- matchers: '{job=\"x\"}'\n  intervals:\n  - mint: 1700007000000\n    maxt: 1700007600000\n";
const DROP_INSTANCE: &str = "- action: labeldrop\n  regex: instance\n";

fn metas(f: &Fixture) -> Vec<BlockMeta> {
    let (o, _) = f.ok(&["ls", "-o", "json"]);
    o.lines().map(|l| BlockMeta::parse(l.as_bytes()).unwrap()).collect()
}

fn download(f: &Fixture, id: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join(id);
    std::fs::create_dir_all(d.path()).unwrap();
    f.ok(&["download", d.path().to_str().unwrap(), "--min-time", "0", "--max-time", "9999999999999"]);
    assert!(dir.is_dir(), "{id} was not downloaded");
    // Keep only the block asked for.
    for b in list_blocks(d.path()).unwrap() {
        if b.ulid.to_string() != id {
            std::fs::remove_dir_all(&b.path).unwrap();
        }
    }
    d
}

/// Modification time of an object (filesystem) or its position in moto's request log
/// (S3): what tells which was written first.
fn written_order(f: &Fixture, keys: &[String]) -> Vec<u128> {
    match &f.backend {
        crate::bucket::Backend::Filesystem { root } => keys
            .iter()
            .map(|k| {
                std::fs::metadata(root.join("tenant-a").join(k))
                    .unwrap()
                    .modified()
                    .unwrap()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos()
            })
            .collect(),
        crate::bucket::Backend::S3 { moto, bucket } => {
            let log = moto.requests();
            keys.iter()
                .map(|k| {
                    let path = format!("/{bucket}/tenant-a/{k}");
                    log.iter().rposition(|(m, p)| m == "PUT" && *p == path).expect("a PUT of the key") as u128
                })
                .collect()
        }
    }
}

/// The bucket rewrite body, on any backend.
fn bucket_rewrite(f: &Fixture) {
    let input = make_input();
    let want = dump_of(&data(&input));
    f.ok(&["upload", data(&input).to_str().unwrap(), "--label", "cluster=eu1"]);
    let orig = metas(f)[0].clone();
    let id = orig.ulid.to_string();
    let cfg = f.dir.path();
    let del = write(cfg, "delete.yaml", DELETE_X);

    // A dry run counts and changes nothing.
    let before = f.keys();
    let (o, e) = f.ok(&["rewrite", "--id", &id, "--rewrite.to-delete-config-file", del.to_str().unwrap()]);
    let removed =
        want.values().map(|s| s.len()).sum::<usize>() - without_deleted(&want).values().map(|s| s.len()).sum::<usize>();
    assert!(removed > 0);
    assert!(o.contains(&format!("{id}: would remove 0 of 4 series")), "{o}");
    assert!(o.contains(&format!("and {removed} of ")), "{o}");
    assert!(e.contains("dry run"), "{e}");
    assert_eq!(f.keys(), before, "a dry run wrote to the bucket");

    // The rewrite: a new block with exactly the input minus the deleted samples.
    let (o, _) = f.ok(&[
        "rewrite",
        "--id",
        &id,
        "--rewrite.to-delete-config-file",
        del.to_str().unwrap(),
        "--no-dry-run",
        "--delete-blocks",
    ]);
    assert!(o.contains(&format!("and {removed} of ")), "the dry run's count is the rewrite's: {o}");
    let all = metas(f);
    assert_eq!(all.len(), 2);
    let new = all.iter().find(|m| m.ulid != orig.ulid).unwrap().clone();
    let new_id = new.ulid.to_string();
    let t = new.thanos.clone().unwrap();
    assert_eq!(new.compaction.sources, vec![new.ulid]);
    assert_eq!(t.source, "bucket.rewrite");
    assert_eq!(t.labels, orig.thanos.as_ref().unwrap().labels);
    assert_eq!(
        t.rewrites.clone().unwrap(),
        serde_json::json!([{
            "sources": [id],
            "deletions_applied": [{"matchers": ["job=\"x\""], "intervals": [{"Mint": DEL_MIN, "Maxt": DEL_MAX}]}]
        }])
    );
    assert_eq!((new.min_time, new.max_time), (orig.min_time, orig.max_time));
    let got = download(f, &new_id);
    assert_eq!(dump_of(got.path()), without_deleted(&want), "promtool dump of the rewritten block");
    // The original is marked, after the new block's meta.json was written.
    assert!(f.get(&format!("{id}/deletion-mark.json")).is_some(), "--delete-blocks did not mark {id}");
    let order = written_order(f, &[format!("{new_id}/meta.json"), format!("{id}/deletion-mark.json")]);
    assert!(order[0] <= order[1], "the original was marked before the new block was complete: {order:?}");
    for entry in &t.files {
        assert!(f.get(&format!("{new_id}/{}", entry.rel_path)).is_some() || entry.rel_path == "meta.json");
    }

    // A relabel that drops `instance`: the colliding series merge into their union.
    let rl = write(cfg, "relabel.yaml", DROP_INSTANCE);
    let (o, _) =
        f.ok(&["rewrite", "--id", &new_id, "--rewrite.to-relabel-config-file", rl.to_str().unwrap(), "--no-dry-run"]);
    assert!(o.contains("removed 2 of 4 series (0 deleted, 0 dropped by relabel, 2 merged)"), "{o}");
    let third = metas(f).into_iter().find(|m| m.ulid != orig.ulid && m.ulid != new.ulid).unwrap();
    let rw = third.thanos.clone().unwrap().rewrites.unwrap();
    assert_eq!(rw.as_array().unwrap().len(), 2, "rewrites accumulate: {rw}");
    assert_eq!(rw[1]["relabels_applied"][0]["action"], "labeldrop");
    assert_eq!(rw[1]["sources"], serde_json::json!([new_id]));
    let got = download(f, &third.ulid.to_string());
    assert_eq!(dump_of(got.path()), without_instance(&without_deleted(&want)));
    // Without --delete-blocks the source stays unmarked.
    assert!(f.get(&format!("{new_id}/deletion-mark.json")).is_none());
}

#[test]
fn bucket_rewrite_deletes_and_relabels_in_a_filesystem_bucket() {
    bucket_rewrite(&Fixture::filesystem());
}

#[test]
fn bucket_rewrite_deletes_and_relabels_in_s3() {
    bucket_rewrite(&Fixture::s3());
}

#[test]
fn offline_rewrite_in_place_and_to_output() {
    let input = make_input();
    let want = dump_of(&data(&input));
    let d = data(&input);
    let orig = list_blocks(&d).unwrap()[0].clone();
    let del = write(input.path(), "delete.yaml", DELETE_X);
    // --output leaves the input alone.
    let out = tempfile::tempdir().unwrap();
    let o = ok_stdout(
        strata(&[
            "rewrite",
            d.to_str().unwrap(),
            "--rewrite.to-delete-config-file",
            del.to_str().unwrap(),
            "--no-dry-run",
            "--output",
            out.path().to_str().unwrap(),
        ]),
        "rewrite --output",
    );
    assert!(o.contains("rewritten into"), "{o}");
    assert_eq!(list_blocks(&d).unwrap(), vec![orig.clone()]);
    assert_eq!(dump_of(out.path()), without_deleted(&want));
    // In place: the original is replaced.
    let rl = write(input.path(), "relabel.yaml", DROP_INSTANCE);
    ok_stdout(
        strata(&[
            "rewrite",
            d.to_str().unwrap(),
            "--rewrite.to-relabel-config-file",
            rl.to_str().unwrap(),
            "--no-dry-run",
        ]),
        "rewrite in place",
    );
    let blocks = list_blocks(&d).unwrap();
    assert_eq!(blocks.len(), 1);
    assert_ne!(blocks[0].ulid, orig.ulid);
    assert_eq!(dump_of(&d), without_instance(&want));
    let v = strata(&["verify", d.to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

#[test]
fn sigkill_during_an_offline_rewrite_leaves_the_original_or_both_blocks() {
    // Enough data that the rewrite takes a while.
    let pristine = tempfile::tempdir().unwrap();
    let g = strata(&[
        "gen",
        "--output",
        pristine.path().to_str().unwrap(),
        "--series",
        "10000",
        "--duration",
        "2h",
        "--scrape-interval",
        "15s",
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let orig = list_blocks(pristine.path()).unwrap()[0].clone();
    let orig_index = std::fs::read(orig.path.join("index")).unwrap();
    let del = "- matchers: '{job=\"job-0\"}'\n  intervals:\n  - mint: 1700007000000\n    maxt: 1700008000000\n";
    let args = |dir: &Path| {
        vec![
            "rewrite".to_string(),
            dir.to_str().unwrap().to_string(),
            "--rewrite.to-delete-config".into(),
            del.into(),
            "--no-dry-run".into(),
        ]
    };
    // The whole run, timed; its output is what every complete new block must hold.
    let full = tempfile::tempdir().unwrap();
    copy_dir(pristine.path(), full.path());
    let start = Instant::now();
    ok_stdout(strata_cmd().args(args(full.path())).output().unwrap(), "full rewrite");
    let took = start.elapsed();
    let want = ok_stdout(strata(&["dump", full.path().to_str().unwrap()]), "dump");
    let mut states = BTreeSet::new();
    for pct in [5u32, 15, 30, 45, 60, 75, 85, 95, 110] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(pristine.path(), dir.path());
        let mut child = strata_cmd()
            .args(args(dir.path()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(took * pct / 100);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let blocks = list_blocks(dir.path()).unwrap();
        let has_orig = blocks.iter().any(|b| b.ulid == orig.ulid);
        let new: Vec<_> = blocks.iter().filter(|b| b.ulid != orig.ulid).collect();
        assert!(new.len() <= 1, "kill at {pct}%: {blocks:?}");
        assert!(has_orig || new.len() == 1, "kill at {pct}%: the original went before the new block was there");
        if has_orig {
            let o = dir.path().join(orig.ulid.to_string());
            assert_eq!(std::fs::read(o.join("index")).unwrap(), orig_index, "kill at {pct}%: the original changed");
        }
        if let Some(n) = new.first() {
            let v = strata(&["verify", n.path.to_str().unwrap()]);
            assert!(
                v.status.success(),
                "kill at {pct}%: the new block is incomplete: {}",
                String::from_utf8_lossy(&v.stdout)
            );
            assert_eq!(ok_stdout(strata(&["dump", n.path.to_str().unwrap()]), "dump new"), want, "kill at {pct}%");
        }
        states.insert((has_orig, new.len()));
    }
    // Which states the kills hit depends on the machine's load; the invariants above
    // hold in each. The uninterrupted run leaves the new block alone.
    eprintln!("rewrite took {took:?}; states (original there, new blocks): {states:?}");
    let left = list_blocks(full.path()).unwrap();
    assert!(left.len() == 1 && left[0].ulid != orig.ulid, "{left:?}");
}

#[test]
fn bad_configs_give_one_line_naming_the_file_and_the_entry() {
    let input = make_input();
    let d = data(&input);
    let bad_sel = write(input.path(), "del.yaml", "- matchers: '{job=\"x\"}'\n- matchers: '{job=x}'\n");
    let bad_action = write(input.path(), "rl.yaml", "- action: labeldrop\n  regex: a\n- action: explode\n");
    let f = Fixture::filesystem();
    let id = ulid::Ulid::new().to_string();
    for (flag, file, want) in [
        ("--rewrite.to-delete-config-file", &bad_sel, "deletion request 2: matchers"),
        ("--rewrite.to-relabel-config-file", &bad_action, "relabel config rule 2: unknown variant `explode`"),
    ] {
        for out in [
            strata(&["rewrite", d.to_str().unwrap(), flag, file.to_str().unwrap()]),
            f.strata(&["rewrite", "--id", &id, flag, file.to_str().unwrap()]),
        ] {
            let e = String::from_utf8_lossy(&out.stderr).to_string();
            assert_eq!(out.status.code(), Some(2), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
            assert!(e.contains(&format!("{flag} {}", file.display())) && e.contains(want), "{e}");
        }
    }
}

#[test]
fn replicate_copies_the_selected_blocks_once() {
    let from = Fixture::filesystem();
    let to = Fixture::s3();
    from.ok(&["upload", testdata("varied").to_str().unwrap(), "--label", "cluster=eu1"]);
    from.ok(&["upload", testdata("small").to_str().unwrap(), "--label", "cluster=us1"]);
    let varied: Vec<String> = list_blocks(&testdata("varied")).unwrap().iter().map(|b| b.ulid.to_string()).collect();
    from.ok(&["mark", "--id", &varied[0], "--marker", "deletion-mark.json", "--details", "test"]);
    from.ok(&["mark", "--id", &varied[1], "--marker", "no-compact-mark.json"]);
    let dest = to.config.to_str().unwrap().to_string();
    let repl = |extra: &[&str]| {
        let mut a = vec!["replicate", "--objstore-to.config-file", dest.as_str(), "--matcher", "cluster=\"eu1\""];
        a.extend_from_slice(extra);
        from.ok(&a)
    };
    let (o, e) = repl(&[]);
    assert!(e.contains("3 copied, 0 already there, 0 failed"), "{o}{e}");
    let got: BTreeSet<String> = metas(&to).iter().map(|m| m.ulid.to_string()).collect();
    assert_eq!(got, varied[1..].iter().cloned().collect::<BTreeSet<_>>());
    // Every object but the markers, with the same bytes.
    let (src_keys, dst_keys) = (from.keys(), to.keys());
    for (k, size) in &dst_keys {
        assert_eq!(src_keys.get(k), Some(size), "{k}");
        assert_eq!(from.get(k), to.get(k), "{k}");
        assert!(!k.ends_with("-mark.json"), "marker copied: {k}");
    }
    for (k, _) in src_keys
        .iter()
        .filter(|(k, _)| varied[1..].iter().any(|v| k.starts_with(v.as_str())) && !k.ends_with("-mark.json"))
    {
        assert!(dst_keys.contains_key(k), "{k} not copied");
    }
    // meta.json went last.
    for id in &varied[1..] {
        let reqs = to.requests_for(id).unwrap();
        let puts: Vec<&String> = reqs.iter().filter(|(m, _)| m == "PUT").map(|(_, k)| k).collect();
        assert_eq!(puts.last().map(|k| k.as_str()), Some("meta.json"), "{puts:?}");
    }
    // A second run copies nothing.
    let (_, e) = repl(&[]);
    assert!(e.contains("0 copied, 3 already there"), "{e}");
    assert_eq!(to.keys(), dst_keys);
    // --id and the time range select further.
    let (_, e) = from.ok(&[
        "replicate",
        "--objstore-to.config-file",
        &dest,
        "--id",
        &list_blocks(&testdata("small")).unwrap()[0].ulid.to_string(),
        "--compaction-max",
        "1",
    ]);
    assert!(e.contains("1 copied"), "{e}");
    let (_, e) = from.ok(&["replicate", "--objstore-to.config-file", &dest, "--min-time", "1800000000000"]);
    assert!(e.contains("0 copied, 0 already there"), "{e}");
}

#[test]
fn bucket_retention_marks_what_the_job_would() {
    let f = Fixture::filesystem();
    f.ok(&["upload", testdata("varied").to_str().unwrap(), "--label", "cluster=eu1"]);
    let ids: BTreeSet<String> = list_blocks(&testdata("varied")).unwrap().iter().map(|b| b.ulid.to_string()).collect();
    // Retention longer than the data's age (2023): nothing is marked.
    let (o, e) = f.ok(&["retention", "--consistency-delay", "0s", "--retention.resolution-raw", "36500d"]);
    assert!(e.contains("0 blocks marked"), "{o}{e}");
    // Without a retention, refused.
    let out = f.strata(&["retention"]);
    assert_eq!(out.status.code(), Some(2));
    // 1d: every raw block is expired and marked, nothing deleted.
    let (o, _) = f.ok(&["retention", "--consistency-delay", "0s", "--retention.resolution-raw", "1d"]);
    let marked: BTreeSet<String> = o.lines().map(|l| l.split(':').next().unwrap().to_string()).collect();
    assert_eq!(marked, ids);
    for id in &ids {
        assert!(f.get(&format!("{id}/deletion-mark.json")).is_some());
        assert!(f.get(&format!("{id}/meta.json")).is_some(), "retention deletes nothing itself");
    }
    // The job, given the same flags, marks exactly the same blocks (its own bucket).
    let g = Fixture::filesystem();
    g.ok(&["upload", testdata("varied").to_str().unwrap(), "--label", "cluster=eu1"]);
    let data = tempfile::tempdir().unwrap();
    let out = strata_cmd()
        .args([
            "run",
            "--objstore.config-file",
            g.config.to_str().unwrap(),
            "--data-dir",
            data.path().to_str().unwrap(),
            "--consistency-delay",
            "0s",
            "--retention.resolution-raw",
            "1d",
            "--downsampling.disable",
            "--http-address",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    // The job compacts first; whatever raw blocks it left are marked, as the tool's are.
    let live: Vec<BlockMeta> = metas(&g);
    assert!(!live.is_empty());
    for m in &live {
        assert!(g.get(&format!("{}/deletion-mark.json", m.ulid)).is_some(), "job left {} unmarked", m.ulid);
    }
}

#[test]
fn bucket_downsample_writes_what_the_job_would() {
    let src = tempfile::tempdir().unwrap();
    gen(src.path(), &SIXTEEN_DAYS);
    let run = |f: &Fixture, extra: &[&str]| {
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
                "--delete-delay",
                "0s",
                "--http-address",
                "127.0.0.1:0",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let shape = |f: &Fixture| -> BTreeSet<(i64, i64, i64, Vec<ulid::Ulid>)> {
        metas(f)
            .into_iter()
            .filter(|m| f.get(&format!("{}/deletion-mark.json", m.ulid)).is_none())
            .filter(|m| m.resolution() > 0)
            .map(|m| (m.resolution(), m.min_time, m.max_time, m.compaction.sources.clone()))
            .collect()
    };
    // The job: compaction and downsampling together.
    let job = Fixture::filesystem();
    job.ok(&["upload", src.path().to_str().unwrap(), "--label", "cluster=eu1"]);
    run(&job, &[]);
    // The tool: compaction without downsampling, then the downsampling phase alone.
    let tool = Fixture::filesystem();
    tool.ok(&["upload", src.path().to_str().unwrap(), "--label", "cluster=eu1"]);
    run(&tool, &["--downsampling.disable"]);
    assert!(shape(&tool).is_empty());
    let data = tempfile::tempdir().unwrap();
    let (o, e) = tool.ok(&["downsample", "--data-dir", data.path().to_str().unwrap(), "--consistency-delay", "0s"]);
    assert!(o.contains("downsampled to 5m0s") && o.contains("downsampled to 1h0m0s"), "{o}{e}");
    let want = shape(&job);
    assert_eq!(want.iter().map(|s| s.0).collect::<BTreeSet<_>>(), [300_000, 3_600_000].into());
    assert_eq!(shape(&tool), want);
    // Nothing left to do the second time.
    let (_, e) = tool.ok(&["downsample", "--data-dir", data.path().to_str().unwrap(), "--consistency-delay", "0s"]);
    assert!(e.contains("0 blocks written"), "{e}");
}

#[test]
fn sigkill_during_a_bucket_rewrite_leaves_the_original_or_both_complete_blocks() {
    let gen = tempfile::tempdir().unwrap();
    let g = strata(&["gen", "--output", gen.path().to_str().unwrap(), "--series", "10000", "--duration", "2h"]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let orig = list_blocks(gen.path()).unwrap()[0].ulid.to_string();
    let del = "- matchers: '{job=\"job-0\"}'\n  intervals:\n  - mint: 1700007000000\n    maxt: 1700008000000\n";
    let rewrite = |f: &Fixture| {
        let mut c = strata_cmd();
        c.args([
            "bucket",
            "rewrite",
            "--id",
            &orig,
            "--rewrite.to-delete-config",
            del,
            "--no-dry-run",
            "--delete-blocks",
        ])
        .arg("--objstore.config-file")
        .arg(&f.config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    // A whole run, timed, on its own bucket.
    let full = Fixture::filesystem();
    full.ok(&["upload", gen.path().to_str().unwrap(), "--label", "cluster=eu1"]);
    let start = Instant::now();
    assert!(rewrite(&full).status().unwrap().success());
    let took = start.elapsed();
    let mut states = BTreeSet::new();
    for pct in [10u32, 30, 50, 70, 90, 120] {
        let f = Fixture::filesystem();
        f.ok(&["upload", gen.path().to_str().unwrap(), "--label", "cluster=eu1"]);
        let mut child = rewrite(&f).spawn().unwrap();
        std::thread::sleep(took * pct / 100);
        let _ = child.kill();
        let _ = child.wait();
        let ids: Vec<String> = metas(&f).iter().map(|m| m.ulid.to_string()).collect();
        assert!(ids.contains(&orig), "kill at {pct}%: the original's meta.json is gone");
        let marked = f.get(&format!("{orig}/deletion-mark.json")).is_some();
        let new: Vec<&String> = ids.iter().filter(|i| **i != orig).collect();
        assert!(new.len() <= 1, "kill at {pct}%: {ids:?}");
        assert!(!marked || new.len() == 1, "kill at {pct}%: the original was marked without a new block");
        if let Some(n) = new.first() {
            // A new block with a meta.json is complete: every object there, and it verifies.
            let (o, e) = f.ok(&["verify", "--id", n]);
            assert!(e.contains("1 blocks ok"), "kill at {pct}%: {o}{e}");
        }
        states.insert((new.len(), marked));
    }
    // Which states the kills hit depends on the machine's load; the invariants above
    // hold in each. The uninterrupted run ends with both blocks, the original marked.
    eprintln!("bucket rewrite took {took:?}; states (new blocks, original marked): {states:?}");
    assert_eq!(metas(&full).len(), 2);
    assert!(full.get(&format!("{orig}/deletion-mark.json")).is_some());
}
