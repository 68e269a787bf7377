//! Rewriting one block: deleting series or time ranges of them, and relabelling series,
//! as `thanos tools bucket rewrite` does (thanos#2780: a leaked secret in a label, a
//! cardinality explosion, a GDPR request).
//!
//! Owns: the deletion request YAML (Thanos's `metadata.DeletionRequest`: `matchers`, a
//! PromQL series selector; `intervals`, `{mint, maxt}` in ms, absent = all time), the
//! scan that turns requests into tombstones and relabel rules into a series map, the
//! exact counts of what a rewrite removes (for `--dry-run`), and the new block's meta
//! (new ULID as its only source, `thanos.source: bucket.rewrite`, `thanos.rewrites`).
//! The samples go through the merge: chunks untouched are copied as bytes, chunks cut
//! by a deleted interval are re-encoded, series a relabel makes identical are merged
//! one-to-one.
//! Must not: delete or replace the source block (the caller decides, after the output
//! is complete).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{json, Value as Json};
use ulid::Ulid;

use super::dedup::DedupFunc;
use super::merge::{merge_blocks, merge_mapped, MergeOptions};
use crate::block::{Block, ChunkToWrite};
use crate::error::{Error, Result};
use crate::format::meta::BlockMeta;
use crate::format::sample::decode;
use crate::format::tombstones::{Interval, Tombstones};
use crate::labels::{go_quote_into, LabelPairs, Labels, MatchOp, Selector};
use crate::relabel::{relabel, Rule};

/// `thanos.source` of a rewritten block.
pub const REWRITE_SOURCE: &str = "bucket.rewrite";

/// One deletion request: the series a selector matches lose the samples in `intervals`
/// (every sample when there are none).
#[derive(Clone, Debug)]
pub struct DeletionRequest {
    pub selector: Selector,
    pub intervals: Vec<Interval>,
    pub request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeletion {
    matchers: String,
    #[serde(default)]
    intervals: Vec<RawInterval>,
    #[serde(default)]
    request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterval {
    mint: i64,
    maxt: i64,
}

/// Parses a deletion config: a YAML list of requests. An error names the request
/// (1-based) and what is wrong with it.
pub fn parse_deletions(yaml: &str) -> Result<Vec<DeletionRequest>> {
    let entries: Vec<serde_yaml_ng::Value> = serde_yaml_ng::from_str::<Option<Vec<serde_yaml_ng::Value>>>(yaml)
        .map_err(|e| Error::BadRequest(format!("deletion config: want a YAML list of requests: {e}")))?
        .unwrap_or_default();
    entries
        .into_iter()
        .enumerate()
        .map(|(i, entry)| {
            let n = i + 1;
            let raw: RawDeletion = serde_yaml_ng::from_value(entry)
                .map_err(|e| Error::BadRequest(format!("deletion request {n}: {e}")))?;
            let selector = Selector::parse(&raw.matchers)
                .map_err(|e| Error::BadRequest(format!("deletion request {n}: matchers: {e}")))?;
            let mut intervals = Vec::with_capacity(raw.intervals.len());
            for (j, iv) in raw.intervals.iter().enumerate() {
                if iv.mint > iv.maxt {
                    return Err(Error::BadRequest(format!(
                        "deletion request {n}: interval {}: mint {} is after maxt {}",
                        j + 1,
                        iv.mint,
                        iv.maxt
                    )));
                }
                intervals.push(Interval { min: iv.mint, max: iv.maxt });
            }
            Ok(DeletionRequest { selector, intervals, request_id: raw.request_id })
        })
        .collect()
}

impl DeletionRequest {
    /// The intervals to delete; all time when none were given.
    fn effective_intervals(&self) -> Vec<Interval> {
        if self.intervals.is_empty() {
            vec![Interval { min: i64::MIN, max: i64::MAX }]
        } else {
            self.intervals.clone()
        }
    }

    /// As Thanos marshals `metadata.DeletionRequest`: matchers as strings
    /// (`name="value"`), intervals with Go's field names.
    pub fn to_json(&self) -> Json {
        let matchers: Vec<String> = self
            .selector
            .matchers
            .iter()
            .map(|m| {
                let op = match m.op {
                    MatchOp::Equal => "=",
                    MatchOp::NotEqual => "!=",
                    MatchOp::Regex => "=~",
                    MatchOp::NotRegex => "!~",
                };
                let mut s = format!("{}{op}", String::from_utf8_lossy(&m.name));
                go_quote_into(&mut s, m.value.as_bytes());
                s
            })
            .collect();
        let mut o = serde_json::Map::new();
        o.insert("matchers".into(), json!(matchers));
        if !self.intervals.is_empty() {
            o.insert(
                "intervals".into(),
                Json::Array(self.intervals.iter().map(|iv| json!({"Mint": iv.min, "Maxt": iv.max})).collect()),
            );
        }
        if let Some(id) = &self.request_id {
            o.insert("request_id".into(), json!(id));
        }
        Json::Object(o)
    }
}

/// What to do to a block: deletions (applied to the series as they are), then relabel
/// rules.
#[derive(Clone, Debug, Default)]
pub struct Rewrite {
    pub deletions: Vec<DeletionRequest>,
    pub relabels: Vec<Rule>,
}

impl Rewrite {
    pub fn is_empty(&self) -> bool {
        self.deletions.is_empty() && self.relabels.is_empty()
    }

    /// The `thanos.rewrites` entry Thanos appends (`metadata.Rewrite`).
    fn record(&self, sources: &[Ulid]) -> Json {
        let mut o = serde_json::Map::new();
        if !sources.is_empty() {
            o.insert("sources".into(), json!(sources.iter().map(|u| u.to_string()).collect::<Vec<_>>()));
        }
        if !self.deletions.is_empty() {
            o.insert("deletions_applied".into(), Json::Array(self.deletions.iter().map(|d| d.to_json()).collect()));
        }
        if !self.relabels.is_empty() {
            o.insert("relabels_applied".into(), Json::Array(self.relabels.iter().map(|r| r.to_json()).collect()));
        }
        Json::Object(o)
    }
}

/// The meta of the rewritten block `ulid` made from `src` (stats are filled in by the
/// writer): the new ULID is its only source, and a block with a Thanos section gets
/// `thanos.source: bucket.rewrite` and a `thanos.rewrites` entry recording the sources
/// and what was applied.
pub fn rewritten_meta(src: &BlockMeta, ulid: Ulid, rewrite: &Rewrite) -> BlockMeta {
    let mut meta = src.clone();
    meta.ulid = ulid;
    let sources = std::mem::replace(&mut meta.compaction.sources, vec![ulid]);
    if let Some(t) = meta.thanos.as_mut() {
        t.source = REWRITE_SOURCE.to_string();
        let entry = rewrite.record(&sources);
        match t.rewrites.as_mut() {
            Some(Json::Array(list)) => list.push(entry),
            _ => t.rewrites = Some(Json::Array(vec![entry])),
        }
        t.files.clear();
        t.segment_files.clear();
    }
    meta
}

/// What a rewrite removes from a block, counted exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewriteStats {
    pub series_in: u64,
    pub samples_in: u64,
    pub series_out: u64,
    pub samples_out: u64,
    /// Series whose every sample a deletion request removed.
    pub series_deleted: u64,
    /// Series a relabel rule dropped (or left without labels).
    pub series_dropped: u64,
    /// Series merged into another one because a relabel made them identical.
    pub series_merged: u64,
}

impl RewriteStats {
    pub fn series_removed(&self) -> u64 {
        self.series_in - self.series_out
    }
    pub fn samples_removed(&self) -> u64 {
        self.samples_in - self.samples_out
    }
}

/// A block scanned against a rewrite: its tombstones with the deletions added, the
/// output series (when relabelling), and the exact counts.
struct Scan {
    tombstones: Tombstones,
    /// Sorted by label set: each output series and the source series it is made of.
    series: Option<Vec<(Labels, Vec<u32>)>>,
    stats: RewriteStats,
}

fn bad(block: &Block, labels: &Labels, problem: String) -> Error {
    Error::BadSeries { path: block.index_path(), series: labels.to_label_string(), problem }
}

/// Timestamps of the samples a series keeps, or only their count.
fn kept_samples(
    block: &Block,
    labels: &Labels,
    chunks: &[crate::format::chunks::ChunkMeta],
    deleted: &[Interval],
    mut timestamps: Option<&mut Vec<i64>>,
) -> Result<(u64, u64)> {
    let (mut total, mut kept) = (0u64, 0u64);
    for m in chunks {
        let raw = block.chunk(m.chunk_ref)?;
        let n = ChunkToWrite { encoding: raw.encoding, data: raw.data, min_time: 0, max_time: 0, record: None }
            .num_samples();
        total += n;
        let hit = deleted.iter().any(|iv| iv.overlaps(m.min_time, m.max_time));
        if !hit && timestamps.is_none() {
            kept += n;
            continue;
        }
        let samples = decode(raw.encoding, raw.data)
            .map_err(|e| bad(block, labels, format!("chunk at {}: {e}", m.chunk_ref)))?
            .into_values();
        for (t, _) in samples {
            if !deleted.iter().any(|iv| iv.contains(t)) {
                kept += 1;
                if let Some(ts) = timestamps.as_deref_mut() {
                    ts.push(t);
                }
            }
        }
    }
    Ok((total, kept))
}

fn scan(block: &Block, rewrite: &Rewrite) -> Result<Scan> {
    if block.meta.resolution() != 0 {
        // Aggregate chunks hold five series in one; deleting samples from them would
        // need re-aggregation (Thanos's rewrite reads raw chunks only too).
        return Err(Error::BadRequest(format!(
            "block {}: a downsampled block ({} resolution): rewrite works on raw blocks; rewrite the raw block \
             and downsample it again",
            block.meta.ulid,
            crate::time::go_duration_ms(block.meta.resolution())
        )));
    }
    let index = block.index()?;
    let mut tombstones = block.tombstones.clone();
    let mut stats = RewriteStats::default();
    // Output label set -> (source series, samples each keeps).
    let mut groups: BTreeMap<Labels, Vec<(u32, u64)>> = BTreeMap::new();
    for entry in block.series(&index)? {
        let e = entry?;
        stats.series_in += 1;
        for d in &rewrite.deletions {
            if d.selector.matches(&e.labels) {
                for iv in d.effective_intervals() {
                    tombstones.add(e.id as u64, iv);
                }
            }
        }
        let deleted = tombstones.get(e.id as u64);
        let (total, kept) = kept_samples(block, &e.labels, &e.chunks, deleted, None)?;
        stats.samples_in += total;
        if kept == 0 {
            stats.series_deleted += 1;
            continue;
        }
        if rewrite.relabels.is_empty() {
            stats.series_out += 1;
            stats.samples_out += kept;
            continue;
        }
        let map: BTreeMap<String, String> = e
            .labels
            .iter()
            .map(|l| (String::from_utf8_lossy(&l.name).into_owned(), String::from_utf8_lossy(&l.value).into_owned()))
            .collect();
        match relabel(&rewrite.relabels, map) {
            Some(out) if !out.is_empty() => groups.entry(Labels::from_pairs(out)).or_default().push((e.id, kept)),
            _ => stats.series_dropped += 1,
        }
    }
    if rewrite.relabels.is_empty() {
        return Ok(Scan { tombstones, series: None, stats });
    }
    let mut series = Vec::with_capacity(groups.len());
    let mut refs = crate::format::index::SeriesRefs::default();
    let mut ts = Vec::new();
    for (labels, members) in groups {
        stats.series_out += 1;
        if let [(_, kept)] = members[..] {
            stats.samples_out += kept;
        } else {
            // Merged one-to-one: one sample per timestamp.
            stats.series_merged += members.len() as u64 - 1;
            ts.clear();
            for &(id, _) in &members {
                index.series_refs(id, &mut refs).map_err(|e| Error::corrupt(block.index_path(), e))?;
                kept_samples(block, &labels, &refs.chunks, tombstones.get(id as u64), Some(&mut ts))?;
            }
            ts.sort_unstable();
            ts.dedup();
            stats.samples_out += ts.len() as u64;
        }
        series.push((labels, members.into_iter().map(|(id, _)| id).collect()));
    }
    Ok(Scan { tombstones, series: Some(series), stats })
}

/// Counts what [`rewrite_block`] would remove, writing nothing (`--dry-run`).
pub fn analyse(block: &Block, rewrite: &Rewrite) -> Result<RewriteStats> {
    Ok(scan(block, rewrite)?.stats)
}

/// The result of a rewrite: the new block (none when every series went) and the counts.
#[derive(Debug)]
pub struct Rewritten {
    pub block: Option<(PathBuf, BlockMeta)>,
    pub stats: RewriteStats,
}

/// Rewrites `block` into a new block `ulid` under `parent` (written crash-safely by the
/// block writer). `write_tombstones` writes an empty tombstones file as Prometheus does;
/// Thanos blocks have none. The source is left as it is.
pub fn rewrite_block(
    mut block: Block,
    parent: &Path,
    ulid: Ulid,
    rewrite: &Rewrite,
    write_tombstones: bool,
) -> Result<Rewritten> {
    tracing::info!(block = %block.meta.ulid, new = %ulid, "rewriting block");
    let Scan { tombstones, series, stats } = scan(&block, rewrite)?;
    block.tombstones = tombstones;
    let meta = rewritten_meta(&block.meta, ulid, rewrite);
    let opts = MergeOptions { dedup: DedupFunc::OneToOne, write_tombstones, ..Default::default() };
    let out = match &series {
        None => merge_blocks(&[&block], parent, ulid, meta, &opts, &|_| {})?,
        Some(series) => merge_mapped(&block, series, parent, ulid, meta, &opts, &|_| {})?,
    };
    tracing::info!(
        block = %block.meta.ulid,
        new = %ulid,
        series_removed = stats.series_removed(),
        samples_removed = stats.samples_removed(),
        "rewrote block"
    );
    Ok(Rewritten { block: out, stats })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::block::BlockWriter;
    use crate::compact::merge::encode_values;
    use crate::format::sample::Value;
    use proptest::prelude::*;

    type Series = BTreeMap<Vec<(String, String)>, BTreeMap<i64, u64>>;

    /// Writes a block of float series (120 samples per chunk) under `parent`.
    fn write_block(parent: &Path, series: &Series, max_t: i64) -> Block {
        let ulid = Ulid::new();
        let mut symbols: Vec<&str> =
            series.keys().flat_map(|l| l.iter().flat_map(|(n, v)| [n.as_str(), v.as_str()])).collect();
        symbols.sort_unstable();
        symbols.dedup();
        let mut w = BlockWriter::new(parent, ulid, &symbols).unwrap();
        for (labels, samples) in series {
            let vals: Vec<(i64, Value)> = samples.iter().map(|(t, v)| (*t, Value::Float(f64::from_bits(*v)))).collect();
            let chunks = encode_values(&vals, 120).unwrap();
            let cw: Vec<ChunkToWrite<'_>> = chunks
                .iter()
                .map(|c| ChunkToWrite {
                    encoding: c.encoding,
                    data: &c.data,
                    min_time: c.min_time,
                    max_time: c.max_time,
                    record: None,
                })
                .collect();
            w.add_series(&Labels::from_pairs(labels.iter().map(|(a, b)| (a, b))), &cw).unwrap();
        }
        let (dir, _) = w.finish(BlockMeta::new(ulid, 0, max_t + 1), None).unwrap();
        Block::open(&dir).unwrap()
    }

    fn read_block(b: &Block) -> Series {
        let index = b.index().unwrap();
        let mut out = Series::new();
        for e in b.series(&index).unwrap() {
            let e = e.unwrap();
            let key = e
                .labels
                .iter()
                .map(|l| (String::from_utf8(l.name.clone()).unwrap(), String::from_utf8(l.value.clone()).unwrap()))
                .collect();
            let m = out.entry(key).or_default();
            for c in &e.chunks {
                let raw = b.chunk(c.chunk_ref).unwrap();
                for (t, v) in decode(raw.encoding, raw.data).unwrap().into_values() {
                    let Value::Float(x) = v else { panic!("float") };
                    assert!(m.insert(t, x.to_bits()).is_none(), "two samples at {t}");
                }
            }
        }
        out
    }

    #[test]
    fn downsampled_blocks_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let mut input = Series::new();
        input.insert(vec![("a".into(), "b".into())], [(1, 1f64.to_bits())].into());
        let mut block = write_block(tmp.path(), &input, 10);
        let mut t = crate::format::meta::ThanosMeta::default();
        t.downsample.resolution = crate::format::meta::RES_5M;
        block.meta.thanos = Some(t);
        let rw = Rewrite { deletions: parse_deletions("- matchers: '{a=\"b\"}'\n").unwrap(), relabels: vec![] };
        let e = analyse(&block, &rw).unwrap_err().to_string();
        assert!(e.contains("downsampled block (5m0s resolution)"), "{e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Deleting `{job="a"}` over an interval and dropping `inst` gives exactly the
        /// input minus the deleted samples with the colliding series' union, and the
        /// dry run's counts are the output's.
        #[test]
        fn rewrite_is_the_input_minus_deletions_with_relabel_unions(
            steps in proptest::collection::vec(1i64..6, 1..5),
            del in (0i64..400, 0i64..200),
            relabel_too in any::<bool>(),
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let mut input = Series::new();
            for (i, step) in steps.iter().enumerate() {
                for (j, job) in ["a", "b"].iter().enumerate() {
                    let labels = vec![
                        ("__name__".to_string(), "m".to_string()),
                        ("inst".to_string(), i.to_string()),
                        ("job".to_string(), job.to_string()),
                    ];
                    // Equal values at equal timestamps across instances.
                    let s = (0..600).step_by(*step as usize).map(|t| (t as i64, ((t + 1000 * j) as f64).to_bits())).collect();
                    input.insert(labels, s);
                }
            }
            let block = write_block(tmp.path(), &input, 600);
            let (lo, hi) = (del.0, del.0 + del.1);
            let yaml = format!("- matchers: '{{job=\"a\"}}'\n  intervals: [{{mint: {lo}, maxt: {hi}}}]\n");
            let rw = Rewrite {
                deletions: parse_deletions(&yaml).unwrap(),
                relabels: if relabel_too {
                    crate::relabel::parse_rules("- action: labeldrop\n  regex: inst\n").unwrap()
                } else {
                    vec![]
                },
            };
            let mut want = Series::new();
            for (labels, samples) in &input {
                let deleted = labels.iter().any(|(n, v)| n == "job" && v == "a");
                let key: Vec<(String, String)> =
                    labels.iter().filter(|(n, _)| !(relabel_too && n == "inst")).cloned().collect();
                for (t, v) in samples {
                    if !(deleted && (lo..=hi).contains(t)) {
                        want.entry(key.clone()).or_default().insert(*t, *v);
                    }
                }
            }
            let stats = analyse(&block, &rw).unwrap();
            let out_dir = tmp.path().join("out");
            std::fs::create_dir_all(&out_dir).unwrap();
            let done = rewrite_block(block, &out_dir, Ulid::new(), &rw, false).unwrap();
            prop_assert_eq!(done.stats, stats);
            let (path, meta) = done.block.unwrap();
            let got = read_block(&Block::open(&path).unwrap());
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(stats.series_out, meta.stats.num_series);
            prop_assert_eq!(stats.samples_out, meta.stats.num_samples);
            prop_assert_eq!(stats.samples_out, want.values().map(|m| m.len() as u64).sum::<u64>());
        }
    }

    #[test]
    fn deletion_config_parses_thanos_format() {
        let d = parse_deletions(
            "- matchers: '{job=\"x\"}'\n  intervals:\n  - mint: 10\n    maxt: 20\n- matchers: 'up{a=~\"b.*\"}'\n",
        )
        .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].intervals, vec![Interval { min: 10, max: 20 }]);
        assert!(d[1].intervals.is_empty());
        assert_eq!(d[1].effective_intervals(), vec![Interval { min: i64::MIN, max: i64::MAX }]);
        assert_eq!(d[0].to_json(), json!({"matchers": ["job=\"x\""], "intervals": [{"Mint": 10, "Maxt": 20}]}));
    }

    #[test]
    fn bad_deletion_config_names_the_request() {
        let e = parse_deletions("- matchers: '{job=\"x\"}'\n- matchers: '{job=x}'\n").unwrap_err().to_string();
        assert!(e.contains("deletion request 2") && e.contains("matchers"), "{e}");
        let e =
            parse_deletions("- matchers: '{a=\"b\"}'\n  intervals: [{mint: 5, maxt: 1}]\n").unwrap_err().to_string();
        assert!(e.contains("deletion request 1: interval 1"), "{e}");
        assert!(parse_deletions("- matcher: x\n").is_err());
    }

    #[test]
    fn meta_records_the_rewrite_as_thanos_does() {
        let old = Ulid::new();
        let mut src = BlockMeta::new(old, 0, 10);
        src.thanos = Some(Default::default());
        let rw = Rewrite { deletions: parse_deletions("- matchers: '{job=\"x\"}'\n").unwrap(), relabels: vec![] };
        let new = Ulid::new();
        let m = rewritten_meta(&src, new, &rw);
        assert_eq!(m.compaction.sources, vec![new]);
        let t = m.thanos.unwrap();
        assert_eq!(t.source, "bucket.rewrite");
        assert_eq!(
            t.rewrites.unwrap(),
            json!([{"sources": [old.to_string()], "deletions_applied": [{"matchers": ["job=\"x\""]}]}])
        );
    }
}
