//! Driver-side task events (image pulls, loads, OOM kills), broadcast to the host's
//! `TaskEvents` stream.

use std::collections::BTreeMap;

use drover_plugin_sdk::proto::driver::{TaskConfig, TaskEvent};
use tokio::sync::broadcast;

/// Sends events about one task.
#[derive(Clone)]
pub struct Emitter {
    tx: broadcast::Sender<TaskEvent>,
    task_id: String,
    alloc_id: String,
    task_name: String,
}

impl Emitter {
    pub fn new(tx: broadcast::Sender<TaskEvent>, task: &TaskConfig) -> Self {
        Self {
            tx,
            task_id: task.id.clone(),
            alloc_id: task.alloc_id.clone(),
            task_name: task.name.clone(),
        }
    }

    /// Emits `message` with `annotations`; nobody listening is not an error.
    pub fn emit(&self, message: impl Into<String>, annotations: &[(&str, &str)]) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as i64)
            .unwrap_or_default();
        let annotations: BTreeMap<String, String> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let _ = self.tx.send(TaskEvent {
            task_id: self.task_id.clone(),
            alloc_id: self.alloc_id.clone(),
            task_name: self.task_name.clone(),
            timestamp_unix_nanos: now,
            message: message.into(),
            annotations,
        });
    }
}
