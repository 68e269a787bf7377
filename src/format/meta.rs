//! `meta.json`: Prometheus's block metadata and Thanos's `thanos` section, plus the
//! Thanos marker files (`deletion-mark.json`, `no-compact-mark.json`,
//! `no-downsample-mark.json`).
//!
//! Owns: parsing and writing these JSON documents so that unknown fields survive a round
//! trip, field order and `omitempty` behaviour match what Go writes, and the version
//! rules (meta `version` must be 1; `thanos.version` 0 or 1).
//! Must not: read or write files. See `docs/format/meta.md`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use ulid::Ulid;

use crate::error::{FormatError, FormatResult};

/// Downsampling resolutions Thanos knows, in milliseconds.
pub const RES_RAW: i64 = 0;
pub const RES_5M: i64 = 300_000;
pub const RES_1H: i64 = 3_600_000;

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}
fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}
fn is_false(v: &bool) -> bool {
    !*v
}
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Counts over the whole block.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStats {
    #[serde(rename = "numSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_samples: u64,
    #[serde(rename = "numFloatSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_float_samples: u64,
    #[serde(rename = "numHistogramSamples", default, skip_serializing_if = "is_zero_u64")]
    pub num_histogram_samples: u64,
    #[serde(rename = "numSeries", default, skip_serializing_if = "is_zero_u64")]
    pub num_series: u64,
    #[serde(rename = "numChunks", default, skip_serializing_if = "is_zero_u64")]
    pub num_chunks: u64,
    #[serde(rename = "numTombstones", default, skip_serializing_if = "is_zero_u64")]
    pub num_tombstones: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A parent block of a compacted block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockDesc {
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
}

/// How the block came to be.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    #[serde(default)]
    pub level: u32,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Downsample {
    #[serde(default)]
    pub resolution: i64,
}

/// One file of the block as listed in `thanos.files`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexStats {
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub series_max_size: i64,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub chunk_max_size: i64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The Go zero `time.Time`, which Thanos emits until upload sets the real time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn zero_time() -> String {
    ZERO_TIME.to_string()
}

/// Thanos's section of meta.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThanosMeta {
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub version: u64,
    /// External labels: never stored in the index series.
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    #[serde(default)]
    pub source: String,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default", skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrites: Option<Value>,
    #[serde(default)]
    pub index_stats: IndexStats,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
    #[serde(default = "zero_time")]
    pub upload_time: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Default for ThanosMeta {
    fn default() -> Self {
        ThanosMeta {
            // 0 is read as 1 and, like Thanos, left out of the JSON.
            version: 0,
            labels: BTreeMap::new(),
            downsample: Downsample::default(),
            source: String::new(),
            segment_files: Vec::new(),
            files: Vec::new(),
            index_stats: IndexStats::default(),
            rewrites: None,
            extensions: None,
            upload_time: zero_time(),
            extra: Map::new(),
        }
    }
}

/// The whole meta.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMeta {
    pub ulid: Ulid,
    #[serde(rename = "minTime")]
    pub min_time: i64,
    #[serde(rename = "maxTime")]
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: Compaction,
    pub version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thanos: Option<ThanosMeta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl BlockMeta {
    /// A fresh level-1 meta for a new block.
    pub fn new(ulid: Ulid, min_time: i64, max_time: i64) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction { level: 1, sources: vec![ulid], ..Default::default() },
            version: 1,
            thanos: None,
            extra: Map::new(),
        }
    }

    /// Parses and validates meta.json bytes.
    pub fn parse(bytes: &[u8]) -> FormatResult<BlockMeta> {
        let meta: BlockMeta = serde_json::from_slice(bytes).map_err(|e| {
            // serde_json reports line/column; convert to a byte offset for uniformity.
            let off = line_col_to_offset(bytes, e.line(), e.column());
            FormatError::new("meta.json", off, format!("invalid meta.json: {e}"))
        })?;
        if meta.version != 1 {
            return Err(FormatError::new(
                "meta.json",
                0,
                format!("unsupported meta version {} (want 1)", meta.version),
            ));
        }
        if let Some(t) = &meta.thanos {
            if t.version > 1 {
                return Err(FormatError::new(
                    "meta.json",
                    0,
                    format!("unsupported thanos meta version {} (want 0 or 1)", t.version),
                ));
            }
        }
        if meta.max_time < meta.min_time {
            return Err(FormatError::new(
                "meta.json",
                0,
                format!("maxTime {} is before minTime {}", meta.max_time, meta.min_time),
            ));
        }
        Ok(meta)
    }

    /// Tab-indented JSON as Thanos writes it (with a trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        self.serialize(&mut ser).expect("meta serializes");
        out.push(b'\n');
        go_json_escapes(out)
    }

    /// Downsampling resolution in ms (0 for raw or blocks without a thanos section).
    pub fn resolution(&self) -> i64 {
        self.thanos.as_ref().map(|t| t.downsample.resolution).unwrap_or(0)
    }

    /// External labels (empty without a thanos section).
    pub fn external_labels(&self) -> BTreeMap<String, String> {
        self.thanos.as_ref().map(|t| t.labels.clone()).unwrap_or_default()
    }
}

/// Applies the escapes Go's `encoding/json` adds and serde_json does not: `<`, `>`, `&`,
/// U+2028 and U+2029 as `\u` sequences. Those characters only ever occur inside JSON
/// strings, so replacing them throughout the document is safe.
pub fn go_json_escapes(json: Vec<u8>) -> Vec<u8> {
    if !json.iter().any(|&b| b == b'<' || b == b'>' || b == b'&' || b == 0xE2) {
        return json;
    }
    let s = String::from_utf8(json).expect("serde_json writes UTF-8");
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.into_bytes()
}

/// Compact JSON of a marker, as Go's `json.Marshal` writes it.
pub fn marker_json<T: Serialize>(m: &T) -> Vec<u8> {
    go_json_escapes(serde_json::to_vec(m).expect("marker serializes"))
}

fn line_col_to_offset(b: &[u8], line: usize, col: usize) -> u64 {
    let mut l = 1;
    for (i, &c) in b.iter().enumerate() {
        if l == line {
            return (i + col.saturating_sub(1)) as u64;
        }
        if c == b'\n' {
            l += 1;
        }
    }
    b.len() as u64
}

/// `deletion-mark.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    pub deletion_time: i64,
}

/// `no-compact-mark.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoCompactMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    pub no_compact_time: i64,
    pub reason: String,
}

/// `no-downsample-mark.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoDownsampleMark {
    pub id: Ulid,
    pub version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
    pub no_downsample_time: i64,
    pub reason: String,
}

pub const DELETION_MARK: &str = "deletion-mark.json";
pub const NO_COMPACT_MARK: &str = "no-compact-mark.json";
pub const NO_DOWNSAMPLE_MARK: &str = "no-downsample-mark.json";

/// Parses a marker, checking `version == 1`.
pub fn parse_marker<T: for<'de> Deserialize<'de>>(bytes: &[u8], what: &'static str) -> FormatResult<T> {
    let v: Value =
        serde_json::from_slice(bytes).map_err(|e| FormatError::new(what, 0, format!("invalid JSON: {e}")))?;
    if v.get("version").and_then(Value::as_u64) != Some(1) {
        return Err(FormatError::new(what, 0, "marker version is not 1"));
    }
    serde_json::from_value(v).map_err(|e| FormatError::new(what, 0, format!("invalid marker: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const THANOS: &str = r#"{
	"ulid": "01JABCDEF0123456789ABCDEFG",
	"minTime": 1700000000000,
	"maxTime": 1700021600000,
	"stats": {
		"numSamples": 1234,
		"numSeries": 10,
		"numChunks": 20
	},
	"compaction": {
		"level": 2,
		"sources": [
			"01JAAAAAAAAAAAAAAAAAAAAAAA",
			"01JBBBBBBBBBBBBBBBBBBBBBBB"
		],
		"parents": [
			{
				"ulid": "01JAAAAAAAAAAAAAAAAAAAAAAA",
				"minTime": 1700000000000,
				"maxTime": 1700007200000
			}
		]
	},
	"version": 1,
	"thanos": {
		"labels": {
			"cluster": "eu1",
			"replica": "a"
		},
		"downsample": {
			"resolution": 300000
		},
		"source": "compactor",
		"segment_files": [
			"000001"
		],
		"files": [
			{
				"rel_path": "chunks/000001",
				"size_bytes": 536870000
			},
			{
				"rel_path": "meta.json"
			}
		],
		"index_stats": {
			"series_max_size": 2048
		},
		"upload_time": "2025-01-01T00:00:00.123456789Z",
		"future_field": [1, 2]
	},
	"someday": true
}
"#;

    #[test]
    fn thanos_meta_round_trips_with_unknown_fields() {
        let m = BlockMeta::parse(THANOS.as_bytes()).unwrap();
        assert_eq!(m.resolution(), RES_5M);
        assert_eq!(m.external_labels().get("replica").map(String::as_str), Some("a"));
        let again = BlockMeta::parse(&m.to_json()).unwrap();
        assert_eq!(again, m);
        let s = String::from_utf8(m.to_json()).unwrap();
        assert!(s.contains("\"future_field\"") && s.contains("\"someday\": true"), "{s}");
        assert!(!s.contains("\"version\": 0"), "thanos.version 0 is left out");
        // Field order as Go writes it.
        let pos = |k: &str| s.find(k).unwrap();
        assert!(
            pos("\"ulid\"") < pos("\"minTime\"")
                && pos("\"stats\"") < pos("\"compaction\"")
                && pos("\"version\": 1") < pos("\"thanos\"")
        );
    }

    #[test]
    fn prometheus_meta_without_thanos_section() {
        let m = BlockMeta::parse(br#"{"version":1,"ulid":"01DXXFZDYD1MQW6079WK0K6EDQ","minTime":0,"maxTime":7200000,"stats":{"numSamples":102},"compaction":{"level":1,"sources":["01DXXFZDYD1MQW6079WK0K6EDQ"]}}"#).unwrap();
        assert!(m.thanos.is_none());
        assert_eq!(m.stats.num_samples, 102);
        assert!(!String::from_utf8(m.to_json()).unwrap().contains("thanos"));
    }

    #[test]
    fn bad_metas_are_refused() {
        for (bad, why) in [
            (r#"{"version":2,"ulid":"01DXXFZDYD1MQW6079WK0K6EDQ","minTime":0,"maxTime":1}"#, "version"),
            (r#"{"version":1,"ulid":"nope","minTime":0,"maxTime":1}"#, "ULID"),
            (r#"{"version":1,"ulid":"01DXXFZDYD1MQW6079WK0K6EDQ","minTime":5,"maxTime":1}"#, "maxTime"),
            (
                r#"{"version":1,"ulid":"01DXXFZDYD1MQW6079WK0K6EDQ","minTime":0,"maxTime":1,"thanos":{"version":2}}"#,
                "thanos",
            ),
            (r#"{"version":1,"#, "truncated"),
        ] {
            assert!(BlockMeta::parse(bad.as_bytes()).is_err(), "{why}");
        }
    }

    #[test]
    fn escapes_like_go() {
        let mut m =
            BlockMeta::parse(br#"{"version":1,"ulid":"01DXXFZDYD1MQW6079WK0K6EDQ","minTime":0,"maxTime":1}"#).unwrap();
        m.thanos =
            Some(ThanosMeta { labels: [("a".to_string(), "<b>&\u{2028}".to_string())].into(), ..Default::default() });
        let s = String::from_utf8(m.to_json()).unwrap();
        assert!(s.contains(r#""a": "\u003cb\u003e\u0026\u2028""#), "{s}");
        assert_eq!(BlockMeta::parse(s.as_bytes()).unwrap(), m);
    }

    #[test]
    fn markers() {
        let m: DeletionMark = parse_marker(
            br#"{"id":"01DXXFZDYD1MQW6079WK0K6EDQ","version":1,"deletion_time":1700000000}"#,
            "deletion-mark.json",
        )
        .unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"id":"01DXXFZDYD1MQW6079WK0K6EDQ","version":1,"deletion_time":1700000000}"#
        );
        assert!(parse_marker::<DeletionMark>(
            br#"{"id":"01DXXFZDYD1MQW6079WK0K6EDQ","version":2,"deletion_time":1}"#,
            "m"
        )
        .is_err());
    }
}
