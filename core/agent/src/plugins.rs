//! Plugins in the agent: which plugins the client's host launches, serving the built-in ones
//! (`drover plugin serve NAME`), and the `drover plugin ...` commands.

use crate::config::AgentConfig;
use drover_plugin_host::PluginLaunch;

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

/// Serves a built-in plugin and exits when the arguments are exactly `plugin serve NAME`;
/// returns otherwise (the CLI parser then handles them, and explains any mistake). Called
/// first thing in `main`: the plugin host waits for this process's handshake line, and
/// building the whole CLI's parser first costs the launch time.
pub fn exit_if_serve_invoked() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let [plugin, serve, name] = args.as_slice() else {
        return;
    };
    if plugin != "plugin" || serve != "serve" {
        return;
    }
    let Some(name) = name.to_str().filter(|n| !n.starts_with('-')) else {
        return;
    };
    let code = match run(PluginCmd::Serve { name: name.into() }, None) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
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
