//! The plugin catalog: what the operator dropped in `plugin_dir`, and loading the in-process
//! ones (Extism modules, native libraries).
//!
//! A file's transport follows from its name: `*.wasm` is an Extism module, `*.so` a native
//! library, any other executable a gRPC plugin process. The plugin's name is the file stem
//! (`vault.wasm` is plugin `vault`), which its `plugin "NAME" { ... }` block refers to.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drover_plugin_abi::abi::method;
use drover_proto::base::{
    AgentConfig, ConfigSchemaRequest, ConfigSchemaResponse, PluginInfoRequest, PluginInfoResponse,
    PluginKind, SetConfigRequest, SetConfigResponse,
};

use crate::module::{ModuleCall, Sandbox, WasmLoader, call_unary};
use crate::native::NativeLibrary;
use crate::{HostConfig, HostError, PluginHost, schema};

/// How a plugin is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Transport {
    /// A plugin process, over the go-plugin handshake and gRPC.
    Grpc,
    /// An Extism module (`*.wasm`), sandboxed in the agent.
    Wasm,
    /// A native library (`*.so`), in the agent's address space.
    Native,
}

impl Transport {
    /// `grpc`, `wasm` or `native`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Grpc => "grpc",
            Transport::Wasm => "wasm",
            Transport::Native => "native",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "gRPC plugin process",
            Transport::Wasm => "Extism module",
            Transport::Native => "native library",
        })
    }
}

/// Why a task driver cannot be carried by `transport` (None: it can).
pub fn driver_refusal(transport: Transport) -> Option<&'static str> {
    match transport {
        Transport::Grpc => None,
        Transport::Wasm => Some(
            "a task driver cannot be an Extism module: a sandboxed module can start no \
             processes and cannot block waiting for a task; build the driver as a plugin \
             process (drover_plugin_sdk::main)",
        ),
        Transport::Native => Some(
            "a task driver cannot be a native library: loaded into the agent, it (and the \
             tasks it watches) would die with the agent; build the driver as a plugin process \
             (drover_plugin_sdk::main)",
        ),
    }
}

/// One plugin file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    pub name: String,
    pub path: PathBuf,
    pub transport: Transport,
}

/// A file the catalog (or the host, on loading it) would not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub name: String,
    pub path: PathBuf,
    pub reason: String,
}

/// What `plugin_dir` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    /// By name.
    pub entries: Vec<CatalogEntry>,
    /// Files that look like plugins but cannot be used (a name claimed twice ...).
    pub refused: Vec<Refusal>,
}

/// Why a plugin file (or `plugin_dir`) cannot be trusted with the agent's privileges, as
/// sshd treats keys: it must belong to root (or to the user the agent runs as) and must not
/// be writable by group or others — anyone who can change it runs code as the agent.
fn untrusted(meta: &std::fs::Metadata) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != me {
        return Some(format!(
            "it is owned by uid {}, not root{}: whoever owns it could run code as the agent",
            meta.uid(),
            if me == 0 {
                String::new()
            } else {
                format!(" or the agent's uid {me}")
            }
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Some(format!(
            "it is writable by {} (mode {:o}): whoever can write it could run code as the agent; chmod go-w it",
            match (meta.mode() & 0o020 != 0, meta.mode() & 0o002 != 0) {
                (true, true) => "its group and others",
                (true, false) => "its group",
                _ => "others",
            },
            meta.mode() & 0o7777
        ));
    }
    None
}

fn dir_untrusted(dir: &Path) -> Option<String> {
    let meta = std::fs::metadata(dir).ok()?;
    untrusted(&meta).map(|why| format!("plugin_dir {} is not safe: {why}", dir.display()))
}

impl Catalog {
    /// Reads `dir` (not recursively; symlinks are followed). Files that are neither `*.wasm`,
    /// `*.so` nor executable are skipped. Blocking.
    pub fn scan(dir: &Path) -> std::io::Result<Catalog> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        let mut catalog = Catalog::default();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
            let transport = match ext {
                "wasm" => Transport::Wasm,
                "so" => Transport::Native,
                _ if meta.permissions().mode() & 0o111 != 0 => Transport::Grpc,
                _ => {
                    tracing::debug!(file = %path.display(), "not a plugin (not *.wasm, *.so or executable); skipped");
                    continue;
                }
            };
            let Some(name) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .map(str::to_string)
                .filter(|n| !n.is_empty() && !n.starts_with('.'))
            else {
                continue;
            };
            if let Some(reason) = untrusted(&meta).or_else(|| dir_untrusted(dir)) {
                catalog.refused.push(Refusal {
                    name: name.clone(),
                    path: path.clone(),
                    reason,
                });
                continue;
            }
            if let Some(first) = seen.get(&name) {
                catalog.refused.push(Refusal {
                    name: name.clone(),
                    path: path.clone(),
                    reason: format!(
                        "the name {name:?} is already taken by {}; a plugin's name is its file \
                         name without the extension, so rename one of them",
                        first.display()
                    ),
                });
                continue;
            }
            seen.insert(name.clone(), path.clone());
            catalog.entries.push(CatalogEntry {
                name,
                path,
                transport,
            });
        }
        Ok(catalog)
    }
}

/// An in-process plugin, loaded and configured.
pub(crate) struct LoadedModule {
    pub(crate) path: PathBuf,
    pub(crate) transport: Transport,
    pub(crate) info: PluginInfoResponse,
    pub(crate) module: Arc<dyn ModuleCall>,
}

/// The secrets.proto versions this host speaks.
const SECRETS_PROTOCOL_VERSIONS: &[u32] = &[1];

/// Loads an Extism module or native library and configures it: checks its ABI, asks its
/// PluginInfo (refusing a task driver), checks the block's config against its ConfigSchema,
/// sends SetConfig. Blocking. The error is the reason, for a [`Refusal`].
pub(crate) fn load_module(
    entry: &CatalogEntry,
    config_json: &serde_json::Value,
    sandbox: &Sandbox,
    host: &HostConfig,
    wasm: Option<&dyn WasmLoader>,
) -> Result<LoadedModule, String> {
    let module: Arc<dyn ModuleCall> = match entry.transport {
        Transport::Grpc => return Err("a plugin process is not loaded in-process".into()),
        Transport::Native => {
            let lib = NativeLibrary::open(&entry.path).map_err(|e| e.to_string())?;
            if lib.kind() == PluginKind::Driver as i32 {
                return Err(driver_refusal(Transport::Native)
                    .unwrap_or_default()
                    .to_string());
            }
            Arc::new(lib)
        }
        Transport::Wasm => {
            let loader = wasm.ok_or_else(|| {
                "this build of the host has no Extism transport (drover-plugin-wasm) to load \
                 *.wasm plugins with"
                    .to_string()
            })?;
            loader.load(&entry.name, &entry.path, sandbox)?
        }
    };
    let what = module.describe();
    let rpc = |call: &str, e: crate::module::UnaryError| format!("{what}: {call} failed: {e}");
    let info: PluginInfoResponse = call_unary(&*module, method::PLUGIN_INFO, &PluginInfoRequest {})
        .map_err(|e| rpc("PluginInfo", e))?;
    match info.kind() {
        PluginKind::Secrets => {}
        PluginKind::Driver => {
            return Err(driver_refusal(entry.transport)
                .unwrap_or_default()
                .to_string());
        }
        PluginKind::Unspecified => {
            return Err(format!(
                "{what} reports no plugin kind; only secret providers can be carried by an {}",
                entry.transport
            ));
        }
    }
    let version = SECRETS_PROTOCOL_VERSIONS
        .iter()
        .copied()
        .filter(|v| info.protocol_versions.contains(v))
        .max()
        .ok_or_else(|| {
            format!(
                "it implements secrets protocol versions {:?}, this agent speaks {SECRETS_PROTOCOL_VERSIONS:?}",
                info.protocol_versions
            )
        })?;
    let schema: ConfigSchemaResponse =
        call_unary(&*module, method::CONFIG_SCHEMA, &ConfigSchemaRequest {})
            .map_err(|e| rpc("ConfigSchema", e))?;
    schema::check(config_json, &schema.fields)
        .map_err(|e| format!("its plugin block's config is refused: {e}"))?;
    let config_bytes = if config_json.is_null() {
        b"{}".to_vec()
    } else {
        serde_json::to_vec(config_json).map_err(|e| e.to_string())?
    };
    let _: SetConfigResponse = call_unary(
        &*module,
        method::SET_CONFIG,
        &SetConfigRequest {
            config_json: config_bytes,
            agent: Some(AgentConfig {
                data_dir: host.data_dir.to_string_lossy().into_owned(),
                node_id: host.node_id.clone(),
            }),
            protocol_version: version,
        },
    )
    .map_err(|e| format!("it refused its configuration: {e}"))?;
    Ok(LoadedModule {
        path: entry.path.clone(),
        transport: entry.transport,
        info,
        module,
    })
}

/// What the host loaded from `plugin_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleSummary {
    pub name: String,
    pub path: PathBuf,
    pub transport: Transport,
    /// "secrets" (the only kind these transports carry).
    pub kind: String,
    pub version: String,
}

impl PluginHost {
    /// A host for `config.plugins` plus every plugin in `config.plugin_dir`: executables join
    /// the plugin processes (launched on first use); Extism modules (through `wasm`) and native
    /// libraries are loaded and configured now, each with its `config.settings` entry. A plugin
    /// that cannot be used is refused — logged, listed by [`PluginHost::refused`], and named
    /// in the error of any later use — and the others load regardless.
    pub async fn open(mut config: HostConfig, wasm: Option<Arc<dyn WasmLoader>>) -> PluginHost {
        let mut refused: BTreeMap<String, Refusal> = BTreeMap::new();
        let mut in_process = Vec::new();
        if let Some(dir) = config.plugin_dir.clone() {
            let scan_dir = dir.clone();
            let scanned = tokio::task::spawn_blocking(move || Catalog::scan(&scan_dir)).await;
            let catalog = match scanned {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::error!(plugin_dir = %dir.display(), error = %e, "cannot read plugin_dir; no plugins loaded from it");
                    Catalog::default()
                }
                Err(e) => {
                    tracing::error!(plugin_dir = %dir.display(), error = %e, "scanning plugin_dir failed");
                    Catalog::default()
                }
            };
            for r in catalog.refused {
                refused.insert(r.name.clone(), r);
            }
            for entry in catalog.entries {
                if config.plugins.iter().any(|p| p.name == entry.name) {
                    refused.insert(
                        entry.name.clone(),
                        Refusal {
                            reason: format!(
                                "the name {:?} is taken by a built-in plugin; rename the file",
                                entry.name
                            ),
                            name: entry.name,
                            path: entry.path,
                        },
                    );
                    continue;
                }
                let settings = config
                    .settings
                    .get(&entry.name)
                    .cloned()
                    .unwrap_or_default();
                match entry.transport {
                    Transport::Grpc => config.plugins.push(crate::PluginLaunch {
                        name: entry.name,
                        command: entry.path,
                        args: settings.args,
                        config_json: settings.config_json,
                        config_locations: settings.config_locations,
                        inspect_only: false,
                    }),
                    Transport::Wasm | Transport::Native => in_process.push((entry, settings)),
                }
            }
        }
        let mut host = PluginHost::new(config);
        for (entry, settings) in in_process {
            let span = tracing::info_span!("plugin", plugin = %entry.name, transport = entry.transport.as_str());
            let host_config = host.config.clone();
            let loader = wasm.clone();
            let job_entry = entry.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let _entered = span.enter();
                load_module(
                    &job_entry,
                    &settings.config_json,
                    &settings.sandbox,
                    &host_config,
                    loader.as_deref(),
                )
            })
            .await
            .unwrap_or_else(|e| Err(format!("loading it panicked: {e}")));
            match loaded {
                Ok(m) => {
                    tracing::info!(
                        plugin = %entry.name,
                        transport = entry.transport.as_str(),
                        version = %m.info.version,
                        path = %entry.path.display(),
                        "plugin loaded"
                    );
                    host.modules.insert(entry.name, Arc::new(m));
                }
                Err(reason) => {
                    tracing::error!(plugin = %entry.name, path = %entry.path.display(), %reason, "plugin refused");
                    host.refused.insert(
                        entry.name.clone(),
                        Refusal {
                            name: entry.name,
                            path: entry.path,
                            reason,
                        },
                    );
                }
            }
        }
        for (name, r) in &refused {
            tracing::error!(plugin = %name, path = %r.path.display(), reason = %r.reason, "plugin refused");
        }
        host.refused.extend(refused);
        host
    }

    /// The Extism modules and native libraries loaded from `plugin_dir`.
    pub fn modules(&self) -> Vec<ModuleSummary> {
        self.modules
            .iter()
            .map(|(name, m)| ModuleSummary {
                name: name.clone(),
                path: m.path.clone(),
                transport: m.transport,
                kind: crate::kind_name(m.info.kind()).to_string(),
                version: m.info.version.clone(),
            })
            .collect()
    }

    /// The plugins from `plugin_dir` that were refused, with why.
    pub fn refused(&self) -> Vec<Refusal> {
        self.refused.values().cloned().collect()
    }

    /// Refuses to use an in-process or refused plugin as a task driver, saying why.
    pub(crate) fn check_driver(&self, name: &str) -> Result<(), HostError> {
        if let Some(m) = self.modules.get(name) {
            return Err(HostError::Refused {
                name: name.to_string(),
                path: m.path.clone(),
                reason: driver_refusal(m.transport).unwrap_or_default().to_string(),
            });
        }
        if let Some(r) = self.refused.get(name) {
            return Err(HostError::Refused {
                name: name.to_string(),
                path: r.path.clone(),
                reason: r.reason.clone(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_by_extension_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, b"x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("vault.wasm", 0o644);
        write("libfast.so", 0o755);
        write("aws", 0o755);
        write("README.md", 0o644);
        write("vault.so", 0o644);
        std::fs::create_dir(dir.path().join("sub.wasm")).unwrap();
        let c = Catalog::scan(dir.path()).unwrap();
        let got: Vec<(&str, Transport)> = c
            .entries
            .iter()
            .map(|e| (e.name.as_str(), e.transport))
            .collect();
        assert_eq!(
            got,
            vec![
                ("aws", Transport::Grpc),
                ("libfast", Transport::Native),
                ("vault", Transport::Native),
            ]
        );
        assert_eq!(c.refused.len(), 1);
        assert_eq!(c.refused[0].path, dir.path().join("vault.wasm"));
        assert!(
            c.refused[0].reason.contains("already taken"),
            "{:?}",
            c.refused
        );
    }

    #[test]
    fn drivers_only_over_grpc() {
        assert!(driver_refusal(Transport::Grpc).is_none());
        assert!(
            driver_refusal(Transport::Wasm)
                .unwrap()
                .contains("no processes")
        );
        assert!(
            driver_refusal(Transport::Native)
                .unwrap()
                .contains("die with the agent")
        );
    }
}
