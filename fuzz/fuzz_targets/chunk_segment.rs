//! Chunk segment files on arbitrary bytes: iterate every record, and read records at
//! offsets taken from the input itself. Must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::chunks::{iter_segment, read_chunk};

fuzz_target!(|data: &[u8]| {
    for c in iter_segment(data) {
        if let Ok((_, c)) = c {
            let _ = c.encoding();
            let _ = c.record_len();
        }
    }
    // Offsets: the first header byte, the last four bytes as a big-endian u32, and
    // every byte value of the input's first 16 bytes (small offsets hit real records).
    let mut offsets = vec![8u32, 0, u32::MAX, data.len() as u32];
    if data.len() >= 4 {
        let t = &data[data.len() - 4..];
        offsets.push(u32::from_be_bytes([t[0], t[1], t[2], t[3]]));
    }
    offsets.extend(data.iter().take(16).map(|&b| b as u32));
    for off in offsets {
        if let Ok(c) = read_chunk(data, off) {
            let _ = c.encoding();
            let _ = c.record_len();
        }
    }
});
