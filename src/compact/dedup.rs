//! Merging the samples of overlapping chunks: one-to-one (one sample per timestamp, as
//! Prometheus's vertical compaction) and the penalty algorithm of a deduplicating Thanos
//! querier for HA replicas.
//!
//! Owns: the two sample-level merges over sorted streams, and the querier's division of
//! one series' chunks into the streams it chains ([`split_overlapping`]). Values are
//! opaque here: only timestamps (and chunk time ranges) decide.
//! Must not: decode or encode chunks.
//!
//! # What a deduplicating Thanos querier returns for one series
//!
//! (Thanos `pkg/query/querier.go` since v0.31, `pkg/store/proxy_merge.go`,
//! `pkg/dedup/iter.go`.) The stores drop the replica labels, so every replica's series
//! arrives as one series, and the proxy pools the chunks of all of them: byte-identical
//! chunks are kept once, the rest are sorted by min time, then max time, then encoding,
//! then descending bytes. The querier then deals the chunks out, in that order, into
//! streams: each chunk goes to the first stream whose last chunk ends before it starts,
//! or opens a new stream ([`split_overlapping`]). The replicas it chains are these
//! streams, in the order they were opened, not the replica labels: a stream takes
//! whichever replica's chunk starts next after its last one, so streams can trade
//! replicas at chunk boundaries, and within a stream there is no penalty. One stream
//! is returned as it is; two or more are chained pairwise, `p(p(s0, s1), s2)`, each
//! pair with the penalty rule below, over the whole query range at once.

/// How overlapping samples are merged (`--deduplication.func`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DedupFunc {
    /// Empty value in Thanos: every timestamp of every replica, one sample each.
    #[default]
    OneToOne,
    /// Follow one replica; switch to another only across a gap (`penalty`).
    Penalty,
}

impl DedupFunc {
    pub fn parse(s: &str) -> Option<DedupFunc> {
        match s {
            "" => Some(DedupFunc::OneToOne),
            "penalty" => Some(DedupFunc::Penalty),
            _ => None,
        }
    }
}

/// Union of two sorted streams into `out`, one sample per timestamp; `a` wins a tie.
fn union_pair<V: Clone>(a: &[(i64, V)], b: &[(i64, V)], out: &mut Vec<(i64, V)>) {
    out.reserve(a.len() + b.len());
    // The timestamp of the last sample written, once there is one.
    let mut last: Option<i64> = None;
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ta, tb) = (a[i].0, b[j].0);
        let s = if ta < tb {
            i += 1;
            &a[i - 1]
        } else if tb < ta {
            j += 1;
            &b[j - 1]
        } else {
            // A tie: `a`'s sample, and both streams move on.
            i += 1;
            j += 1;
            &a[i - 1]
        };
        if last != Some(s.0) {
            last = Some(s.0);
            out.push(s.clone());
        }
    }
    for s in a[i..].iter().chain(&b[j..]) {
        if last != Some(s.0) {
            last = Some(s.0);
            out.push(s.clone());
        }
    }
}

/// The penalty rule of one pair of streams (the querier's `dedupSeriesIterator`, not
/// counting counter adjustments, which only apply under `rate`-like functions), into
/// `out`: each step takes the earliest of the two streams' next samples (`a` on a tie);
/// the stream not taken must then skip past twice the gap between the sample taken and
/// the one before it (5 s before there is one), the stream taken only past the sample
/// itself. So the result follows one stream and moves to the other only where the one
/// it follows has no sample within that window.
fn penalty_pair_into<V: Clone>(a: &[(i64, V)], b: &[(i64, V)], out: &mut Vec<(i64, V)>) {
    const INITIAL_PENALTY: i64 = 5000;
    out.reserve(a.len().max(b.len()));
    let (mut i, mut j) = (0, 0);
    let mut last_t = i64::MIN;
    let (mut pen_a, mut pen_b) = (0i64, 0i64);
    loop {
        let target_a = last_t.saturating_add(1).saturating_add(pen_a);
        while i < a.len() && a[i].0 < target_a {
            i += 1;
        }
        let target_b = last_t.saturating_add(1).saturating_add(pen_b);
        while j < b.len() && b[j].0 < target_b {
            j += 1;
        }
        let take_a = match (a.get(i), b.get(j)) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(x), Some(y)) => {
                let t = x.0.min(y.0);
                let pen = if last_t == i64::MIN { INITIAL_PENALTY } else { 2 * (t - last_t) };
                if x.0 <= y.0 {
                    pen_b = pen;
                } else {
                    pen_a = pen;
                }
                x.0 <= y.0
            }
        };
        let s = if take_a {
            pen_a = 0;
            i += 1;
            &a[i - 1]
        } else {
            pen_b = 0;
            j += 1;
            &b[j - 1]
        };
        last_t = s.0;
        out.push(s.clone());
    }
}

/// Merges sorted streams with `func` into `out` (cleared first). More than two streams
/// are folded pairwise, as the querier chains them: `pair(pair(s0, s1), s2)`.
pub fn merge_into<V: Clone>(func: DedupFunc, streams: &[&[(i64, V)]], out: &mut Vec<(i64, V)>) {
    let mut tmp = Vec::new();
    merge_into_reusing(func, streams, out, &mut tmp);
}

/// [`merge_into`] with a caller's buffer for the intermediate results of a fold over
/// more than two streams, so a caller merging many series allocates nothing per series.
/// Folding the materialized result of `pair(s0, s1)` with `s2` gives what the querier's
/// nested iterators give: the outer pair only seeks the inner one forward, and the inner
/// one steps through its own results to get there, exactly as if it ran alone.
pub fn merge_into_reusing<V: Clone>(
    func: DedupFunc,
    streams: &[&[(i64, V)]],
    out: &mut Vec<(i64, V)>,
    tmp: &mut Vec<(i64, V)>,
) {
    out.clear();
    let pair = match func {
        DedupFunc::OneToOne => union_pair::<V>,
        DedupFunc::Penalty => penalty_pair_into::<V>,
    };
    match streams {
        [] => {}
        [one] => pair(one, &[], out),
        [a, b] => pair(a, b, out),
        [a, b, rest @ ..] => {
            pair(a, b, out);
            for r in rest {
                std::mem::swap(tmp, out);
                out.clear();
                pair(tmp, r, out);
            }
        }
    }
}

/// The querier's division of one series' chunks into streams: `ranges` are the chunks'
/// `(min_time, max_time)` in the querier's order (see the module comment); each chunk
/// goes to the first stream whose last chunk ends before it starts, or opens a new
/// stream. Writes each chunk's stream into `stream_of` and returns the number of streams;
/// `ends` is scratch (the last max time of each stream).
pub fn split_overlapping(
    ranges: impl IntoIterator<Item = (i64, i64)>,
    stream_of: &mut Vec<u32>,
    ends: &mut Vec<i64>,
) -> usize {
    stream_of.clear();
    ends.clear();
    for (min_time, max_time) in ranges {
        let s = match ends.iter().position(|&end| end < min_time) {
            Some(s) => s,
            None => {
                ends.push(i64::MIN);
                ends.len() - 1
            }
        };
        ends[s] = max_time;
        stream_of.push(s as u32);
    }
    ends.len()
}

/// Merges sorted streams with `func`.
pub fn merge<V: Clone>(func: DedupFunc, streams: Vec<Vec<(i64, V)>>) -> Vec<(i64, V)> {
    let refs: Vec<&[(i64, V)]> = streams.iter().map(|s| s.as_slice()).collect();
    let mut out = Vec::new();
    merge_into(func, &refs, &mut out);
    out
}

/// Union of sorted streams, one sample per timestamp; on a tie the earlier stream wins.
pub fn one_to_one<V: Clone>(streams: Vec<Vec<(i64, V)>>) -> Vec<(i64, V)> {
    merge(DedupFunc::OneToOne, streams)
}

/// Penalty deduplication of any number of replicas, chained as Thanos chains them.
pub fn penalty<V: Clone>(streams: Vec<Vec<(i64, V)>>) -> Vec<(i64, V)> {
    merge(DedupFunc::Penalty, streams)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn series(start: i64, step: i64, n: usize, tag: u8) -> Vec<(i64, u8)> {
        (0..n).map(|i| (start + i as i64 * step, tag)).collect()
    }

    #[test]
    fn identical_replicas_give_one_copy() {
        let a = series(0, 15_000, 10, 1);
        let b = series(0, 15_000, 10, 2);
        assert_eq!(one_to_one(vec![a.clone(), b.clone()]), a);
        assert_eq!(penalty(vec![a.clone(), b]), a);
    }

    #[test]
    fn replicas_a_second_apart_union_or_follow_one() {
        let a = series(0, 15_000, 20, b'a');
        let b = series(1_000, 15_000, 20, b'b');
        let u = one_to_one(vec![a.clone(), b.clone()]);
        assert_eq!(u.len(), 40);
        let p = penalty(vec![a.clone(), b.clone()]);
        // Follows A throughout, plus B's last sample after A ends.
        assert_eq!(&p[..20], &a[..]);
        assert!(p[20..].iter().all(|s| s.1 == b'b'));
    }

    #[test]
    fn penalty_switches_only_across_a_gap() {
        // A has a gap from 60s to 180s; B fills it; afterwards A is preferred again only
        // when B has a gap, so B continues.
        let mut a = series(0, 15_000, 5, b'a');
        a.extend(series(180_000, 15_000, 5, b'a'));
        let b = series(1_000, 15_000, 17, b'b');
        let p = penalty(vec![a, b]);
        let tags: Vec<u8> = p.iter().map(|s| s.1).collect();
        let first_b = tags.iter().position(|&t| t == b'b').unwrap();
        assert_eq!(first_b, 5, "switches to B at A's gap");
        assert!(tags[first_b..].iter().all(|&t| t == b'b'), "does not flip back while B has no gap: {tags:?}");
        // Strictly increasing timestamps.
        assert!(p.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn chunks_go_to_the_first_stream_they_do_not_overlap() {
        // Replica A: [0, 29], [30, 59], then down; B: [1, 30], [31, 60], [61, 90];
        // A again from 62. B's third chunk fits after A's second, so the first stream
        // takes it: the streams are not the replicas.
        let ranges = [(0, 29), (1, 30), (30, 59), (31, 60), (61, 90), (62, 95)];
        let (mut of, mut ends) = (Vec::new(), Vec::new());
        assert_eq!(split_overlapping(ranges, &mut of, &mut ends), 2);
        assert_eq!(of, [0, 1, 0, 1, 0, 1]);
        assert_eq!(split_overlapping([(0, 10), (5, 6), (7, 8), (9, 20)], &mut of, &mut ends), 2);
        assert_eq!(of, [0, 1, 1, 1]);
        assert_eq!(split_overlapping([(0, 10), (5, 12), (8, 9), (11, 11)], &mut of, &mut ends), 3);
        assert_eq!(of, [0, 1, 2, 0]);
        assert_eq!(split_overlapping([], &mut of, &mut ends), 0);
    }

    #[test]
    fn three_streams_chain_through_the_first_pairs_result() {
        // s0 and s1 a second apart, both down from 31 s to 90 s; s2 covers the outage.
        // The first pair follows s0 (0, 15, 30, 90, 105). Against s2 it takes 0, 15 and
        // 30, and s2 must skip past 30 + 2 * 15: its 47 is skipped, its 62 comes before
        // the pair's 90, and then the pair must skip past 62 + 2 * 32, which it never
        // reaches again.
        let s0: Vec<(i64, u8)> = [0, 15, 30, 90, 105].iter().map(|&t| (t * 1000, 0)).collect();
        let s1: Vec<(i64, u8)> = [1, 16, 31, 91, 106].iter().map(|&t| (t * 1000, 1)).collect();
        let s2: Vec<(i64, u8)> = [2, 47, 62, 77, 92].iter().map(|&t| (t * 1000, 2)).collect();
        let got: Vec<(i64, u8)> = merge(DedupFunc::Penalty, vec![s0, s1, s2]);
        let want = [(0, 0), (15, 0), (30, 0), (62, 2), (77, 2), (92, 2)];
        assert_eq!(got, want.map(|(t, r)| (t * 1000, r)));
    }

    /// Sorted, strictly increasing timestamps from 0..`max`, tagged `tag`.
    fn stream(max: i64, n: usize, tag: u8) -> impl Strategy<Value = Vec<(i64, u8)>> {
        proptest::collection::btree_set(0..max, 0..n).prop_map(move |s| s.into_iter().map(|t| (t, tag)).collect())
    }

    proptest! {
        /// The penalty output of two replicas: strictly increasing, every sample one of a
        /// replica's, and it leaves the replica it follows only where that replica has no
        /// sample within the penalty window after the last sample taken: twice the gap
        /// between the last two samples taken (5 s after the first).
        #[test]
        fn penalty_switches_only_across_a_gap_of_the_replica_it_leaves(a in stream(200_000, 80, 0), b in stream(200_000, 80, 1)) {
            let out = merge(DedupFunc::Penalty, vec![a.clone(), b.clone()]);
            prop_assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
            for s in &out {
                prop_assert!([&a, &b][s.1 as usize].contains(s), "{s:?} is no replica's sample");
            }
            for k in 1..out.len() {
                let (left, last_t) = (out[k - 1].1, out[k - 1].0);
                if out[k].1 == left {
                    continue;
                }
                let window = if k == 1 { 5000 } else { 2 * (last_t - out[k - 2].0) };
                let stream = [&a, &b][left as usize];
                prop_assert!(
                    !stream.iter().any(|&(t, _)| t > last_t && t <= last_t + window),
                    "switched away from {left} at {} though it has a sample within {window} ms of {last_t}", out[k].0
                );
            }
        }

        /// More replicas: still strictly increasing and every sample a replica's.
        #[test]
        fn penalty_of_three_replicas_takes_only_their_samples(a in stream(100_000, 40, 0), b in stream(100_000, 40, 1), c in stream(100_000, 40, 2)) {
            let out = merge(DedupFunc::Penalty, vec![a.clone(), b.clone(), c.clone()]);
            prop_assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
            for s in &out {
                prop_assert!([&a, &b, &c][s.1 as usize].contains(s), "{s:?} is no replica's sample");
            }
            // A fold with a reused buffer gives the same.
            let (mut o, mut tmp) = (Vec::new(), vec![(7, 9)]);
            merge_into_reusing(DedupFunc::Penalty, &[&a, &b, &c], &mut o, &mut tmp);
            prop_assert_eq!(o, out);
        }
    }

    proptest! {
        #[test]
        fn one_to_one_is_the_set_union(mut a in proptest::collection::btree_set(0i64..500, 0..60), b in proptest::collection::btree_set(0i64..500, 0..60)) {
            let sa: Vec<(i64, ())> = a.iter().map(|&t| (t, ())).collect();
            let sb: Vec<(i64, ())> = b.iter().map(|&t| (t, ())).collect();
            let m: Vec<i64> = one_to_one(vec![sa, sb]).into_iter().map(|s| s.0).collect();
            a.extend(b);
            prop_assert_eq!(m, a.into_iter().collect::<Vec<_>>());
        }

        /// Streams may repeat a timestamp (a damaged source): the first sample of each
        /// timestamp wins, `a` before `b`, as a stable sort of both would give.
        #[test]
        fn one_to_one_keeps_the_first_sample_of_each_timestamp(mut a in proptest::collection::vec(0i64..50, 0..40), mut b in proptest::collection::vec(0i64..50, 0..40)) {
            a.sort();
            b.sort();
            let sa: Vec<(i64, u32)> = a.iter().enumerate().map(|(k, &t)| (t, k as u32)).collect();
            let sb: Vec<(i64, u32)> = b.iter().enumerate().map(|(k, &t)| (t, 1000 + k as u32)).collect();
            let mut want: Vec<(i64, u32)> = sa.iter().chain(&sb).copied().collect();
            want.sort_by_key(|s| s.0);
            want.dedup_by_key(|s| s.0);
            prop_assert_eq!(one_to_one(vec![sa, sb]), want);
        }

        #[test]
        fn dedup_is_idempotent(a in proptest::collection::btree_set(0i64..100_000, 0..60), b in proptest::collection::btree_set(0i64..100_000, 0..60)) {
            let sa: Vec<(i64, ())> = a.iter().map(|&t| (t, ())).collect();
            let sb: Vec<(i64, ())> = b.iter().map(|&t| (t, ())).collect();
            for f in [DedupFunc::OneToOne, DedupFunc::Penalty] {
                let once = merge(f, vec![sa.clone(), sb.clone()]);
                let twice = merge(f, vec![once.clone(), once.clone()]);
                prop_assert_eq!(&twice, &once);
                prop_assert!(once.windows(2).all(|w| w[0].0 < w[1].0));
                // Every output sample comes from an input.
                prop_assert!(once.iter().all(|s| a.contains(&s.0) || b.contains(&s.0)));
            }
        }
    }
}
