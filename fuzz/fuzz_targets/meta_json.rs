//! meta.json on arbitrary bytes: parse; when that succeeds, write it out and parse the
//! output again, which must give the same meta.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::meta::BlockMeta;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = BlockMeta::parse(data) else { return };
    let _ = m.resolution();
    let _ = m.external_labels();
    let json = m.to_json();
    let again = BlockMeta::parse(&json).unwrap_or_else(|e| panic!("to_json output does not parse: {e}\n{}", String::from_utf8_lossy(&json)));
    assert_eq!(again, m, "meta changed on a write/parse round trip");
    assert_eq!(again.to_json(), json, "to_json is not stable");
});
