//! The system calls isolation makes, behind one trait: the host's ([`Host`]) or a recording
//! of them ([`Recording`]), so the isolation logic — the root's steps, masked and read-only
//! paths, the device binds, the order credentials are dropped in — is tested without root by
//! asserting the calls it makes.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::{PathKind, caps, host_path_kind};

/// What isolating a task asks of the kernel.
pub trait Syscalls {
    fn create_dir_all(&mut self, p: &Path) -> io::Result<()>;
    /// Creates an empty file (a mount point), leaving an existing one as it is.
    fn create_file(&mut self, p: &Path) -> io::Result<()>;
    fn symlink(&mut self, target: &Path, p: &Path) -> io::Result<()>;
    /// What is at `p` (inside the new root, once /proc is mounted there).
    fn kind(&mut self, p: &Path) -> PathKind;
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// umount2(MNT_DETACH).
    fn umount_detach(&mut self, target: &Path) -> io::Result<()>;
    fn chdir(&mut self, p: &Path) -> io::Result<()>;
    /// pivot_root(".", "."): the current directory becomes `/`, the old root stacked on it.
    fn pivot_root_here(&mut self) -> io::Result<()>;
    fn setns(&mut self, fd: RawFd, kind: libc::c_int) -> io::Result<()>;
    fn sethostname(&mut self, name: &str) -> io::Result<()>;
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    /// The highest capability the kernel knows.
    fn last_cap(&mut self) -> u32;
    /// Drops `cap` from the bounding set.
    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()>;
    /// Sets the effective, permitted and inheritable sets to exactly `keep`.
    fn capset(&mut self, keep: &[u32]) -> io::Result<()>;
    fn setgroups(&mut self, groups: &[libc::gid_t]) -> io::Result<()>;
    fn setgid(&mut self, gid: libc::gid_t) -> io::Result<()>;
    fn setuid(&mut self, uid: libc::uid_t) -> io::Result<()>;
    /// Closes every descriptor from `first` up.
    fn close_range(&mut self, first: u32) -> io::Result<()>;
    /// Writes a control file (a cgroup's `cgroup.procs`).
    fn write_file(&mut self, p: &Path, data: &str) -> io::Result<()>;
}

fn cvt(r: libc::c_long) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL"))
}

/// The real calls.
pub struct Host;

impl Syscalls for Host {
    fn create_dir_all(&mut self, p: &Path) -> io::Result<()> {
        std::fs::create_dir_all(p)
    }
    fn create_file(&mut self, p: &Path) -> io::Result<()> {
        // A file already there is the mount point as it is (it may sit in a read-only bind,
        // such as /etc/hosts under the chroot's /etc).
        if std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(p)
            .map(drop)
    }
    fn symlink(&mut self, target: &Path, p: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, p)
    }
    fn kind(&mut self, p: &Path) -> PathKind {
        host_path_kind(p)
    }
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        let src = source.map(cstr).transpose()?;
        let tgt = cstr(target)?;
        let fst = fstype.map(|s| CString::new(s).unwrap_or_default());
        let dat = data.map(|s| CString::new(s).unwrap_or_default());
        let p = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
        // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
        let r = unsafe {
            libc::mount(
                p(&src),
                tgt.as_ptr(),
                p(&fst),
                flags,
                dat.as_ref().map_or(std::ptr::null(), |d| d.as_ptr().cast()),
            )
        };
        cvt(r.into())
    }
    fn umount_detach(&mut self, target: &Path) -> io::Result<()> {
        let t = cstr(target)?;
        // SAFETY: a valid C string.
        cvt(unsafe { libc::umount2(t.as_ptr(), libc::MNT_DETACH) }.into())
    }
    fn chdir(&mut self, p: &Path) -> io::Result<()> {
        std::env::set_current_dir(p)
    }
    fn pivot_root_here(&mut self) -> io::Result<()> {
        let dot = c".";
        // SAFETY: pivot_root(".", ".") with valid C strings.
        cvt(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) })
    }
    fn setns(&mut self, fd: RawFd, kind: libc::c_int) -> io::Result<()> {
        // SAFETY: setns on a namespace descriptor the caller holds.
        cvt(unsafe { libc::setns(fd, kind) }.into())
    }
    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(io::Error::from)
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        cvt(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }.into())
    }
    fn last_cap(&mut self) -> u32 {
        caps::last_cap()
    }
    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()> {
        // SAFETY: prctl with integer arguments.
        cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }.into())
    }
    fn capset(&mut self, keep: &[u32]) -> io::Result<()> {
        caps::capset(keep)
    }
    fn setgroups(&mut self, groups: &[libc::gid_t]) -> io::Result<()> {
        // SAFETY: a valid array of `groups.len()` gids.
        cvt(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }.into())
    }
    fn setgid(&mut self, gid: libc::gid_t) -> io::Result<()> {
        // SAFETY: a plain credential syscall.
        cvt(unsafe { libc::setgid(gid) }.into())
    }
    fn setuid(&mut self, uid: libc::uid_t) -> io::Result<()> {
        // SAFETY: a plain credential syscall.
        cvt(unsafe { libc::setuid(uid) }.into())
    }
    fn close_range(&mut self, first: u32) -> io::Result<()> {
        // SAFETY: close_range on our own descriptor table.
        cvt(unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) })
    }
    fn write_file(&mut self, p: &Path, data: &str) -> io::Result<()> {
        std::fs::write(p, data)
    }
}

/// Records every call instead of making it, as one line each; [`Recording::kinds`] answers
/// [`Syscalls::kind`] (by default: everything is a directory).
pub struct Recording {
    pub calls: Vec<String>,
    pub kinds: Box<dyn Fn(&Path) -> PathKind>,
    /// What [`Syscalls::last_cap`] answers.
    pub last_cap: u32,
}

impl Default for Recording {
    fn default() -> Self {
        Self {
            calls: Vec::new(),
            kinds: Box::new(|_| PathKind::Dir),
            last_cap: 40,
        }
    }
}

impl Recording {
    fn record(&mut self, call: String) -> io::Result<()> {
        self.calls.push(call);
        Ok(())
    }
}

impl Syscalls for Recording {
    fn create_dir_all(&mut self, p: &Path) -> io::Result<()> {
        self.record(format!("mkdir {}", p.display()))
    }
    fn create_file(&mut self, p: &Path) -> io::Result<()> {
        self.record(format!("touch {}", p.display()))
    }
    fn symlink(&mut self, target: &Path, p: &Path) -> io::Result<()> {
        self.record(format!("ln {} -> {}", p.display(), target.display()))
    }
    fn kind(&mut self, p: &Path) -> PathKind {
        (self.kinds)(p)
    }
    fn mount(
        &mut self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(format!(
            "mount {source:?} {} {fstype:?} {flags:#x} {data:?}",
            target.display()
        ))
    }
    fn umount_detach(&mut self, target: &Path) -> io::Result<()> {
        self.record(format!("umount --detach {}", target.display()))
    }
    fn chdir(&mut self, p: &Path) -> io::Result<()> {
        self.record(format!("chdir {}", p.display()))
    }
    fn pivot_root_here(&mut self) -> io::Result<()> {
        self.record("pivot_root . .".into())
    }
    fn setns(&mut self, fd: RawFd, kind: libc::c_int) -> io::Result<()> {
        self.record(format!("setns {fd} {kind:#x}"))
    }
    fn sethostname(&mut self, name: &str) -> io::Result<()> {
        self.record(format!("sethostname {name}"))
    }
    fn set_no_new_privs(&mut self) -> io::Result<()> {
        self.record("no_new_privs".into())
    }
    fn last_cap(&mut self) -> u32 {
        self.last_cap
    }
    fn drop_bounding_cap(&mut self, cap: u32) -> io::Result<()> {
        self.record(format!("capbset_drop {cap}"))
    }
    fn capset(&mut self, keep: &[u32]) -> io::Result<()> {
        self.record(format!("capset {keep:?}"))
    }
    fn setgroups(&mut self, groups: &[libc::gid_t]) -> io::Result<()> {
        self.record(format!("setgroups {groups:?}"))
    }
    fn setgid(&mut self, gid: libc::gid_t) -> io::Result<()> {
        self.record(format!("setgid {gid}"))
    }
    fn setuid(&mut self, uid: libc::uid_t) -> io::Result<()> {
        self.record(format!("setuid {uid}"))
    }
    fn close_range(&mut self, first: u32) -> io::Result<()> {
        self.record(format!("close_range {first}.."))
    }
    fn write_file(&mut self, p: &Path, data: &str) -> io::Result<()> {
        self.record(format!("write {} {data}", p.display()))
    }
}
