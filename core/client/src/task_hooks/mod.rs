//! Task hooks: what runs around a task's start, each a small module with its own state, as
//! Nomad's task runner hooks are. The task runner calls every hook in order:
//!
//! - `prestart` before each start (not after a reattach): fetch artifacts, render
//!   templates. A hook that fails names the event to emit and the reason the restart policy
//!   is told; a stop asked for meanwhile ends the wait.
//! - `poststart` once the task runs (started, or reattached after an agent restart): a hook
//!   may keep working while the task runs (the template watcher) and ask the runner to
//!   signal or restart the task through [`Action`]s.
//! - `exited` when the task stopped running.
//!
//! A hook may add to the task's environment (`env = true` templates).

mod artifacts;
mod templates;

use std::collections::BTreeMap;

use drover_model::{Task, TaskEvent};
use tokio::sync::mpsc;

use crate::task_runner::Runner;

/// What a hook running beside the task asks of the task runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Send `signal`; `why` is the "Signaling" event's message.
    Signal { signal: String, why: String },
    /// Stop the task so that it starts again, without counting against the restart policy;
    /// `why` is the "Restart Signaled" event's message.
    Restart { why: String },
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
}

#[tonic::async_trait]
pub(crate) trait TaskHook: Send + Sync {
    /// Runs before each start of the task.
    async fn prestart(&mut self, _runner: &mut Runner) -> Result<(), HookError> {
        Ok(())
    }

    /// Runs once the task is running; `actions` reaches the task runner while it waits.
    fn poststart(&mut self, _runner: &Runner, _actions: &mpsc::Sender<Action>) {}

    /// Runs when the task is no longer running.
    fn exited(&mut self) {}

    /// What the hook adds to the task's environment.
    fn env(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

/// The hooks of a task, in the order they run.
pub(crate) fn for_task(task: &Task) -> Vec<Box<dyn TaskHook>> {
    let mut hooks: Vec<Box<dyn TaskHook>> = Vec::new();
    if !task.artifacts.is_empty() {
        hooks.push(Box::new(artifacts::ArtifactsHook::default()));
    }
    if !task.templates.is_empty() {
        hooks.push(Box::new(templates::TemplatesHook::default()));
    }
    hooks
}
