//! Running one plugin per the spec's execution protocol: the parameters in the environment
//! (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`, `CNI_PATH`),
//! the configuration on stdin, the result or the error on stdout. Output is bounded and
//! every call has a timeout (the plugin is killed when it passes).

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::result::PluginErrorReply;
use crate::{Attachment, Error, PluginPath};

/// Default time one plugin call may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default bound on a plugin's stdout (its result) and on the stderr kept.
pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;
/// The `PATH` plugins get (bridge, portmap and firewall run iptables / nft from it).
pub const PLUGIN_PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How much of stderr an error quotes.
const STDERR_QUOTED: usize = 2048;

/// The spec's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Version,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A plugin's answer to VERSION.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(rename = "supportedVersions", default)]
    pub supported_versions: Vec<String>,
}

/// Runs plugins found on a `cni_path`.
#[derive(Debug, Clone)]
pub struct PluginRunner {
    pub cni_path: PluginPath,
    /// Time one call may take.
    pub timeout: Duration,
    /// Bound on stdout (and on the stderr kept).
    pub max_output: usize,
}

impl PluginRunner {
    pub fn new(cni_path: PluginPath) -> Self {
        PluginRunner {
            cni_path,
            timeout: DEFAULT_TIMEOUT,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }

    /// Runs `plugin_type` with `command` for `attachment`, `stdin` as its configuration;
    /// returns its stdout when it exits 0.
    pub async fn run(
        &self,
        command: Command,
        plugin_type: &str,
        attachment: &Attachment,
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let env = vec![
            ("CNI_COMMAND", command.as_str().to_string()),
            ("CNI_CONTAINERID", attachment.container_id.clone()),
            ("CNI_NETNS", attachment.netns.to_string_lossy().into_owned()),
            ("CNI_IFNAME", attachment.ifname.clone()),
            ("CNI_ARGS", attachment.cni_args()?),
            ("CNI_PATH", self.cni_path.to_env()),
        ];
        self.invoke(command, plugin_type, env, stdin).await
    }

    /// Asks a plugin which spec versions it speaks (VERSION).
    pub async fn version(&self, plugin_type: &str) -> Result<VersionInfo, Error> {
        let stdin =
            serde_json::to_vec(&serde_json::json!({"cniVersion": crate::SUPPORTED_VERSIONS[0]}))
                .expect("a JSON literal serializes");
        let env = vec![
            ("CNI_COMMAND", Command::Version.as_str().to_string()),
            ("CNI_PATH", self.cni_path.to_env()),
        ];
        let out = self
            .invoke(Command::Version, plugin_type, env, stdin)
            .await?;
        serde_json::from_slice(&out).map_err(|source| Error::BadResult {
            plugin: plugin_type.to_string(),
            command: Command::Version,
            source,
        })
    }

    async fn invoke(
        &self,
        command: Command,
        plugin_type: &str,
        env: Vec<(&'static str, String)>,
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let path = self.cni_path.clone();
        let name = plugin_type.to_string();
        let binary = tokio::task::spawn_blocking(move || path.find(&name)).await??;
        tracing::debug!(plugin = plugin_type, %command, binary = %binary.display(), "running CNI plugin");
        let call = Call {
            plugin: plugin_type,
            command,
            max_output: self.max_output,
        };
        match tokio::time::timeout(self.timeout, call.exec(binary, env, stdin)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                plugin: plugin_type.to_string(),
                command,
                after: self.timeout,
            }),
        }
    }
}

/// A plugin's process group, killed on drop unless the plugin was seen to exit (a plugin
/// that exited normally may have started a daemon on purpose; it is left alone).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// One call in progress.
struct Call<'a> {
    plugin: &'a str,
    command: Command,
    max_output: usize,
}

impl Call<'_> {
    /// Spawns, feeds stdin, reads stdout and stderr (bounded), waits. The plugin's process
    /// group is killed if this ends before the plugin exited (the timeout drops this
    /// future; output beyond the bound).
    async fn exec(
        &self,
        binary: PathBuf,
        env: Vec<(&'static str, String)>,
        stdin: Vec<u8>,
    ) -> Result<Vec<u8>, Error> {
        let mut child = tokio::process::Command::new(&binary)
            .env_clear()
            .env("PATH", PLUGIN_PATH_ENV)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: what it started (iptables ...) dies with it.
            .process_group(0)
            .spawn()
            .map_err(|source| Error::Spawn {
                plugin: self.plugin.to_string(),
                command: self.command,
                binary: binary.clone(),
                source,
            })?;
        let mut group = ProcessGroup(child.id());
        let mut input = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let write = async move {
            // A plugin may exit without reading all of stdin: a broken pipe is its answer.
            let _ = input.write_all(&stdin).await;
            drop(input);
            Ok::<(), Error>(())
        };
        let (_, out, err) =
            tokio::try_join!(write, self.read_stdout(stdout), self.read_stderr(stderr))?;
        let status = child.wait().await.map_err(|e| self.io(e))?;
        group.disarm();
        if !err.is_empty() {
            tracing::debug!(plugin = self.plugin, command = %self.command, stderr = %String::from_utf8_lossy(&err), "CNI plugin stderr");
        }
        if status.success() {
            return Ok(out);
        }
        Err(self.failure(status.to_string(), &out, &err))
    }

    async fn read_stdout(&self, stdout: impl AsyncRead + Unpin) -> Result<Vec<u8>, Error> {
        let mut out = Vec::new();
        stdout
            .take(self.max_output as u64 + 1)
            .read_to_end(&mut out)
            .await
            .map_err(|e| self.io(e))?;
        if out.len() > self.max_output {
            return Err(Error::OutputTooLarge {
                plugin: self.plugin.to_string(),
                command: self.command,
                stream: "stdout",
                limit: self.max_output,
            });
        }
        Ok(out)
    }

    /// Keeps the first `max_output` bytes and drains the rest (so the plugin never blocks
    /// on a full pipe).
    async fn read_stderr(&self, mut stderr: impl AsyncRead + Unpin) -> Result<Vec<u8>, Error> {
        let mut kept = Vec::new();
        (&mut stderr)
            .take(self.max_output as u64)
            .read_to_end(&mut kept)
            .await
            .map_err(|e| self.io(e))?;
        tokio::io::copy(&mut stderr, &mut tokio::io::sink())
            .await
            .map_err(|e| self.io(e))?;
        Ok(kept)
    }

    /// The error of a plugin that exited non-zero: its JSON error, else its stderr.
    fn failure(&self, status: String, out: &[u8], err: &[u8]) -> Error {
        if let Ok(reply) = serde_json::from_slice::<PluginErrorReply>(out) {
            return Error::Plugin {
                plugin: self.plugin.to_string(),
                command: self.command,
                code: reply.code,
                msg: reply.msg,
                details: reply.details,
            };
        }
        let text = if err.iter().any(|b| !b.is_ascii_whitespace()) {
            err
        } else {
            out
        };
        let text = String::from_utf8_lossy(text);
        let text = text.trim();
        let quoted: String = text.chars().take(STDERR_QUOTED).collect();
        Error::Failed {
            plugin: self.plugin.to_string(),
            command: self.command,
            status,
            stderr: quoted,
        }
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            plugin: self.plugin.to_string(),
            command: self.command,
            source,
        }
    }
}
