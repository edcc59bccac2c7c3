//! The driver's table of tasks: each task's container, and a watch on its exit that keeps
//! waiting through engine outages and collects the exit code and OOM flag from the engine.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use bollard::query_parameters::WaitContainerOptionsBuilder;
use drover_plugin_sdk::DriverError;
use drover_plugin_sdk::proto::driver::{ExitResult, TaskConfig};
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::events::Emitter;
use crate::logs::LogFollower;

/// What the task handle keeps (`TaskHandle.driver_state`, JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DriverState {
    pub container_id: String,
    pub container_name: String,
    /// The image's id (`sha256:...`) and the reference it was started as.
    pub image_id: String,
    pub image: String,
}

/// One task the driver tracks.
pub struct TaskEntry {
    pub config: TaskConfig,
    pub state: DriverState,
    /// `None` while the container runs, then its exit.
    pub exit: watch::Receiver<Option<ExitResult>>,
    watcher: JoinHandle<()>,
}

impl Drop for TaskEntry {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// Task id -> its entry.
#[derive(Default)]
pub struct Tasks {
    map: Mutex<BTreeMap<String, Arc<TaskEntry>>>,
}

/// How long the watch waits before asking an unreachable engine again.
const RETRY: Duration = Duration::from_secs(1);
/// How long an exit waits for the container's last output to reach the log files.
const LOG_DRAIN: Duration = Duration::from_secs(10);

pub fn not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// The exit of a container that is no longer running, `None` while it runs.
pub fn exit_of(info: &ContainerInspectResponse) -> Option<ExitResult> {
    let st = info.state.as_ref()?;
    if st.running.unwrap_or(false) || st.restarting.unwrap_or(false) {
        return None;
    }
    Some(ExitResult {
        exit_code: st
            .exit_code
            .unwrap_or(0)
            .clamp(i32::MIN as i64, i32::MAX as i64) as i32,
        signal: 0,
        oom_killed: st.oom_killed.unwrap_or(false),
        err: st.error.clone().unwrap_or_default(),
    })
}

impl Tasks {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<TaskEntry>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, task_id: &str) -> Result<Arc<TaskEntry>, DriverError> {
        self.lock()
            .get(task_id)
            .cloned()
            .ok_or_else(|| DriverError::TaskNotFound(task_id.into()))
    }

    pub fn contains(&self, task_id: &str) -> bool {
        self.lock().contains_key(task_id)
    }

    pub fn remove(&self, task_id: &str) -> Option<Arc<TaskEntry>> {
        self.lock().remove(task_id)
    }

    /// Every tracked task's container id (what the gc's reaper must leave alone).
    pub fn container_ids(&self) -> Vec<String> {
        self.lock()
            .values()
            .map(|e| e.state.container_id.clone())
            .collect()
    }

    /// Tracks a started (or recovered) container and watches for its exit; the exit is
    /// published once `logs` (the container's log follower, if any) has written the last
    /// of its output.
    pub fn track(
        &self,
        engine: Arc<Engine>,
        config: TaskConfig,
        state: DriverState,
        events: Emitter,
        logs: Option<LogFollower>,
    ) {
        let (tx, rx) = watch::channel(None);
        let watcher = tokio::spawn(watch_exit(
            engine,
            state.container_id.clone(),
            tx,
            events,
            logs,
        ));
        let entry = TaskEntry {
            config: config.clone(),
            state,
            exit: rx,
            watcher,
        };
        self.lock().insert(config.id, Arc::new(entry));
    }
}

/// Waits for the container's exit, through engine outages, and publishes it after the
/// container's output is in the log files.
async fn watch_exit(
    engine: Arc<Engine>,
    id: String,
    tx: watch::Sender<Option<ExitResult>>,
    events: Emitter,
    logs: Option<LogFollower>,
) {
    loop {
        let Ok(client) = engine.client() else {
            tokio::time::sleep(RETRY).await;
            continue;
        };
        let opts = WaitContainerOptionsBuilder::default()
            .condition("not-running")
            .build();
        let waited = Box::pin(client.wait_container(&id, Some(opts)))
            .next()
            .await;
        let wait_code = match waited {
            Some(Ok(r)) => Some(r.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Some(code),
            Some(Err(e)) if not_found(&e) => None,
            _ => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let exit = match client.inspect_container(&id, None).await {
            Ok(info) => match exit_of(&info) {
                Some(exit) => exit,
                None => continue,
            },
            Err(e) if not_found(&e) => ExitResult {
                exit_code: wait_code.unwrap_or(-1) as i32,
                signal: 0,
                oom_killed: false,
                err: format!("container {id} was removed"),
            },
            Err(_) => {
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        if exit.oom_killed {
            events.emit("OOM Killed", &[("container_id", id.as_str())]);
        }
        tracing::info!(container = %id, code = exit.exit_code, oom = exit.oom_killed, "container exited");
        if let Some(mut logs) = logs {
            match tokio::time::timeout(LOG_DRAIN, logs.finished()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(container = %id, error = %e, "the log follower failed")
                }
                Err(_) => {
                    tracing::warn!(container = %id, "the container's output was still being written {LOG_DRAIN:?} after its exit")
                }
            }
        }
        let _ = tx.send(Some(exit));
        return;
    }
}
