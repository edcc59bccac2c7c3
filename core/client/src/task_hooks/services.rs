//! The services hook: registers the task's `service` blocks in the catalog once the task
//! runs, and removes them when it stops running — before its `shutdown_delay` when it is
//! stopped for good (Nomad's PreKilling), so clients stop finding it before it is signalled.
//! Instances are registered with their checks' initial health; the checks hook's health
//! changes are written as they come.

use tokio::sync::{mpsc, watch};

use super::{Action, TaskHook, TaskHookCtx};
use crate::checks::Healths;
use crate::services::{ServiceSync, registrations};

pub(crate) struct ServicesHook {
    sync: Option<ServiceSync>,
    /// The instances' health from the checks hook, followed once the sync exists.
    healths: Option<watch::Receiver<Healths>>,
}

impl ServicesHook {
    pub(crate) fn new(healths: watch::Receiver<Healths>) -> Self {
        ServicesHook {
            sync: None,
            healths: Some(healths),
        }
    }
}

#[tonic::async_trait]
impl TaskHook for ServicesHook {
    fn poststart(&mut self, ctx: &TaskHookCtx<'_>, _actions: &mpsc::Sender<Action>) {
        let sync = self.sync.get_or_insert_with(|| {
            let sync = ServiceSync::new(ctx.client.clone());
            if let Some(h) = self.healths.take() {
                sync.follow(h);
            }
            sync
        });
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
