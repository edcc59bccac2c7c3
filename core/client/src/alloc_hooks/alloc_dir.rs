//! The allocation directory hook: builds the allocation's directory and its shared `alloc/`
//! (through the hardened [`crate::alloc_dir::AllocDir`]), after checking every task's name,
//! before any task runs; says where each task's directories are (the task directory hook
//! builds them); and removes the tree, after unmounting what is mounted below it, when the
//! allocation is garbage-collected.

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
        let dirs: Vec<_> = names.iter().map(|t| root.task_dirs(t)).collect();
        tokio::task::spawn_blocking(move || root.build_shared(&names))
            .await
            .map_err(AllocHookError::DirPanicked)??;
        prepared.task_dirs = ctx
            .group
            .tasks
            .iter()
            .map(|t| t.name.clone())
            .zip(dirs)
            .collect();
        Ok(())
    }

    async fn destroy(&mut self, client: &Client, alloc: &Allocation) {
        if let Ok(dir) = client.alloc_dir(&alloc.id) {
            let root = dir.path().to_path_buf();
            let _ = tokio::task::spawn_blocking(move || remove_dir_with_mounts(&root)).await;
        }
    }
}
