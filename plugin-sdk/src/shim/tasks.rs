//! The tasks a shim-based driver runs: what every such driver keeps per task (its config,
//! its shim, its exit once known) and the driver RPCs that only talk to the shim — wait,
//! stop, destroy, inspect, signal, recover, stats. A driver launches the shim its own way
//! ([`super::launch`]), hands the handle to [`ShimTasks::started`], and forwards those RPCs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use drover_proto::driver::{
    CpuStats, ExitResult, InspectTaskResponse, MemoryStats, StartTaskResponse, TaskConfig,
    TaskHandle, TaskStatsResponse,
};

use super::{
    LaunchSpec, Recovered, ShimClient, ShimError, ShimHandle, TaskExit, read_exit_file, recover,
};
use crate::DriverError;

/// The version of the [`TaskHandle`]s this module writes (`driver_state` is a
/// [`ShimHandle`] as JSON).
pub const TASK_HANDLE_VERSION: u32 = 1;

struct Task {
    config: TaskConfig,
    shim: ShimHandle,
    client: ShimClient,
    exit: Option<TaskExit>,
}

/// The tasks of one driver, by task id.
#[derive(Default)]
pub struct ShimTasks {
    tasks: Mutex<BTreeMap<String, Task>>,
}

/// `ExitResult` of a shim's `TaskExit`.
pub fn exit_result(exit: &TaskExit) -> ExitResult {
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

use super::now_nanos;

impl ShimTasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Task>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lookup(&self, id: &str) -> Result<(ShimClient, ShimHandle, Option<TaskExit>), DriverError> {
        let tasks = self.lock();
        let t = tasks
            .get(id)
            .ok_or_else(|| DriverError::TaskNotFound(id.to_string()))?;
        Ok((t.client.clone(), t.shim.clone(), t.exit.clone()))
    }

    fn record_exit(&self, id: &str, exit: &TaskExit) {
        if let Some(t) = self.lock().get_mut(id) {
            t.exit = Some(exit.clone());
        }
    }

    /// Refuses a task id that is already known (a duplicate StartTask).
    pub fn check_new(&self, id: &str) -> Result<(), DriverError> {
        if self.lock().contains_key(id) {
            return Err(DriverError::InvalidArgument(format!(
                "task {id:?} is already running"
            )));
        }
        Ok(())
    }

    /// Launches `config`'s task under a new shim (this executable, run as `task-shim`) with
    /// `spec`, state under `shims_root`, and records it: the whole of StartTask once the
    /// driver has turned the task's config into a [`LaunchSpec`].
    pub async fn launch(
        &self,
        config: TaskConfig,
        spec: LaunchSpec,
        shims_root: PathBuf,
    ) -> Result<StartTaskResponse, DriverError> {
        self.check_new(&config.id)?;
        let exe = std::env::current_exe().map_err(|e| {
            DriverError::Internal(format!("cannot find this plugin's own executable: {e}"))
        })?;
        let handle = tokio::task::spawn_blocking(move || super::launch(&spec, &exe, &shims_root))
            .await
            .map_err(|e| DriverError::Internal(format!("the launch thread failed: {e}")))?
            .map_err(|e| match e {
                ShimError::Launch(msg) => {
                    DriverError::InvalidArgument(format!("task {:?}: {msg}", config.name))
                }
                other => DriverError::Internal(format!("task {:?}: {other}", config.name)),
            })?;
        Ok(self.started(config, handle))
    }

    /// Records a task the driver has just launched under `shim`, and answers StartTask.
    pub fn started(&self, config: TaskConfig, shim: ShimHandle) -> StartTaskResponse {
        let driver_state = serde_json::to_vec(&shim).expect("a shim handle serializes");
        let response = StartTaskResponse {
            handle: Some(TaskHandle {
                version: TASK_HANDLE_VERSION,
                config: Some(config.clone()),
                driver_state,
            }),
            pid: i64::from(shim.task_pid),
        };
        tracing::info!(task_id = %config.id, pid = shim.task_pid, shim = %shim.shim_id, "task started");
        let client = ShimClient::from_handle(shim.clone());
        self.lock().insert(
            config.id.clone(),
            Task {
                config,
                shim,
                client,
                exit: None,
            },
        );
        response
    }

    /// What a running task was started with (for exec: its environment, directory, user).
    pub fn running_config(&self, id: &str) -> Result<(TaskConfig, ShimHandle), DriverError> {
        let tasks = self.lock();
        let t = tasks
            .get(id)
            .ok_or_else(|| DriverError::TaskNotFound(id.to_string()))?;
        if t.exit.is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {id:?} has exited"
            )));
        }
        Ok((t.config.clone(), t.shim.clone()))
    }

    /// WaitTask: the recorded exit, or the shim's answer once the task exits.
    pub async fn wait(&self, id: &str) -> Result<ExitResult, DriverError> {
        let (client, _, exit) = self.lookup(id)?;
        if let Some(exit) = exit {
            return Ok(exit_result(&exit));
        }
        let exit = match client.wait().await {
            Ok(exit) => exit,
            Err(ShimError::Lost(msg)) => TaskExit::lost(msg),
            Err(e) => return Err(internal(e)),
        };
        self.record_exit(id, &exit);
        Ok(exit_result(&exit))
    }

    /// StopTask: `signal`, then SIGKILL after `timeout` (the shim escalates).
    pub async fn stop(&self, id: &str, signal: &str, timeout: Duration) -> Result<(), DriverError> {
        let (client, _, exit) = self.lookup(id)?;
        if exit.is_some() {
            return Ok(());
        }
        match client.stop(signal, timeout).await {
            Ok(()) => Ok(()),
            Err(ShimError::Refused(msg)) => Err(DriverError::InvalidArgument(msg)),
            Err(e) => {
                // The shim may have finished meanwhile.
                if let Ok(Some(exit)) = read_exit_file(&client.handle().shim_dir) {
                    self.record_exit(id, &exit);
                    return Ok(());
                }
                Err(internal(e))
            }
        }
    }

    /// DestroyTask: forgets the task and removes its shim's state (`force` kills it first).
    pub async fn destroy(&self, id: &str, force: bool) -> Result<(), DriverError> {
        let (client, handle, exit) = self.lookup(id)?;
        if exit.is_none()
            && let Ok(info) = client.inspect().await
            && info.state == "running"
        {
            if !force {
                return Err(DriverError::FailedPrecondition(format!(
                    "task {id:?} is still running: stop it first, or destroy it with force"
                )));
            }
            client
                .stop("SIGKILL", Duration::ZERO)
                .await
                .map_err(internal)?;
            let _ = tokio::time::timeout(Duration::from_secs(10), client.wait()).await;
        }
        self.lock().remove(id);
        let dir = handle.shim_dir.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
        tracing::info!(task_id = id, "task destroyed");
        Ok(())
    }

    /// InspectTask.
    pub async fn inspect(&self, id: &str) -> Result<InspectTaskResponse, DriverError> {
        let (client, handle, exit) = self.lookup(id)?;
        let exited = |exit: &TaskExit| InspectTaskResponse {
            task_id: id.to_string(),
            state: "exited".into(),
            pid: i64::from(handle.task_pid),
            started_at_unix_nanos: handle.task_started_at_unix_nanos,
            result: Some(exit_result(exit)),
        };
        if let Some(exit) = &exit {
            return Ok(exited(exit));
        }
        match client.inspect().await {
            Ok(info) => Ok(InspectTaskResponse {
                task_id: id.to_string(),
                state: info.state,
                pid: i64::from(info.task_pid),
                started_at_unix_nanos: info.started_at_unix_nanos,
                result: info.exit.as_ref().map(exit_result),
            }),
            Err(e) => match read_exit_file(&handle.shim_dir) {
                Ok(Some(exit)) => {
                    self.record_exit(id, &exit);
                    Ok(exited(&exit))
                }
                _ => Err(internal(e)),
            },
        }
    }

    /// SignalTask.
    pub async fn signal(&self, id: &str, signal: &str) -> Result<(), DriverError> {
        let (client, _, exit) = self.lookup(id)?;
        if exit.is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {id:?} has exited"
            )));
        }
        client.signal(signal).await.map_err(|e| match e {
            ShimError::Refused(msg) => DriverError::InvalidArgument(msg),
            other => internal(other),
        })
    }

    /// RecoverTask: reconnects to the task's shim from its handle (or reads the exit it
    /// recorded while nobody listened).
    pub async fn recover(&self, handle: TaskHandle) -> Result<(), DriverError> {
        let config = handle.config.ok_or_else(|| {
            DriverError::InvalidArgument("the task handle has no task config".into())
        })?;
        if self.lock().contains_key(&config.id) {
            return Ok(());
        }
        if handle.version > TASK_HANDLE_VERSION {
            return Err(DriverError::InvalidArgument(format!(
                "task handle version {} is newer than this driver understands ({TASK_HANDLE_VERSION})",
                handle.version
            )));
        }
        let shim: ShimHandle = serde_json::from_slice(&handle.driver_state).map_err(|e| {
            DriverError::InvalidArgument(format!(
                "the task handle's driver state is not a shim handle: {e}"
            ))
        })?;
        let exit = match recover(&shim).await {
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
        self.lock().insert(
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

    /// One TaskStats sample: of an isolated task's cgroup when the shim has one, else of
    /// the task's main process (/proc).
    pub async fn stats(&self, id: &str) -> Result<TaskStatsResponse, DriverError> {
        let (client, _, exit) = self.lookup(id)?;
        if exit.is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {id:?} has exited"
            )));
        }
        let s = client.stats().await.map_err(internal)?;
        if let Some(cg) = s.cgroup {
            // An isolated task: every process of it, from its cgroup.
            return Ok(TaskStatsResponse {
                timestamp_unix_nanos: now_nanos(),
                cpu: Some(CpuStats {
                    user_ns_total: cg.cpu_user_ns,
                    system_ns_total: cg.cpu_system_ns,
                    ..Default::default()
                }),
                memory: Some(MemoryStats {
                    rss: cg.rss,
                    cache: cg.cache,
                    swap: cg.swap,
                    usage: cg.memory_usage,
                    max_usage: cg.memory_max_usage,
                    measured: ["RSS", "Cache", "Swap", "Usage", "Max Usage"]
                        .map(String::from)
                        .to_vec(),
                }),
                pids: cg.pids,
            });
        }
        let tick_ns = 1_000_000_000 / s.ticks_per_second.max(1);
        Ok(TaskStatsResponse {
            timestamp_unix_nanos: now_nanos(),
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
}
