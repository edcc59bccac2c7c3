//! The seam through which the log store does its file I/O, so a test can stand in a crash
//! double that forgets every byte not covered by a completed sync; and the helpers every
//! Raft file is written with (created 0600 at open, replaced atomically through a temporary
//! file of its own).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every file holding cluster state (log, vote, snapshots, ids).
pub const FILE_MODE: u32 = 0o600;
/// The mode of the directories holding them.
pub const DIR_MODE: u32 = 0o700;

/// An append-only file with explicit durability.
pub trait LogFile: Send + 'static {
    /// Everything currently in the file.
    fn read_all(&mut self) -> io::Result<Vec<u8>>;
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// Makes every appended byte durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (drops a torn tail found on open) and syncs.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Atomically replaces the whole content (compaction): temp file, sync, rename, sync dir.
    fn replace(&mut self, data: &[u8]) -> io::Result<()>;
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The real file.
pub struct DiskFile {
    path: PathBuf,
    file: File,
    len: u64,
}

impl DiskFile {
    pub fn open(path: &Path) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(FILE_MODE)
            .open(path)?;
        // A log created by an earlier version under a loose umask.
        ensure_mode(&file, FILE_MODE)?;
        let len = file.metadata()?.len();
        sync_dir(path)?;
        Ok(DiskFile {
            path: path.to_path_buf(),
            file,
            len,
        })
    }
}

impl LogFile for DiskFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let cap = usize::try_from(self.len).map_err(|_| {
            io::Error::other(format!(
                "{} is too large to read ({} bytes)",
                self.path.display(),
                self.len
            ))
        })?;
        let mut buf = Vec::with_capacity(cap);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        self.file.sync_all()
    }

    fn replace(&mut self, data: &[u8]) -> io::Result<()> {
        write_atomic(&self.path, data)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.len = data.len() as u64;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A temporary name beside `path` that no other writer in this process uses: concurrent
/// writers of the same file (a snapshot built while another is installed) never share one.
pub fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// Creates a new private (0600) file: the mode is set at creation, so no other user can
/// open it in between, whatever the umask.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Writes `data` to `path` atomically and durably: a private temp file of its own, fsync,
/// rename, fsync directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = write_temp(path, data)?;
    commit_temp(&tmp, path)
}

/// Writes `data` durably to a fresh private temporary file beside `path`; returns its path.
pub fn write_temp(path: &Path, data: &[u8]) -> io::Result<PathBuf> {
    let tmp = temp_path(path);
    let r = (|| {
        let mut f = create_private(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    if let Err(e) = r {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Renames a synced temporary file over `path` and syncs the directory.
pub fn commit_temp(tmp: &Path, path: &Path) -> io::Result<()> {
    std::fs::rename(tmp, path)?;
    sync_dir(path)
}

/// Removes temporary files a crash left beside `path`.
pub fn remove_stale_temps(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with(&prefix) && n.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Sets an open file's permission bits to `mode` if they differ.
pub fn ensure_mode(file: &File, mode: u32) -> io::Result<()> {
    let perms = file.metadata()?.permissions();
    if perms.mode() & 0o7777 != mode {
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) if needed and makes its own mode exactly `mode`
/// (repairing a directory an earlier version or a loose umask left open).
pub fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let perms = std::fs::metadata(dir)?.permissions();
    if perms.mode() & 0o7777 != mode {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// Makes every regular file directly in `dir` private (0600): files an earlier version
/// created under the umask.
pub fn repair_files(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = std::fs::symlink_metadata(e.path())?;
        if meta.file_type().is_file() && meta.permissions().mode() & 0o7777 != FILE_MODE {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(())
}

pub fn sync_dir(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
