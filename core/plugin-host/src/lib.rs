//! The plugin host: launches plugin binaries through the go-plugin handshake, talks to them
//! over gRPC on a Unix socket, forwards their logs, and relaunches them when they crash.
//!
//! ```no_run
//! # async fn demo() -> Result<(), drover_plugin_host::HostError> {
//! use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
//! let host = PluginHost::new(HostConfig {
//!     data_dir: "/var/lib/drover".into(),
//!     node_id: "node-1".into(),
//!     plugins: vec![PluginLaunch {
//!         name: "raw_exec".into(),
//!         command: "/usr/bin/drover".into(),
//!         args: vec!["plugin".into(), "serve".into(), "raw_exec".into()],
//!         config_json: serde_json::json!({ "enabled": true }),
//!         config_locations: Default::default(),
//!         inspect_only: false,
//!     }],
//!     ..HostConfig::default()
//! });
//! let mut driver = host.driver("raw_exec").await?;
//! // driver.start_task(...), driver.wait_task(...)
//! host.shutdown().await;
//! # Ok(()) }
//! ```

mod catalog;
mod launch;
mod module;
mod native;
mod schema;
mod secrets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::base::PluginInfoResponse;
use drover_proto::base::base_plugin_client::BasePluginClient;
use drover_proto::driver::driver_client::DriverClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

pub use catalog::{Catalog, CatalogEntry, Refusal, Transport, driver_refusal};
pub use launch::{ConnectedPlugin, LaunchTimings, RunningPlugin, connect_plugin};
pub use module::{CallFailure, ModuleCall, Sandbox, WasmLoader};
pub use native::{NativeError, NativeLibrary};
pub use secrets::{SecretsClient, SecretsError, SecretsErrorKind};

/// How one plugin is started.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PluginLaunch {
    /// The name the operator's `plugin "NAME"` block uses.
    pub name: String,
    /// The executable.
    pub command: PathBuf,
    pub args: Vec<String>,
    /// The block's `config { ... }` as a JSON object (checked against the plugin's schema).
    pub config_json: serde_json::Value,
    /// Where the operator wrote the block (key "") and each config key: `file:line:column`,
    /// quoted in configuration errors.
    pub config_locations: BTreeMap<String, String>,
    /// Launch and read PluginInfo and ConfigSchema only: no SetConfig (`drover plugin
    /// inspect`).
    pub inspect_only: bool,
}

/// The host's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    /// The agent's data directory; plugin sockets live under `<data_dir>/plugins/`, task
    /// shims under `<data_dir>/shims/`.
    pub data_dir: PathBuf,
    pub node_id: String,
    pub plugins: Vec<PluginLaunch>,
    /// How long a plugin may take to print its handshake line.
    pub handshake_timeout: Duration,
    /// How long a plugin may take to exit after Shutdown before it is killed.
    pub stop_grace: Duration,
    /// The longest pause between relaunches of a crash-looping plugin.
    pub max_backoff: Duration,
    /// Where the operator drops plugins (see [`Catalog`]); read by [`PluginHost::open`].
    pub plugin_dir: Option<PathBuf>,
    /// Per plugin found in `plugin_dir`: its block's config and, for Extism modules, its
    /// sandbox. A plugin without an entry gets an empty config and the default sandbox.
    pub settings: BTreeMap<String, PluginSettings>,
}

/// What an operator's `plugin "NAME" { ... }` block says about a plugin found in `plugin_dir`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PluginSettings {
    /// The block's `config { ... }` as a JSON object (checked against the plugin's schema).
    pub config_json: serde_json::Value,
    /// What an Extism module may reach (ignored for other transports).
    pub sandbox: Sandbox,
    /// Arguments of a plugin process (ignored for other transports).
    pub args: Vec<String>,
    /// Where the block and its config keys were written (see [`PluginLaunch`]).
    pub config_locations: BTreeMap<String, String>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("/var/lib/drover"),
            node_id: String::new(),
            plugins: Vec::new(),
            handshake_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(5),
            max_backoff: Duration::from_secs(30),
            plugin_dir: None,
            settings: BTreeMap::new(),
        }
    }
}

/// Errors of the plugin host. Launch errors name the plugin and its file and quote the end of
/// its stderr.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("no plugin named {0:?} is configured")]
    UnknownPlugin(String),
    #[error("plugin {name:?} ({}): {problem}{}", path.display(), stderr_suffix(stderr_tail))]
    Launch {
        name: String,
        path: PathBuf,
        problem: String,
        /// The last lines the plugin wrote to stderr.
        stderr_tail: String,
    },
    #[error("plugin {name:?} ({}) refused its configuration: {message}", path.display())]
    Config {
        name: String,
        path: PathBuf,
        message: String,
    },
    #[error("the host has been shut down")]
    ShutDown,
    #[error("plugin {name:?} ({}) was refused: {reason}", path.display())]
    Refused {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("plugin {name:?} ({}) is a {kind} plugin, not a {wanted}", path.display())]
    WrongKind {
        name: String,
        path: PathBuf,
        kind: String,
        wanted: &'static str,
    },
    #[error("plugin {name:?}: {rpc} failed: {message}")]
    Rpc {
        name: String,
        rpc: &'static str,
        message: String,
    },
}

fn stderr_suffix(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its stderr ends with:\n{}", tail.trim_end())
    }
}

/// Supervision state of one plugin.
struct Slot {
    launch: PluginLaunch,
    running: Option<RunningPlugin>,
    /// Consecutive launches that crashed soon after starting.
    crashes: u32,
    /// Not before this instant may the plugin be launched again.
    not_before: Option<Instant>,
    /// Launches after the first one.
    restarts: u32,
    /// What went wrong last (a failed launch, an exit, a failed health check); cleared by a
    /// passing health check.
    last_error: Option<String>,
    /// What the plugin last reported in PluginInfo.
    info: Option<PluginInfoResponse>,
    launched_once: bool,
}

/// The operator's word for a plugin kind: "driver", "secrets".
pub fn kind_name(kind: drover_proto::base::PluginKind) -> &'static str {
    use drover_proto::base::PluginKind;
    match kind {
        PluginKind::Driver => "driver",
        PluginKind::Secrets => "secrets",
        PluginKind::Unspecified => "unspecified",
    }
}

/// Consecutive quick crashes after which a plugin counts as crash-looping (unhealthy).
const CRASH_LOOP: u32 = 3;

/// What `drover plugin status` shows of one plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginStatus {
    pub name: String,
    /// "driver", "secrets", ...; empty until the plugin has been launched once.
    pub kind: String,
    pub transport: String,
    pub version: String,
    pub path: String,
    pub pid: Option<u32>,
    /// "running", "crash-looping", "failed" or "not started" (processes); "loaded" or
    /// "refused" (plugin_dir entries loaded in process, or refused).
    pub state: String,
    pub healthy: bool,
    pub restarts: u32,
    pub last_error: Option<String>,
}

/// A plugin that lived at least this long was not crash-looping.
const STABLE_AFTER: Duration = Duration::from_secs(30);
/// The first pause after a quick crash.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// Launches and supervises the configured plugins.
pub struct PluginHost {
    config: Arc<HostConfig>,
    slots: BTreeMap<String, Arc<Mutex<Slot>>>,
    shut_down: std::sync::atomic::AtomicBool,
    /// Extism modules and native libraries from `plugin_dir`, loaded and configured.
    modules: BTreeMap<String, Arc<catalog::LoadedModule>>,
    /// Plugins from `plugin_dir` that could not be used, with why.
    refused: BTreeMap<String, Refusal>,
}

impl PluginHost {
    /// A host for `config.plugins`; nothing is launched until first use.
    pub fn new(config: HostConfig) -> Self {
        let slots = config
            .plugins
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    Arc::new(Mutex::new(Slot {
                        launch: p.clone(),
                        running: None,
                        crashes: 0,
                        not_before: None,
                        restarts: 0,
                        last_error: None,
                        info: None,
                        launched_once: false,
                    })),
                )
            })
            .collect();
        Self {
            config: Arc::new(config),
            slots,
            shut_down: Default::default(),
            modules: BTreeMap::new(),
            refused: BTreeMap::new(),
        }
    }

    /// The names of the configured plugins.
    pub fn plugin_names(&self) -> Vec<String> {
        self.slots.keys().cloned().collect()
    }

    /// A connected driver client for plugin `name`, launching it when it is not running (or
    /// relaunching it when it died: with exponential backoff when it crash-loops).
    pub async fn driver(&self, name: &str) -> Result<DriverClient<Channel>, HostError> {
        self.check_driver(name)?;
        let running = self.running(name).await?;
        if running.info.kind() == drover_proto::base::PluginKind::Secrets {
            return Err(HostError::WrongKind {
                name: name.to_string(),
                path: running.path.clone(),
                kind: running.info.kind().as_str_name().to_string(),
                wanted: "task driver",
            });
        }
        Ok(running.driver.clone())
    }

    /// What driver `name` can do (its `Capabilities`), asked once per launch of the plugin
    /// and remembered until it is relaunched.
    pub async fn capabilities(
        &self,
        name: &str,
    ) -> Result<drover_proto::driver::CapabilitiesResponse, HostError> {
        let mut driver = self.driver(name).await?;
        let running = self.running(name).await?;
        if let Some(c) = running.capabilities.get() {
            return Ok(c.clone());
        }
        let caps = driver
            .capabilities(drover_proto::driver::CapabilitiesRequest {})
            .await
            .map_err(|s| HostError::Rpc {
                name: name.to_string(),
                rpc: "Capabilities",
                message: s.message().to_string(),
            })?
            .into_inner();
        let _ = running.capabilities.set(caps.clone());
        Ok(caps)
    }

    /// A connected `BasePlugin` client for plugin `name` (launching it like [`PluginHost::driver`]).
    pub async fn base(&self, name: &str) -> Result<BasePluginClient<Channel>, HostError> {
        Ok(self.running(name).await?.base.clone())
    }

    /// What plugin `name` reported in PluginInfo (launching it like [`PluginHost::driver`]).
    pub async fn info(&self, name: &str) -> Result<PluginInfoResponse, HostError> {
        Ok(self.running(name).await?.info.clone())
    }

    /// The plugin processes that are task drivers (or whose kind is not known yet, never
    /// having started): what the client fingerprints and starts tasks with.
    pub async fn driver_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (name, slot) in &self.slots {
            let kind = slot.lock().await.info.as_ref().map(|i| i.kind());
            if kind.is_none_or(|k| k == drover_proto::base::PluginKind::Driver) {
                out.push(name.clone());
            }
        }
        out
    }

    /// The config keys plugin `name` reported (launching it like [`PluginHost::driver`]).
    pub async fn schema(
        &self,
        name: &str,
    ) -> Result<Vec<drover_proto::base::ConfigField>, HostError> {
        Ok(self.running(name).await?.schema.clone())
    }

    /// The pid of plugin `name`'s process, when it runs.
    pub async fn plugin_pid(&self, name: &str) -> Option<u32> {
        let slot = self.slots.get(name)?;
        let slot = slot.lock().await;
        slot.running
            .as_ref()
            .filter(|r| r.is_alive())
            .map(|r| r.pid)
    }

    async fn running(&self, name: &str) -> Result<RunningPlugin, HostError> {
        if self.shut_down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HostError::ShutDown);
        }
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| HostError::UnknownPlugin(name.to_string()))?;
        loop {
            let mut slot = slot.lock().await;
            if let Some(r) = slot.running.clone() {
                if r.is_alive() {
                    return Ok(r);
                }
                r.reaped().await;
                let lived = r.started.elapsed();
                slot.last_error = Some(format!(
                    "exited ({}) after {:.1}s",
                    r.exit_status().unwrap_or_else(|| "unknown status".into()),
                    lived.as_secs_f64()
                ));
                tracing::warn!(
                    plugin = name,
                    status = %r.exit_status().unwrap_or_default(),
                    lived_ms = lived.as_millis() as u64,
                    "plugin exited; relaunching it"
                );
                slot.running = None;
                if lived < STABLE_AFTER {
                    slot.crashes += 1;
                    let factor = 1u32 << (slot.crashes - 1).min(16);
                    let pause = (FIRST_BACKOFF * factor).min(self.config.max_backoff);
                    // The first crash relaunches at once; a crash loop backs off.
                    if slot.crashes > 1 {
                        slot.not_before = Some(Instant::now() + pause);
                    }
                } else {
                    slot.crashes = 0;
                }
            }
            if let Some(t) = slot.not_before {
                let wait = t.saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    tracing::info!(
                        plugin = name,
                        wait_ms = wait.as_millis() as u64,
                        "plugin crash-looping; backing off"
                    );
                    // Not holding the slot: status stays readable meanwhile.
                    drop(slot);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                slot.not_before = None;
            }
            if slot.launched_once {
                slot.restarts += 1;
            }
            slot.launched_once = true;
            return match launch::launch(&self.config, &slot.launch).await {
                Ok(r) => {
                    slot.info = Some(r.info.clone());
                    slot.running = Some(r.clone());
                    Ok(r)
                }
                Err(e) => {
                    slot.last_error = Some(e.to_string());
                    slot.crashes += 1;
                    let factor = 1u32 << (slot.crashes - 1).min(16);
                    slot.not_before = Some(
                        Instant::now() + (FIRST_BACKOFF * factor).min(self.config.max_backoff),
                    );
                    Err(e)
                }
            };
        }
    }

    /// Launches every configured plugin now. Configuration errors are returned (the operator
    /// must fix the config file); a plugin that fails otherwise is left to supervision,
    /// which retries it with backoff.
    pub async fn start_all(&self) -> Result<(), HostError> {
        for name in self.plugin_names() {
            match self.running(&name).await {
                Ok(_) => {}
                Err(e @ HostError::Config { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!(plugin = %name, error = %e, "plugin failed to start; will retry")
                }
            }
        }
        Ok(())
    }

    /// Watches every plugin: pings running ones (`grpc.health.v1`, service "plugin") every
    /// `interval`, kills one that stops answering, and relaunches dead ones with backoff.
    /// Runs until [`PluginHost::shutdown`].
    pub fn supervise(self: &Arc<Self>, interval: Duration) {
        for name in self.plugin_names() {
            let host = Arc::downgrade(self);
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticker.tick().await;
                    let Some(host) = host.upgrade() else { return };
                    if host.shut_down.load(std::sync::atomic::Ordering::SeqCst) {
                        return;
                    }
                    host.check(&name).await;
                }
            });
        }
    }

    /// One supervision round for plugin `name`.
    async fn check(&self, name: &str) {
        let Some(slot) = self.slots.get(name) else {
            return;
        };
        let running = slot.lock().await.running.clone();
        match running {
            Some(r) if r.is_alive() => match r.ping().await {
                Ok(()) => slot.lock().await.last_error = None,
                Err(why) => {
                    tracing::warn!(plugin = name, %why, "plugin failed its health check; restarting it");
                    slot.lock().await.last_error = Some(format!("health check failed: {why}"));
                    r.kill().await;
                }
            },
            _ => {
                if let Err(e) = self.running(name).await {
                    tracing::warn!(plugin = name, error = %e, "plugin relaunch failed");
                }
            }
        }
    }

    /// The state of every plugin: processes, in-process modules, and refusals.
    pub async fn status(&self) -> Vec<PluginStatus> {
        let mut out = Vec::new();
        for (name, slot) in &self.slots {
            let slot = slot.lock().await;
            let alive = slot.running.as_ref().filter(|r| r.is_alive());
            let state = if alive.is_some() {
                "running"
            } else if slot.crashes >= CRASH_LOOP {
                "crash-looping"
            } else if slot.launched_once {
                "failed"
            } else {
                "not started"
            };
            let info = slot.info.clone().unwrap_or_default();
            out.push(PluginStatus {
                name: name.clone(),
                kind: if slot.info.is_some() {
                    kind_name(info.kind()).to_string()
                } else {
                    String::new()
                },
                transport: "grpc".into(),
                version: info.version.clone(),
                path: slot.launch.command.display().to_string(),
                pid: alive.map(|r| r.pid),
                state: state.into(),
                healthy: alive.is_some() && slot.crashes < CRASH_LOOP && slot.last_error.is_none(),
                restarts: slot.restarts,
                last_error: slot.last_error.clone(),
            });
        }
        // Extism modules and native libraries loaded from plugin_dir, and what was refused.
        for m in self.modules() {
            out.push(PluginStatus {
                name: m.name,
                kind: m.kind,
                transport: m.transport.as_str().into(),
                version: m.version,
                path: m.path.display().to_string(),
                pid: None,
                state: "loaded".into(),
                healthy: true,
                restarts: 0,
                last_error: None,
            });
        }
        for r in self.refused() {
            out.push(PluginStatus {
                name: r.name,
                kind: String::new(),
                transport: String::new(),
                version: String::new(),
                path: r.path.display().to_string(),
                pid: None,
                state: "refused".into(),
                healthy: false,
                restarts: 0,
                last_error: Some(format!("refused: {}", r.reason)),
            });
        }
        out
    }

    /// Stops every plugin: GRPCController.Shutdown, then SIGKILL after the grace period.
    /// Tasks and their shims keep running. Later calls to [`PluginHost::driver`] fail.
    pub async fn shutdown(&self) {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut stops = Vec::new();
        for (name, slot) in &self.slots {
            let running = slot.lock().await.running.take();
            if let Some(r) = running {
                let grace = self.config.stop_grace;
                let name = name.clone();
                stops.push(tokio::spawn(async move {
                    r.stop(grace).await;
                    tracing::info!(plugin = %name, "plugin stopped");
                }));
            }
        }
        for s in stops {
            let _ = s.await;
        }
    }

    /// Stops one plugin (it is launched again on next use).
    pub async fn stop_plugin(&self, name: &str) -> Result<(), HostError> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| HostError::UnknownPlugin(name.to_string()))?;
        let running = slot.lock().await.running.take();
        if let Some(r) = running {
            r.stop(self.config.stop_grace).await;
        }
        Ok(())
    }
}
