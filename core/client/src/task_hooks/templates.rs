//! The template hook: renders the task's `template` blocks before each start, and while the
//! task runs watches what they read, re-rendering and asking for the blocks' `change_mode`
//! (see `crate::template`).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Action, HookError, TaskHook};
use crate::task_runner::{Runner, event};

#[derive(Default)]
pub(crate) struct TemplatesHook {
    /// What the `env = true` templates add to the task's environment.
    env: BTreeMap<String, String>,
    /// Where the last render left off (for the watcher).
    last_render: crate::template::LastRender,
    /// The running task's watcher.
    watcher: Option<tokio::task::AbortHandle>,
}

#[tonic::async_trait]
impl TaskHook for TemplatesHook {
    /// Renders the templates. A variable a template needs that does not exist yet keeps the
    /// task waiting (Nomad's behaviour), reported once per change in a "Template" event.
    async fn prestart(&mut self, r: &mut Runner) -> Result<(), HookError> {
        let mut reported = Vec::new();
        loop {
            let env = r.base_env();
            // What the watcher later waits to change from (0 if it cannot be read now).
            let c = &r.ctx;
            let at = c.client.variables_index(&c.alloc.id, None);
            self.last_render.index = tokio::time::timeout(Duration::from_secs(2), at)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let rendered = crate::template::render_all(&c.client, &c.alloc, &c.task, &c.dirs, &env);
            let mut stop = c.stop.clone();
            let result = tokio::select! {
                r = rendered => r,
                _ = stop.wait_for(|s| s.is_some()) => return Err(HookError::Stopped),
            };
            match result {
                Ok(rendered) => {
                    self.env = rendered.env;
                    self.last_render.refresh = rendered.refresh;
                    return Ok(());
                }
                Err(crate::template::TemplateFailure::Failed(e)) => {
                    let msg = format!("prestart hook \"template\" failed: {e}");
                    return Err(HookError::Failed {
                        event: event("Task hook failed", &msg),
                        restart_reason: "Template failure",
                    });
                }
                Err(crate::template::TemplateFailure::Missing(missing)) => {
                    if missing != reported {
                        let msg = format!("Missing: {}", missing.join(", "));
                        r.emit(event("Template", &msg)).await;
                        reported = missing;
                    }
                    if !r.sleep_unless_stopped(Duration::from_secs(2)).await {
                        return Err(HookError::Stopped);
                    }
                }
            }
        }
    }

    /// Starts watching the data the templates read (replacing an earlier watcher).
    fn poststart(&mut self, r: &Runner, actions: &mpsc::Sender<Action>) {
        self.exited();
        let env = r.base_env();
        let from = std::mem::take(&mut self.last_render);
        let c = &r.ctx;
        let watcher = tokio::spawn(
            crate::template::watch(
                c.client.clone(),
                c.alloc.clone(),
                c.task.clone(),
                c.dirs.clone(),
                env,
                from,
                actions.clone(),
            )
            .in_current_span(),
        );
        self.watcher = Some(watcher.abort_handle());
    }

    fn exited(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }

    fn env(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.env)
    }
}
