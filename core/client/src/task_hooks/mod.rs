//! Task hooks: what runs around a task's start, each a small module with its own state and
//! errors, as Nomad's task runner hooks are. The task runner calls every hook in the order
//! of [`for_task`]; a hook implements only the phases it needs:
//!
//! - `prestart` before each start (not after a reattach): build the task directory, fetch
//!   secrets and artifacts, render templates, resolve volumes. A hook that fails names the event to emit and the reason
//!   the restart policy is told; a stop asked for meanwhile ends the wait.
//! - `configure` while the driver's task config is built: a hook fills in what it owns (log
//!   paths, mounts).
//! - `poststart` once the task runs (started, or reattached after an agent restart): a hook
//!   may keep working while the task runs (the template watcher) and ask the runner to
//!   signal or restart the task through [`Action`]s.
//! - `prekill` when the task is about to be stopped for good, before its `shutdown_delay`
//!   (its services leave the catalog).
//! - `exited` when the task stopped running (it may start again).
//! - `stop` when the task runner ends for good.
//! - `update` when the server changed the allocation.
//!
//! A hook may add to the task's environment (`env = true` templates), or to what `${...}`
//! interpolation resolves without it being in the environment (`secret.<name>.<key>`).
//! Hooks see the task through a [`TaskHookCtx`], never through the runner itself.

mod artifacts;
mod identity;
mod logs;
mod secrets;
mod services;
mod task_dir;
mod templates;
mod volumes;

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::{Allocation, Job, Task, TaskEvent};
use drover_proto::driver::TaskConfig;
use tokio::sync::{mpsc, watch};

use crate::Client;
use crate::env::TaskDirs;
use crate::task_status::TaskStatus;

/// What a hook running beside the task asks of the task runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `signal`; `why` is the "Signaling" event's message.
    Signal { signal: String, why: String },
    /// Stop the task so that it starts again, without counting against the restart policy;
    /// `why` is the "Restart Signaled" event's message.
    Restart { why: String },
    /// Stop the task as failed (a check's `check_restart`): whether it starts again is the
    /// restart policy's decision, and the restart counts against it; `why` is the "Restart
    /// Signaled" event's message.
    RestartUnhealthy { why: String },
}

/// Why a prestart hook did not let the task start.
#[derive(Debug)]
pub(crate) enum HookError {
    /// The task was asked to stop meanwhile.
    Stopped,
    /// The hook failed: the event to emit, and the reason the restart policy is told.
    Failed {
        event: TaskEvent,
        restart_reason: &'static str,
    },
    /// The hook failed in a way a restart cannot mend: the event to emit; the task fails.
    Unrecoverable { event: TaskEvent },
}

/// What a hook sees of its task.
pub(crate) struct TaskHookCtx<'a> {
    pub client: &'a Client,
    pub alloc: &'a Allocation,
    pub job: &'a Job,
    pub task: &'a Task,
    pub dirs: &'a TaskDirs,
    /// Set (with the reason) once the task must stop.
    pub stop: &'a watch::Receiver<Option<String>>,
    /// The task's workload identities (the identity hook signs them before the hooks
    /// after it run).
    pub identities: &'a crate::identities::TaskIdentities,
    /// The task's environment so far: `NOMAD_*`/`DROVER_*`, its `env` block, and what the
    /// hooks before this one add — with the `secret.<name>.<key>` names they fetched, for
    /// interpolation (never given to the task as variables).
    pub env: BTreeMap<String, String>,
    /// The allocation's network namespace, when it has its own (bridge, CNI).
    pub netns: Option<&'a str>,
}

impl TaskHookCtx<'_> {
    /// Sleeps `d`; false (at once) if the task is asked to stop meanwhile.
    pub(crate) async fn sleep_unless_stopped(&self, d: Duration) -> bool {
        let mut stop = self.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stop.borrow().is_none(),
            _ = stop.wait_for(|s| s.is_some()) => false,
        }
    }
}

#[tonic::async_trait]
pub(crate) trait TaskHook: Send + Sync {
    /// Runs before each start of the task; `status` takes the events it emits meanwhile.
    async fn prestart(
        &mut self,
        _ctx: &TaskHookCtx<'_>,
        _status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        Ok(())
    }

    /// Fills in what the hook owns in the config the driver starts the task with.
    fn configure(&self, _ctx: &TaskHookCtx<'_>, _config: &mut TaskConfig) {}

    /// Runs once the task is running; `actions` reaches the task runner while it waits.
    fn poststart(&mut self, _ctx: &TaskHookCtx<'_>, _actions: &mpsc::Sender<Action>) {}

    /// Runs before the task is stopped for good, before its shutdown delay starts.
    async fn prekill(&mut self) {}

    /// Runs when the task is no longer running (it may start again).
    fn exited(&mut self) {}

    /// Runs when the task runner ends for good.
    fn stop(&mut self) {
        self.exited();
    }

    /// Runs when the server changed the allocation.
    fn update(&mut self, _alloc: &Allocation) {}

    /// What the hook adds to the task's environment.
    fn env(&self) -> Option<&BTreeMap<String, String>> {
        None
    }

    /// Names the task's `${...}` interpolation resolves that are not environment variables
    /// of the task (`secret.<name>.<key>`).
    fn interpolation(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

/// The hooks of a task, in the order they run. A new task hook is a module here and one
/// line in this list.
pub(crate) fn for_task(task: &Task) -> Vec<Box<dyn TaskHook>> {
    let mut hooks: Vec<Box<dyn TaskHook>> = vec![
        Box::new(task_dir::TaskDirHook::default()),
        Box::new(logs::LogsHook),
    ];
    if task.identities.iter().any(|i| i.env || i.file) {
        hooks.push(Box::new(identity::IdentityHook::default()));
    }
    if !task.secrets.is_empty() {
        hooks.push(Box::new(secrets::SecretsHook::default()));
    }
    if !task.artifacts.is_empty() {
        hooks.push(Box::new(artifacts::ArtifactsHook::default()));
    }
    if !task.templates.is_empty() {
        hooks.push(Box::new(templates::TemplatesHook::default()));
    }
    if !task.volume_mounts.is_empty() {
        hooks.push(Box::new(volumes::VolumesHook::default()));
    }
    if !task.services.is_empty() {
        hooks.push(Box::new(services::ServicesHook::default()));
    }
    hooks
}
