//! The seam through which the log store does its file I/O, so a test can stand in a crash
//! double that forgets every byte not covered by a completed sync.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

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
            .open(path)?;
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
        let mut buf = Vec::with_capacity(self.len as usize);
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

/// Writes `data` to `path` atomically and durably: temp file, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
