//! Varbit integers (Prometheus's `putVarbitInt`/`putVarbitUint`): a prefix of up to eight
//! bits picks the payload width. Timestamps, counts, spans and integer buckets use them.

use crate::error::FormatResult;
use crate::format::bstream::{BitReader, BitWriter};
use crate::format::xor::bit_range;

/// Payload widths of the varbit buckets, indexed by the number of leading one bits of the
/// prefix (0 = the value zero; 8 = a raw 64-bit value with no terminating zero bit).
const VARBIT_WIDTHS: [u32; 9] = [0, 3, 6, 9, 12, 18, 25, 56, 64];

/// Writes the prefix of varbit bucket `k` (1..=8): `k` one bits and, below 8, a zero bit.
#[inline]
fn write_varbit_prefix(w: &mut BitWriter, k: u32) {
    if k == 8 {
        w.write_bits(0xff, 8);
    } else {
        w.write_bits(((1u64 << k) - 1) << 1, k + 1);
    }
}

/// Writes `v` in the varbit encoding for signed integers (`putVarbitInt`): a prefix of up
/// to eight bits picks the payload width from 0, 3, 6, 9, 12, 18, 25, 56 or 64 bits.
pub fn write_varbit_int(w: &mut BitWriter, v: i64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (k, &n) in VARBIT_WIDTHS.iter().enumerate().take(8).skip(1) {
        if bit_range(v, n) {
            write_varbit_prefix(w, k as u32);
            w.write_bits(v as u64, n);
            return;
        }
    }
    write_varbit_prefix(w, 8);
    w.write_bits(v as u64, 64);
}

/// Writes `v` in the varbit encoding for unsigned integers (`putVarbitUint`): the same
/// prefixes as [`write_varbit_int`], with the unsigned ranges 0, ≤7, ≤63, ... .
pub fn write_varbit_uint(w: &mut BitWriter, v: u64) {
    if v == 0 {
        w.write_bit(false);
        return;
    }
    for (k, &n) in VARBIT_WIDTHS.iter().enumerate().take(8).skip(1) {
        if v >> n == 0 {
            write_varbit_prefix(w, k as u32);
            w.write_bits(v, n);
            return;
        }
    }
    write_varbit_prefix(w, 8);
    w.write_bits(v, 64);
}

/// Reads a varbit prefix and returns the payload width it announces.
#[inline]
fn read_varbit_width(r: &mut BitReader<'_>, what: &str) -> FormatResult<u32> {
    let mut ones = 0;
    while ones < 8 && r.read_bit(what)? {
        ones += 1;
    }
    Ok(VARBIT_WIDTHS[ones])
}

/// Reads a value written by [`write_varbit_int`]. Every bit pattern is valid, so the only
/// error is running out of bits.
pub fn read_varbit_int(r: &mut BitReader<'_>, what: &str) -> FormatResult<i64> {
    let n = read_varbit_width(r, what)?;
    let u = r.read_bits(n, what)?;
    if n == 0 || n == 64 {
        return Ok(u as i64);
    }
    // Prometheus's sign rule: the positive range reaches 2^(n-1) itself.
    let half = 1u64 << (n - 1);
    Ok(if u > half { u.wrapping_sub(1u64 << n) as i64 } else { u as i64 })
}

/// Reads a value written by [`write_varbit_uint`].
pub fn read_varbit_uint(r: &mut BitReader<'_>, what: &str) -> FormatResult<u64> {
    let n = read_varbit_width(r, what)?;
    r.read_bits(n, what)
}
