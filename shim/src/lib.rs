//! The per-task shim: the process that parents a task, so the task outlives its plugin and
//! the agent.
//!
//! A driver calls [`launch`] (from `spawn_blocking`: it forks and waits). That runs
//! `<shim_exe> task-shim launch <state dir>`, which forks again and exits, so the shim is
//! re-parented away from the plugin; the shim calls `setsid()`, becomes a child subreaper,
//! forks the task (its own process group, signal mask and dispositions reset, only the
//! spec's environment) and reports back over a CLOEXEC pipe: its own pid and start time, the
//! task's, and whether exec succeeded.
//!
//! The shim then serves a line protocol on `<state dir>/shim.sock` ([`protocol`], spoken by
//! [`ShimClient`]),
//! writes the task's output to rotating log files, and when the task exits writes
//! `exit.json` durably before answering any `wait`, lingers briefly and exits.
//!
//! `<exe> task-shim ...` must be dispatched by the binary's synchronous `main` before any
//! thread or async runtime exists: call [`run`] there (`drover_plugin_sdk::main` does).
//!
//! This crate is the shim alone; drivers reach it through `drover_plugin_sdk::shim`, which
//! re-exports it with the driver-side task table (`ShimTasks`).
//!
//! State directory `<shims_root>/<shim id>/` (mode 0700): `spec.json`, `shim.sock`,
//! `exit.json`, `shim.log`.

mod client;
mod daemon;
pub mod isolate;
pub mod procfs;
pub mod protocol;
pub mod rotate;

use std::collections::BTreeMap;
use std::fs::DirBuilder;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

pub use client::{ExecSession, Recovered, ShimClient, read_exit_file, recover};
pub use procfs::TaskStats;
pub use protocol::ShimInspect;

use drover_plugin_abi::handshake::MAX_UNIX_SOCKET_PATH;

/// The argv\[1\] that selects the shim: `<exe> task-shim ...`.
pub const SUBCOMMAND: &str = "task-shim";

/// The newest [`LaunchSpec`] version this shim executes. Version 2 added
/// [`LaunchSpec::isolation`], version 3 [`LaunchSpec::network_ns`]; a spec is written with
/// the lowest version that holds what it asks (1 without either), so older shims still run
/// what they can and refuse what they would get wrong.
pub const LAUNCH_SPEC_VERSION: u32 = 3;
/// The version of [`ShimHandle`]'s encoding.
pub const SHIM_HANDLE_VERSION: u32 = 1;

/// The file names inside a shim's state directory.
pub const SOCKET_FILE: &str = "shim.sock";
pub const EXIT_FILE: &str = "exit.json";
pub const SPEC_FILE: &str = "spec.json";
pub const LOG_FILE: &str = "shim.log";

/// The wall clock as Unix nanoseconds (task start and exit times).
pub use drover_clock::now_nanos;

/// How long [`launch`] waits for the shim to report.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Log rotation for the task's stdout and stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRotation {
    /// Files kept per stream; 0 means 10.
    pub max_files: u32,
    /// Size of one file in MiB; 0 means 10.
    pub max_file_size_mb: u64,
}

/// What the shim runs. Serialized into the state directory; versioned so that an upgraded
/// plugin can still read the specs of older shims (and an older shim refuses a newer spec).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LaunchSpec {
    /// [`LAUNCH_SPEC_VERSION`].
    pub version: u32,
    /// The task's id, for the shim's own log.
    pub task_id: String,
    /// The executable: a path, or a name looked up in the task environment's `PATH`.
    pub command: String,
    pub args: Vec<String>,
    /// The task's complete environment: it gets this and nothing else.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Run as this user (its uid, primary gid and supplementary groups), else as the shim's.
    #[serde(default)]
    pub user: Option<String>,
    /// Log bases: output goes to `<base>.0`, `<base>.1` ...; `None` discards the stream.
    pub stdout_path: Option<PathBuf>,
    pub stderr_path: Option<PathBuf>,
    #[serde(default)]
    pub logs: LogRotation,
    /// The directory the log paths are opened beneath (the allocation directory): below it,
    /// no link is followed, so a task that can write `alloc/logs` cannot lead the shim
    /// (root) elsewhere. `None` (older specs) opens the logs' own directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_root: Option<PathBuf>,
    /// Namespaces, a root of bind mounts, cgroups and dropped capabilities (the `exec`
    /// driver); `None` runs the task on the host as it is (raw_exec). Version 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<isolate::Isolation>,
    /// The allocation's network namespace an unisolated task joins (a raw_exec task of a
    /// bridge or CNI group: its child `setns`es between fork and exec); an isolated task's
    /// init joins [`isolate::Isolation::network_ns`] instead. Version 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_ns: Option<PathBuf>,
}

impl LaunchSpec {
    /// A spec for `command args...` with the given environment, in `cwd`.
    pub fn new(task_id: &str, command: &str, args: Vec<String>, cwd: PathBuf) -> Self {
        Self {
            version: LAUNCH_SPEC_VERSION,
            task_id: task_id.to_string(),
            command: command.to_string(),
            args,
            env: BTreeMap::new(),
            cwd,
            user: None,
            stdout_path: None,
            stderr_path: None,
            logs: LogRotation::default(),
            log_root: None,
            isolation: None,
            network_ns: None,
        }
    }

    /// Sends the task's output where the host asked (`stdout_path`/`stderr_path`, their
    /// rotation), opened beneath the allocation directory (the parent of `alloc_dir`).
    pub fn log_to(&mut self, task: &drover_proto::driver::TaskConfig) {
        let path = |p: &str| Some(PathBuf::from(p)).filter(|p| !p.as_os_str().is_empty());
        self.stdout_path = path(&task.stdout_path);
        self.stderr_path = path(&task.stderr_path);
        if let Some(logs) = &task.logs {
            self.logs = LogRotation {
                max_files: logs.max_files,
                max_file_size_mb: logs.max_file_size_mb,
            };
        }
        self.log_root = Path::new(&task.alloc_dir)
            .parent()
            .filter(|p| !task.alloc_dir.is_empty() && !p.as_os_str().is_empty())
            .map(Path::to_path_buf);
    }
}

/// Everything needed to find a shim again: becomes `TaskHandle.driver_state`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShimHandle {
    /// [`SHIM_HANDLE_VERSION`].
    pub version: u32,
    /// Unique per task start; also the state directory's name.
    pub shim_id: String,
    pub shim_dir: PathBuf,
    pub shim_pid: i32,
    /// Clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub shim_start_time: u64,
    pub task_pid: i32,
    pub task_start_time: u64,
    /// Wall clock when the task was forked.
    pub task_started_at_unix_nanos: i64,
    /// `/proc/sys/kernel/random/boot_id` when the shim started.
    pub boot_id: String,
}

impl ShimHandle {
    /// The shim's socket.
    pub fn socket_path(&self) -> PathBuf {
        self.shim_dir.join(SOCKET_FILE)
    }
}

/// How a task ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskExit {
    /// The exit status; 128 + signal when killed by a signal (as shells report it).
    pub exit_code: i32,
    /// The signal that killed the task, 0 when it exited.
    pub signal: i32,
    pub oom_killed: bool,
    /// Set when the task could not be followed to its end (its shim is gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub err: Option<String>,
}

impl TaskExit {
    /// A lost task.
    pub fn lost(why: impl Into<String>) -> Self {
        Self {
            exit_code: 0,
            signal: 0,
            oom_killed: false,
            err: Some(why.into()),
        }
    }
}

/// Errors of the shim and its clients.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(
        "the shim socket path {path} is {len} bytes, longer than a Unix socket allows ({MAX_UNIX_SOCKET_PATH}): use a shorter data_dir"
    )]
    PathTooLong { path: PathBuf, len: usize },
    /// The task could not be started (exec failed, user unknown ...); the message says why.
    #[error("{0}")]
    Launch(String),
    #[error("the task shim sent something unexpected: {0}")]
    Protocol(String),
    #[error("the socket {path} belongs to shim {got}, not {expected}")]
    WrongShim {
        path: PathBuf,
        expected: String,
        got: String,
    },
    /// The shim refused a request (unknown signal, task already exited ...).
    #[error("{0}")]
    Refused(String),
    /// The shim is gone and left no exit record.
    #[error("{0}")]
    Lost(String),
}

impl ShimError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

/// The synchronous entry for `<exe> task-shim ARGS...` (`args` excludes `task-shim`).
/// Returns the process exit status. Call it before any thread or runtime exists.
pub fn run(args: &[String]) -> i32 {
    match args.first().map(String::as_str) {
        Some("launch") if args.len() == 2 => daemon::launch_main(Path::new(&args[1])),
        Some("init") if args.len() == 2 => isolate::init::main(Path::new(&args[1])),
        _ => {
            eprintln!(
                "usage: {SUBCOMMAND} launch <state dir>\n\
                 The task shim is started by Drover task drivers, not by hand."
            );
            2
        }
    }
}

/// If this process was started as `<exe> task-shim ...`, runs the shim and exits the process
/// with its status; otherwise returns at once. Call it first thing in a synchronous `main`,
/// before any thread or async runtime exists.
pub fn exit_if_invoked() {
    let mut args = std::env::args();
    if args.nth(1).as_deref() == Some(SUBCOMMAND) {
        let rest: Vec<String> = args.collect();
        std::process::exit(run(&rest));
    }
}

/// The report the shim sends to its launcher over the CLOEXEC pipe.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct LaunchReport {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    shim_pid: i32,
    #[serde(default)]
    shim_start_time: u64,
    #[serde(default)]
    task_pid: i32,
    #[serde(default)]
    task_start_time: u64,
    #[serde(default)]
    task_started_at_unix_nanos: i64,
}

/// Starts `spec` under a new shim whose state lives in `<shims_root>/<new shim id>/`.
/// `shim_exe` is a binary whose `main` dispatches `task-shim` to [`run`] (usually
/// `std::env::current_exe()`). Blocking: call it from `spawn_blocking`.
pub fn launch(
    spec: &LaunchSpec,
    shim_exe: &Path,
    shims_root: &Path,
) -> Result<ShimHandle, ShimError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(shims_root)
        .map_err(|e| ShimError::io(format!("cannot create {}", shims_root.display()), e))?;
    std::fs::set_permissions(shims_root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ShimError::io(format!("cannot restrict {}", shims_root.display()), e))?;

    let (id, dir) = create_state_dir(shims_root)?;
    let result = launch_in(spec, shim_exe, &id, &dir);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

/// Mounts a tmpfs over `shims_root` (the agent does, at start, where it may): shim state
/// (spec, socket, shim log, exit file) then never reaches the disk, and lasts exactly as
/// long as the tasks can — until the node reboots (the handle's boot id tells a reattach
/// after a reboot that its shim is gone). Where no tmpfs can be mounted it stays on disk.
pub fn state_in_memory(shims_root: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = |p: &Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let Some(parent) = shims_root.parent() else {
        return;
    };
    if DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(shims_root)
        .is_err()
        || dev(shims_root) != dev(parent)
    {
        return; // cannot create it, or already mounted (an agent restart)
    }
    let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
    if let Err(e) = nix::mount::mount(
        Some("tmpfs"),
        shims_root,
        Some("tmpfs"),
        flags,
        Some("size=64m,mode=0700"),
    ) {
        tracing::debug!(root = %shims_root.display(), error = %e, "shim state stays on disk: no tmpfs");
    }
}

/// A short random hex string: a shim's id (rand's thread generator, seeded by the OS).
fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

fn create_state_dir(root: &Path) -> Result<(String, PathBuf), ShimError> {
    for _ in 0..16 {
        let id = random_hex(6);
        let dir = root.join(&id);
        let sock = dir.join(SOCKET_FILE);
        let len = sock.as_os_str().len();
        if len > MAX_UNIX_SOCKET_PATH {
            return Err(ShimError::PathTooLong { path: sock, len });
        }
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(ShimError::io(format!("cannot create {}", dir.display()), e)),
        }
    }
    Err(ShimError::Launch(format!(
        "cannot find a free shim id under {}",
        root.display()
    )))
}

fn launch_in(
    spec: &LaunchSpec,
    shim_exe: &Path,
    id: &str,
    dir: &Path,
) -> Result<ShimHandle, ShimError> {
    let spec_path = dir.join(SPEC_FILE);
    let data = spec_bytes(spec).map_err(|e| ShimError::Launch(e.to_string()))?;
    // Not fsynced: the spec only has to reach the shim (and init), which read it from the
    // page cache at once; after a crash of the node there is no shim left to read it. The
    // two fsyncs cost ~20 ms per start on a virtual disk.
    std::fs::write(&spec_path, &data)
        .map_err(|e| ShimError::io(format!("cannot write {}", spec_path.display()), e))?;

    let (read_end, write_end) =
        cloexec_pipe().map_err(|e| ShimError::io("cannot create a pipe", e))?;
    let write_fd = write_end.as_raw_fd();
    let mut cmd = Command::new(shim_exe);
    cmd.arg(SUBCOMMAND)
        .arg("launch")
        .arg(dir)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if write_fd == daemon::REPORT_FD {
                let flags = libc::fcntl(write_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(write_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(write_fd, daemon::REPORT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        ShimError::io(
            format!("cannot run the task shim {}", shim_exe.display()),
            e,
        )
    })?;
    drop(write_end);
    let status = child
        .wait()
        .map_err(|e| ShimError::io("cannot wait for the task shim's launcher", e))?;

    let report = read_report(read_end, LAUNCH_TIMEOUT).map_err(|e| {
        ShimError::Launch(format!(
            "the task shim did not report ({e}; its launcher exited with {status}); see {}",
            dir.join(LOG_FILE).display()
        ))
    })?;
    let report: LaunchReport = serde_json::from_slice(&report).map_err(|e| {
        ShimError::Protocol(format!(
            "bad launch report {:?}: {e}",
            String::from_utf8_lossy(&report)
        ))
    })?;
    if !report.ok {
        return Err(ShimError::Launch(
            report
                .error
                .unwrap_or_else(|| "the task could not be started".into()),
        ));
    }
    let boot_id = procfs::boot_id().map_err(|e| ShimError::io("cannot read the boot id", e))?;
    Ok(ShimHandle {
        version: SHIM_HANDLE_VERSION,
        shim_id: id.to_string(),
        shim_dir: dir.to_path_buf(),
        shim_pid: report.shim_pid,
        shim_start_time: report.shim_start_time,
        task_pid: report.task_pid,
        task_start_time: report.task_start_time,
        task_started_at_unix_nanos: report.task_started_at_unix_nanos,
        boot_id,
    })
}

/// The spec as written for the shim: the lowest version that holds it (3 with a network
/// namespace to join, 2 with isolation, else 1), so an older shim still runs what it can and
/// refuses a task it would run on the host's network.
fn spec_bytes(spec: &LaunchSpec) -> Result<Vec<u8>, serde_json::Error> {
    let mut spec = spec.clone();
    spec.version = if spec.network_ns.is_some() {
        3
    } else if spec.isolation.is_some() {
        2
    } else {
        1
    };
    serde_json::to_vec(&spec)
}

/// A pipe whose both ends are close-on-exec.
pub(crate) fn cloexec_pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 returned two fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads until end of file, or fails after `timeout`.
fn read_report(fd: OwnedFd, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = std::time::Instant::now() + timeout;
    let mut file = std::fs::File::from(fd);
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "timed out",
            ));
        }
        let mut pfd = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match file.read(&mut buf) {
            Ok(0) if out.is_empty() => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the shim exited without a word",
                ));
            }
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Writes `data` to `path` atomically and durably (a private temporary file, fsync, rename,
/// fsync the directory).
pub(crate) use drover_durable::write_atomic;

/// Parses a signal name (`SIGTERM`, `TERM`, `term`) or number (`15`).
pub fn parse_signal(s: &str) -> Option<i32> {
    use std::str::FromStr;
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .ok()
        .map(|sig| sig as i32)
}

/// A NULL-terminated array of pointers into `strings`, as execve takes its argv and envp
/// (valid while `strings` lives).
pub(crate) fn c_ptrs(strings: &[std::ffi::CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|c| c.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_signals() {
        assert_eq!(parse_signal("SIGTERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("term"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGHUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("0"), None);
    }

    #[test]
    fn spec_round_trips_and_defaults() {
        let spec = LaunchSpec::new("t", "/bin/true", vec![], "/".into());
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(serde_json::from_str::<LaunchSpec>(&json).unwrap(), spec);
        let minimal = r#"{"version":1,"task_id":"t","command":"x","args":[],"env":{},"cwd":"/",
            "stdout_path":null,"stderr_path":null}"#;
        let s: LaunchSpec = serde_json::from_str(minimal).unwrap();
        assert_eq!(s.user, None);
        assert_eq!(s.logs, LogRotation::default());
    }

    #[test]
    fn specs_without_isolation_stay_version_1() {
        let mut spec = LaunchSpec::new("t", "/bin/true", vec![], "/".into());
        let v: serde_json::Value = serde_json::from_slice(&spec_bytes(&spec).unwrap()).unwrap();
        assert_eq!(v["version"], 1);
        assert!(v.get("isolation").is_none(), "{v}");
        spec.isolation = Some(isolate::Isolation::default());
        let v: serde_json::Value = serde_json::from_slice(&spec_bytes(&spec).unwrap()).unwrap();
        assert_eq!(v["version"], 2);
        let back: LaunchSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back.isolation, Some(isolate::Isolation::default()));
    }

    #[test]
    fn specs_with_a_network_namespace_are_version_3() {
        let mut spec = LaunchSpec::new("t", "/bin/true", vec![], "/".into());
        spec.network_ns = Some("/var/run/netns/a1".into());
        let v: serde_json::Value = serde_json::from_slice(&spec_bytes(&spec).unwrap()).unwrap();
        assert_eq!(v["version"], 3);
        assert_eq!(v["network_ns"], "/var/run/netns/a1");
        let back: LaunchSpec = serde_json::from_value(v).unwrap();
        assert_eq!(back.network_ns, spec.network_ns);
    }

    #[test]
    fn durable_write_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("exit.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(!dir.path().join("exit.json.tmp").exists());
    }
}
