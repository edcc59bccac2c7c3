//! Log files with rotation: `<base>.0`, `<base>.1` ... by increasing index; the oldest are
//! deleted beyond `max_files`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default number of files kept (Nomad's default).
pub const DEFAULT_MAX_FILES: u32 = 10;
/// Default size of one file in MiB (Nomad's default).
pub const DEFAULT_MAX_FILE_SIZE_MB: u64 = 10;

/// A writer that spreads output over numbered files of bounded size.
pub struct RotatingLog {
    base: PathBuf,
    max_files: u64,
    max_size: u64,
    oldest: u64,
    index: u64,
    size: u64,
    file: File,
}

fn numbered(base: &Path, index: u64) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
}

/// The indices of existing `<base>.<n>` files, sorted.
fn existing_indices(base: &Path) -> io::Result<Vec<u64>> {
    let dir = base
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefix = format!(
        "{}.",
        base.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.parse::<u64>().ok())
        {
            out.push(n);
        }
    }
    out.sort_unstable();
    Ok(out)
}

fn open_file(path: &Path, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).mode(0o644).custom_flags(libc::O_CLOEXEC);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.open(path)
}

impl RotatingLog {
    /// Opens the log at `base`, continuing the newest existing file (so a restarted task
    /// appends), creating the directory when needed. Zero limits mean Nomad's defaults.
    pub fn open(base: &Path, max_files: u32, max_file_size_mb: u64) -> io::Result<Self> {
        let max_files = u64::from(if max_files == 0 {
            DEFAULT_MAX_FILES
        } else {
            max_files
        });
        let mb = if max_file_size_mb == 0 {
            DEFAULT_MAX_FILE_SIZE_MB
        } else {
            max_file_size_mb
        };
        Self::with_limits(base, max_files, mb.saturating_mul(1024 * 1024))
    }

    /// Like [`RotatingLog::open`] with the file size in bytes (tests use tiny files).
    pub fn with_limits(base: &Path, max_files: u64, max_size: u64) -> io::Result<Self> {
        if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let existing = existing_indices(base)?;
        let index = existing.last().copied().unwrap_or(0);
        let oldest = existing.first().copied().unwrap_or(0);
        let file = open_file(&numbered(base, index), false)?;
        let size = file.metadata()?.len();
        let mut log = Self {
            base: base.to_path_buf(),
            max_files: max_files.max(1),
            max_size: max_size.max(1),
            oldest,
            index,
            size,
            file,
        };
        log.prune();
        Ok(log)
    }

    /// The file being written now.
    pub fn current_path(&self) -> PathBuf {
        numbered(&self.base, self.index)
    }

    /// Writes all of `data`, splitting it over files at the size limit.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let room = self.max_size.saturating_sub(self.size);
            if room == 0 {
                self.rotate()?;
                continue;
            }
            let n = (room.min(data.len() as u64)) as usize;
            self.file.write_all(&data[..n])?;
            self.size += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.index += 1;
        self.file = open_file(&numbered(&self.base, self.index), true)?;
        self.size = 0;
        self.prune();
        Ok(())
    }

    /// Deletes files beyond `max_files`, oldest first.
    fn prune(&mut self) {
        while self.index - self.oldest + 1 > self.max_files {
            let _ = std::fs::remove_file(numbered(&self.base, self.oldest));
            self.oldest += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn rotates_by_size_and_prunes_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("logs/web.stdout");
        let mut log = RotatingLog::with_limits(&base, 3, 4).unwrap();
        log.write_all(b"abcdefghij").unwrap(); // abcd | efgh | ij
        assert_eq!(read(numbered(&base, 0)), "abcd");
        assert_eq!(read(numbered(&base, 1)), "efgh");
        assert_eq!(read(numbered(&base, 2)), "ij");
        log.write_all(b"klmnop").unwrap(); // ijkl | mnop -> .0 pruned, three files kept
        assert!(!numbered(&base, 0).exists());
        assert_eq!(read(numbered(&base, 1)), "efgh");
        assert_eq!(read(numbered(&base, 2)), "ijkl");
        assert_eq!(read(numbered(&base, 3)), "mnop");
        assert_eq!(log.current_path(), numbered(&base, 3));
        log.write_all(b"q").unwrap();
        assert!(!numbered(&base, 1).exists() && numbered(&base, 2).exists());
        assert_eq!(read(numbered(&base, 4)), "q");
        drop(log);

        // Reopening continues the newest file.
        let mut log = RotatingLog::with_limits(&base, 3, 4).unwrap();
        log.write_all(b"rs").unwrap();
        assert_eq!(read(numbered(&base, 4)), "qrs");
        assert_eq!(existing_indices(&base).unwrap(), vec![2, 3, 4]);
    }

    #[test]
    fn reopening_with_fewer_files_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("t.stderr");
        let mut log = RotatingLog::with_limits(&base, 10, 1).unwrap();
        log.write_all(b"12345").unwrap();
        drop(log);
        let _log = RotatingLog::with_limits(&base, 2, 1).unwrap();
        assert_eq!(existing_indices(&base).unwrap(), vec![3, 4]);
    }

    #[test]
    fn zero_limits_mean_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingLog::open(&dir.path().join("x"), 0, 0).unwrap();
        assert_eq!(log.max_files, 10);
        assert_eq!(log.max_size, 10 * 1024 * 1024);
    }
}
