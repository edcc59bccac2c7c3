//! One log entry as the engine sends it with `timestamps=true`: `<RFC 3339 time> <message>`,
//! and the bound on a line's length (task output is hostile).

use bollard::container::LogOutput;

use crate::time::unix_second;

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
