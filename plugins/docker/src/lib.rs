//! The docker task driver: runs Nomad's `driver = "docker"` tasks unchanged against the real
//! engine, through bollard. Containers outlive the plugin and the agent: the container id is
//! the task handle, and a new plugin instance recovers the task from it.
//!
//! One module per job:
//! - `engine`: connecting to the engine, API version negotiation, fingerprint and health.
//! - `config`: the plugin's `config { }` block and a task's `config { }` block (Nomad's keys,
//!   with their schemas).
//! - `image`: pull (with auth and progress events), load.
//! - `container`: a task config turned into the engine's create request.
//! - `caps`: Linux capabilities as Nomad's docker driver allows them.
//! - `events`: driver-side task events.
//! - `tasks`: the tracked tasks and the watch on each container's exit.
//! - `time`: the engine's RFC 3339 times as Unix time.
//! - `driver`: the `TaskDriver` (start, wait, stop, destroy, inspect, signal, recover).
//! - `logs`: following a container's output into `alloc/logs`, resumable without gap or
//!   duplicate across restarts.
//! - `stats`: the engine's stats as Nomad's `TaskStats`.
//! - `exec`: `alloc exec` through the engine's exec, with a pty and resizes.
//! - `network`: the allocation's network namespace as an infra container
//!   (`nomad_init_<alloc id>`, `CreateNetwork`/`DestroyNetwork`) that task containers join.
//! - `gc`: image reference counts, unused images removed after `image_delay`, dangling
//!   containers reaped after `creation_grace`.

pub use config::{GcConfig, Settings, task_config_schema};
pub use driver::{Docker, NAME};
pub use tasks::DriverState;

pub mod caps;
pub mod config;
pub mod container;
pub mod driver;
pub mod engine;
pub mod events;
pub mod exec;
pub mod gc;
pub mod image;
pub mod logs;
pub mod network;
pub mod stats;
pub mod tasks;
#[cfg(test)]
mod test_engine;
mod time;

/// Serves docker as a plugin on the current tokio runtime until the host stops it
/// (`drover plugin serve docker`).
pub async fn serve() -> Result<(), drover_plugin_sdk::ServeError> {
    drover_plugin_sdk::init_logging(NAME);
    drover_plugin_sdk::serve_driver(Docker::default()).await
}
