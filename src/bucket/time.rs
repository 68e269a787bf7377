//! Wall-clock helpers for the bucket protocol: `thanos.upload_time` is an RFC 3339
//! timestamp with nanoseconds (Go's `time.RFC3339Nano`), marker times are Unix seconds,
//! ULIDs and block ranges are milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

/// Go's `t.UTC().Format(time.RFC3339Nano)`: the fraction loses its trailing zeros and
/// is left out when zero (`2025-01-01T00:00:00.1234Z`, `2025-01-01T00:00:00Z`).
pub fn rfc3339_nano(unix_nanos: i128) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000) as i64;
    let nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::gofmt::civil_from_days(days);
    let mut s = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60);
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm`, any number of fraction digits) to
/// milliseconds since the epoch. `None` if it is not one. Go's zero time
/// (`0001-01-01T00:00:00Z`) parses to its (very negative) value; see [`is_zero_time`].
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !(b[10] == b'T' || b[10] == b't' || b[10] == b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse::<u32>().ok().map(i64::from) };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_ms = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = &s[start..i];
        let ms3: String = digits.chars().chain(std::iter::repeat('0')).take(3).collect();
        frac_ms = ms3.parse().ok()?;
    }
    let offset_s = match s.get(i..)? {
        "Z" | "z" => 0,
        tz if tz.len() == 6 && (tz.starts_with('+') || tz.starts_with('-')) && &tz[3..4] == ":" => {
            let oh: i64 = tz[1..3].parse().ok()?;
            let om: i64 = tz[4..6].parse().ok()?;
            let o = oh * 3600 + om * 60;
            if tz.starts_with('-') {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_s;
    Some(secs * 1000 + frac_ms)
}

/// Whether an `upload_time` is Go's zero `time.Time` (never uploaded by Thanos).
pub fn is_zero_time(s: &str) -> bool {
    s.is_empty() || s.starts_with("0001-01-01T00:00:00")
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_nano(1_735_689_600_123_456_789), "2025-01-01T00:00:00.123456789Z");
        assert_eq!(rfc3339_nano(1_735_689_600_100_000_000), "2025-01-01T00:00:00.1Z");
        assert_eq!(rfc3339_nano(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for n in [0i128, 1_735_689_600_123_456_789, 951_782_400_000_000_000, 4_102_444_799_999_000_000] {
            assert_eq!(parse_rfc3339_ms(&rfc3339_nano(n)), Some((n / 1_000_000) as i64), "{}", rfc3339_nano(n));
        }
        assert_eq!(parse_rfc3339_ms("2025-01-01T02:00:00+02:00"), Some(1_735_689_600_000));
        assert_eq!(parse_rfc3339_ms("2025-01-01T00:00:00.5Z"), Some(1_735_689_600_500));
        assert!(parse_rfc3339_ms("0001-01-01T00:00:00Z").unwrap() < -62_000_000_000_000);
        for bad in [
            "",
            "2025-01-01",
            "2025-13-01T00:00:00Z",
            "2025-01-01T00:00:00",
            "2025-01-01T00:00:00.Z",
            "2025-01-01T00:00:00+0200",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
        assert!(is_zero_time("0001-01-01T00:00:00Z"));
        assert!(!is_zero_time("2025-01-01T00:00:00Z"));
    }
}
