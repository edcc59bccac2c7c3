//! Launching one plugin process: the handshake, the gRPC connection, log forwarding and the
//! supervisor that notices its exit.

use std::collections::VecDeque;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use drover_plugin_sdk::handshake::{
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

type Tail = Arc<std::sync::Mutex<VecDeque<String>>>;

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
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: mpsc::Sender<()>,
    stdin: Arc<std::sync::Mutex<Option<ChildStdin>>>,
}

impl RunningPlugin {
    /// Whether the process still runs. A process that died but is not reaped yet (a
    /// zombie: the supervisor is about to notice) counts as dead, so a caller whose RPC just
    /// failed gets a relaunched plugin, not the dead one. The pid cannot be reused before the
    /// supervisor reaps it.
    pub fn is_alive(&self) -> bool {
        if self.exit.borrow().is_some() {
            return false;
        }
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Ok(stat) => !process_is_exiting(&stat),
            // Gone from /proc: reaped, the supervisor is about to publish it.
            Err(_) => false,
        }
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
        let _ = self.kill.send(()).await;
        self.wait_exit(Duration::from_secs(5)).await;
    }

    /// Waits (briefly) until the supervisor has reaped a dead process.
    pub(crate) async fn reaped(&self) {
        self.wait_exit(Duration::from_secs(2)).await;
    }

    /// How the process ended, once it has.
    pub fn exit_status(&self) -> Option<String> {
        self.exit.borrow().map(|s| s.to_string())
    }

    async fn wait_exit(&self, timeout: Duration) -> bool {
        let mut rx = self.exit.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .is_ok()
    }

    /// Asks the plugin to shut down, closes its stdin, and kills it after `grace`.
    pub(crate) async fn stop(&self, grace: Duration) {
        if self.is_alive() {
            let mut ctl = GrpcControllerClient::new(self.channel.clone());
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
        stderr_tail: tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n"))
            .unwrap_or_default(),
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // SAFETY: buf is valid for `bytes` bytes.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), bytes, 0) };
    if n != bytes as isize {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
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

enum Handshake {
    Line(String),
    Eof,
    Exited(std::io::Result<ExitStatus>),
    Timeout,
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
    let tail: Tail = Default::default();
    let dir = private_dir(config, &launch.name).map_err(|e| {
        problem(
            launch,
            format!("cannot create a private directory for its socket: {e}"),
            &tail,
        )
    })?;
    let result = launch_in(config, launch, &dir, tail).await;
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

async fn launch_in(
    config: &HostConfig,
    launch: &PluginLaunch,
    dir: &Path,
    tail: Tail,
) -> Result<RunningPlugin, HostError> {
    let offered = PROTOCOL_VERSIONS
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let mut child = Command::new(&launch.command)
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
        .map_err(|e| problem(launch, format!("cannot start it: {e}"), &tail))?;
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
    let started = Instant::now();

    let outcome = {
        let mut line = String::new();
        tokio::select! {
            r = stdout.read_line(&mut line) => match r {
                Ok(0) | Err(_) => Handshake::Eof,
                Ok(_) => Handshake::Line(line),
            },
            status = child.wait() => Handshake::Exited(status),
            () = tokio::time::sleep(config.handshake_timeout) => Handshake::Timeout,
        }
    };
    // Give the stderr reader a moment to collect what a dying plugin said.
    let settle_stderr = || async {
        for _ in 0..50 {
            if stderr_eof.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let line = match outcome {
        Handshake::Line(line) => line,
        Handshake::Eof | Handshake::Exited(_) => {
            let status = match outcome {
                Handshake::Exited(s) => s,
                _ => match tokio::time::timeout(Duration::from_secs(2), child.wait()).await {
                    Ok(s) => s,
                    Err(_) => {
                        kill_and_reap(&mut child).await;
                        Err(std::io::Error::other("it closed its stdout"))
                    }
                },
            };
            settle_stderr().await;
            let how = match status {
                Ok(s) => s.to_string(),
                Err(e) => e.to_string(),
            };
            return Err(problem(
                launch,
                format!("exited before completing the handshake ({how})"),
                &tail,
            ));
        }
        Handshake::Timeout => {
            kill_and_reap(&mut child).await;
            settle_stderr().await;
            return Err(problem(
                launch,
                format!(
                    "did not print its handshake line within {:?} (is it a Drover or go-plugin plugin?)",
                    config.handshake_timeout
                ),
                &tail,
            ));
        }
    };
    let handshake =
        match HandshakeLine::parse(&line).and_then(|h| h.validate(PROTOCOL_VERSIONS).map(|()| h)) {
            Ok(h) => h,
            Err(e) => {
                kill_and_reap(&mut child).await;
                settle_stderr().await;
                return Err(problem(launch, format!("bad handshake: {e}"), &tail));
            }
        };
    tracing::debug!(plugin = %launch.name, pid, line = %handshake, "plugin handshake");

    // Anything else the plugin prints on stdout is logged.
    let name = launch.name.clone();
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

    // The supervisor owns the child from here on.
    let (exit_tx, exit_rx) = watch::channel(None);
    let (kill_tx, mut kill_rx) = mpsc::channel::<()>(1);
    let name = launch.name.clone();
    let sup_dir = dir.to_path_buf();
    tokio::spawn(async move {
        let status = tokio::select! {
            s = child.wait() => s,
            _ = kill_rx.recv() => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        match &status {
            Ok(s) => tracing::info!(plugin = %name, status = %s, "plugin process exited"),
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "cannot wait for the plugin process")
            }
        }
        let status = status.unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(0));
        let _ = exit_tx.send(Some(status));
        let _ = std::fs::remove_dir_all(&sup_dir);
    });

    let connected = connect(launch, &handshake, config, &tail).await;
    let (channel, info, schema) = match connected {
        Ok(c) => c,
        Err(e) => {
            let _ = kill_tx.send(()).await;
            return Err(e);
        }
    };
    let running = RunningPlugin {
        name: launch.name.clone(),
        path: launch.command.clone(),
        pid,
        info,
        schema,
        started,
        driver: DriverClient::new(channel.clone()),
        base: BasePluginClient::new(channel.clone()),
        channel,
        exit: exit_rx,
        kill: kill_tx,
        stdin: Arc::new(std::sync::Mutex::new(stdin)),
    };
    tracing::info!(
        plugin = %running.name,
        pid,
        version = %running.info.version,
        "plugin launched"
    );
    Ok(running)
}

/// Dials the socket, checks health, reads PluginInfo, checks the config and sends SetConfig.
async fn connect(
    launch: &PluginLaunch,
    handshake: &HandshakeLine,
    config: &HostConfig,
    tail: &Tail,
) -> Result<
    (
        Channel,
        PluginInfoResponse,
        Vec<drover_proto::base::ConfigField>,
    ),
    HostError,
> {
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
            format!("the health check failed: {}", e.message()),
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

    let mut base = BasePluginClient::new(channel.clone());
    let rpc_err = |what: &str, e: tonic::Status| {
        problem(launch, format!("{what} failed: {}", e.message()), tail)
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
        return Ok((channel, info, schema.fields));
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
    Ok((channel, info, schema.fields))
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

    #[test]
    fn forwards_hclog_and_plain_lines() {
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
