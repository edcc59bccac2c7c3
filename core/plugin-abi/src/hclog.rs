//! hclog's JSON line conventions shared by plugins (which write them) and the task shim (whose
//! log lines carry the same timestamps).

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a time as hclog's JSON timestamp, Go layout `2006-01-02T15:04:05.000000Z07:00`,
/// in UTC (so the zone is `Z`), with exactly six fractional digits.
pub fn format_timestamp(at: SystemTime) -> String {
    let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let micros = d.subsec_micros();
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamp_has_go_layout_and_six_fraction_digits() {
        let t = UNIX_EPOCH + Duration::new(1_136_214_245, 123_456_789); // 2006-01-02T15:04:05Z
        assert_eq!(format_timestamp(t), "2006-01-02T15:04:05.123456Z");
        assert_eq!(format_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(1_709_164_800 + 3_599); // 2024-02-29T00:59:59Z
        assert_eq!(format_timestamp(t), "2024-02-29T00:59:59.000000Z");
        let t = UNIX_EPOCH + Duration::new(4_102_444_799, 1_000); // 2099-12-31T23:59:59
        assert_eq!(format_timestamp(t), "2099-12-31T23:59:59.000001Z");
    }
}
