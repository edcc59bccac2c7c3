//! The agent's configuration: HCL or JSON files (`-config` may repeat; directories are read
//! in name order), merged in order, with `-dev` defaults underneath.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub data_dir: Option<String>,
    pub bind_addr: Option<String>,
    pub log_level: Option<String>,
    pub plugin_dir: Option<String>,
    pub ports: Option<Ports>,
    pub advertise: Option<Advertise>,
    pub server: Option<ServerBlock>,
    pub client: Option<ClientBlock>,
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginBlock>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    pub serf: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub heartbeat_grace: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBlock {
    pub enabled: Option<bool>,
    pub servers: Option<Vec<String>>,
    pub node_class: Option<String>,
    pub meta: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    pub args: Option<Vec<String>>,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
}

impl FileConfig {
    /// Reads one file (HCL, or JSON for `*.json`).
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let parsed = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}:{}:{}: {e}", path.display(), e.line(), e.column()))
        } else {
            hcl::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        };
        parsed.with_context(|| format!("invalid agent configuration in {}", path.display()))
    }

    /// Reads `-config` arguments: files, or directories of `*.hcl`/`*.json` files.
    pub fn load_all(paths: &[PathBuf]) -> anyhow::Result<FileConfig> {
        let mut merged = FileConfig::default();
        for p in paths {
            if p.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                    .with_context(|| format!("cannot read config directory {}", p.display()))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|e| e == "hcl" || e == "json"))
                    .collect();
                files.sort();
                for f in files {
                    merged.merge(FileConfig::load(&f)?);
                }
            } else {
                merged.merge(FileConfig::load(p)?);
            }
        }
        Ok(merged)
    }

    /// Later values win; blocks merge key by key.
    pub fn merge(&mut self, o: FileConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if o.$f.is_some() { self.$f = o.$f; } )* };
        }
        take!(
            name, region, datacenter, data_dir, bind_addr, log_level, plugin_dir, ports, advertise
        );
        if let Some(s) = o.server {
            let cur = self.server.get_or_insert_with(Default::default);
            if s.enabled.is_some() {
                cur.enabled = s.enabled;
            }
            if s.bootstrap_expect.is_some() {
                cur.bootstrap_expect = s.bootstrap_expect;
            }
            if s.heartbeat_grace.is_some() {
                cur.heartbeat_grace = s.heartbeat_grace;
            }
        }
        if let Some(c) = o.client {
            let cur = self.client.get_or_insert_with(Default::default);
            if c.enabled.is_some() {
                cur.enabled = c.enabled;
            }
            if c.servers.is_some() {
                cur.servers = c.servers;
            }
            if c.node_class.is_some() {
                cur.node_class = c.node_class;
            }
            if let Some(m) = c.meta {
                cur.meta.get_or_insert_with(Default::default).extend(m);
            }
        }
        self.plugin.extend(o.plugin);
    }
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub dev: bool,
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub data_dir: PathBuf,
    pub bind_addr: String,
    pub http_port: u16,
    pub rpc_port: u16,
    pub advertise_rpc: String,
    pub advertise_http: String,
    pub server: bool,
    pub client: bool,
    pub servers: Vec<String>,
    pub node_class: String,
    pub meta: BTreeMap<String, String>,
    pub plugins: BTreeMap<String, PluginBlock>,
    pub heartbeat_ttl: std::time::Duration,
}

impl AgentConfig {
    pub fn resolve(f: FileConfig, dev: bool) -> anyhow::Result<AgentConfig> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "drover".into());
        let data_dir = match (&f.data_dir, dev) {
            (Some(d), _) => PathBuf::from(d),
            (None, true) => {
                let d = std::env::temp_dir().join(format!("drover-dev-{}", std::process::id()));
                std::fs::create_dir_all(&d)?;
                d
            }
            (None, false) => bail!(
                "data_dir is required (set data_dir in the config file, -data-dir, or use -dev)"
            ),
        };
        let data_dir = std::fs::canonicalize(&{
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("cannot create data_dir {}", data_dir.display()))?;
            data_dir
        })?;
        let bind_addr = f.bind_addr.clone().unwrap_or_else(|| {
            if dev {
                "127.0.0.1".into()
            } else {
                "0.0.0.0".into()
            }
        });
        let ports = f.ports.clone().unwrap_or_default();
        let http_port = ports.http.unwrap_or(4646);
        let rpc_port = ports.rpc.unwrap_or(4647);
        let adv_host = if bind_addr == "0.0.0.0" {
            "127.0.0.1".to_string()
        } else {
            bind_addr.clone()
        };
        let advertise = f.advertise.clone().unwrap_or_default();
        let with_port = |a: Option<String>, port: u16| match a {
            Some(a) if a.contains(':') => a,
            Some(a) => format!("{a}:{port}"),
            None => format!("{adv_host}:{port}"),
        };
        let server_block = f.server.clone().unwrap_or_default();
        let client_block = f.client.clone().unwrap_or_default();
        let server = server_block.enabled.unwrap_or(dev);
        let client = client_block.enabled.unwrap_or(dev);
        if !server && !client {
            bail!(
                "neither server nor client is enabled: set server {{ enabled = true }} and/or client {{ enabled = true }}, or use -dev"
            );
        }
        if let Some(n) = server_block.bootstrap_expect
            && n != 1
        {
            bail!(
                "server.bootstrap_expect = {n}: multi-server clusters are not supported yet; use 1"
            );
        }
        let advertise_rpc = with_port(advertise.rpc, rpc_port);
        let mut servers = client_block.servers.clone().unwrap_or_default();
        if servers.is_empty() && server {
            servers.push(advertise_rpc.clone());
        }
        if client && servers.is_empty() {
            bail!(
                "client.servers is empty: a client-only agent needs at least one server address (host:4647)"
            );
        }
        let servers = servers
            .into_iter()
            .map(|s| {
                if s.contains(':') {
                    s
                } else {
                    format!("{s}:4647")
                }
            })
            .collect();
        if ports.serf.is_some() || advertise.serf.is_some() {
            tracing::warn!(
                "ports.serf / advertise.serf are ignored: Drover has no gossip ring; servers talk over the RPC port"
            );
        }
        if f.plugin_dir.is_some() {
            tracing::warn!(
                "plugin_dir is not scanned yet: only the built-in plugins are available"
            );
        }
        for (name, p) in &f.plugin {
            if p.args.is_some() {
                tracing::warn!(plugin = %name, "plugin args are ignored for built-in plugins");
            }
        }
        let mut plugins = f.plugin.clone();
        if dev {
            // Like Nomad's -dev: raw_exec is enabled.
            let p = plugins.entry("raw_exec".into()).or_default();
            p.config
                .get_or_insert_with(Default::default)
                .entry("enabled")
                .or_insert(serde_json::Value::Bool(true));
        }
        let heartbeat_ttl = match &server_block.heartbeat_grace {
            None => std::time::Duration::from_secs(10),
            Some(s) => drover_jobspec::parse_duration(s).with_context(|| {
                format!("server.heartbeat_grace {s:?} is not a duration like \"10s\"")
            })?,
        };
        Ok(AgentConfig {
            dev,
            name: f.name.clone().unwrap_or(host),
            region: f.region.clone().unwrap_or_else(|| "global".into()),
            datacenter: f.datacenter.clone().unwrap_or_else(|| "dc1".into()),
            data_dir,
            http_port,
            rpc_port,
            advertise_http: with_port(advertise.http, http_port),
            advertise_rpc,
            bind_addr,
            server,
            client,
            servers,
            node_class: client_block.node_class.clone().unwrap_or_default(),
            meta: client_block.meta.clone().unwrap_or_default(),
            plugins,
            heartbeat_ttl,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hcl_with_plugin_blocks() {
        let f: FileConfig = hcl::from_str(
            r#"
            data_dir = "/tmp/x"
            ports { http = 5646 }
            server { enabled = true }
            client {
              enabled = true
              meta { rack = "r1" }
            }
            plugin "raw_exec" {
              config { enabled = true }
            }
            "#,
        )
        .unwrap();
        assert_eq!(f.ports.unwrap().http, Some(5646));
        assert_eq!(
            f.plugin["raw_exec"].config.as_ref().unwrap()["enabled"],
            true
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = hcl::from_str::<FileConfig>("data_dirr = \"/x\"").unwrap_err();
        assert!(e.to_string().contains("data_dirr"), "{e}");
    }
}
