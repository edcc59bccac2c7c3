//! Files that hold state: created private (0600) at open, whatever the umask, and replaced
//! atomically and durably (a temporary file of their own beside them, fsync, rename, fsync of
//! the directory), so a crash leaves the old content or the new, never a torn or a
//! world-readable file. The Raft store, the client's state and the task shims' exit files
//! are written this way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The mode of every file holding state (Raft log, vote, snapshots, ids; client state).
pub const FILE_MODE: u32 = 0o600;
/// The mode of the directories holding them.
pub const DIR_MODE: u32 = 0o700;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_whatever_the_umask_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        // SAFETY: umask(2) only swaps the process mask; the old one is restored below.
        let old = unsafe { libc::umask(0) };
        let first = write_atomic(&p, b"one");
        let second = write_atomic(&p, b"two");
        // SAFETY: restores the mask saved above.
        unsafe { libc::umask(old) };
        first.unwrap();
        second.unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, FILE_MODE);
        // No temporary file is left; one a crash left is removed.
        std::fs::write(dir.path().join(".state.json.1.2.tmp"), b"torn").unwrap();
        remove_stale_temps(&p);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }
}
