//! `strata downsample` on promtool-made raw blocks, checked value for value and timestamp
//! for timestamp against `reference`, a plain implementation of Thanos's algorithm written
//! here from its description (docs/downsampling.md, formats reference section 12), fed
//! with the raw samples as `promtool tsdb dump` reads them. Native histograms are checked
//! the same way on blocks written through strata's block writer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::*;
use strata::block::{list_blocks, Block, BlockWriter, ChunkToWrite};
use strata::format::aggr::AggrType;
use strata::format::histogram::{
    encode_float_histograms, encode_histograms, CounterResetHint, FloatHistogram, Histogram, Span,
};
use strata::format::meta::{BlockMeta, RES_1H, RES_5M};
use strata::format::sample::{decode_aggr, ChunkSamples};
use strata::labels::Labels;

const MIN: i64 = 60_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// In a 100-day window aligned as promtool aligns `--max-block-duration=2400h`, so that
/// promtool writes one block.
const START: i64 = 1_694_000_000_000;

/// The reference: Thanos's downsampling as specified, written without looking at
/// `src/downsample`.
mod reference {
    /// One aggregate chunk: five sample lists and the chunk's time range.
    #[derive(Clone, Debug, Default, PartialEq)]
    pub struct Chunk {
        pub count: Vec<(i64, f64)>,
        pub sum: Vec<(i64, f64)>,
        pub min: Vec<(i64, f64)>,
        pub max: Vec<(i64, f64)>,
        pub counter: Vec<(i64, f64)>,
        pub mint: i64,
        pub maxt: i64,
    }

    /// Aggregates are stamped at the last millisecond of their window.
    pub fn window_end(t: i64, res: i64) -> i64 {
        let start = t - t % res;
        start + res - 1
    }

    /// Output chunks for a series: enough for at most 140 aggregates each on average.
    pub fn chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, n: usize) -> usize {
        let slots = ((maxt - mint) / out_res) as f64;
        let fullness = f64::min(1.0, n as f64 / ((maxt - mint) as f64 / in_res as f64));
        let expected = (slots * fullness) as i64 + 1;
        let mut x = 1;
        while expected / x > 140 {
            x += 1;
        }
        x as usize
    }

    /// Splits a batch into windows: a sample opens a new window when it is after the
    /// current window's stamp; a stamp never passes the batch's last sample.
    pub fn windows<T: Clone>(batch: &[(i64, T)], res: i64) -> Vec<(i64, Vec<T>)> {
        let last = batch[batch.len() - 1].0;
        let mut out: Vec<(i64, Vec<T>)> = Vec::new();
        for (t, v) in batch {
            let open_new = match out.last() {
                None => true,
                Some((stamp, _)) => *t > *stamp,
            };
            if open_new {
                out.push((window_end(*t, res).min(last), Vec::new()));
            }
            out.last_mut().unwrap().1.push(v.clone());
        }
        out
    }

    /// The counter of a sequence of raw counter values: the first value, then every
    /// increase, and after a drop (a reset) the whole new value.
    pub fn counter_step(total: f64, prev: f64, v: f64) -> f64 {
        if v < prev {
            total + v
        } else {
            total + (v - prev)
        }
    }

    fn smallest(vs: &[f64]) -> f64 {
        vs.iter().fold(f64::MAX, |m, &v| if v < m { v } else { m })
    }

    fn largest(vs: &[f64]) -> f64 {
        vs.iter().fold(-f64::MAX, |m, &v| if v > m { v } else { m })
    }

    fn total(vs: &[f64]) -> f64 {
        vs.iter().fold(0.0, |s, &v| s + v)
    }

    /// Counter-slot samples of a batch of counter values: the first raw sample, the counter
    /// at each window's end, and the last raw value at the last window's stamp.
    fn counter_slot(batch: &[(i64, f64)], res: i64, last_raw: f64) -> Vec<(i64, f64)> {
        let mut out = vec![batch[0]];
        let mut c = batch[0].1;
        let mut prev = batch[0].1;
        let mut first = true;
        let mut last_stamp = 0;
        for (stamp, vs) in windows(batch, res) {
            for v in vs {
                if first {
                    first = false;
                } else {
                    c = counter_step(c, prev, v);
                }
                prev = v;
            }
            out.push((stamp, c));
            last_stamp = stamp;
        }
        out.push((last_stamp, last_raw));
        out
    }

    fn per_window(batch: &[(i64, f64)], res: i64, f: fn(&[f64]) -> f64) -> Vec<(i64, f64)> {
        windows(batch, res).into_iter().map(|(s, vs)| (s, f(&vs))).collect()
    }

    /// Raw float samples of one series to aggregate chunks at `res`.
    pub fn from_raw(samples: &[(i64, f64)], res: i64) -> Vec<Chunk> {
        let mut out = Vec::new();
        if samples.is_empty() {
            return out;
        }
        let n = chunk_count(samples[0].0, samples[samples.len() - 1].0, 60_000, res, samples.len());
        let per = samples.len() / n + 1;
        let mut i = 0;
        while i < samples.len() {
            let mut j = (i + per).min(samples.len());
            let end = window_end(samples[j - 1].0, res);
            while j < samples.len() && samples[j].0 <= end {
                j += 1;
            }
            let batch: Vec<(i64, f64)> = samples[i..j].iter().copied().filter(|s| !s.1.is_nan()).collect();
            i = j;
            if batch.is_empty() {
                continue;
            }
            let count: Vec<(i64, f64)> = windows(&batch, res).into_iter().map(|(s, vs)| (s, vs.len() as f64)).collect();
            out.push(Chunk {
                mint: count[0].0,
                maxt: count[count.len() - 1].0,
                count,
                sum: per_window(&batch, res, total),
                min: per_window(&batch, res, smallest),
                max: per_window(&batch, res, largest),
                counter: counter_slot(&batch, res, batch[batch.len() - 1].1),
            });
        }
        out
    }

    /// Aggregate chunks of one series to coarser ones: batches of whole input chunks.
    pub fn from_aggregates(chunks: &[Chunk], in_res: i64, res: i64) -> Vec<Chunk> {
        let mut out = Vec::new();
        if chunks.is_empty() {
            return out;
        }
        let n_samples: usize = chunks.iter().map(|c| c.count.len()).sum();
        let n = chunk_count(chunks[0].mint, chunks[chunks.len() - 1].maxt, in_res, res, n_samples);
        let per = (chunks.len() / n).max(1);
        for group in chunks.chunks(per) {
            let cat =
                |f: fn(&Chunk) -> &Vec<(i64, f64)>| group.iter().flat_map(|c| f(c).iter().copied()).collect::<Vec<_>>();
            let count = per_window(&cat(|c| &c.count), res, total);
            let sum = per_window(&cat(|c| &c.sum), res, total);
            let min = per_window(&cat(|c| &c.min), res, smallest);
            let max = per_window(&cat(|c| &c.max), res, largest);
            // Join the counter slots: each chunk's trailing repeated timestamp carries its
            // true last raw value, against which the next chunk's first value is compared.
            let mut joined: Vec<(i64, f64)> = Vec::new();
            let (mut last_t, mut last_v, mut tot) = (0i64, 0.0, 0.0);
            for c in group {
                for &(t, v) in &c.counter {
                    if v.is_nan() {
                        continue;
                    }
                    if joined.is_empty() {
                        (last_t, last_v, tot) = (t, v, v);
                        joined.push((t, tot));
                    } else if t > last_t {
                        tot = counter_step(tot, last_v, v);
                        (last_t, last_v) = (t, v);
                        joined.push((t, tot));
                    } else if t == last_t {
                        last_v = v;
                    }
                }
            }
            let counter = counter_slot(&joined, res, last_v);
            let stamps: Vec<i64> = [&count, &sum, &min, &max, &counter[1..counter.len() - 1].to_vec()]
                .iter()
                .flat_map(|v| v.iter().map(|s| s.0))
                .collect();
            out.push(Chunk {
                mint: *stamps.iter().min().unwrap(),
                maxt: *stamps.iter().max().unwrap(),
                count,
                sum,
                min,
                max,
                counter,
            });
        }
        out
    }
}

use strata::gen::Rng;

fn om_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// OpenMetrics text for `span` ms from `START`, scraped every `scrape` ms: counters with
/// resets (to zero and to a smaller value), missed scrapes and a three-hour gap, a random
/// walk with NaN and ±Inf samples, windows holding only -Inf or only NaN, a counter that
/// reaches +Inf, a sparse series and a single sample.
fn openmetrics(span: i64, scrape: i64, seed: u64) -> String {
    let mut r = Rng::new(seed);
    let mut om = String::new();
    let end = START + span;
    let gap = (START + span * 3 / 10, START + span * 3 / 10 + 3 * HOUR);
    let series = |name: &str,
                  labels: &str,
                  om: &mut String,
                  r: &mut Rng,
                  f: &mut dyn FnMut(usize, i64, &mut Rng) -> Option<f64>| {
        let mut t = START;
        let mut i = 0;
        while t < end {
            let jitter = r.below(401) as i64 - 200;
            let ts = t + jitter;
            if !(gap.0..gap.1).contains(&ts) && r.below(100) >= 2 {
                if let Some(v) = f(i, ts, r) {
                    om.push_str(&format!("{name}{{{labels}}} {} {}.{:03}\n", om_value(v), ts / 1000, ts % 1000));
                }
            }
            t += scrape;
            i += 1;
        }
    };
    om.push_str("# TYPE ds_requests gauge\n");
    let n = (span / scrape) as usize;
    let mut c = 0.0;
    series("ds_requests", "kind=\"int\"", &mut om, &mut r, &mut |i, _, r| {
        if i == n / 4 {
            c = 0.0;
        } else if i == n * 6 / 10 {
            c = 17.0;
        } else {
            c += r.below(100) as f64;
        }
        Some(c)
    });
    let mut c = 1e6;
    series("ds_requests", "kind=\"float\"", &mut om, &mut r, &mut |i, _, r| {
        if i % (n / 3).max(1) == n / 6 {
            c = r.unit() * 10.0;
        }
        c += r.unit() * 0.37;
        Some(c)
    });
    let mut c = 0.0;
    series("ds_requests", "kind=\"to_inf\"", &mut om, &mut r, &mut |i, _, _| {
        c += 3.0;
        Some(if i > n * 7 / 10 { f64::INFINITY } else { c })
    });
    om.push_str("# TYPE ds_temperature gauge\n");
    let mut w = 20.0;
    series("ds_temperature", "kind=\"walk\"", &mut om, &mut r, &mut |i, _, r| {
        w += r.unit() - 0.5;
        Some(match i % 997 {
            13 => f64::NAN,
            500 => f64::INFINITY,
            700 => f64::NEG_INFINITY,
            _ => w,
        })
    });
    series("ds_temperature", "kind=\"special\"", &mut om, &mut r, &mut |_, ts, r| {
        // Hour by hour: -Inf only, NaN only, +Inf and -Inf mixed, ordinary values.
        Some(match (ts - START) / HOUR % 4 {
            0 => f64::NEG_INFINITY,
            1 => f64::NAN,
            2 => {
                if r.below(2) == 0 {
                    f64::INFINITY
                } else {
                    f64::NEG_INFINITY
                }
            }
            _ => -(r.below(1000) as f64),
        })
    });
    om.push_str("# TYPE ds_sparse gauge\n");
    series("ds_sparse", "", &mut om, &mut r, &mut |i, _, _| if i % 80 == 0 { Some(i as f64) } else { None });
    om.push_str("# TYPE ds_once gauge\n");
    om.push_str(&format!("ds_once 42 {}.000\n", (START + HOUR) / 1000));
    om.push_str("# EOF\n");
    om
}

/// Lets promtool make one raw block from OpenMetrics text in `dir`.
fn promtool_block(om: &str, dir: &Path) -> PathBuf {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), om).unwrap();
    let out = promtool(&[
        "tsdb",
        "create-blocks-from",
        "openmetrics",
        "--max-block-duration=2400h",
        f.path().to_str().unwrap(),
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "promtool create-blocks-from: {}", String::from_utf8_lossy(&out.stderr));
    for junk in ["wal", "chunks_head"] {
        let _ = std::fs::remove_dir_all(dir.join(junk));
    }
    let blocks = list_blocks(dir).unwrap();
    assert_eq!(blocks.len(), 1, "promtool wrote one block");
    blocks[0].path.clone()
}

/// Raw samples per series as promtool reads them.
fn raw_samples(dir: &Path) -> BTreeMap<String, Vec<(i64, f64)>> {
    let tmp = scratch_copy(dir);
    let text = promtool_dump(tmp.path(), &[]);
    let mut m: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for (series, samples) in parse_dump(&text) {
        m.insert(series, samples.into_iter().map(|(t, b)| (t, f64::from_bits(b))).collect());
    }
    m
}

fn downsample(args: &[&str]) -> Output {
    let mut a = vec!["downsample", "--quiet"];
    a.extend_from_slice(args);
    strata(&a)
}

fn blocks_at(dir: &Path, res: i64) -> Vec<PathBuf> {
    list_blocks(dir)
        .unwrap()
        .into_iter()
        .filter(|b| Block::open(&b.path).unwrap().meta.resolution() == res)
        .map(|b| b.path)
        .collect()
}

/// Every aggregate of a downsampled block as `strata dump --aggr` prints it.
fn dumped(block: &Path) -> BTreeMap<AggrType, Parsed> {
    AggrType::ALL
        .iter()
        .map(|a| {
            (
                *a,
                parse_dump(&ok_stdout(
                    strata(&["dump", block.to_str().unwrap(), "--aggr", a.name()]),
                    "strata dump --aggr",
                )),
            )
        })
        .collect()
}

fn bits(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
    samples.iter().map(|&(t, v)| (t, if v.is_nan() { f64::NAN.to_bits() } else { v.to_bits() })).collect()
}

/// Compares a block's dumped aggregates with the reference's chunks, series by series.
fn assert_matches_reference(
    got: &BTreeMap<AggrType, Parsed>,
    want: &BTreeMap<String, Vec<reference::Chunk>>,
    what: &str,
) {
    for a in AggrType::ALL {
        let series: Vec<&String> = got[&a].keys().collect();
        let expected: Vec<&String> = want.iter().filter(|(_, c)| !c.is_empty()).map(|(s, _)| s).collect();
        assert_eq!(series, expected, "{what}: series with a {} aggregate", a.name());
        for (s, chunks) in want {
            if chunks.is_empty() {
                continue;
            }
            let pick = |c: &reference::Chunk| -> Vec<(i64, f64)> {
                match a {
                    AggrType::Count => c.count.clone(),
                    AggrType::Sum => c.sum.clone(),
                    AggrType::Min => c.min.clone(),
                    AggrType::Max => c.max.clone(),
                    AggrType::Counter => c.counter.clone(),
                }
            };
            let w: Vec<(i64, f64)> = chunks.iter().flat_map(pick).collect();
            assert_eq!(got[&a][s], bits(&w), "{what}: {} of {s}", a.name());
        }
    }
}

fn meta(path: &Path) -> BlockMeta {
    Block::open(path).unwrap().meta
}

/// What Thanos's downsampler keeps and changes in meta.json.
fn assert_downsampled_meta(out: &BlockMeta, src: &BlockMeta, res: i64, block: &Path) {
    assert_ne!(out.ulid, src.ulid);
    assert_eq!((out.min_time, out.max_time), (src.min_time, src.max_time));
    assert_eq!(out.compaction, src.compaction, "compaction section is the source's");
    let t = out.thanos.as_ref().expect("thanos section");
    assert_eq!(t.downsample.resolution, res);
    assert_eq!(t.source, "compactor");
    assert_eq!(t.segment_files, strata::block::segment_names(&block.join("chunks")).unwrap());
    assert!(!block.join("tombstones").exists(), "no tombstones file");
}

fn verify_ok(dir: &Path) {
    let v = strata(&["verify", dir.to_str().unwrap()]);
    assert!(
        v.status.success(),
        "strata verify: {}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn raw_blocks_of_40_hours_downsample_to_5m_as_the_reference_computes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = promtool_block(&openmetrics(44 * HOUR, 15_000, 7), dir.path());
    let src = meta(&raw);
    assert!(src.max_time - src.min_time >= 40 * HOUR);
    let samples = raw_samples(dir.path());

    let out = downsample(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("1 blocks written (1 raw to 5m, 0 5m to 1h), 0 failed"), "{err}");
    assert!(err.contains("downsampled ") && err.contains("resolution=5m0s"), "one line per block: {err}");
    let five = blocks_at(dir.path(), RES_5M);
    assert_eq!(five.len(), 1);
    assert!(blocks_at(dir.path(), RES_1H).is_empty(), "44 hours of 5m data do not go to 1h");

    let want: BTreeMap<String, Vec<reference::Chunk>> =
        samples.iter().map(|(s, v)| (s.clone(), reference::from_raw(v, RES_5M))).collect();
    let got = dumped(&five[0]);
    assert_matches_reference(&got, &want, "5m");

    // The count aggregate adds up to the raw samples that are not NaN.
    let counted: f64 = got[&AggrType::Count].values().flatten().map(|s| f64::from_bits(s.1)).sum();
    let non_nan = samples.values().flatten().filter(|s| !s.1.is_nan()).count();
    assert_eq!(counted as usize, non_nan);

    let m = meta(&five[0]);
    assert_downsampled_meta(&m, &src, RES_5M, &five[0]);
    assert_eq!(
        m.stats.num_samples as usize,
        got[&AggrType::Count].values().map(|v| v.len()).sum::<usize>(),
        "numSamples counts the count aggregate's samples"
    );
    assert_eq!(m.stats.num_series as usize, want.values().filter(|c| !c.is_empty()).count());
    assert_eq!(m.stats.num_chunks as usize, want.values().map(|c| c.len()).sum::<usize>());
    verify_ok(dir.path());
    let inspect = ok_stdout(strata(&["inspect", dir.path().to_str().unwrap()]), "inspect");
    assert!(inspect.lines().any(|l| l.contains(&m.ulid.to_string()) && l.contains("5m0s")), "{inspect}");

    // Nothing is left to do.
    let again = downsample(&[dir.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 blocks written"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(list_blocks(dir.path()).unwrap().len(), 2);
}

#[test]
fn ten_days_go_to_5m_and_on_to_1h_as_the_reference_computes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = promtool_block(&openmetrics(11 * DAY, MIN, 11), dir.path());
    let src = meta(&raw);
    let samples = raw_samples(dir.path());
    let out = downsample(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 blocks written (1 raw to 5m, 1 5m to 1h)"), "both passes in one run: {err}");

    let five = blocks_at(dir.path(), RES_5M);
    let hour = blocks_at(dir.path(), RES_1H);
    assert_eq!((five.len(), hour.len()), (1, 1));
    let want5: BTreeMap<String, Vec<reference::Chunk>> =
        samples.iter().map(|(s, v)| (s.clone(), reference::from_raw(v, RES_5M))).collect();
    assert_matches_reference(&dumped(&five[0]), &want5, "5m");
    let want1: BTreeMap<String, Vec<reference::Chunk>> =
        want5.iter().map(|(s, c)| (s.clone(), reference::from_aggregates(c, RES_5M, RES_1H))).collect();
    let got1 = dumped(&hour[0]);
    assert_matches_reference(&got1, &want1, "1h");
    assert!(want1.values().any(|c| c.len() > 1), "some series span several 1h chunks");

    let m5 = meta(&five[0]);
    let m1 = meta(&hour[0]);
    assert_downsampled_meta(&m5, &src, RES_5M, &five[0]);
    assert_downsampled_meta(&m1, &m5, RES_1H, &hour[0]);
    assert_eq!(m1.compaction.sources, src.compaction.sources, "1h blocks keep the raw sources");
    verify_ok(dir.path());
    let inspect = ok_stdout(strata(&["inspect", dir.path().to_str().unwrap()]), "inspect");
    assert!(inspect.contains("1h0m0s") && inspect.contains("5m0s") && inspect.contains("raw"), "{inspect}");
    // 5m and 1h aggregates do not merge into one dump.
    let mixed = strata(&["dump", dir.path().to_str().unwrap(), "--aggr", "count"]);
    assert_eq!(mixed.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&mixed.stderr).contains("several resolutions"),
        "{}",
        String::from_utf8_lossy(&mixed.stderr)
    );

    let again = downsample(&[dir.path().to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("0 blocks written"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // 1h blocks go nowhere, even when asked directly.
    let one_hour = Block::open(&hour[0]).unwrap();
    let err = strata::downsample::downsample_block(&one_hour, dir.path(), &Default::default()).unwrap_err();
    assert!(err.to_string().contains("not downsampled further"), "{err}");
}

#[test]
fn short_and_marked_blocks_are_left_alone_and_output_leaves_the_input_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let raw = promtool_block(&openmetrics(39 * HOUR, MIN, 3), dir.path());
    let out = downsample(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 blocks written"), "39 hours is too short");

    let dir = tempfile::tempdir().unwrap();
    let raw2 = promtool_block(&openmetrics(41 * HOUR, MIN, 3), dir.path());
    let id = meta(&raw2).ulid;
    std::fs::write(
        raw2.join("no-downsample-mark.json"),
        format!(r#"{{"id":"{id}","version":1,"no_downsample_time":1700000000,"reason":"manual"}}"#),
    )
    .unwrap();
    let out = downsample(&[dir.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 blocks written"), "a no-downsample mark is honoured");
    std::fs::remove_file(raw2.join("no-downsample-mark.json")).unwrap();

    let before: Vec<_> = list_blocks(dir.path()).unwrap();
    let output = tempfile::tempdir().unwrap();
    let out = downsample(&[dir.path().to_str().unwrap(), "--output", output.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(list_blocks(dir.path()).unwrap(), before, "the input directory is not written to");
    assert_eq!(blocks_at(output.path(), RES_5M).len(), 1);
    let again = downsample(&[dir.path().to_str().unwrap(), "--output", output.path().to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&again.stderr).contains("0 blocks written"), "blocks in the output count as done");
    drop(raw);
}

#[test]
fn a_missing_directory_is_refused_with_exit_code_2() {
    let out = downsample(&["/nonexistent/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
}

// ---------------------------------------------------------------------------------------
// Native histograms.

/// A histogram's buckets as index → count, per side (the layout does not matter).
type Buckets = BTreeMap<i32, f64>;

#[derive(Clone, Debug, PartialEq)]
struct H {
    schema: i32,
    zero_count: f64,
    count: f64,
    sum: f64,
    pos: Buckets,
    neg: Buckets,
}

fn buckets(spans: &[Span], counts: &[f64]) -> Buckets {
    let mut m = Buckets::new();
    let mut idx = 0;
    let mut k = 0;
    for s in spans {
        idx += s.offset;
        for _ in 0..s.length {
            m.insert(idx, counts[k]);
            idx += 1;
            k += 1;
        }
    }
    m
}

fn h_of(f: &FloatHistogram) -> H {
    H {
        schema: f.schema,
        zero_count: f.zero_count,
        count: f.count,
        sum: f.sum,
        pos: buckets(&f.positive_spans, &f.positive_buckets),
        neg: buckets(&f.negative_spans, &f.negative_buckets),
    }
}

/// Buckets at a lower schema: index i goes to ((i - 1) >> d) + 1.
fn reduce(b: &Buckets, d: i32) -> Buckets {
    let mut m = Buckets::new();
    for (&i, &c) in b {
        *m.entry(((i - 1) >> d) + 1).or_insert(0.0) += c;
    }
    m
}

fn at_schema(h: &H, schema: i32) -> H {
    let d = h.schema - schema;
    H { schema, pos: reduce(&h.pos, d), neg: reduce(&h.neg, d), ..h.clone() }
}

fn combine(a: &H, b: &H, sign: f64) -> H {
    let side = |x: &Buckets, y: &Buckets| {
        let mut m = x.clone();
        for (&i, &c) in y {
            *m.entry(i).or_insert(0.0) += sign * c;
        }
        m
    };
    H {
        schema: a.schema,
        zero_count: a.zero_count + sign * b.zero_count,
        count: a.count + sign * b.count,
        sum: a.sum + sign * b.sum,
        pos: side(&a.pos, &b.pos),
        neg: side(&a.neg, &b.neg),
    }
}

/// Whether `cur` follows `prev` only through a counter reset, for the first histogram of a
/// raw chunk (later ones never are): a higher schema than the batch's, or a count, the zero
/// count or a populated bucket going down.
fn is_reset(cur: &H, prev: &H) -> bool {
    if cur.count < prev.count || cur.schema > prev.schema || cur.zero_count < prev.zero_count {
        return true;
    }
    let dropped = |c: &Buckets, p: &Buckets| p.iter().any(|(i, &v)| v != 0.0 && c.get(i).is_none_or(|&x| x < v));
    dropped(&cur.pos, &prev.pos) || dropped(&cur.neg, &prev.neg)
}

/// Reference histogram aggregates of one chunk: per window (stamp, count, sum, counter).
type HChunk = Vec<(i64, f64, H, H)>;

/// The reference for raw histograms (all counters here): batches as for floats; within a
/// batch every histogram at the batch's smallest schema; the counter restarts from the
/// batch's first histogram and adds each increase, or the whole histogram after a reset.
fn hist_reference(samples: &[(i64, H, bool)], res: i64) -> Vec<HChunk> {
    let n = reference::chunk_count(samples[0].0, samples[samples.len() - 1].0, 60_000, res, samples.len());
    let per = samples.len() / n + 1;
    let mut out = Vec::new();
    let mut i = 0;
    while i < samples.len() {
        let mut j = (i + per).min(samples.len());
        let end = reference::window_end(samples[j - 1].0, res);
        while j < samples.len() && samples[j].0 <= end {
            j += 1;
        }
        let batch = &samples[i..j];
        i = j;
        let schema = batch.iter().map(|s| s.1.schema).min().unwrap();
        let tagged: Vec<(i64, (H, bool))> = batch.iter().map(|(t, h, first)| (*t, (h.clone(), *first))).collect();
        let mut counter: Option<H> = None;
        let mut prev: Option<H> = None;
        let mut chunk = Vec::new();
        for (stamp, hs) in reference::windows(&tagged, res) {
            let mut sum: Option<H> = None;
            for (h, first_in_chunk) in &hs {
                let low = at_schema(h, schema);
                counter = Some(match (counter, &prev) {
                    (Some(c), Some(p)) => {
                        if *first_in_chunk && is_reset(h, p) {
                            combine(&c, &low, 1.0)
                        } else {
                            combine(&c, &combine(&low, p, -1.0), 1.0)
                        }
                    }
                    _ => low.clone(),
                });
                sum = Some(match sum {
                    None => low.clone(),
                    Some(s) => combine(&s, &low, 1.0),
                });
                prev = Some(low);
            }
            chunk.push((stamp, hs.len() as f64, sum.unwrap(), counter.clone().unwrap()));
        }
        out.push(chunk);
    }
    out
}

/// The reference for histogram aggregates to a coarser resolution: the counters are
/// aggregated again as counters (each input chunk's first counter compared in detail with
/// the previous one), sums added up, counts added up.
fn hist_reference_aggr(chunks: &[HChunk], in_res: i64, res: i64) -> Vec<HChunk> {
    let n_samples: usize = chunks.iter().map(|c| c.len()).sum();
    let n = reference::chunk_count(chunks[0][0].0, chunks[chunks.len() - 1].last().unwrap().0, in_res, res, n_samples);
    let per = (chunks.len() / n).max(1);
    let mut out = Vec::new();
    for group in chunks.chunks(per) {
        let flat: Vec<(i64, (f64, H, H, bool))> = group
            .iter()
            .flat_map(|c| c.iter().enumerate().map(|(k, (t, n, s, ctr))| (*t, (*n, s.clone(), ctr.clone(), k == 0))))
            .collect();
        let schema = flat.iter().map(|s| s.1 .2.schema).min().unwrap();
        let sum_schema = flat.iter().map(|s| s.1 .1.schema).min().unwrap();
        let mut counter: Option<H> = None;
        let mut prev: Option<H> = None;
        let mut chunk = Vec::new();
        for (stamp, xs) in reference::windows(&flat, res) {
            let mut count = 0.0;
            let mut sum: Option<H> = None;
            for (n, s, c, first) in &xs {
                count += n;
                let low = at_schema(c, schema);
                counter = Some(match (counter, &prev) {
                    (Some(acc), Some(p)) => {
                        if *first && is_reset(c, p) {
                            combine(&acc, &low, 1.0)
                        } else {
                            combine(&acc, &combine(&low, p, -1.0), 1.0)
                        }
                    }
                    _ => low.clone(),
                });
                prev = Some(low);
                let s = at_schema(s, sum_schema);
                sum = Some(match sum {
                    None => s,
                    Some(acc) => combine(&acc, &s, 1.0),
                });
            }
            chunk.push((stamp, count, sum.unwrap(), counter.clone().unwrap()));
        }
        out.push(chunk);
    }
    out
}

/// A counter histogram at `schema` whose buckets grow with `step`; `extra` adds buckets
/// that appear later in the series; `base` restarts the counts (a reset).
fn hist_at(schema: i32, step: i64, base: i64, extra: bool) -> Histogram {
    let k = (step - base) as u64;
    let mut spans = vec![Span { offset: -3, length: 3 }, Span { offset: 2, length: 1 }];
    let mut counts = vec![k + 1, 2 * k, k / 3, 5 * k];
    if extra {
        spans.push(Span { offset: 4, length: 2 });
        counts.extend([k / 2, 7]);
    }
    let mut deltas = Vec::new();
    let mut prev = 0i64;
    for &c in &counts {
        deltas.push(c as i64 - prev);
        prev = c as i64;
    }
    let zero = k / 4;
    Histogram {
        counter_reset_hint: CounterResetHint::Unknown,
        schema,
        zero_threshold: 2f64.powi(-128),
        zero_count: zero,
        count: counts.iter().sum::<u64>() + zero + k,
        sum: k as f64 * 1.5,
        positive_spans: spans,
        negative_spans: vec![Span { offset: 0, length: 1 }],
        positive_buckets: deltas,
        negative_buckets: vec![k as i64],
        custom_values: Vec::new(),
    }
}

/// Writes a raw block of histogram series; returns it and, per series, the samples with a
/// flag for "first of its chunk".
/// Per series, its raw histograms with a flag for "first of its chunk".
type HSeries = BTreeMap<String, Vec<(i64, H, bool)>>;

fn histogram_block(dir: &Path) -> (PathBuf, HSeries) {
    let start = 1_700_006_400_000i64;
    let step = 30_000i64;
    let steps = 42 * HOUR / step;
    // Series: schema drops mid-way (the batch reduces to it) and rises again (a reset to
    // Thanos); buckets appearing later; integer histograms with resets every 7 hours.
    type Raw = (Labels, Vec<(i64, Histogram)>, bool);
    let mut series: Vec<Raw> = Vec::new();
    let mk = |f: &dyn Fn(i64) -> Histogram| {
        (0..steps).filter(|i| i % 97 != 5).map(|i| (start + i * step, f(i))).collect::<Vec<_>>()
    };
    series.push((
        Labels::from_pairs([("__name__", "h_schema"), ("k", "float")]),
        mk(&|i| hist_at(if (steps / 3..steps * 2 / 3).contains(&i) { 1 } else { 3 }, i, 0, false)),
        true,
    ));
    series.push((
        Labels::from_pairs([("__name__", "h_layout"), ("k", "float")]),
        mk(&|i| hist_at(2, i, 0, i > steps / 2)),
        true,
    ));
    series.push((
        Labels::from_pairs([("__name__", "h_resets"), ("k", "int")]),
        mk(&|i| hist_at(0, i, i - i % (7 * HOUR / step), false)),
        false,
    ));
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut symbols: Vec<Vec<u8>> =
        series.iter().flat_map(|s| s.0.iter().flat_map(|l| [l.name.clone(), l.value.clone()])).collect();
    symbols.sort();
    symbols.dedup();
    let ulid = ulid::Ulid::new();
    let mut w = BlockWriter::new(dir, ulid, &symbols).unwrap();
    let mut want = BTreeMap::new();
    for (labels, samples, float) in &series {
        let (enc, chunks) = if *float {
            let fs: Vec<(i64, FloatHistogram)> = samples.iter().map(|(t, h)| (*t, h.to_float())).collect();
            (3u8, encode_float_histograms(&fs).unwrap())
        } else {
            (2u8, encode_histograms(samples).unwrap())
        };
        let mut at = 0;
        let mut cw = Vec::new();
        let mut flagged = Vec::new();
        for c in &chunks {
            let n = u16::from_be_bytes([c[0], c[1]]) as usize;
            cw.push(ChunkToWrite {
                encoding: enc,
                data: c,
                min_time: samples[at].0,
                max_time: samples[at + n - 1].0,
                record: None,
            });
            for k in 0..n {
                flagged.push((samples[at + k].0, h_of(&samples[at + k].1.to_float()), k == 0));
            }
            at += n;
        }
        w.add_series(labels, &cw).unwrap();
        want.insert(labels.to_string(), flagged);
    }
    let meta = BlockMeta::new(ulid, start, start + steps * step);
    let (path, _) = w.finish(meta, Some(&Default::default())).unwrap();
    (path, want)
}

/// Per series, the histogram aggregate chunks of a downsampled block: per window (stamp,
/// count, sum, counter).
fn read_hist_block(block: &Path) -> BTreeMap<String, Vec<HChunk>> {
    let b = Block::open(block).unwrap();
    let ix = b.index().unwrap();
    let mut out = BTreeMap::new();
    for e in b.series(&ix).unwrap() {
        let e = e.unwrap();
        let mut chunks = Vec::new();
        for m in &e.chunks {
            let raw = b.chunk(m.chunk_ref).unwrap();
            let ChunkSamples::Float(counts) = decode_aggr(raw.data, AggrType::Count).unwrap() else {
                panic!("count slot")
            };
            let ChunkSamples::FloatHistogram(sums) = decode_aggr(raw.data, AggrType::Sum).unwrap() else {
                panic!("sum slot")
            };
            let ChunkSamples::FloatHistogram(ctrs) = decode_aggr(raw.data, AggrType::Counter).unwrap() else {
                panic!("counter slot")
            };
            assert!(
                decode_aggr(raw.data, AggrType::Min).is_err() && decode_aggr(raw.data, AggrType::Max).is_err(),
                "min and max are unset"
            );
            assert_eq!(counts.len(), sums.len());
            assert_eq!(counts.len(), ctrs.len());
            assert_eq!((m.min_time, m.max_time), (counts[0].0, counts[counts.len() - 1].0));
            chunks.push(
                counts
                    .iter()
                    .zip(&sums)
                    .zip(&ctrs)
                    .map(|((c, s), k)| {
                        assert_eq!((c.0, c.0), (s.0, k.0), "slots share their timestamps");
                        (c.0, c.1, h_of(&s.1), h_of(&k.1))
                    })
                    .collect(),
            );
        }
        out.insert(e.labels.to_string(), chunks);
    }
    out
}

/// Histograms equal up to explicit zero buckets (a slot's chunk layout is the union of
/// its histograms' layouts).
fn same_hist(a: &H, b: &H) -> bool {
    let nz = |m: &Buckets| m.iter().filter(|(_, &v)| v != 0.0).map(|(&i, &v)| (i, v)).collect::<Vec<_>>();
    a.schema == b.schema
        && a.count == b.count
        && a.zero_count == b.zero_count
        && a.sum == b.sum
        && nz(&a.pos) == nz(&b.pos)
        && nz(&a.neg) == nz(&b.neg)
}

fn assert_hist_chunks(got: &BTreeMap<String, Vec<HChunk>>, want: &BTreeMap<String, Vec<HChunk>>, what: &str) {
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>(), "{what}");
    for (s, w) in want {
        let g = &got[s];
        assert_eq!(g.len(), w.len(), "{what} {s}: chunks");
        for (gc, wc) in g.iter().zip(w) {
            assert_eq!(
                gc.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
                wc.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
                "{what} {s}: stamps and counts"
            );
            for (gx, wx) in gc.iter().zip(wc) {
                assert!(same_hist(&gx.2, &wx.2), "{what} {s} at {}: sum {:?} != {:?}", gx.0, gx.2, wx.2);
                assert!(same_hist(&gx.3, &wx.3), "{what} {s} at {}: counter {:?} != {:?}", gx.0, gx.3, wx.3);
            }
        }
    }
}

#[test]
fn native_histograms_downsample_as_the_reference_computes() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, samples) = histogram_block(dir.path());
    let out = downsample(&[dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    verify_ok(dir.path());
    let five = blocks_at(dir.path(), RES_5M);
    assert_eq!(five.len(), 1);
    let want5: BTreeMap<String, Vec<HChunk>> =
        samples.iter().map(|(s, v)| (s.clone(), hist_reference(v, RES_5M))).collect();
    assert_hist_chunks(&read_hist_block(&five[0]), &want5, "5m");

    // 42 hours of 5m data are not a 1h candidate; the library downsamples them anyway.
    let b = Block::open(&five[0]).unwrap();
    let hour_dir = tempfile::tempdir().unwrap();
    let (hour, m) = strata::downsample::downsample_block(&b, hour_dir.path(), &Default::default()).unwrap();
    assert_eq!(m.resolution(), RES_1H);
    let want1: BTreeMap<String, Vec<HChunk>> =
        want5.iter().map(|(s, c)| (s.clone(), hist_reference_aggr(c, RES_5M, RES_1H))).collect();
    assert_hist_chunks(&read_hist_block(&hour), &want1, "1h");
    verify_ok(hour_dir.path());
    drop(raw);
}

#[test]
fn verify_reports_broken_aggregate_chunks() {
    use strata::format::aggr::{encode, SubChunk};
    use strata::format::meta::ThanosMeta;
    use strata::format::xor::encode as xor;
    let dir = tempfile::tempdir().unwrap();
    let count = xor(&[(299_999, 3.0), (599_999, 2.0)]).unwrap();
    let sum = xor(&[(299_999, 1.0), (599_000, 2.0)]).unwrap();
    let counter = xor(&[(10, 1.0), (299_999, 2.0), (599_999, 3.0)]).unwrap();
    fn sub(d: &[u8]) -> Option<SubChunk<'_>> {
        Some(SubChunk { encoding: 1, data: d })
    }
    let data = encode(&[sub(&count), sub(&sum), None, sub(&count), sub(&counter)]);
    let ulid = ulid::Ulid::new();
    let mut w = BlockWriter::new(dir.path(), ulid, ["__name__", "x"]).unwrap();
    w.add_series(
        &Labels::from_pairs([("__name__", "x")]),
        &[ChunkToWrite { encoding: 0xff, data: &data, min_time: 299_999, max_time: 599_999, record: None }],
    )
    .unwrap();
    let mut meta = BlockMeta::new(ulid, 0, 600_000);
    meta.thanos =
        Some(ThanosMeta { downsample: strata::format::meta::Downsample { resolution: RES_5M }, ..Default::default() });
    w.finish(meta, None).unwrap();
    let v = strata(&["verify", dir.path().to_str().unwrap()]);
    assert_eq!(v.status.code(), Some(1));
    let text = String::from_utf8_lossy(&v.stdout);
    for p in [
        "sum slot timestamps differ from the count slot's",
        "float aggregate without a min slot",
        "counter slot does not end with the last raw value at a repeated timestamp",
    ] {
        assert!(text.contains(p), "{p}: {text}");
    }
}
