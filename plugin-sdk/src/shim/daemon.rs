//! The shim process itself: single-threaded, no async runtime, one poll() loop.

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use super::isolate::Isolation;
use super::isolate::cgroup::Cgroup;
use super::isolate::enter::{self, ExecRequest};
use super::isolate::init::{self, STAGE_ISOLATION};
use super::rotate::RotatingLog;
use super::{
    EXIT_FILE, LAUNCH_SPEC_VERSION, LOG_FILE, LaunchReport, LaunchSpec, SOCKET_FILE, SPEC_FILE,
    TaskExit, cloexec_pipe, now_nanos, parse_signal, procfs, write_atomic,
};

/// The descriptor the launcher hands the shim for its report.
pub(crate) const REPORT_FD: RawFd = 3;

/// How long the shim stays after the task exited, at most.
const LINGER_MAX: Duration = Duration::from_secs(5);
/// How long it stays at least, so a client that just connected gets its answer.
const LINGER_MIN: Duration = Duration::from_millis(200);
/// Longest request line a client may send.
const MAX_LINE: usize = 64 * 1024;

/// The default `PATH` when the task's environment has none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A line in shim.log (its stderr).
macro_rules! log {
    ($($arg:tt)*) => {{
        eprintln!("{} task-shim[{}]: {}",
            crate::logging::format_timestamp(SystemTime::now()),
            std::process::id(),
            format_args!($($arg)*));
    }};
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(last_err()) } else { Ok(r) }
}

/// Sends the launch report and closes the pipe.
fn send_report(report: &LaunchReport) {
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.push(b'\n');
    // SAFETY: REPORT_FD was handed to us by the launcher; we own it from here on.
    let mut f = unsafe { std::fs::File::from_raw_fd(REPORT_FD) };
    let _ = f.write_all(&line);
}

fn report_error(msg: String) {
    send_report(&LaunchReport {
        ok: false,
        error: Some(msg),
        shim_pid: 0,
        shim_start_time: 0,
        task_pid: 0,
        task_start_time: 0,
        task_started_at_unix_nanos: 0,
    });
}

/// `task-shim launch <dir>`: fork, let the intermediate exit, become the shim.
pub(crate) fn launch_main(dir: &Path) -> i32 {
    // SAFETY: fcntl on a descriptor number; fails cleanly when it is not open.
    let flags = unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) };
    if flags < 0 {
        eprintln!(
            "task-shim: no report pipe on fd {REPORT_FD}; the shim is started by task drivers"
        );
        return 2;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC) };

    // SAFETY: this process is single-threaded (the shim is dispatched before any thread starts).
    match unsafe { libc::fork() } {
        -1 => {
            report_error(format!("the task shim cannot fork: {}", last_err()));
            1
        }
        // The intermediate: exit at once so the shim is re-parented away from the plugin.
        // SAFETY: _exit is always safe.
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {
            // SAFETY: plain syscall.
            unsafe { libc::setsid() };
            match shim_main(dir) {
                Ok(code) => code,
                Err(msg) => {
                    log!("{msg}");
                    report_error(msg);
                    1
                }
            }
        }
    }
}

/// The task's credentials, resolved before fork.
pub(crate) struct Credentials {
    pub(crate) name: String,
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: Vec<libc::gid_t>,
}

pub(crate) fn resolve_user(name: &str) -> Result<Credentials, String> {
    let user = nix::unistd::User::from_name(name)
        .map_err(|e| format!("cannot look up user {name:?}: {e}"))?
        .ok_or_else(|| format!("user {name:?} does not exist on this node"))?;
    let cname = CString::new(name).map_err(|_| format!("bad user name {name:?}"))?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .map_err(|e| format!("cannot list the groups of user {name:?}: {e}"))?;
    Ok(Credentials {
        name: name.to_string(),
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups: groups.into_iter().map(|g| g.as_raw()).collect(),
    })
}

fn is_executable_file(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves the command like execvp does, with the task's own `PATH`.
fn resolve_command(spec: &LaunchSpec) -> Result<PathBuf, String> {
    let path = spec
        .env
        .get("PATH")
        .map(String::as_str)
        .unwrap_or(DEFAULT_PATH);
    resolve_in_path(&spec.command, path, &spec.cwd)
}

/// Resolves `cmd` like execvp does with `path`; a relative path with a slash is taken from
/// `cwd`.
pub(crate) fn resolve_in_path(cmd: &str, path: &str, cwd: &Path) -> Result<PathBuf, String> {
    if cmd.is_empty() {
        return Err("no command to run".into());
    }
    if cmd.contains('/') {
        let p = Path::new(cmd);
        let full = if p.is_absolute() {
            p.to_path_buf()
        } else {
            cwd.join(p)
        };
        if !full.exists() {
            return Err(format!("executable not found: {cmd}"));
        }
        return Ok(p.to_path_buf());
    }
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(cmd);
        if is_executable_file(&candidate) {
            return Ok(candidate);
        }
    }
    Err(format!(
        "executable not found: {cmd} (searched PATH={path})"
    ))
}

fn cstring(s: impl AsRef<[u8]>, what: &str) -> Result<CString, String> {
    CString::new(s.as_ref().to_vec()).map_err(|_| format!("{what} contains a NUL byte"))
}

/// Stages at which the task's child can fail before exec.
pub(crate) const STAGE_CHDIR: i32 = 1;
pub(crate) const STAGE_CREDENTIALS: i32 = 2;
pub(crate) const STAGE_EXEC: i32 = 3;
pub(crate) const STAGE_STDIO: i32 = 4;

fn describe_failure(stage: i32, errno: i32, msg: &str, spec: &LaunchSpec, exe: &Path) -> String {
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

/// Points 0 at /dev/null and 1, 2 at shim.log; closes every other descriptor but the report pipe.
fn setup_own_stdio(dir: &Path) -> Result<(), String> {
    let devnull =
        std::fs::File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(LOG_FILE))
        .map_err(|e| format!("cannot open {}: {e}", dir.join(LOG_FILE).display()))?;
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        cvt(libc::dup2(devnull.as_raw_fd(), 0)).map_err(|e| e.to_string())?;
        cvt(libc::dup2(log.as_raw_fd(), 1)).map_err(|e| e.to_string())?;
        cvt(libc::dup2(log.as_raw_fd(), 2)).map_err(|e| e.to_string())?;
    }
    drop(devnull);
    drop(log);
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("cannot list open descriptors: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > REPORT_FD {
            // SAFETY: closing inherited descriptors nobody in this process uses; the one
            // read_dir used is already closed (EBADF is harmless).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}

/// Blocks SIGCHLD and returns a signalfd for it.
fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new descriptor.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        cvt(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = cvt(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The pipe ends the task's child uses.
struct ChildFds {
    out_w: RawFd,
    err_w: RawFd,
    status_w: RawFd,
}

/// In the forked child: reset signals, wire stdio, chdir, drop privileges, exec. Never returns.
///
/// # Safety
/// Must be called in a freshly forked child of this single-threaded process.
unsafe fn exec_task(
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
        super::isolate::init::reset_signals();
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

/// Sets up the shim, forks the task, reports, and serves until the task is gone.
fn shim_main(dir: &Path) -> Result<i32, String> {
    setup_own_stdio(dir)?;
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } < 0 {
        log!("cannot become a child subreaper: {}", last_err());
    }
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
    // An isolated task's command is looked up by init, inside the task's root.
    let exe = if spec.isolation.is_some() {
        PathBuf::from(&spec.command)
    } else {
        resolve_command(&spec)?
    };
    let exe_c = cstring(exe.as_os_str().as_bytes(), "the command")?;
    let mut argv_c = vec![cstring(&spec.command, "the command")?];
    for a in &spec.args {
        argv_c.push(cstring(a, "an argument")?);
    }
    let env_c = spec
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}"), "the environment"))
        .collect::<Result<Vec<_>, _>>()?;
    let cwd_c = cstring(spec.cwd.as_os_str().as_bytes(), "the working directory")?;
    let argv = crate::shim::c_ptrs(&argv_c);
    let envp = crate::shim::c_ptrs(&env_c);

    let open_log = |p: &Option<PathBuf>| -> Result<Option<RotatingLog>, String> {
        p.as_ref()
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
    };
    let stdout_log = open_log(&spec.stdout_path)?;
    let stderr_log = open_log(&spec.stderr_path)?;

    let (out_r, out_w) = cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let (err_r, err_w) = cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let (status_r, status_w) = cloexec_pipe().map_err(|e| format!("cannot create a pipe: {e}"))?;
    let sigfd = sigchld_fd().map_err(|e| format!("cannot watch SIGCHLD: {e}"))?;

    let sock_path = dir.join(SOCKET_FILE);
    let _ = std::fs::remove_file(&sock_path);
    let listener = UnixListener::bind(&sock_path)
        .map_err(|e| format!("cannot listen on {}: {e}", sock_path.display()))?;
    let _ = std::fs::set_permissions(&sock_path, std::fs::Permissions::from_mode(0o600));
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the socket: {e}"))?;

    let started_at = now_nanos();
    let mut isolated = None;
    let pid = if let Some(iso) = &spec.isolation {
        let (pid, iso) = start_isolated(dir, &shim_id, iso, [&status_w, &out_w, &err_w])?;
        isolated = Some(iso);
        pid
    } else {
        // SAFETY: single-threaded process; the child only calls async-signal-safe functions
        // (and would be fine allocating too, with no other threads).
        unsafe { libc::fork() }
    };
    if pid < 0 {
        return Err(format!("cannot fork the task: {}", last_err()));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child.
        unsafe {
            exec_task(
                ChildFds {
                    out_w: out_w.as_raw_fd(),
                    err_w: err_w.as_raw_fd(),
                    status_w: status_w.as_raw_fd(),
                },
                &cwd_c,
                creds.as_ref(),
                &exe_c,
                &argv,
                &envp,
            )
        }
    }
    drop(out_w);
    drop(err_w);
    drop(status_w);

    // Exec succeeded when the status pipe closes without a word.
    let mut status = Vec::new();
    let _ = std::fs::File::from(status_r).read_to_end(&mut status);
    if status.len() >= 8 {
        let stage = i32::from_ne_bytes(status[..4].try_into().unwrap_or_default());
        let errno = i32::from_ne_bytes(status[4..8].try_into().unwrap_or_default());
        let msg = String::from_utf8_lossy(&status[8..]).into_owned();
        // SAFETY: killing and reaping our own child (isolated: init, whose namespace dies
        // with it).
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0)
        };
        if let Some(iso) = &isolated {
            iso.cleanup();
        }
        let _ = std::fs::remove_file(&sock_path);
        return Err(describe_failure(stage, errno, &msg, &spec, &exe));
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
    let mut shim = Shim {
        id: shim_id,
        dir: dir.to_path_buf(),
        task_pid: pid,
        task_start_time: report.task_start_time,
        started_at,
        outputs: [
            Output::new(out_r, stdout_log),
            Output::new(err_r, stderr_log),
        ],
        sigfd,
        listener,
        clients: Vec::new(),
        next_client: 0,
        exec_sessions: Vec::new(),
        isolated,
        spec: spec.clone(),
        exit: None,
        exited_at: None,
        stop_requested: false,
        kill_deadline: None,
    };
    send_report(&report);
    shim.serve();
    let _ = std::fs::remove_file(&sock_path);
    log!("shim exiting");
    Ok(0)
}

/// One of the task's output pipes and where it goes.
struct Output {
    fd: Option<OwnedFd>,
    log: Option<RotatingLog>,
}

impl Output {
    fn new(fd: OwnedFd, log: Option<RotatingLog>) -> Self {
        if let Err(e) = set_nonblocking(fd.as_raw_fd()) {
            log!("cannot make an output pipe non-blocking: {e}");
        }
        Self { fd: Some(fd), log }
    }

    /// Reads what is available; closes the pipe at end of file.
    fn pump(&mut self) {
        let Some(fd) = self.fd.as_ref() else { return };
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                if let Some(log) = self.log.as_mut()
                    && let Err(e) = log.write_all(&buf[..n as usize])
                {
                    log!("cannot write the task's output: {e}");
                }
                continue;
            }
            if n == 0 {
                self.fd = None;
                return;
            }
            let e = last_err();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return,
                _ => {
                    log!("cannot read the task's output: {e}");
                    self.fd = None;
                    return;
                }
            }
        }
    }
}

/// A connected client.
struct Client {
    id: u64,
    /// Descriptors received with the client's messages (for `exec`).
    fds: Vec<OwnedFd>,
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    waiting: bool,
    closed: bool,
}

struct Shim {
    id: String,
    dir: PathBuf,
    task_pid: i32,
    task_start_time: u64,
    started_at: i64,
    outputs: [Output; 2],
    sigfd: OwnedFd,
    listener: UnixListener,
    clients: Vec<Client>,
    next_client: u64,
    /// Running `exec` helpers: (pid, the client waiting for its exit).
    exec_sessions: Vec<(i32, u64)>,
    isolated: Option<Isolated>,
    spec: LaunchSpec,
    exit: Option<TaskExit>,
    exited_at: Option<Instant>,
    stop_requested: bool,
    kill_deadline: Option<Instant>,
}

fn exit_json(exit: &TaskExit) -> serde_json::Value {
    serde_json::to_value(exit).unwrap_or_default()
}

impl Shim {
    fn serve(&mut self) {
        loop {
            let now = Instant::now();
            if let Some(at) = self.exited_at {
                let idle = self.clients.iter().all(|c| c.wbuf.is_empty() && !c.waiting);
                let no_clients = self.clients.is_empty();
                if now >= at + LINGER_MAX || (now >= at + LINGER_MIN && idle && no_clients) {
                    return;
                }
            }
            if let Some(deadline) = self.kill_deadline
                && now >= deadline
            {
                self.kill_deadline = None;
                if self.exit.is_none() {
                    log!("the task outlived its stop timeout: SIGKILL");
                    let _ = self.kill_group(libc::SIGKILL);
                }
            }
            let mut timeout: Option<Duration> = None;
            let mut consider = |t: Instant| {
                let d = t.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |cur| cur.min(d)));
            };
            if let Some(d) = self.kill_deadline {
                consider(d);
            }
            if let Some(at) = self.exited_at {
                consider(at + LINGER_MIN);
                consider(at + LINGER_MAX);
            }

            let mut pfds = vec![
                libc::pollfd {
                    fd: self.sigfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for o in &self.outputs {
                pfds.push(libc::pollfd {
                    fd: o.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            for c in &self.clients {
                let mut events = libc::POLLIN;
                if !c.wbuf.is_empty() {
                    events |= libc::POLLOUT;
                }
                pfds.push(libc::pollfd {
                    fd: c.stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
            let ms = timeout.map_or(-1, |d| d.as_millis().min(60_000) as i32 + 1);
            // SAFETY: pfds is a valid array of pollfd.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = last_err();
                if e.kind() != io::ErrorKind::Interrupted {
                    log!("poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            let ready = |i: usize| pfds[i].revents != 0;
            for (i, o) in self.outputs.iter_mut().enumerate() {
                if ready(2 + i) {
                    o.pump();
                }
            }
            if ready(0) {
                self.drain_sigfd();
                self.reap();
            }
            if ready(1) {
                self.accept();
            }
            let base = 4;
            for i in 0..self.clients.len() {
                if pfds.get(base + i).is_some_and(|p| p.revents != 0) {
                    self.service_client(i);
                }
            }
            self.end_abandoned_execs();
            self.clients.retain(|c| !c.closed);
        }
    }

    fn drain_sigfd(&mut self) {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        // SAFETY: reading siginfo records into a buffer of their size.
        while unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) }
            > 0
        {}
    }

    /// Reaps every exited child; the task's status is recorded, orphans are just collected.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if let Some(at) = self.exec_sessions.iter().position(|(p, _)| *p == pid) {
                let (_, client) = self.exec_sessions.remove(at);
                let reply = json!({ "ok": true, "exit": exit_json(&exit_of(status)) });
                if let Some(i) = self.clients.iter().position(|c| c.id == client) {
                    queue(&mut self.clients[i], &reply);
                    self.flush_client(i);
                }
                continue;
            }
            if pid != self.task_pid {
                continue;
            }
            let mut exit = exit_of(status);
            if let Some(iso) = &mut self.isolated {
                // init hands over the task's own status; without it, init's tells.
                if let Some(task_status) = iso.take_result() {
                    exit = exit_of(task_status);
                }
                exit.oom_killed = iso.cgroup.oom_kills() > 0;
            }
            self.on_task_exit(exit);
        }
    }

    fn on_task_exit(&mut self, exit: TaskExit) {
        log!(
            "task exited: code {} signal {}",
            exit.exit_code,
            exit.signal
        );
        // Whatever the task wrote before it exited is in the pipes now.
        for o in &mut self.outputs {
            o.pump();
        }
        if let Some(iso) = &self.isolated {
            // init is gone, so is its pid namespace; the cgroup catches whatever joined it.
            iso.cleanup();
        } else if self.stop_requested {
            // A stop covers the whole process group, stragglers included.
            let _ = self.kill_group(libc::SIGKILL);
        }
        let record = json!({
            "version": 1,
            "shim_id": self.id,
            "exit": exit_json(&exit),
            "exited_at_unix_nanos": now_nanos(),
        });
        let path = self.dir.join(EXIT_FILE);
        if let Err(e) = write_atomic(&path, record.to_string().as_bytes()) {
            log!("cannot write {}: {e}", path.display());
        }
        self.exit = Some(exit.clone());
        self.exited_at = Some(Instant::now());
        self.kill_deadline = None;
        let reply = json!({ "ok": true, "exit": exit_json(&exit) });
        for c in self.clients.iter_mut().filter(|c| c.waiting) {
            c.waiting = false;
            queue(c, &reply);
        }
        for i in 0..self.clients.len() {
            self.flush_client(i);
        }
    }

    fn kill_group(&self, sig: i32) -> io::Result<()> {
        if let Some(iso) = &self.isolated {
            // init forwards the signal to the task's process group; SIGKILL of init takes
            // down its whole pid namespace, and the cgroup anything that joined it.
            // SAFETY: kill(2) of our own unreaped child.
            let r = cvt(unsafe { libc::kill(self.task_pid, sig) }).map(|_| ());
            if sig == libc::SIGKILL {
                iso.cgroup.kill_all();
            }
            return r;
        }
        // SAFETY: kill with a negative pid signals the task's process group. The group id is
        // the task's pid, which cannot be reused while the group has members (or while the
        // task is an unreaped zombie).
        cvt(unsafe { libc::kill(-self.task_pid, sig) }).map(|_| ())
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next_client += 1;
                    self.clients.push(Client {
                        id: self.next_client,
                        fds: Vec::new(),
                        stream,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        waiting: false,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    fn service_client(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let c = &mut self.clients[i];
            match recv_with_fds(&c.stream, &mut buf, &mut c.fds) {
                Ok(0) => {
                    // The client went away; nobody is left to answer.
                    c.closed = true;
                    return;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    if c.rbuf.len() > MAX_LINE {
                        c.closed = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
        while let Some(pos) = self.clients[i].rbuf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.clients[i].rbuf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                self.handle(i, &line);
            }
        }
        self.flush_client(i);
    }

    fn flush_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.wbuf.is_empty() {
            match c.stream.write(&c.wbuf) {
                Ok(0) => {
                    c.closed = true;
                    return;
                }
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
    }

    fn handle(&mut self, i: usize, line: &str) {
        if let Some(json) = line.strip_prefix("exec ") {
            if let Err(msg) = self.start_exec(i, json) {
                queue(&mut self.clients[i], &refuse(msg));
            }
            return;
        }
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let reply = match (cmd, args.as_slice()) {
            ("hello", []) => json!({
                "ok": true,
                "protocol": 1,
                "shim_id": self.id,
                "task_pid": self.task_pid,
                "task_start_time": self.task_start_time,
            }),
            ("wait", []) => match &self.exit {
                Some(exit) => json!({ "ok": true, "exit": exit_json(exit) }),
                None => {
                    self.clients[i].waiting = true;
                    return;
                }
            },
            ("signal", [sig]) => match parse_signal(sig) {
                None => refuse(format!("unknown signal {sig:?}")),
                Some(_) if self.exit.is_some() => refuse("the task has already exited".into()),
                Some(s) => match self.kill_group(s) {
                    Ok(()) => json!({ "ok": true }),
                    Err(e) => refuse(format!("cannot signal the task: {e}")),
                },
            },
            ("stop", [sig, timeout_ms]) => match (parse_signal(sig), timeout_ms.parse::<u64>()) {
                (None, _) => refuse(format!("unknown signal {sig:?}")),
                (_, Err(_)) => refuse(format!("bad timeout {timeout_ms:?}")),
                (Some(_), Ok(_)) if self.exit.is_some() => json!({ "ok": true }),
                (Some(s), Ok(ms)) => {
                    log!("stop: {sig}, SIGKILL after {ms} ms");
                    self.stop_requested = true;
                    let _ = self.kill_group(s);
                    let deadline = Instant::now() + Duration::from_millis(ms);
                    self.kill_deadline =
                        Some(self.kill_deadline.map_or(deadline, |d| d.min(deadline)));
                    json!({ "ok": true })
                }
            },
            ("inspect", []) => json!({
                "ok": true,
                "state": if self.exit.is_some() { "exited" } else { "running" },
                "task_pid": self.task_pid,
                "task_start_time": self.task_start_time,
                "started_at_unix_nanos": self.started_at,
                "exit": self.exit.as_ref().map(exit_json),
            }),
            ("stats", []) => match procfs::stats(self.task_pid) {
                Ok(mut s) if self.exit.is_none() => {
                    s.cgroup = self.isolated.as_ref().map(|i| i.cgroup.stats());
                    json!({ "ok": true, "stats": s })
                }
                Ok(_) => refuse("the task has exited".into()),
                Err(e) => refuse(format!("cannot read the task's statistics: {e}")),
            },
            _ => refuse(format!("unknown request {line:?}")),
        };
        queue(&mut self.clients[i], &reply);
    }
}

impl Shim {
    /// `exec <json>`: forks the single-threaded helper that enters the task's namespaces.
    /// The client's stdin, stdout and stderr came with the request (SCM_RIGHTS); the reply
    /// is the command's exit, sent when the helper is reaped.
    fn start_exec(&mut self, i: usize, json: &str) -> Result<(), String> {
        let Some(iso) = &self.isolated else {
            return Err("this task is not isolated; exec runs commands on the host".into());
        };
        if self.exit.is_some() {
            return Err("the task has exited".into());
        }
        let req: ExecRequest =
            serde_json::from_str(json).map_err(|e| format!("bad exec request: {e}"))?;
        if req.argv.is_empty() {
            return Err("exec needs a command".into());
        }
        let fds = std::mem::take(&mut self.clients[i].fds);
        if fds.len() != 3 {
            return Err(format!(
                "exec needs the caller's stdin, stdout and stderr as descriptors, got {}",
                fds.len()
            ));
        }
        let raw = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
        let procs = iso.cgroup.procs_files();
        // SAFETY: the shim is single-threaded; the child runs the helper and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("cannot fork the exec helper: {}", last_err()));
        }
        if pid == 0 {
            // SAFETY: freshly forked child of this single-threaded process.
            unsafe { enter::helper(self.task_pid, &procs, &self.spec, &req, raw) }
        }
        drop(fds);
        log!("exec {:?}: helper {pid}", req.argv);
        self.exec_sessions.push((pid, self.clients[i].id));
        Ok(())
    }
}

impl Shim {
    /// Kills the exec helpers of clients that went away: their callers are gone, and the
    /// command dies with its helper (PR_SET_PDEATHSIG).
    fn end_abandoned_execs(&mut self) {
        let gone: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.closed)
            .map(|c| c.id)
            .collect();
        for (pid, client) in &self.exec_sessions {
            if gone.contains(client) {
                log!("exec helper {pid}: its caller is gone; killing it");
                // SAFETY: kill(2) of our own child, not yet reaped (it is still listed).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
}

/// An isolated task's extras: its cgroup and the pipe on which init reports its status.
struct Isolated {
    cgroup: Cgroup,
    result: Option<OwnedFd>,
}

impl Isolated {
    /// The task's raw wait status, if init sent it.
    fn take_result(&mut self) -> Option<i32> {
        let fd = self.result.take()?;
        let mut buf = [0u8; 4];
        // SAFETY: a non-blocking read into a local buffer (init wrote before exiting).
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), 4) };
        (n == 4).then(|| i32::from_ne_bytes(buf))
    }

    /// Kills what is left in the cgroup and removes it.
    fn cleanup(&self) {
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
fn start_isolated(
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
    let argv = crate::shim::c_ptrs(&argv_c);
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
        if let Err(e) = std::fs::write(&f, pid.to_string()) {
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

/// How a process ended, from its wait status.
fn exit_of(status: i32) -> TaskExit {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        TaskExit {
            exit_code: 128 + sig,
            signal: sig,
            oom_killed: false,
            err: None,
        }
    } else {
        TaskExit {
            exit_code: libc::WEXITSTATUS(status),
            signal: 0,
            oom_killed: false,
            err: None,
        }
    }
}

/// Reads what the client sent, keeping descriptors passed along with it.
fn recv_with_fds(stream: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = c {
            for fd in received {
                // SAFETY: the kernel just installed this descriptor for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(msg.bytes)
}

fn refuse(msg: String) -> serde_json::Value {
    json!({ "ok": false, "error": msg })
}

fn queue(c: &mut Client, reply: &serde_json::Value) {
    c.wbuf.extend_from_slice(reply.to_string().as_bytes());
    c.wbuf.push(b'\n');
}
