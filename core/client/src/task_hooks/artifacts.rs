//! The artifacts hook: fetches the task's `artifact` blocks into its directory before its
//! first start ("Downloading Artifacts"); restarts do not fetch them again, as in Nomad. A
//! failure is a "Failed Artifact Download" event the restart policy may retry.

use super::{HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskStatus, event};

#[derive(Default)]
pub(crate) struct ArtifactsHook {
    /// The artifacts are in place.
    fetched: bool,
}

#[tonic::async_trait]
impl TaskHook for ArtifactsHook {
    async fn prestart(
        &mut self,
        c: &TaskHookCtx<'_>,
        status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        if self.fetched {
            return Ok(());
        }
        status
            .emit(event(
                "Downloading Artifacts",
                "Client is downloading artifacts",
            ))
            .await;
        let mut vars = c.env.clone();
        if crate::artifact::needs_node(&c.task.artifacts) {
            let node = c.client.node().await;
            vars.extend(crate::artifact::node_vars(
                &node,
                &c.client.inner.config.region,
            ));
        }
        let task_dir = std::path::PathBuf::from(&c.dirs.task_dir);
        let fetch = crate::artifact::fetch_all(
            &c.task.artifacts,
            &task_dir,
            &vars,
            &c.client.inner.config.artifacts,
        );
        let mut stop = c.stop.clone();
        let fetched = tokio::select! {
            r = fetch => r,
            _ = stop.wait_for(|s| s.is_some()) => return Err(HookError::Stopped),
        };
        match fetched {
            Ok(()) => {
                self.fetched = true;
                Ok(())
            }
            Err(e) => {
                let e = e.to_string();
                let mut ev = event("Failed Artifact Download", &e);
                ev.download_error = e;
                Err(HookError::Failed {
                    event: ev,
                    restart_reason: "Failed Artifact Download",
                })
            }
        }
    }
}
