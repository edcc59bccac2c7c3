//! The `ExecTask` helper: forked by the shim (single-threaded, so it may setns() into a mount
//! namespace, which a threaded process cannot), it joins the task's cgroups and namespaces,
//! forks the command into the task's pid namespace, waits for it and exits as it did.

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::caps;
use super::init::{drop_privileges, reset_signals};
use crate::LaunchSpec;
use crate::daemon::{DEFAULT_PATH, resolve_in_path, resolve_user};

/// What a client asks the shim to run inside the task.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    #[serde(default)]
    pub tty: bool,
}

/// The namespaces the helper joins, in this order (mount last: it changes what paths mean).
const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("net", libc::CLONE_NEWNET),
    ("pid", libc::CLONE_NEWPID),
    ("mnt", libc::CLONE_NEWNS),
];

fn fail(err_fd: RawFd, msg: &str) -> ! {
    let line = format!("drover exec: {msg}\n");
    // SAFETY: write(2) of a local buffer, then _exit.
    unsafe {
        libc::write(err_fd, line.as_ptr().cast(), line.len());
        libc::_exit(126)
    }
}

/// Runs in the shim's freshly forked child. `fds` are the caller's stdin, stdout, stderr.
///
/// # Safety
/// Call only in a freshly forked child of the single-threaded shim.
pub(crate) unsafe fn helper(
    init_pid: i32,
    procs: &[PathBuf],
    spec: &LaunchSpec,
    req: &ExecRequest,
    fds: [RawFd; 3],
) -> ! {
    reset_signals();
    let err_fd = fds[2];
    for f in procs {
        if let Err(e) = std::fs::write(f, "0") {
            fail(
                err_fd,
                &format!("cannot join the cgroup {}: {e}", f.display()),
            );
        }
    }
    let mut ns_files = Vec::new();
    for (name, kind) in NAMESPACES {
        let p = format!("/proc/{init_pid}/ns/{name}");
        match std::fs::File::open(&p) {
            Ok(f) => ns_files.push((f, *kind)),
            Err(e) => fail(
                err_fd,
                &format!("cannot open {p}: {e} (has the task exited?)"),
            ),
        }
    }
    let creds = match spec.user.as_deref().map(resolve_user).transpose() {
        Ok(c) => c,
        Err(e) => fail(err_fd, &e),
    };
    let names = spec
        .isolation
        .as_ref()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let keep = caps::numbers(&names).unwrap_or_else(|e| fail(err_fd, &e));
    for (f, kind) in &ns_files {
        // SAFETY: setns on a namespace descriptor we hold; this process is single-threaded.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(f), *kind) } < 0 {
            fail(
                err_fd,
                &format!(
                    "cannot enter the task's namespaces: {}",
                    std::io::Error::last_os_error()
                ),
            );
        }
    }
    drop(ns_files);
    // Joining the mount namespace moved us to its root: the task's.
    if let Err(e) = std::env::set_current_dir(&spec.cwd) {
        fail(
            err_fd,
            &format!(
                "cannot enter the working directory {}: {e}",
                spec.cwd.display()
            ),
        );
    }
    let (program, _) = req
        .argv
        .split_first()
        .unwrap_or_else(|| fail(err_fd, "no command"));
    let path = spec
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    let exe = resolve_in_path(program, path, &spec.cwd).unwrap_or_else(|e| fail(err_fd, &e));
    let cs = |s: &[u8]| CString::new(s.to_vec()).unwrap_or_else(|_| fail(err_fd, "NUL byte"));
    let exe_c = cs(exe.as_os_str().as_bytes());
    let argv_c: Vec<CString> = req.argv.iter().map(|a| cs(a.as_bytes())).collect();
    let env_c: Vec<CString> = spec
        .env
        .iter()
        .map(|(k, v)| cs(format!("{k}={v}").as_bytes()))
        .collect();
    let argv = crate::c_ptrs(&argv_c);
    let envp = crate::c_ptrs(&env_c);

    // SAFETY: single-threaded; the child only execs or reports and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(err_fd, "cannot fork");
    }
    if pid == 0 {
        // SAFETY: freshly forked child, now inside the task's pid namespace.
        unsafe {
            libc::setsid();
            if libc::dup2(fds[0], 0) < 0 || libc::dup2(fds[1], 1) < 0 || libc::dup2(fds[2], 2) < 0 {
                libc::_exit(126);
            }
            if req.tty {
                libc::ioctl(0, libc::TIOCSCTTY, 0);
            }
            if let Err(errno) = drop_privileges(creds.as_ref(), &keep) {
                fail(
                    2,
                    &format!(
                        "cannot drop privileges: {}",
                        std::io::Error::from_raw_os_error(errno)
                    ),
                );
            }
            // The command dies with its helper, which the shim kills when the caller goes
            // away. Set after the credential change, which clears it.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
            libc::execve(exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
            let e = std::io::Error::last_os_error();
            let line = format!("drover exec: cannot execute {}: {e}\n", exe.display());
            libc::write(2, line.as_ptr().cast(), line.len());
            libc::_exit(127)
        }
    }
    // The helper keeps nothing open: the caller sees end of file when the command's done.
    // SAFETY: close_range on our own descriptor table.
    unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            // SAFETY: _exit is always safe.
            unsafe { libc::_exit(126) };
        }
        if libc::WIFEXITED(status) {
            // SAFETY: as above.
            unsafe { libc::_exit(libc::WEXITSTATUS(status)) };
        }
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            // Die the same way, so the shim reports the signal. SAFETY: default disposition,
            // then the signal to ourselves (not pid 1 of any namespace: it is delivered).
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::kill(libc::getpid(), sig);
                libc::_exit(128 + sig);
            }
        }
    }
}
