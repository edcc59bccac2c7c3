//! An isolated task's start: `task-shim init` cloned into new namespaces and moved into the
//! task's cgroups, and the cgroups' cleanup when it is gone.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::command::cstring;
use super::{last_err, set_nonblocking};
use crate::cloexec_pipe;
use crate::isolate::Isolation;
use crate::isolate::cgroup::Cgroup;
use crate::isolate::init;
use crate::isolate::syscalls::{Host, Syscalls};

/// An isolated task's extras: its cgroup and the pipe on which init reports its status.
pub(super) struct Isolated {
    pub(super) cgroup: Cgroup,
    pub(super) result: Option<OwnedFd>,
}

impl Isolated {
    /// The task's raw wait status, if init sent it.
    pub(super) fn take_result(&mut self) -> Option<i32> {
        let fd = self.result.take()?;
        let mut buf = [0u8; 4];
        // SAFETY: a non-blocking read into a local buffer (init wrote before exiting).
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        (n == 4).then(|| i32::from_ne_bytes(buf))
    }

    /// Kills what is left in the cgroup and removes it.
    pub(super) fn cleanup(&self) {
        for _ in 0..100 {
            self.cgroup.kill_all();
            // Orphans of the dead namespace come to us (a child subreaper): collect them.
            // SAFETY: waitpid with no status pointer.
            while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
            if self.cgroup.pids().is_empty() && self.cgroup.destroy().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if let Err(e) = self.cgroup.destroy() {
            log!("{e}");
        }
    }
}

/// Starts `task-shim init` in new pid, mount, ipc and uts namespaces, in the task's new
/// cgroups. `fds` are the status pipe and the task's stdout and stderr.
pub(super) fn start_isolated(
    dir: &Path,
    shim_id: &str,
    iso: &Isolation,
    fds: [&OwnedFd; 3],
) -> Result<(i32, Isolated), String> {
    let cgroup = Cgroup::host(&iso.cgroup.parent, shim_id)?;
    if let Err(e) = cgroup.create(&iso.cgroup) {
        let _ = cgroup.destroy();
        return Err(e);
    }
    let (result_r, result_w) = cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let (go_r, go_w) = cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    set_nonblocking(result_r.as_raw_fd()).map_err(|e| format!("cannot configure a pipe: {e}"))?;
    let exe = c"/proc/self/exe";
    let argv_c = [
        CString::from(c"task-shim"),
        CString::from(c"task-shim"),
        CString::from(c"init"),
        cstring(dir.as_os_str().as_bytes(), "the state directory")?,
    ];
    let argv = crate::c_ptrs(&argv_c);
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let src = [
        fds[0].as_raw_fd(),
        result_w.as_raw_fd(),
        fds[1].as_raw_fd(),
        fds[2].as_raw_fd(),
        go_r.as_raw_fd(),
    ];
    let flags = libc::CLONE_NEWPID | libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    // SAFETY: clone(2) without a new stack behaves like fork(2) (the child runs on a
    // copy-on-write copy of ours); this process is single-threaded, and the child only makes
    // async-signal-safe calls before execve.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    } as i32;
    if pid < 0 {
        let e = last_err();
        let _ = cgroup.destroy();
        return Err(format!(
            "cannot create the task's namespaces (clone with new pid, mount, ipc and uts namespaces): {e}"
        ));
    }
    if pid == 0 {
        // SAFETY: in the cloned child: only syscalls on our descriptors, then execve.
        unsafe {
            // init dies with the shim, and with init the task's whole pid namespace.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            libc::setsid();
            let mut high = [0; 5];
            for (h, s) in high.iter_mut().zip(src) {
                *h = libc::fcntl(s, libc::F_DUPFD_CLOEXEC, 10);
            }
            for (i, h) in high.iter().enumerate() {
                libc::dup2(*h, init::STATUS_FD + i as i32);
            }
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let errno = *libc::__errno_location();
            let mut msg = [0u8; 8 + 26];
            msg[..4].copy_from_slice(&init::STAGE_ISOLATION.to_ne_bytes());
            msg[4..8].copy_from_slice(&errno.to_ne_bytes());
            msg[8..].copy_from_slice(b"cannot exec task-shim init");
            libc::write(init::STATUS_FD, msg.as_ptr().cast(), msg.len());
            libc::_exit(127);
        }
    }
    drop(result_w);
    drop(go_r);
    // Move init into the task's cgroups while it sets up the root, then let it go on.
    for f in cgroup.procs_files() {
        if let Err(e) = Host.write_file(&f, &pid.to_string()) {
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, std::ptr::null_mut(), 0);
            }
            let _ = cgroup.destroy();
            return Err(format!(
                "cannot move the task into the cgroup {}: {e}",
                f.display()
            ));
        }
    }
    // SAFETY: writing one byte to our pipe.
    unsafe { libc::write(go_w.as_raw_fd(), b"1".as_ptr().cast(), 1) };
    drop(go_w);
    Ok((
        pid,
        Isolated {
            cgroup,
            result: Some(result_r),
        },
    ))
}
