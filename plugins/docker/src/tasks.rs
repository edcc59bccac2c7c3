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

/// Nanoseconds since the epoch of an RFC 3339 time as the engine writes it
/// (`2026-12-07T11:14:41.123456789Z`); 0 when it is not one.
pub fn unix_nanos(s: &str) -> i64 {
    fn num(s: &str) -> Option<i64> {
        s.parse().ok()
    }
    let parse = || -> Option<i64> {
        let (date, rest) = s.split_once('T')?;
        let mut d = date.split('-');
        let (y, m, day) = (num(d.next()?)?, num(d.next()?)?, num(d.next()?)?);
        let (time, offset_s) = match rest.find(['Z', '+', '-']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "Z"),
        };
        let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
        let mut t = hms.split(':');
        let (h, mi, sec) = (num(t.next()?)?, num(t.next()?)?, num(t.next()?)?);
        let nanos = if frac.is_empty() {
            0
        } else {
            num(&format!("{frac:0<9}")[..9])?
        };
        let offset = match offset_s {
            "Z" => 0,
            o => {
                let sign = if o.starts_with('-') { -1 } else { 1 };
                let (oh, om) = o[1..].split_once(':')?;
                sign * (num(oh)? * 3600 + num(om)? * 60)
            }
        };
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146097 + doe - 719468;
        let secs = days * 86400 + h * 3600 + mi * 60 + sec - offset;
        secs.checked_mul(1_000_000_000)?.checked_add(nanos)
    };
    parse().filter(|n| *n > 0).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_times() {
        assert_eq!(unix_nanos("1970-01-01T00:00:01Z"), 1_000_000_000);
        assert_eq!(
            unix_nanos("2021-01-01T00:00:00.5Z"),
            1_609_459_200_500_000_000
        );
        assert_eq!(
            unix_nanos("2021-01-01T01:00:00+01:00"),
            1_609_459_200_000_000_000
        );
        assert_eq!(
            unix_nanos("0001-01-01T00:00:00Z"),
            0,
            "the engine's zero time"
        );
        assert_eq!(unix_nanos("garbage"), 0);
    }
}
