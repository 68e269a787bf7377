//! `strata compact` on promtool-made blocks: the compacted directory must dump exactly
//! like the input under promtool, for adjacent and overlapping blocks and for HA
//! replicas under both deduplication functions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::*;
use strata::block::{list_blocks, Block};
use strata::format::meta::{BlockMeta, ThanosMeta};

/// Writes OpenMetrics text and lets promtool make blocks from it in `dir`.
fn promtool_blocks(om: &str, dir: &Path) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), om).unwrap();
    let out =
        promtool(&["tsdb", "create-blocks-from", "openmetrics", f.path().to_str().unwrap(), dir.to_str().unwrap()]);
    assert!(out.status.success(), "promtool create-blocks-from: {}", String::from_utf8_lossy(&out.stderr));
    for junk in ["wal", "chunks_head"] {
        let _ = std::fs::remove_dir_all(dir.join(junk));
    }
}

/// Copies a block under `parent` with a new ULID and lets `edit` change its meta.
fn clone_block(src: &Path, parent: &Path, edit: impl FnOnce(&mut BlockMeta)) -> PathBuf {
    let mut meta = Block::open(src).unwrap().meta;
    let ulid = ulid::Ulid::new();
    let dst = parent.join(ulid.to_string());
    copy_dir(src, &dst);
    meta.ulid = ulid;
    meta.compaction.sources = vec![ulid];
    edit(&mut meta);
    std::fs::write(dst.join("meta.json"), meta.to_json()).unwrap();
    dst
}

fn with_labels<'a>(labels: &'a [(&'a str, &'a str)]) -> impl Fn(&mut BlockMeta) + 'a {
    move |m: &mut BlockMeta| {
        m.thanos = Some(ThanosMeta {
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            source: "sidecar".into(),
            ..Default::default()
        });
    }
}

/// Adds two small promtool-made blocks a day after `varied`'s data, as a live system
/// would have: the planner never compacts the newest block, and a range counts as
/// complete only when it ends before the last remaining block starts.
fn add_later_block(dir: &Path, edit: impl Fn(&mut BlockMeta)) {
    let tmp = tempfile::tempdir().unwrap();
    promtool_blocks("# TYPE later gauge\nlater 1 1700110000\nlater 2 1700117300\n# EOF\n", tmp.path());
    for b in list_blocks(tmp.path()).unwrap() {
        clone_block(&b.path, dir, &edit);
    }
}

fn dump_dir(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("wal")).unwrap();
    promtool_dump(dir, &[])
}

fn compact(args: &[&str]) -> Output {
    let mut a = vec!["compact", "--quiet"];
    a.extend_from_slice(args);
    strata(&a)
}

fn check_outputs(dir: &Path) {
    let v = strata(&["verify", dir.to_str().unwrap()]);
    assert!(v.status.success(), "strata verify: {}", String::from_utf8_lossy(&v.stdout));
    for b in list_blocks(dir).unwrap() {
        let a = promtool(&["tsdb", "analyze", dir.to_str().unwrap(), &b.ulid.to_string()]);
        assert!(a.status.success(), "promtool analyze {}: {}", b.ulid, String::from_utf8_lossy(&a.stderr));
    }
}

#[test]
fn adjacent_blocks_compact_to_the_same_samples() {
    let dir = scratch_copy(&testdata("varied"));
    add_later_block(dir.path(), |_| {});
    let before = dump_dir(dir.path());
    let n_before = list_blocks(dir.path()).unwrap().len();
    let out = compact(&[dir.path().to_str().unwrap(), "--block-ranges", "2h,6h,18h,54h"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = dump_dir(dir.path());
    assert_same_samples(&after, &before, "adjacent");
    assert!(list_blocks(dir.path()).unwrap().len() < n_before);
    check_outputs(dir.path());
    // Nothing left to do: a second run writes nothing.
    let again = compact(&[dir.path().to_str().unwrap(), "--block-ranges", "2h,6h,18h,54h"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 blocks written"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn overlapping_blocks_merge_vertically_to_the_same_samples() {
    let dir = scratch_copy(&testdata("varied"));
    // An identical copy of one block, and different data for some of the same series
    // at other timestamps, overlapping the first blocks.
    let first = list_blocks(dir.path()).unwrap()[1].path.clone();
    clone_block(&first, dir.path(), |_| {});
    let mut om = String::from("# TYPE varied_extra gauge\n");
    for i in 0..400 {
        om.push_str(&format!("varied_extra{{k=\"v\"}} {i} {}.{:03}\n", 1700006000 + i * 7, i % 1000));
    }
    om.push_str("# EOF\n");
    promtool_blocks(&om, dir.path());
    let before = dump_dir(dir.path());
    let out = compact(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let after = dump_dir(dir.path());
    assert_same_samples(&after, &before, "overlapping");
    check_outputs(dir.path());
    // No overlaps remain.
    let mut ranges: Vec<(i64, i64)> = list_blocks(dir.path())
        .unwrap()
        .iter()
        .map(|b| {
            let m = Block::open(&b.path).unwrap().meta;
            (m.min_time, m.max_time)
        })
        .collect();
    ranges.sort();
    assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "{ranges:?}");
}

#[test]
fn identical_replicas_deduplicate_to_one_copy() {
    let src = scratch_copy(&testdata("small"));
    let want = dump_dir(src.path());
    let block = list_blocks(src.path()).unwrap()[0].path.clone();
    let dir = tempfile::tempdir().unwrap();
    clone_block(&block, dir.path(), with_labels(&[("cluster", "eu1"), ("replica", "A")]));
    clone_block(&block, dir.path(), with_labels(&[("cluster", "eu1"), ("replica", "B")]));
    // Without the replica label the two are different groups and stay apart.
    let out = compact(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(list_blocks(dir.path()).unwrap().len(), 2);
    let out = compact(&[dir.path().to_str().unwrap(), "--deduplication.replica-label", "replica"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let blocks = list_blocks(dir.path()).unwrap();
    assert_eq!(blocks.len(), 1);
    let meta = Block::open(&blocks[0].path).unwrap().meta;
    let t = meta.thanos.as_ref().expect("thanos section");
    assert_eq!(t.labels, BTreeMap::from([("cluster".to_string(), "eu1".to_string())]));
    assert_eq!(t.source, "compactor");
    assert_eq!(meta.compaction.level, 2);
    assert_eq!(meta.compaction.parents.len(), 2);
    assert_same_samples(&dump_dir(dir.path()), &want, "replicas");
    check_outputs(dir.path());
}

/// Two replicas scraping every 15 s, B one second after A; A misses scrapes between
/// 300 s and 600 s.
fn replica_pair(dir: &Path) -> (Vec<i64>, Vec<i64>) {
    let base = 1_700_000_000i64;
    let a: Vec<i64> = (0..80).map(|i| base + i * 15).filter(|t| !(base + 300..base + 600).contains(t)).collect();
    let b: Vec<i64> = (0..80).map(|i| base + 1 + i * 15).collect();
    for (name, ts) in [("A", &a), ("B", &b)] {
        let tmp = tempfile::tempdir().unwrap();
        let mut om = String::from("# TYPE up gauge\n");
        for (i, t) in ts.iter().enumerate() {
            om.push_str(&format!("up{{job=\"api\"}} {} {t}\n", i % 7));
        }
        om.push_str("# EOF\n");
        promtool_blocks(&om, tmp.path());
        let blk = list_blocks(tmp.path()).unwrap()[0].path.clone();
        clone_block(&blk, dir, with_labels(&[("replica", name)]));
    }
    (a.iter().map(|t| t * 1000).collect(), b.iter().map(|t| t * 1000).collect())
}

fn timestamps(dir: &Path) -> Vec<i64> {
    let d = parse_dump(&dump_dir(dir));
    assert_eq!(d.len(), 1, "one series");
    d.values().next().unwrap().iter().map(|s| s.0).collect()
}

#[test]
fn replicas_a_second_apart_union_under_one_to_one() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replica_pair(dir.path());
    let out = compact(&[dir.path().to_str().unwrap(), "--deduplication.replica-label", "replica"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut want: Vec<i64> = a.iter().chain(&b).copied().collect();
    want.sort();
    assert_eq!(timestamps(dir.path()), want);
    // Only one replica label was there: the group gets replica="deduped", as in Thanos.
    let meta = Block::open(&list_blocks(dir.path()).unwrap()[0].path).unwrap().meta;
    assert_eq!(meta.thanos.unwrap().labels, BTreeMap::from([("replica".to_string(), "deduped".to_string())]));
    check_outputs(dir.path());
}

#[test]
fn replicas_a_second_apart_follow_one_under_penalty() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = replica_pair(dir.path());
    let out = compact(&[
        dir.path().to_str().unwrap(),
        "--deduplication.replica-label",
        "replica",
        "--deduplication.func",
        "penalty",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = timestamps(dir.path());
    // Before A's gap: exactly A's samples. Then B's, and B is followed to the end
    // because B has no gap to switch back across.
    let gap_start = 1_700_000_300_000;
    let a_before: Vec<i64> = a.iter().copied().filter(|&t| t < gap_start).collect();
    assert_eq!(&got[..a_before.len()], &a_before[..]);
    let tail = &got[a_before.len()..];
    assert!(tail.iter().all(|t| b.contains(t)), "after the gap only B's samples");
    assert_eq!(*tail.last().unwrap(), *b.last().unwrap());
    // Never two samples closer than a scrape interval minus the one-second offset.
    assert!(got.windows(2).all(|w| w[1] - w[0] >= 14_000), "{got:?}");
    check_outputs(dir.path());
}

#[test]
fn output_directory_leaves_the_input_untouched() {
    let dir = scratch_copy(&testdata("varied"));
    add_later_block(dir.path(), |_| {});
    let snapshot = |p: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        let mut v = Vec::new();
        for b in list_blocks(p).unwrap() {
            for f in ["meta.json", "index", "chunks/000001"] {
                v.push((b.path.join(f), std::fs::read(b.path.join(f)).unwrap()));
            }
        }
        v
    };
    let before = snapshot(dir.path());
    let out_dir = tempfile::tempdir().unwrap();
    let out = compact(&[
        dir.path().to_str().unwrap(),
        "--output",
        out_dir.path().to_str().unwrap(),
        "--block-ranges",
        "2h,6h,18h,54h",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(dir.path()), before);
    assert!(!list_blocks(out_dir.path()).unwrap().is_empty());
    check_outputs(out_dir.path());
}

#[test]
fn a_corrupt_block_stops_only_its_group() {
    let src = scratch_copy(&testdata("varied"));
    let dir = tempfile::tempdir().unwrap();
    let mut bad_blocks = Vec::new();
    for b in list_blocks(src.path()).unwrap() {
        clone_block(&b.path, dir.path(), with_labels(&[("cluster", "good")]));
        bad_blocks.push(clone_block(&b.path, dir.path(), with_labels(&[("cluster", "bad")])));
    }
    add_later_block(dir.path(), with_labels(&[("cluster", "good")]));
    add_later_block(dir.path(), with_labels(&[("cluster", "bad")]));
    // Flip a byte inside the first chunk of one "bad" block.
    let seg = bad_blocks[1].join("chunks/000001");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[12] ^= 0x40;
    std::fs::write(&seg, &bytes).unwrap();
    let out = compact(&[dir.path().to_str().unwrap(), "--block-ranges", "2h,6h,18h,54h"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let bad_id = bad_blocks[1].file_name().unwrap().to_str().unwrap();
    assert!(
        err.contains(bad_id)
            && err.contains("chunks/000001")
            && err.contains("{__name__=")
            && err.contains("segment 0 offset"),
        "{err}"
    );
    // Every bad-group block is still there, unchanged; the good group was compacted.
    for b in &bad_blocks {
        assert!(b.join("meta.json").exists(), "{} was removed", b.display());
    }
    assert_eq!(std::fs::read(&seg).unwrap(), bytes);
    let good: Vec<_> = list_blocks(dir.path())
        .unwrap()
        .into_iter()
        .filter(|b| Block::open(&b.path).unwrap().meta.thanos.unwrap().labels["cluster"] == "good")
        .collect();
    assert!(good.len() < bad_blocks.len(), "the good group was compacted");
}

#[test]
fn native_histograms_survive_vertical_compaction() {
    let dir = scratch_copy(&testdata("native-histograms"));
    let want = ok_stdout(strata(&["dump", dir.path().to_str().unwrap()]), "dump");
    let block = list_blocks(dir.path()).unwrap()[0].path.clone();
    clone_block(&block, dir.path(), |_| {});
    // A third copy whose chunks are not byte-identical: histogram chunks re-encoded by
    // strata with 30 samples each, so the merge decodes and re-encodes histograms.
    let tmp = tempfile::tempdir().unwrap();
    let src = Block::open(&block).unwrap();
    let index = src.index().unwrap();
    let symbols: Vec<&[u8]> = index.symbols().collect::<Result<_, _>>().unwrap();
    let ulid = ulid::Ulid::new();
    let mut w = strata::block::BlockWriter::new(tmp.path(), ulid, &symbols).unwrap();
    for e in src.series(&index).unwrap() {
        let e = e.unwrap();
        let mut values = Vec::new();
        for m in &e.chunks {
            let c = src.chunk(m.chunk_ref).unwrap();
            values.extend(strata::format::sample::decode(c.encoding, c.data).unwrap().into_values());
        }
        let chunks = strata::compact::merge::encode_values(&values, 30).unwrap();
        let cw: Vec<strata::block::ChunkToWrite<'_>> = chunks
            .iter()
            .map(|c| strata::block::ChunkToWrite {
                encoding: c.encoding,
                data: &c.data,
                min_time: c.min_time,
                max_time: c.max_time,
                record: None,
            })
            .collect();
        w.add_series(&e.labels, &cw).unwrap();
    }
    let mut meta = src.meta.clone();
    meta.compaction.sources = vec![ulid];
    let (p, _) = w.finish(meta, None).unwrap();
    copy_dir(&p, &dir.path().join(ulid.to_string()));
    assert_eq!(
        ok_stdout(strata(&["dump", dir.path().join(ulid.to_string()).to_str().unwrap()]), "dump copy"),
        want,
        "re-encoded copy holds the same samples"
    );

    let out = compact(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(list_blocks(dir.path()).unwrap().len(), 1);
    assert_eq!(ok_stdout(strata(&["dump", dir.path().to_str().unwrap()]), "dump after"), want);
    let v = strata(&["verify", dir.path().to_str().unwrap()]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
}

/// Block time ranges of a directory, sorted.
fn layout(dir: &Path) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = list_blocks(dir)
        .unwrap()
        .iter()
        .map(|b| {
            let m = Block::open(&b.path).unwrap().meta;
            (m.min_time, m.max_time)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn sigkill_at_any_point_loses_nothing_and_a_rerun_finishes() {
    let base = tempfile::tempdir().unwrap();
    let src = base.path().join("src");
    let g = strata(&[
        "gen",
        "--output",
        src.to_str().unwrap(),
        "--series",
        "1500",
        "--duration",
        "8h",
        "--scrape-interval",
        "60s",
        "--replicas",
        "2",
        "--replica-offset",
        "20s",
        "--native-histograms-every",
        "100",
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let want = ok_stdout(strata(&["dump", src.to_str().unwrap()]), "dump source");
    let args = |d: &Path| {
        vec![
            "compact".to_string(),
            "--quiet".into(),
            "--block-ranges".into(),
            "2h,4h,8h".into(),
            "--compact.series-batch".into(),
            "64".into(),
            "--segment-size".into(),
            "65536".into(),
            d.to_str().unwrap().to_string(),
        ]
    };

    // An uninterrupted run: its duration spaces the kill points, its layout is the goal.
    let full = base.path().join("full");
    copy_dir(&src, &full);
    let t0 = std::time::Instant::now();
    let out = run(Command::new(STRATA).args(args(&full)));
    let took = t0.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let goal = layout(&full);
    assert!(goal.len() < layout(&src).len());

    let points = 14;
    for i in 0..points {
        let dir = base.path().join(format!("kill{i}"));
        copy_dir(&src, &dir);
        let delay = took.mul_f64(0.05 + 1.1 * i as f64 / points as f64);
        let mut child = Command::new(STRATA)
            .args(args(&dir))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Whatever Prometheus would load is complete, and no sample is missing.
        let v = strata(&["verify", dir.to_str().unwrap()]);
        assert!(v.status.success(), "kill point {i} ({delay:?}): {}", String::from_utf8_lossy(&v.stdout));
        assert_eq!(
            ok_stdout(strata(&["dump", dir.to_str().unwrap()]), "dump after kill"),
            want,
            "kill point {i} ({delay:?}) changed the samples"
        );
        // A rerun finishes the job and reaches the same layout.
        let out = run(Command::new(STRATA).args(args(&dir)));
        assert!(out.status.success(), "rerun after kill point {i}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(layout(&dir), goal, "kill point {i}: final layout differs");
        assert_eq!(ok_stdout(strata(&["dump", dir.to_str().unwrap()]), "dump after rerun"), want);
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.contains(".tmp-for-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn tombstoned_samples_are_dropped_by_compaction() {
    use strata::format::tombstones::{Interval, Tombstones};
    let dir = scratch_copy(&testdata("varied"));
    add_later_block(dir.path(), |_| {});
    // Delete a range of every third series of the second block, and one whole series.
    let blocks = list_blocks(dir.path()).unwrap();
    let target = Block::open(&blocks[1].path).unwrap();
    let index = target.index().unwrap();
    let ids: Vec<u32> = index.all_postings().unwrap().collect();
    let (lo, hi) = (target.meta.min_time, target.meta.max_time);
    let mut t = Tombstones::default();
    for (k, id) in ids.iter().enumerate() {
        if k % 3 == 0 {
            t.add(*id as u64, Interval { min: lo + (hi - lo) / 4, max: lo + (hi - lo) / 2 });
        }
    }
    t.add(ids[1] as u64, Interval { min: i64::MIN, max: i64::MAX });
    let path = blocks[1].path.clone();
    drop(index);
    drop(target);
    std::fs::write(path.join("tombstones"), t.write()).unwrap();
    let mut meta = Block::open(&path).unwrap().meta;
    meta.stats.num_tombstones = t.num_intervals();
    std::fs::write(path.join("meta.json"), meta.to_json()).unwrap();

    let before = dump_dir(dir.path());
    assert!(
        parse_dump(&before).values().map(Vec::len).sum::<usize>()
            < parse_dump(&std::fs::read_to_string(testdata("varied.dump.txt")).unwrap())
                .values()
                .map(Vec::len)
                .sum::<usize>(),
        "promtool honours the tombstones"
    );
    let out = compact(&[dir.path().to_str().unwrap(), "--block-ranges", "2h,6h,18h,54h"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_samples(&dump_dir(dir.path()), &before, "tombstones");
    // The deleted samples are gone from the data itself, not hidden by tombstones.
    for b in list_blocks(dir.path()).unwrap() {
        let blk = Block::open(&b.path).unwrap();
        assert!(blk.tombstones.is_empty(), "compacted blocks carry no tombstones");
    }
    check_outputs(dir.path());
}

#[test]
fn retention_removes_expired_blocks_per_resolution() {
    let dir = scratch_copy(&testdata("varied"));
    let old: Vec<_> = list_blocks(dir.path()).unwrap().into_iter().map(|b| b.path).collect();
    // Recent blocks: one day ago, 2h-aligned.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let start = (now - 86_400_000) / 7_200_000 * 7_200_000;
    let g = strata(&[
        "gen",
        "--output",
        dir.path().to_str().unwrap(),
        "--series",
        "50",
        "--duration",
        "8h",
        "--start",
        &start.to_string(),
    ]);
    assert!(g.status.success(), "{}", String::from_utf8_lossy(&g.stderr));
    let recent = list_blocks(dir.path()).unwrap().len() - old.len();

    // A retention longer than the data's age keeps everything.
    let before = parse_dump(&dump_dir(dir.path()));
    let out = compact(&[dir.path().to_str().unwrap(), "--retention.resolution-raw", "36500d"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("retention: removed"));
    assert_eq!(parse_dump(&dump_dir(dir.path())), before);

    // 30 days: every block holding 2023 data goes, the recent ones stay.
    let out = compact(&[
        dir.path().to_str().unwrap(),
        "--retention.resolution-raw",
        "30d",
        "--retention.resolution-5m",
        "0d",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retention: removed"), "{err}");
    assert!(list_blocks(dir.path()).unwrap().iter().all(|b| Block::open(&b.path).unwrap().meta.min_time >= start));
    let after = parse_dump(&dump_dir(dir.path()));
    let recent_series: Vec<_> = before.iter().filter(|(l, _)| l.contains("series_id=")).collect();
    assert_eq!(after.len(), recent_series.len(), "only the recent series are left");
    for (l, s) in recent_series {
        assert_eq!(&after[l], s);
    }
    assert!(recent >= 4);
}

#[test]
fn compact_downsamples_like_thanos_and_a_rerun_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    gen(dir.path(), &SIXTEEN_DAYS);
    let raw_before = parse_dump(&ok_stdout(strata(&["dump", d]), "dump raw"));
    let out = compact(&[d]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let metas: Vec<_> = list_blocks(dir.path()).unwrap().iter().map(|b| Block::open(&b.path).unwrap().meta).collect();
    let by_res = |r: i64| metas.iter().filter(|m| m.resolution() == r).collect::<Vec<_>>();
    let (raw, m5, h1) = (by_res(0), by_res(300_000), by_res(3_600_000));
    assert!(!m5.is_empty() && !h1.is_empty(), "want 5m and 1h blocks:\n{err}");
    // The 14-day raw window became one block; its 5m and 1h blocks cover the same range.
    let big = raw.iter().find(|m| m.max_time - m.min_time == 14 * 86_400_000).expect("a 14-day raw block");
    assert!(m5.iter().any(|m| (m.min_time, m.max_time) == (big.min_time, big.max_time)));
    assert!(h1.iter().any(|m| (m.min_time, m.max_time) == (big.min_time, big.max_time)));
    let v = strata(&["verify", d]);
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    // Raw data is unchanged, and the 5m count aggregate adds up to the raw samples.
    let raw_dir = tempfile::tempdir().unwrap();
    for b in list_blocks(dir.path()).unwrap() {
        if Block::open(&b.path).unwrap().meta.resolution() == 0 {
            copy_dir(&b.path, &raw_dir.path().join(b.path.file_name().unwrap()));
        }
    }
    assert_eq!(
        parse_dump(&ok_stdout(strata(&["dump", raw_dir.path().to_str().unwrap()]), "dump raw after")),
        raw_before
    );
    let five = tempfile::tempdir().unwrap();
    for b in list_blocks(dir.path()).unwrap() {
        if Block::open(&b.path).unwrap().meta.resolution() == 300_000 {
            copy_dir(&b.path, &five.path().join(b.path.file_name().unwrap()));
        }
    }
    let counts: f64 = ok_stdout(strata(&["dump", "--aggr", "count", five.path().to_str().unwrap()]), "dump count")
        .lines()
        .map(|l| l.rsplit(' ').nth(1).unwrap().parse::<f64>().unwrap())
        .sum();
    let raw_in_range: usize =
        raw_before.values().flatten().filter(|s| s.0 >= big.min_time && s.0 < big.max_time).count();
    assert_eq!(counts as usize, raw_in_range);
    // Nothing new on a rerun.
    let again = compact(&[d]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("0 blocks written") && !err.contains("downsampled "), "{err}");
}
