//! `hello`: an example third-party task driver, written against `drover-plugin-sdk` alone.
//!
//! Each task greets someone every `interval_ms` milliseconds, `count` times (0: forever),
//! then exits with `exit_code`. The greeting runs under the SDK's task shim, exactly like
//! first-party drivers' tasks: it survives this plugin and the agent restarting, its output
//! goes to the task's rotated log files, and stop/signal/wait/recover/stats come from
//! [`ShimTasks`] through `TaskDriver::shim_tasks`: the driver itself writes only its
//! configuration and its launch spec.
//!
//! The greeting itself is this same binary, started by the shim as
//! `drover-hello-driver greet <greeting> <name> <count> <interval_ms> <exit_code>`.
//!
//! Plugin block: `plugin "hello" { config { greeting = "Hello" } }`. Task block:
//! `driver = "hello"  config { name = "world"  count = 3  interval_ms = 100 }`.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::proto::driver::{
    CapabilitiesResponse, FingerprintResponse, HealthState, StartTaskResponse, TaskConfig,
    TaskEvent,
};
use drover_plugin_sdk::shim::{LaunchSpec, ShimTasks};
use drover_plugin_sdk::{DriverError, PluginInfo, TaskDriver};
use tokio::sync::{broadcast, watch};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    #[serde(default = "default_greeting")]
    greeting: String,
}

fn default_greeting() -> String {
    "Hello".into()
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskSettings {
    name: String,
    #[serde(default)]
    count: u64,
    #[serde(default = "default_interval")]
    interval_ms: u64,
    #[serde(default)]
    exit_code: i32,
}

fn default_interval() -> u64 {
    1000
}

struct Hello {
    greeting: Mutex<String>,
    shims_root: Mutex<Option<PathBuf>>,
    tasks: ShimTasks,
    fingerprint: watch::Sender<FingerprintResponse>,
    /// What the host hears as "Driver" task events.
    events: broadcast::Sender<TaskEvent>,
}

#[tonic::async_trait]
impl TaskDriver for Hello {
    fn plugin_info(&self) -> PluginInfo {
        PluginInfo {
            name: "hello".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_versions: vec![1],
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        vec![ConfigField {
            name: "greeting".into(),
            r#type: "string".into(),
            required: false,
            description: "The word tasks greet with.".into(),
            default_json: "\"Hello\"".into(),
            fields: Vec::new(),
        }]
    }

    fn task_config_schema(&self) -> Vec<ConfigField> {
        let field = |name: &str, ty: &str, required: bool| ConfigField {
            name: name.into(),
            r#type: ty.into(),
            required,
            ..Default::default()
        };
        vec![
            field("name", "string", true),
            field("count", "number", false),
            field("interval_ms", "number", false),
            field("exit_code", "number", false),
        ]
    }

    fn task_events(&self) -> Option<broadcast::Receiver<TaskEvent>> {
        Some(self.events.subscribe())
    }

    async fn set_config(
        &self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), DriverError> {
        let cfg: PluginConfig = serde_json::from_value(config)
            .map_err(|e| DriverError::InvalidArgument(format!("hello plugin config: {e}")))?;
        *self.greeting.lock().unwrap_or_else(|p| p.into_inner()) = cfg.greeting;
        *self.shims_root.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(PathBuf::from(agent.data_dir).join("shims"));
        Ok(())
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            send_signals: true,
            exec: false,
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
        let settings: TaskSettings =
            serde_json::from_slice(&task.driver_config_json).map_err(|e| {
                DriverError::InvalidArgument(format!("task {:?}: bad hello config: {e}", task.name))
            })?;
        let shims_root = self
            .shims_root
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| DriverError::FailedPrecondition("hello is not configured".into()))?;
        let exe = std::env::current_exe()
            .map_err(|e| DriverError::Internal(format!("cannot find my own executable: {e}")))?;
        let greeting = self
            .greeting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut spec = LaunchSpec::new(
            &task.id,
            &exe.to_string_lossy(),
            vec![
                "greet".into(),
                greeting,
                settings.name,
                settings.count.to_string(),
                settings.interval_ms.to_string(),
                settings.exit_code.to_string(),
            ],
            PathBuf::from(&task.task_dir),
        );
        spec.env = task.env.clone().into_iter().collect();
        spec.log_to(&task);
        // Progress, as a driver pulling an image reports it (nobody may be listening).
        let _ = self.events.send(TaskEvent {
            task_id: task.id.clone(),
            alloc_id: task.alloc_id.clone(),
            task_name: task.name.clone(),
            timestamp_unix_nanos: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            message: format!("Preparing to greet {}", settings_name(&spec)),
            annotations: Default::default(),
        });
        self.tasks.launch(task, spec, shims_root).await
    }
}

/// The name a launch spec greets (its third argument).
fn settings_name(spec: &LaunchSpec) -> &str {
    spec.args.get(2).map_or("", String::as_str)
}

/// The task itself: `greet <greeting> <name> <count> <interval_ms> <exit_code>`.
fn greet(args: &[String]) -> i32 {
    let [greeting, name, count, interval, code] = args else {
        eprintln!("usage: greet <greeting> <name> <count> <interval_ms> <exit_code>");
        return 2;
    };
    let (Ok(count), Ok(interval), Ok(code)) = (
        count.parse::<u64>(),
        interval.parse::<u64>(),
        code.parse::<i32>(),
    ) else {
        eprintln!("greet: count, interval_ms and exit_code must be numbers");
        return 2;
    };
    let mut n = 0;
    while count == 0 || n < count {
        n += 1;
        println!("{greeting}, {name}! ({n})");
        std::thread::sleep(Duration::from_millis(interval));
    }
    code
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).is_some_and(|a| a == "greet") {
        std::process::exit(greet(&args[2..]));
    }
    drover_plugin_sdk::main(|| Hello {
        greeting: Mutex::new(default_greeting()),
        shims_root: Mutex::new(None),
        tasks: ShimTasks::default(),
        fingerprint: watch::channel(FingerprintResponse {
            attributes: [("driver.hello".to_string(), "1".to_string())].into(),
            health: HealthState::Healthy as i32,
            health_description: "healthy".into(),
        })
        .0,
        events: broadcast::channel(64).0,
    })
}
