//! The tombstones file on arbitrary bytes: read; when that succeeds, write it and read
//! the output again, which must give the same tombstones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::tombstones::Tombstones;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = Tombstones::read(data) else { return };
    let _ = t.num_intervals();
    let bytes = t.write();
    let again = Tombstones::read(&bytes).unwrap_or_else(|e| panic!("written tombstones do not read back: {e}"));
    assert_eq!(again, t, "tombstones changed on a write/read round trip");
    assert_eq!(again.write(), bytes, "write is not stable");
});
