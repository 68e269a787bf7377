//! The `tombstones` file: deleted time ranges per series.
//!
//! Owns: reading (with CRC check and interval merging) and writing the file.
//! Must not: apply deletions to samples (the block layer does). See
//! `docs/format/tombstones.md`; upstream's `tombstones.md` trailer is stale, the code rules.

use std::collections::BTreeMap;

use super::encoding::{crc32c, put_be32, put_uvarint, put_varint, Decoder};
use crate::error::{FormatError, FormatResult};

pub const TOMBSTONES_MAGIC: u32 = 0x0130_BA30;
pub const TOMBSTONES_VERSION: u8 = 1;

/// A closed interval `[min, max]` of deleted milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    pub min: i64,
    pub max: i64,
}

impl Interval {
    pub fn contains(&self, t: i64) -> bool {
        self.min <= t && t <= self.max
    }
    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        self.min <= max && min <= self.max
    }
}

/// Deleted intervals per series ref, each list sorted and merged.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tombstones {
    pub by_series: BTreeMap<u64, Vec<Interval>>,
}

impl Tombstones {
    /// Adds an interval, merging it with touching or overlapping ones (`max >= min-1`).
    pub fn add(&mut self, series: u64, iv: Interval) {
        let list = self.by_series.entry(series).or_default();
        list.push(iv);
        list.sort();
        let mut merged: Vec<Interval> = Vec::with_capacity(list.len());
        for i in list.drain(..) {
            match merged.last_mut() {
                Some(last) if i.min <= last.max.saturating_add(1) => last.max = last.max.max(i.max),
                _ => merged.push(i),
            }
        }
        *list = merged;
    }

    pub fn get(&self, series: u64) -> &[Interval] {
        self.by_series.get(&series).map(|v| v.as_slice()).unwrap_or(&[])
    }

    pub fn is_empty(&self) -> bool {
        self.by_series.is_empty()
    }

    /// Total number of intervals (`stats.numTombstones`).
    pub fn num_intervals(&self) -> u64 {
        self.by_series.values().map(|v| v.len() as u64).sum()
    }

    /// Parses a tombstones file.
    pub fn read(data: &[u8]) -> FormatResult<Tombstones> {
        let mut d = Decoder::new(data, 0, "tombstones");
        let magic = d.be32("magic")?;
        if magic != TOMBSTONES_MAGIC {
            return Err(FormatError::new(
                "tombstones",
                0,
                format!("magic {magic:#010x}, want {TOMBSTONES_MAGIC:#010x}"),
            ));
        }
        let version = d.u8("version")?;
        if version != TOMBSTONES_VERSION {
            return Err(FormatError::new("tombstones", 4, format!("unsupported version {version}")));
        }
        if d.remaining() < 4 {
            return Err(d.err("file ends before its checksum"));
        }
        let stones = &data[5..data.len() - 4];
        let stored = u32::from_be_bytes(data[data.len() - 4..].try_into().expect("4 bytes"));
        let actual = crc32c(stones);
        if stored != actual {
            return Err(FormatError::new(
                "tombstones",
                (data.len() - 4) as u64,
                format!("checksum mismatch: stored {stored:#010x}, computed {actual:#010x}"),
            ));
        }
        let mut d = Decoder::new(stones, 5, "tombstones");
        let mut t = Tombstones::default();
        while !d.is_empty() {
            let series = d.uvarint("series ref")?;
            let min = d.varint("interval min")?;
            let max = d.varint("interval max")?;
            t.add(series, Interval { min, max });
        }
        Ok(t)
    }

    /// Encodes the file; intervals in series order.
    pub fn write(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.by_series.len() * 8);
        put_be32(&mut out, TOMBSTONES_MAGIC);
        out.push(TOMBSTONES_VERSION);
        for (&s, ivs) in &self.by_series {
            for iv in ivs {
                put_uvarint(&mut out, s);
                put_varint(&mut out, iv.min);
                put_varint(&mut out, iv.max);
            }
        }
        let crc = crc32c(&out[5..]);
        put_be32(&mut out, crc);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn empty_file_is_nine_bytes() {
        assert_eq!(Tombstones::default().write(), vec![0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]);
        assert!(Tombstones::read(&[0x01, 0x30, 0xBA, 0x30, 0x01, 0, 0, 0, 0]).unwrap().is_empty());
    }

    #[test]
    fn touching_intervals_merge() {
        let mut t = Tombstones::default();
        t.add(1, Interval { min: 10, max: 20 });
        t.add(1, Interval { min: 21, max: 30 });
        t.add(1, Interval { min: 40, max: 50 });
        assert_eq!(t.get(1), &[Interval { min: 10, max: 30 }, Interval { min: 40, max: 50 }]);
    }

    #[test]
    fn corruption_is_reported() {
        let mut t = Tombstones::default();
        t.add(3, Interval { min: -5, max: 99 });
        let b = t.write();
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 0x01;
            assert!(Tombstones::read(&bad).is_err(), "flip at {i}");
        }
        for n in 0..b.len() {
            assert!(Tombstones::read(&b[..n]).is_err(), "truncated at {n}");
        }
    }

    proptest! {
        #[test]
        fn round_trips(items in proptest::collection::vec((0u64..50, any::<i64>(), any::<i64>()), 0..50)) {
            let mut t = Tombstones::default();
            for (s, a, b) in items {
                t.add(s, Interval { min: a.min(b), max: a.max(b) });
            }
            prop_assert_eq!(Tombstones::read(&t.write()).unwrap(), t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Tombstones::read(&b);
        }
    }
}
