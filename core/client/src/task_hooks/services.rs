//! The services hook: registers the task's `service` blocks in the catalog once the task
//! runs, and removes them when it stops running — before its `shutdown_delay` when it is
//! stopped for good (Nomad's PreKilling), so clients stop finding it before it is signalled.

use tokio::sync::mpsc;

use super::{Action, TaskHook, TaskHookCtx};
use crate::services::{ServiceSync, registrations};

#[derive(Default)]
pub(crate) struct ServicesHook {
    sync: Option<ServiceSync>,
}

#[tonic::async_trait]
impl TaskHook for ServicesHook {
    fn poststart(&mut self, ctx: &TaskHookCtx<'_>, _actions: &mpsc::Sender<Action>) {
        let sync = self
            .sync
            .get_or_insert_with(|| ServiceSync::new(ctx.client.clone()));
        match registrations(
            ctx.alloc,
            &ctx.task.name,
            &ctx.task.services,
            &ctx.env,
            ctx.client.host_ip(),
        ) {
            Ok(regs) => sync.set(regs),
            Err(e) => tracing::warn!(
                alloc_id = %ctx.alloc.id,
                task = %ctx.task.name,
                error = %e,
                "the task's services are not registered"
            ),
        }
    }

    async fn prekill(&mut self) {
        if let Some(sync) = &self.sync {
            sync.clear().await;
        }
    }

    fn exited(&mut self) {
        if let Some(sync) = &self.sync {
            sync.clear_later();
        }
    }
}
