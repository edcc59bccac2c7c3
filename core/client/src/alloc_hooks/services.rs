//! The group services hook: registers the group's own `service` blocks before its tasks
//! start (as Nomad's group service hook does), removes them as soon as the allocation is
//! told to stop — before the group's `shutdown_delay` and before any task is signalled —
//! and, at the latest, once every task is dead.

use std::collections::BTreeMap;

use drover_model::Allocation;

use tokio::sync::watch;

use super::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::Client;
use crate::checks::Healths;
use crate::services::{ServiceSync, registrations};

pub(crate) struct GroupServicesHook {
    sync: Option<ServiceSync>,
    /// The instances' health from the group checks hook.
    healths: Option<watch::Receiver<Healths>>,
}

impl GroupServicesHook {
    pub(crate) fn new(healths: watch::Receiver<Healths>) -> Self {
        GroupServicesHook {
            sync: None,
            healths: Some(healths),
        }
    }
}

/// What group service names and tags may interpolate: the allocation's own variables.
pub(super) fn group_env(
    ctx: &AllocHookCtx<'_>,
    job: &drover_model::Job,
) -> BTreeMap<String, String> {
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
        // The network hook ran first: `address_mode = "alloc"` uses the address it got.
        let mut alloc = ctx.alloc.clone();
        if let Some(net) = &prepared.network {
            alloc.network_status = Some(net.status.clone());
        }
        let owner = format!("group-{}", ctx.group.name);
        let regs = registrations(
            &alloc,
            &owner,
            &ctx.group.services,
            &group_env(ctx, ctx.job),
            ctx.client.host_ip(),
        )?;
        let sync = ServiceSync::new(ctx.client.clone());
        sync.set(regs);
        if let Some(h) = self.healths.take() {
            sync.follow(h);
        }
        self.sync = Some(sync);
        Ok(())
    }

    async fn prekill(&mut self) {
        if let Some(sync) = &self.sync {
            sync.clear().await;
        }
    }

    async fn postrun(&mut self, _client: &Client, _alloc: &Allocation) {
        if let Some(sync) = &self.sync {
            sync.clear().await;
        }
    }
}
