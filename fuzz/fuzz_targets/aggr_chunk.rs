//! Thanos aggregate chunks (encoding 0xFF) on arbitrary bytes: split into slots, then
//! decode every slot. Must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::aggr::{self, AggrType};
use strata::format::sample;

fuzz_target!(|data: &[u8]| {
    let _ = aggr::count_samples(data);
    let Ok(slots) = aggr::parse(data) else { return };
    for t in AggrType::ALL {
        let _ = aggr::slot(&slots, t);
        let _ = sample::decode_aggr(data, t);
    }
    // What parsed re-encodes to something that parses to the same slots.
    let again = aggr::encode(&slots);
    assert_eq!(aggr::parse(&again).expect("re-encoded aggregate chunk parses"), slots);
});
