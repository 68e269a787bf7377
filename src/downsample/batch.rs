//! The pieces every downsampling path shares: aggregation windows, how many output
//! chunks a series gets, and the loop that folds a batch of samples into one aggregate
//! per window (Thanos's `currentWindow`, `targetChunkCount`, `downsampleBatch`).

use super::histmath::HResult;

/// Raw data is assumed to be scraped every minute when sizing output chunks (Thanos's
/// `DownsampleRaw` heuristic).
pub const RAW_ASSUMED_INTERVAL_MS: i64 = 60_000;

/// Output chunks are sized for at most this many aggregates on average.
const TARGET_AGGREGATES_PER_CHUNK: i64 = 140;

/// The last millisecond of the window of `resolution` ms that `t` falls into, the
/// timestamp an aggregate of that window gets: `t - t % r + r - 1`. Windows are aligned
/// to multiples of the resolution from the epoch. (`%` truncates, as Go's does, so
/// negative timestamps misalign exactly as in Thanos; expansion drops them anyway.)
pub fn window_end(t: i64, resolution: i64) -> i64 {
    // Wrapping, as Go's arithmetic: a corrupt timestamp near the end of the range must not
    // panic.
    t.wrapping_sub(t % resolution).wrapping_add(resolution - 1)
}

/// How many output chunks a series gets (Thanos's `targetChunkCount`): the aggregates the
/// range `[mint, maxt]` can hold at `out_res` (integer division first), scaled by how
/// full the range is at `in_res`, plus one; then the smallest `x >= 1` with
/// `expected / x <= 140` in integer division.
pub fn target_chunk_count(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
    let max_samples = (maxt.wrapping_sub(mint) / out_res) as f64;
    let mut fullness = count as f64 / ((maxt.wrapping_sub(mint)) as f64 / in_res as f64);
    if fullness > 1.0 {
        fullness = 1.0;
    }
    // Go converts NaN to the smallest int64 on amd64; either way the answer is 1.
    let expected = (max_samples * fullness) as i64 + 1;
    if expected <= TARGET_AGGREGATES_PER_CHUNK {
        return 1;
    }
    // The loop `for x = 1; expected/x > 140; x++` ends at expected/141 + 1.
    (expected / (TARGET_AGGREGATES_PER_CHUNK + 1) + 1) as usize
}

/// Accumulates one window (and, for counters, the whole batch).
pub(crate) trait Aggregate<S> {
    /// Starts a new window.
    fn reset(&mut self);
    fn add(&mut self, sample: &S) -> HResult<()>;
    /// Samples added since the aggregator was created.
    fn total(&self) -> usize;
}

/// Folds `data` into windows of `resolution` and calls `emit(t, aggregator)` at the end of
/// each window. A window's timestamp is its last millisecond, except that no timestamp
/// goes past the batch's last sample (so batches never overlap): **the last aggregate of
/// every batch is stamped at the batch's last sample time**. A sample opens a new window
/// only when it is later than the current window's timestamp; `data` is not required to be
/// sorted (out-of-order samples fall into the current window, as in Thanos). Returns the
/// last timestamp emitted (-1 if none).
pub(crate) fn downsample_batch<S, A: Aggregate<S>>(
    data: &[S],
    time: impl Fn(&S) -> i64,
    resolution: i64,
    agg: &mut A,
    mut emit: impl FnMut(i64, &mut A) -> HResult<()>,
) -> HResult<i64> {
    let Some(last) = data.last() else { return Ok(-1) };
    let last_t = time(last);
    let mut next_t = -1i64;
    for s in data {
        let t = time(s);
        if t > next_t {
            if next_t != -1 {
                emit(next_t, agg)?;
            }
            agg.reset();
            next_t = window_end(t, resolution).min(last_t);
        }
        agg.add(s)?;
    }
    if agg.total() > 0 {
        emit(next_t, agg)?;
    }
    Ok(next_t)
}

/// Window statistics of float samples (Thanos's `floatAggregator`). `count`, `sum`, `min`
/// and `max` restart with every window; `counter` (the value with counter resets added
/// back) and `last` run across the whole batch.
#[derive(Clone, Debug, Default)]
pub(crate) struct FloatAgg {
    pub total: usize,
    pub count: usize,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub counter: f64,
    pub last: f64,
}

impl FloatAgg {
    #[inline]
    pub fn add_value(&mut self, v: f64) {
        if self.total > 0 {
            if v < self.last {
                // A reset: the counter restarted from zero.
                self.counter += v;
            } else {
                self.counter += v - self.last;
            }
        } else {
            self.counter = v;
        }
        self.last = v;
        self.sum += v;
        self.count += 1;
        self.total += 1;
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
    }
}

impl Aggregate<(i64, f64)> for FloatAgg {
    #[inline]
    fn reset(&mut self) {
        self.count = 0;
        self.sum = 0.0;
        self.min = f64::MAX;
        self.max = -f64::MAX;
    }
    #[inline]
    fn add(&mut self, s: &(i64, f64)) -> HResult<()> {
        self.add_value(s.1);
        Ok(())
    }
    fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thanos's loop, literally.
    fn target_chunk_count_loop(mint: i64, maxt: i64, in_res: i64, out_res: i64, count: usize) -> usize {
        let max_samples = ((maxt - mint) / out_res) as f64;
        let f = (count as f64 / ((maxt - mint) as f64 / in_res as f64)).min(1.0);
        let exp = (max_samples * f) as i64 + 1;
        let mut x = 1;
        while exp / x > 140 {
            x += 1;
        }
        x as usize
    }

    #[test]
    fn target_chunk_count_matches_the_loop_it_replaces() {
        let cases = [
            (0, 0, 60_000, 300_000, 1),
            (0, 60_000 * 600, 60_000, 300_000, 601),
            (0, 144_000_000, 60_000, 300_000, 9600),
            (0, 144_000_000, 15_000, 300_000, 9600),
            (0, 14 * 86_400_000, 60_000, 300_000, 14 * 1440 * 4),
            (0, 864_000_000, 300_000, 3_600_000, 2880),
            (0, 86_400_000 * 400, 300_000, 3_600_000, 115_200),
            (5, 4, 1, 1, 3),
        ];
        for (mint, maxt, i, o, n) in cases {
            assert_eq!(
                target_chunk_count(mint, maxt, i, o, n),
                target_chunk_count_loop(mint, maxt, i, o, n),
                "{mint} {maxt} {i} {o} {n}"
            );
        }
        for exp in 0..5000i64 {
            // A range that gives exactly `exp - 1` window slots, completely full.
            let maxt = (exp - 1).max(0) * 100;
            let n = (maxt / 10) as usize + 1;
            assert_eq!(
                target_chunk_count(0, maxt, 10, 100, n),
                target_chunk_count_loop(0, maxt, 10, 100, n),
                "exp {exp}"
            );
        }
    }

    #[test]
    fn windows_end_on_their_last_millisecond() {
        assert_eq!(window_end(0, 300_000), 299_999);
        assert_eq!(window_end(299_999, 300_000), 299_999);
        assert_eq!(window_end(300_000, 300_000), 599_999);
        assert_eq!(window_end(1_587_690_005_791, 300_000), 1_587_690_299_999);
    }

    #[test]
    fn the_last_aggregate_of_a_batch_is_stamped_at_its_last_sample() {
        let data = [(20, 1.0), (40, 2.0), (120, 3.0), (250, 4.0)];
        let mut got = Vec::new();
        let last = downsample_batch(
            &data,
            |s| s.0,
            100,
            &mut FloatAgg::default(),
            |t, a| {
                got.push((t, a.count, a.sum));
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, vec![(99, 2, 3.0), (199, 1, 3.0), (250, 1, 4.0)]);
        assert_eq!(last, 250);
    }
}
