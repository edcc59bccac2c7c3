//! One log entry as the engine sends it with `timestamps=true`: `<RFC 3339 time> <message>`,
//! and the bound on a line's length (task output is hostile).

use bollard::container::LogOutput;

/// A line longer than this is cut: the rest, up to its newline, is dropped.
pub const MAX_LINE: u64 = 1024 * 1024;

/// Which of the task's files an entry goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// An entry of the engine's log: its stream, the whole second of its timestamp (when the
/// prefix parses), the timestamp's text, and the frame with where its message starts.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) stream: Stream,
    pub(crate) second: Option<i64>,
    pub(crate) timestamp: String,
    frame: LogOutput,
    start: usize,
}

impl Entry {
    /// The entry in one frame of the logs endpoint; stdin frames carry none. A TTY
    /// container's output (one raw stream) is the task's stdout.
    pub(crate) fn from_output(out: LogOutput) -> Option<Entry> {
        let stream = match out {
            LogOutput::StdOut { .. } | LogOutput::Console { .. } => Stream::Stdout,
            LogOutput::StdErr { .. } => Stream::Stderr,
            LogOutput::StdIn { .. } => return None,
        };
        Some(split_timestamp(stream, out))
    }

    /// The message, without the engine's timestamp prefix.
    pub(crate) fn message(&self) -> &[u8] {
        &self.frame.as_ref()[self.start..]
    }
}

/// Splits `<timestamp> <message>`; a frame without a parsable prefix is all message.
fn split_timestamp(stream: Stream, frame: LogOutput) -> Entry {
    // RFC 3339 with nanoseconds and an offset is at most 35 bytes.
    let bytes = frame.as_ref();
    let space = bytes.iter().take(40).position(|b| *b == b' ');
    let parsed = space.and_then(|i| {
        let text = std::str::from_utf8(&bytes[..i]).ok()?;
        Some((i, text.to_string(), unix_second(text)?))
    });
    let (second, timestamp, start) = match parsed {
        Some((i, timestamp, second)) => (Some(second), timestamp, i + 1),
        None => (None, String::new(), 0),
    };
    Entry {
        stream,
        second,
        timestamp,
        frame,
        start,
    }
}

/// The whole seconds since the epoch of an RFC 3339 time such as
/// `2026-12-07T11:12:05.123456789Z` or `...+02:00` (the fraction is ignored).
pub(crate) fn unix_second(text: &str) -> Option<i64> {
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
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
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
    Some(days * 86_400 + hour * 3600 + min * 60 + sec - offset)
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

/// Appends `message` to `out`, keeping at most [`MAX_LINE`] bytes of any line: `line_len`
/// is how much of the current line (the bytes since the last newline) was already seen,
/// across entries (the engine splits long lines into several).
pub(crate) fn append_bounded(out: &mut Vec<u8>, line_len: &mut u64, message: &[u8]) {
    let mut rest = message;
    while !rest.is_empty() {
        let (segment, newline) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], true),
            None => (rest, false),
        };
        let room = MAX_LINE.saturating_sub(*line_len);
        let keep = room.min(segment.len() as u64) as usize;
        out.extend_from_slice(&segment[..keep]);
        *line_len = line_len.saturating_add(segment.len() as u64);
        if newline {
            out.push(b'\n');
            *line_len = 0;
            rest = &rest[segment.len() + 1..];
        } else {
            rest = &[];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_to_unix_seconds() {
        assert_eq!(unix_second("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_second("2026-12-07T11:12:05.123456789Z"),
            Some(1_796_641_925)
        );
        assert_eq!(
            unix_second("2026-12-07T13:12:05.5+02:00"),
            Some(1_796_641_925)
        );
        assert_eq!(unix_second("2000-02-29T00:00:01Z"), Some(951_782_401));
        assert_eq!(unix_second("not a time at all"), None);
        assert_eq!(unix_second("2026-13-07T11:12:05Z"), None);
    }

    #[test]
    fn the_prefix_is_stripped_and_a_frame_without_one_kept_whole() {
        let e = Entry::from_output(LogOutput::StdErr {
            message: b"2026-12-07T11:12:05.000000001Z hello world\n"
                .to_vec()
                .into(),
        })
        .unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.second, Some(1_796_641_925));
        assert_eq!(e.message(), b"hello world\n");
        let e = Entry::from_output(LogOutput::StdOut {
            message: b"garbage\n".to_vec().into(),
        })
        .unwrap();
        assert_eq!((e.second, e.message()), (None, &b"garbage\n"[..]));
    }

    #[test]
    fn long_lines_are_cut_across_entries() {
        let mut out = Vec::new();
        let mut len = 0;
        let chunk = vec![b'x'; (MAX_LINE as usize) / 2 + 10];
        append_bounded(&mut out, &mut len, &chunk);
        append_bounded(&mut out, &mut len, &chunk);
        append_bounded(&mut out, &mut len, b"tail\nnext\n");
        assert_eq!(out.len() as u64, MAX_LINE + "\nnext\n".len() as u64);
        assert!(out.ends_with(b"x\nnext\n"));
        assert_eq!(len, 0);
        let mut out = Vec::new();
        append_bounded(&mut out, &mut len, b"part");
        assert_eq!(len, 4);
        append_bounded(&mut out, &mut len, b"ial\n");
        assert_eq!(&out[..], b"partial\n");
    }
}
