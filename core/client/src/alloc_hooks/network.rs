//! The network hook: for a group in `bridge`, `cni/<name>` or `none` mode, the allocation's
//! own network namespace, made before any task starts and configured by the CNI runtime
//! (container id = allocation id, `eth0`). The client makes the namespace
//! (`/var/run/netns/<alloc id>`, [`crate::netns`]) unless a task's driver says it must
//! (`must_create_network`: its `CreateNetwork`/`DestroyNetwork`).
//!
//! After an agent restart the namespace of a running allocation exists: its attachment is
//! CHECKed against the cached ADD result (no new ADD, same address). Once every task is dead
//! (also for an allocation that ended while the agent was down), DEL runs from the cache and
//! the namespace goes. [`sweep_orphans`] deletes what is cached for allocations this client
//! no longer has.

use std::path::{Path, PathBuf};

use drover_cni::{CniRuntime, NetworkConfigList, PluginRunner, ResultCache};
use drover_model::{Allocation, NetworkStatus, TaskGroup};

use super::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::Client;
use crate::cni_network::{self, Mode, ModeError};
use crate::netns::{NamedNetns, NetnsError};
use crate::network_files;

/// Why the allocation's network could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NetworkError {
    #[error(transparent)]
    Mode(#[from] ModeError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("{}", cni_message(.0))]
    Cni(#[from] drover_cni::Error),
    #[error("no CNI network configuration list named {name:?} in {dir}{}", unusable_suffix(.unusable))]
    NoConflist {
        name: String,
        dir: PathBuf,
        /// The files of the directory that could not be read, and why.
        unusable: Vec<String>,
    },
    #[error("driver {driver} cannot create the allocation's network: {message}")]
    Driver { driver: String, message: String },
    #[error(transparent)]
    Files(#[from] crate::network_files::NetworkFileError),
    #[error("network namespace task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A CNI failure as a task event reads it: the plugin and its own message first.
fn cni_message(e: &drover_cni::Error) -> String {
    match e.plugin_failure() {
        Some((plugin, msg)) => format!("CNI plugin {plugin} failed: {msg} ({e})"),
        None => e.to_string(),
    }
}

fn unusable_suffix(unusable: &[String]) -> String {
    if unusable.is_empty() {
        String::new()
    } else {
        format!(" (unusable files: {})", unusable.join("; "))
    }
}

/// What the allocation's tasks are given of its network.
#[derive(Debug, Clone)]
pub(crate) struct AllocNetwork {
    /// The namespace the tasks join (`TaskConfig.network_ns_path`).
    pub ns_path: String,
    pub status: NetworkStatus,
    /// `/etc/hosts` and `/etc/resolv.conf`, for drivers that can mount.
    pub mounts: Vec<drover_proto::driver::Mount>,
}

/// Who made the namespace, so the same one removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    Client,
    /// A driver with `must_create_network`.
    Driver(String),
}

#[derive(Default)]
pub(crate) struct NetworkHook {
    /// Set once the group is known to need its own network: what postrun tears down.
    teardown: Option<Owner>,
    /// The namespace, once made or found (for `DestroyNetwork`).
    ns_path: String,
}

/// The CNI runtime of the client: plugins on `cni_path`, results cached under the data dir.
pub(crate) fn runtime(client: &Client) -> CniRuntime {
    let cfg = &client.inner.config;
    CniRuntime::new(
        PluginRunner::new(cfg.cni.plugin_path.clone()),
        ResultCache::new(cfg.data_dir.join("cni")),
    )
}

#[tonic::async_trait]
impl AllocHook for NetworkHook {
    async fn prerun(
        &mut self,
        ctx: &AllocHookCtx<'_>,
        prepared: &mut Prepared,
    ) -> Result<(), AllocHookError> {
        let mode = Mode::of(ctx.group).map_err(NetworkError::from)?;
        if mode == Mode::Host {
            return Ok(());
        }
        let owner = match network_driver(ctx.client, ctx.group).await {
            Some(d) => Owner::Driver(d),
            None => Owner::Client,
        };
        self.teardown = Some(owner.clone());
        if ctx.alloc.client_status.is_terminal() {
            // Ended while the agent was down: nothing to set up; postrun tears down.
            return Ok(());
        }
        let net = network_list(ctx.client, &mode).await?;
        let (ns_path, existed) = namespace(ctx, &owner).await?;
        self.ns_path = ns_path.display().to_string();
        let attachment = cni_network::attachment(
            ctx.alloc,
            ctx.job,
            ctx.group,
            &ctx.client.inner.config.region,
            ns_path.clone(),
        );
        let rt = runtime(ctx.client);
        let cached = if existed {
            rt.cache()
                .load(&net.name, &ctx.alloc.id)
                .await
                .map_err(NetworkError::from)?
        } else {
            None
        };
        let result = match cached {
            Some(c) => {
                rt.check(&net, &c.attachment)
                    .await
                    .map_err(NetworkError::from)?;
                tracing::info!(netns = %ns_path.display(), "allocation network reattached (CHECK passed)");
                c.result
            }
            None => rt
                .add(&net, &attachment)
                .await
                .map_err(NetworkError::from)?,
        };
        let status = cni_network::status_of(&result);
        let mounts = write_etc(ctx, &status).await?;
        prepared.network = Some(AllocNetwork {
            ns_path: ns_path.display().to_string(),
            status,
            mounts,
        });
        Ok(())
    }

    async fn postrun(&mut self, client: &Client, alloc: &Allocation) {
        if let Some(owner) = self.teardown.take() {
            teardown(client, &alloc.id, &owner, &self.ns_path).await;
        }
    }
}

/// The directory of the allocation's hosts file and resolv.conf, in its allocation directory.
const NETWORK_DIR: &str = "network";

/// Writes the allocation's hosts file and resolv.conf (in `<alloc dir>/network/`) and
/// returns them as the mounts of `/etc/hosts` and `/etc/resolv.conf`.
async fn write_etc(
    ctx: &AllocHookCtx<'_>,
    status: &NetworkStatus,
) -> Result<Vec<drover_proto::driver::Mount>, AllocHookError> {
    let net = cni_network::group_network(ctx.group);
    let hostname = network_files::hostname(
        net.map(|n| n.hostname.as_str()).unwrap_or(""),
        &ctx.alloc.id,
    )
    .map_err(NetworkError::from)?;
    let hosts = network_files::hosts(&status.address, &hostname);
    let dns = net.and_then(|n| n.dns.clone());
    let root = ctx.client.alloc_dir(&ctx.alloc.id)?;
    let written = tokio::task::spawn_blocking(move || -> Result<_, AllocHookError> {
        let resolv = match &dns {
            Some(d) if !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty() => {
                network_files::resolv_conf_of(d).map_err(NetworkError::from)?
            }
            _ => {
                let host =
                    network_files::read_host_file(Path::new(network_files::HOST_RESOLV_CONF));
                let upstream =
                    network_files::read_host_file(Path::new(network_files::RESOLVED_UPSTREAM));
                network_files::resolv_conf_from_host(&host, Some(&upstream))
            }
        };
        // Beneath the allocation directory, following no link.
        root.dir(Path::new(NETWORK_DIR), true)?;
        let mut mounts = Vec::new();
        for (name, text, target) in [
            ("hosts", hosts, "/etc/hosts"),
            ("resolv.conf", resolv, "/etc/resolv.conf"),
        ] {
            let rel = Path::new(NETWORK_DIR).join(name);
            root.write_file(&rel, text.as_bytes())?;
            mounts.push(drover_proto::driver::Mount {
                host_path: root.path().join(&rel).display().to_string(),
                task_path: target.to_string(),
                read_only: true,
            });
        }
        Ok(mounts)
    })
    .await
    .map_err(NetworkError::from)??;
    Ok(written)
}

/// The configuration list of `mode`.
async fn network_list(client: &Client, mode: &Mode) -> Result<NetworkConfigList, NetworkError> {
    let cfg = &client.inner.config;
    match mode {
        Mode::Bridge => Ok(cni_network::bridge_conflist(&cfg.bridge)),
        Mode::None => Ok(cni_network::none_conflist()),
        Mode::Cni(name) => {
            let dir = cfg.cni.config_dir.clone();
            let loaded = drover_cni::load_dir_async(dir.clone()).await?;
            match loaded.find(name) {
                Some(n) => Ok(n.clone()),
                None => Err(NetworkError::NoConflist {
                    name: name.clone(),
                    dir,
                    unusable: loaded
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.path.display(), e.error))
                        .collect(),
                }),
            }
        }
        Mode::Host => unreachable!("host networking has no list"),
    }
}

/// The first of the group's drivers that must create the network itself, if any.
async fn network_driver(client: &Client, group: &TaskGroup) -> Option<String> {
    let mut drivers: Vec<&str> = group.tasks.iter().map(|t| t.driver.as_str()).collect();
    drivers.sort();
    drivers.dedup();
    for d in drivers {
        match client.host().capabilities(d).await {
            Ok(c) if c.must_create_network => return Some(d.to_string()),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(driver = d, error = %e, "no capabilities; assuming it joins the client's namespace")
            }
        }
    }
    None
}

/// The allocation's namespace, made now or found from before an agent restart: its path, and
/// whether it existed.
async fn namespace(ctx: &AllocHookCtx<'_>, owner: &Owner) -> Result<(PathBuf, bool), NetworkError> {
    let id = ctx.alloc.id.clone();
    match owner {
        Owner::Client => Ok(tokio::task::spawn_blocking(move || {
            let ns = NamedNetns::host();
            match ns.existing(&id)? {
                Some(_) => Ok::<_, NetnsError>((ns.path(&id)?, true)),
                None => Ok((ns.create(&id)?, false)),
            }
        })
        .await??),
        Owner::Driver(d) => {
            let hostname = cni_network::group_network(ctx.group)
                .map(|n| n.hostname.clone())
                .unwrap_or_default();
            let err = |message: String| NetworkError::Driver {
                driver: d.clone(),
                message,
            };
            let mut driver = ctx
                .client
                .host()
                .driver(d)
                .await
                .map_err(|e| err(e.to_string()))?;
            let reply = driver
                .create_network(drover_proto::driver::CreateNetworkRequest {
                    alloc_id: id,
                    hostname,
                })
                .await
                .map_err(|s| err(s.message().to_string()))?
                .into_inner();
            let path = PathBuf::from(&reply.namespace_path);
            if !path.is_absolute() {
                return Err(err(format!(
                    "namespace path {:?} is not absolute",
                    reply.namespace_path
                )));
            }
            Ok((path, !reply.created))
        }
    }
}

/// DEL of every cached attachment of allocation `alloc_id`, then its namespace goes
/// (`ns_path`, for a driver's `DestroyNetwork`, is empty when not known: an allocation that
/// ended while the agent was down). Failures
/// are logged: a DEL that failed keeps its cache entry, retried by the next [`sweep_orphans`].
async fn teardown(client: &Client, alloc_id: &str, owner: &Owner, ns_path: &str) {
    let rt = runtime(client);
    match rt.cache().keys().await {
        Ok(keys) => {
            for (net, _) in keys.iter().filter(|(_, id)| id == alloc_id) {
                match rt.del_cached(net, alloc_id).await {
                    Ok(_) => tracing::info!(network = %net, "allocation network deleted"),
                    Err(e) => {
                        tracing::warn!(network = %net, error = %e, "CNI DEL of the allocation failed")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot list the CNI result cache"),
    }
    match owner {
        Owner::Client => {
            let id = alloc_id.to_string();
            match tokio::task::spawn_blocking(move || NamedNetns::host().remove(&id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot remove the allocation's network namespace")
                }
                Err(e) => tracing::warn!(error = %e, "removing the network namespace panicked"),
            }
        }
        Owner::Driver(d) => {
            let destroyed = async {
                let mut driver = client.host().driver(d).await.map_err(|e| e.to_string())?;
                driver
                    .destroy_network(drover_proto::driver::DestroyNetworkRequest {
                        alloc_id: alloc_id.to_string(),
                        namespace_path: ns_path.to_string(),
                    })
                    .await
                    .map_err(|s| s.message().to_string())
            };
            if let Err(e) = destroyed.await {
                tracing::warn!(driver = %d, error = %e, "DestroyNetwork failed");
            }
        }
    }
}

/// At agent start: DEL, from the cache, of the attachments of allocations this client no
/// longer has (`known`: the restored ones), and removal of their namespaces.
pub(crate) async fn sweep_orphans(client: &Client, known: &[String]) {
    let keys = match runtime(client).cache().keys().await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the CNI result cache");
            return;
        }
    };
    let mut orphans: Vec<&String> = keys
        .iter()
        .map(|(_, id)| id)
        .filter(|id| !known.contains(id))
        .collect();
    orphans.dedup();
    for id in orphans {
        tracing::info!(alloc_id = %id, "deleting the network of an allocation this client no longer has");
        teardown(client, id, &Owner::Client, "").await;
    }
}
