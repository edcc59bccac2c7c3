//! The `ExecTask` helper: forked by the shim (single-threaded, so it may setns() into a mount
//! namespace, which a threaded process cannot), it joins the task's cgroups and namespaces,
//! forks the command into the task's pid namespace, waits for it and exits as it did.

use std::ffi::CString;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::caps;
use super::init::{drop_privileges, reset_signals};
use super::syscalls::{Host, Syscalls};
use crate::LaunchSpec;
use crate::daemon::{Credentials, DEFAULT_PATH, resolve_in_path, resolve_user};

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

/// Joins the task's cgroups (`procs`: their `cgroup.procs` files) and the namespaces of
/// its init (`ns`: the files of /proc/<init>/ns, opened first, in [`NAMESPACES`] order),
/// then enters the task's working directory inside its root.
pub(crate) fn join_task(
    sys: &mut impl Syscalls,
    procs: &[PathBuf],
    ns: &[(RawFd, libc::c_int)],
    cwd: &Path,
) -> Result<(), String> {
    for f in procs {
        sys.write_file(f, "0")
            .map_err(|e| format!("cannot join the cgroup {}: {e}", f.display()))?;
    }
    for (fd, kind) in ns {
        sys.setns(*fd, *kind)
            .map_err(|e| format!("cannot enter the task's namespaces: {e}"))?;
    }
    // Joining the mount namespace moved us to its root: the task's.
    sys.chdir(cwd)
        .map_err(|e| format!("cannot enter the working directory {}: {e}", cwd.display()))
}

/// Opens the namespaces of the task's init, in [`NAMESPACES`] order.
fn open_namespaces(init_pid: i32) -> Result<Vec<(std::fs::File, libc::c_int)>, String> {
    NAMESPACES
        .iter()
        .map(|(name, kind)| {
            let p = format!("/proc/{init_pid}/ns/{name}");
            std::fs::File::open(&p)
                .map(|f| (f, *kind))
                .map_err(|e| format!("cannot open {p}: {e} (has the task exited?)"))
        })
        .collect()
}

/// The command to run, as C strings, resolved inside the task's root.
struct Command {
    exe: PathBuf,
    exe_c: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Command {
    fn new(spec: &LaunchSpec, req: &ExecRequest) -> Result<Self, String> {
        let (program, _) = req.argv.split_first().ok_or("no command")?;
        let path = spec
            .env
            .get("PATH")
            .map(String::as_str)
            .unwrap_or(DEFAULT_PATH);
        let exe = resolve_in_path(program, path, &spec.cwd)?;
        let cs = |s: &[u8]| CString::new(s.to_vec()).map_err(|_| "NUL byte".to_string());
        Ok(Self {
            exe_c: cs(exe.as_os_str().as_bytes())?,
            exe,
            argv: req
                .argv
                .iter()
                .map(|a| cs(a.as_bytes()))
                .collect::<Result<_, _>>()?,
            env: spec
                .env
                .iter()
                .map(|(k, v)| cs(format!("{k}={v}").as_bytes()))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The command's process, forked into the task's pid namespace: stdio, a controlling
/// terminal if asked, credentials, exec. Never returns.
///
/// # Safety
/// Call only in a freshly forked child of the single-threaded helper.
unsafe fn exec_command(
    cmd: &Command,
    tty: bool,
    creds: Option<&Credentials>,
    keep: &[u32],
    fds: [RawFd; 3],
) -> ! {
    let argv = crate::c_ptrs(&cmd.argv);
    let envp = crate::c_ptrs(&cmd.env);
    // SAFETY: freshly forked child, now inside the task's pid namespace: syscalls on our own
    // descriptors and valid C strings.
    unsafe {
        libc::setsid();
        if libc::dup2(fds[0], 0) < 0 || libc::dup2(fds[1], 1) < 0 || libc::dup2(fds[2], 2) < 0 {
            libc::_exit(126);
        }
        if tty {
            libc::ioctl(0, libc::TIOCSCTTY, 0);
        }
        if let Err(errno) = drop_privileges(&mut Host, creds, keep) {
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
        libc::execve(cmd.exe_c.as_ptr(), argv.as_ptr(), envp.as_ptr());
        let e = std::io::Error::last_os_error();
        let line = format!("drover exec: cannot execute {}: {e}\n", cmd.exe.display());
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::_exit(127)
    }
}

/// Waits for the command and exits as it did (the same signal, so the shim reports it).
fn exit_as(pid: i32) -> ! {
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
    let or_fail = |r: Result<(), String>| r.unwrap_or_else(|e| fail(err_fd, &e));
    // Everything that reads the host's files happens before the mount namespace changes.
    let ns_files = open_namespaces(init_pid).unwrap_or_else(|e| fail(err_fd, &e));
    let creds =
        (spec.user.as_deref().map(resolve_user).transpose()).unwrap_or_else(|e| fail(err_fd, &e));
    let names = spec
        .isolation
        .as_ref()
        .map(|i| i.capabilities.clone())
        .unwrap_or_default();
    let keep = caps::numbers(&names).unwrap_or_else(|e| fail(err_fd, &e));
    let ns: Vec<_> = ns_files.iter().map(|(f, k)| (f.as_raw_fd(), *k)).collect();
    or_fail(join_task(&mut Host, procs, &ns, &spec.cwd));
    drop(ns_files);
    let cmd = Command::new(spec, req).unwrap_or_else(|e| fail(err_fd, &e));

    // SAFETY: single-threaded; the child only execs or reports and exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        fail(err_fd, "cannot fork");
    }
    if pid == 0 {
        // SAFETY: freshly forked child.
        unsafe { exec_command(&cmd, req.tty, creds.as_ref(), &keep, fds) }
    }
    // The helper keeps nothing open: the caller sees end of file when the command's done.
    let _ = Host.close_range(3);
    exit_as(pid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::syscalls::Recording;

    #[test]
    fn exec_joins_the_cgroups_then_the_namespaces_mount_last_then_the_cwd() {
        assert_eq!(NAMESPACES.last().map(|n| n.0), Some("mnt"));
        let procs = [
            PathBuf::from("/sys/fs/cgroup/drover/t/cgroup.procs"),
            PathBuf::from("/sys/fs/cgroup/memory/drover/t/cgroup.procs"),
        ];
        let ns: Vec<_> = NAMESPACES
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| (10 + i as RawFd, *kind))
            .collect();
        let mut rec = Recording::default();
        join_task(&mut rec, &procs, &ns, Path::new("/local")).unwrap();
        let mut want = vec![
            "write /sys/fs/cgroup/drover/t/cgroup.procs 0".to_string(),
            "write /sys/fs/cgroup/memory/drover/t/cgroup.procs 0".into(),
        ];
        for (fd, kind) in &ns {
            want.push(format!("setns {fd} {kind:#x}"));
        }
        want.push("chdir /local".into());
        assert_eq!(rec.calls, want);
    }
}
