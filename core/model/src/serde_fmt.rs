//! Serde formats Nomad's API uses: durations as integer nanoseconds (also read from Go
//! duration strings such as "30s"), times as RFC 3339 strings.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Parses a Go-style duration: "30s", "1m30s", "250ms", "24h", "0".
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (num, tail) = rest.split_at(num_end);
        let n: f64 = num.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let mult = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += n * mult;
        rest = tail;
    }
    // A job's duration is hostile input: one too large for a Duration is refused, not a panic.
    Duration::try_from_secs_f64(total).ok()
}

/// Formats a duration the way Go does ("1h0m0s", "30s", "250ms").
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".into();
    }
    if ns < 1_000_000_000 {
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else {
            format!("{ns}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = d.subsec_millis();
    let s = if frac > 0 {
        format!("{s}.{frac:03}s")
    } else {
        format!("{s}s")
    };
    if h > 0 {
        format!("{h}h{m}m{s}")
    } else if m > 0 {
        format!("{m}m{s}")
    } else {
        s
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NanosOrString {
    Nanos(i64),
    Float(f64),
    Text(String),
}

fn to_duration<E: serde::de::Error>(v: NanosOrString) -> Result<Duration, E> {
    match v {
        NanosOrString::Nanos(n) if n >= 0 => Ok(Duration::from_nanos(n as u64)),
        NanosOrString::Float(f) if f >= 0.0 => Ok(Duration::from_nanos(f as u64)),
        NanosOrString::Text(s) => parse_duration(&s).ok_or_else(|| {
            E::custom(format!(
                "{s:?} is not a duration (nanoseconds, or e.g. \"30s\")"
            ))
        }),
        _ => Err(E::custom("a duration must not be negative")),
    }
}

/// `Duration` as integer nanoseconds.
pub mod nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.as_nanos() as i64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        to_duration(NanosOrString::deserialize(d)?)
    }
}

/// `Option<Duration>` as integer nanoseconds or null.
pub mod opt_nanos {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_i64(d.as_nanos() as i64),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<NanosOrString>::deserialize(d)?
            .map(to_duration)
            .transpose()
    }
}

/// Unix nanoseconds as an RFC 3339 string (null for 0).
pub mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &i64, s: S) -> Result<S::Ok, S::Error> {
        match format(*t) {
            Some(v) => s.serialize_str(&v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum T {
            Nanos(i64),
            Text(String),
        }
        match Option::<T>::deserialize(d)? {
            None => Ok(0),
            Some(T::Nanos(n)) => Ok(n),
            Some(T::Text(s)) => parse(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an RFC 3339 time"))),
        }
    }
}

/// Formats Unix nanoseconds as RFC 3339 UTC with nanoseconds; None for 0 or less.
pub fn format(ns: i64) -> Option<String> {
    if ns <= 0 {
        return None;
    }
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Parses RFC 3339 ("2023-11-14T22:13:20.123Z", "+01:00" offsets) to Unix nanoseconds.
pub fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || (b[10] != b'T' && b[10] != b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        let mut f = frac[..digits].to_string();
        f.truncate(9);
        while f.len() < 9 {
            f.push('0');
        }
        nanos = f.parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o[1..3].parse::<i64>().ok()? * 3600 + o[4..6].parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) * 1_000_000_000 + nanos)
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
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
    fn a_huge_or_malformed_duration_is_refused_not_a_panic() {
        for bad in [
            "99999999999999999999h",
            "1e400s",
            ".s",
            "5",
            "-1s",
            "1.2.3s",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn times_round_trip() {
        let t = 1_700_000_000_123_456_789;
        let s = format(t).unwrap();
        assert_eq!(s, "2023-11-14T22:13:20.123456789Z");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(
            parse("2023-11-14T23:13:20+01:00"),
            Some(1_700_000_000_000_000_000)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(format_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_duration(Duration::from_secs(3600)), "1h0m0s");
    }
}
