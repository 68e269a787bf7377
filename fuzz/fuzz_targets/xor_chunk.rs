//! XOR chunks on arbitrary bytes: decode fully with both decoders (`XorIter` and the
//! word-at-a-time `xor::decode`), which must agree; when decoding succeeds, re-encode and
//! check that decoding the re-encoding gives the same samples, bit for bit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::xor::{self, XorIter};

fn same(a: &[(i64, f64)], b: &[(i64, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
}

fuzz_target!(|data: &[u8]| {
    let fast = xor::decode(data);
    let Ok(it) = XorIter::new(data) else {
        assert!(fast.is_err(), "xor::decode accepts a chunk XorIter::new rejects");
        return;
    };
    let mut samples = Vec::with_capacity(it.total().min(4096));
    for s in it {
        match s {
            Ok(s) => samples.push(s),
            Err(_) => {
                assert!(fast.is_err(), "xor::decode accepts a chunk XorIter fails on");
                return;
            }
        }
    }
    let fast = fast.expect("xor::decode rejects a chunk XorIter decodes");
    assert!(same(&fast, &samples), "xor::decode and XorIter disagree");
    let again = xor::encode(&samples).expect("a decoded chunk holds at most u16::MAX samples");
    let back = xor::decode(&again).expect("re-encoded chunk decodes");
    assert!(same(&back, &samples), "samples changed on re-encoding");
    assert_eq!(xor::encode(&back).expect("same samples"), again, "re-encoding is not stable");
});
