//! Named network namespaces (`/var/run/netns/<name>`), made as `ip netns add` makes them:
//! the directory is a shared mount (so a removal reaches every mount namespace that copied
//! it), an empty file is created, a dedicated OS thread unshares its network namespace and
//! bind-mounts it onto the file; the thread ends, the mount keeps the namespace alive.
//! Removal unmounts (lazily) and unlinks. The syscalls are behind [`NsSys`], so the order of
//! operations is unit-tested with a recording implementation.

use std::io;
use std::path::{Path, PathBuf};

/// Where Nomad (and `ip netns`) keep named network namespaces.
pub const NETNS_DIR: &str = "/var/run/netns";

/// `statfs` type of the namespace filesystem (a bind-mounted namespace).
const NSFS_MAGIC: i64 = 0x6e73_6673;

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error(
        "network namespace name {0:?}: must be 1 to 64 of [A-Za-z0-9_.-], not starting with '.'"
    )]
    BadName(String),
    #[error("network namespace {path}: {op}: {source}")]
    Sys {
        path: PathBuf,
        op: &'static str,
        source: io::Error,
    },
}

/// The operations a named namespace needs from the system.
pub trait NsSys: Send + Sync {
    /// Creates `dir` and makes it a shared mount (bind-mounting it onto itself first when
    /// it is not a mount point).
    fn share_dir(&self, dir: &Path) -> io::Result<()>;
    /// Creates the empty file the namespace is mounted on; fails when it exists.
    fn create_file(&self, path: &Path) -> io::Result<()>;
    /// On a new OS thread: unshares the network namespace and bind-mounts it onto `path`.
    fn bind_new_netns(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` holds a mounted namespace (and its inode).
    fn mounted_ns(&self, path: &Path) -> io::Result<Option<u64>>;
    /// Detaches the mount on `path`.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// Removes the file; a missing one is not an error.
    fn unlink(&self, path: &Path) -> io::Result<()>;
}

/// The named namespaces of one directory.
pub struct NamedNetns<S: NsSys> {
    sys: S,
    dir: PathBuf,
}

impl NamedNetns<LinuxNs> {
    /// The host's: `/var/run/netns`.
    pub fn host() -> Self {
        NamedNetns::new(LinuxNs, NETNS_DIR)
    }
}

impl<S: NsSys> NamedNetns<S> {
    pub fn new(sys: S, dir: impl Into<PathBuf>) -> Self {
        NamedNetns {
            sys,
            dir: dir.into(),
        }
    }

    /// The path of namespace `name` (checked: a plain file name).
    pub fn path(&self, name: &str) -> Result<PathBuf, NetnsError> {
        let ok = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !ok {
            return Err(NetnsError::BadName(name.to_string()));
        }
        Ok(self.dir.join(name))
    }

    /// The inode of namespace `name` when it exists (mounted).
    pub fn existing(&self, name: &str) -> Result<Option<u64>, NetnsError> {
        let path = self.path(name)?;
        self.sys.mounted_ns(&path).map_err(sys(&path, "stat"))
    }

    /// Creates namespace `name`; on failure nothing is left behind.
    pub fn create(&self, name: &str) -> Result<PathBuf, NetnsError> {
        let path = self.path(name)?;
        self.sys
            .share_dir(&self.dir)
            .map_err(sys(&self.dir, "share"))?;
        self.sys.create_file(&path).map_err(sys(&path, "create"))?;
        if let Err(e) = self.sys.bind_new_netns(&path) {
            let _ = self.sys.unlink(&path);
            return Err(sys(&path, "unshare and bind-mount")(e));
        }
        Ok(path)
    }

    /// Removes namespace `name`: unmounts it (when mounted) and unlinks its file. Removing a
    /// namespace that does not exist succeeds.
    pub fn remove(&self, name: &str) -> Result<(), NetnsError> {
        let path = self.path(name)?;
        if self
            .sys
            .mounted_ns(&path)
            .map_err(sys(&path, "stat"))?
            .is_some()
        {
            self.sys.unmount(&path).map_err(sys(&path, "unmount"))?;
        }
        self.sys.unlink(&path).map_err(sys(&path, "unlink"))
    }
}

fn sys(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> NetnsError {
    let path = path.to_path_buf();
    move |source| NetnsError::Sys { path, op, source }
}

/// The real system calls.
pub struct LinuxNs;

impl NsSys for LinuxNs {
    fn share_dir(&self, dir: &Path) -> io::Result<()> {
        use nix::mount::{MsFlags, mount};
        std::fs::create_dir_all(dir)?;
        let share = || {
            mount(
                None::<&str>,
                dir,
                None::<&str>,
                MsFlags::MS_SHARED | MsFlags::MS_REC,
                None::<&str>,
            )
        };
        match share() {
            Ok(()) => Ok(()),
            // Not a mount point: bind it onto itself first, as `ip netns` does.
            Err(nix::Error::EINVAL) => {
                mount(
                    Some(dir),
                    dir,
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )?;
                Ok(share()?)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn create_file(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map(drop)
    }

    fn bind_new_netns(&self, path: &Path) -> io::Result<()> {
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("netns-create".into())
            .spawn(move || -> io::Result<()> {
                use nix::mount::{MsFlags, mount};
                // This thread alone moves to the new namespace, and ends right after.
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    &path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )?;
                Ok(())
            })?
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    fn mounted_ns(&self, path: &Path) -> io::Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        let fs = match nix::sys::statfs::statfs(path) {
            Ok(fs) => fs,
            Err(nix::Error::ENOENT) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if fs.filesystem_type().0 as i64 != NSFS_MAGIC {
            return Ok(None);
        }
        Ok(Some(std::fs::symlink_metadata(path)?.ino()))
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)?;
        Ok(())
    }

    fn unlink(&self, path: &Path) -> io::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

/// A single-threaded runtime on a thread of its own that joined a network namespace (by
/// its path, e.g. `/var/run/netns/<alloc>`): sockets made by futures spawned on it are in
/// that namespace, as are threads it starts. The thread ends when this is dropped. What the
/// client's service checks use to reach a task inside its allocation's namespace.
pub(crate) struct NetnsRuntime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl NetnsRuntime {
    /// Starts the thread and joins namespace `ns_path`.
    pub(crate) async fn enter(ns_path: &Path) -> Result<NetnsRuntime, NetnsError> {
        let path = ns_path.to_path_buf();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread_path = path.clone();
        std::thread::Builder::new()
            .name("netns-checks".into())
            .spawn(move || {
                let joined = (|| -> io::Result<tokio::runtime::Runtime> {
                    let ns = std::fs::File::open(&thread_path)?;
                    // Only this thread (and the threads it starts) moves.
                    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                })();
                match joined {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stopped.await;
                        });
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(sys(&path, "start the namespace thread"))?;
        let handle = ready_rx
            .await
            .map_err(|_| io::Error::other("the namespace thread ended"))
            .and_then(|r| r)
            .map_err(sys(&path, "setns"))?;
        Ok(NetnsRuntime {
            handle,
            _stop: stop,
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Records the calls; `fail` makes the named operation fail; `mounted` says which paths
    /// hold a namespace.
    #[derive(Default)]
    struct Recording {
        calls: Mutex<Vec<String>>,
        fail: Option<&'static str>,
        mounted: Mutex<Vec<PathBuf>>,
    }

    impl Recording {
        fn call(&self, op: &'static str, p: &Path) -> io::Result<()> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("{op} {}", p.display()));
            if self.fail == Some(op) {
                return Err(io::Error::from_raw_os_error(libc::EPERM));
            }
            Ok(())
        }
        fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl NsSys for &Recording {
        fn share_dir(&self, dir: &Path) -> io::Result<()> {
            self.call("share", dir)
        }
        fn create_file(&self, path: &Path) -> io::Result<()> {
            self.call("create", path)
        }
        fn bind_new_netns(&self, path: &Path) -> io::Result<()> {
            self.call("bind", path)?;
            self.mounted.lock().unwrap().push(path.to_path_buf());
            Ok(())
        }
        fn mounted_ns(&self, path: &Path) -> io::Result<Option<u64>> {
            Ok(self
                .mounted
                .lock()
                .unwrap()
                .contains(&path.to_path_buf())
                .then_some(7))
        }
        fn unmount(&self, path: &Path) -> io::Result<()> {
            self.call("unmount", path)?;
            self.mounted.lock().unwrap().retain(|p| p != path);
            Ok(())
        }
        fn unlink(&self, path: &Path) -> io::Result<()> {
            self.call("unlink", path)
        }
    }

    #[test]
    fn create_shares_the_directory_then_binds_the_new_namespace_onto_its_file() {
        let rec = Recording::default();
        let ns = NamedNetns::new(&rec, "/run/x");
        assert_eq!(ns.create("a1").unwrap(), PathBuf::from("/run/x/a1"));
        assert_eq!(
            rec.calls(),
            ["share /run/x", "create /run/x/a1", "bind /run/x/a1"]
        );
        assert_eq!(ns.existing("a1").unwrap(), Some(7));
        ns.remove("a1").unwrap();
        assert_eq!(&rec.calls()[3..], ["unmount /run/x/a1", "unlink /run/x/a1"]);
        assert_eq!(ns.existing("a1").unwrap(), None);
    }

    #[test]
    fn a_failed_bind_leaves_no_file() {
        let rec = Recording {
            fail: Some("bind"),
            ..Default::default()
        };
        let ns = NamedNetns::new(&rec, "/run/x");
        let e = ns.create("a1").unwrap_err();
        assert!(e.to_string().contains("unshare and bind-mount"), "{e}");
        assert_eq!(rec.calls().last().unwrap(), "unlink /run/x/a1");
    }

    #[test]
    fn removing_an_unmounted_namespace_only_unlinks() {
        let rec = Recording::default();
        NamedNetns::new(&rec, "/run/x").remove("gone").unwrap();
        assert_eq!(rec.calls(), ["unlink /run/x/gone"]);
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        let rec = Recording::default();
        let ns = NamedNetns::new(&rec, "/run/x");
        for bad in ["", "..", ".hidden", "a/b", "a b", &"x".repeat(65)] {
            assert!(
                matches!(ns.create(bad), Err(NetnsError::BadName(_))),
                "{bad:?}"
            );
            assert!(ns.remove(bad).is_err());
        }
        assert!(rec.calls().is_empty());
    }

    /// The real thing (root): a new namespace, other than this process's, that survives its
    /// thread, and is gone after removal.
    #[test]
    fn a_real_named_namespace_is_created_and_removed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let ns = NamedNetns::new(LinuxNs, tmp.path().join("netns"));
        let name = format!("drover-unit-{}", std::process::id());
        let path = ns.create(&name).unwrap();
        let ino = ns.existing(&name).unwrap().expect("mounted");
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino();
        assert_ne!(ino, own, "a new namespace, not this process's");
        assert!(ns.create(&name).is_err(), "creating it twice fails");
        assert_eq!(
            ns.existing(&name).unwrap(),
            Some(ino),
            "the failed create left it alone"
        );
        ns.remove(&name).unwrap();
        assert!(!path.exists());
        assert_eq!(ns.existing(&name).unwrap(), None);
        let _ = nix::mount::umount2(&tmp.path().join("netns"), nix::mount::MntFlags::MNT_DETACH);
    }

    /// The real thing (root): a socket made on the runtime is in the namespace, not ours.
    #[tokio::test]
    async fn a_namespace_runtime_makes_its_sockets_in_the_namespace() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().unwrap();
        let ns = NamedNetns::new(LinuxNs, tmp.path().join("netns"));
        let name = format!("drover-rt-{}", std::process::id());
        let path = ns.create(&name).unwrap();
        let ino = ns.existing(&name).unwrap().unwrap();
        let rt = NetnsRuntime::enter(&path).await.unwrap();
        let inside = rt
            .handle()
            .spawn(async { std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino() })
            .await
            .unwrap();
        assert_eq!(inside, ino);
        // A listener of this process's namespace is not reachable from there.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let r = rt
            .handle()
            .spawn(async move { tokio::net::TcpStream::connect(addr).await.map(drop) })
            .await
            .unwrap();
        assert!(r.is_err(), "the namespace's loopback is not ours");
        drop(rt);
        ns.remove(&name).unwrap();
        let _ = nix::mount::umount2(&tmp.path().join("netns"), nix::mount::MntFlags::MNT_DETACH);
    }
}
