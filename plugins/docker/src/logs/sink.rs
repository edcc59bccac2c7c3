//! The task's log files and the cursor: blocking work, run off the async runtime.
//!
//! Order of writes: the entries of a batch go to the files, then the cursor records the
//! files' lengths. A follower killed in between leaves bytes past the recorded lengths; the
//! next one cuts them off and reads those entries from the engine again.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_beneath::{Dir, Links};
use drover_plugin_sdk::shim::rotate::{self, RotatingLog};
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::Mode;

use super::cursor::{Cursor, StreamPos, Tracker};
use super::entry::{Entry, Stream, append_bounded};
use super::{LogTarget, LogsError};

/// How often, at most, the cursor is recorded while entries flow (and when they pause):
/// a new follower cuts back what was written after it and reads it again, so a lagging
/// cursor costs a little work, never a duplicate; recording it at every line would cost a
/// file replacement per line.
pub(crate) const CURSOR_INTERVAL: Duration = Duration::from_millis(200);

/// One stream's file writer and where it stands.
struct StreamFile {
    log: RotatingLog,
    line_len: u64,
}

impl StreamFile {
    fn pos(&self) -> StreamPos {
        StreamPos {
            file: self.log.current_name(),
            len: self.log.current_size(),
            line_len: self.line_len,
        }
    }
}

/// The writing half of a follower.
pub(crate) struct Sink {
    stdout: StreamFile,
    stderr: StreamFile,
    pub(crate) tracker: Tracker,
    container_id: String,
    cursor_path: PathBuf,
    /// When the cursor was last recorded, and whether entries were written since.
    stored_at: Instant,
    dirty: bool,
    /// Held while this sink lives: one writer per cursor (a follower being torn down
    /// finishes its last batch before the next one starts).
    _lock: Flock<File>,
}

impl Sink {
    /// Takes the cursor's lock (waiting for a previous writer to finish), cuts the files
    /// back to the cursor, and opens them for appending. Without a cursor of this container
    /// (the first follower, or the task's previous container's cursor) the log is read from
    /// its start, appended to the files as they are, and a cursor of where they stand is
    /// recorded before anything is written: a follower killed before its first cursor
    /// leaves nothing the next one would repeat.
    pub(crate) fn open(
        target: &LogTarget,
        container_id: &str,
        max_file_size: u64,
    ) -> Result<Sink, LogsError> {
        let lock = lock(&target.cursor_path)?;
        let cursor = match Cursor::load(&target.cursor_path) {
            // Torn by a crash of the machine (it is not synced): the output is written
            // again rather than lost.
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                tracing::warn!(cursor = %target.cursor_path.display(), error = %e,
                    "unreadable log cursor: the container's output is written again from its start");
                None
            }
            other => other.map_err(|e| LogsError::Cursor(target.cursor_path.clone(), e))?,
        };
        let (cursor, fresh) = match cursor {
            Some(c) if c.container_id == container_id => {
                restore(target, &target.stdout_path, &c.stdout)?;
                restore(target, &target.stderr_path, &c.stderr)?;
                (c, false)
            }
            _ => (Cursor::default(), true),
        };
        let open = |base: &Path, pos: &StreamPos| -> Result<StreamFile, LogsError> {
            let log = RotatingLog::with_limits(
                base,
                Some(&target.logs_dir_root),
                u64::from(match target.max_files {
                    0 => rotate::DEFAULT_MAX_FILES,
                    n => n,
                }),
                max_file_size,
            )
            .map_err(|e| LogsError::File(base.to_path_buf(), e))?;
            Ok(StreamFile {
                log,
                line_len: pos.line_len,
            })
        };
        let mut sink = Sink {
            stdout: open(&target.stdout_path, &cursor.stdout)?,
            stderr: open(&target.stderr_path, &cursor.stderr)?,
            tracker: Tracker::new(&cursor),
            container_id: container_id.to_string(),
            cursor_path: target.cursor_path.clone(),
            stored_at: Instant::now(),
            dirty: fresh,
            _lock: lock,
        };
        sink.store_cursor()?;
        Ok(sink)
    }

    /// Writes the new entries of a batch (skipping those an earlier query wrote), then
    /// records the cursor if it was last recorded [`CURSOR_INTERVAL`] ago.
    pub(crate) fn write(&mut self, entries: &[Entry]) -> Result<(), LogsError> {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut any = false;
        for e in entries {
            if !self.tracker.admit(e.second, &e.timestamp) {
                continue;
            }
            any = true;
            match e.stream {
                Stream::Stdout => append_bounded(&mut out, &mut self.stdout.line_len, e.message()),
                Stream::Stderr => append_bounded(&mut err, &mut self.stderr.line_len, e.message()),
            }
        }
        if !any {
            return Ok(());
        }
        for (file, data) in [(&mut self.stdout, out), (&mut self.stderr, err)] {
            file.log
                .write_all(&data)
                .map_err(|e| LogsError::File(PathBuf::from(file.log.current_name()), e))?;
        }
        self.dirty = true;
        if self.stored_at.elapsed() >= CURSOR_INTERVAL {
            self.store_cursor()?;
        }
        Ok(())
    }

    /// Records the cursor if entries were written since it was last recorded.
    pub(crate) fn store_cursor(&mut self) -> Result<(), LogsError> {
        if !self.dirty {
            return Ok(());
        }
        let mut cursor = self.tracker.cursor(self.stdout.pos(), self.stderr.pos());
        cursor.container_id.clone_from(&self.container_id);
        cursor
            .store(&self.cursor_path)
            .map_err(|e| LogsError::Cursor(self.cursor_path.clone(), e))?;
        self.dirty = false;
        self.stored_at = Instant::now();
        Ok(())
    }
}

/// Opens (creating) `<cursor>.lock` and locks it exclusively, waiting for a holder.
fn lock(cursor_path: &Path) -> Result<Flock<File>, LogsError> {
    let err = |e| LogsError::Cursor(cursor_path.to_path_buf(), e);
    if let Some(dir) = cursor_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(super::lock_path(cursor_path))
        .map_err(err)?;
    Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| err(errno.into()))
}

/// Cuts `base`'s files back to `pos`: the file it names to its recorded length, and the
/// files numbered after it (begun after the cursor was recorded) removed. Everything is
/// opened beneath the alloc dir without following links.
fn restore(target: &LogTarget, base: &Path, pos: &StreamPos) -> Result<(), LogsError> {
    if pos.file.is_empty() {
        return Ok(());
    }
    let err = |e: io::Error| LogsError::File(base.to_path_buf(), e);
    let to_io = |e: drover_beneath::Error| io::Error::new(e.kind(), e.to_string());
    let (Some(parent), Some(name)) = (base.parent(), base.file_name().and_then(|n| n.to_str()))
    else {
        return Err(err(io::Error::other("the log path names no file")));
    };
    let rel = parent
        .strip_prefix(&target.logs_dir_root)
        .map_err(|_| err(io::Error::other("the log path is outside the alloc dir")))?;
    let dir = match Dir::open(&target.logs_dir_root)
        .and_then(|root| root.dir(rel, Links::Never).map_err(to_io))
    {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(err(e)),
    };
    let index = file_index(name, &pos.file).ok_or_else(|| {
        err(io::Error::other(format!(
            "bad file {:?} in cursor",
            pos.file
        )))
    })?;
    for entry in dir.entries().map_err(err)? {
        let later = entry
            .name
            .to_str()
            .and_then(|n| file_index(name, n))
            .is_some_and(|n| n > index);
        if later {
            dir.remove_file(&entry.name).map_err(|e| err(to_io(e)))?;
        }
    }
    let file = dir
        .create_regular(Path::new(&pos.file), Mode::from_bits_truncate(0o644), false)
        .map_err(|e| err(to_io(e)))?;
    if file.metadata().map_err(err)?.len() > pos.len {
        file.set_len(pos.len).map_err(err)?;
    }
    Ok(())
}

/// `n` of a file named `<name>.<n>`.
fn file_index(name: &str, file: &str) -> Option<u64> {
    file.strip_prefix(name)?.strip_prefix('.')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_indices_parse() {
        assert_eq!(file_index("t.stdout", "t.stdout.12"), Some(12));
        assert_eq!(file_index("t.stdout", "t.stderr.1"), None);
        assert_eq!(file_index("t.stdout", "t.stdout.x"), None);
    }

    #[test]
    fn a_torn_cursor_starts_over_and_is_replaced() {
        let alloc = tempfile::tempdir().unwrap();
        let logs = alloc.path().join("alloc/logs");
        let target = LogTarget {
            stdout_path: logs.join("t.stdout"),
            stderr_path: logs.join("t.stderr"),
            logs_dir_root: alloc.path().to_path_buf(),
            max_files: 10,
            max_file_size_mb: 1,
            cursor_path: alloc.path().join("data/cursor"),
        };
        std::fs::create_dir_all(alloc.path().join("data")).unwrap();
        std::fs::write(&target.cursor_path, "").unwrap();
        let sink = Sink::open(&target, "c1", 1024).unwrap();
        assert_eq!(sink.tracker.written(), 0);
        let stored = Cursor::load(&target.cursor_path).unwrap().unwrap();
        assert_eq!(stored.container_id, "c1");
        assert_eq!(stored.stdout.file, "t.stdout.0");
    }

    #[test]
    fn restore_cuts_back_and_removes_later_files() {
        let alloc = tempfile::tempdir().unwrap();
        let logs = alloc.path().join("alloc/logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("t.stdout.0"), "0123").unwrap();
        std::fs::write(logs.join("t.stdout.1"), "4567garbage").unwrap();
        std::fs::write(logs.join("t.stdout.2"), "later").unwrap();
        let target = LogTarget {
            stdout_path: logs.join("t.stdout"),
            stderr_path: logs.join("t.stderr"),
            logs_dir_root: alloc.path().to_path_buf(),
            max_files: 10,
            max_file_size_mb: 1,
            cursor_path: alloc.path().join("cursor"),
        };
        let pos = StreamPos {
            file: "t.stdout.1".into(),
            len: 4,
            line_len: 0,
        };
        restore(&target, &target.stdout_path, &pos).unwrap();
        assert_eq!(
            std::fs::read_to_string(logs.join("t.stdout.0")).unwrap(),
            "0123"
        );
        assert_eq!(
            std::fs::read_to_string(logs.join("t.stdout.1")).unwrap(),
            "4567"
        );
        assert!(!logs.join("t.stdout.2").exists());
    }
}
