//! The allocation directory: `<data_dir>/alloc/<alloc id>/`, holding the shared `alloc/`
//! (`logs/`, `data/`, `tmp/`) and one directory per task (`local/`, `secrets/`, `tmp/`).
//!
//! The client runs as root and tasks write beneath this directory, planting links and
//! swapping them at will. So every path under it is opened through [`AllocDir`]: from the
//! allocation's own directory (root's, mode 0711, in a directory only root writes), one
//! component at a time by the kernel, never following a link out (`drover-beneath`). The
//! names that become paths (the allocation id, task names) are checked again here, whatever
//! road the allocation came by.

use std::path::{Path, PathBuf};

use drover_beneath::{Dir, Links};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::env::TaskDirs;

/// Size of a task's in-memory secrets/ directory (Nomad's too).
const SECRETS_TMPFS_OPTIONS: &str = "size=1m,mode=0700";

#[derive(Debug, thiserror::Error)]
pub enum AllocDirError {
    #[error("allocation id {0:?} cannot name a directory")]
    BadId(String),
    #[error("task name {name:?}: {source}")]
    BadTaskName {
        name: String,
        #[source]
        source: drover_model::NameError,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{source}: it could lead outside the allocation's directory {root}")]
    Leads {
        root: PathBuf,
        #[source]
        source: drover_beneath::Error,
    },
    #[error("in allocation directory {root}: {source}")]
    Beneath {
        root: PathBuf,
        #[source]
        source: drover_beneath::Error,
    },
    #[error("{0} is outside the allocation directory")]
    Outside(PathBuf),
}

type Result<T> = std::result::Result<T, AllocDirError>;

/// One allocation's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocDir {
    root: PathBuf,
}

/// Whether `id` is usable as one directory name (the servers make UUIDs; a restored
/// snapshot or an old state file may hold anything).
fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(AllocDirError::BadId(id.into()))
    }
}

impl AllocDir {
    /// The directory of allocation `alloc_id` under `allocs` (`<data_dir>/alloc`).
    pub fn new(allocs: &Path, alloc_id: &str) -> Result<AllocDir> {
        check_id(alloc_id)?;
        Ok(AllocDir {
            root: allocs.join(alloc_id),
        })
    }

    /// The allocation directory a task's directories belong to.
    pub fn of(dirs: &TaskDirs) -> AllocDir {
        AllocDir {
            root: Path::new(&dirs.alloc_dir)
                .parent()
                .unwrap_or(Path::new("/"))
                .to_path_buf(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }

    fn beneath(&self, source: drover_beneath::Error) -> AllocDirError {
        let root = self.root.clone();
        match source {
            drover_beneath::Error::Link { .. } | drover_beneath::Error::Escapes { .. } => {
                AllocDirError::Leads { root, source }
            }
            source => AllocDirError::Beneath { root, source },
        }
    }

    fn io(path: &Path, source: std::io::Error) -> AllocDirError {
        AllocDirError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The allocation's own directory, opened (it is root's: its path is trusted).
    pub fn open(&self) -> Result<Dir> {
        Dir::open(&self.root).map_err(|e| Self::io(&self.root, e))
    }

    /// `path` (absolute, under the allocation directory) relative to it.
    pub fn relative<'a>(&self, path: &'a Path) -> Result<&'a Path> {
        path.strip_prefix(&self.root)
            .map_err(|_| AllocDirError::Outside(path.to_path_buf()))
    }

    /// Opens the directory `rel` beneath the allocation directory, following no link;
    /// `create` makes what is missing (0755 less the umask).
    pub fn dir(&self, rel: &Path, create: bool) -> Result<Dir> {
        let root = self.open()?;
        let d = if create {
            root.create_dirs(rel, Mode::from_bits_truncate(0o755))
        } else {
            root.dir(rel, Links::Never)
        };
        d.map_err(|e| self.beneath(e))
    }

    /// Writes `bytes` as the whole content of the regular file `rel` (created 0644),
    /// following no link; its directory must exist.
    pub fn write_file(&self, rel: &Path, bytes: &[u8]) -> Result<()> {
        let mut f = self
            .open()?
            .create_regular(rel, Mode::from_bits_truncate(0o644), true)
            .map_err(|e| self.beneath(e))?;
        std::io::Write::write_all(&mut f, bytes).map_err(|e| Self::io(&self.root.join(rel), e))
    }

    /// Writes `bytes` as the whole content of the regular file `rel`, mode 0600 (set on
    /// the open file, whatever mode a file already there had) and, with `owner`, owned by
    /// that uid; follows no link, its directory must exist. For secrets (workload
    /// identities).
    pub fn write_private_file(&self, rel: &Path, bytes: &[u8], owner: Option<u32>) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.root.join(rel);
        let mut f = self
            .open()?
            .create_regular(rel, Mode::from_bits_truncate(0o600), true)
            .map_err(|e| self.beneath(e))?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Self::io(&path, e))?;
        if let Some(uid) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), None).map_err(|e| Self::io(&path, e))?;
        }
        std::io::Write::write_all(&mut f, bytes).map_err(|e| Self::io(&path, e))
    }

    /// Opens the file `rel` for reading, following no link.
    pub fn read_file(&self, rel: &Path) -> Result<std::fs::File> {
        self.open()?
            .file(rel, OFlag::O_RDONLY, Mode::empty(), Links::Never)
            .map_err(|e| self.beneath(e))
    }

    /// Opens the regular file `rel` for reading as `alloc fs` and `alloc logs` serve it:
    /// no link is followed, a FIFO or device node is refused without being opened.
    pub fn open_regular(&self, rel: &Path) -> Result<std::fs::File> {
        self.open()?
            .open_regular(rel, Links::Never)
            .map_err(|e| self.beneath(e))
    }

    /// Attributes of `rel` itself (a link is reported as a link).
    pub fn stat(&self, rel: &Path) -> Result<nix::sys::stat::FileStat> {
        self.open()?
            .stat(rel, Links::Never)
            .map_err(|e| self.beneath(e))
    }

    /// Creates the allocation directory (0711: tasks running as other users reach their own
    /// directories through it) with the shared `alloc/{logs,data,tmp}`, after checking every
    /// task name (`tasks`) is a plain name. Idempotent: a restored allocation finds its
    /// directories again. Each task's own directory is [`AllocDir::build_task`]'s.
    pub fn build_shared(&self, tasks: &[String]) -> Result<()> {
        for t in tasks {
            drover_model::check_name(t).map_err(|source| AllocDirError::BadTaskName {
                name: t.clone(),
                source,
            })?;
        }
        if let Some(parent) = self.root.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Self::io(parent, e))?;
        }
        match std::fs::create_dir(&self.root) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Self::io(&self.root, e)),
        }
        let root = self.open()?;
        // The allocation directory is root's own; a leftover of another owner is refused.
        let meta = root.metadata().map_err(|e| Self::io(&self.root, e))?;
        if meta.st_uid != nix::unistd::geteuid().as_raw() {
            return Err(Self::io(
                &self.root,
                std::io::Error::other("is owned by another user"),
            ));
        }
        root.set_mode(0o711).map_err(|e| Self::io(&self.root, e))?;
        self.mkdir(&root, "alloc", 0o755)?;
        // Tasks of the group share data/ and tmp/ whatever user each runs as (Nomad makes
        // them 0777); tmp/ is sticky so one task cannot remove another's files. logs/ stays
        // the log writer's: a task has no business planting entries there.
        for (d, mode) in [("logs", 0o755), ("data", 0o777), ("tmp", 0o1777)] {
            self.mkdir(&root, &format!("alloc/{d}"), mode)?;
        }
        Ok(())
    }

    /// Creates task `task`'s own directory below the allocation's (built first by
    /// [`AllocDir::build_shared`]): `<task>/{local,secrets,tmp}`, secrets/ 0700 on a small
    /// tmpfs where one can be mounted, tmp/ 1777. Idempotent; a link planted where one of
    /// these directories belongs is refused, never followed.
    pub fn build_task(&self, task: &str) -> Result<TaskDirs> {
        drover_model::check_name(task).map_err(|source| AllocDirError::BadTaskName {
            name: task.to_string(),
            source,
        })?;
        let root = self.open()?;
        self.mkdir(&root, task, 0o755)?;
        self.mkdir(&root, &format!("{task}/local"), 0o755)?;
        let secrets = self.mkdir(&root, &format!("{task}/secrets"), 0o700)?;
        mount_secrets_tmpfs(&secrets, &self.root.join(task).join("secrets"));
        self.mkdir(&root, &format!("{task}/tmp"), 0o1777)?;
        Ok(self.task_dirs(task))
    }

    /// Where task `task`'s directories are (whether or not they exist yet).
    pub fn task_dirs(&self, task: &str) -> TaskDirs {
        let td = self.root.join(task);
        TaskDirs {
            alloc_dir: self.root.join("alloc").display().to_string(),
            task_dir: td.display().to_string(),
            local_dir: td.join("local").display().to_string(),
            secrets_dir: td.join("secrets").display().to_string(),
            tmp_dir: td.join("tmp").display().to_string(),
        }
    }

    /// Creates `rel` (and what leads to it) beneath the allocation directory `root`, then
    /// sets its mode whatever the umask.
    fn mkdir(&self, root: &Dir, rel: &str, mode: u32) -> Result<Dir> {
        let d = root
            .create_dirs(Path::new(rel), Mode::from_bits_truncate(0o755))
            .map_err(|e| self.beneath(e))?;
        d.set_mode(mode)
            .map_err(|e| Self::io(&self.root.join(rel), e))?;
        Ok(d)
    }
}

/// Makes a task's secrets/ a small tmpfs, so secrets never reach the disk. Where that is not
/// possible (not root, no tmpfs) the plain 0700 directory stays. The mount goes onto the
/// directory already opened (through its `/proc/self/fd` path), never onto a path that a
/// link could redirect.
fn mount_secrets_tmpfs(dir: &Dir, shown: &Path) {
    use nix::mount::{MsFlags, mount};
    let parent_dev = std::fs::metadata(shown.parent().unwrap_or(Path::new("/")))
        .map(|m| std::os::unix::fs::MetadataExt::dev(&m))
        .ok();
    if dir.metadata().ok().map(|m| m.st_dev) != parent_dev {
        return; // restored allocation: still mounted
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some("tmpfs"),
        &dir.proc_path(),
        Some("tmpfs"),
        flags,
        Some(SECRETS_TMPFS_OPTIONS),
    ) {
        tracing::debug!(dir = %shown.display(), error = %e, "secrets/ stays on disk: cannot mount a tmpfs");
    }
}

/// Lazily unmounts whatever is mounted below `dir` (tasks' secrets/ tmpfs, the shims'
/// tmpfs), deepest first.
pub fn unmount_below(dir: &std::path::Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| std::path::Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes a directory tree after unmounting whatever is mounted below it: an allocation's
/// directory at GC, the dev agent's data dir at exit.
pub fn remove_dir_with_mounts(dir: &std::path::Path) -> std::io::Result<()> {
    unmount_below(dir);
    std::fs::remove_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_task_names_that_are_not_plain_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for id in ["", "..", "a/b", "../../etc", "a\0b"] {
            assert!(AllocDir::new(tmp.path(), id).is_err(), "{id:?}");
        }
        let a = AllocDir::new(tmp.path(), "5d4e0a3c-0000-4000-8000-000000000001").unwrap();
        for name in ["../../../../etc/cron.d", "a/b", "..", ".", "x\ny", ""] {
            let e = a.build_shared(&[name.to_string()]).unwrap_err();
            assert!(matches!(e, AllocDirError::BadTaskName { .. }), "{e}");
            let e = a.build_task(name).unwrap_err();
            assert!(matches!(e, AllocDirError::BadTaskName { .. }), "{e}");
        }
        assert!(std::fs::read_dir(tmp.path()).unwrap().next().is_none());
    }

    #[test]
    fn files_the_client_writes_never_go_through_a_planted_link() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let a = AllocDir::new(tmp.path(), "a1").unwrap();
        a.build_shared(&["web".into()]).unwrap();
        a.dir(Path::new("network"), true).unwrap();
        a.write_file(Path::new("network/hosts"), b"127.0.0.1 one\n")
            .unwrap();
        a.write_file(Path::new("network/hosts"), b"10.0.0.1 two\n")
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("a1/network/hosts")).unwrap(),
            "10.0.0.1 two\n"
        );
        // The file, then its directory, swapped for links to the host's files.
        std::fs::write(outside.path().join("hosts"), "host's own\n").unwrap();
        std::fs::remove_file(tmp.path().join("a1/network/hosts")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("hosts"),
            tmp.path().join("a1/network/hosts"),
        )
        .unwrap();
        assert!(a.write_file(Path::new("network/hosts"), b"x").is_err());
        std::fs::remove_dir_all(tmp.path().join("a1/network")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("a1/network")).unwrap();
        assert!(a.dir(Path::new("network"), true).is_err());
        assert!(a.write_file(Path::new("network/hosts"), b"x").is_err());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("hosts")).unwrap(),
            "host's own\n"
        );
    }

    #[test]
    fn build_makes_the_tree_with_its_modes_and_never_follows_a_planted_link() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let a = AllocDir::new(tmp.path(), "a1").unwrap();
        a.build_shared(&["web".into()]).unwrap();
        let dirs = a.build_task("web").unwrap();
        assert_eq!(
            dirs.local_dir,
            tmp.path().join("a1/web/local").display().to_string()
        );
        let mode = |p: &str| {
            std::fs::metadata(tmp.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o7777
        };
        assert_eq!(mode("a1"), 0o711);
        assert_eq!(mode("a1/web/tmp"), 0o1777);
        assert_eq!(mode("a1/alloc/data"), 0o777);
        assert_eq!(mode("a1/alloc/tmp"), 0o1777);
        assert_eq!(mode("a1/alloc/logs"), 0o755);
        // A task swapped its local/ for a link to a host directory: building again (a
        // restored allocation) refuses instead of chmodding or creating there.
        std::fs::remove_dir(tmp.path().join("a1/web/local")).unwrap();
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("a1/web/local")).unwrap();
        let before = mode_of(outside.path());
        assert!(a.build_shared(&["web".into()]).is_ok());
        assert!(a.build_task("web").is_err());
        assert_eq!(mode_of(outside.path()), before);
        // Files read through the allocation directory never follow a link.
        std::fs::write(outside.path().join("shadow"), "host").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("shadow"),
            tmp.path().join("a1/alloc/data/x"),
        )
        .unwrap();
        assert!(a.read_file(Path::new("alloc/data/x")).is_err());
        assert!(a.open_regular(Path::new("alloc/data/x")).is_err());
    }

    fn mode_of(p: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode()
    }
}
