//! Replays every input that ever crashed a fuzz target (`fuzz/regressions/<target>/*`)
//! through the same calls and checks as the target (see `fuzz/README.md`), so a fixed
//! crash stays fixed without cargo-fuzz.

use crate::*;
use strata::format::aggr::{self, AggrType};
use strata::format::chunks::{iter_segment, read_chunk};
use strata::format::index::{IndexReader, SeriesRefs};
use strata::format::meta::BlockMeta;
use strata::format::sample::{decode, decode_aggr};
use strata::format::tombstones::Tombstones;
use strata::format::xor;
use strata::labels::Labels;

fn replay(target: &str, data: &[u8]) {
    match target {
        "index_reader" => {
            if let Ok(r) = IndexReader::new(data) {
                r.check(|_| {});
                for s in r.symbols() {
                    if s.is_err() {
                        break;
                    }
                }
                let _ = r.label_names();
                let (mut l, mut c, mut refs) = (Labels::new(), Vec::new(), SeriesRefs::default());
                if let Ok(p) = r.all_postings() {
                    for id in p {
                        let _ = r.series(id, &mut l, &mut c);
                    }
                }
                for e in r.postings_entries().collect::<Vec<_>>() {
                    let _ = r.postings(e.name, e.value);
                    if let Ok(p) = r.postings_at(e.offset) {
                        for id in p {
                            if r.series_refs(id, &mut refs).is_ok() {
                                for &(n, v) in &refs.labels {
                                    let _ = r.symbol(n);
                                    let _ = r.symbol(v);
                                }
                            }
                            let _ = r.series(id, &mut l, &mut c);
                        }
                    }
                }
            }
        }
        "chunk_segment" => {
            for c in iter_segment(data) {
                if c.is_err() {
                    break;
                }
            }
            let mut offs = vec![8, 0, u32::MAX, data.len() as u32];
            if data.len() >= 4 {
                offs.push(u32::from_be_bytes(data[data.len() - 4..].try_into().unwrap()));
            }
            offs.extend(data.iter().take(16).map(|&b| b as u32));
            for o in offs {
                let _ = read_chunk(data, o);
            }
        }
        "xor_chunk" => {
            let slow: Result<Vec<_>, _> = xor::XorIter::new(data).and_then(|it| it.collect());
            let fast = xor::decode(data);
            assert_eq!(slow.is_ok(), fast.is_ok());
            if let (Ok(a), Ok(b)) = (&slow, &fast) {
                let bits = |v: &Vec<(i64, f64)>| v.iter().map(|&(t, x)| (t, x.to_bits())).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b));
                let enc = xor::encode(a).unwrap();
                assert_eq!(bits(&xor::decode(&enc).unwrap()), bits(a));
                assert_eq!(xor::encode(&xor::decode(&enc).unwrap()).unwrap(), enc);
            }
        }
        "histogram_chunk" => {
            let _ = decode(2, data);
        }
        "float_histogram_chunk" => {
            let _ = decode(3, data);
        }
        "aggr_chunk" => {
            let _ = aggr::count_samples(data);
            if let Ok(slots) = aggr::parse(data) {
                for t in AggrType::ALL {
                    let _ = aggr::slot(&slots, t);
                    let _ = decode_aggr(data, t);
                }
                let again = aggr::encode(&slots);
                assert_eq!(aggr::parse(&again).unwrap(), slots);
            }
        }
        "meta_json" => {
            if let Ok(m) = BlockMeta::parse(data) {
                let json = m.to_json();
                let again = BlockMeta::parse(&json).expect("written meta parses");
                assert_eq!(again, m, "meta changed on a write/parse round trip");
                assert_eq!(again.to_json(), json);
            }
        }
        "tombstones" => {
            if let Ok(t) = Tombstones::read(data) {
                let w = t.write();
                let again = Tombstones::read(&w).expect("written tombstones parse");
                assert_eq!(again, t);
                assert_eq!(again.write(), w);
            }
        }
        other => panic!("fuzz/regressions/{other}: no replay for this target; add one"),
    }
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let root = repo().join("fuzz/regressions");
    let mut n = 0;
    for t in std::fs::read_dir(&root).unwrap() {
        let t = t.unwrap();
        let target = t.file_name().into_string().unwrap();
        for f in std::fs::read_dir(t.path()).unwrap() {
            let f = f.unwrap().path();
            let data = std::fs::read(&f).unwrap();
            let r = std::panic::catch_unwind(|| replay(&target, &data));
            assert!(r.is_ok(), "{} panicked", f.display());
            n += 1;
        }
    }
    assert!(n >= 5, "only {n} regression inputs found");
}
