//! The allocation's network namespace, as a task joins it: opened first (so a missing or
//! unreadable one fails the start with its path before anything forks), then entered with
//! `setns(CLONE_NEWNET)` through the [`Syscalls`] seam. An isolated task's init joins it
//! ([`Isolation::network_ns`](super::Isolation::network_ns)); an unisolated one's child joins it between fork and
//! exec ([`crate::LaunchSpec::network_ns`]), and so does a raw_exec `alloc exec` command.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use super::syscalls::Syscalls;

/// An opened network namespace file (`/var/run/netns/<alloc id>`, a container's sandbox
/// key, `/proc/<pid>/ns/net`).
#[derive(Debug)]
pub struct NetworkNamespace {
    path: PathBuf,
    file: File,
}

impl NetworkNamespace {
    /// Opens the namespace file (close-on-exec).
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| {
            format!(
                "cannot open the allocation's network namespace {}: {e}",
                path.display()
            )
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor to hand [`enter`] in a forked child.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Joins it (the calling thread; in a single-threaded child, the process).
    pub fn join(&self, sys: &mut impl Syscalls) -> Result<(), String> {
        enter(sys, self.fd()).map_err(|e| join_error(&self.path, &e))
    }
}

/// `setns(fd, CLONE_NEWNET)`: the kernel refuses (EINVAL) a file that is not a network
/// namespace.
pub fn enter(sys: &mut impl Syscalls, fd: RawFd) -> io::Result<()> {
    sys.setns(fd, libc::CLONE_NEWNET)
}

/// What a task that could not join `path` is told.
pub fn join_error(path: &Path, e: &io::Error) -> String {
    if e.raw_os_error() == Some(libc::EINVAL) {
        format!(
            "cannot join the allocation's network namespace {}: it is not a network namespace",
            path.display()
        )
    } else {
        format!(
            "cannot join the allocation's network namespace {}: {e}",
            path.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::syscalls::Recording;

    #[test]
    fn joining_is_one_setns_of_the_opened_file() {
        let ns = NetworkNamespace::open(Path::new("/proc/self/ns/net")).unwrap();
        let mut rec = Recording::default();
        ns.join(&mut rec).unwrap();
        assert_eq!(rec.calls, [format!("setns {} 0x40000000", ns.fd())]);
    }

    #[test]
    fn a_missing_namespace_is_named() {
        let e = NetworkNamespace::open(Path::new("/var/run/netns/no-such-alloc")).unwrap_err();
        assert!(
            e.contains("/var/run/netns/no-such-alloc") && e.contains("No such file"),
            "{e}"
        );
    }

    #[test]
    fn a_file_that_is_no_namespace_is_refused_by_the_kernel_with_a_clear_error() {
        let ns = NetworkNamespace::open(Path::new("/proc/self/status")).unwrap();
        let e = ns.join(&mut super::super::syscalls::Host).unwrap_err();
        assert!(e.contains("is not a network namespace"), "{e}");
    }
}
