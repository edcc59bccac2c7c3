//! The `raw_exec` task driver: runs a command as an ordinary process, without isolation,
//! under the task shim so that it outlives the plugin and the agent.
//!
//! Plugin configuration: `enabled` (bool, default false). Task configuration:
//! `command` (string, required) and `args` (list of strings).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::proto::driver::{
    CapabilitiesResponse, CpuStats, ExecTaskSetup, ExitResult, FingerprintResponse, HealthState,
    InspectTaskResponse, MemoryStats, StartTaskResponse, TaskConfig, TaskHandle, TaskStatsResponse,
    exec_task_request, exec_task_response,
};
use drover_plugin_sdk::shim::{
    self, LaunchSpec, LogRotation, Recovered, ShimClient, ShimError, ShimHandle, TaskExit,
};
use drover_plugin_sdk::{DriverError, PluginInfo, TaskDriver};
use tokio::sync::{mpsc, watch};

/// Serves raw_exec as a plugin on the current tokio runtime until the host stops it
/// (`drover plugin serve raw_exec`). Installs hclog logging on stderr first: nothing else
/// may write to stdout before the handshake line. Exit the process once it returns.
///
/// The binary's synchronous `main` must have called
/// [`drover_plugin_sdk::shim::exit_if_invoked`] before starting any runtime: raw_exec runs
/// its task shims as `<current exe> task-shim ...`.
pub async fn serve() -> Result<(), drover_plugin_sdk::ServeError> {
    drover_plugin_sdk::init_logging(NAME);
    drover_plugin_sdk::serve_driver(RawExec::default()).await
}

/// The plugin's name.
pub const NAME: &str = "raw_exec";
/// The version of [`TaskHandle`] this driver writes.
const HANDLE_VERSION: u32 = 1;

/// The plugin's `config { ... }` block.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    #[serde(default)]
    enabled: bool,
}

/// A task's `config { ... }` block.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDriverConfig {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

struct Task {
    /// What the task was started with (its environment, directory and user serve exec).
    config: TaskConfig,
    shim: ShimHandle,
    client: ShimClient,
    /// How the task ended, once known.
    exit: Option<TaskExit>,
}

#[derive(Default)]
struct State {
    enabled: bool,
    shims_root: Option<PathBuf>,
    tasks: BTreeMap<String, Task>,
}

/// The raw_exec driver.
pub struct RawExec {
    state: Mutex<State>,
    fingerprint: watch::Sender<FingerprintResponse>,
}

impl Default for RawExec {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            fingerprint: watch::channel(fingerprint_for(false)).0,
        }
    }
}

fn fingerprint_for(enabled: bool) -> FingerprintResponse {
    if enabled {
        FingerprintResponse {
            attributes: [("driver.raw_exec".to_string(), "1".to_string())]
                .into_iter()
                .collect(),
            health: HealthState::Healthy as i32,
            health_description: "healthy".into(),
        }
    } else {
        FingerprintResponse {
            attributes: Default::default(),
            health: HealthState::Undetected as i32,
            health_description: "disabled: set enabled = true in the raw_exec plugin block".into(),
        }
    }
}

fn to_result(exit: &TaskExit) -> ExitResult {
    ExitResult {
        exit_code: exit.exit_code,
        signal: exit.signal,
        oom_killed: exit.oom_killed,
        err: exit.err.clone().unwrap_or_default(),
    }
}

fn internal(e: ShimError) -> DriverError {
    DriverError::Internal(e.to_string())
}

impl RawExec {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task's shim client and handle, or its known exit.
    fn lookup(
        &self,
        task_id: &str,
    ) -> Result<(ShimClient, ShimHandle, Option<TaskExit>), DriverError> {
        let st = self.lock();
        let t = st
            .tasks
            .get(task_id)
            .ok_or_else(|| DriverError::TaskNotFound(task_id.to_string()))?;
        Ok((t.client.clone(), t.shim.clone(), t.exit.clone()))
    }

    fn record_exit(&self, task_id: &str, exit: &TaskExit) {
        if let Some(t) = self.lock().tasks.get_mut(task_id) {
            t.exit = Some(exit.clone());
        }
    }

    fn build_spec(&self, task: &TaskConfig) -> Result<LaunchSpec, DriverError> {
        let cfg: TaskDriverConfig = if task.driver_config_json.is_empty() {
            return Err(DriverError::InvalidArgument(format!(
                "task {:?}: raw_exec needs a config block with a command",
                task.name
            )));
        } else {
            serde_json::from_slice(&task.driver_config_json).map_err(|e| {
                DriverError::InvalidArgument(format!(
                    "task {:?}: bad raw_exec config: {e}",
                    task.name
                ))
            })?
        };
        let command = cfg
            .command
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| {
                DriverError::InvalidArgument(format!(
                    "task {:?}: raw_exec config needs \"command\" (the program to run)",
                    task.name
                ))
            })?;
        let cwd = if task.task_dir.is_empty() {
            PathBuf::from("/")
        } else {
            PathBuf::from(&task.task_dir)
        };
        let mut spec = LaunchSpec::new(&task.id, &command, cfg.args, cwd);
        spec.env = task
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        spec.user = Some(task.user.clone()).filter(|u| !u.is_empty());
        spec.stdout_path =
            Some(PathBuf::from(&task.stdout_path)).filter(|p| !p.as_os_str().is_empty());
        spec.stderr_path =
            Some(PathBuf::from(&task.stderr_path)).filter(|p| !p.as_os_str().is_empty());
        if let Some(logs) = &task.logs {
            spec.logs = LogRotation {
                max_files: logs.max_files,
                max_file_size_mb: logs.max_file_size_mb,
            };
        }
        Ok(spec)
    }
}

#[tonic::async_trait]
impl TaskDriver for RawExec {
    fn plugin_info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_versions: vec![1],
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        vec![ConfigField {
            name: "enabled".into(),
            r#type: "bool".into(),
            required: false,
            description: "Run tasks with raw_exec. It has no isolation: tasks run as the agent's user unless `user` is set.".into(),
            default_json: "false".into(),
        }]
    }

    async fn set_config(
        &self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), DriverError> {
        let cfg: PluginConfig = serde_json::from_value(config)
            .map_err(|e| DriverError::InvalidArgument(format!("raw_exec plugin config: {e}")))?;
        {
            let mut st = self.lock();
            st.enabled = cfg.enabled;
            st.shims_root = Some(agent.data_dir)
                .filter(|d| !d.is_empty())
                .map(|d| PathBuf::from(d).join("shims"));
        }
        self.fingerprint.send_replace(fingerprint_for(cfg.enabled));
        tracing::info!(enabled = cfg.enabled, "raw_exec configured");
        Ok(())
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            send_signals: true,
            exec: true,
            fs_isolation: "none".into(),
            must_create_network: false,
        }
    }

    fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> {
        self.fingerprint.subscribe()
    }

    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError> {
        let shims_root = {
            let st = self.lock();
            if !st.enabled {
                return Err(DriverError::FailedPrecondition(
                    "raw_exec is disabled: set enabled = true in its plugin block; it runs tasks without isolation".into(),
                ));
            }
            if st.tasks.contains_key(&task.id) {
                return Err(DriverError::InvalidArgument(format!(
                    "task {:?} is already running",
                    task.id
                )));
            }
            st.shims_root.clone().ok_or_else(|| {
                DriverError::FailedPrecondition(
                    "raw_exec has no data directory: the agent did not configure it".into(),
                )
            })?
        };
        let spec = self.build_spec(&task)?;
        let exe = std::env::current_exe().map_err(|e| {
            DriverError::Internal(format!("cannot find this plugin's own executable: {e}"))
        })?;
        let handle = tokio::task::spawn_blocking(move || shim::launch(&spec, &exe, &shims_root))
            .await
            .map_err(|e| DriverError::Internal(format!("the launch thread failed: {e}")))?
            .map_err(|e| match e {
                ShimError::Launch(msg) => {
                    DriverError::InvalidArgument(format!("task {:?}: {msg}", task.name))
                }
                other => DriverError::Internal(format!("task {:?}: {other}", task.name)),
            })?;
        let client = ShimClient::from_handle(handle.clone());
        tracing::info!(task_id = %task.id, pid = handle.task_pid, shim = %handle.shim_id, "task started");
        let driver_state =
            serde_json::to_vec(&handle).map_err(|e| DriverError::Internal(e.to_string()))?;
        let pid = i64::from(handle.task_pid);
        let response = StartTaskResponse {
            handle: Some(TaskHandle {
                version: HANDLE_VERSION,
                config: Some(task.clone()),
                driver_state,
            }),
            pid,
        };
        self.lock().tasks.insert(
            task.id.clone(),
            Task {
                config: task.clone(),
                shim: handle,
                client,
                exit: None,
            },
        );
        Ok(response)
    }

    async fn wait_task(&self, task_id: &str) -> Result<ExitResult, DriverError> {
        let (client, handle, exit) = self.lookup(task_id)?;
        if let Some(exit) = exit {
            return Ok(to_result(&exit));
        }
        let _ = handle;
        let exit = match client.wait().await {
            Ok(exit) => exit,
            Err(ShimError::Lost(msg)) => TaskExit::lost(msg),
            Err(e) => return Err(internal(e)),
        };
        self.record_exit(task_id, &exit);
        Ok(to_result(&exit))
    }

    async fn stop_task(
        &self,
        task_id: &str,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let (client, _, exit) = self.lookup(task_id)?;
        if exit.is_some() {
            return Ok(());
        }
        match client.stop(signal, timeout).await {
            Ok(()) => Ok(()),
            Err(ShimError::Refused(msg)) => Err(DriverError::InvalidArgument(msg)),
            Err(e) => {
                // The shim may have finished meanwhile.
                if let Ok(Some(exit)) = shim::read_exit_file(&client.handle().shim_dir) {
                    self.record_exit(task_id, &exit);
                    return Ok(());
                }
                Err(internal(e))
            }
        }
    }

    async fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        let (client, handle, exit) = self.lookup(task_id)?;
        if exit.is_none()
            && let Ok(info) = client.inspect().await
            && info.state == "running"
        {
            if !force {
                return Err(DriverError::FailedPrecondition(format!(
                    "task {task_id:?} is still running: stop it first, or destroy it with force"
                )));
            }
            client
                .stop("SIGKILL", Duration::ZERO)
                .await
                .map_err(internal)?;
            let _ = tokio::time::timeout(Duration::from_secs(10), client.wait()).await;
        }
        self.lock().tasks.remove(task_id);
        let dir = handle.shim_dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        tracing::info!(task_id, "task destroyed");
        Ok(())
    }

    async fn inspect_task(&self, task_id: &str) -> Result<InspectTaskResponse, DriverError> {
        let (client, handle, exit) = self.lookup(task_id)?;
        let started = handle.task_started_at_unix_nanos;
        let exited = |exit: &TaskExit| InspectTaskResponse {
            task_id: task_id.to_string(),
            state: "exited".into(),
            pid: i64::from(handle.task_pid),
            started_at_unix_nanos: started,
            result: Some(to_result(exit)),
        };
        if let Some(exit) = &exit {
            return Ok(exited(exit));
        }
        match client.inspect().await {
            Ok(info) => Ok(InspectTaskResponse {
                task_id: task_id.to_string(),
                state: info.state,
                pid: i64::from(info.task_pid),
                started_at_unix_nanos: info.started_at_unix_nanos,
                result: info.exit.as_ref().map(to_result),
            }),
            Err(e) => match shim::read_exit_file(&handle.shim_dir) {
                Ok(Some(exit)) => {
                    self.record_exit(task_id, &exit);
                    Ok(exited(&exit))
                }
                _ => Err(internal(e)),
            },
        }
    }

    async fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        let (client, _, exit) = self.lookup(task_id)?;
        if exit.is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {task_id:?} has exited"
            )));
        }
        client.signal(signal).await.map_err(|e| match e {
            ShimError::Refused(msg) => DriverError::InvalidArgument(msg),
            other => internal(other),
        })
    }

    async fn recover_task(&self, handle: TaskHandle) -> Result<(), DriverError> {
        let config = handle.config.ok_or_else(|| {
            DriverError::InvalidArgument("the task handle has no task config".into())
        })?;
        if self.lock().tasks.contains_key(&config.id) {
            return Ok(());
        }
        if handle.version > HANDLE_VERSION {
            return Err(DriverError::InvalidArgument(format!(
                "task handle version {} is newer than this raw_exec understands ({HANDLE_VERSION})",
                handle.version
            )));
        }
        let shim: ShimHandle = serde_json::from_slice(&handle.driver_state).map_err(|e| {
            DriverError::InvalidArgument(format!(
                "the task handle's driver state is not a raw_exec shim handle: {e}"
            ))
        })?;
        let exit = match shim::recover(&shim).await {
            Recovered::Attached(_) => None,
            Recovered::Exited(exit) => Some(exit),
            Recovered::Lost(msg) => Some(TaskExit::lost(msg)),
        };
        tracing::info!(
            task_id = %config.id,
            pid = shim.task_pid,
            attached = exit.is_none(),
            "task recovered"
        );
        let client = ShimClient::from_handle(shim.clone());
        self.lock().tasks.insert(
            config.id.clone(),
            Task {
                config,
                shim,
                client,
                exit,
            },
        );
        Ok(())
    }

    async fn task_stats(&self, task_id: &str) -> Result<TaskStatsResponse, DriverError> {
        let (client, _, exit) = self.lookup(task_id)?;
        if exit.is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {task_id:?} has exited"
            )));
        }
        let s = client.stats().await.map_err(internal)?;
        let tick_ns = 1_000_000_000 / s.ticks_per_second.max(1);
        Ok(TaskStatsResponse {
            timestamp_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as i64)
                .unwrap_or_default(),
            cpu: Some(CpuStats {
                user_ns_total: s.cpu_user_ticks * tick_ns,
                system_ns_total: s.cpu_system_ticks * tick_ns,
                ..Default::default()
            }),
            memory: Some(MemoryStats {
                rss: s.rss_bytes,
                usage: s.rss_bytes,
                measured: vec!["RSS".into()],
                ..Default::default()
            }),
            pids: 1,
        })
    }

    async fn exec_task(
        &self,
        setup: ExecTaskSetup,
        input: mpsc::Receiver<exec_task_request::Msg>,
        output: mpsc::Sender<exec_task_response::Msg>,
    ) -> Result<ExitResult, DriverError> {
        let config = {
            let st = self.lock();
            let t = st
                .tasks
                .get(&setup.task_id)
                .ok_or_else(|| DriverError::TaskNotFound(setup.task_id.clone()))?;
            if t.exit.is_some() {
                return Err(DriverError::FailedPrecondition(format!(
                    "task {:?} has exited",
                    setup.task_id
                )));
            }
            t.config.clone()
        };
        let env: Vec<(String, String)> = config.env.into_iter().collect();
        let cwd = PathBuf::from(if config.task_dir.is_empty() {
            "/"
        } else {
            &config.task_dir
        });
        let cmd = drover_plugin_sdk::exec::command(
            &setup.command,
            &env,
            &cwd,
            Some(config.user.as_str()),
        )?;
        tracing::info!(task_id = %setup.task_id, command = ?setup.command, tty = setup.tty, "exec");
        drover_plugin_sdk::exec::run(cmd, setup.tty, setup.size, input, output).await
    }
}
