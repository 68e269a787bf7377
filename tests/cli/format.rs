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
    let present: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
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

#[test]
fn bad_flag_values_are_refused_before_any_work() {
    let dir = scratch_copy(&testdata("small"));
    let d = dir.path().to_str().unwrap();
    let before = dir_listing(dir.path());
    let out = tempfile::tempdir().unwrap();
    let gen_out = out.path().join("gen");
    let g = gen_out.to_str().unwrap();
    for (args, flag) in [
        (vec!["gen", "--output", g, "--shape", "square"], "--shape"),
        (vec!["gen", "--output", g, "--scrape-interval", "1.5s"], "--scrape-interval"),
        (vec!["gen", "--output", g, "--duration", "30m2h"], "--duration"),
        (vec!["dump", d, "--aggr", "median"], "--aggr"),
        (vec!["compact", d, "--deduplication.func", "median"], "--deduplication.func"),
        (vec!["compact", d, "--block-ranges", "2h,1x"], "--block-ranges"),
        (vec!["compact", d, "--retention.resolution-raw", "1m1h"], "--retention.resolution-raw"),
    ] {
        let res = strata(&args);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: the error names {flag}: {err}");
        assert!(res.stdout.is_empty(), "{args:?} printed before refusing");
    }
    assert!(!gen_out.exists(), "gen wrote before refusing a flag");
    assert_eq!(dir_listing(dir.path()), before, "compact touched the directory before refusing a flag");

    // The same flags with good values: durations combine units, the empty dedup function
    // is Thanos's default.
    let res = strata(&[
        "gen",
        "--output",
        g,
        "--series",
        "3",
        "--shape",
        "gauge",
        "--duration",
        "1h30m",
        "--block-duration",
        "1h30m",
        "--scrape-interval",
        "1m",
    ]);
    ok_stdout(res, "strata gen");
    let dump = ok_stdout(strata(&["dump", g]), "strata dump");
    assert_eq!(dump.lines().count(), 3 * 90, "three series of 90 one-minute samples");
    let merged = out.path().join("merged");
    let res = strata(&[
        "compact",
        g,
        "--output",
        merged.to_str().unwrap(),
        "--deduplication.func=",
        "--block-ranges",
        "90m,3h",
        "--retention.resolution-raw",
        "1y2w",
        "--downsampling.disable",
        "--quiet",
    ]);
    ok_stdout(res, "strata compact");
}

/// `strata run` and `strata bucket` refuse a bad duration, time or enum value with
/// clap's usage error (exit 2, naming the flag) before the bucket or the data
/// directory is touched.
#[test]
fn run_and_bucket_flags_are_refused_before_any_work() {
    let root = tempfile::tempdir().unwrap();
    let bucket_dir = scratch_copy(&testdata("small"));
    std::fs::remove_dir(bucket_dir.path().join("wal")).unwrap();
    let bucket = bucket_dir.path().to_path_buf();
    let before = dir_listing(&bucket);
    let cfg = format!("type: FILESYSTEM\nconfig:\n  directory: {}\n", bucket.display());
    let data = root.path().join("data");
    let dl = root.path().join("restore");
    let (data_s, dl_s) = (data.to_str().unwrap(), dl.to_str().unwrap());
    let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let run = |extra: &[&'static str]| {
        let mut v = vec!["run", "--objstore.config", &cfg, "--data-dir", data_s, "--http-address", "127.0.0.1:0"];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let bucket_cmd = |extra: &[&str]| {
        let mut v = vec!["bucket", "--objstore.config", &cfg];
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect::<Vec<_>>()
    };
    for (args, flag) in [
        (run(&["--consistency-delay", "1x"]), "--consistency-delay"),
        (run(&["--delete-delay", "48"]), "--delete-delay"),
        (run(&["--wait", "--wait-interval", "1.5m"]), "--wait-interval"),
        (run(&["--block-ranges", "2h,1x"]), "--block-ranges"),
        (run(&["--compact.progress-interval", "often"]), "--compact.progress-interval"),
        (run(&["--min-time", "yesterday"]), "--min-time"),
        (run(&["--max-time", "-3x"]), "--max-time"),
        (run(&["--retention.resolution-5m", "1m1h"]), "--retention.resolution-5m"),
        (run(&["--deduplication.func", "median"]), "--deduplication.func"),
        (bucket_cmd(&["cleanup", "--delete-delay", "1x"]), "--delete-delay"),
        (bucket_cmd(&["cleanup", "--consistency-delay", "30"]), "--consistency-delay"),
        (bucket_cmd(&["retention", "--consistency-delay", "1x"]), "--consistency-delay"),
        (bucket_cmd(&["retention", "--retention.resolution-raw", "90days"]), "--retention.resolution-raw"),
        (bucket_cmd(&["downsample", "--data-dir", data_s, "--consistency-delay", "1x"]), "--consistency-delay"),
        (bucket_cmd(&["replicate", "--objstore-to.config", &cfg, "--resolution", "fast"]), "--resolution"),
        (bucket_cmd(&["replicate", "--objstore-to.config", &cfg, "--min-time", "soon"]), "--min-time"),
        (bucket_cmd(&["download", dl_s, "--max-time", "later"]), "--max-time"),
        (bucket_cmd(&["mark", "--id", id, "--marker", "bogus.json"]), "--marker"),
        (bucket_cmd(&["upload", dl_s, "--label", "a=b", "--source", "nowhere"]), "--source"),
        (bucket_cmd(&["web", "--http-address", "127.0.0.1:0", "--refresh", "1x"]), "--refresh"),
        (bucket_cmd(&["web", "--http-address", "127.0.0.1:0", "--timeout", "1x"]), "--timeout"),
    ] {
        let res = strata(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?}: the error names {flag}: {err}");
        assert!(err.contains("invalid value"), "{args:?}: clap's usage error, not a later failure: {err}");
        assert!(res.stdout.is_empty(), "{args:?} printed before refusing");
    }
    assert_eq!(dir_listing(&bucket), before, "a command touched the bucket before refusing a flag");
    assert!(!data.exists() && !dl.exists(), "a command created its directory before refusing a flag");

    // Good values of the same forms: combined units, RFC 3339 and relative times.
    let res = strata(
        &bucket_cmd(&["cleanup", "--dry-run", "--delete-delay", "1h30m", "--consistency-delay", "0s"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    ok_stdout(res, "strata bucket cleanup");
    let res = strata(
        &bucket_cmd(&["download", dl_s, "--min-time", "2000-01-01T00:00:00Z", "--max-time", "+1d"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    ok_stdout(res, "strata bucket download");
    assert_eq!(list_blocks(&dl).unwrap().len(), 1, "the block was restored");
}

/// Every path below `dir`, relative, sorted.
fn dir_listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.push(p.strip_prefix(dir).unwrap().to_path_buf());
        }
    }
    out.sort();
    out
}

/// A histogram as `strata dump` prints it (Prometheus's `FloatHistogram.String()`):
/// count, sum and buckets as (boundary rule, lower, upper, count), rules numbered as the
/// HTTP API numbers them (0 `(l,u]`, 1 `[l,u)`, 2 `(l,u)`, 3 `[l,u]`).
type Hist = (f64, f64, Vec<(u8, f64, f64, f64)>);

fn parse_hist(s: &str) -> Hist {
    let inner = s.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or_else(|| panic!("not a histogram: {s}"));
    let (mut count, mut sum, mut buckets) = (f64::NAN, f64::NAN, Vec::new());
    for part in inner.split(", ") {
        if let Some(v) = part.strip_prefix("count:") {
            count = v.parse().unwrap();
        } else if let Some(v) = part.strip_prefix("sum:") {
            sum = v.parse().unwrap();
        } else {
            let (range, c) = part.rsplit_once(':').unwrap();
            let rule = match (range.starts_with('['), range.ends_with(']')) {
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => 2,
                (true, true) => 3,
            };
            let (lo, hi) = range[1..range.len() - 1].split_once(',').unwrap();
            buckets.push((rule, lo.parse().unwrap(), hi.parse().unwrap(), c.parse().unwrap()));
        }
    }
    (count, sum, buckets)
}

#[test]
fn native_histograms_decode_to_what_prometheus_reports() {
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("native-histograms.expected.json")).unwrap()).unwrap();
    let out = ok_stdout(strata(&["dump", testdata("native-histograms").to_str().unwrap()]), "strata dump");
    // Our lines by series label text.
    let mut ours: std::collections::BTreeMap<String, Vec<(i64, String)>> = Default::default();
    for line in out.lines() {
        let (rest, ts) = line.rsplit_once(' ').unwrap();
        let (labels, value) = if rest.ends_with('}') && rest.contains("} {count:") {
            let i = rest.find("} {count:").unwrap();
            (&rest[..=i], &rest[i + 2..])
        } else {
            rest.rsplit_once(' ').unwrap()
        };
        ours.entry(labels.to_string()).or_default().push((ts.parse().unwrap(), value.to_string()));
    }
    let series = expected["series"].as_array().unwrap();
    assert_eq!(ours.len(), series.len());
    let (mut hists, mut floats) = (0, 0);
    for s in series {
        let labels = strata::labels::Labels::from_pairs(
            s["labels"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        );
        let got = ours.get(&labels.to_string()).unwrap_or_else(|| panic!("series {labels} missing"));
        let want = s["samples"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{labels}");
        for ((t, v), w) in got.iter().zip(want) {
            assert_eq!(*t, w[0].as_i64().unwrap(), "{labels}");
            match &w[1] {
                serde_json::Value::String(f) => {
                    let (a, b): (f64, f64) = (v.parse().unwrap(), f.parse().unwrap());
                    assert!(a == b || (a.is_nan() && b.is_nan()), "{labels} at {t}: {v} vs {f}");
                    floats += 1;
                }
                h => {
                    let (count, sum, buckets) = parse_hist(v);
                    let num = |x: &serde_json::Value| x.as_str().unwrap().parse::<f64>().unwrap();
                    assert_eq!(count, num(&h["count"]), "{labels} at {t}");
                    assert_eq!(sum, num(&h["sum"]), "{labels} at {t}");
                    // The API leaves `buckets` out when there are none.
                    let wb: Vec<(u8, f64, f64, f64)> = h
                        .get("buckets")
                        .and_then(|b| b.as_array())
                        .map(|a| {
                            a.iter()
                                .map(|b| (b[0].as_u64().unwrap() as u8, num(&b[1]), num(&b[2]), num(&b[3])))
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(buckets, wb, "{labels} at {t}");
                    hists += 1;
                }
            }
        }
    }
    assert!(hists > 500 && floats > 200, "{hists} histograms, {floats} floats");
}
