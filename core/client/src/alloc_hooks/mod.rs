//! Allocation hooks: what runs around an allocation's tasks, each a small module with its own
//! state and errors, as Nomad's allocation runner hooks are. The allocation runner calls
//! every hook in the order of [`for_alloc`]; a hook implements only the phases it needs:
//!
//! - `prerun` before any task starts (also for a restored allocation, whose tasks are
//!   reattached): it prepares what the tasks need in [`Prepared`]. The first failure fails
//!   every task of the allocation ("Setup Failure") and no task runs.
//! - `prekill` once the allocation is told to stop, before any task is signalled (its
//!   services leave the catalog before the shutdown delay).
//! - `update` when the server changed the allocation.
//! - `postrun` once every task is dead.
//! - `destroy` when the allocation is garbage-collected (its local state is gone).

mod alloc_dir;
mod network;

pub(crate) use network::{AllocNetwork, sweep_orphans};
mod services;

use std::collections::BTreeMap;

use drover_model::{Allocation, Job, TaskGroup};

use crate::Client;
use crate::env::TaskDirs;

/// Why an allocation hook did not let the allocation run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AllocHookError {
    #[error("cannot create the allocation directory: {0}")]
    Dir(#[from] crate::alloc_dir::AllocDirError),
    #[error("creating the allocation directory panicked: {0}")]
    DirPanicked(tokio::task::JoinError),
    #[error("cannot set up the allocation's network: {0}")]
    Network(#[from] network::NetworkError),
    #[error("cannot register the group's services: {0}")]
    Services(#[from] crate::services::ServiceError),
}

/// What an allocation hook sees of its allocation.
pub(crate) struct AllocHookCtx<'a> {
    pub client: &'a Client,
    pub alloc: &'a Allocation,
    pub job: &'a Job,
    pub group: &'a TaskGroup,
}

/// What the prerun hooks prepare for the tasks.
#[derive(Default)]
pub(crate) struct Prepared {
    /// Each task's directories, by task name.
    pub task_dirs: BTreeMap<String, TaskDirs>,
    /// The allocation's own network (bridge, CNI and none modes).
    pub network: Option<AllocNetwork>,
}

#[tonic::async_trait]
pub(crate) trait AllocHook: Send + Sync {
    /// Runs before the allocation's tasks start (or are reattached).
    async fn prerun(
        &mut self,
        _ctx: &AllocHookCtx<'_>,
        _prepared: &mut Prepared,
    ) -> Result<(), AllocHookError> {
        Ok(())
    }

    /// Runs once the allocation is told to stop, before its tasks are.
    async fn prekill(&mut self) {}

    /// Runs when the server changed the allocation.
    fn update(&mut self, _alloc: &Allocation) {}

    /// Runs once every task of the allocation is dead.
    async fn postrun(&mut self, _client: &Client, _alloc: &Allocation) {}

    /// Runs when the allocation is garbage-collected.
    async fn destroy(&mut self, _client: &Client, _alloc: &Allocation) {}
}

/// The hooks of an allocation, in the order they run. A new allocation hook is a module here
/// and one line in this list.
pub(crate) fn for_alloc() -> Vec<Box<dyn AllocHook>> {
    vec![
        Box::new(alloc_dir::AllocDirHook),
        Box::new(network::NetworkHook::default()),
        Box::new(services::GroupServicesHook::default()),
    ]
}
