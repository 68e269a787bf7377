//! Go-compatible text formatting used in output that must match Go tools byte for byte
//! (`promtool tsdb dump` prints values with `%g` and label values with `%q`).
//!
//! Owns: `%g` for float64. Times and durations are in [`crate::time`].

/// Formats like Go's `fmt.Sprintf("%g", v)`: shortest round-trip digits; exponent form
/// when the decimal exponent is below -4 or at least 6 (Go decides with precision 6 when
/// the precision is "shortest"), the exponent with at least two digits.
pub fn format_g(v: f64) -> String {
    let mut s = String::with_capacity(24);
    push_g(&mut s, v);
    s
}

/// Appends `format_g(v)` to `out`.
pub fn push_g(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("NaN");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if v == 0.0 {
        out.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // Rust's `{:e}` gives the shortest round-trip digits, like Go's 'g' with -1. When the
    // exact value lies halfway between two such digit strings Rust rounds the last digit
    // up where Go rounds it to even (2^-25 is 2.9802322387695312e-08 in Go); rounding the
    // exact value to the same number of digits, half to even, gives Go's choice whenever
    // that still reads back as `v`.
    let shortest = format!("{v:e}");
    let ndigits = shortest.split('e').next().unwrap_or("").chars().filter(char::is_ascii_digit).count();
    let even = format!("{:.*e}", ndigits.saturating_sub(1), v);
    let e = if even.parse::<f64>() == Ok(v) { even } else { shortest };
    let (mant, exp) = e.split_once('e').expect("exponent");
    let exp: i32 = exp.parse().expect("exponent digits");
    let (neg, mant) = match mant.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mant),
    };
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let a = exp.unsigned_abs();
        if a < 10 {
            out.push('0');
        }
        out.push_str(&a.to_string());
    } else if exp < 0 {
        out.push_str("0.");
        for _ in 0..(-exp - 1) {
            out.push('0');
        }
        out.push_str(&digits);
    } else {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(&digits);
            for _ in digits.len()..int_len {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_go_percent_g() {
        for (v, want) in [
            (1.0, "1"),
            (1_500_000.0, "1.5e+06"),
            (1_234_567.0, "1.234567e+06"),
            (123_456.0, "123456"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456789012345678901234.0, "1.2345678901234569e+23"),
            (-2.5, "-2.5"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (100.0, "100"),
            (12.5, "12.5"),
            (2f64.powi(-25), "2.9802322387695312e-08"),
        ] {
            assert_eq!(format_g(v), want, "{v:e}");
        }
        assert_eq!(format_g(f64::NAN), "NaN");
        assert_eq!(format_g(f64::NEG_INFINITY), "-Inf");
    }
}
