//! HA replica deduplication against an independent reference: `scripts/dedup_reference.py`
//! reads the input blocks' indexes and chunk records itself, takes the samples from a dump of
//! each input block, computes what a deduplicating Thanos querier returns over each vertical
//! compaction's range (penalty), or the union of the replicas (one-to-one), and compares a
//! dump of strata's output with it sample for sample.

use std::path::Path;

use crate::*;
use strata::block::{list_blocks, Block};
use strata::format::meta::ThanosMeta;

/// Where the later blocks of `replica_with_a_4h_block` start: after every replica's data.
const LATER_MS: i64 = 1_700_100_000_000;

/// Moves every block of `from` into `to`, labelled `replica=<replica>` as a sidecar
/// uploads it.
fn label_and_move(from: &Path, to: &Path, replica: &str) {
    std::fs::create_dir_all(to).unwrap();
    for b in list_blocks(from).unwrap() {
        let mut meta = Block::open(&b.path).unwrap().meta;
        meta.thanos = Some(ThanosMeta {
            labels: [("replica".to_string(), replica.to_string())].into(),
            source: "sidecar".into(),
            ..Default::default()
        });
        std::fs::write(b.path.join("meta.json"), meta.to_json()).unwrap();
        std::fs::rename(&b.path, to.join(b.path.file_name().unwrap())).unwrap();
    }
}

/// promtool's blocks of OpenMetrics text `om`, labelled `replica=<replica>`, into `to`.
fn promtool_replica(om: &Path, replica: &str, to: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let out = promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--quiet",
        om.to_str().unwrap(),
        tmp.path().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "promtool create-blocks-from: {}", String::from_utf8_lossy(&out.stderr));
    label_and_move(tmp.path(), to, replica);
}

/// Replica `r` of `gen_openmetrics.py replica` (44 series over 6 h, scrapes 1 s after the
/// replica before, +-1.5 s of jitter, an outage at its own time, missed scrapes, series that
/// start late or end early or that only one replica scrapes, counter resets) as promtool
/// makes its blocks (three 2 h blocks), into `to`.
fn replica_blocks(r: u32, to: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let om = tmp.path().join("replica.om");
    let out = run(Command::new("python3").arg(repo().join("scripts/gen_openmetrics.py")).args([
        "replica",
        "--replica",
        &r.to_string(),
        "--out",
        om.to_str().unwrap(),
    ]));
    assert!(out.status.success(), "gen_openmetrics.py: {}", String::from_utf8_lossy(&out.stderr));
    promtool_replica(&om, &format!("r{r}"), to);
}

/// Replica 2 with its last two 2 h blocks compacted into one 4 h block first, so its block
/// boundaries differ from the other replicas' (two later blocks let the planner treat the
/// 4 h range as complete; they are left out of `to`).
fn replica_with_a_4h_block(to: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    replica_blocks(2, tmp.path());
    let om = tmp.path().join("later.om");
    std::fs::write(
        &om,
        format!("# TYPE later gauge\nlater 1 {}\nlater 2 {}\n# EOF\n", LATER_MS / 1000, LATER_MS / 1000 + 7300),
    )
    .unwrap();
    let blocks = tmp.path().join("blocks");
    for b in list_blocks(tmp.path()).unwrap() {
        std::fs::create_dir_all(&blocks).unwrap();
        std::fs::rename(&b.path, blocks.join(b.path.file_name().unwrap())).unwrap();
    }
    promtool_replica(&om, "r2", &blocks);
    let out = strata(&["compact", blocks.to_str().unwrap(), "--block-ranges", "2h,4h", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut longest = 0;
    for b in list_blocks(&blocks).unwrap() {
        let meta = Block::open(&b.path).unwrap().meta;
        if meta.min_time < LATER_MS {
            longest = longest.max(meta.max_time - meta.min_time);
            std::fs::rename(&b.path, to.join(b.path.file_name().unwrap())).unwrap();
        }
    }
    assert!(longest > 3 * 3600 * 1000, "replica 2 has a block longer than 2 h");
}

/// Compacts a copy of `inputs` in place with `args` and returns the copy.
fn compact_copy(inputs: &Path, args: &[&str]) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    for b in list_blocks(inputs).unwrap() {
        copy_dir(&b.path, &out.path().join(b.path.file_name().unwrap()));
    }
    let mut all = vec!["compact", out.path().to_str().unwrap(), "--deduplication.replica-label", "replica", "--quiet"];
    all.extend_from_slice(args);
    let res = strata(&all);
    assert!(res.status.success(), "strata compact: {}", String::from_utf8_lossy(&res.stderr));
    for b in list_blocks(out.path()).unwrap() {
        let meta = Block::open(&b.path).unwrap().meta;
        let labels = meta.thanos.map(|t| t.labels).unwrap_or_default();
        assert_eq!(labels.get("replica").map(String::as_str), Some("deduped"), "every block is deduplicated");
    }
    out
}

/// Runs the reference's comparison; panics with its report unless the output is what the
/// querier returns (penalty) or the union (one-to-one). Returns how many output chunks
/// are a source chunk's bytes, and how many there are.
fn reference_check(func: &str, dump: &str, inputs: &Path, output: &Path, min_samples: u64) -> (u64, u64) {
    let out = run(Command::new("python3").arg(repo().join("scripts/dedup_reference.py")).args([
        "check",
        "--func",
        func,
        "--dump",
        dump,
        "--inputs",
        inputs.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{func}: output differs from the reference:\n{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let equal = report.lines().find(|l| l.starts_with("equal: ")).expect("the reference reports what it compared");
    let samples: u64 = equal.split(", ").nth(1).and_then(|s| s.strip_suffix(" samples")).unwrap().parse().unwrap();
    assert!(samples >= min_samples, "{func}: compared {samples} samples only:\n{report}");
    eprintln!("{func}:\n{report}");
    let chunks = report.lines().find_map(|l| l.strip_prefix("chunks:  ")).expect("the reference counts chunks");
    let words: Vec<&str> = chunks.split(' ').collect();
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

#[test]
fn penalty_returns_what_the_querier_returns_for_two_replicas() {
    let inputs = tempfile::tempdir().unwrap();
    replica_blocks(0, inputs.path());
    replica_blocks(1, inputs.path());
    let out = compact_copy(inputs.path(), &["--deduplication.func", "penalty"]);
    let (copied, all) = reference_check("penalty", "promtool", inputs.path(), out.path(), 50_000);
    // The result follows one replica for long runs, so many chunks are taken whole and
    // kept as they were (280 of 531 here; 58 when the penalty restarted per overlap group).
    assert!(copied * 5 >= all * 2, "only {copied} of {all} output chunks are source chunks");
}

#[test]
fn penalty_returns_what_the_querier_returns_for_three_replicas_with_different_block_boundaries() {
    let inputs = tempfile::tempdir().unwrap();
    replica_blocks(0, inputs.path());
    replica_blocks(1, inputs.path());
    replica_with_a_4h_block(inputs.path());
    let out = compact_copy(inputs.path(), &["--deduplication.func", "penalty"]);
    // The last 4 h are one vertical merge of two blocks of replicas 0 and 1 and one of 2.
    let metas: Vec<_> = list_blocks(out.path()).unwrap().iter().map(|b| Block::open(&b.path).unwrap().meta).collect();
    assert!(metas.iter().any(|m| m.compaction.parents.len() == 5), "one merge of 5 blocks");
    reference_check("penalty", "promtool", inputs.path(), out.path(), 50_000);
}

#[test]
fn one_to_one_keeps_every_timestamp_of_two_and_of_three_replicas_once() {
    let inputs = tempfile::tempdir().unwrap();
    replica_blocks(0, inputs.path());
    replica_blocks(1, inputs.path());
    let out = compact_copy(inputs.path(), &[]);
    reference_check("one-to-one", "promtool", inputs.path(), out.path(), 100_000);
    replica_with_a_4h_block(inputs.path());
    let out = compact_copy(inputs.path(), &[]);
    reference_check("one-to-one", "promtool", inputs.path(), out.path(), 100_000);
}

/// `strata gen` blocks (every second series a native histogram, scrapes every 15 s) for
/// `replica` over `[start, start + minutes)`, into `to`. Replica 1 scrapes 1 s after 0.
fn gen_replica(to: &Path, replica: u32, start: i64, minutes: u32) {
    let tmp = tempfile::tempdir().unwrap();
    let out = strata(&[
        "gen",
        "--output",
        tmp.path().to_str().unwrap(),
        "--series",
        "12",
        "--native-histograms-every",
        "2",
        "--start",
        &start.to_string(),
        "--duration",
        &format!("{minutes}m"),
        "--replicas",
        &(replica + 1).to_string(),
        "--replica-label",
        "replica",
        "--seed",
        "7",
    ]);
    assert!(out.status.success(), "strata gen: {}", String::from_utf8_lossy(&out.stderr));
    // gen writes replicas 0..=replica; keep the last one.
    let want = format!("r{replica}");
    let only = tempfile::tempdir().unwrap();
    for b in list_blocks(tmp.path()).unwrap() {
        let labels = Block::open(&b.path).unwrap().meta.thanos.map(|t| t.labels).unwrap_or_default();
        if labels.get("replica") == Some(&want) {
            std::fs::rename(&b.path, only.path().join(b.path.file_name().unwrap())).unwrap();
        }
    }
    assert_eq!(list_blocks(only.path()).unwrap().len(), 1, "gen wrote one block of {want}");
    label_and_move(only.path(), to, &want);
}

#[test]
fn native_histogram_replicas_deduplicate_as_the_reference_chooses() {
    let start = 1_700_006_400_000;
    let inputs = tempfile::tempdir().unwrap();
    // Replica 0 is down from minute 40 to 70, replica 1 from 90 to 100.
    gen_replica(inputs.path(), 0, start, 40);
    gen_replica(inputs.path(), 0, start + 70 * 60_000, 50);
    gen_replica(inputs.path(), 1, start, 90);
    gen_replica(inputs.path(), 1, start + 100 * 60_000, 20);
    let strata_bin = STRATA;
    let out = compact_copy(inputs.path(), &["--deduplication.func", "penalty"]);
    reference_check("penalty", strata_bin, inputs.path(), out.path(), 5_000);
    let out = compact_copy(inputs.path(), &[]);
    reference_check("one-to-one", strata_bin, inputs.path(), out.path(), 8_000);
}
