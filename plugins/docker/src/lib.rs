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
//! - `driver`: the `TaskDriver` (start, wait, stop, destroy, inspect, signal, recover).
//! - `logs`: following a container's output into `alloc/logs`, resumable without gap or
//!   duplicate across restarts.
//! - `stats`: the engine's stats as Nomad's `TaskStats`.
//! - `exec`: `alloc exec` through the engine's exec, with a pty and resizes.
//! - `gc`: image reference counts, unused images removed after `image_delay`, dangling
//!   containers reaped after `creation_grace`.

pub use driver::Docker;

mod driver;
pub mod exec;
pub mod gc;
pub mod logs;
pub mod stats;
#[cfg(test)]
mod test_engine;
