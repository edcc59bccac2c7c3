//! The template hook: renders the task's `template` blocks before each start, and while the
//! task runs watches what they read, re-rendering and asking for the blocks' `change_mode`
//! (see `crate::template`).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Action, HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskStatus, event};
use crate::template::Change;

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
    async fn prestart(
        &mut self,
        c: &TaskHookCtx<'_>,
        status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        let mut reported = Vec::new();
        loop {
            let env = &c.env;
            // What the watcher later waits to change from (0 if it cannot be read now).
            let at = c.client.variables_index(&c.alloc.id, None);
            self.last_render.index = tokio::time::timeout(Duration::from_secs(2), at)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or(0);
            let rendered =
                crate::template::render_all(c.client, c.alloc, c.identities, c.task, c.dirs, env);
            let mut stop = c.stop.clone();
            let result = tokio::select! {
                r = rendered => r,
                _ = stop.wait_for(|s| s.is_some()) => return Err(HookError::Stopped),
            };
            match result {
                Ok(rendered) => {
                    self.env = rendered.env;
                    self.last_render.refresh = rendered.refresh;
                    self.last_render.services = rendered.services;
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
                        status.emit(event("Template", &msg)).await;
                        reported = missing;
                    }
                    if !c.sleep_unless_stopped(Duration::from_secs(2)).await {
                        return Err(HookError::Stopped);
                    }
                }
            }
        }
    }

    /// Starts watching the data the templates read (replacing an earlier watcher).
    fn poststart(&mut self, c: &TaskHookCtx<'_>, actions: &mpsc::Sender<Action>) {
        self.exited();
        let from = std::mem::take(&mut self.last_render);
        let (changes, mut changed) = mpsc::channel(4);
        let watch = crate::template::watch(
            c.client.clone(),
            c.alloc.clone(),
            c.identities.clone(),
            c.task.clone(),
            c.dirs.clone(),
            c.env.clone(),
            from,
            changes,
        );
        let actions = actions.clone();
        // What re-rendered templates ask for, passed on to the task runner as actions.
        let relay = async move {
            while let Some(change) = changed.recv().await {
                if actions.send(action(change)).await.is_err() {
                    return;
                }
            }
        };
        let watcher = tokio::spawn(
            async move {
                tokio::join!(watch, relay);
            }
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

/// The action a template change asks of the running task (its `change_mode`).
fn action(change: Change) -> Action {
    match change {
        Change::Restart => Action::Restart {
            why: "Template with change_mode restart re-rendered".into(),
        },
        Change::Signal(signal) => Action::Signal {
            why: format!("Template re-rendered; sending signal {signal}"),
            signal,
        },
    }
}
