//! Go-compatible text formatting used in output that must match Go tools byte for byte
//! (`promtool tsdb dump` prints values with `%g` and label values with `%q`).
//!
//! Owns: `%g` for float64 and RFC 3339 times without a date-time dependency.

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

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", sod / 3600, sod / 60 % 60, sod % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A duration in ms the way Go's `time.Duration.String` prints it (`2h0m0s`, `1m0.001s`).
pub fn go_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let neg = ms < 0;
    let ms = ms.unsigned_abs();
    let mut s = String::new();
    if neg {
        s.push('-');
    }
    if ms < 1000 {
        s.push_str(&format!("{ms}ms"));
        return s;
    }
    let (h, m, sec, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        s.push_str(&format!("{h}h{m}m"));
    } else if m > 0 {
        s.push_str(&format!("{m}m"));
    }
    if milli == 0 {
        s.push_str(&format!("{sec}s"));
    } else {
        let frac = format!("{milli:03}");
        s.push_str(&format!("{sec}.{}s", frac.trim_end_matches('0')));
    }
    s
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

    #[test]
    fn times() {
        assert_eq!(rfc3339_ms(1_600_000_000_123), "2020-09-13T12:26:40.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(go_duration_ms(120_001), "2m0.001s");
        assert_eq!(go_duration_ms(7_200_000), "2h0m0s");
    }
}
