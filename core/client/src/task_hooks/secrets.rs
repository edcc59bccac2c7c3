//! The secrets hook: fetches the task's `secret` blocks (Nomad 1.11) before its first start
//! — each from its provider (see `crate::secret_sources`) — and offers their keys as
//! `${secret.<name>.<key>}` to the interpolation of the task's `env`, `config` and the hooks
//! after it (templates read them with `env "secret.<name>.<key>"`). The values are no
//! environment variables of the task, are never logged and never written to disk. A failure
//! is a "Task hook failed" event naming the secret and its provider; the restart policy
//! decides whether the task tries again (and fetches again).

use std::collections::BTreeMap;

use super::{HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskStatus, event};

#[derive(Default)]
pub(crate) struct SecretsHook {
    /// `secret.<name>.<key>` -> value, once fetched.
    vars: BTreeMap<String, String>,
    fetched: bool,
}

impl std::fmt::Debug for SecretsHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The names only: values never reach a log.
        f.debug_struct("SecretsHook")
            .field("names", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[tonic::async_trait]
impl TaskHook for SecretsHook {
    async fn prestart(
        &mut self,
        c: &TaskHookCtx<'_>,
        _status: &mut TaskStatus,
    ) -> Result<(), HookError> {
        if self.fetched {
            return Ok(());
        }
        let mut vars = BTreeMap::new();
        for secret in &c.task.secrets {
            // An exec plugin's env may use what the blocks before it fetched.
            let mut env = c.env.clone();
            env.extend(vars.clone());
            let fetch = crate::secret_sources::fetch_block(
                c.client,
                c.alloc,
                c.job,
                secret,
                &env,
                c.identities,
            );
            let mut stop = c.stop.clone();
            let fetched = tokio::select! {
                r = fetch => r,
                _ = stop.wait_for(|s| s.is_some()) => return Err(HookError::Stopped),
            };
            match fetched {
                Ok(v) => vars.extend(v),
                Err(e) => {
                    let msg = format!("prestart hook \"secrets\" failed: {e}");
                    return Err(HookError::Failed {
                        event: event("Task hook failed", &msg),
                        restart_reason: "Secret fetch failed",
                    });
                }
            }
        }
        tracing::debug!(secrets = c.task.secrets.len(), "secrets fetched");
        self.vars = vars;
        self.fetched = true;
        Ok(())
    }

    fn interpolation(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.vars)
    }
}
