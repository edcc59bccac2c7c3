//! The engine's times (RFC 3339, as in container states and timestamped log lines) as Unix
//! time: one strict parser for both.

/// The whole seconds since the epoch of an engine time (the fraction is ignored).
pub(crate) fn unix_second(text: &str) -> Option<i64> {
    parse(text).map(|(secs, _)| secs)
}

/// Nanoseconds since the epoch of an engine time; 0 when it is not one, or is before 1970
/// (the engine's zero time, `0001-01-01T00:00:00Z`, means "never").
pub(crate) fn unix_nanos(text: &str) -> i64 {
    parse(text)
        .and_then(|(secs, nanos)| secs.checked_mul(1_000_000_000)?.checked_add(nanos))
        .filter(|n| *n > 0)
        .unwrap_or(0)
}

/// The seconds since the epoch of an RFC 3339 time such as `2026-12-07T11:12:05.123456789Z`
/// or `...+02:00`, and the nanoseconds of its fraction (digits beyond nine are ignored).
fn parse(text: &str) -> Option<(i64, i64)> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        nanos = format!("{:0<9}", &frac[..digits.min(9)]).parse().ok()?;
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some((days * 86_400 + hour * 3600 + min * 60 + sec - offset, nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times() {
        assert_eq!(unix_nanos("1970-01-01T00:00:01Z"), 1_000_000_000);
        assert_eq!(
            unix_nanos("2021-01-01T00:00:00.5Z"),
            1_609_459_200_500_000_000
        );
        assert_eq!(
            unix_nanos("2021-01-01T01:00:00+01:00"),
            1_609_459_200_000_000_000
        );
        assert_eq!(
            unix_nanos("0001-01-01T00:00:00Z"),
            0,
            "the engine's zero time"
        );
        assert_eq!(unix_nanos("garbage"), 0);
    }
}
