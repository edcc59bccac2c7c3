//! The services hook: registers the task's `service` blocks in the catalog once the task
//! runs and runs their checks, and removes them when it stops running — before its
//! `shutdown_delay` when it is stopped for good (Nomad's PreKilling), so clients stop
//! finding it before it is signalled. Instances are registered with their checks' initial
//! health; each change of health is written as it comes, and a `check_restart` asks the
//! task runner for a restart.

use std::path::PathBuf;

use tokio::sync::mpsc;

use super::{Action, TaskHook, TaskHookCtx};
use crate::checks::Restarter;
use crate::service_instances::{Owner, ServiceInstances};

#[derive(Default)]
pub(crate) struct ServicesHook {
    instances: Option<ServiceInstances>,
}

#[tonic::async_trait]
impl TaskHook for ServicesHook {
    fn poststart(&mut self, ctx: &TaskHookCtx<'_>, actions: &mpsc::Sender<Action>) {
        let instances = self
            .instances
            .get_or_insert_with(|| ServiceInstances::new(ctx.client));
        let owner = Owner {
            alloc: ctx.alloc,
            id: &ctx.task.name,
            task: &ctx.task.name,
            services: &ctx.task.services,
            env: &ctx.env,
            netns: ctx.netns.map(PathBuf::from),
            restart: Restarter::Task(actions.clone()),
        };
        if let Err(e) = instances.start(owner) {
            tracing::warn!(
                alloc_id = %ctx.alloc.id,
                task = %ctx.task.name,
                error = %e,
                "the task's services are not registered"
            );
        }
    }

    async fn prekill(&mut self) {
        if let Some(i) = &mut self.instances {
            i.stop().await;
        }
    }

    fn exited(&mut self) {
        if let Some(i) = &mut self.instances {
            i.stop_later();
        }
    }
}
