//! Tests of the index reader and writer: round trips, damaged bytes, sampled lookups.

use super::*;
use proptest::prelude::*;

fn build(series: &[(Labels, Vec<ChunkMeta>)]) -> Vec<u8> {
    let mut syms: Vec<Vec<u8>> =
        series.iter().flat_map(|(l, _)| l.iter().flat_map(|x| [x.name.clone(), x.value.clone()])).collect();
    syms.sort();
    syms.dedup();
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.add_symbols(&syms).unwrap();
    for (l, c) in series {
        w.add_series(l, c).unwrap();
    }
    w.finish().unwrap()
}

#[test]
fn writes_and_reads_back() {
    let s = vec![
        (
            Labels::from_pairs([("__name__", "a"), ("job", "x")]),
            vec![
                ChunkMeta { min_time: -5, max_time: 10, chunk_ref: ChunkRef(8) },
                ChunkMeta { min_time: 20, max_time: 30, chunk_ref: ChunkRef(40) },
            ],
        ),
        (
            Labels::from_pairs([("__name__", "b"), ("job", "x")]),
            vec![ChunkMeta { min_time: 0, max_time: 0, chunk_ref: ChunkRef(1 << 32 | 8) }],
        ),
    ];
    let idx = build(&s);
    let r = IndexReader::new(&idx).unwrap();
    assert_eq!(r.version(), 2);
    let ids: Vec<u32> = r.all_postings().unwrap().collect();
    assert_eq!(ids.len(), 2);
    let mut l = Labels::new();
    let mut c = Vec::new();
    for (id, (want_l, want_c)) in ids.iter().zip(&s) {
        assert_eq!(id * 16 % 16, 0);
        r.series(*id, &mut l, &mut c).unwrap();
        assert_eq!(&l, want_l);
        assert_eq!(&c, want_c);
    }
    let p: Vec<u32> = r.postings(b"job", b"x").unwrap().unwrap().collect();
    assert_eq!(p, ids);
    assert_eq!(r.label_names(), vec![&b"__name__"[..], b"job"]);
    let mut problems = Vec::new();
    r.check(|e| problems.push(e));
    assert!(problems.is_empty(), "{problems:?}");
}

#[test]
fn writer_refuses_bad_input() {
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    assert!(w.add_symbols(["b", "a"]).is_err());
    let mut w = IndexWriter::new(Vec::new()).unwrap();
    w.add_symbols(["a", "b"]).unwrap();
    let l = Labels::from_pairs([("a", "b")]);
    w.add_series(&l, &[]).unwrap();
    assert!(w.add_series(&l, &[]).is_err(), "duplicate series accepted");
    assert!(w.add_series(&Labels::from_pairs([("b", "c")]), &[]).is_err(), "unknown symbol accepted");
}

#[test]
fn every_flipped_byte_is_caught() {
    let s = vec![(
        Labels::from_pairs([("__name__", "a"), ("job", "x")]),
        vec![ChunkMeta { min_time: 1, max_time: 10, chunk_ref: ChunkRef(8) }],
    )];
    let idx = build(&s);
    for i in 0..idx.len() {
        let mut bad = idx.clone();
        bad[i] ^= 0x04;
        let caught = match IndexReader::new(&bad) {
            Err(_) => true,
            Ok(r) => {
                let mut n = 0;
                r.check(|_| n += 1);
                n > 0
            }
        };
        // Padding bytes are not covered by any checksum, as in Prometheus.
        let in_padding = idx[i] == 0 && (i as u64) >= 5;
        assert!(caught || in_padding, "flip at byte {i} went unnoticed");
    }
}

proptest! {
    /// Series whose second label jumps far forward and backward in the symbol table, so
    /// the writer's symbol lookup takes every path (same as the previous series', a few
    /// symbols on, far on, before).
    #[test]
    fn labels_far_apart_in_the_symbol_table_round_trip(perm in Just((0..400u32).collect::<Vec<_>>()).prop_shuffle()) {
        let series: Vec<(Labels, Vec<ChunkMeta>)> = perm
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let l = Labels::from_pairs([("a", format!("{i:04}")), ("b", format!("{p:04}")), ("z", "same".to_string())]);
                (l, vec![ChunkMeta { min_time: 0, max_time: 1, chunk_ref: ChunkRef(8 + i as u64 * 20) }])
            })
            .collect();
        let idx = build(&series);
        let r = IndexReader::new(&idx).unwrap();
        let (mut l, mut c) = (Labels::new(), Vec::new());
        let ids: Vec<u32> = r.all_postings().unwrap().collect();
        prop_assert_eq!(ids.len(), series.len());
        for (id, (wl, _)) in ids.iter().zip(&series) {
            r.series(*id, &mut l, &mut c).unwrap();
            prop_assert_eq!(&l, wl);
        }
    }

    #[test]
    fn random_indexes_round_trip(names in proptest::collection::btree_set("[a-z]{1,6}", 1..5), vals in proptest::collection::vec("[a-z0-9]{0,4}", 1..40)) {
        let names: Vec<String> = names.into_iter().collect();
        let mut set = std::collections::BTreeSet::new();
        for (i, v) in vals.iter().enumerate() {
            set.insert(Labels::from_pairs(names.iter().enumerate().map(|(j, n)| (n.clone(), format!("{v}{}", (i + j) % 3)))));
        }
        let series: Vec<(Labels, Vec<ChunkMeta>)> = set.into_iter().enumerate().map(|(i, l)| (l, vec![ChunkMeta { min_time: i as i64, max_time: i as i64 + 5, chunk_ref: ChunkRef(8 + i as u64 * 20) }])).collect();
        let idx = build(&series);
        let r = IndexReader::new(&idx).unwrap();
        let ids: Vec<u32> = r.all_postings().unwrap().collect();
        prop_assert_eq!(ids.len(), series.len());
        let mut l = Labels::new();
        let mut c = Vec::new();
        for (id, (wl, wc)) in ids.iter().zip(&series) {
            r.series(*id, &mut l, &mut c).unwrap();
            prop_assert_eq!(&l, wl);
            prop_assert_eq!(&c, wc);
        }
        let mut n = 0;
        r.check(|_| n += 1);
        prop_assert_eq!(n, 0);
    }

    #[test]
    fn sampled_lookups_find_exactly_what_a_full_table_holds(
        vals in proptest::collection::btree_set("[a-z0-9]{1,5}", 1..300),
        probes in proptest::collection::vec("[a-z0-9]{0,5}", 0..40),
    ) {
        // Enough label pairs and symbols that lookups cross many sampled runs.
        let series: Vec<(Labels, Vec<ChunkMeta>)> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let l = Labels::from_pairs([("a".to_string(), v.clone()), ("b".to_string(), format!("{v}x"))]);
                (l, vec![ChunkMeta { min_time: i as i64, max_time: i as i64, chunk_ref: ChunkRef(8) }])
            })
            .collect();
        let mut series = series;
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let idx = build(&series);
        let r = IndexReader::new(&idx).unwrap();
        let entries: Vec<PostingsEntry<'_>> = r.postings_entries().collect();
        prop_assert_eq!(entries.len(), 2 * vals.len() + 1);
        prop_assert!(entries.windows(2).all(|w| (w[0].name, w[0].value) < (w[1].name, w[1].value)));
        for e in &entries {
            let found = r.postings(e.name, e.value).unwrap().map(|p| p.collect::<Vec<u32>>());
            prop_assert_eq!(found, Some(r.postings_at(e.offset).unwrap().collect::<Vec<u32>>()));
        }
        for p in &probes {
            for name in [&b"a"[..], b"b", b"", b"c"] {
                let want = entries.iter().any(|e| e.name == name && e.value == p.as_bytes());
                prop_assert_eq!(r.postings(name, p.as_bytes()).unwrap().is_some(), want);
            }
        }
        let symbols: Vec<&[u8]> = r.symbols().collect::<FormatResult<_>>().unwrap();
        for (i, want) in symbols.iter().enumerate() {
            prop_assert_eq!(r.symbol(i as u32).unwrap(), *want);
        }
        prop_assert!(r.symbol(symbols.len() as u32).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut b in proptest::collection::vec(any::<u8>(), 0..300)) {
        if b.len() > 5 { b[..5].copy_from_slice(&[0xBA, 0xAA, 0xD7, 0x00, 2]); }
        if let Ok(r) = IndexReader::new(&b) {
            r.check(|_| {});
        }
    }
}
