//! Time in one place: the wall clock, the Go and RFC 3339 text forms of times and
//! durations that Thanos and Prometheus print and parse, and Prometheus's `model.Duration`.
//!
//! Block ranges, ULIDs and samples are milliseconds since the Unix epoch;
//! `thanos.upload_time` is an RFC 3339 timestamp with nanoseconds (Go's
//! `time.RFC3339Nano`); marker times are Unix seconds. No date-time dependency: the
//! calendar arithmetic is the proleptic Gregorian day count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

// ---- clock ----------------------------------------------------------------------------

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_nanos() -> i128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0)
}

// ---- durations ------------------------------------------------------------------------

/// Why a duration string is not a Prometheus `model.Duration`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?} (want units y, w, d, h, m, s, ms in that order, e.g. 90s, 2m, 1h30m)")]
    Invalid(String),
    #[error("duration {0:?} is too long")]
    TooLong(String),
}

/// Units of a `model.Duration`, largest first, in milliseconds (a year is 365 days).
const DURATION_UNITS: [(&str, i64); 7] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
];

/// Parses a Prometheus `model.Duration`, as Prometheus and Thanos flags and Thanos's YAML
/// take them, to milliseconds: `0`, or whole numbers with units in decreasing order, each
/// at most once: `1y2w3d4h5m6s7ms`, `90s`, `1h30m`. No sign, no fraction, no spaces.
pub fn parse_duration_ms(s: &str) -> Result<i64, DurationError> {
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let bad = || DurationError::Invalid(s.to_string());
    let mut rest = s;
    let mut next_unit = 0;
    let mut total: i64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(bad());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| DurationError::TooLong(s.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let i = DURATION_UNITS[next_unit..].iter().position(|(u, _)| *u == unit).ok_or_else(bad)? + next_unit;
        next_unit = i + 1;
        total = n
            .checked_mul(DURATION_UNITS[i].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::TooLong(s.to_string()))?;
    }
    Ok(total)
}

/// [`parse_duration_ms`] as a [`Duration`].
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    parse_duration_ms(s).map(|ms| Duration::from_millis(ms as u64))
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

// ---- timestamps -----------------------------------------------------------------------

/// Milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn rfc3339_ms(ms: i64) -> String {
    format!("{}.{:03}Z", date_time(ms.div_euclid(1000)), ms.rem_euclid(1000))
}

/// Go's `t.UTC().Format(time.RFC3339Nano)`: the fraction loses its trailing zeros and
/// is left out when zero (`2025-01-01T00:00:00.1234Z`, `2025-01-01T00:00:00Z`).
pub fn rfc3339_nano(unix_nanos: i128) -> String {
    let secs = unix_nanos.div_euclid(1_000_000_000) as i64;
    let nanos = unix_nanos.rem_euclid(1_000_000_000) as u32;
    let mut s = date_time(secs);
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

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SS` (UTC), the part of RFC 3339 before
/// the fraction.
fn date_time(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
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
    fn model_durations() {
        for (s, ms) in [
            ("0", 0),
            ("90s", 90_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            ("1d", 86_400_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
            ("500ms", 500),
            ("1h0m0s", 3_600_000),
            ("1y2w3d4h5m6s7ms", 31_536_000_000 + 2 * 604_800_000 + 3 * 86_400_000 + 4 * 3_600_000 + 5 * 60_000 + 6007),
        ] {
            assert_eq!(parse_duration_ms(s), Ok(ms), "{s}");
            assert_eq!(parse_duration(s), Ok(Duration::from_millis(ms as u64)), "{s}");
        }
        assert_eq!(parse_duration_ms(""), Err(DurationError::Empty));
        for s in ["90", "1.5s", "s", "1m1h", "1s1s", "-1s", "+1s", "1x", " 1s", "1s ", "1ms1s", "0s0"] {
            assert_eq!(parse_duration_ms(s), Err(DurationError::Invalid(s.to_string())), "{s}");
        }
        for s in ["300000000y", "99999999999999999999ms", "106751991167d300000000h"] {
            assert_eq!(parse_duration_ms(s), Err(DurationError::TooLong(s.to_string())), "{s}");
        }
    }

    #[test]
    fn durations_read_back_what_go_prints() {
        for ms in [1, 999, 1000, 90_000, 3_600_000, 7_200_000, 86_400_000] {
            let s = go_duration_ms(ms);
            assert_eq!(parse_duration_ms(&s), Ok(ms), "{s}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(rfc3339_ms(1_600_000_000_123), "2020-09-13T12:26:40.123Z");
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(go_duration_ms(120_001), "2m0.001s");
        assert_eq!(go_duration_ms(7_200_000), "2h0m0s");
    }

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
