//! What a task runner reports to its allocation runner: the task's state (with its last
//! events) and its driver handle, sent as [`TaskMsg`]s. Task hooks emit their events through
//! the same [`TaskStatus`].

use drover_model::{TaskEvent, TaskState, now_nanos};
use tokio::sync::mpsc;

/// How many events a task's state keeps (the oldest go first).
const MAX_EVENTS: usize = 20;

pub enum TaskMsg {
    /// The task's driver handle (protobuf bytes), or None once the task is gone.
    Handle(String, Option<Vec<u8>>),
    State(String, TaskState),
}

/// A task event of `kind` with `message`, now.
pub fn event(kind: &str, message: &str) -> TaskEvent {
    TaskEvent {
        kind: kind.into(),
        time: now_nanos(),
        message: message.into(),
        display_message: message.into(),
        ..Default::default()
    }
}

/// One task's state, and the channel that reports it to the allocation runner.
pub(crate) struct TaskStatus {
    task: String,
    pub(crate) state: TaskState,
    tx: mpsc::Sender<TaskMsg>,
}

impl TaskStatus {
    pub(crate) fn new(task: String, state: TaskState, tx: mpsc::Sender<TaskMsg>) -> TaskStatus {
        TaskStatus { task, state, tx }
    }

    /// Records an event in the task's state and reports the state.
    pub(crate) async fn emit(&mut self, e: TaskEvent) {
        tracing::info!(event = %e.kind, message = %e.message, "task event");
        self.state.events.push(e);
        if self.state.events.len() > MAX_EVENTS {
            self.state.events.remove(0);
        }
        self.send().await;
    }

    /// Reports the task's state.
    pub(crate) async fn send(&self) {
        let _ = self
            .tx
            .send(TaskMsg::State(self.task.clone(), self.state.clone()))
            .await;
    }

    /// Reports the task's driver handle (protobuf bytes; None once the task is gone).
    pub(crate) async fn send_handle(&self, handle: Option<Vec<u8>>) {
        let _ = self
            .tx
            .send(TaskMsg::Handle(self.task.clone(), handle))
            .await;
    }
}
