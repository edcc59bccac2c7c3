//! Plugins in the agent: which plugins the client's host launches, serving the built-in ones
//! (`drover plugin serve NAME`), and the `drover plugin ...` commands.

use std::collections::BTreeMap;

use crate::config::{AgentConfig, PluginBlock};
use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch, PluginSettings, Sandbox};

/// The plugins built into the `drover` binary, served out of process by `drover plugin serve`.
/// `exec` runs isolated tasks; it reports itself unhealthy (with the reason) where it cannot:
/// not root, or no usable cgroups. `docker` reports itself unhealthy while the engine is
/// unreachable.
pub const BUILTIN: &[&str] = &["raw_exec", "exec", "docker"];

#[derive(clap::Subcommand)]
pub enum PluginCmd {
    /// Serves a built-in plugin over the plugin handshake (run by the agent, not by hand).
    Serve { name: String },
    /// The agent's plugins: kind, transport, version, health and restarts.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Launches a plugin binary through the handshake, prints what it reports (PluginInfo
    /// and its config schema) and stops it: check a binary before dropping it in plugin_dir.
    Inspect {
        path: std::path::PathBuf,
        /// Arguments to start it with.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
        #[arg(long)]
        json: bool,
    },
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
                config_locations: block.locations,
                inspect_only: false,
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
    let code = match run(PluginCmd::Serve { name: name.into() }, &Default::default()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            1
        }
    };
    std::process::exit(code);
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
        config_locations: block.locations.clone(),
    })
}

/// Runs a `drover plugin ...` command. Synchronous: `serve` builds its own runtime.
pub fn run(cmd: PluginCmd, globals: &crate::api_client::GlobalArgs) -> anyhow::Result<i32> {
    match cmd {
        PluginCmd::Status { json } => {
            let api = crate::cli::ApiClient::from_args(globals)?;
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(status(&api, json))
        }
        PluginCmd::Inspect { path, args, json } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(inspect(&path, args, json))
        }
        PluginCmd::Serve { name } => {
            drover_plugin_sdk::check_cookie_or_exit();
            let rt = drover_plugin_sdk::serve::plugin_runtime()?;
            let result = match name.as_str() {
                "raw_exec" => rt.block_on(drover_plugin_raw_exec::serve()),
                "exec" => rt.block_on(drover_plugin_exec::serve()),
                "docker" => rt.block_on(drover_plugin_docker::serve()),
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

async fn status(api: &crate::cli::ApiClient, json: bool) -> anyhow::Result<i32> {
    let list: Vec<serde_json::Value> = api.get("/v1/agent/plugins").await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(0);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    let mut rows = vec![
        [
            "Name",
            "Kind",
            "Transport",
            "Version",
            "State",
            "Healthy",
            "Restarts",
            "Last Error",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for p in &list {
        rows.push(
            [
                "Name",
                "Kind",
                "Transport",
                "Version",
                "State",
                "Healthy",
                "Restarts",
                "LastError",
            ]
            .iter()
            .map(|k| s(&p[*k]))
            .collect(),
        );
    }
    print!("{}", crate::cli::table(rows));
    Ok(0)
}

async fn inspect(path: &std::path::Path, args: Vec<String>, json: bool) -> anyhow::Result<i32> {
    use anyhow::Context;
    let path = std::fs::canonicalize(path)
        .with_context(|| format!("cannot find plugin {}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let tmp = std::env::temp_dir().join(format!("drover-inspect-{}", std::process::id()));
    let host = PluginHost::new(HostConfig {
        data_dir: tmp.clone(),
        plugins: vec![PluginLaunch {
            name: name.clone(),
            command: path.clone(),
            args,
            inspect_only: true,
            ..PluginLaunch::default()
        }],
        handshake_timeout: std::time::Duration::from_secs(10),
        ..HostConfig::default()
    });
    let result = async {
        let info = host.info(&name).await?;
        let schema = host.schema(&name).await?;
        Ok::<_, drover_plugin_host::HostError>((info, schema))
    }
    .await;
    host.shutdown().await;
    let _ = std::fs::remove_dir_all(&tmp);
    let (info, schema) = result?;
    if json {
        let v = serde_json::json!({
            "Name": info.name,
            "Kind": drover_plugin_host::kind_name(info.kind()),
            "Version": info.version,
            "ProtocolVersions": info.protocol_versions,
            "ConfigSchema": schema.iter().map(|f| serde_json::json!({
                "Name": f.name, "Type": f.r#type, "Required": f.required,
                "Description": f.description, "Default": f.default_json,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("Name              = {}", info.name);
    println!(
        "Kind              = {}",
        drover_plugin_host::kind_name(info.kind())
    );
    println!("Version           = {}", info.version);
    println!("Protocol Versions = {:?}", info.protocol_versions);
    println!("File              = {}", path.display());
    println!("\nConfig Schema");
    let mut rows = vec![
        ["Key", "Type", "Required", "Default", "Description"]
            .map(String::from)
            .to_vec(),
    ];
    for f in &schema {
        rows.push(vec![
            f.name.clone(),
            f.r#type.clone(),
            f.required.to_string(),
            f.default_json.clone(),
            f.description.clone(),
        ]);
    }
    print!("{}", crate::cli::table(rows));
    Ok(0)
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
