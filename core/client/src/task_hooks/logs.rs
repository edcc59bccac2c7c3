//! The logs hook: where the driver writes the task's output — `alloc/logs/<task>.stdout` and
//! `.stderr` in the allocation's shared directory, rotated as the task's `logs` block says
//! (the driver's log collector appends `.<n>`; [`crate::log_stream`] reads them back).

use std::path::Path;

use drover_proto::driver::{LogConfig, TaskConfig};

use super::{TaskHook, TaskHookCtx};

pub(crate) struct LogsHook;

#[tonic::async_trait]
impl TaskHook for LogsHook {
    fn configure(&self, ctx: &TaskHookCtx<'_>, config: &mut TaskConfig) {
        let logs_dir = Path::new(&ctx.dirs.alloc_dir).join("logs");
        let file = |stream: &str| {
            logs_dir
                .join(format!("{}.{stream}", ctx.task.name))
                .display()
                .to_string()
        };
        config.stdout_path = file("stdout");
        config.stderr_path = file("stderr");
        config.logs = Some(LogConfig {
            max_files: ctx.task.logs.max_files,
            max_file_size_mb: ctx.task.logs.max_file_size_mb,
        });
    }
}
