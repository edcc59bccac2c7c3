//! Log files with rotation: `<base>.0`, `<base>.1` ... by increasing index; the oldest are
//! deleted beyond `max_files`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
#[cfg(test)]
use std::path::PathBuf;

use drover_beneath::Dir;
use nix::sys::stat::Mode;

/// Default number of files kept (Nomad's default).
pub const DEFAULT_MAX_FILES: u32 = 10;
/// Default size of one file in MiB (Nomad's default).
pub const DEFAULT_MAX_FILE_SIZE_MB: u64 = 10;

/// A writer that spreads output over numbered files of bounded size.
///
/// The shim runs as root and the log directory (`alloc/logs`) is one a task may write to:
/// the directory is opened once, beneath a root the driver names, without following links,
/// and every file is then created, opened and removed relative to it, never following a
/// link either. A link a task plants or swaps in is an error, never a way out.
pub struct RotatingLog {
    dir: Dir,
    /// The file name without its `.<n>`.
    name: String,
    max_files: u64,
    max_size: u64,
    oldest: u64,
    index: u64,
    size: u64,
    file: File,
}

fn to_io(e: drover_beneath::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl RotatingLog {
    /// Opens the log at `base`, continuing the newest existing file (so a restarted task
    /// appends), creating the directory when needed. Zero limits mean Nomad's defaults.
    /// With `beneath`, the directory of `base` is opened beneath it without following links.
    pub fn open(
        base: &Path,
        beneath: Option<&Path>,
        max_files: u32,
        max_file_size_mb: u64,
    ) -> io::Result<Self> {
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
        Self::with_limits(base, beneath, max_files, mb.saturating_mul(1024 * 1024))
    }

    /// Like [`RotatingLog::open`] with the file size in bytes (tests use tiny files).
    pub fn with_limits(
        base: &Path,
        beneath: Option<&Path>,
        max_files: u64,
        max_size: u64,
    ) -> io::Result<Self> {
        let name = base
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| io::Error::other(format!("{} names no file", base.display())))?
            .to_string();
        let parent = base
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let dir = match beneath {
            Some(root) => {
                let rel = parent.strip_prefix(root).map_err(|_| {
                    io::Error::other(format!(
                        "{} is not inside {}",
                        base.display(),
                        root.display()
                    ))
                })?;
                Dir::open(root)?
                    .create_dirs(rel, Mode::from_bits_truncate(0o755))
                    .map_err(to_io)?
            }
            None => {
                std::fs::create_dir_all(parent)?;
                Dir::open(parent)?
            }
        };
        let existing = existing_indices(&dir, &name)?;
        let index = existing.last().copied().unwrap_or(0);
        let oldest = existing.first().copied().unwrap_or(0);
        let file = open_file(&dir, &numbered(&name, index), false)?;
        let size = file.metadata()?.len();
        let mut log = Self {
            dir,
            name,
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

    /// The name of the file being written now.
    pub fn current_name(&self) -> String {
        numbered(&self.name, self.index)
    }

    /// The length of the file being written now (its bytes, as this writer knows them).
    pub fn current_size(&self) -> u64 {
        self.size
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
        self.file = open_file(&self.dir, &numbered(&self.name, self.index), true)?;
        self.size = 0;
        self.prune();
        Ok(())
    }

    /// Deletes files beyond `max_files`, oldest first.
    fn prune(&mut self) {
        while self.index - self.oldest + 1 > self.max_files {
            let _ = self
                .dir
                .remove_file(&OsString::from(numbered(&self.name, self.oldest)));
            self.oldest += 1;
        }
    }
}

fn numbered(name: &str, index: u64) -> String {
    format!("{name}.{index}")
}

/// The indices of existing `<name>.<n>` files in `dir`, sorted.
fn existing_indices(dir: &Dir, name: &str) -> io::Result<Vec<u64>> {
    let prefix = format!("{name}.");
    let mut out: Vec<u64> = dir
        .entries()?
        .into_iter()
        .filter_map(|e| e.name.to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Opens (creating, 0644) `name` in `dir` for appending, or truncated; a link, FIFO or
/// device node in its place is an error.
fn open_file(dir: &Dir, name: &str, truncate: bool) -> io::Result<File> {
    dir.create_regular(Path::new(name), Mode::from_bits_truncate(0o644), truncate)
        .map_err(to_io)
}

/// Where `base`'s files live, for tests.
#[cfg(test)]
fn path_of(base: &Path, index: u64) -> PathBuf {
    let mut name = base.as_os_str().to_owned();
    name.push(format!(".{index}"));
    PathBuf::from(name)
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
        let mut log = RotatingLog::with_limits(&base, None, 3, 4).unwrap();
        log.write_all(b"abcdefghij").unwrap(); // abcd | efgh | ij
        assert_eq!(read(path_of(&base, 0)), "abcd");
        assert_eq!(read(path_of(&base, 1)), "efgh");
        assert_eq!(read(path_of(&base, 2)), "ij");
        log.write_all(b"klmnop").unwrap(); // ijkl | mnop -> .0 pruned, three files kept
        assert!(!path_of(&base, 0).exists());
        assert_eq!(read(path_of(&base, 1)), "efgh");
        assert_eq!(read(path_of(&base, 2)), "ijkl");
        assert_eq!(read(path_of(&base, 3)), "mnop");
        assert_eq!(log.current_name(), "web.stdout.3");
        assert_eq!(log.current_size(), 4);
        log.write_all(b"q").unwrap();
        assert!(!path_of(&base, 1).exists() && path_of(&base, 2).exists());
        assert_eq!(read(path_of(&base, 4)), "q");
        drop(log);

        // Reopening continues the newest file.
        let mut log = RotatingLog::with_limits(&base, None, 3, 4).unwrap();
        log.write_all(b"rs").unwrap();
        assert_eq!(read(path_of(&base, 4)), "qrs");
        assert_eq!(
            existing_indices(
                &Dir::open(base.parent().unwrap()).unwrap(),
                base.file_name().unwrap().to_str().unwrap()
            )
            .unwrap(),
            vec![2, 3, 4]
        );
    }

    #[test]
    fn reopening_with_fewer_files_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("t.stderr");
        let mut log = RotatingLog::with_limits(&base, None, 10, 1).unwrap();
        log.write_all(b"12345").unwrap();
        drop(log);
        let _log = RotatingLog::with_limits(&base, None, 2, 1).unwrap();
        assert_eq!(
            existing_indices(
                &Dir::open(base.parent().unwrap()).unwrap(),
                base.file_name().unwrap().to_str().unwrap()
            )
            .unwrap(),
            vec![3, 4]
        );
    }

    #[test]
    fn zero_limits_mean_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let log = RotatingLog::open(&dir.path().join("x"), None, 0, 0).unwrap();
        assert_eq!(log.max_files, 10);
        assert_eq!(log.max_size, 10 * 1024 * 1024);
    }
}

#[cfg(test)]
mod beneath_tests {
    use super::*;

    /// The task owns `alloc/logs` (it can write there): a link it plants in place of the
    /// next log file, or of the directory itself, must never make the shim (root) write
    /// outside the allocation.
    #[test]
    fn planted_links_and_fifos_are_never_written_through() {
        let alloc = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let victim = host.path().join("authorized_keys");
        std::fs::write(&victim, "root's keys\n").unwrap();
        std::fs::create_dir_all(alloc.path().join("alloc/logs")).unwrap();
        let base = alloc.path().join("alloc/logs/web.stdout");
        let mut log = RotatingLog::with_limits(&base, Some(alloc.path()), 3, 4).unwrap();
        // The next file after a rotation is planted as a link to the victim.
        std::os::unix::fs::symlink(&victim, path_of(&base, 1)).unwrap();
        let r = log.write_all(b"abcdssh-ed25519 AAAA attacker");
        assert!(r.is_err(), "wrote through a planted link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's keys\n");
        drop(log);
        // The whole logs/ directory swapped for a link to a host directory.
        std::fs::remove_dir_all(alloc.path().join("alloc/logs")).unwrap();
        std::os::unix::fs::symlink(host.path(), alloc.path().join("alloc/logs")).unwrap();
        assert!(RotatingLog::with_limits(&base, Some(alloc.path()), 3, 4).is_err());
        assert!(!host.path().join("web.stdout.0").exists());
        // A FIFO in place of the file: refused at once, not blocked on.
        std::fs::remove_file(alloc.path().join("alloc/logs")).unwrap();
        std::fs::create_dir_all(alloc.path().join("alloc/logs")).unwrap();
        nix::unistd::mkfifo(&path_of(&base, 0), Mode::from_bits_truncate(0o644)).unwrap();
        assert!(RotatingLog::with_limits(&base, Some(alloc.path()), 3, 4).is_err());
    }
}
