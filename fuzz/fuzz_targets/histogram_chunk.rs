//! Integer histogram chunks (encoding 2) on arbitrary bytes, through the public
//! dispatcher `sample::decode`. Must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::sample;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = sample::decode(2, data) {
        let _ = s.timestamps();
        let _ = s.into_values();
    }
});
