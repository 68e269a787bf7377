//! `strata dump`: every sample of a directory of blocks, in `promtool tsdb dump`'s line
//! format (`{labels} VALUE TIMESTAMP_MS`).
//!
//! Owns: merging series across blocks in label order, applying the time range, the
//! selector and tombstones, and printing. Where the same series appears in several
//! blocks its samples are merged by timestamp, one sample per timestamp, as Prometheus's
//! querier does.
//! Must not: modify blocks.

use std::io::Write;
use std::path::Path;

use crate::block::{list_blocks, Block, SeriesEntry};
use crate::error::{Error, Result};
use crate::format::aggr::AggrType;
use crate::format::chunks::Encoding;
use crate::format::meta::RES_RAW;
use crate::format::sample::{decode, decode_aggr, Value};
use crate::format::tombstones::Interval;
use crate::gofmt::push_g;
use crate::labels::{Labels, Selector};

/// What to print.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    pub min_time: i64,
    pub max_time: i64,
    pub selector: Option<Selector>,
    /// For downsampled blocks: which aggregate to print. Raw blocks ignore it.
    pub aggr: Option<AggrType>,
}

impl Default for DumpOptions {
    fn default() -> Self {
        DumpOptions { min_time: i64::MIN, max_time: i64::MAX, selector: None, aggr: None }
    }
}

/// Reads the samples of one series in one block, filtered by range and tombstones.
pub fn series_samples(block: &Block, entry: &SeriesEntry, opts: &DumpOptions) -> Result<Vec<(i64, Value)>> {
    let deleted: &[Interval] = block.tombstones.get(entry.id as u64);
    let mut out = Vec::new();
    for meta in &entry.chunks {
        if meta.max_time < opts.min_time || meta.min_time > opts.max_time {
            continue;
        }
        let raw = block.chunk(meta.chunk_ref)?;
        let samples = if raw.encoding == Encoding::Aggr as u8 {
            let which = opts.aggr.ok_or_else(|| {
                Error::BadRequest(format!(
                    "{}: block is downsampled; choose an aggregate with --aggr count|sum|min|max|counter",
                    block.dir.display()
                ))
            })?;
            decode_aggr(raw.data, which)
        } else {
            decode(raw.encoding, raw.data)
        }
        .map_err(|mut e| {
            e.problem = format!("series {}: chunk at {}: {}", entry.labels, meta.chunk_ref, e.problem);
            e
        })
        .map_err(|e| {
            Error::corrupt(
                block.segments().get(meta.chunk_ref.segment() as usize).map(|s| s.path.as_path()).unwrap_or(&block.dir),
                e,
            )
        })?;
        for (t, v) in samples.into_values() {
            if t < opts.min_time || t > opts.max_time || deleted.iter().any(|iv| iv.contains(t)) {
                continue;
            }
            out.push((t, v));
        }
    }
    Ok(out)
}

/// Merges sample lists sorted by time; the first list wins a tie.
fn merge_samples(mut lists: Vec<Vec<(i64, Value)>>) -> Vec<(i64, Value)> {
    lists.retain(|l| !l.is_empty());
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().expect("one list"),
        _ => {
            let mut all: Vec<(usize, i64, Value)> = Vec::new();
            for (i, l) in lists.into_iter().enumerate() {
                all.extend(l.into_iter().map(|(t, v)| (i, t, v)));
            }
            all.sort_by_key(|&(i, t, _)| (t, i));
            // One sample per timestamp across blocks; a block's own repeated timestamp
            // (the counter aggregate's trailing raw value) is kept.
            all.dedup_by(|later, kept| later.1 == kept.1 && later.0 != kept.0);
            all.into_iter().map(|(_, t, v)| (t, v)).collect()
        }
    }
}

/// Appends one dump line.
pub fn push_line(line: &mut String, labels: &str, t: i64, v: &Value) {
    line.push_str(labels);
    line.push(' ');
    match v {
        Value::Float(x) => push_g(line, *x),
        Value::Histogram(h) => line.push_str(&h.to_float().to_string()),
        Value::FloatHistogram(h) => line.push_str(&h.to_string()),
    }
    line.push(' ');
    line.push_str(&t.to_string());
    line.push('\n');
}

/// Opens every block of `dir` (a data directory or a single block).
pub fn open_blocks(dir: &Path) -> Result<Vec<Block>> {
    list_blocks(dir)?.iter().map(|e| Block::open(&e.path)).collect()
}

/// Dumps `dir` to `out`.
pub fn dump(dir: &Path, opts: &DumpOptions, out: &mut dyn Write) -> Result<()> {
    let blocks = open_blocks(dir)?;
    if opts.aggr.is_none()
        && blocks.iter().any(|b| b.meta.resolution() != RES_RAW)
        && blocks.iter().all(|b| b.meta.resolution() != RES_RAW)
    {
        return Err(Error::BadRequest(format!(
            "{}: only downsampled blocks here; choose an aggregate with --aggr count|sum|min|max|counter",
            dir.display()
        )));
    }
    if opts.aggr.is_some() {
        // Aggregates of different resolutions do not merge into one series.
        let mut res: Vec<i64> = blocks.iter().map(|b| b.meta.resolution()).filter(|&r| r != RES_RAW).collect();
        res.sort_unstable();
        res.dedup();
        if res.len() > 1 {
            return Err(Error::BadRequest(format!("{}: downsampled blocks of several resolutions ({} ms); dump one block, or a directory of one resolution", dir.display(), res.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(", "))));
        }
    }
    let indexes = blocks.iter().map(|b| b.index()).collect::<Result<Vec<_>>>()?;
    let mut iters = Vec::with_capacity(blocks.len());
    for (b, ix) in blocks.iter().zip(&indexes) {
        // With --aggr, raw blocks are left out; without it, downsampled ones are.
        let wanted = match opts.aggr {
            Some(_) => b.meta.resolution() != RES_RAW,
            None => b.meta.resolution() == RES_RAW,
        };
        if wanted {
            iters.push((b, b.series(ix)?.peekable()));
        }
    }
    let mut line = String::with_capacity(256);
    loop {
        // The smallest label set among the heads.
        let mut min: Option<Labels> = None;
        for (_, it) in iters.iter_mut() {
            match it.peek() {
                Some(Ok(e)) if min.as_ref().is_none_or(|m| e.labels < *m) => min = Some(e.labels.clone()),
                Some(Ok(_)) => {}
                Some(Err(_)) => return Err(it.next().expect("peeked").expect_err("peeked error")),
                None => {}
            }
        }
        let Some(labels) = min else { break };
        let selected = opts.selector.as_ref().is_none_or(|s| s.matches(&labels));
        let mut lists = Vec::new();
        for (b, it) in iters.iter_mut() {
            if matches!(it.peek(), Some(Ok(e)) if e.labels == labels) {
                let e = it.next().expect("peeked")?;
                if selected {
                    lists.push(series_samples(b, &e, opts)?);
                }
            }
        }
        if !selected {
            continue;
        }
        let ls = labels.to_string();
        for (t, v) in merge_samples(lists) {
            line.clear();
            push_line(&mut line, &ls, t, &v);
            out.write_all(line.as_bytes()).map_err(|e| Error::io("<output>", e))?;
        }
    }
    out.flush().map_err(|e| Error::io("<output>", e))?;
    Ok(())
}
