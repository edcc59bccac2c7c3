//! The driver's configuration: the plugin's `config { }` block ([`Settings`], [`GcConfig`])
//! and a task's `config { }` block ([`TaskConfig`]), with their schemas.

pub mod de;
pub mod plugin;
pub mod schema;
pub mod task;

pub use plugin::{ConfigError, DanglingConfig, GcConfig, Settings, TlsConfig};
pub use schema::{plugin_config_schema, task_config_schema};
pub use task::TaskConfig;

#[cfg(test)]
mod tests;
