//! The task directory hook: builds the task's own directory — `<task>/{local,secrets,tmp}`,
//! secrets/ on a small tmpfs — through the hardened [`crate::alloc_dir::AllocDir`] before the
//! task's first start ("Task Setup"). A failure (a link planted where one of the directories
//! belongs, a full disk) is a "Setup Failure" that fails the task without a restart: trying
//! again would meet the same directory.

use super::{HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskStatus, event};

#[derive(Default)]
pub(crate) struct TaskDirHook {
    /// The directory is built.
    built: bool,
}

#[tonic::async_trait]
impl TaskHook for TaskDirHook {
    async fn prestart(
        &mut self,
        ctx: &TaskHookCtx<'_>,
        status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        if self.built {
            return Ok(());
        }
        status
            .emit(event("Task Setup", "Building Task Directory"))
            .await;
        let failed = |why: String| HookError::Unrecoverable {
            event: event(
                "Setup Failure",
                &format!("cannot create the task directory: {why}"),
            ),
        };
        let dir = ctx
            .client
            .alloc_dir(&ctx.alloc.id)
            .map_err(|e| failed(e.to_string()))?;
        let task = ctx.task.name.clone();
        tokio::task::spawn_blocking(move || dir.build_task(&task))
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(e.to_string()))?;
        self.built = true;
        Ok(())
    }
}
