//! The block index (`index`): symbol table, series with their chunk metas, postings,
//! postings offset table and TOC. Reads format versions 1 and 2, writes version 2.
//!
//! Owns: [`IndexReader`], zero-copy over the file's bytes, and [`IndexWriter`], which
//! enforces the section order (symbols, then series in label order, then postings and
//! TOC) and every invariant readers rely on (sorted unique symbols, strictly increasing
//! series, 16-byte aligned series, contiguous 4-byte aligned postings).
//! Must not: read chunk data or know paths. See `docs/format/index.md`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::io::{self, Write};

use rayon::prelude::*;

use super::chunks::{ChunkMeta, ChunkRef};
use super::encoding::{crc32c, put_be32, put_be64, put_uvarint, put_uvarint_bytes, put_varint, uvarint_len, Decoder};
use crate::error::{FormatError, FormatResult};
use crate::labels::{LabelPairs, Labels};

/// Hasher of the writer's maps: keys are symbols and symbol refs of the block being
/// written, looked up for every label of every series.
type FastHash = foldhash::fast::RandomState;

pub const INDEX_MAGIC: u32 = 0xBAAA_D700;
pub const FORMAT_V1: u8 = 1;
pub const FORMAT_V2: u8 = 2;
const HEADER_LEN: usize = 5;
const TOC_LEN: usize = 6 * 8 + 4;

/// Offsets of the index sections, from the last 52 bytes of the file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Toc {
    pub symbols: u64,
    pub series: u64,
    pub label_indices: u64,
    pub label_indices_table: u64,
    pub postings: u64,
    pub postings_table: u64,
}

impl Toc {
    fn read(data: &[u8]) -> FormatResult<Toc> {
        if data.len() < HEADER_LEN + TOC_LEN {
            return Err(FormatError::new(
                "index TOC",
                0,
                format!("index is {} bytes, too short for header and TOC", data.len()),
            ));
        }
        let at = data.len() - TOC_LEN;
        let body = &data[at..at + 48];
        let stored = u32::from_be_bytes(data[at + 48..].try_into().expect("4 bytes"));
        let actual = crc32c(body);
        if stored != actual {
            return Err(FormatError::new(
                "index TOC",
                at as u64,
                format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
            ));
        }
        let mut d = Decoder::new(body, at as u64, "index TOC");
        let toc = Toc {
            symbols: d.be64("symbols offset")?,
            series: d.be64("series offset")?,
            label_indices: d.be64("label indices offset")?,
            label_indices_table: d.be64("label indices table offset")?,
            postings: d.be64("postings offset")?,
            postings_table: d.be64("postings offset table offset")?,
        };
        let limit = at as u64;
        for (name, v) in [
            ("symbols", toc.symbols),
            ("series", toc.series),
            ("postings", toc.postings),
            ("postings offset table", toc.postings_table),
        ] {
            if v > limit {
                return Err(FormatError::new(
                    "index TOC",
                    at as u64,
                    format!("{name} offset {v} lies beyond the TOC at {limit}"),
                ));
            }
        }
        Ok(toc)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for v in [
            self.symbols,
            self.series,
            self.label_indices,
            self.label_indices_table,
            self.postings,
            self.postings_table,
        ] {
            put_be64(out, v);
        }
        let crc = crc32c(&out[start..]);
        put_be32(out, crc);
    }
}

/// Reads a `len BE32 | body | crc BE32` section at `off`; returns the body, CRC-checked.
fn section<'a>(data: &'a [u8], off: u64, what: &'static str) -> FormatResult<&'a [u8]> {
    let end_limit = data.len() as u64;
    if off.saturating_add(4) > end_limit {
        return Err(FormatError::new(
            what,
            off,
            format!("section offset {off} is past the end of the index ({end_limit} bytes)"),
        ));
    }
    let o = off as usize;
    let len = u32::from_be_bytes(data[o..o + 4].try_into().expect("4 bytes")) as u64;
    if off + 4 + len + 4 > end_limit {
        return Err(FormatError::new(what, off, format!("section length {len} runs past the end of the index")));
    }
    let body = &data[o + 4..o + 4 + len as usize];
    let stored = u32::from_be_bytes(data[o + 4 + len as usize..o + 8 + len as usize].try_into().expect("4 bytes"));
    let actual = crc32c(body);
    if stored != actual {
        return Err(FormatError::new(
            what,
            off,
            format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
        ));
    }
    Ok(body)
}

/// One entry of the postings offset table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PostingsEntry<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// Absolute offset of the postings list's `len` field.
    pub offset: u64,
}

/// A postings list: series refs, strictly increasing in a valid index.
#[derive(Clone)]
pub struct Postings<'a> {
    refs: &'a [u8],
}

impl<'a> Postings<'a> {
    pub fn len(&self) -> usize {
        self.refs.len() / 4
    }
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }
}

impl Iterator for Postings<'_> {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.refs.len() < 4 {
            return None;
        }
        let v = u32::from_be_bytes(self.refs[..4].try_into().expect("4 bytes"));
        self.refs = &self.refs[4..];
        Some(v)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

/// A series entry with labels still as symbol references.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesRefs {
    /// (name, value) symbol references.
    pub labels: Vec<(u32, u32)>,
    pub chunks: Vec<ChunkMeta>,
}

/// One symbol in this many keeps its position in memory (v2); a lookup scans forward
/// from the nearest kept one, over at most this many minus one symbols.
const SYMBOL_SAMPLE: usize = 8;

/// One postings offset table entry in this many keeps its position in memory (v2), as
/// Prometheus's reader does; a lookup binary-searches the kept entries, then scans.
const POSTINGS_SAMPLE: usize = 32;

/// Reader over a whole index file.
///
/// Memory does not grow with the number of symbols or label pairs as fast as the index
/// does: only every [`SYMBOL_SAMPLE`]th symbol's position and every [`POSTINGS_SAMPLE`]th
/// postings offset table entry's position are kept (4 and 8 bytes each), and lookups
/// decode the rest from the mapped bytes. (Index v1, which has no sorted offset table,
/// keeps its entries sorted in memory.)
pub struct IndexReader<'a> {
    data: &'a [u8],
    version: u8,
    toc: Toc,
    /// Symbol count (v2; v1 symbols are addressed by offset).
    symbol_count: usize,
    /// v2: position of every SYMBOL_SAMPLE-th symbol's uvarint length, relative to
    /// `symbol_table.0` (the table's count field). v1: unused.
    symbol_samples: Vec<u32>,
    symbol_table: (usize, usize),
    postings: PostingsTable<'a>,
}

/// The postings offset table, checked once when the reader opens (CRC, structure).
enum PostingsTable<'a> {
    /// v2: the entries stay in the file, sorted; the absolute position of every
    /// POSTINGS_SAMPLE-th entry, and the bytes of all of them.
    Sampled { entries: &'a [u8], base: u64, count: usize, samples: Vec<usize> },
    /// v1 (written in map order): every entry, sorted.
    Sorted(Vec<PostingsEntry<'a>>),
}

/// Decodes one postings offset table entry at the decoder's position.
fn postings_entry<'a>(d: &mut Decoder<'a>) -> FormatResult<PostingsEntry<'a>> {
    let keys = d.uvarint("key count")?;
    if keys != 2 {
        return Err(d.err(format!("postings offset table entry has {keys} keys, want 2")));
    }
    let name = d.uvarint_bytes("label name")?;
    let value = d.uvarint_bytes("label value")?;
    let offset = d.uvarint("postings offset")?;
    Ok(PostingsEntry { name, value, offset })
}

impl<'a> IndexReader<'a> {
    /// Opens an index: checks magic, version, TOC CRC, symbol table CRC and order-free
    /// structure, postings offset table CRC and that every label name is a symbol.
    pub fn new(data: &'a [u8]) -> FormatResult<IndexReader<'a>> {
        if data.len() < HEADER_LEN {
            return Err(FormatError::new(
                "index header",
                0,
                format!("index is {} bytes, shorter than its 5-byte header", data.len()),
            ));
        }
        let magic = u32::from_be_bytes(data[..4].try_into().expect("4 bytes"));
        if magic != INDEX_MAGIC {
            return Err(FormatError::new("index header", 0, format!("magic {magic:#010x}, want {INDEX_MAGIC:#010x}")));
        }
        let version = data[4];
        if version != FORMAT_V1 && version != FORMAT_V2 {
            return Err(FormatError::new(
                "index header",
                4,
                format!("unsupported index format version {version} (strata reads 1 and 2)"),
            ));
        }
        let toc = Toc::read(data)?;

        // Symbol table.
        let body = section(data, toc.symbols, "index symbol table")?;
        let body_start = toc.symbols as usize + 4;
        let mut d = Decoder::new(body, body_start as u64, "index symbol table");
        let count = d.be32("symbol count")? as usize;
        if count > body.len() {
            return Err(d.err(format!("symbol count {count} cannot fit in {} bytes", body.len())));
        }
        let mut symbol_samples = Vec::with_capacity(if version == FORMAT_V2 { count / SYMBOL_SAMPLE + 1 } else { 0 });
        for i in 0..count {
            if version == FORMAT_V2 && i % SYMBOL_SAMPLE == 0 {
                // The table's length is a 32-bit field, so positions within it fit.
                symbol_samples.push(d.position() as u32);
            }
            d.uvarint_bytes("symbol")?;
        }
        if !d.is_empty() {
            return Err(d.err(format!("{} bytes left after {count} symbols", d.remaining())));
        }
        let symbol_table = (body_start, body_start + body.len());

        // Postings offset table: every entry decoded once to check it; v2 keeps a sample.
        let body = section(data, toc.postings_table, "index postings offset table")?;
        let base = toc.postings_table + 4;
        let mut d = Decoder::new(body, base, "index postings offset table");
        let n = d.be32("entry count")? as usize;
        if n > body.len() {
            return Err(d.err(format!("entry count {n} cannot fit in {} bytes", body.len())));
        }
        let postings = if version == FORMAT_V1 {
            let mut all = Vec::with_capacity(n);
            for _ in 0..n {
                all.push(postings_entry(&mut d)?);
            }
            // Version 1 wrote this table in map order; lookups need it sorted.
            all.sort_by(|a, b| (a.name, a.value).cmp(&(b.name, b.value)));
            PostingsTable::Sorted(all)
        } else {
            let mut samples = Vec::with_capacity(n / POSTINGS_SAMPLE + 1);
            for i in 0..n {
                if i % POSTINGS_SAMPLE == 0 {
                    samples.push(d.position());
                }
                postings_entry(&mut d)?;
            }
            PostingsTable::Sampled { entries: body, base, count: n, samples }
        };
        if !d.is_empty() {
            return Err(d.err(format!("{} bytes left after {n} entries", d.remaining())));
        }
        Ok(IndexReader { data, version, toc, symbol_count: count, symbol_samples, symbol_table, postings })
    }

    pub fn version(&self) -> u8 {
        self.version
    }
    pub fn toc(&self) -> &Toc {
        &self.toc
    }
    pub fn len_bytes(&self) -> usize {
        self.data.len()
    }

    /// Every symbol, in table order.
    pub fn symbols(&self) -> impl Iterator<Item = FormatResult<&'a [u8]>> + '_ {
        let (start, end) = self.symbol_table;
        let mut d = Decoder::new(&self.data[start..end], start as u64, "index symbol table");
        let _ = d.be32("symbol count");
        std::iter::from_fn(move || if d.is_empty() { None } else { Some(d.uvarint_bytes("symbol")) })
    }

    /// Resolves a symbol reference: an ordinal in v2, an absolute file offset in v1.
    pub fn symbol(&self, r: u32) -> FormatResult<&'a [u8]> {
        let (start, end) = self.symbol_table;
        if self.version == FORMAT_V2 {
            let r = r as usize;
            if r >= self.symbol_count {
                return Err(FormatError::new(
                    "index symbol table",
                    start as u64,
                    format!("unknown symbol reference {r} (table has {})", self.symbol_count),
                ));
            }
            // Every symbol was decoded when the reader opened, so the scan stays inside
            // the table.
            let at = start + self.symbol_samples[r / SYMBOL_SAMPLE] as usize;
            let mut d = Decoder::new(&self.data[at..end], at as u64, "index symbol");
            for _ in 0..r % SYMBOL_SAMPLE {
                d.uvarint_bytes("symbol")?;
            }
            return d.uvarint_bytes("symbol");
        }
        let r = r as usize;
        if r < start + 4 || r >= end {
            return Err(FormatError::new(
                "index symbol table",
                r as u64,
                format!("symbol offset {r} lies outside the symbol table"),
            ));
        }
        Decoder::new(&self.data[r..end], r as u64, "index symbol").uvarint_bytes("symbol")
    }

    /// Every entry of the postings offset table, sorted by label name and value (v2: in
    /// file order, which is sorted in a valid index; they are decoded as they are read).
    pub fn postings_entries(&self) -> impl Iterator<Item = PostingsEntry<'a>> + '_ {
        let (sampled, sorted) = match &self.postings {
            PostingsTable::Sampled { entries, base, count, samples } => {
                let mut d = Decoder::new(entries, *base, "index postings offset table");
                let first = samples.first().copied().unwrap_or(entries.len());
                let _ = d.bytes(first, "entry count");
                // Every entry was decoded when the reader opened: none fails now.
                (Some((0..*count).map_while(move |_| postings_entry(&mut d).ok())), None)
            }
            PostingsTable::Sorted(all) => (None, Some(all.iter().copied())),
        };
        sampled.into_iter().flatten().chain(sorted.into_iter().flatten())
    }

    /// Label names, excluding the all-postings key.
    pub fn label_names(&self) -> Vec<&'a [u8]> {
        let mut out: Vec<&[u8]> = Vec::new();
        for e in self.postings_entries() {
            if !e.name.is_empty() && out.last() != Some(&e.name) {
                out.push(e.name);
            }
        }
        out
    }

    /// The offset of the postings list of one label pair, if the table has it.
    fn postings_offset(&self, name: &[u8], value: &[u8]) -> Option<u64> {
        let key = (name, value);
        match &self.postings {
            PostingsTable::Sorted(all) => {
                all.binary_search_by(|e| (e.name, e.value).cmp(&key)).ok().map(|i| all[i].offset)
            }
            PostingsTable::Sampled { entries, base, samples, .. } => {
                let at = |pos: usize| {
                    let mut d = Decoder::new(&entries[pos..], base + pos as u64, "index postings offset table");
                    postings_entry(&mut d).ok().map(|e| (e, d))
                };
                // The last kept entry not after the key, then a scan of its run.
                let run = samples.partition_point(|&pos| at(pos).is_some_and(|(e, _)| (e.name, e.value) <= key));
                let start = *samples.get(run.checked_sub(1)?)?;
                let mut d = Decoder::new(&entries[start..], base + start as u64, "index postings offset table");
                for _ in 0..POSTINGS_SAMPLE {
                    let e = postings_entry(&mut d).ok()?;
                    match (e.name, e.value).cmp(&key) {
                        std::cmp::Ordering::Less => {}
                        std::cmp::Ordering::Equal => return Some(e.offset),
                        std::cmp::Ordering::Greater => return None,
                    }
                    if d.is_empty() {
                        break;
                    }
                }
                None
            }
        }
    }

    /// Reads the postings list at an absolute offset.
    pub fn postings_at(&self, offset: u64) -> FormatResult<Postings<'a>> {
        let body = section(self.data, offset, "index postings list")?;
        let mut d = Decoder::new(body, offset + 4, "index postings list");
        let n = d.be32("postings count")? as usize;
        if d.remaining() != n * 4 {
            return Err(
                d.err(format!("postings count {n} does not match the list length ({} bytes of refs)", d.remaining()))
            );
        }
        Ok(Postings { refs: d.rest() })
    }

    /// The postings list of one label pair, if present.
    pub fn postings(&self, name: &[u8], value: &[u8]) -> FormatResult<Option<Postings<'a>>> {
        match self.postings_offset(name, value) {
            Some(offset) => self.postings_at(offset).map(Some),
            None => Ok(None),
        }
    }

    /// Every series ref, in order.
    pub fn all_postings(&self) -> FormatResult<Postings<'a>> {
        Ok(self.postings(b"", b"")?.unwrap_or(Postings { refs: &[] }))
    }

    fn series_offset(&self, id: u32) -> u64 {
        if self.version == FORMAT_V2 {
            id as u64 * 16
        } else {
            id as u64
        }
    }

    /// The raw bytes of a series entry (after its uvarint length), CRC-checked.
    fn series_body(&self, id: u32) -> FormatResult<(&'a [u8], u64)> {
        let off = self.series_offset(id);
        if off < self.toc.series || off >= self.data.len() as u64 {
            return Err(FormatError::new(
                "index series",
                off,
                format!("series reference {id} points outside the index"),
            ));
        }
        let mut d = Decoder::new(&self.data[off as usize..], off, "index series");
        let len = d.uvarint("series length")?;
        let start = d.offset();
        if len > d.remaining() as u64 || d.remaining() as u64 - len < 4 {
            return Err(FormatError::new(
                "index series",
                off,
                format!("series entry length {len} runs past the end of the index"),
            ));
        }
        let body = d.bytes(len as usize, "series entry")?;
        let stored = d.be32("series checksum")?;
        let actual = crc32c(body);
        if stored != actual {
            return Err(FormatError::new(
                "index series",
                off,
                format!("series {id}: checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
            ));
        }
        Ok((body, start))
    }

    /// Decodes a series entry keeping symbol references.
    pub fn series_refs(&self, id: u32, out: &mut SeriesRefs) -> FormatResult<()> {
        out.labels.clear();
        out.chunks.clear();
        let (body, start) = self.series_body(id)?;
        let mut d = Decoder::new(body, start, "index series");
        let nl = d.uvarint("label count")? as usize;
        if nl > body.len() {
            return Err(d.err(format!("label count {nl} cannot fit in the entry")));
        }
        for _ in 0..nl {
            let n = d.uvarint32("label name ref")?;
            let v = d.uvarint32("label value ref")?;
            out.labels.push((n, v));
        }
        let nc = d.uvarint("chunk count")? as usize;
        if nc > body.len() {
            return Err(d.err(format!("chunk count {nc} cannot fit in the entry")));
        }
        let mut prev_max = 0i64;
        let mut prev_ref = 0u64;
        for i in 0..nc {
            let (mint, maxt, r) = if i == 0 {
                let mint = d.varint("chunk min time")?;
                let maxt = mint.wrapping_add(d.uvarint("chunk time span")? as i64);
                let r = d.uvarint("chunk ref")?;
                (mint, maxt, r)
            } else {
                let mint = prev_max.wrapping_add(d.uvarint("chunk min time delta")? as i64);
                let maxt = mint.wrapping_add(d.uvarint("chunk time span")? as i64);
                let r = prev_ref.wrapping_add(d.varint("chunk ref delta")? as u64);
                (mint, maxt, r)
            };
            prev_max = maxt;
            prev_ref = r;
            out.chunks.push(ChunkMeta { min_time: mint, max_time: maxt, chunk_ref: ChunkRef(r) });
        }
        if !d.is_empty() {
            return Err(d.err(format!("{} unexpected bytes at the end of series {id}", d.remaining())));
        }
        Ok(())
    }

    /// Decodes a series with its label names and values borrowed from the index bytes
    /// (no copies), and its chunk metas.
    pub fn series_borrowed(
        &self,
        id: u32,
        refs: &mut SeriesRefs,
        labels: &mut Vec<(&'a [u8], &'a [u8])>,
    ) -> FormatResult<()> {
        self.series_refs(id, refs)?;
        labels.clear();
        for &(n, v) in &refs.labels {
            labels.push((self.symbol(n)?, self.symbol(v)?));
        }
        Ok(())
    }

    /// Decodes a series: resolved labels and chunk metas.
    pub fn series(&self, id: u32, labels: &mut Labels, chunks: &mut Vec<ChunkMeta>) -> FormatResult<()> {
        let mut refs = SeriesRefs { labels: Vec::new(), chunks: std::mem::take(chunks) };
        self.series_refs(id, &mut refs)?;
        labels.clear();
        for &(n, v) in &refs.labels {
            labels.push(self.symbol(n)?, self.symbol(v)?);
        }
        *chunks = refs.chunks;
        Ok(())
    }

    /// Checks everything a reader can check beyond what `new` did: symbol order, series
    /// order and structure (label order, chunks in order and not overlapping), postings
    /// order and contiguity, offset table order, legacy label index CRCs.
    /// Calls `report` once per problem; stops a section at its first structural error.
    pub fn check(&self, mut report: impl FnMut(FormatError)) {
        let report: &mut dyn FnMut(FormatError) = &mut report;
        self.check_symbols(report);
        let entries: Vec<PostingsEntry<'a>> = self.postings_entries().collect();
        self.check_offset_table(&entries, report);
        self.check_legacy_label_indices(report);
        match self.check_postings(&entries, report) {
            Some(all) => self.check_series(&all, report),
            None if !entries.iter().any(|e| e.name.is_empty() && e.value.is_empty()) => {
                report(FormatError::new("index postings offset table", self.toc.postings_table, "no all-postings list"))
            }
            None => {}
        }
    }

    /// Symbols strictly increasing.
    fn check_symbols(&self, report: &mut dyn FnMut(FormatError)) {
        let mut prev: Option<&[u8]> = None;
        for s in self.symbols() {
            match s {
                Ok(s) => {
                    if let Some(p) = prev {
                        if p >= s {
                            report(FormatError::new(
                                "index symbol table",
                                self.toc.symbols,
                                format!(
                                    "symbols out of order: {:?} then {:?}",
                                    String::from_utf8_lossy(p),
                                    String::from_utf8_lossy(s)
                                ),
                            ));
                            break;
                        }
                    }
                    prev = Some(s);
                }
                Err(e) => {
                    report(e);
                    break;
                }
            }
        }
    }

    /// Offset table sorted; label names are symbols.
    fn check_offset_table(&self, entries: &[PostingsEntry<'a>], report: &mut dyn FnMut(FormatError)) {
        for w in entries.windows(2) {
            if (w[0].name, w[0].value) >= (w[1].name, w[1].value) {
                report(FormatError::new(
                    "index postings offset table",
                    self.toc.postings_table,
                    format!(
                        "entries out of order: {:?}={:?} then {:?}={:?}",
                        String::from_utf8_lossy(w[0].name),
                        String::from_utf8_lossy(w[0].value),
                        String::from_utf8_lossy(w[1].name),
                        String::from_utf8_lossy(w[1].value)
                    ),
                ));
                break;
            }
        }
        if self.version == FORMAT_V2 {
            let syms: Vec<&[u8]> = self.symbols().filter_map(|s| s.ok()).collect();
            for name in self.label_names() {
                if syms.binary_search(&name).is_err() {
                    report(FormatError::new(
                        "index postings offset table",
                        self.toc.postings_table,
                        format!("label name {:?} is not in the symbol table", String::from_utf8_lossy(name)),
                    ));
                }
            }
        }
    }

    /// Legacy label indices and their offset table (written by Prometheus before 3.6,
    /// promtool 2.42 included). Readers skip them, but their CRCs must still hold.
    fn check_legacy_label_indices(&self, report: &mut dyn FnMut(FormatError)) {
        let legacy = self.toc.label_indices_table;
        if legacy != 0 && legacy != self.toc.postings_table {
            match section(self.data, legacy, "index label offset table") {
                Ok(body) => {
                    let mut d = Decoder::new(body, legacy + 4, "index label offset table");
                    let res: FormatResult<()> = (|| {
                        let n = d.be32("entry count")?;
                        for _ in 0..n {
                            d.uvarint("key count")?;
                            d.uvarint_bytes("label name")?;
                            let off = d.uvarint("label index offset")?;
                            section(self.data, off, "index label index")?;
                        }
                        Ok(())
                    })();
                    if let Err(e) = res {
                        report(e);
                    }
                }
                Err(e) => report(e),
            }
        }
    }

    /// Postings lists: contiguous in offset-table order (Thanos derives each list's end
    /// from the next list's offset), each strictly increasing. Returns the all-postings
    /// list, if there is one.
    fn check_postings(&self, entries: &[PostingsEntry<'a>], report: &mut dyn FnMut(FormatError)) -> Option<Vec<u32>> {
        let mut all: Option<Vec<u32>> = None;
        let mut ordered: Vec<u64> = entries.iter().map(|e| e.offset).collect();
        if self.version == FORMAT_V2 {
            for w in ordered.windows(2) {
                let end = section(self.data, w[0], "index postings list").map(|b| w[0] + 8 + b.len() as u64);
                if let Ok(end) = end {
                    let gap = w[1].checked_sub(end);
                    let padding = self.data.get(end as usize..w[1] as usize);
                    if gap.is_none_or(|g| g >= 4) || padding.is_none_or(|p| p.iter().any(|&b| b != 0)) {
                        report(FormatError::new("index postings list", w[1], format!("postings lists are not contiguous: the list before ends at {end}, the next starts at {}", w[1])));
                        break;
                    }
                }
            }
        }
        ordered.clear();
        for e in entries {
            match self.postings_at(e.offset) {
                Ok(p) => {
                    let refs: Vec<u32> = p.collect();
                    if refs.windows(2).any(|w| w[0] >= w[1]) {
                        report(FormatError::new(
                            "index postings list",
                            e.offset,
                            format!(
                                "postings of {}={:?} are not strictly increasing",
                                String::from_utf8_lossy(e.name),
                                String::from_utf8_lossy(e.value)
                            ),
                        ));
                    }
                    if e.name.is_empty() && e.value.is_empty() {
                        all = Some(refs);
                    }
                }
                Err(err) => report(err),
            }
        }
        all
    }

    /// Series: decodable, label names sorted, labels strictly increasing across series,
    /// chunks in order.
    fn check_series(&self, all: &[u32], report: &mut dyn FnMut(FormatError)) {
        let mut prev = Labels::new();
        let mut labels = Labels::new();
        let mut chunks = Vec::new();
        let mut prev_ref: Option<u64> = None;
        for (i, &id) in all.iter().enumerate() {
            if let Err(e) = self.series(id, &mut labels, &mut chunks) {
                report(e);
                continue;
            }
            let off = self.series_offset(id);
            if labels.is_empty() {
                report(FormatError::new("index series", off, format!("series {id} has no labels")));
            }
            if labels.0.windows(2).any(|w| w[0].name >= w[1].name) {
                report(FormatError::new(
                    "index series",
                    off,
                    format!("series {labels}: label names out of order or repeated"),
                ));
            }
            if i > 0 && prev >= labels {
                report(FormatError::new("index series", off, format!("series out of order: {prev} then {labels}")));
            }
            if chunks.is_empty() {
                report(FormatError::new("index series", off, format!("series {labels} has no chunks")));
            }
            for (j, c) in chunks.iter().enumerate() {
                if j > 0 && c.min_time <= chunks[j - 1].max_time {
                    report(FormatError::new(
                        "index series",
                        off,
                        format!(
                            "series {labels}: chunk {j} [{}, {}] overlaps the chunk before it [{}, {}]",
                            c.min_time,
                            c.max_time,
                            chunks[j - 1].min_time,
                            chunks[j - 1].max_time
                        ),
                    ));
                }
                if c.max_time < c.min_time {
                    report(FormatError::new(
                        "index series",
                        off,
                        format!("series {labels}: chunk {j} ends ({}) before it starts ({})", c.max_time, c.min_time),
                    ));
                }
                if let Some(p) = prev_ref {
                    if c.chunk_ref.0 < p {
                        report(FormatError::new(
                            "index series",
                            off,
                            format!(
                                "series {labels}: chunk {j} ref {} is lower than the previous chunk's",
                                c.chunk_ref
                            ),
                        ));
                    }
                }
                prev_ref = Some(c.chunk_ref.0);
            }
            std::mem::swap(&mut prev, &mut labels);
        }
    }
}

/// Why an index could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Invalid(String),
}

/// How many symbols past the previous series' label [`SymbolMap::near`] searches.
const NEAR: usize = 64;

/// The symbols an [`IndexWriter`] wrote, to look up each label's ordinal: their bytes in
/// one buffer, where each ends, and a hash table of ordinals (about 10 bytes per symbol
/// besides its bytes, and no allocation per symbol).
#[derive(Default)]
struct SymbolMap {
    bytes: Vec<u8>,
    ends: Vec<usize>,
    table: hashbrown::HashTable<u32>,
    hasher: FastHash,
}

impl SymbolMap {
    fn get(&self, ordinal: u32) -> &[u8] {
        let i = ordinal as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    /// Adds the next symbol (ordinals count up from 0).
    fn push(&mut self, s: &[u8]) {
        let ordinal = self.ends.len() as u32;
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len());
        let hash = self.hasher.hash_one(s);
        let SymbolMap { bytes, ends, table, hasher } = self;
        table.insert_unique(hash, ordinal, |&o| {
            let i = o as usize;
            let start = if i == 0 { 0 } else { ends[i - 1] };
            hasher.hash_one(&bytes[start..ends[i]])
        });
    }

    fn find(&self, s: &[u8]) -> Option<u32> {
        self.table.find(self.hasher.hash_one(s), |&o| self.get(o) == s).copied()
    }

    /// The ordinal of `s`, knowing that `known` has ordinal `at`: the same one when the
    /// bytes are equal; for a larger `s`, a binary search of the next [`NEAR`] symbols
    /// (the table is sorted, and a series' label usually sorts just after the previous
    /// series' label at the same position: the next pod, the next instance), which stays
    /// in cache lines the previous series touched; otherwise the hash table.
    fn near(&self, at: u32, known: &[u8], s: &[u8]) -> Result<u32, WriteError> {
        match s.cmp(known) {
            std::cmp::Ordering::Equal => Ok(at),
            std::cmp::Ordering::Greater => {
                let (lo, hi) = (at as usize + 1, (at as usize + 1 + NEAR).min(self.ends.len()));
                let mut range = lo..hi;
                while !range.is_empty() {
                    let mid = range.start + range.len() / 2;
                    match self.get(mid as u32).cmp(s) {
                        std::cmp::Ordering::Less => range.start = mid + 1,
                        std::cmp::Ordering::Greater => range.end = mid,
                        std::cmp::Ordering::Equal => return Ok(mid as u32),
                    }
                }
                self.lookup(s)
            }
            std::cmp::Ordering::Less => self.lookup(s),
        }
    }

    /// The ordinal of `s`, which the symbol table must hold.
    fn lookup(&self, s: &[u8]) -> Result<u32, WriteError> {
        self.find(s)
            .ok_or_else(|| WriteError::Invalid(format!("{:?} is not in the symbol table", String::from_utf8_lossy(s))))
    }
}

/// Writes an index, format version 2. Call [`add_symbols`](Self::add_symbols) once,
/// then [`add_series`](Self::add_series) in label order, then [`finish`](Self::finish).
pub struct IndexWriter<W: Write> {
    w: W,
    pos: u64,
    stage: Stage,
    buf: Vec<u8>,
    symbols: SymbolMap,
    toc: Toc,
    prev_labels: Labels,
    last_chunk_ref: u64,
    /// Per label name (its symbol), every (value symbol, series ref) of a series with
    /// that name: 8 bytes per label of each series, nothing per label pair. Sorted into
    /// postings lists by `finish`.
    postings: HashMap<u32, Vec<(u32, u32)>, FastHash>,
    all: Vec<u32>,
    refs: Vec<(u32, u32)>,
    /// The symbol ordinals of `prev_labels`, pair by pair.
    prev_refs: Vec<(u32, u32)>,
    /// The series entry being built, reused from series to series.
    entry: Vec<u8>,
    last_entry_len: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Symbols,
    Series,
    Done,
}

impl<W: Write> IndexWriter<W> {
    pub fn new(mut w: W) -> Result<Self, WriteError> {
        let mut head = Vec::with_capacity(HEADER_LEN);
        put_be32(&mut head, INDEX_MAGIC);
        head.push(FORMAT_V2);
        w.write_all(&head)?;
        Ok(IndexWriter {
            w,
            pos: HEADER_LEN as u64,
            stage: Stage::Symbols,
            buf: Vec::with_capacity(4096),
            symbols: SymbolMap::default(),
            toc: Toc::default(),
            prev_labels: Labels::new(),
            last_chunk_ref: 0,
            postings: HashMap::default(),
            all: Vec::new(),
            refs: Vec::new(),
            prev_refs: Vec::new(),
            entry: Vec::new(),
            last_entry_len: 0,
        })
    }

    fn emit(&mut self) -> io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.pos += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    fn pad_to(&mut self, align: u64) {
        let rem = (self.pos + self.buf.len() as u64) % align;
        if rem != 0 {
            self.buf.resize(self.buf.len() + (align - rem) as usize, 0);
        }
    }

    /// Writes the symbol table. Symbols must be strictly increasing bytewise and include
    /// every label name and value of every series.
    pub fn add_symbols<S: AsRef<[u8]>>(&mut self, symbols: impl IntoIterator<Item = S>) -> Result<(), WriteError> {
        if self.stage != Stage::Symbols {
            return Err(WriteError::Invalid("symbols must be written once, before any series".into()));
        }
        self.toc.symbols = self.pos;
        let mut body = Vec::new();
        put_be32(&mut body, 0);
        let mut count = 0u32;
        for s in symbols {
            let s = s.as_ref();
            if let Some(p) = count.checked_sub(1).map(|last| self.symbols.get(last)) {
                if p >= s {
                    return Err(WriteError::Invalid(format!(
                        "symbols out of order: {:?} then {:?}",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(s)
                    )));
                }
            }
            put_uvarint_bytes(&mut body, s);
            self.symbols.push(s);
            count = count.checked_add(1).ok_or_else(|| WriteError::Invalid("more than 2^32 symbols".into()))?;
        }
        body[..4].copy_from_slice(&count.to_be_bytes());
        let len =
            u32::try_from(body.len()).map_err(|_| WriteError::Invalid("symbol table larger than 4 GiB".into()))?;
        put_be32(&mut self.buf, len);
        self.buf.extend_from_slice(&body);
        put_be32(&mut self.buf, crc32c(&body));
        self.emit()?;
        self.toc.series = self.pos;
        self.stage = Stage::Series;
        Ok(())
    }

    /// Adds the next series. Returns its series ref (offset / 16).
    pub fn add_series<L: LabelPairs + ?Sized>(&mut self, labels: &L, chunks: &[ChunkMeta]) -> Result<u32, WriteError> {
        if self.stage != Stage::Series {
            return Err(WriteError::Invalid("series must come after the symbols and before finish".into()));
        }
        if labels.count() == 0 {
            return Err(WriteError::Invalid("series with no labels".into()));
        }
        if !self.all.is_empty() && labels.cmp_pairs(&self.prev_labels).is_le() {
            return Err(WriteError::Invalid(format!(
                "series out of order: {} after {}",
                labels.to_label_string(),
                self.prev_labels
            )));
        }
        let mut refs = std::mem::take(&mut self.refs);
        refs.clear();
        let mut prev_name: Option<&[u8]> = None;
        // Series come sorted, so most labels equal the previous series' label at the same
        // position: comparing those bytes is cheaper than a hash lookup that misses cache.
        let mut prev = self.prev_labels.pairs().zip(&self.prev_refs);
        let symbols = &self.symbols;
        for (n, v) in labels.pairs() {
            if prev_name.is_some_and(|p| p >= n) {
                return Err(WriteError::Invalid(format!(
                    "series {}: label names not sorted and unique",
                    labels.to_label_string()
                )));
            }
            prev_name = Some(n);
            let (name, value) = match prev.next() {
                Some(((pn, pv), &(rn, rv))) => (symbols.near(rn, pn, n)?, symbols.near(rv, pv, v)?),
                None => (symbols.lookup(n)?, symbols.lookup(v)?),
            };
            refs.push((name, value));
        }
        drop(prev);
        let labels_text = || labels.to_label_string();
        self.pad_to(16);
        let start = self.pos + self.buf.len() as u64;
        if start / 16 > u32::MAX as u64 {
            return Err(WriteError::Invalid("index exceeds 64 GiB; series refs no longer fit".into()));
        }
        let id = (start / 16) as u32;
        let mut e = std::mem::take(&mut self.entry);
        e.clear();
        put_uvarint(&mut e, refs.len() as u64);
        for &(n, v) in &refs {
            put_uvarint(&mut e, n as u64);
            put_uvarint(&mut e, v as u64);
        }
        put_uvarint(&mut e, chunks.len() as u64);
        let mut prev: Option<&ChunkMeta> = None;
        for c in chunks {
            if c.max_time < c.min_time {
                return Err(WriteError::Invalid(format!(
                    "series {}: chunk max time {} before min time {}",
                    labels_text(),
                    c.max_time,
                    c.min_time
                )));
            }
            if c.chunk_ref.0 < self.last_chunk_ref {
                return Err(WriteError::Invalid(format!(
                    "series {}: chunk refs must not decrease ({} after {})",
                    labels_text(),
                    c.chunk_ref,
                    ChunkRef(self.last_chunk_ref)
                )));
            }
            match prev {
                None => {
                    put_varint(&mut e, c.min_time);
                    put_uvarint(&mut e, (c.max_time - c.min_time) as u64);
                    put_uvarint(&mut e, c.chunk_ref.0);
                }
                Some(p) => {
                    if c.min_time <= p.max_time {
                        return Err(WriteError::Invalid(format!(
                            "series {}: chunk [{}, {}] overlaps or precedes [{}, {}]",
                            labels_text(),
                            c.min_time,
                            c.max_time,
                            p.min_time,
                            p.max_time
                        )));
                    }
                    put_uvarint(&mut e, (c.min_time - p.max_time) as u64);
                    put_uvarint(&mut e, (c.max_time - c.min_time) as u64);
                    put_varint(&mut e, c.chunk_ref.0.wrapping_sub(p.chunk_ref.0) as i64);
                }
            }
            self.last_chunk_ref = c.chunk_ref.0;
            prev = Some(c);
        }
        self.last_entry_len = series_entry_len(e.len());
        put_uvarint(&mut self.buf, e.len() as u64);
        self.buf.extend_from_slice(&e);
        put_be32(&mut self.buf, crc32c(&e));
        self.entry = e;
        if self.buf.len() >= 1 << 16 {
            self.emit()?;
        }
        for &(n, v) in &refs {
            self.postings.entry(n).or_default().push((v, id));
        }
        self.all.push(id);
        self.refs = std::mem::replace(&mut self.prev_refs, refs);
        labels.copy_into(&mut self.prev_labels);
        Ok(id)
    }

    /// Size in bytes of the last series entry written (length field, content, CRC).
    pub fn last_entry_len(&self) -> usize {
        self.last_entry_len
    }

    /// Writes postings, the postings offset table and the TOC; returns the inner writer.
    pub fn finish(mut self) -> Result<W, WriteError> {
        if self.stage == Stage::Symbols {
            self.add_symbols(std::iter::empty::<&[u8]>())?;
        }
        self.stage = Stage::Done;
        // Both fields point before the padding, as Prometheus writes them.
        self.toc.label_indices = self.pos + self.buf.len() as u64;
        self.toc.postings = self.toc.label_indices;
        self.pad_to(4);
        self.emit()?;

        // Symbol ordinals are in byte order, so sorting by ordinals sorts the lists by
        // label name and value, as the offset table must be.
        let mut names: Vec<u32> = self.postings.keys().copied().collect();
        names.sort_unstable();
        let mut postings = std::mem::take(&mut self.postings);
        // Series refs were pushed in increasing order; sorting the pairs keeps that order
        // within each value. Each name's pairs are sorted on their own, in parallel: at
        // a million series this is tens of millions of pairs, and the block's other
        // work is done by now.
        {
            let mut lists: Vec<&mut Vec<(u32, u32)>> = postings.values_mut().collect();
            lists.sort_unstable_by_key(|v| std::cmp::Reverse(v.len()));
            lists.into_par_iter().for_each(|v| v.sort_unstable());
        }
        let symbols = std::mem::take(&mut self.symbols);
        let mut table = Vec::new();
        put_be32(&mut table, 0);
        let mut entries = 0u32;
        let add_entry = |table: &mut Vec<u8>, name: &[u8], value: &[u8], off: u64| {
            put_uvarint(table, 2);
            put_uvarint_bytes(table, name);
            put_uvarint_bytes(table, value);
            put_uvarint(table, off);
        };
        // All-postings first under ("", ""), then each name's lists by value.
        let all = std::mem::take(&mut self.all);
        let mut write_list =
            |w: &mut Self, name: &[u8], value: &[u8], refs: &mut dyn Iterator<Item = u32>, n: usize| {
                let off = w.pos + w.buf.len() as u64;
                let len = u32::try_from(4 + 4 * n as u64)
                    .map_err(|_| WriteError::Invalid("postings list larger than 4 GiB".into()))?;
                put_be32(&mut w.buf, len);
                let body_start = w.buf.len();
                put_be32(&mut w.buf, n as u32);
                for r in refs {
                    put_be32(&mut w.buf, r);
                }
                let crc = crc32c(&w.buf[body_start..]);
                put_be32(&mut w.buf, crc);
                add_entry(&mut table, name, value, off);
                entries += 1;
                if w.buf.len() >= 1 << 16 {
                    w.emit()?;
                }
                Ok::<(), WriteError>(())
            };
        write_list(&mut self, b"", b"", &mut all.iter().copied(), all.len())?;
        drop(all);
        for n in names {
            let pairs = postings.remove(&n).unwrap_or_default();
            for run in pairs.chunk_by(|a, b| a.0 == b.0) {
                let (name, value) = (symbols.get(n), symbols.get(run[0].0));
                write_list(&mut self, name, value, &mut run.iter().map(|p| p.1), run.len())?;
            }
        }
        self.emit()?;
        table[..4].copy_from_slice(&entries.to_be_bytes());
        self.toc.postings_table = self.pos;
        self.toc.label_indices_table = self.pos;
        let len = u32::try_from(table.len())
            .map_err(|_| WriteError::Invalid("postings offset table larger than 4 GiB".into()))?;
        put_be32(&mut self.buf, len);
        self.buf.extend_from_slice(&table);
        put_be32(&mut self.buf, crc32c(&table));
        let toc = self.toc;
        toc.write(&mut self.buf);
        self.emit()?;
        self.w.flush()?;
        Ok(self.w)
    }
}

/// Exact byte size of a series entry as [`IndexWriter`] lays it out (without padding),
/// for index statistics.
pub fn series_entry_len(content_len: usize) -> usize {
    uvarint_len(content_len as u64) + content_len + 4
}

#[cfg(test)]
mod tests;
