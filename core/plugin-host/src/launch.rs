//! Launching one plugin process: the handshake, the gRPC connection, log forwarding and the
//! supervisor that notices its exit.
//!
//! Two stages: [`connect_plugin`] is the go-plugin part any gRPC plugin passes (spawn, the
//! handshake line, dialling the socket, `grpc.health.v1` service "plugin" SERVING);
//! `launch` then configures it through Drover's `BasePlugin` service.

use std::collections::VecDeque;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drover_plugin_abi::handshake::{
    ENV_PROTOCOL_VERSIONS, ENV_STDIN_LIFELINE, ENV_UNIX_SOCKET_DIR, HandshakeLine,
    MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE, MAX_UNIX_SOCKET_PATH,
};
use drover_proto::base::base_plugin_client::BasePluginClient;
use drover_proto::base::{
    AgentConfig, ConfigSchemaRequest, PluginInfoRequest, PluginInfoResponse, SetConfigRequest,
};
use drover_proto::driver::driver_client::DriverClient;
use drover_proto::go_plugin::Empty;
use drover_proto::go_plugin::grpc_controller_client::GrpcControllerClient;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tonic::transport::{Channel, Endpoint};

use crate::{HostConfig, HostError, PluginLaunch, schema};

/// The driver.proto versions this host speaks.
pub(crate) const PROTOCOL_VERSIONS: &[u32] = &[1];
/// Lines of a plugin's stderr kept for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// How long dialing the socket and the health check may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest handshake line accepted (go-plugin's is well under 200 bytes).
pub const MAX_HANDSHAKE_LINE: usize = 4096;

/// How long a plugin that failed after its handshake gets to exit after Shutdown.
const FAILED_STOP_GRACE: Duration = Duration::from_secs(1);
/// The gRPC package of Drover's base plugin service, named in errors.
const BASE_SERVICE: &str = "drover.plugin.base.v1";

type Tail = Arc<std::sync::Mutex<VecDeque<String>>>;

/// The process side of a launched plugin: its pid, its exit, its stdin lifeline.
#[derive(Clone)]
struct Process {
    name: String,
    pid: u32,
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: mpsc::Sender<()>,
    stdin: Arc<std::sync::Mutex<Option<ChildStdin>>>,
}

impl Process {
    fn is_alive(&self) -> bool {
        if self.exit.borrow().is_some() {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => !process_is_exiting(&stat),
            // Gone from /proc: reaped, the supervisor is about to publish it.
            Err(_) => false,
        }
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.exit.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok()
    }

    /// GRPCController.Shutdown (a go-plugin plugin stops its server inside the handler, so
    /// `Unavailable` counts as success), then closes stdin, then kills it after `grace`.
    async fn stop(&self, channel: &Channel, grace: Duration) {
        if self.is_alive() {
            let mut ctl = GrpcControllerClient::new(channel.clone());
            match tokio::time::timeout(Duration::from_secs(2), ctl.shutdown(Empty {})).await {
                Ok(Ok(_)) => {}
                // "transport is closing": the plugin went away while answering. Success.
                Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {}
                Ok(Err(status)) => {
                    tracing::debug!(plugin = %self.name, %status, "Shutdown failed; closing stdin instead")
                }
                Err(_) => tracing::debug!(plugin = %self.name, "Shutdown timed out"),
            }
        }
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        if !self.wait_exit(grace).await {
            tracing::warn!(plugin = %self.name, "plugin did not exit within {grace:?}; killing it");
            let _ = self.kill.send(()).await;
            self.wait_exit(Duration::from_secs(5)).await;
        }
    }
}

/// How long each step of a launch took, from the spawn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LaunchTimings {
    /// `spawn` returned.
    pub spawned: Duration,
    /// The handshake line was read and checked.
    pub handshake: Duration,
    /// The socket was dialled (HTTP/2 connection up).
    pub dialled: Duration,
    /// `grpc.health.v1` answered SERVING for service "plugin": the plugin is ready.
    pub ready: Duration,
}

/// A plugin process past the go-plugin handshake and the health check, not yet configured:
/// the stage every go-plugin gRPC plugin reaches, whether or not it serves Drover's services.
/// [`PluginHost`](crate::PluginHost) goes on to configure it; tests and benchmarks use it
/// directly. Stop it with [`ConnectedPlugin::stop`]; when dropped, the plugin exits once it
/// notices its stdin closed (Drover plugins do; others keep running until killed).
pub struct ConnectedPlugin {
    pub name: String,
    pub path: PathBuf,
    pub pid: u32,
    /// The plugin's handshake line.
    pub handshake: HandshakeLine,
    /// The gRPC channel over the plugin's socket.
    pub channel: Channel,
    pub timings: LaunchTimings,
    started: Instant,
    process: Process,
    tail: Tail,
}

impl ConnectedPlugin {
    /// Whether the process still runs.
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }

    /// The last lines the plugin wrote to stderr.
    pub fn stderr_tail(&self) -> String {
        tail_text(&self.tail)
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.process.exit.borrow()
    }

    /// Stops the plugin: GRPCController.Shutdown, stdin closed, SIGKILL after `grace`.
    /// Returns once the process has exited (or could not be waited for).
    pub async fn stop(&self, grace: Duration) {
        self.process.stop(&self.channel, grace).await;
    }
}

/// A launched, connected plugin. Cheap to clone; the process stays up while any clone (or
/// the host) holds its stdin pipe.
#[derive(Clone)]
pub struct RunningPlugin {
    pub name: String,
    pub path: PathBuf,
    pub pid: u32,
    pub info: PluginInfoResponse,
    /// The keys its `config` block may hold, as it reported them.
    pub schema: Vec<drover_proto::base::ConfigField>,
    pub(crate) started: Instant,
    pub(crate) channel: Channel,
    pub(crate) driver: DriverClient<Channel>,
    pub(crate) base: BasePluginClient<Channel>,
    /// What the driver said it can do, asked once per launch.
    pub(crate) capabilities: Arc<std::sync::OnceLock<drover_proto::driver::CapabilitiesResponse>>,
    process: Process,
}

impl RunningPlugin {
    /// Whether the process still runs. A process that died but is not reaped yet (a
    /// zombie: the supervisor is about to notice) counts as dead, so a caller whose RPC just
    /// failed gets a relaunched plugin, not the dead one. The pid cannot be reused before the
    /// supervisor reaps it.
    pub fn is_alive(&self) -> bool {
        self.process.is_alive()
    }

    /// One health check (`grpc.health.v1`, service "plugin"), answered within 5 s.
    pub(crate) async fn ping(&self) -> Result<(), String> {
        let mut health = tonic_health::pb::health_client::HealthClient::new(self.channel.clone());
        let req = tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        };
        match tokio::time::timeout(Duration::from_secs(5), health.check(req)).await {
            Err(_) => Err("no answer within 5s".into()),
            Ok(Err(status)) => Err(status.message().to_string()),
            Ok(Ok(r)) => {
                let status = r.into_inner().status;
                if status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    Ok(())
                } else {
                    Err(format!(
                        "service \"plugin\" is not SERVING (status {status})"
                    ))
                }
            }
        }
    }

    /// Kills the process (a hung plugin); supervision relaunches it.
    pub(crate) async fn kill(&self) {
        let _ = self.process.kill.send(()).await;
        self.process.wait_exit(Duration::from_secs(5)).await;
    }

    /// Waits (briefly) until the supervisor has reaped a dead process.
    pub(crate) async fn reaped(&self) {
        self.process.wait_exit(Duration::from_secs(2)).await;
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self) -> Option<String> {
        self.process.exit.borrow().map(|s| s.to_string())
    }

    /// Asks the plugin to shut down, closes its stdin, and kills it after `grace`.
    pub(crate) async fn stop(&self, grace: Duration) {
        self.process.stop(&self.channel, grace).await;
    }
}

/// Whether a `/proc/<pid>/stat` line describes a dead or dying process: a zombie, or one
/// with `PF_EXITING` set. The kernel closes a dying process's sockets before it becomes a
/// zombie, so a client can see its RPC fail while the state letter still says running.
fn process_is_exiting(stat: &str) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return false;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().copied().unwrap_or_default();
    // Field 9 (flags) is at index 6 after the command.
    let flags: u64 = fields
        .get(6)
        .and_then(|f| f.parse().ok())
        .unwrap_or_default();
    state.starts_with('Z') || state.starts_with('X') || flags & PF_EXITING != 0
}

fn problem(launch: &PluginLaunch, problem: impl Into<String>, tail: &Tail) -> HostError {
    HostError::Launch {
        name: launch.name.clone(),
        path: launch.command.clone(),
        problem: problem.into(),
        stderr_tail: tail_text(tail),
    }
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Room the plugin needs after its directory: `/plugin-<pid>-<8 hex>.sock`.
const SOCKET_NAME_ROOM: usize = 32;

/// A fresh private (0700) directory for the plugin's socket and temporary files.
fn private_dir(config: &HostConfig, name: &str) -> std::io::Result<PathBuf> {
    let short: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(16)
        .collect();
    let leaf = format!("{short}-{}", random_hex(4));
    let candidates = [
        config.data_dir.join("plugins"),
        PathBuf::from("/run/drover-plugins"),
        std::env::temp_dir().join("drover-plugins"),
    ];
    let mut last_err = None;
    for base in candidates {
        let dir = base.join(&leaf);
        if dir.as_os_str().len() + SOCKET_NAME_ROOM > MAX_UNIX_SOCKET_PATH {
            continue;
        }
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&base)
            .and_then(|()| std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)))
            .and_then(|()| std::fs::DirBuilder::new().mode(0o700).create(&dir));
        match made {
            Ok(()) => return Ok(dir),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        std::io::Error::other("no directory short enough for a Unix socket path")
    }))
}

/// Forwards a plugin's stderr into tracing, keeping the last lines for error messages.
fn forward_stderr<R: AsyncRead + Unpin + Send + 'static>(
    name: String,
    stderr: R,
    tail: Tail,
    eof: Arc<AtomicBool>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
            if line.is_empty() {
                continue;
            }
            forward_line(&name, &line);
            if let Ok(mut t) = tail.lock() {
                if t.len() == STDERR_TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
        eof.store(true, Ordering::SeqCst);
    });
}

/// One stderr line: hclog JSON becomes an event at its level, anything else an info event.
pub(crate) fn forward_line(plugin: &str, line: &str) {
    let parsed = line
        .starts_with('{')
        .then(|| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(line).ok())
        .flatten()
        .filter(|m| m.contains_key("@message") || m.contains_key("@level"));
    let Some(mut obj) = parsed else {
        tracing::info!(plugin, "{line}");
        return;
    };
    let text = |v: Option<serde_json::Value>| match v {
        Some(serde_json::Value::String(s)) => s,
        Some(other) => other.to_string(),
        None => String::new(),
    };
    let level = text(obj.remove("@level"));
    let message = text(obj.remove("@message"));
    let module = text(obj.remove("@module"));
    obj.remove("@timestamp");
    obj.remove("@caller");
    let fields = obj
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    match level.as_str() {
        "trace" => tracing::trace!(plugin, module, fields, "{message}"),
        "debug" => tracing::debug!(plugin, module, fields, "{message}"),
        "warn" | "warning" => tracing::warn!(plugin, module, fields, "{message}"),
        "error" => tracing::error!(plugin, module, fields, "{message}"),
        _ => tracing::info!(plugin, module, fields, "{message}"),
    }
}

fn tail_text(tail: &Tail) -> String {
    tail.lock()
        .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
        .unwrap_or_default()
}

enum Handshake {
    Line(String),
    Eof,
    Exited(std::io::Result<ExitStatus>),
    Timeout,
    /// A first line longer than [`MAX_HANDSHAKE_LINE`].
    TooLong,
}

async fn kill_and_reap(child: &mut Child) {
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// Launches `launch`, completes the handshake, connects and configures it.
pub(crate) async fn launch(
    config: &HostConfig,
    launch: &PluginLaunch,
) -> Result<RunningPlugin, HostError> {
    let connected = connect_plugin(config, launch).await?;
    match configure(launch, &connected, config).await {
        Ok((info, schema)) => {
            let running = RunningPlugin {
                name: launch.name.clone(),
                path: launch.command.clone(),
                pid: connected.pid,
                info,
                schema,
                started: connected.started,
                driver: DriverClient::new(connected.channel.clone()),
                base: BasePluginClient::new(connected.channel.clone()),
                channel: connected.channel.clone(),
                capabilities: Default::default(),
                process: connected.process.clone(),
            };
            tracing::info!(
                plugin = %running.name,
                pid = running.pid,
                version = %running.info.version,
                ready_us = connected.timings.ready.as_micros() as u64,
                "plugin launched"
            );
            Ok(running)
        }
        Err(e) => {
            // Politely: a go-plugin plugin of another program stops on Shutdown too.
            connected.stop(FAILED_STOP_GRACE).await;
            Err(e)
        }
    }
}

/// Starts `launch`'s command as a go-plugin gRPC plugin: spawns it with the magic cookie,
/// `PLUGIN_PROTOCOL_VERSIONS`, a fresh private (0700) directory as `PLUGIN_UNIX_SOCKET_DIR`
/// and `TMPDIR`, and the stdin lifeline; reads and checks its handshake line; dials its Unix
/// socket; and checks that `grpc.health.v1` reports service "plugin" SERVING. Its stderr is
/// forwarded into `tracing` (hclog JSON lines at their level) from the start.
///
/// Errors name the plugin and its file and quote the end of its stderr.
pub async fn connect_plugin(
    config: &HostConfig,
    launch: &PluginLaunch,
) -> Result<ConnectedPlugin, HostError> {
    let tail: Tail = Default::default();
    let dir = private_dir(config, &launch.name).map_err(|e| {
        problem(
            launch,
            format!("cannot create a private directory for its socket: {e}"),
            &tail,
        )
    })?;
    let result = connect_in(config, launch, &dir, tail).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn connect_in(
    config: &HostConfig,
    launch: &PluginLaunch,
    dir: &Path,
    tail: Tail,
) -> Result<ConnectedPlugin, HostError> {
    let started = Instant::now();
    let mut child = spawn_retrying_busy(launch, dir)
        .await
        .map_err(|e| problem(launch, format!("cannot start it: {e}"), &tail))?;
    let mut timings = LaunchTimings {
        spawned: started.elapsed(),
        ..LaunchTimings::default()
    };
    let pid = child.id().unwrap_or_default();
    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr_eof = Arc::new(AtomicBool::new(false));
    if let Some(stderr) = child.stderr.take() {
        forward_stderr(
            launch.name.clone(),
            stderr,
            tail.clone(),
            stderr_eof.clone(),
        );
    }
    let Some(stdout) = stdout else {
        kill_and_reap(&mut child).await;
        return Err(problem(launch, "no stdout pipe", &tail));
    };
    let mut stdout = BufReader::new(stdout);
    let outcome = await_handshake_line(config, &mut child, &mut stdout).await;
    let handshake = match check_handshake(config, &mut child, outcome).await {
        Ok(h) => h,
        Err(why) => {
            // Give the stderr reader a moment to collect what a dying plugin said.
            for _ in 0..50 {
                if stderr_eof.load(Ordering::SeqCst) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return Err(problem(launch, why, &tail));
        }
    };
    timings.handshake = started.elapsed();
    tracing::debug!(plugin = %launch.name, pid, line = %handshake, "plugin handshake");
    log_stdout(launch.name.clone(), stdout);
    let process = supervise(launch.name.clone(), child, pid, stdin, dir.to_path_buf());

    match dial_and_check(launch, &handshake, &tail, started, &mut timings).await {
        Ok(channel) => Ok(ConnectedPlugin {
            name: launch.name.clone(),
            path: launch.command.clone(),
            pid,
            handshake,
            channel,
            timings,
            started,
            process,
            tail,
        }),
        Err(e) => {
            let _ = process.kill.send(()).await;
            process.wait_exit(Duration::from_secs(5)).await;
            Err(e)
        }
    }
}

/// Starts the plugin binary with the go-plugin handshake's environment.
/// How often a plugin file still open for writing somewhere ("Text file busy") is tried
/// again: a file just copied into plugin_dir can be held open for an instant by a process
/// that forked while the copy's descriptor was open.
const BUSY_RETRIES: u32 = 10;

/// [`spawn_plugin`], tried again a few times (with a growing pause) while the file is busy.
async fn spawn_retrying_busy(launch: &PluginLaunch, dir: &Path) -> std::io::Result<Child> {
    let mut tries = 0;
    loop {
        match spawn_plugin(launch, dir) {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < BUSY_RETRIES => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
            }
            r => return r,
        }
    }
}

fn spawn_plugin(launch: &PluginLaunch, dir: &Path) -> std::io::Result<Child> {
    let offered = PROTOCOL_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Command::new(&launch.command)
        .args(&launch.args)
        .env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        .env(ENV_PROTOCOL_VERSIONS, offered)
        .env(ENV_UNIX_SOCKET_DIR, dir)
        .env("TMPDIR", dir)
        .env(ENV_STDIN_LIFELINE, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(false)
        .spawn()
}

/// The plugin's first stdout line, or how it failed to print one.
async fn await_handshake_line(
    config: &HostConfig,
    child: &mut Child,
    stdout: &mut BufReader<tokio::process::ChildStdout>,
) -> Handshake {
    let mut line = String::new();
    // At most MAX_HANDSHAKE_LINE bytes: a plugin cannot make the host buffer more.
    let mut bounded = tokio::io::AsyncReadExt::take(stdout, MAX_HANDSHAKE_LINE as u64 + 1);
    tokio::select! {
        r = bounded.read_line(&mut line) => match r {
            Ok(0) | Err(_) => Handshake::Eof,
            Ok(_) if line.len() > MAX_HANDSHAKE_LINE => Handshake::TooLong,
            Ok(_) => Handshake::Line(line),
        },
        status = child.wait() => Handshake::Exited(status),
        () = tokio::time::sleep(config.handshake_timeout) => Handshake::Timeout,
    }
}

/// Parses and checks the handshake line; on any failure the plugin is reaped (killed if it
/// still runs) and the answer says what went wrong.
async fn check_handshake(
    config: &HostConfig,
    child: &mut Child,
    outcome: Handshake,
) -> Result<HandshakeLine, String> {
    let line = match outcome {
        Handshake::Line(line) => line,
        Handshake::Eof | Handshake::Exited(_) => {
            let status = match outcome {
                Handshake::Exited(s) => s,
                _ => match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        kill_and_reap(child).await;
                        Err(std::io::Error::other("it closed its stdout"))
                    }
                },
            };
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(format!("exited before completing the handshake ({how})"));
        }
        Handshake::TooLong => {
            kill_and_reap(child).await;
            return Err(format!(
                "bad handshake: its first line is longer than {MAX_HANDSHAKE_LINE} bytes (is it a Drover or go-plugin plugin?)"
            ));
        }
        Handshake::Timeout => {
            kill_and_reap(child).await;
            return Err(format!(
                "did not print its handshake line within {:?} (is it a Drover or go-plugin plugin?)",
                config.handshake_timeout
            ));
        }
    };
    match HandshakeLine::parse(&line).and_then(|h| h.validate(PROTOCOL_VERSIONS).map(|()| h)) {
        Ok(h) => Ok(h),
        Err(e) => {
            kill_and_reap(child).await;
            Err(format!("bad handshake: {e}"))
        }
    }
}

/// Logs anything else the plugin prints on stdout.
fn log_stdout(name: String, mut stdout: BufReader<tokio::process::ChildStdout>) {
    tokio::spawn(async move {
        let mut line = String::new();
        while let Ok(n) = stdout.read_line(&mut line).await {
            if n == 0 {
                break;
            }
            tracing::debug!(plugin = %name, "stdout: {}", line.trim_end());
            line.clear();
        }
    });
}

/// Hands the child to a supervisor task, which reaps it (or kills it when asked), publishes
/// its exit and removes its directory.
fn supervise(
    name: String,
    mut child: Child,
    pid: u32,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
) -> Process {
    let (exit_tx, exit_rx) = watch::channel(None);
    let (kill_tx, mut kill_rx) = mpsc::channel::<()>(1);
    let sup_name = name.clone();
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = kill_rx.recv() => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        match &status {
            Ok(s) => tracing::info!(plugin = %sup_name, status = %s, "plugin process exited"),
            Err(e) => {
                tracing::warn!(plugin = %sup_name, error = %e, "cannot wait for the plugin process")
            }
        }
        let status = status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
        let _ = exit_tx.send(Some(status));
        let _ = std::fs::remove_dir_all(&dir);
    });
    Process {
        name,
        pid,
        exit: exit_rx,
        kill: kill_tx,
        stdin: Arc::new(std::sync::Mutex::new(stdin)),
    }
}

/// Dials the plugin's socket and checks that `grpc.health.v1` reports "plugin" SERVING.
async fn dial_and_check(
    launch: &PluginLaunch,
    handshake: &HandshakeLine,
    tail: &Tail,
    started: Instant,
    timings: &mut LaunchTimings,
) -> Result<Channel, HostError> {
    let path = PathBuf::from(&handshake.address);
    let connector_path = path.clone();
    let channel = tokio::time::timeout(
        CONNECT_TIMEOUT,
        Endpoint::from_static("http://plugin.invalid")
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let path = connector_path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            })),
    )
    .await
    .map_err(|_| {
        problem(
            launch,
            format!("timed out connecting to {}", path.display()),
            tail,
        )
    })?
    .map_err(|e| {
        problem(
            launch,
            format!("cannot connect to {}: {e}", path.display()),
            tail,
        )
    })?;
    timings.dialled = started.elapsed();

    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = tokio::time::timeout(
        CONNECT_TIMEOUT,
        health.check(tonic_health::pb::HealthCheckRequest {
            service: "plugin".into(),
        }),
    )
    .await
    .map_err(|_| problem(launch, "the health check timed out", tail))?
    .map_err(|e| {
        problem(
            launch,
            format!(
                "the health check (grpc.health.v1, service \"plugin\") failed: {}",
                e.message()
            ),
            tail,
        )
    })?
    .into_inner()
    .status;
    if status != tonic_health::pb::health_check_response::ServingStatus::Serving as i32 {
        return Err(problem(
            launch,
            format!("its service \"plugin\" is not SERVING (status {status})"),
            tail,
        ));
    }
    timings.ready = started.elapsed();
    Ok(channel)
}

/// Reads PluginInfo and ConfigSchema, checks the config against the schema and sends
/// SetConfig (not when `launch.inspect_only`).
async fn configure(
    launch: &PluginLaunch,
    connected: &ConnectedPlugin,
    config: &HostConfig,
) -> Result<(PluginInfoResponse, Vec<drover_proto::base::ConfigField>), HostError> {
    let tail = &connected.tail;
    let mut base = BasePluginClient::new(connected.channel.clone());
    let rpc_err = |what: &str, e: tonic::Status| {
        if e.code() == tonic::Code::Unimplemented {
            problem(
                launch,
                format!(
                    "it completed the go-plugin handshake but does not serve Drover's base \
                     plugin service ({BASE_SERVICE}: {what} is unimplemented); is it a plugin \
                     for another program?"
                ),
                tail,
            )
        } else {
            problem(launch, format!("{what} failed: {}", e.message()), tail)
        }
    };
    let info = base
        .plugin_info(PluginInfoRequest {})
        .await
        .map_err(|e| rpc_err("PluginInfo", e))?
        .into_inner();
    if info.name != launch.name {
        tracing::debug!(plugin = %launch.name, reported = %info.name, "the plugin reports another name");
    }
    let version = PROTOCOL_VERSIONS
        .iter()
        .copied()
        .filter(|v| info.protocol_versions.contains(v))
        .max()
        .ok_or_else(|| {
            problem(
                launch,
                format!(
                    "it implements driver protocol versions {:?}, this agent speaks {PROTOCOL_VERSIONS:?}",
                    info.protocol_versions
                ),
                tail,
            )
        })?;
    let schema = base
        .config_schema(ConfigSchemaRequest {})
        .await
        .map_err(|e| rpc_err("ConfigSchema", e))?
        .into_inner();
    if launch.inspect_only {
        return Ok((info, schema.fields));
    }
    let config_err = |message: String| HostError::Config {
        name: launch.name.clone(),
        path: launch.command.clone(),
        message,
    };
    schema::check(&launch.config_json, &schema.fields).map_err(|p| {
        // Point at the key's line in the agent's config file, else at the block's.
        let at = p
            .key
            .as_deref()
            .and_then(|k| launch.config_locations.get(k))
            .or_else(|| launch.config_locations.get(""));
        config_err(match at {
            Some(at) => format!("{at}: {}", p.message),
            None => p.message,
        })
    })?;
    let config_json = if launch.config_json.is_null() {
        b"{}".to_vec()
    } else {
        serde_json::to_vec(&launch.config_json).map_err(|e| config_err(e.to_string()))?
    };
    base.set_config(SetConfigRequest {
        config_json,
        agent: Some(AgentConfig {
            data_dir: config.data_dir.to_string_lossy().into_owned(),
            node_id: config.node_id.clone(),
        }),
        protocol_version: version,
    })
    .await
    .map_err(|e| config_err(e.message().to_string()))?;
    Ok((info, schema.fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_short_and_private() {
        let tmp = tempfile::tempdir().unwrap();
        let config = HostConfig {
            data_dir: tmp.path().to_path_buf(),
            ..HostConfig::default()
        };
        let dir = private_dir(&config, "raw_exec").unwrap();
        assert!(dir.starts_with(tmp.path().join("plugins")));
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);

        let long = tmp.path().join("x".repeat(100));
        let config = HostConfig {
            data_dir: long.clone(),
            ..HostConfig::default()
        };
        let dir = private_dir(&config, "raw_exec").unwrap();
        assert!(!dir.starts_with(&long));
        assert!(dir.as_os_str().len() + SOCKET_NAME_ROOM <= MAX_UNIX_SOCKET_PATH);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn detects_dying_processes() {
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(!process_is_exiting(&me));
        assert!(process_is_exiting("1 (a b) Z 0 1 1 0 -1 4194560 0"));
        assert!(process_is_exiting("1 (x) R 0 1 1 0 -1 4194308 0"));
        assert!(!process_is_exiting("1 (x) S 0 1 1 0 -1 4194560 0"));
    }

    /// Events recorded by a test subscriber: (level, plugin field, message).
    #[derive(Clone, Default)]
    struct Recorded(Arc<std::sync::Mutex<Vec<(tracing::Level, String, String)>>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorded {
        fn on_event(
            &self,
            event: &tracing::Event<'_>,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            #[derive(Default)]
            struct V(String, String);
            impl tracing::field::Visit for V {
                fn record_str(&mut self, f: &tracing::field::Field, v: &str) {
                    if f.name() == "plugin" {
                        self.0 = v.to_string();
                    }
                }
                fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                    match f.name() {
                        "message" => self.1 = format!("{v:?}"),
                        "plugin" => self.0 = format!("{v:?}"),
                        _ => {}
                    }
                }
            }
            let mut v = V::default();
            event.record(&mut v);
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), v.0, v.1));
        }
    }

    #[test]
    fn stderr_lines_become_events_with_the_plugins_name_and_level() {
        use tracing_subscriber::prelude::*;
        let rec = Recorded::default();
        let sub = tracing_subscriber::registry().with(rec.clone());
        tracing::subscriber::with_default(sub, || {
            // Drover's SDK and go-plugin's hclog write this shape.
            forward_line(
                "p",
                r#"{"@level":"warn","@message":"disk low","@module":"x","@timestamp":"2026-01-02T15:04:05.000000Z","k":"v","n":1}"#,
            );
            forward_line("p", r#"{"@level":"error","@message":"failed","answer":42}"#);
            forward_line("p", r#"{"@level":"debug","@message":"detail"}"#);
            forward_line("p", "plain text");
            forward_line("p", "{not json");
            forward_line("p", r#"{"other":"json"}"#);
            // Odd shapes must not panic.
            forward_line("p", r#"{"@level":7,"@message":{"a":1}}"#);
        });
        let got = rec.0.lock().unwrap().clone();
        use tracing::Level;
        let expect = [
            (Level::WARN, "disk low"),
            (Level::ERROR, "failed"),
            (Level::DEBUG, "detail"),
            (Level::INFO, "plain text"),
            (Level::INFO, "{not json"),
            (Level::INFO, r#"{"other":"json"}"#),
            (Level::INFO, r#"{"a":1}"#),
        ];
        assert_eq!(got.len(), expect.len(), "{got:?}");
        for ((level, plugin, message), (want_level, want_message)) in got.iter().zip(expect) {
            assert_eq!(*level, want_level, "{message}");
            assert_eq!(plugin, "p");
            assert_eq!(message, want_message);
        }
    }

    /// An executable shell script. Written by a child process: a file this (multi-threaded)
    /// process held open for writing could be inherited by a process another test spawns at
    /// that moment, and exec'ing the script would then fail with ETXTBSY.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::io::Write;
        let path = dir.join(name);
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
            .arg(&path)
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("#!/bin/sh\n{body}\n").as_bytes())
            .unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
        path
    }

    /// Launches `command` and returns the error, checking it names the plugin's file.
    async fn launch_error(data_dir: &Path, command: &Path, handshake_timeout: Duration) -> String {
        let config = HostConfig {
            data_dir: data_dir.to_path_buf(),
            handshake_timeout,
            ..HostConfig::default()
        };
        let launch = PluginLaunch {
            name: "fake".into(),
            command: command.to_path_buf(),
            args: vec![],
            config_json: serde_json::Value::Null,
            ..PluginLaunch::default()
        };
        let err = match connect_plugin(&config, &launch).await {
            Ok(_) => panic!("{} must fail to launch", command.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("plugin \"fake\" ({})", command.display())),
            "the error must name the plugin's file: {err}"
        );
        err
    }

    const LONG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_garbage_handshake_line_is_quoted() {
        let tmp = tempfile::tempdir().unwrap();
        let p = script(
            tmp.path(),
            "garbage",
            "echo 'loading the frobnicator' >&2; echo 'hello there, I am not a plugin'; exec sleep 10",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(
            err.contains("bad handshake") && err.contains("hello there, I am not a plugin"),
            "{err}"
        );
        assert!(
            err.contains("its stderr ends with:\nloading the frobnicator"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_plugin_wanting_another_cookie_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        // What a go-plugin plugin of another program does with Drover's cookie.
        let p = script(
            tmp.path(),
            "other-cookie",
            "[ \"$DROVER_PLUGIN_MAGIC_COOKIE\" = not-drovers ] || { \
             echo 'This binary is a plugin. These are not meant to be executed directly.' >&2; \
             exit 1; }",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(
            err.contains("exited before completing the handshake (exit status: 1)"),
            "{err}"
        );
        assert!(
            err.contains("This binary is a plugin. These are not meant to be executed directly."),
            "{err}"
        );
    }

    #[tokio::test]
    async fn no_common_protocol_version_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        // A plugin that answers with a version the host did not offer.
        let p = script(
            tmp.path(),
            "v7",
            "echo \"offered: $PLUGIN_PROTOCOL_VERSIONS\" >&2; echo '1|7|unix|/tmp/x.sock|grpc|'; exec sleep 10",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(
            err.contains(
                "the plugin chose protocol version 7, which the host did not offer (offered [1])"
            ),
            "{err}"
        );
        assert!(err.contains("offered: 1"), "{err}");
        // A plugin that refuses, as Drover's SDK does, and exits.
        let p = script(
            tmp.path(),
            "refuses",
            "echo \"This Drover plugin cannot talk to its host: the host offers protocol versions \
             [$PLUGIN_PROTOCOL_VERSIONS] but this plugin speaks only [2]\" >&2; exit 1",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(
            err.contains("exited before completing the handshake"),
            "{err}"
        );
        assert!(
            err.contains("host offers protocol versions [1] but this plugin speaks only [2]"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_plugin_times_out() {
        let tmp = tempfile::tempdir().unwrap();
        let p = script(
            tmp.path(),
            "silent",
            "echo 'still thinking' >&2; exec sleep 60",
        );
        let err = launch_error(tmp.path(), &p, Duration::from_secs(2)).await;
        assert!(
            err.contains("did not print its handshake line within 2s"),
            "{err}"
        );
        assert!(err.contains("still thinking"), "{err}");
    }

    #[tokio::test]
    async fn a_plugin_file_busy_for_an_instant_still_starts() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("busy");
        std::fs::copy("/bin/true", &p).unwrap();
        // Held open for writing: exec fails with ETXTBSY until it is closed.
        let writer = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let dir = tmp.path().to_path_buf();
        let launch = tokio::spawn(async move { launch_error(&dir, &dir.join("busy"), LONG).await });
        tokio::time::sleep(Duration::from_millis(60)).await;
        drop(writer);
        let err = launch.await.unwrap();
        assert!(
            err.contains("exited before completing the handshake"),
            "the plugin must have started once the file was closed: {err}"
        );
    }

    #[tokio::test]
    async fn an_early_exit_quotes_stderr() {
        let tmp = tempfile::tempdir().unwrap();
        let p = script(
            tmp.path(),
            "early",
            "echo 'line 1' >&2; echo 'boom: the config file is missing' >&2; exit 3",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(
            err.contains("exited before completing the handshake (exit status: 3)"),
            "{err}"
        );
        assert!(
            err.contains("line 1\nboom: the config file is missing"),
            "{err}"
        );
        // A missing file.
        let err = launch_error(tmp.path(), &tmp.path().join("absent"), LONG).await;
        assert!(err.contains("cannot start it"), "{err}");
    }

    #[tokio::test]
    async fn an_unreachable_socket_is_explained() {
        let tmp = tempfile::tempdir().unwrap();
        let p = script(
            tmp.path(),
            "nosocket",
            "echo \"1|1|unix|$PLUGIN_UNIX_SOCKET_DIR/none.sock|grpc|\"; exec sleep 10",
        );
        let err = launch_error(tmp.path(), &p, LONG).await;
        assert!(err.contains("cannot connect to "), "{err}");
        assert!(err.contains("none.sock"), "{err}");
    }

    #[tokio::test]
    async fn the_plugin_gets_the_go_plugin_environment() {
        let tmp = tempfile::tempdir().unwrap();
        let report = tmp.path().join("env.txt");
        let p = script(
            tmp.path(),
            "env",
            &format!(
                "{{ echo \"$DROVER_PLUGIN_MAGIC_COOKIE\"; echo \"$PLUGIN_PROTOCOL_VERSIONS\"; \
                 echo \"$PLUGIN_UNIX_SOCKET_DIR\"; echo \"$TMPDIR\"; \
                 stat -c %a \"$PLUGIN_UNIX_SOCKET_DIR\"; echo \"$DROVER_PLUGIN_STDIN_LIFELINE\"; }} > {}; exit 1",
                report.display()
            ),
        );
        launch_error(tmp.path(), &p, LONG).await;
        let text = std::fs::read_to_string(&report).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], MAGIC_COOKIE_VALUE);
        assert_eq!(lines[1], "1");
        assert!(
            lines[2].starts_with(&tmp.path().join("plugins").display().to_string()),
            "{text}"
        );
        assert_eq!(lines[3], lines[2], "TMPDIR is the private directory too");
        assert_eq!(lines[4], "700");
        assert_eq!(lines[5], "1");
        assert!(lines[2].len() + SOCKET_NAME_ROOM <= MAX_UNIX_SOCKET_PATH);
        // The failed launch removed its directory.
        assert!(!Path::new(lines[2]).exists());
    }

    #[test]
    fn forwards_odd_shapes_without_panicking() {
        // Must not panic on any shape.
        forward_line(
            "p",
            r#"{"@level":"warn","@message":"m","@module":"x","@timestamp":"t","k":"v","n":1}"#,
        );
        forward_line("p", "plain text");
        forward_line("p", "{not json");
        forward_line("p", r#"{"other":"json"}"#);
    }
}
