//! The shim's start: read the spec, resolve the task's user and command, open its logs, fork
//! it (or clone init for an isolated task), learn whether its exec succeeded, report.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use super::child::{ChildFds, describe_failure, exec_task};
use super::command::{cstring, resolve_command};
use super::event_loop::{Shim, sigchld_fd};
use super::isolated::{Isolated, start_isolated};
use super::last_err;
use super::launch::{send_report, setup_own_stdio};
use super::output::Output;
use super::user::{Credentials, resolve_user};
use crate::isolate::netns::NetworkNamespace;
use crate::rotate::RotatingLog;
use crate::{
    LAUNCH_SPEC_VERSION, LaunchReport, LaunchSpec, SOCKET_FILE, SPEC_FILE, c_ptrs, cloexec_pipe,
    now_nanos, procfs,
};

/// Reads and checks `<dir>/spec.json`.
fn read_spec(dir: &Path) -> Result<LaunchSpec, String> {
    let spec_path = dir.join(SPEC_FILE);
    let raw = std::fs::read(&spec_path)
        .map_err(|e| format!("cannot read {}: {e}", spec_path.display()))?;
    let spec: LaunchSpec = serde_json::from_slice(&raw)
        .map_err(|e| format!("cannot parse {}: {e}", spec_path.display()))?;
    if spec.version > LAUNCH_SPEC_VERSION || spec.version == 0 {
        return Err(format!(
            "launch spec version {} is not supported by this shim (it runs versions 1..={LAUNCH_SPEC_VERSION})",
            spec.version
        ));
    }
    if spec.network_ns.is_some() && spec.isolation.is_some() {
        return Err(format!(
            "{}: network_ns is for unisolated tasks; an isolated task joins isolation.network_ns",
            spec_path.display()
        ));
    }
    Ok(spec)
}

/// The task's command line, environment and directory as C strings, ready before fork.
struct TaskCommand {
    exe: PathBuf,
    exe_c: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
    cwd: CString,
}

impl TaskCommand {
    fn new(spec: &LaunchSpec) -> Result<Self, String> {
        // An isolated task's command is looked up by init, inside the task's root.
        let exe = if spec.isolation.is_some() {
            PathBuf::from(&spec.command)
        } else {
            resolve_command(spec)?
        };
        let mut argv = vec![cstring(&spec.command, "the command")?];
        for a in &spec.args {
            argv.push(cstring(a, "an argument")?);
        }
        let env = spec
            .env
            .iter()
            .map(|(k, v)| cstring(format!("{k}={v}"), "the environment"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            exe_c: cstring(exe.as_os_str().as_bytes(), "the command")?,
            exe,
            argv,
            env,
            cwd: cstring(spec.cwd.as_os_str().as_bytes(), "the working directory")?,
        })
    }
}

/// Opens the rotating log of one of the task's streams, if the spec asks for it.
fn open_log(spec: &LaunchSpec, path: &Option<PathBuf>) -> Result<Option<RotatingLog>, String> {
    path.as_ref()
        .map(|p| {
            RotatingLog::open(
                p,
                spec.log_root.as_deref(),
                spec.logs.max_files,
                spec.logs.max_file_size_mb,
            )
            .map_err(|e| format!("cannot open the log file {}.*: {e}", p.display()))
        })
        .transpose()
}

/// Listens on `<dir>/shim.sock` (mode 0600, non-blocking).
fn listen(sock_path: &Path) -> Result<UnixListener, String> {
    let _ = std::fs::remove_file(sock_path);
    let listener = UnixListener::bind(sock_path)
        .map_err(|e| format!("cannot listen on {}: {e}", sock_path.display()))?;
    let _ = std::fs::set_permissions(sock_path, std::fs::Permissions::from_mode(0o600));
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the socket: {e}"))?;
    Ok(listener)
}

/// The task's three pipes: its stdout and stderr, and the status pipe its child reports a
/// failure before exec on (it closes unread when exec succeeds).
struct Pipes {
    out: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    status: (OwnedFd, OwnedFd),
}

impl Pipes {
    fn new() -> Result<Self, String> {
        let pipe = || cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"));
        Ok(Self {
            out: pipe()?,
            err: pipe()?,
            status: pipe()?,
        })
    }
}

/// Forks the task (or clones init for an isolated one). Returns in the shim only.
fn fork_task(
    dir: &Path,
    shim_id: &str,
    spec: &LaunchSpec,
    creds: Option<&Credentials>,
    netns: Option<&NetworkNamespace>,
    cmd: &TaskCommand,
    pipes: &Pipes,
) -> Result<(i32, Option<Isolated>), String> {
    let argv = c_ptrs(&cmd.argv);
    let envp = c_ptrs(&cmd.env);
    let (pid, isolated) = if let Some(iso) = &spec.isolation {
        let fds = [&pipes.status.1, &pipes.out.1, &pipes.err.1];
        let (pid, iso) = start_isolated(dir, shim_id, iso, fds)?;
        (pid, Some(iso))
    } else {
        // SAFETY: single-threaded process; the child only calls async-signal-safe functions
        // (and would be fine allocating too, with no other threads).
        (unsafe { libc::fork() }, None)
    };
    if pid < 0 {
        return Err(format!("cannot fork the task: {}", last_err()));
    }
    if pid == 0 {
        let fds = ChildFds {
            out_w: pipes.out.1.as_raw_fd(),
            err_w: pipes.err.1.as_raw_fd(),
            status_w: pipes.status.1.as_raw_fd(),
            netns: netns.map(NetworkNamespace::fd),
        };
        // SAFETY: we are the freshly forked child.
        unsafe { exec_task(fds, &cmd.cwd, creds, &cmd.exe_c, &argv, &envp) }
    }
    Ok((pid, isolated))
}

/// Exec succeeded when the status pipe closes without a word; otherwise kills and reaps the
/// task (and cleans up its cgroups) and says why it failed.
fn await_exec(
    status_r: OwnedFd,
    pid: i32,
    isolated: Option<&Isolated>,
    spec: &LaunchSpec,
    exe: &Path,
) -> Result<(), String> {
    let mut status = Vec::new();
    let _ = std::fs::File::from(status_r).read_to_end(&mut status);
    if status.len() < 8 {
        return Ok(());
    }
    let stage = i32::from_ne_bytes(status[..4].try_into().unwrap_or_default());
    let errno = i32::from_ne_bytes(status[4..8].try_into().unwrap_or_default());
    let msg = String::from_utf8_lossy(&status[8..]).into_owned();
    // SAFETY: killing and reaping our own child (isolated: init, whose namespace dies with it).
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0)
    };
    if let Some(iso) = isolated {
        iso.cleanup();
    }
    Err(describe_failure(stage, errno, &msg, spec, exe))
}

/// Sets up the shim, forks the task, reports, and serves until the task is gone.
pub(super) fn shim_main(dir: &Path) -> Result<i32, String> {
    setup_own_stdio(dir)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        log!("cannot become a child subreaper: {}", last_err());
    }
    let spec = read_spec(dir)?;
    let shim_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    log!(
        "shim {shim_id} for task {:?}: {} {:?}",
        spec.task_id,
        spec.command,
        spec.args
    );

    let creds = spec.user.as_deref().map(resolve_user).transpose()?;
    let cmd = TaskCommand::new(&spec)?;
    let netns = spec
        .network_ns
        .as_deref()
        .map(NetworkNamespace::open)
        .transpose()?;
    let stdout_log = open_log(&spec, &spec.stdout_path)?;
    let stderr_log = open_log(&spec, &spec.stderr_path)?;
    let pipes = Pipes::new()?;
    let sigfd = sigchld_fd().map_err(|e| format!("cannot watch SIGCHLD: {e}"))?;
    let sock_path = dir.join(SOCKET_FILE);
    let listener = listen(&sock_path)?;

    let started_at = now_nanos();
    let (pid, isolated) = fork_task(
        dir,
        &shim_id,
        &spec,
        creds.as_ref(),
        netns.as_ref(),
        &cmd,
        &pipes,
    )?;
    drop(netns);
    let Pipes { out, err, status } = pipes;
    drop((out.1, err.1, status.1));
    if let Err(e) = await_exec(status.0, pid, isolated.as_ref(), &spec, &cmd.exe) {
        let _ = std::fs::remove_file(&sock_path);
        return Err(e);
    }

    let me = std::process::id() as i32;
    let report = LaunchReport {
        ok: true,
        error: None,
        shim_pid: me,
        shim_start_time: procfs::start_time(me).unwrap_or_default(),
        task_pid: pid,
        task_start_time: procfs::start_time(pid).unwrap_or_default(),
        task_started_at_unix_nanos: started_at,
    };
    log!(
        "task {:?} started: pid {pid}{}",
        spec.task_id,
        creds
            .as_ref()
            .map(|c| format!(" as user {}", c.name))
            .unwrap_or_default()
    );
    let outputs = [
        Output::new(out.0, stdout_log),
        Output::new(err.0, stderr_log),
    ];
    let mut shim = Shim::new(
        shim_id, dir, &report, outputs, sigfd, listener, isolated, spec,
    );
    send_report(&report);
    shim.serve();
    let _ = std::fs::remove_file(&sock_path);
    log!("shim exiting");
    Ok(0)
}
