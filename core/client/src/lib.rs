//! The client: fingerprints the node, keeps one stream to a server, runs the allocations it
//! is given through task driver plugins, and survives its own restarts — tasks keep running
//! under their shims and are reattached from the local state.

mod alloc_dir;
mod alloc_fs;
mod alloc_hooks;
mod alloc_runner;
mod alloc_stats;
mod artifact;
mod catalog_sync;
mod checks;
mod cni_fingerprint;
mod cni_network;

pub use alloc_dir::{remove_dir_with_mounts, unmount_below};
mod conn;
mod driver_events;
mod driver_stream;
mod env;
mod exec;
mod exec_secrets;
mod fingerprint;
mod gc;
mod identities;
mod log_stream;
mod netns;
mod network_files;
mod node_network;
mod secret_sources;
mod service_instances;
mod services;
mod sessions;
mod state;
mod task_hooks;
mod task_runner;
mod task_status;
mod template;
mod template_services;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use drover_model::{AllocClientUpdate, Allocation, Job, Node};
use drover_plugin_host::PluginHost;
use drover_proto::node::node_service_client::NodeServiceClient;
use tokio::sync::watch;
use tonic::transport::Channel;

pub use artifact::{ArtifactConfig, UnpackLimits};
pub use cni_network::{BridgeNetwork, attachment as cni_attachment, bridge_conflist};
pub use fingerprint::fingerprint;
pub use netns::{LinuxNs, NamedNetns, NetnsError, NsSys};
pub use node_network::{Cidr, CidrError, HostNetwork};

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub data_dir: PathBuf,
    /// Servers' RPC addresses (`host:port`), tried in turn.
    pub servers: Vec<String>,
    pub node_name: String,
    pub datacenter: String,
    pub region: String,
    pub node_class: String,
    /// The node pool the node registers in (`client { node_pool }`; "default").
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    /// This agent's HTTP address, advertised in the node.
    pub http_addr: String,
    /// The interface whose addresses ports are reserved on (`client { network_interface }`);
    /// None: the default route's.
    pub network_interface: Option<String>,
    /// Resources kept for the host itself (`client { reserved { ... } }`).
    pub reserved: drover_model::NodeResources,
    pub host_volumes: BTreeMap<String, drover_model::HostVolume>,
    /// The host ports the scheduler may assign (inclusive).
    pub dynamic_ports: (u16, u16),
    /// `-dev`: stop every task when the agent shuts down.
    pub stop_tasks_on_shutdown: bool,
    /// Terminal allocations kept on disk before the oldest are garbage-collected.
    pub gc_max_allocs: usize,
    /// Disk usage (percent of the data dir's filesystem) above which terminal allocations are
    /// garbage-collected, oldest first.
    pub gc_disk_usage_threshold: f64,
    /// How artifacts are fetched (`client { artifact { ... } }`).
    pub artifacts: ArtifactConfig,
    /// Where CNI plugins and network configuration lists are found.
    pub cni: CniLocations,
    /// Named host networks ports may ask for (`client { host_network "NAME" { ... } }`).
    pub host_networks: BTreeMap<String, HostNetwork>,
    /// `client { bind_wildcard_default_host_network }` (Nomad's, default true): ports on the
    /// default host network are bound on every address while no host network is configured.
    pub bind_wildcard_default_host_network: bool,
    /// What the node offers instead of what is fingerprinted (`client { cpu_total_compute,
    /// memory_total_mb }`).
    pub resource_totals: ResourceTotals,
    /// The longest a task's `kill_timeout` may be (`client { max_kill_timeout }`, default
    /// 30s): a longer one is cut to it.
    pub max_kill_timeout: std::time::Duration,
    /// Refuse `alloc exec` sessions (`client { disable_remote_exec }`).
    pub disable_remote_exec: bool,
    /// The built-in bridge network (`mode = "bridge"`).
    pub bridge: BridgeNetwork,
    /// How the servers' RPC port is dialled: plaintext, or TLS with this agent's
    /// certificate (`tls { rpc = true }`).
    pub dialer: drover_tls::Dialer,
    /// Nomad's `client { common_plugin_dir }` (default `<data_dir>/common_plugins`): exec
    /// secret providers are in its `secrets/`.
    pub common_plugin_dir: PathBuf,
}

/// Totals that replace the fingerprinted ones: CPU (MHz) and memory (MiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceTotals {
    pub cpu: Option<u64>,
    pub memory_mb: Option<u64>,
}

/// Where CNI plugins and network configuration lists are found (`client { cni_path,
/// cni_config_dir }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniLocations {
    /// The directories plugins are looked up in (`cni_path`, colon-separated).
    pub plugin_path: drover_cni::PluginPath,
    /// The directory of `*.conflist` (and `*.conf`) files (`cni_config_dir`).
    pub config_dir: PathBuf,
}

impl Default for CniLocations {
    /// Nomad's defaults: `/opt/cni/bin` and `/opt/cni/config`.
    fn default() -> Self {
        CniLocations {
            plugin_path: drover_cni::PluginPath::default(),
            config_dir: PathBuf::from(DEFAULT_CNI_CONFIG_DIR),
        }
    }
}

/// Nomad's default `cni_config_dir`.
pub const DEFAULT_CNI_CONFIG_DIR: &str = "/opt/cni/config";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("client state in {path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A running client.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    node_id: String,
    host: Arc<PluginHost>,
    state: state::LocalState,
    /// Job versions received or restored, for allocations pushed without their job.
    jobs: Mutex<BTreeMap<(String, String, u64), Job>>,
    /// Allocation runners by allocation id.
    runners: Mutex<BTreeMap<String, alloc_runner::AllocRunner>>,
    /// Status updates waiting for the server's acknowledgement, latest per allocation.
    outbox: Mutex<BTreeMap<String, AllocClientUpdate>>,
    outbox_changed: watch::Sender<u64>,
    /// Bumped when a driver's fingerprint changes: the node is registered again.
    node_changed: watch::Sender<u64>,
    /// The CNI plugins and network modes the node offers (re-scanned periodically).
    cni: cni_fingerprint::CniFingerprint,
    shutdown: watch::Sender<bool>,
    /// The server the client is attached and registered to, while it is (for reads such as
    /// variables).
    server: watch::Sender<Option<ServerLink>>,
    /// The latest result of every service check the client runs.
    checks: checks::CheckResults,
    /// The local copy of the service catalog (DNS and templates read it).
    catalog: drover_catalog::ServiceCatalog,
    /// The exec secret providers that answered their fingerprint at start: name -> version.
    secret_plugins: BTreeMap<String, String>,
}

/// The attached server, and the secret this node proves itself with.
#[derive(Clone)]
struct ServerLink {
    rpc: NodeServiceClient<Channel>,
    node_secret: String,
}

impl Client {
    /// Opens the local state, restores allocations found there (reattaching their tasks) and
    /// connects to the servers.
    pub async fn start(config: ClientConfig, host: Arc<PluginHost>) -> Result<Client, ClientError> {
        let state = state::LocalState::open(&config.data_dir.join("client")).map_err(|source| {
            ClientError::State {
                path: config.data_dir.join("client"),
                source,
            }
        })?;
        let node_id = state.node_id().to_string();
        let cni = cni_fingerprint::CniFingerprint::new(config.cni.clone());
        let secret_plugins = exec_secrets::fingerprint_all(
            &config.common_plugin_dir.join(exec_secrets::SECRETS_DIR),
        )
        .await;
        let client = Client {
            inner: Arc::new(Inner {
                cni,
                config,
                node_id,
                host,
                state,
                jobs: Mutex::default(),
                runners: Mutex::default(),
                outbox: Mutex::default(),
                outbox_changed: watch::channel(0).0,
                node_changed: watch::channel(0).0,
                shutdown: watch::channel(false).0,
                server: watch::channel(None).0,
                checks: checks::CheckResults::default(),
                catalog: drover_catalog::ServiceCatalog::new(),
                secret_plugins,
            }),
        };
        client.restore().await;
        tokio::spawn(conn::run(client.clone()));
        tokio::spawn(gc::run(client.clone()));
        tokio::spawn(cni_fingerprint::watch(client.clone()));
        for name in client.host().driver_names().await {
            tokio::spawn(fingerprint::watch_driver(client.clone(), name.clone()));
            tokio::spawn(driver_events::follow(client.clone(), name));
        }
        Ok(client)
    }

    /// The local copy of the service catalog, kept current through the node stream.
    pub fn catalog(&self) -> &drover_catalog::ServiceCatalog {
        &self.inner.catalog
    }

    /// Variables of an allocation's namespace, read from the attached server: the one at
    /// `path`, or (with `list`) those under it, without their items.
    /// `identity` is the asking task's default workload identity.
    pub(crate) async fn read_variables(
        &self,
        alloc_id: &str,
        identity: &str,
        path: &str,
        list: bool,
    ) -> Result<Vec<drover_model::Variable>, String> {
        let reply = self
            .variables_request(alloc_id, identity, path, list, None)
            .await?;
        reply
            .variables_json
            .iter()
            .map(|j| {
                serde_json::from_slice(j)
                    .map_err(|e| format!("the server sent a malformed variable: {e}"))
            })
            .collect()
    }

    /// The variables table's index: now, or (`after`) once it is past that index — a
    /// blocking read of up to 5 minutes, which gives the same index back when nothing
    /// changed meanwhile.
    pub(crate) async fn variables_index(
        &self,
        alloc_id: &str,
        after: Option<u64>,
    ) -> Result<u64, String> {
        Ok(self
            .variables_request(alloc_id, "", "", false, after)
            .await?
            .index)
    }

    async fn variables_request(
        &self,
        alloc_id: &str,
        identity: &str,
        path: &str,
        list: bool,
        after: Option<u64>,
    ) -> Result<drover_proto::node::VariablesReply, String> {
        let what = if path.is_empty() {
            "the variables index".to_string()
        } else {
            format!("variable {path:?}")
        };
        let ServerLink {
            mut rpc,
            node_secret,
        } = self.server_link().await.map_err(|e| match e {
            services::ServiceSyncError::NoServer(_) => {
                format!("cannot read {what}: no server connection for 30s")
            }
            e => e.to_string(),
        })?;
        let request = drover_proto::node::VariablesRequest {
            node_id: self.node_id().to_string(),
            node_secret,
            alloc_id: alloc_id.to_string(),
            path: path.to_string(),
            list,
            min_index: after.unwrap_or(0),
            wait_ms: if after.is_some() { 300_000 } else { 0 },
            identity: identity.to_string(),
        };
        // The server answers a blocking read within 5 minutes; a connection that died
        // without a reset must not hold the reader longer.
        let limit = std::time::Duration::from_millis(request.wait_ms + 30_000);
        let reply = tokio::time::timeout(limit, rpc.read_variables(request))
            .await
            .map_err(|_| format!("cannot read {what}: the server did not answer in {limit:?}"))?
            .map_err(|e| format!("cannot read {what}: {}", e.message()))?;
        Ok(reply.into_inner())
    }

    /// The attached server, waiting up to 30 s for one.
    async fn server_link(&self) -> Result<ServerLink, services::ServiceSyncError> {
        const WAIT: std::time::Duration = std::time::Duration::from_secs(30);
        let mut rx = self.inner.server.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::select! {
            r = tokio::time::timeout(WAIT, rx.wait_for(|r| r.is_some())) => Ok(r
                .map_err(|_| services::ServiceSyncError::NoServer(WAIT))?
                .map_err(|_| services::ServiceSyncError::ShuttingDown)?
                .clone()
                .expect("waited for a connection")),
            _ = shutdown.wait_for(|s| *s) => Err(services::ServiceSyncError::ShuttingDown),
        }
    }

    /// Registers and removes service instances of this node's allocations; returns once
    /// the servers committed the change.
    pub(crate) async fn update_services(
        &self,
        upserts: &[drover_model::ServiceRegistration],
        deletes: &[String],
    ) -> Result<(), services::ServiceSyncError> {
        use services::ServiceSyncError;
        let ServerLink {
            mut rpc,
            node_secret,
        } = self.server_link().await?;
        let request = drover_proto::node::ServicesUpdate {
            node_id: self.node_id().to_string(),
            node_secret,
            upserts_json: upserts
                .iter()
                .map(|r| serde_json::to_vec(r).expect("a registration serializes"))
                .collect(),
            delete_ids: deletes.to_vec(),
        };
        let limit = std::time::Duration::from_secs(30);
        match tokio::time::timeout(limit, rpc.update_services(request)).await {
            Err(_) => Err(ServiceSyncError::Unavailable(format!(
                "no answer in {limit:?}"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if e.code() == tonic::Code::InvalidArgument => {
                Err(ServiceSyncError::Refused(e.message().to_string()))
            }
            Ok(Err(e)) => Err(ServiceSyncError::Unavailable(e.message().to_string())),
        }
    }

    /// Whether the client is shutting down (writes to the servers are not retried then).
    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// The node's own address, as tasks see it (`NOMAD_IP_*` without a port's address).
    pub(crate) fn host_ip(&self) -> &str {
        self.inner
            .config
            .http_addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("127.0.0.1")
    }

    /// The directory of allocation `alloc_id` on this node.
    pub(crate) fn alloc_dir(
        &self,
        alloc_id: &str,
    ) -> Result<alloc_dir::AllocDir, alloc_dir::AllocDirError> {
        alloc_dir::AllocDir::new(&self.inner.config.data_dir.join("alloc"), alloc_id)
    }

    /// The runner of allocation `alloc_id`, for a session about it.
    pub(crate) fn runner(&self, alloc_id: &str) -> Result<alloc_runner::AllocRunner, String> {
        self.inner
            .runners
            .lock()
            .expect("runners lock")
            .get(alloc_id)
            .cloned()
            .ok_or_else(|| format!("allocation {alloc_id} is not running on this node"))
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The latest service check results, by allocation.
    pub(crate) fn check_results(&self) -> &checks::CheckResults {
        &self.inner.checks
    }

    pub fn host(&self) -> &PluginHost {
        &self.inner.host
    }

    /// Stops the client. Tasks keep running (they are reattached on the next start) unless
    /// the config says to stop them (`-dev`).
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        if self.inner.config.stop_tasks_on_shutdown {
            let runners: Vec<_> = self
                .inner
                .runners
                .lock()
                .expect("runners lock")
                .values()
                .cloned()
                .collect();
            for r in &runners {
                r.stop("agent in -dev mode is shutting down");
            }
            for r in runners {
                r.wait_done().await;
            }
        }
        self.inner.host.shutdown().await;
    }

    async fn restore(&self) {
        let st = self.inner.state.clone();
        let stored = tokio::task::spawn_blocking(move || st.load_allocs())
            .await
            .unwrap_or_default();
        let known: Vec<String> = stored.iter().map(|l| l.alloc.id.clone()).collect();
        alloc_hooks::sweep_orphans(self, &known).await;
        for local in stored {
            let id = local.alloc.id.clone();
            let j = &local.job;
            self.inner
                .jobs
                .lock()
                .expect("jobs lock")
                .insert((j.namespace.clone(), j.id.clone(), j.version), j.clone());
            tracing::info!(alloc_id = %id, "restoring allocation from local state");
            let runner = alloc_runner::AllocRunner::spawn(self.clone(), local);
            self.inner
                .runners
                .lock()
                .expect("runners lock")
                .insert(id, runner);
        }
    }

    /// Applies a push from the server: new allocations start, changed ones update, ones the
    /// server no longer lists are removed.
    async fn apply_push(
        &self,
        index: u64,
        all: &BTreeMap<String, u64>,
        allocs: Vec<Allocation>,
        jobs: Vec<Job>,
    ) {
        {
            let mut known = self.inner.jobs.lock().expect("jobs lock");
            for j in jobs {
                known.insert((j.namespace.clone(), j.id.clone(), j.version), j);
            }
        }
        let mut unpersisted = false;
        for a in allocs {
            match self.runner(&a.id).ok() {
                Some(r) => r.update(a),
                None => {
                    if a.is_terminal() {
                        continue; // never ran here, nothing to do
                    }
                    let key = (a.namespace.clone(), a.job_id.clone(), a.job_version);
                    let Some(job) = self
                        .inner
                        .jobs
                        .lock()
                        .expect("jobs lock")
                        .get(&key)
                        .cloned()
                    else {
                        tracing::error!(alloc_id = %a.id, "server pushed an allocation without its job version");
                        continue;
                    };
                    let local = state::LocalAlloc::new(a.clone(), job);
                    // Stored before the push's index is, so a crash never forgets it. One
                    // that cannot be stored is neither run nor acknowledged: the index stays
                    // behind it, so the servers send it again after a reconnect.
                    let (st, l) = (self.inner.state.clone(), local.clone());
                    let failed = match tokio::task::spawn_blocking(move || st.save(&l)).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some(e.to_string()),
                        Err(e) => Some(e.to_string()),
                    };
                    if let Some(e) = failed {
                        tracing::error!(alloc_id = %a.id, error = %e, "cannot persist a new allocation: not starting it, and not acknowledging the push");
                        unpersisted = true;
                        continue;
                    }
                    let id = a.id.clone();
                    let runner = alloc_runner::AllocRunner::spawn(self.clone(), local);
                    self.inner
                        .runners
                        .lock()
                        .expect("runners lock")
                        .insert(id, runner);
                }
            }
        }
        // Allocations the server no longer has were garbage-collected there.
        let gone: Vec<alloc_runner::AllocRunner> = {
            let mut runners = self.inner.runners.lock().expect("runners lock");
            let ids: Vec<String> = runners
                .keys()
                .filter(|id| !all.contains_key(*id))
                .cloned()
                .collect();
            ids.into_iter()
                .filter_map(|id| runners.remove(&id))
                .collect()
        };
        for r in gone {
            r.stop("allocation was removed from the cluster");
            r.destroy_when_done();
        }
        if unpersisted {
            return;
        }
        let st = self.inner.state.clone();
        let _ = tokio::task::spawn_blocking(move || st.set_last_index(index)).await;
    }

    /// Queues a status update for the server.
    pub(crate) fn send_update(&self, u: AllocClientUpdate) {
        self.inner
            .outbox
            .lock()
            .expect("outbox lock")
            .insert(u.alloc_id.clone(), u);
        self.inner.outbox_changed.send_modify(|v| *v += 1);
    }

    fn acked(&self, alloc_id: &str, seq: u64) {
        let mut out = self.inner.outbox.lock().expect("outbox lock");
        if out.get(alloc_id).is_some_and(|u| u.seq <= seq) {
            out.remove(alloc_id);
        }
    }

    /// Node attributes for registration.
    pub(crate) async fn node(&self) -> Node {
        fingerprint::node(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_allocation_that_cannot_be_persisted_is_neither_run_nor_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let host = PluginHost::open(
            drover_plugin_host::HostConfig {
                data_dir: dir.path().to_path_buf(),
                ..Default::default()
            },
            None,
        )
        .await;
        let client = Client::start(
            ClientConfig {
                data_dir: dir.path().to_path_buf(),
                // Nothing listens there: the client never attaches during the test.
                servers: vec!["127.0.0.1:1".into()],
                node_name: "n".into(),
                datacenter: "dc1".into(),
                region: "global".into(),
                node_class: String::new(),
                node_pool: "default".into(),
                meta: BTreeMap::new(),
                http_addr: "127.0.0.1:1".into(),
                network_interface: None,
                reserved: Default::default(),
                host_volumes: BTreeMap::new(),
                dynamic_ports: (20000, 20100),
                stop_tasks_on_shutdown: true,
                gc_max_allocs: 50,
                gc_disk_usage_threshold: 90.0,
                artifacts: ArtifactConfig::default(),
                cni: CniLocations::default(),
                host_networks: BTreeMap::new(),
                bind_wildcard_default_host_network: true,
                resource_totals: ResourceTotals::default(),
                max_kill_timeout: std::time::Duration::from_secs(30),
                disable_remote_exec: false,
                bridge: BridgeNetwork::default(),
                dialer: drover_tls::Dialer::plaintext(),
                common_plugin_dir: dir.path().join("common_plugins"),
            },
            Arc::new(host),
        )
        .await
        .unwrap();
        // Persisting any allocation fails: `allocs` is no longer a directory.
        let allocs = dir.path().join("client/allocs");
        std::fs::remove_dir(&allocs).unwrap();
        std::fs::write(&allocs, b"").unwrap();
        let job = Job::default();
        let alloc = Allocation {
            id: "a1".into(),
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            ..Default::default()
        };
        let all: BTreeMap<String, u64> = [("a1".to_string(), 5)].into();
        client.apply_push(5, &all, vec![alloc], vec![job]).await;
        assert_eq!(
            client.inner.state.last_index(),
            0,
            "a push whose allocation was not persisted was acknowledged"
        );
        assert!(
            client.inner.runners.lock().unwrap().is_empty(),
            "an allocation that was not persisted was started"
        );
        client.shutdown().await;
    }
}
