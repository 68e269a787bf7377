//! On-disk formats of Prometheus TSDB blocks and Thanos's additions, over bytes.
//!
//! Owns: turning bytes into values and values into bytes, one module per artifact,
//! reader and writer side by side. Readers take `&[u8]`; writers append to a
//! `Vec<u8>` or an `io::Write`.
//! Must not: open files, know paths, or allocate per sample on hot paths.
//! The formats are described in `docs/format/`.

pub mod aggr;
pub mod bstream;
pub mod chunks;
pub mod encoding;
pub mod histogram;
pub mod index;
pub mod meta;
pub mod sample;
pub mod tombstones;
pub mod xor;
