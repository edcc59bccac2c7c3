//! One owner's service instances (a task's, or the group's): the registrations computed
//! once from its `service` blocks, written to the catalog, and the checks that keep their
//! health — the services hooks of tasks and groups both run through this, so what is
//! registered and what is checked can never differ.

use std::collections::BTreeMap;
use std::path::PathBuf;

use drover_model::{Allocation, Service};
use tokio::sync::watch;

use crate::Client;
use crate::checks::{CheckSet, Healths, Restarter, specs};
use crate::services::{ServiceError, ServiceSync, registrations};

/// Where the instances come from and where their checks run.
pub(crate) struct Owner<'a> {
    pub alloc: &'a Allocation,
    /// The task's name, or `group-<group>` for the group's services.
    pub id: &'a str,
    /// The task whose services they are ("" for the group's).
    pub task: &'a str,
    pub services: &'a [Service],
    /// What names, tags and check fields interpolate.
    pub env: &'a BTreeMap<String, String>,
    /// The allocation's network namespace (bridge, CNI), where network checks run.
    pub netns: Option<PathBuf>,
    /// How a `check_restart` reaches the task it restarts.
    pub restart: Restarter,
}

pub(crate) struct ServiceInstances {
    client: Client,
    sync: ServiceSync,
    /// The checks' healths; the sync writes each change.
    healths: watch::Sender<Healths>,
    checks: Option<CheckSet>,
}

impl ServiceInstances {
    pub(crate) fn new(client: &Client) -> Self {
        let (healths, rx) = watch::channel(Healths::new());
        let sync = ServiceSync::new(client.clone());
        sync.follow(rx);
        ServiceInstances {
            client: client.clone(),
            sync,
            healths,
            checks: None,
        }
    }

    /// Registers the owner's instances (replacing what it registered before) and starts
    /// their checks (stopping those that ran).
    pub(crate) fn start(&mut self, owner: Owner<'_>) -> Result<(), ServiceError> {
        self.checks = None;
        let regs = registrations(
            owner.alloc,
            owner.id,
            owner.services,
            owner.env,
            self.client.host_ip(),
        )?;
        let specs = specs(
            owner.alloc,
            owner.task,
            owner.services,
            &regs,
            owner.netns.is_some(),
            owner.env,
        );
        self.sync.set(regs);
        if !specs.is_empty() {
            self.checks = Some(CheckSet::start(
                &self.client,
                owner.alloc,
                specs,
                owner.netns,
                self.healths.clone(),
                owner.restart,
            ));
        }
        Ok(())
    }

    /// Stops the checks and removes the instances from the catalog; returns once that is
    /// committed (or given up on).
    pub(crate) async fn stop(&mut self) {
        self.checks = None;
        self.sync.clear().await;
    }

    /// Stops the checks and removes the instances without waiting.
    pub(crate) fn stop_later(&mut self) {
        self.checks = None;
        self.sync.clear_later();
    }
}
