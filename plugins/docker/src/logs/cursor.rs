//! Where the follower is in the engine's log, kept so that a new follower (after a kill -9
//! of the plugin at any instant) writes every entry exactly once.
//!
//! The engine's `since` takes whole seconds here (bollard's query field is an integer) and
//! returns, in the order of its log file, every entry whose timestamp is at or after it. The
//! cursor holds an anchor second and how many entries of the query `since = anchor` have
//! been written: a new query from the anchor skips exactly that many. The anchor trails the
//! newest entry's second by one, so the count stays small, and the entries of stdout and
//! stderr (whose timestamps may be out of order by a little in the file) are still counted
//! right: an entry can only be missed if it lands in the file more than a second after a
//! newer one.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Where one of the task's streams stands in its files after the last recorded write.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamPos {
    /// The file being written (`<task>.stdout.<n>`).
    pub(crate) file: String,
    /// Its length after the last recorded write.
    pub(crate) len: u64,
    /// The length of the line it ends with (no newline yet), for the line bound.
    pub(crate) line_len: u64,
}

/// The cursor file's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// The container whose log this is: a task restarted in a new container appends to
    /// the same files from the start of the new container's log.
    #[serde(default)]
    pub(crate) container_id: String,
    /// The engine is asked for the entries since this second (Unix time).
    pub(crate) since: i64,
    /// How many entries of that query were written.
    pub(crate) written: u64,
    /// The timestamp of the last entry written, as the engine gave it (for people).
    pub(crate) last_timestamp: String,
    pub(crate) stdout: StreamPos,
    pub(crate) stderr: StreamPos,
}

impl Cursor {
    /// The cursor at `path`, or `None` when there is none yet.
    pub(crate) fn load(path: &Path) -> io::Result<Option<Cursor>> {
        match std::fs::read(path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Replaces the cursor at `path` atomically (a temporary file beside it, renamed over
    /// it): a kill -9 leaves the old cursor or the new one. No fsync: the page cache outlives
    /// the plugin, and the log files it describes are not synced either.
    pub(crate) fn store(&self, path: &Path) -> io::Result<()> {
        let data = serde_json::to_vec(self).map_err(io::Error::other)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, path)
    }
}

/// The counting behind the cursor, for the query being read.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker {
    since: i64,
    /// Entries of this query seen (written, or skipped as written before), by second.
    per_second: BTreeMap<i64, u64>,
    /// Entries of this query still to skip: written by an earlier query.
    to_skip: u64,
    last_timestamp: String,
}

impl Tracker {
    /// Continues from a stored cursor (or from the start).
    pub(crate) fn new(cursor: &Cursor) -> Tracker {
        Tracker {
            since: cursor.since,
            per_second: BTreeMap::new(),
            to_skip: cursor.written,
            last_timestamp: cursor.last_timestamp.clone(),
        }
    }

    /// How many entries of the query `since` were written.
    pub(crate) fn written(&self) -> u64 {
        self.per_second.values().sum::<u64>() + self.to_skip
    }

    /// Starts a new query: returns its `since`; the entries it repeats will be skipped.
    pub(crate) fn restart(&mut self) -> i64 {
        self.to_skip = self.written();
        self.per_second.clear();
        self.since
    }

    /// Counts the next entry of the query; true when it is new (to be written), false when
    /// an earlier query wrote it.
    pub(crate) fn admit(&mut self, second: Option<i64>, timestamp: &str) -> bool {
        let newest = self.per_second.keys().next_back().copied();
        let second = second.or(newest).unwrap_or(self.since);
        if second >= self.since {
            *self.per_second.entry(second).or_default() += 1;
        }
        if self.to_skip > 0 {
            self.to_skip -= 1;
            return false;
        }
        if !timestamp.is_empty() {
            self.last_timestamp = timestamp.to_string();
        }
        if second - 1 > self.since {
            self.since = second - 1;
            let since = self.since;
            self.per_second.retain(|s, _| *s >= since);
        }
        true
    }

    /// The cursor as it stands, with the streams' positions.
    pub(crate) fn cursor(&self, stdout: StreamPos, stderr: StreamPos) -> Cursor {
        Cursor {
            container_id: String::new(),
            since: self.since,
            written: self.written(),
            last_timestamp: self.last_timestamp.clone(),
            stdout,
            stderr,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Admits `seconds` as entries; returns which were new.
    fn feed(t: &mut Tracker, seconds: &[i64]) -> Vec<bool> {
        seconds.iter().map(|s| t.admit(Some(*s), "ts")).collect()
    }

    #[test]
    fn the_anchor_trails_the_newest_second_and_counts_from_it() {
        let mut t = Tracker::new(&Cursor::default());
        assert_eq!(t.restart(), 0);
        assert!(feed(&mut t, &[100, 100, 101, 102, 102]).iter().all(|n| *n));
        let c = t.cursor(StreamPos::default(), StreamPos::default());
        assert_eq!((c.since, c.written), (101, 3));
    }

    #[test]
    fn a_new_query_from_the_cursor_skips_exactly_what_was_written() {
        let mut t = Tracker::new(&Cursor::default());
        t.restart();
        feed(&mut t, &[100, 101, 101, 102]);
        let c = t.cursor(StreamPos::default(), StreamPos::default());
        // The engine's answer to `since = 101`: 101, 101, 102 (written), then new ones.
        let mut again = Tracker::new(&c);
        assert_eq!(again.restart(), 101);
        assert_eq!(
            feed(&mut again, &[101, 101, 102, 102, 103]),
            [false, false, false, true, true]
        );
        // A restart in the middle of skipping keeps the count.
        let mut third = Tracker::new(&c);
        third.restart();
        assert_eq!(feed(&mut third, &[101]), [false]);
        assert_eq!(third.restart(), 101);
        assert_eq!(
            feed(&mut third, &[101, 101, 102, 102]),
            [false, false, false, true]
        );
    }

    #[test]
    fn an_entry_older_than_the_anchor_is_written_but_not_counted() {
        let mut t = Tracker::new(&Cursor::default());
        t.restart();
        feed(&mut t, &[100, 105]);
        assert_eq!(
            t.cursor(StreamPos::default(), StreamPos::default()).since,
            104
        );
        // stderr's entry of second 103 lands after stdout's of 105: written, and not in
        // the engine's answer to `since = 104`, so not counted.
        assert_eq!(feed(&mut t, &[103]), [true]);
        assert_eq!(t.written(), 1);
    }

    #[test]
    fn the_cursor_file_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cursor.json");
        assert_eq!(Cursor::load(&path).unwrap(), None);
        let c = Cursor {
            container_id: "c1".into(),
            since: 7,
            written: 3,
            last_timestamp: "x".into(),
            stdout: StreamPos {
                file: "t.stdout.2".into(),
                len: 10,
                line_len: 1,
            },
            stderr: StreamPos::default(),
        };
        c.store(&path).unwrap();
        assert_eq!(Cursor::load(&path).unwrap(), Some(c));
    }
}
