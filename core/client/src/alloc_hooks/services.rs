//! The group services hook: registers the group's own `service` blocks before its tasks
//! start (as Nomad's group service hook does) and runs their checks, removes them as soon
//! as the allocation is told to stop — before the group's `shutdown_delay` and before any
//! task is signalled — and, at the latest, once every task is dead. A group check's
//! `check_restart` restarts the task the check names (`task`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use drover_model::Allocation;

use super::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::Client;
use crate::checks::Restarter;
use crate::service_instances::{Owner, ServiceInstances};

#[derive(Default)]
pub(crate) struct GroupServicesHook {
    instances: Option<ServiceInstances>,
}

/// What group service names and tags may interpolate: the allocation's own variables.
fn group_env(ctx: &AllocHookCtx<'_>, job: &drover_model::Job) -> BTreeMap<String, String> {
    let a = ctx.alloc;
    let mut env = BTreeMap::new();
    let mut both = |k: &str, v: String| {
        env.insert(format!("NOMAD_{k}"), v.clone());
        env.insert(format!("DROVER_{k}"), v);
    };
    both("ALLOC_ID", a.id.clone());
    both("SHORT_ALLOC_ID", a.id.chars().take(8).collect());
    both("ALLOC_NAME", a.name.clone());
    both("ALLOC_INDEX", a.index().to_string());
    both("JOB_ID", job.id.clone());
    both("JOB_NAME", job.name.clone());
    both("NAMESPACE", a.namespace.clone());
    both("GROUP_NAME", a.task_group.clone());
    env
}

#[tonic::async_trait]
impl AllocHook for GroupServicesHook {
    async fn prerun(
        &mut self,
        ctx: &AllocHookCtx<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), AllocHookError> {
        if ctx.group.services.is_empty() {
            return Ok(());
        }
        // The network hook ran first: `address_mode = "alloc"` uses the address it got,
        // and checks run in the namespace it made.
        let mut alloc = ctx.alloc.clone();
        if let Some(net) = &prepared.network {
            alloc.network_status = Some(net.status.clone());
        }
        let netns = prepared
            .network
            .as_ref()
            .map(|n| n.ns_path.clone())
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let owner_id = format!("group-{}", ctx.group.name);
        let env = group_env(ctx, ctx.job);
        let instances = self
            .instances
            .get_or_insert_with(|| ServiceInstances::new(ctx.client));
        instances.start(Owner {
            alloc: &alloc,
            id: &owner_id,
            task: "",
            services: &ctx.group.services,
            env: &env,
            netns,
            restart: Restarter::Group,
        })?;
        Ok(())
    }

    async fn prekill(&mut self) {
        if let Some(i) = &mut self.instances {
            i.stop().await;
        }
    }

    async fn postrun(&mut self, _client: &Client, _alloc: &Allocation) {
        if let Some(i) = &mut self.instances {
            i.stop().await;
        }
    }
}
