//! Opening paths beneath a directory without following links out of it.
//!
//! The client and the task shims run as root and act on directories a task can write (its
//! `local/`, `secrets/`, `tmp/`, the allocation's shared `alloc/`). A path built from job
//! data and opened the ordinary way follows whatever links the task planted, so root would
//! write, read, chmod or mount wherever the task points. Everything root does there goes
//! through a [`Dir`]: a directory descriptor from which paths are resolved by the kernel
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` (plus `RESOLVE_NO_SYMLINKS` when
//! no link may be followed at all), retried on `EAGAIN`; on a kernel without `openat2` by
//! an `openat` walk, one component at a time with `O_NOFOLLOW`, which follows no link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, fstat, mkdirat};

/// Which links a resolution may follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// None, anywhere on the path: what root uses to write, create, chmod or mount.
    Never,
    /// Links whose target stays beneath the directory (as `alloc fs` shows a task's links);
    /// `..` may be used as long as it does not climb out. Without `openat2`, none.
    Inside,
}

/// Why a path could not be opened beneath its directory.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {why}")]
    BadPath { path: String, why: &'static str },
    #[error("{path}: leads outside the directory")]
    Escapes { path: String },
    #[error("{path}: a symbolic link on the way is not followed")]
    Link { path: String },
    #[error("{path}: not a regular file")]
    NotRegular { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The error as an `io::ErrorKind` (`NotFound` for a missing path ...).
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::Io { source, .. } => source.kind(),
            Error::BadPath { .. } => io::ErrorKind::InvalidInput,
            Error::Escapes { .. } | Error::Link { .. } => io::ErrorKind::PermissionDenied,
            Error::NotRegular { .. } => io::ErrorKind::InvalidInput,
        }
    }

    fn io(path: &Path, errno: Errno) -> Error {
        let path = path.display().to_string();
        match errno {
            Errno::EXDEV => Error::Escapes { path },
            Errno::ELOOP => Error::Link { path },
            e => Error::Io {
                path,
                source: io::Error::from_raw_os_error(e as i32),
            },
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Set once `openat2` answered `ENOSYS`: the walk is used from then on.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);
/// How often a resolution is retried when `openat2` answers `EAGAIN` (a rename raced it).
const EAGAIN_TRIES: usize = 64;

/// The components of `rel`, which must stay relative: a leading `/` is dropped (paths such
/// as `/alloc/logs` name the directory's own root), `.` is skipped, NUL is refused, and `..`
/// only when `links` is [`Links::Never`] (the walk cannot follow it safely).
fn components(rel: &Path, links: Links) -> Result<Vec<&OsStr>> {
    let bad = |why| Error::BadPath {
        path: rel.display().to_string(),
        why,
    };
    if rel.as_os_str().as_bytes().contains(&0) {
        return Err(bad("contains a NUL byte"));
    }
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => return Err(bad("is not a Unix path")),
            Component::ParentDir if links == Links::Never => {
                return Err(bad("climbs with \"..\""));
            }
            Component::ParentDir => out.push(OsStr::new("..")),
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// A directory that paths are opened beneath.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl From<Dir> for OwnedFd {
    fn from(d: Dir) -> OwnedFd {
        d.fd
    }
}

impl Dir {
    /// Opens a trusted directory (one root made, on a path the operator chose: links there
    /// are the operator's and are followed).
    pub fn open(path: &Path) -> io::Result<Dir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)?;
        Ok(Dir { fd })
    }

    /// Wraps a descriptor of a directory.
    pub fn from_fd(fd: OwnedFd) -> Dir {
        Dir { fd }
    }

    /// A second descriptor of the same directory.
    pub fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            fd: self.fd.try_clone()?,
        })
    }

    /// `/proc/self/fd/N`: a path naming exactly this directory, for calls that take only a
    /// path (mount(2)).
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    /// Opens `rel` beneath this directory with `flags` (`O_CLOEXEC` is always added) and, when
    /// creating, `mode`.
    pub fn open_at(&self, rel: &Path, flags: OFlag, mode: Mode, links: Links) -> Result<OwnedFd> {
        let parts = components(rel, links)?;
        let flags = flags | OFlag::O_CLOEXEC;
        if parts.is_empty() {
            if flags.intersects(OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_RDWR) {
                return Err(Error::BadPath {
                    path: rel.display().to_string(),
                    why: "names the directory itself",
                });
            }
            return openat(&self.fd, ".", flags, mode).map_err(|e| Error::io(rel, e));
        }
        if !NO_OPENAT2.load(Ordering::Relaxed) {
            let mut resolve = ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS;
            let mut flags = flags;
            if links == Links::Never {
                resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
                flags |= OFlag::O_NOFOLLOW;
            }
            let joined: PathBuf = parts.iter().collect();
            for _ in 0..EAGAIN_TRIES {
                // openat2 refuses mode bits unless a file may be created.
                let mode = if flags.intersects(OFlag::O_CREAT | OFlag::O_TMPFILE) {
                    mode
                } else {
                    Mode::empty()
                };
                let how = OpenHow::new().flags(flags).mode(mode).resolve(resolve);
                match openat2(&self.fd, &joined, how) {
                    Ok(fd) => return Ok(fd),
                    Err(Errno::EAGAIN) => continue,
                    Err(Errno::ENOSYS) => {
                        NO_OPENAT2.store(true, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return Err(Error::io(rel, e)),
                }
            }
            if !NO_OPENAT2.load(Ordering::Relaxed) {
                return Err(Error::io(rel, Errno::EAGAIN));
            }
        }
        self.walk(rel, &parts, flags, mode)
    }

    /// The `openat` walk: every component opened with `O_NOFOLLOW` from the one before.
    fn walk(&self, rel: &Path, parts: &[&OsStr], flags: OFlag, mode: Mode) -> Result<OwnedFd> {
        let (last, dirs) = parts.split_last().expect("at least one component");
        if dirs.iter().chain([last]).any(|c| *c == "..") {
            return Err(Error::BadPath {
                path: rel.display().to_string(),
                why: "climbs with \"..\"",
            });
        }
        let mut cur: Option<OwnedFd> = None;
        for c in dirs {
            let at = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
            let next = openat(at, *c, dir_flags(), Mode::empty())
                .map_err(|e| Error::io(rel, link_or(at, c, e)))?;
            cur = Some(next);
        }
        let at = cur.as_ref().map_or(self.fd.as_fd(), |f| f.as_fd());
        openat(at, *last, flags | OFlag::O_NOFOLLOW, mode)
            .map_err(|e| Error::io(rel, link_or(at, last, e)))
    }

    /// Opens the directory `rel` beneath this one.
    pub fn dir(&self, rel: &Path, links: Links) -> Result<Dir> {
        if components(rel, links)?.is_empty() {
            return self.try_clone().map_err(|source| Error::Io {
                path: rel.display().to_string(),
                source,
            });
        }
        self.open_at(rel, dir_flags(), Mode::empty(), links)
            .map(Dir::from_fd)
    }

    /// Opens (creating what is missing, each with `mode` less the umask) the directory `rel`
    /// beneath this one, following no link.
    pub fn create_dirs(&self, rel: &Path, mode: Mode) -> Result<Dir> {
        let parts = components(rel, Links::Never)?;
        let mut cur = self.try_clone().map_err(|source| Error::Io {
            path: rel.display().to_string(),
            source,
        })?;
        for c in parts {
            let next = match openat(&cur.fd, c, dir_flags(), Mode::empty()) {
                Err(Errno::ENOENT) => {
                    match mkdirat(&cur.fd, c, mode) {
                        Ok(()) | Err(Errno::EEXIST) => {}
                        Err(e) => return Err(Error::io(rel, e)),
                    }
                    openat(&cur.fd, c, dir_flags(), Mode::empty())
                }
                other => other,
            }
            .map_err(|e| Error::io(rel, link_or(cur.fd.as_fd(), c, e)))?;
            cur = Dir { fd: next };
        }
        Ok(cur)
    }

    /// Opens the file `rel` beneath this directory as a `File`.
    pub fn file(&self, rel: &Path, flags: OFlag, mode: Mode, links: Links) -> Result<File> {
        self.open_at(rel, flags, mode, links).map(File::from)
    }

    /// Opens `rel` for reading only if it is a regular file: it is first opened as a bare
    /// reference (`O_PATH`, which opens no device and blocks on no FIFO), checked, then
    /// reopened through that same reference, so nothing can be swapped in between.
    pub fn open_regular(&self, rel: &Path, links: Links) -> Result<File> {
        self.reopen_regular(rel, links, OFlag::O_RDONLY | OFlag::O_NONBLOCK)
    }

    /// Opens the regular file `rel` for writing (appending, or truncated), creating it with
    /// `mode` when it does not exist; no link is followed and anything but a regular file in
    /// its place (a FIFO, a device node) is refused without being opened.
    pub fn create_regular(&self, rel: &Path, mode: Mode, truncate: bool) -> Result<File> {
        let new = self.open_at(
            rel,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
            mode,
            Links::Never,
        );
        match new {
            Ok(fd) => Ok(File::from(fd)),
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                let how = if truncate {
                    OFlag::O_TRUNC
                } else {
                    OFlag::O_APPEND
                };
                self.reopen_regular(rel, Links::Never, OFlag::O_WRONLY | how)
            }
            Err(e) => Err(e),
        }
    }

    fn reopen_regular(&self, rel: &Path, links: Links, flags: OFlag) -> Result<File> {
        let fd = self.open_at(rel, OFlag::O_PATH, Mode::empty(), links)?;
        let st = fstat(&fd).map_err(|e| Error::io(rel, e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::NotRegular {
                path: rel.display().to_string(),
            });
        }
        let again = format!("/proc/self/fd/{}", fd.as_raw_fd());
        nix::fcntl::open(
            again.as_str(),
            flags | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map(File::from)
        .map_err(|e| Error::io(rel, e))
    }

    /// `fstatat` of `rel` (a final link is not followed when `links` is `Never`).
    pub fn stat(&self, rel: &Path, links: Links) -> Result<FileStat> {
        let fd = self.open_at(rel, OFlag::O_PATH, Mode::empty(), links)?;
        fstat(&fd).map_err(|e| Error::io(rel, e))
    }

    /// This directory's own attributes.
    pub fn metadata(&self) -> io::Result<FileStat> {
        fstat(&self.fd).map_err(io::Error::from)
    }

    /// Sets this directory's mode (no umask applies).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        nix::sys::stat::fchmod(&self.fd, Mode::from_bits_truncate(mode)).map_err(io::Error::from)
    }

    /// Gives this directory to `uid`/`gid`.
    pub fn set_owner(&self, uid: u32, gid: u32) -> io::Result<()> {
        nix::unistd::fchown(
            &self.fd,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )
        .map_err(io::Error::from)
    }

    /// The names in this directory (without `.` and `..`), with whether each is a directory
    /// (a link is reported as what it is, never followed).
    pub fn entries(&self) -> io::Result<Vec<Entry>> {
        let fd = openat(&self.fd, ".", dir_flags(), Mode::empty())?;
        let mut dir = nix::dir::Dir::from_fd(fd)?;
        let mut out = Vec::new();
        for e in dir.iter() {
            let e = e?;
            let name = OsStr::from_bytes(e.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            out.push(Entry {
                name: name.to_os_string(),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes the file `name` (one component) from this directory.
    pub fn remove_file(&self, name: &OsStr) -> Result<()> {
        one_component(name)?;
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir)
            .map_err(|e| Error::io(Path::new(name), e))
    }

    /// Removes the empty directory `name` (one component) from this directory.
    pub fn remove_dir(&self, name: &OsStr) -> Result<()> {
        one_component(name)?;
        nix::unistd::unlinkat(&self.fd, name, nix::unistd::UnlinkatFlags::RemoveDir)
            .map_err(|e| Error::io(Path::new(name), e))
    }

    /// Renames `from` to `to`, both single names in this directory.
    pub fn rename(&self, from: &OsStr, to: &OsStr) -> Result<()> {
        one_component(from)?;
        one_component(to)?;
        nix::fcntl::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| Error::io(Path::new(from), e))
    }
}

/// A name in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: OsString,
}

fn dir_flags() -> OFlag {
    OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC
}

fn one_component(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Error::BadPath {
            path: name.to_string_lossy().into_owned(),
            why: "must be one name inside the directory",
        });
    }
    Ok(())
}

/// `ELOOP` when `name` in `at` is a symbolic link (`O_DIRECTORY | O_NOFOLLOW` answers
/// `ENOTDIR` for one), else `e`.
fn link_or(at: BorrowedFd<'_>, name: &OsStr, e: Errno) -> Errno {
    if e == Errno::ENOTDIR || e == Errno::ELOOP {
        let is_link = nix::sys::stat::fstatat(at, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK);
        if is_link {
            return Errno::ELOOP;
        }
    }
    e
}

#[cfg(test)]
mod tests;
