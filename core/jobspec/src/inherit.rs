//! What a job gives its groups and a group its tasks, by Nomad's rules:
//!
//! - `update`, `migrate` and `reschedule` at job level are defaults for every group; a
//!   group's own block is merged over the job's key by key (a key the group sets wins), as
//!   Nomad's API canonicalization merges them;
//! - `vault` at job or group level is the `vault` of every task that has none (the group's
//!   first, then the job's), as Nomad's HCL2 parser does;
//! - `secret` blocks at job or group level are given to every task that has no secret of the
//!   same name (a Drover reading of the 1.11 block's placement: the nearest one wins);
//! - ports of a task's deprecated `resources { network { ... } }` move to the group's network.

use drover_model::{
    MigrateStrategy, NetworkResource, ReschedulePolicy, Secret, Task, TaskGroup, UpdateStrategy,
    Vault,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value as Json};

use crate::reader::{BlockReader, Source};
use crate::{JobspecError, to_json, warn_not_acted_on};

/// The defaults a job block gives its groups, or a group block its tasks.
#[derive(Debug, Clone, Default)]
pub struct Defaults {
    pub update: Option<UpdateStrategy>,
    pub migrate: Option<MigrateStrategy>,
    pub reschedule: Option<ReschedulePolicy>,
    pub vault: Option<Vault>,
    pub secrets: Vec<Secret>,
}

impl Defaults {
    /// Reads a job's or a group's `update`, `migrate`, `reschedule`, `vault` and `secret`
    /// blocks, over the `parent`'s (the job's, for a group).
    pub fn read(
        src: &Source<'_>,
        r: &mut BlockReader<'_>,
        parent: Option<&Defaults>,
        warnings: &mut Vec<String>,
    ) -> Defaults {
        let parent = parent.cloned().unwrap_or_default();
        let update = merged(src, r, "update", parent.update, warnings);
        let migrate = merged(src, r, "migrate", parent.migrate, warnings);
        let reschedule = merged(src, r, "reschedule", parent.reschedule, warnings);
        let vault = src
            .recover(vault(src, r, warnings))
            .flatten()
            .or(parent.vault);
        let mut secrets = crate::secrets(src, r, warnings);
        inherit_secrets(&mut secrets, &parent.secrets);
        Defaults {
            update,
            migrate,
            reschedule,
            vault,
            secrets,
        }
    }

    /// A task's `vault` when it has none, and the secrets it does not name itself.
    pub fn apply_to_task(&self, task: &mut Task) {
        if task.vault.is_none() {
            task.vault = self.vault.clone();
        }
        inherit_secrets(&mut task.secrets, &self.secrets);
    }

    /// The job's update, migrate and reschedule for the group a job-level task is wrapped in.
    pub fn apply_to_lone_group(&self, g: &mut TaskGroup) {
        g.update = self.update.clone();
        g.migrate = self.migrate.clone();
        g.reschedule = self.reschedule.clone();
    }
}

/// The block `ident` merged over `parent` key by key (or `parent` when the block is absent).
fn merged<T: Serialize + DeserializeOwned>(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    ident: &str,
    parent: Option<T>,
    warnings: &mut Vec<String>,
) -> Option<T> {
    let Some(b) = src.recover(r.block_once(ident)).flatten() else {
        return parent;
    };
    warn_not_acted_on(r, b);
    let base = match parent.as_ref().map(to_json) {
        Some(Json::Object(m)) => m,
        _ => Map::new(),
    };
    let mut br = src.recover(BlockReader::new(src, b, r.path().to_string(), ident))?;
    let v = src.recover(br.decode(&[], base));
    warnings.extend(br.finish());
    v
}

/// A `vault` block, with Nomad's defaults (`env = true`, `change_mode = "restart"`).
pub fn vault(
    src: &Source<'_>,
    r: &mut BlockReader<'_>,
    warnings: &mut Vec<String>,
) -> Result<Option<Vault>, JobspecError> {
    let Some(b) = r.block_once("vault")? else {
        return Ok(None);
    };
    warn_not_acted_on(r, b);
    let mut br = BlockReader::new(src, b, r.path().to_string(), "vault")?;
    let base = crate::obj(vec![
        ("Env", Json::from(true)),
        ("ChangeMode", Json::from("restart")),
    ]);
    let v = br.decode(&[], base)?;
    warnings.extend(br.finish());
    Ok(Some(v))
}

/// Adds the `inherited` secrets whose names `own` does not have.
fn inherit_secrets(own: &mut Vec<Secret>, inherited: &[Secret]) {
    for s in inherited {
        if !own.iter().any(|o| o.name == s.name) {
            own.push(s.clone());
        }
    }
}

/// Moves the ports of the tasks' deprecated networks to the group's first network (made,
/// in host mode, when the group has none).
pub fn move_task_ports(g: &mut TaskGroup) {
    for t in &mut g.tasks {
        for n in std::mem::take(&mut t.resources.networks) {
            match g.networks.first_mut() {
                Some(first) => {
                    first.reserved_ports.extend(n.reserved_ports);
                    first.dynamic_ports.extend(n.dynamic_ports);
                }
                None => g.networks.push(NetworkResource {
                    mode: "host".into(),
                    mbits: 0,
                    ..n
                }),
            }
        }
    }
}
