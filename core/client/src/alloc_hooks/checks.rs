//! The group checks hook: runs the checks of the group's own services from prerun (the
//! tasks are starting) until the allocation is told to stop, and tells the group services
//! hook each instance's health when it changes. A group check's `check_restart` is not
//! acted on (it names a task the allocation runner would have to restart: not built yet).

use std::path::PathBuf;

use drover_model::Allocation;
use tokio::sync::watch;

use super::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::Client;
use crate::checks::{CheckSet, Healths, specs};
use crate::services::registrations;

pub(crate) struct GroupChecksHook {
    healths: watch::Sender<Healths>,
    running: Option<CheckSet>,
}

impl GroupChecksHook {
    pub(crate) fn new(healths: watch::Sender<Healths>) -> Self {
        GroupChecksHook {
            healths,
            running: None,
        }
    }
}

#[tonic::async_trait]
impl AllocHook for GroupChecksHook {
    async fn prerun(
        &mut self,
        ctx: &AllocHookCtx<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), AllocHookError> {
        if !ctx.group.services.iter().any(|s| !s.checks.is_empty()) {
            return Ok(());
        }
        let mut alloc = ctx.alloc.clone();
        let netns = prepared
            .network
            .as_ref()
            .map(|n| n.ns_path.clone())
            .filter(|p| !p.is_empty());
        if let Some(net) = &prepared.network {
            alloc.network_status = Some(net.status.clone());
        }
        let env = super::services::group_env(ctx, ctx.job);
        let owner = format!("group-{}", ctx.group.name);
        // The group services hook (before this one) failed the allocation if these do not
        // build.
        let regs = registrations(
            &alloc,
            &owner,
            &ctx.group.services,
            &env,
            ctx.client.host_ip(),
        )?;
        let specs = specs(
            &alloc,
            "",
            &ctx.group.services,
            &regs,
            netns.is_some(),
            &env,
        );
        self.running = Some(CheckSet::start(
            ctx.client,
            &alloc,
            specs,
            netns.map(PathBuf::from),
            self.healths.clone(),
            None,
        ));
        Ok(())
    }

    async fn prekill(&mut self) {
        self.running = None;
    }

    async fn postrun(&mut self, _client: &Client, _alloc: &Allocation) {
        self.running = None;
    }
}
