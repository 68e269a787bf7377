//! The index reader on arbitrary bytes: open, check, walk every postings list, decode
//! every series it names and resolve every symbol. Must return errors, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::format::index::{IndexReader, SeriesRefs};
use strata::labels::Labels;

fuzz_target!(|data: &[u8]| {
    let Ok(r) = IndexReader::new(data) else { return };
    r.check(|_| {});
    let _ = r.version();
    let _ = r.toc();
    for s in r.symbols() {
        if s.is_err() {
            break;
        }
    }
    let _ = r.label_names();
    let mut labels = Labels::new();
    let mut chunks = Vec::new();
    let mut refs = SeriesRefs::default();
    if let Ok(all) = r.all_postings() {
        for id in all {
            let _ = r.series(id, &mut labels, &mut chunks);
        }
    }
    for e in r.postings_entries() {
        let _ = r.postings(e.name, e.value);
        let Ok(p) = r.postings_at(e.offset) else { continue };
        for id in p {
            if r.series_refs(id, &mut refs).is_ok() {
                for &(n, v) in &refs.labels {
                    let _ = r.symbol(n);
                    let _ = r.symbol(v);
                }
            }
            let _ = r.series(id, &mut labels, &mut chunks);
        }
    }
});
