//! The per-task shim: the `drover-shim` crate, re-exported so drivers depend on this SDK
//! alone, and [`ShimTasks`], the task table a shim-based driver keeps.

pub use drover_shim::*;

mod tasks;

pub use tasks::{ShimTasks, TASK_HANDLE_VERSION, exit_result};
