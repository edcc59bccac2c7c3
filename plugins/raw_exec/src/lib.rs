//! The `raw_exec` task driver: runs a command as an ordinary process, without isolation,
//! under the task shim so that it outlives the plugin and the agent.
//!
//! Plugin configuration: `enabled` (bool, default false). Task configuration:
//! `command` (string, required) and `args` (list of strings).
//!
//! A task of a group with its own network (`network_ns_path`) runs in that namespace: the
//! shim's child joins it before exec (Nomad's raw_exec group network isolation), and
//! `alloc exec` commands join it too.

use std::path::PathBuf;
use std::sync::Mutex;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::proto::driver::{
    CapabilitiesResponse, ExecTaskSetup, ExitResult, FingerprintResponse, HealthState,
    StartTaskResponse, TaskConfig, exec_task_request, exec_task_response,
};
use drover_plugin_sdk::shim::isolate::netns::NetworkNamespace;
use drover_plugin_sdk::shim::{LaunchSpec, ShimTasks};
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

/// The plugin's `config { ... }` block.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    #[serde(default)]
    enabled: bool,
}

/// The keys a task's `config { ... }` block may hold ([`TaskDriverConfig`]'s), checked at
/// `job validate`.
pub fn task_config_schema() -> Vec<ConfigField> {
    vec![
        ConfigField {
            name: "command".into(),
            r#type: "string".into(),
            required: true,
            description: "The program to run.".into(),
            ..Default::default()
        },
        ConfigField {
            name: "args".into(),
            r#type: "list(string)".into(),
            description: "Its arguments.".into(),
            ..Default::default()
        },
    ]
}

/// A task's `config { ... }` block.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDriverConfig {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Default)]
struct State {
    enabled: bool,
    shims_root: Option<PathBuf>,
}

/// The raw_exec driver.
pub struct RawExec {
    state: Mutex<State>,
    tasks: ShimTasks,
    fingerprint: watch::Sender<FingerprintResponse>,
}

impl Default for RawExec {
    fn default() -> Self {
        Self {
            state: Mutex::new(State::default()),
            tasks: ShimTasks::default(),
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

impl RawExec {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The task's shim client and handle, or its known exit.
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
        spec.log_to(task);
        spec.network_ns =
            Some(PathBuf::from(&task.network_ns_path)).filter(|p| !p.as_os_str().is_empty());
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
            fields: Vec::new(),
        }]
    }

    fn task_config_schema(&self) -> Vec<ConfigField> {
        task_config_schema()
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
            mounts: false,
        }
    }

    fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> {
        self.fingerprint.subscribe()
    }

    fn shim_tasks(&self) -> Option<&ShimTasks> {
        Some(&self.tasks)
    }

    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError> {
        let shims_root = {
            let st = self.lock();
            if !st.enabled {
                return Err(DriverError::FailedPrecondition(
                    "raw_exec is disabled: set enabled = true in its plugin block; it runs tasks without isolation".into(),
                ));
            }
            st.shims_root.clone().ok_or_else(|| {
                DriverError::FailedPrecondition(
                    "raw_exec has no data directory: the agent did not configure it".into(),
                )
            })?
        };
        let spec = self.build_spec(&task)?;
        self.tasks.launch(task, spec, shims_root).await
    }

    async fn exec_task(
        &self,
        setup: ExecTaskSetup,
        input: mpsc::Receiver<exec_task_request::Msg>,
        output: mpsc::Sender<exec_task_response::Msg>,
    ) -> Result<ExitResult, DriverError> {
        let (config, _) = self.tasks.running_config(&setup.task_id)?;
        let env: Vec<(String, String)> = config.env.into_iter().collect();
        let cwd = PathBuf::from(if config.task_dir.is_empty() {
            "/"
        } else {
            &config.task_dir
        });
        let mut cmd = drover_plugin_sdk::exec::command(
            &setup.command,
            &env,
            &cwd,
            Some(config.user.as_str()),
        )?;
        if !config.network_ns_path.is_empty() {
            let path = PathBuf::from(&config.network_ns_path);
            let ns = tokio::task::spawn_blocking(move || NetworkNamespace::open(&path))
                .await
                .map_err(|e| DriverError::Internal(e.to_string()))?
                .map_err(DriverError::FailedPrecondition)?;
            drover_plugin_sdk::exec::join_network(&mut cmd, ns);
        }
        tracing::info!(task_id = %setup.task_id, command = ?setup.command, tty = setup.tty, "exec");
        drover_plugin_sdk::exec::run(cmd, setup.tty, setup.size, input, output).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_config_schema_is_the_config_struct() {
        let e = serde_json::from_value::<TaskDriverConfig>(serde_json::json!({"zz_unknown": 1}))
            .unwrap_err()
            .to_string();
        // "unknown field `zz_unknown`, expected `command` or `args`": the backticked names.
        let expected = e.split("expected").nth(1).unwrap_or_else(|| panic!("{e}"));
        let mut keys: Vec<String> = expected
            .split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect();
        keys.sort();
        let mut names: Vec<String> = task_config_schema().into_iter().map(|f| f.name).collect();
        names.sort();
        assert_eq!(names, keys);
        let cfg: TaskDriverConfig =
            serde_json::from_value(serde_json::json!({"command": "x", "args": ["y"]})).unwrap();
        assert_eq!(cfg.command.as_deref(), Some("x"));
        assert!(task_config_schema()[0].required);
    }
}
