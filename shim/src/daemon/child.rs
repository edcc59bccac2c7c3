//! The task's child between fork and exec (unisolated tasks, which join the allocation's
//! network namespace here when they have one; isolated ones go through init),
//! and the words for how it failed, which it reports as a stage and an errno.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use super::user::Credentials;
use crate::LaunchSpec;
use crate::isolate::init::STAGE_ISOLATION;
use crate::isolate::netns;
use crate::isolate::syscalls::Host;

/// Stages at which the task's child can fail before exec.
pub(crate) const STAGE_CHDIR: i32 = 1;
pub(crate) const STAGE_CREDENTIALS: i32 = 2;
pub(crate) const STAGE_EXEC: i32 = 3;
pub(crate) const STAGE_STDIO: i32 = 4;
pub(crate) const STAGE_NETWORK: i32 = 6;

pub(super) fn describe_failure(
    stage: i32,
    errno: i32,
    msg: &str,
    spec: &LaunchSpec,
    exe: &Path,
) -> String {
    let err = io::Error::from_raw_os_error(errno);
    match stage {
        // init's own words: "cannot mount ...", "executable not found: ..." ...
        STAGE_ISOLATION if !msg.is_empty() && errno == 0 => msg.to_string(),
        STAGE_ISOLATION if !msg.is_empty() => format!("{msg}: {err}"),
        STAGE_ISOLATION => format!("cannot isolate the task: {err}"),
        STAGE_CHDIR => format!(
            "cannot enter the working directory {}: {err}",
            spec.cwd.display()
        ),
        STAGE_CREDENTIALS => format!(
            "cannot switch to user {:?}: {err}",
            spec.user.as_deref().unwrap_or_default()
        ),
        STAGE_STDIO => format!("cannot set up the task's output: {err}"),
        STAGE_NETWORK => {
            netns::join_error(spec.network_ns.as_deref().unwrap_or(Path::new("")), &err)
        }
        _ => match errno {
            libc::ENOENT if exe.exists() => format!(
                "executable not found: the interpreter of {} (its #! line) does not exist",
                exe.display()
            ),
            libc::ENOENT => format!("executable not found: {}", exe.display()),
            libc::EACCES => format!(
                "permission denied executing {} (is it executable?)",
                exe.display()
            ),
            libc::ENOEXEC => format!(
                "{} is not in an executable format (a script without a #! line?)",
                exe.display()
            ),
            _ => format!("cannot execute {}: {err}", exe.display()),
        },
    }
}

/// The pipe ends the task's child uses.
pub(super) struct ChildFds {
    pub(super) out_w: RawFd,
    pub(super) err_w: RawFd,
    pub(super) status_w: RawFd,
    /// The allocation's network namespace to join, opened by the shim.
    pub(super) netns: Option<RawFd>,
}

/// In the forked child: reset signals, wire stdio, chdir, drop privileges, exec. Never returns.
///
/// # Safety
/// Must be called in a freshly forked child of this single-threaded process.
pub(super) unsafe fn exec_task(
    fds: ChildFds,
    cwd: &CString,
    creds: Option<&Credentials>,
    exe: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    let ChildFds {
        out_w,
        err_w,
        status_w,
        netns,
    } = fds;
    // SAFETY: the caller runs this in a freshly forked child of a single-threaded process:
    // only async-signal-safe calls on our own descriptors and valid C strings follow.
    unsafe {
        let fail = |stage: i32| -> ! {
            let errno = *libc::__errno_location();
            let mut msg = [0u8; 8];
            msg[..4].copy_from_slice(&stage.to_ne_bytes());
            msg[4..].copy_from_slice(&errno.to_ne_bytes());
            libc::write(status_w, msg.as_ptr().cast(), 8);
            libc::_exit(127);
        };
        libc::setsid();
        // The task must not inherit the shim's blocked SIGCHLD, nor ignored signals (Rust
        // ignores SIGPIPE): both survive exec.
        crate::isolate::init::reset_signals();
        // Before credentials drop: joining needs CAP_SYS_ADMIN.
        if let Some(fd) = netns
            && netns::enter(&mut Host, fd).is_err()
        {
            fail(STAGE_NETWORK);
        }
        if libc::dup2(out_w, 1) < 0 || libc::dup2(err_w, 2) < 0 {
            fail(STAGE_STDIO);
        }
        if libc::chdir(cwd.as_ptr()) < 0 {
            fail(STAGE_CHDIR);
        }
        if let Some(c) = creds
            && (libc::setgroups(c.groups.len(), c.groups.as_ptr()) < 0
                || libc::setgid(c.gid) < 0
                || libc::setuid(c.uid) < 0)
        {
            fail(STAGE_CREDENTIALS);
        }
        libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(STAGE_EXEC)
    }
}
