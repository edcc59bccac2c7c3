//! The seam through which the log store does its file I/O, so a test can stand in a crash
//! double that forgets every byte not covered by a completed sync; and the helpers every
//! Raft file is written with (created 0600 at open, replaced atomically through a temporary
//! file of its own).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub use drover_durable::{
    DIR_MODE, FILE_MODE, commit_temp, create_private, ensure_dir, ensure_mode, remove_stale_temps,
    repair_files, sync_dir, temp_path, write_atomic, write_temp,
};

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
