//! The staged pipeline every block-to-block job runs on (the merge of N sources, the
//! downsampler): a gathering thread reads the next batch of series from the source
//! indexes, the calling thread hands each batch to the rayon pool, and a writer thread
//! writes the previous batch's output. Channels between the stages hold at most `depth`
//! batches, so memory is bounded by a few batches whatever the size of the blocks.
//!
//! Owns: the threads, the bounded channels, teardown (a failing stage stops the others
//! without deadlock), and the rule that the first failure in pipeline order (gather,
//! process, write) is the one reported. Also the mapping of a chunk that cannot be read
//! to an error naming its block, series and chunk ([`series_chunk`]), which every stage
//! that reads chunks uses.
//! Must not: know what a batch holds; the callers decide batch sizes and what each
//! stage does.

use std::sync::mpsc::sync_channel;

use super::Block;
use crate::error::{Error, Result};
use crate::format::chunks::{ChunkRef, RawChunk};
use crate::labels::LabelPairs;

/// How large a batch of series may grow: it ends at whichever limit comes first. The byte
/// limit (chunk records read from the sources) is what bounds memory: the outputs of a few
/// batches are in flight at once (one being built, one queued, one being written), and an
/// output is about as large as the chunk bytes it came from. The series and chunk limits
/// bound the per-series and per-chunk buffers of a batch of small series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchLimits {
    pub series: usize,
    pub chunks: usize,
    pub bytes: usize,
}

impl BatchLimits {
    /// True once a batch holding this much is full.
    pub fn reached(&self, series: usize, chunks: usize, bytes: usize) -> bool {
        series >= self.series.max(1) || chunks >= self.chunks.max(1) || bytes >= self.bytes.max(1)
    }

    /// The limits of batch number `n` (from 0): the first batches are small, so the workers
    /// start at once instead of waiting for a full batch; each doubles the one before, up
    /// to the full size from about the seventh batch on.
    pub fn ramp(&self, n: usize) -> BatchLimits {
        let shift = 6usize.saturating_sub(n) as u32;
        BatchLimits {
            series: (self.series >> shift).max(1),
            chunks: (self.chunks >> shift).max(1),
            bytes: (self.bytes >> shift).max(1),
        }
    }
}

/// Runs the three stages to completion and returns what the writer returned.
///
/// - `gather` is called on its own thread until it returns `Ok(None)`; each batch it
///   returns is handed to `process`.
/// - `process` runs on the calling thread (it is expected to fan out on rayon) and turns
///   a batch into output for the writer.
/// - `write` runs on its own thread and drains the outputs through the iterator it is
///   given; it may do set-up work first (which then overlaps the first batches).
///
/// When a stage fails the others stop at their next batch. The error reported is the
/// first in pipeline order, because a failing reader makes the later stages fail too
/// (they see a closed channel) and the reader's error is the one that names the cause.
pub fn run<B, O, R>(
    depth: usize,
    mut gather: impl FnMut() -> Result<Option<B>> + Send,
    process: impl Fn(B) -> Result<O>,
    write: impl FnOnce(&mut dyn Iterator<Item = O>) -> Result<R> + Send,
) -> Result<R>
where
    B: Send,
    O: Send,
    R: Send,
{
    std::thread::scope(|scope| {
        let (tx, rx) = sync_channel::<O>(depth);
        let writer = scope.spawn(move || write(&mut rx.into_iter()));
        let (gtx, grx) = sync_channel::<B>(depth);
        let gatherer = scope.spawn(move || -> Result<()> {
            while let Some(batch) = gather()? {
                if gtx.send(batch).is_err() {
                    break; // a later stage stopped; its error is reported
                }
            }
            Ok(())
        });
        let processed = (|| -> Result<()> {
            for batch in grx.iter() {
                if tx.send(process(batch)?).is_err() {
                    break; // the writer stopped; its error is reported below
                }
            }
            Ok(())
        })();
        // Closing both channels ends the other stages at their next batch.
        drop(grx);
        drop(tx);
        // A panic in a stage is a bug: it goes on unwinding here.
        let gathered = gatherer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        let written = writer.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        gathered?;
        processed?;
        written
    })
}

/// Reads chunk `r` of a series of `block`; a chunk that cannot be read is reported with
/// the block (as [`Error::InBlock`]), the series' labels and the chunk ref, in the file
/// that holds it.
pub fn series_chunk<'a>(block: &'a Block, r: ChunkRef, labels: &[(&[u8], &[u8])]) -> Result<RawChunk<'a>> {
    block.chunk(r).map_err(|e| match e.innermost() {
        Error::Corrupt { path, source } => Error::BadSeries {
            path: path.clone(),
            series: labels.to_label_string(),
            problem: format!("chunk at {r}: {source}"),
        }
        .in_block(block.meta.ulid),
        _ => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn fail(what: &str) -> Error {
        Error::BadRequest(what.into())
    }

    #[test]
    fn batches_start_small_and_double_up_to_the_limits() {
        let l = BatchLimits { series: 2048, chunks: 16384, bytes: 4 << 20 };
        assert_eq!(l.ramp(0), BatchLimits { series: 32, chunks: 256, bytes: 64 << 10 });
        assert_eq!(l.ramp(1).series, 64);
        assert_eq!(l.ramp(6), l);
        assert_eq!(l.ramp(100), l);
        assert!(!l.reached(2047, 16383, (4 << 20) - 1));
        assert!(l.reached(1, 1, 4 << 20));
        assert!(l.reached(2048, 0, 0));
    }

    #[test]
    fn every_batch_flows_through_in_order() {
        let mut next = 0;
        let out = run(
            1,
            || {
                next += 1;
                Ok((next <= 100).then_some(next))
            },
            |b: i32| Ok(b * 2),
            |it| Ok(it.collect::<Vec<_>>()),
        )
        .unwrap();
        assert_eq!(out, (1..=100).map(|b| b * 2).collect::<Vec<_>>());
    }

    #[test]
    fn a_reader_error_is_reported_even_though_later_stages_see_a_closed_channel() {
        let mut next = 0;
        let err = run(
            1,
            || {
                next += 1;
                if next == 5 {
                    Err(fail("reader"))
                } else {
                    Ok(Some(next))
                }
            },
            Ok,
            |it| {
                it.for_each(drop);
                Err::<(), _>(fail("writer"))
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "reader");
    }

    #[test]
    fn a_writer_error_stops_the_reader_without_deadlock() {
        let gathered = AtomicUsize::new(0);
        let err = run(
            1,
            || {
                gathered.fetch_add(1, Ordering::Relaxed);
                Ok(Some(0u8)) // never ends on its own
            },
            Ok,
            |it| {
                it.next();
                Err::<(), _>(fail("writer"))
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "writer");
        assert!(gathered.load(Ordering::Relaxed) < 10, "the reader stopped soon after the writer");
    }

    #[test]
    fn a_processing_error_wins_over_the_writers_and_stops_the_reader() {
        let err = run(
            2,
            || Ok(Some(1u8)),
            |_| Err::<u8, _>(fail("process")),
            |it| {
                it.for_each(drop);
                Ok(())
            },
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "process");
    }
}
