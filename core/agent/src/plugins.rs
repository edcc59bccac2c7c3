//! Plugins in the agent: which plugins the client's host launches, serving the built-in ones
//! (`drover plugin serve NAME`), and the `drover plugin ...` commands.

use std::collections::BTreeMap;

use crate::config::{AgentConfig, PluginBlock};
use drover_plugin_host::{PluginLaunch, PluginSettings, Sandbox};

/// The plugins built into the `drover` binary, served out of process by `drover plugin serve`.
pub const BUILTIN: &[&str] = &["raw_exec"];

#[derive(clap::Subcommand)]
pub enum PluginCmd {
    /// Serves a built-in plugin over the plugin handshake (run by the agent, not by hand).
    Serve { name: String },
}

/// What the client's plugin host launches: the built-in plugins, configured by their
/// `plugin "NAME" { config { ... } }` blocks.
pub fn launches(cfg: &AgentConfig) -> anyhow::Result<Vec<PluginLaunch>> {
    use anyhow::Context;
    let exe = std::env::current_exe()
        .context("cannot find the drover binary to launch built-in plugins")?;
    Ok(BUILTIN
        .iter()
        .map(|name| {
            let block = cfg.plugins.get(*name).cloned().unwrap_or_default();
            PluginLaunch {
                name: name.to_string(),
                command: exe.clone(),
                args: vec!["plugin".into(), "serve".into(), name.to_string()],
                config_json: serde_json::Value::Object(block.config.unwrap_or_default()),
            }
        })
        .collect())
}

/// What the plugin blocks say about plugins found in `plugin_dir`: their config and, for
/// Extism modules, their sandbox grants and limits.
pub fn settings(cfg: &AgentConfig) -> anyhow::Result<BTreeMap<String, PluginSettings>> {
    cfg.plugins
        .iter()
        .filter(|(name, _)| !BUILTIN.contains(&name.as_str()))
        .map(|(name, block)| Ok((name.clone(), block_settings(name, block)?)))
        .collect()
}

fn block_settings(name: &str, block: &PluginBlock) -> anyhow::Result<PluginSettings> {
    let mut sandbox = Sandbox::default();
    if let Some(paths) = &block.allowed_paths {
        sandbox.allowed_paths = paths
            .iter()
            .map(|(host, guest)| (host.into(), guest.into()))
            .collect();
    }
    if let Some(hosts) = &block.allowed_hosts {
        sandbox.allowed_hosts = hosts.clone();
    }
    if let Some(mb) = block.max_memory_mb {
        anyhow::ensure!(
            mb > 0,
            "plugin.{name}.max_memory_mb must be at least 1 (MiB)"
        );
        sandbox.max_memory_bytes = mb << 20;
    }
    if let Some(t) = &block.call_timeout {
        sandbox.call_timeout = drover_jobspec::parse_duration(t).ok_or_else(|| {
            anyhow::anyhow!("plugin.{name}.call_timeout {t:?} is not a duration like \"5s\"")
        })?;
    }
    Ok(PluginSettings {
        config_json: serde_json::Value::Object(block.config.clone().unwrap_or_default()),
        sandbox,
        args: block.args.clone().unwrap_or_default(),
    })
}

/// Runs a `drover plugin ...` command. Synchronous: `serve` builds its own runtime.
pub fn run(cmd: PluginCmd, _address: Option<String>) -> anyhow::Result<i32> {
    match cmd {
        PluginCmd::Serve { name } => {
            drover_plugin_sdk::check_cookie_or_exit();
            let rt = tokio::runtime::Runtime::new()?;
            let result = match name.as_str() {
                "raw_exec" => rt.block_on(drover_plugin_raw_exec::serve()),
                other => anyhow::bail!(
                    "no built-in plugin named {other:?} (built in: {})",
                    BUILTIN.join(", ")
                ),
            };
            rt.shutdown_timeout(std::time::Duration::from_millis(500));
            result?;
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_blocks_become_settings() {
        let block: PluginBlock = serde_json::from_value(serde_json::json!({
            "config": { "ttl": "1h" },
            "allowed_hosts": ["127.0.0.1"],
            "allowed_paths": { "/etc/ssl": "/ssl" },
            "max_memory_mb": 16,
            "call_timeout": "250ms",
        }))
        .unwrap();
        let s = block_settings("vault", &block).unwrap();
        assert_eq!(s.config_json, serde_json::json!({ "ttl": "1h" }));
        assert_eq!(s.sandbox.allowed_hosts, vec!["127.0.0.1".to_string()]);
        assert_eq!(
            s.sandbox
                .allowed_paths
                .get(std::path::Path::new("/etc/ssl")),
            Some(&std::path::PathBuf::from("/ssl"))
        );
        assert_eq!(s.sandbox.max_memory_bytes, 16 << 20);
        assert_eq!(
            s.sandbox.call_timeout,
            std::time::Duration::from_millis(250)
        );
        let bad = PluginBlock {
            call_timeout: Some("soon".into()),
            ..PluginBlock::default()
        };
        let e = block_settings("vault", &bad).unwrap_err().to_string();
        assert!(e.contains("plugin.vault.call_timeout"), "{e}");
    }
}
