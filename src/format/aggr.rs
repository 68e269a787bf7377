//! Thanos aggregate chunks (chunk encoding 0xFF), the payload of downsampled blocks.
//!
//! Owns: the five-slot container (count, sum, min, max, counter), each slot a complete
//! sub-chunk (`uvarint len | encoding | data`, or a single `0x00` when unset).
//! Must not: compute aggregates (that is `downsample`). See `docs/format/chunks.md`
//! ("Aggregate chunk").

use super::encoding::{put_uvarint, Decoder};
use crate::error::{FormatError, FormatResult};

/// The slots of an aggregate chunk, in their fixed order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AggrType {
    Count = 0,
    Sum = 1,
    Min = 2,
    Max = 3,
    Counter = 4,
}

impl AggrType {
    pub const ALL: [AggrType; 5] = [AggrType::Count, AggrType::Sum, AggrType::Min, AggrType::Max, AggrType::Counter];

    pub fn name(self) -> &'static str {
        match self {
            AggrType::Count => "count",
            AggrType::Sum => "sum",
            AggrType::Min => "min",
            AggrType::Max => "max",
            AggrType::Counter => "counter",
        }
    }

    pub fn parse(s: &str) -> Option<AggrType> {
        AggrType::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// One slot's sub-chunk, borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubChunk<'a> {
    pub encoding: u8,
    pub data: &'a [u8],
}

/// The five slots of an aggregate chunk; `None` is an unset slot.
pub type Slots<'a> = [Option<SubChunk<'a>>; 5];

/// Splits an aggregate chunk into its slots. Tolerates trailing unset slots being
/// absent altogether (a leniency Thanos's own reader does not have).
pub fn parse(data: &[u8]) -> FormatResult<Slots<'_>> {
    let mut d = Decoder::new(data, 0, "aggregate chunk");
    let mut slots: Slots<'_> = [None; 5];
    for (i, slot) in slots.iter_mut().enumerate() {
        if d.is_empty() {
            break;
        }
        let len = d.uvarint("slot length")?;
        if len == 0 {
            continue;
        }
        let enc = d.u8("slot encoding")?;
        if len > d.remaining() as u64 {
            return Err(
                d.err(format!("{} slot of {len} bytes runs past the end of the chunk", AggrType::ALL[i].name()))
            );
        }
        let data = d.bytes(len as usize, "slot data")?;
        *slot = Some(SubChunk { encoding: enc, data });
    }
    if !d.is_empty() {
        return Err(d.err(format!("{} bytes after the five slots", d.remaining())));
    }
    Ok(slots)
}

/// Encodes five slots into an aggregate chunk's data.
pub fn encode(slots: &[Option<SubChunk<'_>>; 5]) -> Vec<u8> {
    let mut out = Vec::with_capacity(slots.iter().flatten().map(|s| s.data.len() + 3).sum());
    for s in slots {
        match s {
            // An empty sub-chunk cannot be told from an unset slot; write it as unset.
            None => out.push(0),
            Some(s) if s.data.is_empty() => out.push(0),
            Some(s) => {
                put_uvarint(&mut out, s.data.len() as u64);
                out.push(s.encoding);
                out.extend_from_slice(s.data);
            }
        }
    }
    out
}

/// `NumSamples` of an aggregate chunk: the count slot's sample count (0 if unreadable).
pub fn count_samples(data: &[u8]) -> u64 {
    match parse(data) {
        Ok(slots) => slots[0]
            .filter(|s| s.data.len() >= 2)
            .map(|s| u16::from_be_bytes([s.data[0], s.data[1]]) as u64)
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// A slot's sub-chunk or an error naming it.
pub fn slot<'a>(slots: &Slots<'a>, t: AggrType) -> FormatResult<SubChunk<'a>> {
    slots[t as usize].ok_or_else(|| FormatError::new("aggregate chunk", 0, format!("{} slot is not set", t.name())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn unset_slots_are_one_zero_byte() {
        let x = [1u8, 2, 3];
        let slots = [Some(SubChunk { encoding: 1, data: &x }), None, None, None, None];
        assert_eq!(encode(&slots), vec![3, 1, 1, 2, 3, 0, 0, 0, 0]);
        let bytes = encode(&slots);
        assert_eq!(parse(&bytes).unwrap(), slots);
        // Thanos's writer may omit nothing, but a chunk ending early parses as unset.
        assert_eq!(parse(&[3, 1, 1, 2, 3]).unwrap(), slots);
    }

    proptest! {
        #[test]
        fn slots_round_trip(v in proptest::collection::vec(proptest::option::of((1u8..4, proptest::collection::vec(any::<u8>(), 1..200))), 5)) {
            let slots: Slots<'_> = std::array::from_fn(|i| v[i].as_ref().map(|(e, d)| SubChunk { encoding: *e, data: d }));
            let bytes = encode(&slots);
            prop_assert_eq!(parse(&bytes).unwrap(), slots);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse(&b);
            let _ = count_samples(&b);
        }
    }
}
