//! `task-shim init <state dir>`: pid 1 of an isolated task's namespaces.
//!
//! The shim clone()s a child into new pid, mount, ipc and uts namespaces, which execs this
//! with five descriptors: [`STATUS_FD`] (launch failures, close-on-exec success as for
//! unisolated tasks), [`RESULT_FD`] (the task's raw wait status when it ends), and the
//! task's stdout and stderr pipes ([`OUT_FD`], [`ERR_FD`]), and [`GO_FD`].
//!
//! init joins the allocation's network namespace, names its host (the shim moves it into
//! the task's cgroups meanwhile, [`GO_FD`]),
//! assembles the task's root ([`super::plan_root`]) on a tmpfs mounted over the shim's state
//! directory (in its own mount namespace only), pivot_roots into it, forks the task, then
//! forwards signals to the task's process group and reaps every process until the task
//! exits. When init exits the kernel kills whatever is left in the pid namespace.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

use super::syscalls::{Host, Syscalls};
use super::{Isolation, PathKind, RootStep, caps, host_path_kind, plan_root, under};

const CGROUP_PARENT_HINT: &str = "see the shim's log, shim.log";
use crate::LaunchSpec;
use crate::daemon::{Credentials, resolve_in_path, resolve_user};

pub(crate) const STATUS_FD: RawFd = 3;
pub(crate) const RESULT_FD: RawFd = 4;
pub(crate) const OUT_FD: RawFd = 5;
pub(crate) const ERR_FD: RawFd = 6;
/// The shim writes one byte here once it has moved init into the task's cgroups (which it
/// does while init sets up the root: a cgroup v1 migration can wait ~10 ms for an RCU grace
/// period, and this way that overlaps with init's own work).
pub(crate) const GO_FD: RawFd = 7;

/// A failure while isolating; its message follows the stage and errno on the status pipe.
pub(crate) const STAGE_ISOLATION: i32 = 5;

/// The task's pid in init's namespace, for the signal handler.
static TASK: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = TASK.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; the task leads its own process group.
        unsafe {
            if libc::kill(-pid, sig) < 0 {
                libc::kill(pid, sig);
            }
        }
    }
}

fn report(stage: i32, errno: i32, msg: &str) {
    let mut buf = Vec::with_capacity(8 + msg.len());
    buf.extend_from_slice(&stage.to_ne_bytes());
    buf.extend_from_slice(&errno.to_ne_bytes());
    buf.extend_from_slice(msg.as_bytes());
    // SAFETY: STATUS_FD was handed to us by the shim; writing a local buffer.
    unsafe { libc::write(STATUS_FD, buf.as_ptr().cast(), buf.len()) };
}

fn os_err(what: String) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// mount(2) through `sys`, with the words of its failure.
fn mount(
    sys: &mut impl Syscalls,
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> Result<(), String> {
    sys.mount(source, target, fstype, flags, data).map_err(|e| {
        format!(
            "cannot mount {}{} on {}: {e}",
            fstype.unwrap_or(""),
            source
                .map(|s| format!(" {}", s.display()))
                .unwrap_or_default(),
            target.display()
        )
    })
}

fn created(p: &Path, e: std::io::Error) -> String {
    format!("cannot create {}: {e}", p.display())
}

/// Carries out `steps` under `root`.
pub(crate) fn assemble(
    sys: &mut impl Syscalls,
    root: &Path,
    steps: &[RootStep],
) -> Result<(), String> {
    for step in steps {
        match step {
            RootStep::Dir(p) => {
                let p = under(root, p);
                sys.create_dir_all(&p).map_err(|e| created(&p, e))?
            }
            RootStep::File(p) => {
                let p = under(root, p);
                sys.create_file(&p).map_err(|e| created(&p, e))?
            }
            RootStep::Symlink { path, target } => {
                let p = under(root, path);
                sys.symlink(target, &p).map_err(|e| {
                    format!("cannot link {} -> {}: {e}", p.display(), target.display())
                })?
            }
            RootStep::Bind {
                source,
                target,
                readonly,
            } => {
                let t = under(root, target);
                mount(
                    sys,
                    Some(source),
                    &t,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )?;
                // A bind mount's flags are set by a second call: never devices or setuid
                // programs (a root task with CAP_MKNOD could otherwise make and open a disk's
                // node in its writable directories), read-only unless writable.
                let mut flags = libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV;
                if *readonly {
                    flags |= libc::MS_RDONLY;
                }
                mount(sys, None, &t, None, flags, None)?;
            }
            RootStep::Device { source, target } => {
                let t = under(root, target);
                mount(sys, Some(source), &t, None, libc::MS_BIND, None)?;
            }
            RootStep::Tmpfs { target, options } => {
                // /dev holds only the device binds above it: the tmpfs itself allows none.
                let mut flags = libc::MS_NOSUID | libc::MS_NODEV;
                if target == Path::new("/dev") {
                    flags |= libc::MS_NOEXEC;
                }
                mount(
                    sys,
                    Some(Path::new("tmpfs")),
                    &under(root, target),
                    Some("tmpfs"),
                    flags,
                    Some(options),
                )?;
            }
            RootStep::Proc(target) => mount(
                sys,
                Some(Path::new("proc")),
                &under(root, target),
                Some("proc"),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )?,
            RootStep::Mask(target) => {
                let t = under(root, target);
                match sys.kind(&t) {
                    PathKind::Dir => mount(
                        sys,
                        Some(Path::new("tmpfs")),
                        &t,
                        Some("tmpfs"),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        Some("mode=0555"),
                    )?,
                    PathKind::File => mount(
                        sys,
                        Some(Path::new("/dev/null")),
                        &t,
                        None,
                        libc::MS_BIND,
                        None,
                    )?,
                    _ => {}
                }
            }
            RootStep::ReadOnly(target) => {
                let t = under(root, target);
                if matches!(sys.kind(&t), PathKind::Dir | PathKind::File) {
                    mount(sys, Some(&t), &t, None, libc::MS_BIND | libc::MS_REC, None)?;
                    mount(
                        sys,
                        None,
                        &t,
                        None,
                        libc::MS_REMOUNT
                            | libc::MS_BIND
                            | libc::MS_RDONLY
                            | libc::MS_NOSUID
                            | libc::MS_NODEV
                            | libc::MS_NOEXEC,
                        None,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// Makes `root` the task's `/`: pivot_root, detach the old root, then make `/` read-only.
pub(crate) fn pivot(sys: &mut impl Syscalls, root: &Path) -> Result<(), String> {
    sys.chdir(root)
        .map_err(|e| format!("cannot enter {}: {e}", root.display()))?;
    sys.pivot_root_here()
        .map_err(|e| format!("cannot pivot_root into {}: {e}", root.display()))?;
    sys.umount_detach(Path::new("."))
        .map_err(|e| format!("cannot detach the host's root: {e}"))?;
    sys.chdir(Path::new("/"))
        .map_err(|e| format!("cannot enter /: {e}"))?;
    mount(
        sys,
        None,
        Path::new("/"),
        None,
        libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        None,
    )
}

/// Drops to the task's credentials: no_new_privs, the bounding set cut to `keep`, groups,
/// gid, uid; a task that stays root keeps exactly `keep`. Returns the failing errno.
pub(crate) fn drop_privileges(
    sys: &mut impl Syscalls,
    creds: Option<&Credentials>,
    keep: &[u32],
) -> Result<(), i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(0);
    sys.set_no_new_privs().map_err(errno)?;
    for cap in 0..=sys.last_cap() {
        if !keep.contains(&cap)
            && let Err(e) = sys.drop_bounding_cap(cap)
            // EINVAL: a capability this kernel does not know.
            && e.raw_os_error() != Some(libc::EINVAL)
        {
            return Err(errno(e));
        }
    }
    let uid = creds.map_or(0, |c| c.uid);
    if let Some(c) = creds {
        sys.setgroups(&c.groups).map_err(errno)?;
        sys.setgid(c.gid).map_err(errno)?;
        sys.setuid(c.uid).map_err(errno)?;
    }
    if uid == 0 {
        sys.capset(keep).map_err(errno)?;
    }
    Ok(())
}

/// Resets the signal mask and every disposition to the default.
pub(crate) fn reset_signals() {
    // SAFETY: sigset manipulation on a local set; signal() with SIG_DFL.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
    }
}

/// Joins the allocation's network namespace and names the host.
pub(crate) fn join_network_and_name(
    sys: &mut impl Syscalls,
    iso: &Isolation,
) -> Result<(), String> {
    if let Some(ns) = &iso.network_ns {
        super::netns::NetworkNamespace::open(ns)?.join(sys)?;
    }
    if !iso.hostname.is_empty() {
        sys.sethostname(&iso.hostname).map_err(|e| {
            let errno = nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0));
            format!("cannot set the host name {:?}: {errno}", iso.hostname)
        })?;
    }
    Ok(())
}

/// Assembles the task's root on a tmpfs over `dir` (in init's own mount namespace, which
/// propagates nothing back to the host) and pivots into it. `kind` tells what a host path is.
pub(crate) fn build_root(
    sys: &mut impl Syscalls,
    iso: &Isolation,
    dir: &Path,
    kind: impl Fn(&Path) -> PathKind,
) -> Result<(), String> {
    mount(
        sys,
        None,
        Path::new("/"),
        None,
        libc::MS_REC | libc::MS_PRIVATE,
        None,
    )?;
    mount(
        sys,
        Some(Path::new("tmpfs")),
        dir,
        Some("tmpfs"),
        libc::MS_NOSUID | libc::MS_NODEV,
        Some("mode=0755,size=1m"),
    )?;
    let steps = plan_root(iso, kind);
    assemble(sys, dir, &steps)?;
    pivot(sys, dir)
}

/// Everything prepared before init forks the task.
struct Prepared {
    exe: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
    creds: Option<Credentials>,
    caps: Vec<u32>,
}

fn prepare(dir: &Path) -> Result<Prepared, String> {
    for fd in [STATUS_FD, RESULT_FD, OUT_FD, ERR_FD, GO_FD] {
        // SAFETY: fcntl on descriptors the shim handed us.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    let spec_path = dir.join(crate::SPEC_FILE);
    let raw = std::fs::read(&spec_path)
        .map_err(|e| format!("cannot read {}: {e}", spec_path.display()))?;
    let spec: LaunchSpec = serde_json::from_slice(&raw)
        .map_err(|e| format!("cannot parse {}: {e}", spec_path.display()))?;
    let iso = spec
        .isolation
        .clone()
        .ok_or("task-shim init runs isolated tasks only, and this spec has no isolation")?;

    join_network_and_name(&mut Host, &iso)?;
    let creds = spec.user.as_deref().map(resolve_user).transpose()?;
    let names: Vec<String> = iso.capabilities.clone();
    let caps = caps::numbers(&names)?;

    build_root(&mut Host, &iso, dir, host_path_kind)?;

    // The task must start inside its cgroups: wait for the shim to have moved us.
    let mut go = [0u8; 1];
    // SAFETY: reading one byte from a descriptor the shim handed us.
    let n = unsafe { libc::read(GO_FD, go.as_mut_ptr().cast(), 1) };
    if n != 1 || go[0] != b'1' {
        return Err(format!(
            "the shim did not move init into the task's cgroups ({CGROUP_PARENT_HINT})"
        ));
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(GO_FD) };

    let path = spec
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(crate::daemon::DEFAULT_PATH);
    let exe = resolve_in_path(&spec.command, path, &spec.cwd)?;
    let cs = |s: &[u8], what: &str| {
        CString::new(s.to_vec()).map_err(|_| format!("{what} contains a NUL byte"))
    };
    let mut argv = vec![cs(spec.command.as_bytes(), "the command")?];
    for a in &spec.args {
        argv.push(cs(a.as_bytes(), "an argument")?);
    }
    let env = spec
        .env
        .iter()
        .map(|(k, v)| cs(format!("{k}={v}").as_bytes(), "the environment"))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        exe: cs(exe.as_os_str().as_bytes(), "the command")?,
        argv,
        env,
        cwd: cs(spec.cwd.as_os_str().as_bytes(), "the working directory")?,
        creds,
        caps,
    })
}

/// The forked task: its own session, default signals, stdio, directory, credentials, exec.
///
/// # Safety
/// Call only in a freshly forked child of single-threaded init.
unsafe fn exec_task(p: &Prepared) -> ! {
    use crate::daemon::{STAGE_CHDIR, STAGE_CREDENTIALS, STAGE_EXEC, STAGE_STDIO};
    let fail = |stage: i32| -> ! {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        report(stage, errno, "");
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(127) }
    };
    let argv = crate::c_ptrs(&p.argv);
    let envp = crate::c_ptrs(&p.env);
    // SAFETY: plain syscalls on our own descriptors and valid C strings.
    unsafe {
        libc::setsid();
        reset_signals();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null < 0
            || libc::dup2(null, 0) < 0
            || libc::dup2(OUT_FD, 1) < 0
            || libc::dup2(ERR_FD, 2) < 0
        {
            fail(STAGE_STDIO);
        }
        if libc::chdir(p.cwd.as_ptr()) < 0 {
            fail(STAGE_CHDIR);
        }
        if let Err(errno) = drop_privileges(&mut Host, p.creds.as_ref(), &p.caps) {
            *libc::__errno_location() = errno;
            fail(STAGE_CREDENTIALS);
        }
        libc::execve(p.exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(STAGE_EXEC)
    }
}

/// The entry of `task-shim init <dir>`. Never returns normally: exits with the task's status.
pub(crate) fn main(dir: &Path) -> i32 {
    let prepared = match prepare(dir) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("task-shim init: {msg}");
            report(STAGE_ISOLATION, 0, &msg);
            return 127;
        }
    };
    // As pid 1 of its namespace, init gets only the signals it has handlers for.
    // SAFETY: installing a handler that only calls kill(2).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = forward as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        for sig in 1..32 {
            if ![libc::SIGKILL, libc::SIGSTOP, libc::SIGCHLD].contains(&sig) {
                libc::sigaction(sig, &sa, std::ptr::null_mut());
            }
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    }
    // SAFETY: init is single-threaded; the child only execs (or reports and exits).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        report(STAGE_ISOLATION, 0, &os_err("cannot fork the task".into()));
        return 127;
    }
    if pid == 0 {
        // SAFETY: freshly forked child.
        unsafe { exec_task(&prepared) }
    }
    TASK.store(pid, Ordering::Relaxed);
    // SAFETY: closing our copies, so the shim sees the status pipe close at the task's exec
    // and the output pipes at the end of the task's output.
    unsafe {
        libc::close(STATUS_FD);
        libc::close(OUT_FD);
        libc::close(ERR_FD);
    }
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let r = unsafe { libc::waitpid(-1, &mut status, 0) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("task-shim init: waitpid: {e}");
            return 1;
        }
        if r == pid {
            let mut f = std::mem::ManuallyDrop::new(
                // SAFETY: RESULT_FD is ours; ManuallyDrop keeps it open until exit.
                unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(RESULT_FD) },
            );
            let _ = f.write_all(&status.to_ne_bytes());
            return if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else {
                128 + libc::WTERMSIG(status)
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isolate::{Bind, Isolation, plan_root};

    use crate::isolate::syscalls::Recording;

    /// A recording in which the two masked files of /proc are files, the rest directories.
    fn recording() -> Recording {
        Recording {
            kinds: Box::new(|p: &Path| {
                if p.ends_with("sysrq-trigger") || p.ends_with("kcore") {
                    PathKind::File
                } else {
                    PathKind::Dir
                }
            }),
            ..Recording::default()
        }
    }

    #[test]
    fn read_only_binds_take_a_second_remount_call_and_links_are_recreated() {
        let iso = Isolation {
            chroot_env: [("/usr", "/usr"), ("/bin", "/bin")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            ..Isolation::default()
        };
        let steps = plan_root(&iso, |p| {
            if p == Path::new("/bin") {
                PathKind::Symlink("usr/bin".into())
            } else {
                PathKind::Dir
            }
        });
        let mut rec = recording();
        assemble(&mut rec, Path::new("/r"), &steps).unwrap();
        let calls = rec.calls;
        let bind = calls
            .iter()
            .position(|c| c.starts_with("mount Some(\"/usr\") /r/usr None"))
            .expect("a bind of /usr");
        assert_eq!(
            calls[bind],
            format!(
                "mount Some(\"/usr\") /r/usr None {:#x} None",
                libc::MS_BIND | libc::MS_REC
            )
        );
        assert_eq!(
            calls[bind + 1],
            format!(
                "mount None /r/usr None {:#x} None",
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_RDONLY
            )
        );
        assert!(
            calls.contains(&"ln /r/bin -> usr/bin".to_string()),
            "{calls:#?}"
        );
        assert!(calls.iter().any(|c| c.contains("/r/proc Some(\"proc\")")));
        // Nothing but directories, empty mount points, links and mounts: no copies.
        assert!(calls.iter().all(|c| {
            ["mkdir ", "touch ", "ln ", "mount "]
                .iter()
                .any(|k| c.starts_with(k))
        }));
    }

    #[test]
    fn writable_dirs_and_dev_allow_no_devices_and_proc_is_masked() {
        let iso = Isolation {
            writable: vec![Bind {
                source: "/data/alloc/a/web/local".into(),
                target: "/local".into(),
            }],
            ..Isolation::default()
        };
        let steps = plan_root(&iso, |_| PathKind::Dir);
        let mut rec = recording();
        assemble(&mut rec, Path::new("/r"), &steps).unwrap();
        let calls = rec.calls;
        let bind = calls
            .iter()
            .position(|c| c.starts_with("mount Some(\"/data/alloc/a/web/local\")"))
            .unwrap();
        assert_eq!(
            calls[bind + 1],
            format!(
                "mount None /r/local None {:#x} None",
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_NOSUID | libc::MS_NODEV
            )
        );
        let dev = format!(
            "mount Some(\"tmpfs\") /r/dev Some(\"tmpfs\") {:#x} Some(\"mode=0755,size=64k\")",
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC
        );
        assert!(calls.contains(&dev), "{calls:#?}");
        // The device binds are the only mounts that allow devices.
        assert!(calls.contains(&format!(
            "mount Some(\"/dev/null\") /r/dev/null None {:#x} None",
            libc::MS_BIND
        )));
        let ro = libc::MS_REMOUNT
            | libc::MS_BIND
            | libc::MS_RDONLY
            | libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC;
        for p in ["/r/proc/sys", "/r/proc/sysrq-trigger"] {
            assert!(
                calls.contains(&format!("mount None {p} None {ro:#x} None")),
                "{p} read-only: {calls:#?}"
            );
        }
        assert!(calls.contains(&format!(
            "mount Some(\"/dev/null\") /r/proc/kcore None {:#x} None",
            libc::MS_BIND
        )));
        let proc = calls
            .iter()
            .position(|c| c.contains("/r/proc Some(\"proc\")"))
            .unwrap();
        let sys = calls
            .iter()
            .position(|c| c.contains("/r/proc/sys None"))
            .unwrap();
        assert!(proc < sys, "/proc is mounted before it is masked");
    }

    #[test]
    fn the_root_is_made_private_assembled_on_a_tmpfs_and_pivoted_into_read_only() {
        let iso = Isolation::default();
        let mut rec = recording();
        build_root(&mut rec, &iso, Path::new("/s"), |_| PathKind::Dir).unwrap();
        let calls = rec.calls;
        assert_eq!(
            calls[..2],
            [
                format!(
                    "mount None / None {:#x} None",
                    libc::MS_REC | libc::MS_PRIVATE
                ),
                format!(
                    "mount Some(\"tmpfs\") /s Some(\"tmpfs\") {:#x} Some(\"mode=0755,size=1m\")",
                    libc::MS_NOSUID | libc::MS_NODEV
                ),
            ]
        );
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV;
        assert_eq!(
            calls[calls.len() - 5..],
            [
                "chdir /s".to_string(),
                "pivot_root . .".into(),
                "umount --detach .".into(),
                "chdir /".into(),
                format!("mount None / None {ro:#x} None"),
            ]
        );
        // Every step of the root happens on the tmpfs, before the pivot.
        assert!(
            calls[2..calls.len() - 5]
                .iter()
                .all(|c| c.contains(" /s/") || c.contains(" /s ")),
            "{calls:#?}"
        );
    }

    #[test]
    fn credentials_drop_bounding_set_first_then_groups_gid_uid_and_no_capset_for_a_user() {
        let creds = Credentials {
            name: "app".into(),
            uid: 1000,
            gid: 1001,
            groups: vec![1001, 27],
        };
        let mut rec = Recording {
            last_cap: 6,
            ..Recording::default()
        };
        drop_privileges(&mut rec, Some(&creds), &[0, 5]).unwrap();
        assert_eq!(
            rec.calls,
            [
                "no_new_privs",
                "capbset_drop 1",
                "capbset_drop 2",
                "capbset_drop 3",
                "capbset_drop 4",
                "capbset_drop 6",
                "setgroups [1001, 27]",
                "setgid 1001",
                "setuid 1000",
            ]
        );
    }

    #[test]
    fn a_root_task_keeps_exactly_its_capabilities() {
        let mut rec = Recording {
            last_cap: 3,
            ..Recording::default()
        };
        drop_privileges(&mut rec, None, &[1, 2]).unwrap();
        assert_eq!(
            rec.calls,
            [
                "no_new_privs",
                "capbset_drop 0",
                "capbset_drop 3",
                "capset [1, 2]"
            ]
        );
    }

    #[test]
    fn the_host_is_named_without_a_network_namespace_to_join() {
        let iso = Isolation {
            hostname: "web-1".into(),
            ..Isolation::default()
        };
        let mut rec = Recording::default();
        join_network_and_name(&mut rec, &iso).unwrap();
        assert_eq!(rec.calls, ["sethostname web-1"]);
    }
}
