//! Reading, verifying and round-tripping promtool-made blocks.

use crate::*;
use strata::block::{copy_block, list_blocks, Block};
use strata::format::chunks::Encoding;
use strata::format::xor;

#[test]
fn dump_equals_promtool_on_golden_blocks() {
    for name in ["small", "varied"] {
        let dir = scratch_copy(&testdata(name));
        let ours = ok_stdout(strata(&["dump", dir.path().to_str().unwrap()]), "strata dump");
        let theirs = promtool_dump(dir.path(), &[]);
        assert_same_samples(&ours, &theirs, name);
        // The stored expectation too, byte for byte (strata prints floats as Go does).
        let stored = std::fs::read_to_string(testdata(&format!("{name}.dump.txt"))).unwrap();
        assert_eq!(ours, stored, "{name}: dump differs from the stored promtool output");
    }
}

#[test]
fn dump_reads_index_format_v1() {
    let shared = repo().join("../shared/testdata");
    let src = shared.join("prometheus-index-format-v1");
    if !src.exists() {
        eprintln!("SKIPPED dump_reads_index_format_v1: ../shared/testdata is absent");
        return;
    }
    let dir = scratch_copy(&src);
    let ours = ok_stdout(strata(&["dump", dir.path().to_str().unwrap()]), "strata dump");
    let want = std::fs::read_to_string(shared.join("prometheus-index-format-v1.dump.txt")).unwrap();
    assert_eq!(ours, want);
    assert!(strata(&["verify", dir.path().to_str().unwrap()]).status.success());
}

#[test]
fn dump_time_range_and_matcher_equal_promtool() {
    let dir = scratch_copy(&testdata("varied"));
    let d = dir.path().to_str().unwrap();
    let all = parse_dump(&promtool_dump(dir.path(), &[]));
    let ts: Vec<i64> = all.values().flatten().map(|s| s.0).collect();
    let (lo, hi) = (*ts.iter().min().unwrap(), *ts.iter().max().unwrap());
    let (a, b) = (lo + (hi - lo) / 3, lo + (hi - lo) / 2);
    let range = [format!("--min-time={a}"), format!("--max-time={b}")];
    let ours = ok_stdout(strata(&["dump", d, &range[0], &range[1]]), "strata dump range");
    let theirs = promtool_dump(dir.path(), &[&range[0], &range[1]]);
    assert_same_samples(&ours, &theirs, "time range");

    // A selector: the first metric name in the data, and a regex on it.
    let first = all.keys().next().unwrap();
    let name = first.split('"').nth(1).unwrap().to_string();
    for sel in [name.clone(), format!("{{__name__=~\"{}.*\"}}", &name[..name.len().min(5)])] {
        let m = format!("--match={sel}");
        let ours = ok_stdout(strata(&["dump", d, &m]), "strata dump match");
        let theirs = promtool_dump(dir.path(), &[&m]);
        assert_same_samples(&ours, &theirs, &sel);
    }
}

#[test]
fn data_directory_clutter_is_passed_over() {
    let dir = scratch_copy(&testdata("small"));
    let p = dir.path();
    std::fs::create_dir_all(p.join("chunks_head")).unwrap();
    std::fs::write(p.join("lock"), b"").unwrap();
    std::fs::write(p.join("queries.active"), b"").unwrap();
    std::fs::create_dir_all(p.join("01ARZ3NDEKTSV4RRFFQ69G5FAV.tmp-for-creation/chunks")).unwrap();
    std::fs::create_dir_all(p.join("01ARZ3NDEKTSV4RRFFQ69G5FAW.tmp-for-deletion")).unwrap();
    let d = p.to_str().unwrap();
    let ours = ok_stdout(strata(&["dump", d]), "strata dump");
    assert_same_samples(&ours, &std::fs::read_to_string(testdata("small.dump.txt")).unwrap(), "clutter");
    assert!(strata(&["verify", d]).status.success());
    let inspect = ok_stdout(strata(&["inspect", d]), "strata inspect");
    assert_eq!(inspect.lines().count(), 2, "{inspect}");
}

#[test]
fn inspect_lists_every_block() {
    let out = ok_stdout(strata(&["inspect", testdata("varied").to_str().unwrap()]), "inspect");
    let blocks = list_blocks(&testdata("varied")).unwrap();
    assert_eq!(out.lines().count(), blocks.len() + 1);
    for b in &blocks {
        let m = Block::open(&b.path).unwrap().meta;
        let row = out.lines().find(|l| l.starts_with(&m.ulid.to_string())).expect("row per block");
        assert!(row.contains(&m.stats.num_samples.to_string()) && row.contains(&m.min_time.to_string()), "{row}");
        assert!(row.contains(" raw "), "{row}");
    }
}

#[test]
fn round_trip_through_strata_is_read_by_promtool() {
    for name in ["small", "varied"] {
        let src = testdata(name);
        let out = tempfile::tempdir().unwrap();
        for b in list_blocks(&src).unwrap() {
            let block = Block::open(&b.path).unwrap();
            // Small segments force several chunk files and the cutting rule.
            copy_block(&block, out.path(), ulid::Ulid::new(), 4096).unwrap();
        }
        std::fs::create_dir_all(out.path().join("wal")).unwrap();
        let theirs = promtool_dump(out.path(), &[]);
        let want = std::fs::read_to_string(testdata(&format!("{name}.dump.txt"))).unwrap();
        assert_same_samples(&theirs, &want, name);
        let o = out.path().to_str().unwrap();
        assert!(strata(&["verify", o]).status.success(), "strata verify of the copy");
        for b in list_blocks(out.path()).unwrap() {
            let a = promtool(&["tsdb", "analyze", out.path().to_str().unwrap(), &b.ulid.to_string()]);
            assert!(a.status.success(), "promtool tsdb analyze {}: {}", b.ulid, String::from_utf8_lossy(&a.stderr));
            let text = String::from_utf8_lossy(&a.stdout);
            assert!(text.contains("Block ID:"), "{text}");
        }
    }
}

#[test]
fn xor_chunks_reencode_byte_identically() {
    let mut n = 0;
    for name in ["small", "varied"] {
        for b in list_blocks(&testdata(name)).unwrap() {
            let block = Block::open(&b.path).unwrap();
            let index = block.index().unwrap();
            for e in block.series(&index).unwrap() {
                for m in e.unwrap().chunks {
                    let c = block.chunk(m.chunk_ref).unwrap();
                    assert_eq!(c.encoding(), Some(Encoding::Xor));
                    let samples = xor::decode(c.data).unwrap();
                    assert_eq!(xor::encode(&samples).unwrap(), c.data, "chunk {} of {}", m.chunk_ref, b.ulid);
                    n += 1;
                }
            }
        }
    }
    assert!(n > 100, "only {n} chunks checked");
}

#[test]
fn verify_reports_each_corruption() {
    let cases = [
        ("chunk-flipped-byte", "chunks/000001", "checksum mismatch"),
        ("chunks-truncated", "chunks/000001", "runs past the end"),
        ("index-symbols-flipped-byte", "index", "symbol table"),
        ("index-series-flipped-byte", "index", "index series"),
        ("index-label-index-flipped-byte", "index", "label index"),
        ("index-postings-flipped-byte", "index", "postings list"),
        ("index-label-offset-table-flipped-byte", "index", "label offset table"),
        ("index-postings-table-flipped-byte", "index", "postings offset table"),
        ("index-toc-flipped-byte", "index", "TOC"),
        ("index-truncated", "index", "index"),
        ("meta-flipped-byte", "meta.json", "numSamples"),
        ("meta-broken-json", "meta.json", "invalid meta.json"),
        ("meta-truncated", "meta.json", "invalid meta.json"),
        ("tombstones-flipped-byte", "tombstones", "tombstones"),
    ];
    let dir = testdata("corrupt");
    let present: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(present.len(), cases.len(), "every fixture in testdata/corrupt has a case");
    for (case, file, words) in cases {
        let out = strata(&["verify", dir.join(case).to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{case}: exit code");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().next().unwrap_or_else(|| panic!("{case}: no problem reported"));
        assert!(line.contains(&format!(": {file}: ")) && line.contains(words), "{case}: {line}");
        assert!(line.contains(&dir.join(case).display().to_string()), "{case}: block not named: {line}");
    }
}

#[test]
fn verify_passes_clean_blocks() {
    for name in ["small", "varied"] {
        let out = strata(&["verify", testdata(name).to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_arguments_give_one_clear_error() {
    let out = strata(&["dump", "/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/dir"), "{err}");
    let out = strata(&["dump", "--match", "{a=b}", testdata("small").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--match"));
}
