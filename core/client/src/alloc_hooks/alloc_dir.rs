//! The allocation directory hook: builds the allocation's directory and its tasks'
//! (through the hardened [`crate::alloc_dir::AllocDir`]) before they run, and removes it,
//! after unmounting what is mounted below it, when the allocation is garbage-collected.

use super::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::Client;
use crate::alloc_dir::remove_dir_with_mounts;
use drover_model::Allocation;

pub(crate) struct AllocDirHook;

#[tonic::async_trait]
impl AllocHook for AllocDirHook {
    async fn prerun(
        &mut self,
        ctx: &AllocHookCtx<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), AllocHookError> {
        let root = ctx.client.alloc_dir(&ctx.alloc.id)?;
        let names: Vec<String> = ctx.group.tasks.iter().map(|t| t.name.clone()).collect();
        let tasks = names.clone();
        let dirs = tokio::task::spawn_blocking(move || root.build(&tasks))
            .await
            .map_err(AllocHookError::DirPanicked)??;
        prepared.task_dirs = names.into_iter().zip(dirs).collect();
        Ok(())
    }

    async fn destroy(&mut self, client: &Client, alloc: &Allocation) {
        if let Ok(dir) = client.alloc_dir(&alloc.id) {
            let root = dir.path().to_path_buf();
            let _ = tokio::task::spawn_blocking(move || remove_dir_with_mounts(&root)).await;
        }
    }
}
