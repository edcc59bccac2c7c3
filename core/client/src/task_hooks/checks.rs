//! The checks hook: runs the checks of the task's services while the task runs (from
//! poststart until it exits), tells the services hook each instance's health when it
//! changes, and asks the task runner for a restart when a `check_restart` says so.

use std::path::PathBuf;

use tokio::sync::{mpsc, watch};

use super::{Action, TaskHook, TaskHookCtx};
use crate::checks::{CheckSet, Healths, specs};
use crate::services::registrations;

pub(crate) struct ChecksHook {
    healths: watch::Sender<Healths>,
    running: Option<CheckSet>,
}

impl ChecksHook {
    pub(crate) fn new(healths: watch::Sender<Healths>) -> Self {
        ChecksHook {
            healths,
            running: None,
        }
    }
}

#[tonic::async_trait]
impl TaskHook for ChecksHook {
    fn poststart(&mut self, ctx: &TaskHookCtx<'_>, actions: &mpsc::Sender<Action>) {
        self.running = None;
        let services = &ctx.task.services;
        let regs = match registrations(
            ctx.alloc,
            &ctx.task.name,
            services,
            &ctx.env,
            ctx.client.host_ip(),
        ) {
            Ok(r) => r,
            // The services hook reported why; there is no instance to check.
            Err(_) => return,
        };
        let specs = specs(
            ctx.alloc,
            &ctx.task.name,
            services,
            &regs,
            ctx.netns.is_some(),
            &ctx.env,
        );
        self.running = Some(CheckSet::start(
            ctx.client,
            ctx.alloc,
            specs,
            ctx.netns.map(PathBuf::from),
            self.healths.clone(),
            Some(actions.clone()),
        ));
    }

    async fn prekill(&mut self) {
        self.running = None;
    }

    fn exited(&mut self) {
        self.running = None;
    }
}
