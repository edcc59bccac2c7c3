//! The agent's configuration: HCL or JSON files (`-config` may repeat; directories are read
//! in name order), merged in order, with `-dev` defaults underneath.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

mod compat;
pub mod dns;
pub(crate) mod hcl1;

/// A block Drover knows but does not act on: kept only to warn about it.
pub type Ignored = Option<serde_json::Value>;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub name: Option<String>,
    pub region: Option<String>,
    pub datacenter: Option<String>,
    pub data_dir: Option<String>,
    pub bind_addr: Option<String>,
    pub log_level: Option<String>,
    pub log_json: Option<bool>,
    pub log_file: Option<String>,
    pub plugin_dir: Option<String>,
    pub ports: Option<Ports>,
    pub addresses: Option<Addresses>,
    pub advertise: Option<Advertise>,
    pub server: Option<ServerBlock>,
    pub client: Option<ClientBlock>,
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginBlock>,
    pub acl: Option<AclBlock>,
    pub tls: Option<TlsBlock>,
    pub telemetry: Option<TelemetryBlock>,
    pub ui: Option<UiBlock>,
    pub consul: Option<ConsulBlock>,
    pub vault: Option<VaultBlock>,
    /// On SIGINT (SIGTERM), a server leaves the cluster: it hands leadership over and is
    /// removed from the Raft membership before it stops. Default false, as in Nomad.
    pub leave_on_interrupt: Option<bool>,
    pub leave_on_terminate: Option<bool>,
    pub enable_debug: Option<bool>,
    pub disable_update_check: Option<bool>,
    /// Also log to the local syslog (`/dev/log`), as Nomad's `enable_syslog`.
    pub enable_syslog: Option<bool>,
    /// The syslog facility (default LOCAL0).
    pub syslog_facility: Option<String>,
    pub autopilot: Option<AutopilotBlock>,
    pub limits: Option<LimitsBlock>,
    /// Nomad's `keyring "<provider>" { active, name, ... }`: where the key-encryption key
    /// that wraps the keyring comes from. Drover's provider is "file".
    #[serde(default)]
    pub keyring: BTreeMap<String, KeyringBlock>,
    /// The agent's DNS server (Drover's extension; see `config/dns.rs`).
    pub dns: Option<dns::DnsBlock>,
    /// Deprecated and gossip keys a file set, said once as warnings (see `compat`).
    #[serde(skip)]
    pub notices: Vec<String>,
}

/// A `keyring` block. Drover's provider is `keyring "file" { path }`: the key-encryption
/// key in a 0600 file (default `<data_dir>/server/keyring.kek`), outside the Raft directory.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyringBlock {
    pub active: Option<bool>,
    pub name: Option<String>,
    /// The KEK file (relative paths are under data_dir).
    pub path: Option<String>,
}

/// The KEK file the `keyring` blocks select: None for the default.
fn keyring_kek_file(blocks: &BTreeMap<String, KeyringBlock>) -> anyhow::Result<Option<PathBuf>> {
    let mut chosen = None;
    for (provider, b) in blocks {
        if b.active == Some(false) {
            continue;
        }
        if provider != "file" {
            bail!(
                "keyring {provider:?} is not supported: Drover's key-encryption key provider is keyring \"file\" {{ path = \"...\" }} (a KMS provider is not built yet)"
            );
        }
        if chosen.is_some() {
            bail!("more than one keyring block is active");
        }
        chosen = Some(b.path.as_deref().map(PathBuf::from));
    }
    Ok(chosen.flatten())
}

/// Nomad's `autopilot` block. Drover's autopilot removes dead servers
/// (`cleanup_dead_servers`, after `server.dead_server_cleanup`); the other keys tune
/// Raft-health checks Drover does not make, and are accepted with a warning.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AutopilotBlock {
    pub cleanup_dead_servers: Option<bool>,
    pub last_contact_threshold: Option<String>,
    pub max_trailing_logs: Option<u64>,
    pub min_quorum: Option<u32>,
    pub server_stabilization_time: Option<String>,
}

/// Nomad's `limits` block: handshake timeouts and connections per client address.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsBlock {
    pub https_handshake_timeout: Option<String>,
    pub http_max_conns_per_client: Option<u32>,
    pub rpc_handshake_timeout: Option<String>,
    pub rpc_max_conns_per_client: Option<u32>,
}

/// `client { template { ... } }`: how the client renders templates.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTemplateBlock {
    pub function_denylist: Option<Vec<String>>,
    pub disable_file_sandbox: Option<bool>,
    pub max_stale: Option<String>,
    pub block_query_wait: Option<String>,
    pub wait: Option<serde_json::Map<String, serde_json::Value>>,
    pub wait_bounds: Option<serde_json::Map<String, serde_json::Value>>,
    pub consul_retry: Option<serde_json::Map<String, serde_json::Value>>,
    pub vault_retry: Option<serde_json::Map<String, serde_json::Value>>,
    pub nomad_retry: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Nomad's `acl` block: `enabled`, the cache TTL of resolved tokens (`token_ttl`; Drover
/// compiles policies and roles into each token's entry, so `policy_ttl` and `role_ttl` are
/// accepted and bound nothing more), and the bounds of a token's `ExpirationTTL`.
/// `replication_token` is for multi-region replication, which Drover does not do.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AclBlock {
    pub enabled: Option<bool>,
    pub token_ttl: Option<String>,
    pub policy_ttl: Option<String>,
    pub role_ttl: Option<String>,
    pub token_min_expiration_ttl: Option<String>,
    pub token_max_expiration_ttl: Option<String>,
    pub replication_token: Option<String>,
}

/// Nomad's `tls` block: HTTPS on the API (`http`), mTLS on the RPC port (`rpc`) with the
/// operator's `ca_file`/`cert_file`/`key_file`, or the CA a lone server makes for you (see
/// `crate::tls`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsBlock {
    pub http: Option<bool>,
    pub rpc: Option<bool>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub rpc_upgrade_mode: Option<bool>,
    pub verify_server_hostname: Option<bool>,
    pub verify_https_client: Option<bool>,
    pub tls_cipher_suites: Option<String>,
    pub tls_min_version: Option<String>,
    pub tls_prefer_server_cipher_suites: Option<bool>,
    /// Drover's: how long the leaves of the CA made for you live (default 8760h).
    pub leaf_lifetime: Option<String>,
}

/// Nomad's `telemetry` block: refused while Drover exports no metrics; its keys are checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryBlock {
    pub collection_interval: Option<String>,
    pub disable_hostname: Option<bool>,
    pub use_node_name: Option<bool>,
    pub publish_allocation_metrics: Option<bool>,
    pub publish_node_metrics: Option<bool>,
    pub prometheus_metrics: Option<bool>,
    pub statsd_address: Option<String>,
    pub statsite_address: Option<String>,
    pub datadog_address: Option<String>,
    pub datadog_tags: Option<Vec<String>>,
    pub circonus_api_token: Option<String>,
    pub circonus_api_app: Option<String>,
    pub circonus_api_url: Option<String>,
    pub circonus_submission_interval: Option<String>,
    pub circonus_submission_url: Option<String>,
    pub circonus_check_id: Option<String>,
    pub circonus_check_force_metric_activation: Option<String>,
    pub circonus_check_instance_id: Option<String>,
    pub circonus_check_search_tag: Option<String>,
    pub circonus_check_display_name: Option<String>,
    pub circonus_check_tags: Option<String>,
    pub circonus_broker_id: Option<String>,
    pub circonus_broker_select_tag: Option<String>,
    pub filter_default: Option<bool>,
    pub prefix_filter: Option<Vec<String>>,
    pub disable_dispatched_job_summary_metrics: Option<bool>,
    pub disable_quota_utilization_publishing: Option<bool>,
    pub in_memory_collection_interval: Option<String>,
    pub in_memory_retention_period: Option<String>,
}

/// Nomad's `ui` block: there is no web UI, so only `enabled = false` (or nothing) is
/// accepted; the keys are checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UiBlock {
    pub enabled: Option<bool>,
    pub content_security_policy: Option<serde_json::Map<String, serde_json::Value>>,
    pub consul: Option<UiLink>,
    pub vault: Option<UiLink>,
    pub label: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UiLink {
    pub ui_url: Option<String>,
}

/// Nomad's `consul` block: Drover does not talk to Consul (service discovery is built in);
/// accepted with a warning, its keys checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConsulBlock {
    pub name: Option<String>,
    pub address: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    pub auth: Option<String>,
    pub auto_advertise: Option<bool>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub checks_use_advertise: Option<bool>,
    pub client_auto_join: Option<bool>,
    pub client_service_name: Option<String>,
    pub client_http_check_name: Option<String>,
    pub server_auto_join: Option<bool>,
    pub server_service_name: Option<String>,
    pub server_http_check_name: Option<String>,
    pub server_rpc_check_name: Option<String>,
    pub server_serf_check_name: Option<String>,
    pub grpc_address: Option<String>,
    pub grpc_ca_file: Option<String>,
    pub namespace: Option<String>,
    pub share_ssl: Option<bool>,
    pub ssl: Option<bool>,
    pub verify_ssl: Option<bool>,
    pub tags: Option<Vec<String>>,
    pub timeout: Option<String>,
    pub token: Option<String>,
    pub service_auth_method: Option<String>,
    pub task_auth_method: Option<String>,
    pub service_identity: Option<serde_json::Map<String, serde_json::Value>>,
    pub task_identity: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Nomad's `vault` block: secrets come from secret-provider plugins, not Vault; accepted
/// with a warning, its keys checked.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VaultBlock {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub address: Option<String>,
    pub allow_unauthenticated: Option<bool>,
    pub create_from_role: Option<String>,
    pub role: Option<String>,
    pub task_token_ttl: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<String>,
    pub ca_path: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub namespace: Option<String>,
    pub tls_server_name: Option<String>,
    pub tls_skip_verify: Option<bool>,
    pub jwt_auth_backend_path: Option<String>,
    pub default_identity: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ports {
    pub http: Option<u16>,
    pub rpc: Option<u16>,
    pub serf: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Addresses {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Advertise {
    pub http: Option<String>,
    pub rpc: Option<String>,
    pub serf: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerBlock {
    pub enabled: Option<bool>,
    pub bootstrap_expect: Option<u32>,
    pub heartbeat_grace: Option<String>,
    pub num_schedulers: Option<u32>,
    pub server_join: Option<ServerJoin>,
    /// How long the leader waits before removing a server it cannot reach (autopilot's
    /// dead-server cleanup), e.g. "10m"; "0s" disables it. Default 10m.
    pub dead_server_cleanup: Option<String>,
    /// How old a finished evaluation must be before the leader deletes it, e.g. "1h"
    /// (Nomad's `eval_gc_threshold`; default 1h).
    pub eval_gc_threshold: Option<String>,
    /// The same for batch jobs' evaluations (default 24h).
    pub batch_eval_gc_threshold: Option<String>,
    /// How long a job must have been dead before the leader deletes it (default 4h).
    pub job_gc_threshold: Option<String>,
    /// How long a node must have been down before the leader deletes it (default 24h).
    pub node_gc_threshold: Option<String>,
    pub raft_protocol: Option<u32>,
    pub data_dir: Option<String>,
    pub raft_snapshot_threshold: Option<u64>,
    pub raft_trailing_logs: Option<u64>,
    pub default_scheduler_config: Option<SchedulerConfigBlock>,
    /// The largest `count` a task group may ask for (default 10,000): registering a job
    /// above it is refused.
    pub job_max_count: Option<u32>,
    /// New placements one evaluation makes at most (default 1,000); a follow-up evaluation
    /// places the rest.
    pub max_placements_per_eval: Option<usize>,
}

/// `server_join` (in `server` or `client`): other servers' RPC addresses to join.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerJoin {
    pub retry_join: Option<Vec<String>>,
    pub retry_interval: Option<String>,
    pub retry_max: Option<u32>,
    /// Nomad's `start_join`: treated as `retry_join`.
    pub start_join: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfigBlock {
    /// "binpack" or "spread".
    pub scheduler_algorithm: Option<String>,
    pub memory_oversubscription_enabled: Option<bool>,
    pub reject_job_registration: Option<bool>,
    pub pause_eval_broker: Option<bool>,
    pub preemption_config: Ignored,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientBlock {
    pub enabled: Option<bool>,
    pub servers: Option<Vec<String>>,
    pub node_class: Option<String>,
    pub node_pool: Option<String>,
    pub meta: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
    pub reserved: Option<Reserved>,
    #[serde(default)]
    pub host_volume: BTreeMap<String, HostVolume>,
    pub network_interface: Option<String>,
    #[serde(default)]
    pub host_network: BTreeMap<String, HostNetworkBlock>,
    pub bind_wildcard_default_host_network: Option<bool>,
    pub state_dir: Option<String>,
    pub alloc_dir: Option<String>,
    pub server_join: Option<ServerJoin>,
    pub cni_path: Option<String>,
    pub cni_config_dir: Option<String>,
    pub bridge_network_name: Option<String>,
    pub bridge_network_subnet: Option<String>,
    pub bridge_network_subnet_ipv6: Option<String>,
    pub bridge_network_hairpin_mode: Option<bool>,
    pub min_dynamic_port: Option<u16>,
    pub max_dynamic_port: Option<u16>,
    pub gc_max_allocs: Option<usize>,
    pub gc_disk_usage_threshold: Option<f64>,
    pub gc_interval: Option<String>,
    pub artifact: Option<ArtifactBlock>,
    /// Host path -> path inside the task, for the exec driver's chroot (the `exec` plugin
    /// block's own `chroot_env` wins).
    pub chroot_env: Option<BTreeMap<String, String>>,
    pub template: Option<ClientTemplateBlock>,
    /// Per-fingerprinter settings (Nomad's `fingerprint "env_aws" { ... }`).
    pub fingerprint: Ignored,
    /// Overrides the fingerprinted memory (MiB) the node offers.
    pub memory_total_mb: Option<u64>,
    /// Overrides the fingerprinted CPU (MHz) the node offers.
    pub cpu_total_compute: Option<u64>,
    /// The longest `kill_timeout` a task gets (default 30s, as Nomad's).
    pub max_kill_timeout: Option<String>,
    pub node_max_allocs: Option<u32>,
    pub disable_remote_exec: Option<bool>,
    /// Nomad's: where plugins of the common plugin interface are (secret providers in its
    /// `secrets/`); default `<data_dir>/common_plugins`.
    pub common_plugin_dir: Option<String>,
}

/// `client { artifact { ... } }`: Nomad's limits on fetching artifacts, and the host
/// directories local artifacts may come from (Drover's; none by default).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactBlock {
    pub http_read_timeout: Option<String>,
    pub http_max_size: Option<String>,
    pub decompression_size_limit: Option<String>,
    pub decompression_file_count_limit: Option<u64>,
    pub allowed_host_paths: Option<Vec<String>>,
}

impl ArtifactBlock {
    /// The client's artifact settings, Nomad's defaults where unset.
    fn resolve(&self) -> anyhow::Result<drover_client::ArtifactConfig> {
        let mut c = drover_client::ArtifactConfig::default();
        if let Some(t) = &self.http_read_timeout {
            c.timeout = drover_jobspec::parse_duration(t).with_context(|| {
                format!("client.artifact.http_read_timeout {t:?} is not a duration like \"30m\"")
            })?;
        }
        if let Some(v) = &self.http_max_size {
            c.max_size = parse_bytes(v).with_context(|| {
                format!("client.artifact.http_max_size {v:?} is not a size like \"100GB\"")
            })?;
        }
        if let Some(v) = &self.decompression_size_limit {
            c.unpack.size = parse_bytes(v).with_context(|| {
                format!(
                    "client.artifact.decompression_size_limit {v:?} is not a size like \"100GB\""
                )
            })?;
        }
        if let Some(n) = self.decompression_file_count_limit {
            c.unpack.files = n;
        }
        for p in self.allowed_host_paths.iter().flatten() {
            if !p.starts_with('/') {
                bail!("client.artifact.allowed_host_paths {p:?}: the path must be absolute");
            }
            c.allowed_host_paths.push(PathBuf::from(p));
        }
        Ok(c)
    }
}

/// A size as Nomad writes one: `512`, `10MB` (SI), `10MiB` (binary), case-insensitive.
pub fn parse_bytes(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num
        .parse()
        .with_context(|| format!("{s:?} has no number"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "tib" => 1024.0f64.powi(4),
        u => bail!("unknown unit {u:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)"),
    };
    let n = num * mult;
    if !n.is_finite() || n < 0.0 || n > u64::MAX as f64 {
        bail!("{s:?} is out of range");
    }
    Ok(n as u64)
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Reserved {
    pub cpu: Option<u64>,
    pub memory: Option<u64>,
    pub disk: Option<u64>,
    /// Cores kept for the host (Nomad's `cores = "0-1"`): never reserved for tasks.
    pub cores: Option<String>,
    pub reserved_ports: Option<String>,
}

/// A list of core ids as Nomad writes them: `0-1,4`.
fn core_list(s: &str) -> anyhow::Result<Vec<u16>> {
    let mut out = std::collections::BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim().parse::<u16>().map_err(|_| {
                anyhow::anyhow!(
                    "client.reserved.cores {s:?}: {part:?} is not a core id or a range (a-b)"
                )
            })
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            bail!("client.reserved.cores {s:?}: the range {part:?} runs backwards");
        }
        out.extend(a..=b);
    }
    Ok(out.into_iter().collect())
}

/// `client { host_network "NAME" { cidr interface reserved_ports } }` (Nomad's): the node's
/// addresses in `cidr` (comma-separated prefixes) on `interface` form the host network NAME.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostNetworkBlock {
    pub cidr: Option<String>,
    pub interface: Option<String>,
    pub reserved_ports: Option<String>,
}

impl HostNetworkBlock {
    fn resolve(&self, name: &str) -> anyhow::Result<drover_client::HostNetwork> {
        let key = format!("client.host_network.{name}");
        if name.is_empty()
            || name.len() > 128
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bail!("{key}: a host network name is letters, digits, '_', '-' and '.'");
        }
        let cidrs = self
            .cidr
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| c.parse().with_context(|| format!("{key}.cidr")))
            .collect::<anyhow::Result<Vec<drover_client::Cidr>>>()?;
        let interface = self
            .interface
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string);
        if let Some(i) = &interface
            && (i.len() > 15 || i.contains(['/', '\0']) || i.contains("{{"))
        {
            bail!("{key}.interface {i:?} is not an interface name (templates are not supported)");
        }
        let reserved_ports = self.reserved_ports.clone().unwrap_or_default();
        drover_model::parse_port_list(&reserved_ports)
            .with_context(|| format!("{key}.reserved_ports"))?;
        Ok(drover_client::HostNetwork {
            cidrs,
            interface,
            reserved_ports,
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostVolume {
    pub path: String,
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginBlock {
    pub args: Option<Vec<String>>,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Where the block ("") and each key of its `config` were written: `file:line:column`.
    #[serde(skip)]
    pub locations: BTreeMap<String, String>,
    /// Extism modules only: host directory -> the path the module sees it at (WASI).
    pub allowed_paths: Option<BTreeMap<String, String>>,
    /// Extism modules only: hosts (globs) the module may send HTTP requests to.
    pub allowed_hosts: Option<Vec<String>>,
    /// Extism modules only: the module's memory limit in MiB (default 64).
    pub max_memory_mb: Option<u64>,
    /// Extism modules only: how long one call may run, e.g. "5s" (default 10s).
    pub call_timeout: Option<String>,
}

/// Merges `b` into `a`: objects key by key, anything else replaced; nulls (unset) skipped.
fn deep_merge(a: &mut serde_json::Value, b: serde_json::Value) {
    match (a, b) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            for (k, v) in b {
                if v.is_null() {
                    continue;
                }
                match a.get_mut(&k) {
                    Some(x) if x.is_object() && v.is_object() => deep_merge(x, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (a, b) => {
            if !b.is_null() {
                *a = b;
            }
        }
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

/// What Drover refuses to run with: (dotted key, whether a file sets it, why), in the order
/// [`FileConfig::refusals`] reports them.
type Refusal = (&'static str, fn(&FileConfig) -> bool, &'static str);

const REFUSALS: &[Refusal] = &[
    (
        "telemetry",
        |f| f.telemetry.is_some(),
        "metrics are not exported yet; remove the telemetry block",
    ),
    (
        "ui.enabled",
        |f| f.ui.as_ref().is_some_and(|u| u.enabled == Some(true)),
        "Drover has no web UI",
    ),
    (
        "log_file",
        |f| f.log_file.is_some(),
        "logging to a file is not implemented yet: the agent logs to stderr",
    ),
    (
        "enable_debug",
        |f| f.enable_debug == Some(true),
        "there are no debug (pprof) endpoints",
    ),
    (
        "client.options",
        |f| {
            f.client
                .as_ref()
                .is_some_and(|c| c.options.as_ref().is_some_and(|o| !o.is_empty()))
        },
        "client options are not implemented yet (drivers are configured in plugin blocks)",
    ),
    (
        "client.state_dir",
        |f| f.client.as_ref().is_some_and(|c| c.state_dir.is_some()),
        "not configurable yet: the client keeps its state in <data_dir>/client",
    ),
    (
        "client.alloc_dir",
        |f| f.client.as_ref().is_some_and(|c| c.alloc_dir.is_some()),
        "not configurable yet: allocation directories are in <data_dir>/alloc",
    ),
    (
        "client.gc_interval",
        |f| f.client.as_ref().is_some_and(|c| c.gc_interval.is_some()),
        "not configurable yet: the client collects terminal allocations as they end (see gc_max_allocs, gc_disk_usage_threshold)",
    ),
    (
        "client.reserved.reserved_ports",
        |f| {
            f.client.as_ref().is_some_and(|c| {
                c.reserved
                    .as_ref()
                    .is_some_and(|r| r.reserved_ports.is_some())
            })
        },
        "reserving host ports is not implemented yet",
    ),
    (
        "server.data_dir",
        |f| f.server.as_ref().is_some_and(|s| s.data_dir.is_some()),
        "not configurable: the server keeps its data in <data_dir>/server",
    ),
    (
        "server.default_scheduler_config.memory_oversubscription_enabled",
        |f| {
            f.server
                .as_ref()
                .and_then(|s| s.default_scheduler_config.as_ref())
                .is_some_and(|d| d.memory_oversubscription_enabled == Some(true))
        },
        "memory oversubscription is not implemented yet",
    ),
    (
        "server.default_scheduler_config.preemption_config",
        |f| {
            f.server
                .as_ref()
                .and_then(|s| s.default_scheduler_config.as_ref())
                .is_some_and(|d| d.preemption_config.is_some())
        },
        "preemption is not implemented yet",
    ),
    (
        "enable_syslog",
        |f| f.enable_syslog == Some(true),
        "logging to syslog is not implemented yet: the agent logs to stderr (journald collects it under systemd)",
    ),
    (
        "client.fingerprint",
        |f| f.client.as_ref().is_some_and(|c| c.fingerprint.is_some()),
        "per-fingerprinter settings are not implemented yet: Drover's fingerprinters (cpu, memory, storage, network, os) take none",
    ),
    (
        "client.node_max_allocs",
        |f| {
            f.client
                .as_ref()
                .is_some_and(|c| c.node_max_allocs.is_some())
        },
        "a limit on allocations per node is not implemented yet in the scheduler",
    ),
    (
        "client.template.disable_file_sandbox",
        |f| {
            f.client
                .as_ref()
                .and_then(|c| c.template.as_ref())
                .is_some_and(|t| t.disable_file_sandbox == Some(true))
        },
        "templates always read files inside the task's directory; the sandbox cannot be turned off",
    ),
    (
        "client.template.function_denylist",
        |f| {
            f.client
                .as_ref()
                .and_then(|c| c.template.as_ref())
                .and_then(|t| t.function_denylist.as_ref())
                .is_some_and(|l| l.iter().any(|f| f != "plugin" && f != "writeToFile"))
        },
        "denying template functions is not implemented yet (Drover's templates have no plugin or writeToFile functions, Nomad's default denylist; a list naming others would not be enforced)",
    ),
];

impl FileConfig {
    /// Reads one file (HCL, or JSON for `*.json`).
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
            .with_context(|| format!("invalid agent configuration in {}", path.display()))
    }

    /// Parses one config file's text (HCL with HCL1's semantics, or HCL1's JSON for
    /// `*.json`, as Nomad reads them) into one object tree, normalises what Nomad still
    /// accepts (see `compat`), and decodes it. Errors name `file:line:column` and the key.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<FileConfig> {
        let file = path.display();
        let is_json = path.extension().is_some_and(|e| e == "json");
        let (mut tree, spans) = if is_json {
            let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
                anyhow::anyhow!("{file}:{}:{}: invalid JSON: {e}", e.line(), e.column())
            })?;
            (hcl1::unwrap_json_lists(v), hcl1::Spans::new())
        } else {
            hcl1::parse(text).map_err(|e| anyhow::anyhow!("{file}:{e}"))?
        };
        // JSON keeps no positions: point at the key's first occurrence.
        let at = |key: &str| -> (usize, usize) {
            spans.get(key).copied().unwrap_or_else(|| {
                let last = key.rsplit('.').next().unwrap_or(key);
                text.find(&format!("\"{last}\""))
                    .filter(|_| is_json)
                    .map(|o| line_col(text, o))
                    .unwrap_or((0, 0))
            })
        };
        let notices = compat::normalise(&mut tree).map_err(|r| {
            let (l, c) = at(&r.key);
            anyhow::anyhow!("{file}:{l}:{c}: {}: {}", r.key, r.why)
        })?;
        let mut parsed: FileConfig = serde_path_to_error::deserialize(tree).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            // The path names the offending key (for an unknown field too, but at the top level).
            let key = msg
                .split('`')
                .nth(1)
                .filter(|_| msg.starts_with("unknown field"));
            let full = match key {
                Some(k) if path == "." => k.to_string(),
                _ => path.clone(),
            };
            let hint = match full.as_str() {
                "node_name" => " (the node's name is set with the top-level `name`)",
                _ => "",
            };
            let (l, c) = if spans.contains_key(&full) || is_json {
                at(&full)
            } else {
                at(&path)
            };
            anyhow::anyhow!("{file}:{l}:{c}: {full}: {msg}{hint}")
        })?;
        parsed.notices = notices.warnings;
        parsed.check_refusals(&file.to_string(), at)?;
        for (name, block) in parsed.plugin.iter_mut() {
            let prefix = format!("plugin.{name}");
            for (path, (l, c)) in spans.range(prefix.clone()..) {
                let key = if *path == prefix {
                    ""
                } else if let Some(k) = path.strip_prefix(&format!("{prefix}.config.")) {
                    k
                } else if path.starts_with(&format!("{prefix}.")) {
                    continue;
                } else {
                    break;
                };
                block
                    .locations
                    .insert(key.to_string(), format!("{file}:{l}:{c}"));
            }
        }
        Ok(parsed)
    }

    /// What this configuration asks for that Drover cannot do (yet), as (dotted key, why):
    /// such a file is refused rather than run with the option silently ignored. `acl`
    /// enabled is here too: until it exists, such an agent would run open.
    pub fn refusals(&self) -> Vec<(String, String)> {
        REFUSALS
            .iter()
            .filter(|(_, set, _)| set(self))
            .map(|(key, _, why)| (key.to_string(), why.to_string()))
            .collect()
    }

    /// The first refusal of [`FileConfig::refusals`] as an error naming `file:line:col`.
    fn check_refusals(
        &self,
        file: &str,
        at: impl Fn(&str) -> (usize, usize),
    ) -> anyhow::Result<()> {
        if let Some((key, why)) = self.refusals().into_iter().next() {
            let (l, c) = at(&key);
            bail!("{file}:{l}:{c}: {key}: {why}");
        }
        Ok(())
    }

    /// What this configuration sets that Drover accepts but does not act on, and why.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        let mut ignored = |set: bool, what: &str, why: &str| {
            if set {
                w.push(format!("{what} is ignored: {why}"));
            }
        };
        ignored(
            self.consul.is_some(),
            "consul",
            "service discovery is built into Drover; there is no Consul to talk to",
        );
        ignored(
            self.vault.is_some(),
            "vault",
            "secrets are built in (secret blocks and secret-provider plugins), not read from Vault",
        );
        if let Some(s) = &self.server {
            ignored(
                s.raft_protocol.is_some(),
                "server.raft_protocol",
                "Drover has one Raft protocol",
            );
        }
        ignored(
            self.ports.as_ref().is_some_and(|p| p.serf.is_some())
                || self.advertise.as_ref().is_some_and(|a| a.serf.is_some())
                || self.addresses.as_ref().is_some_and(|a| a.serf.is_some()),
            "serf port/address",
            "Drover has no gossip ring; servers talk over the RPC port",
        );
        ignored(
            self.plugin
                .iter()
                .any(|(name, p)| name == "raw_exec" && p.args.is_some()),
            "plugin args",
            "built-in plugins take no arguments",
        );
        if let Some(a) = &self.autopilot {
            ignored(
                a.last_contact_threshold.is_some()
                    || a.max_trailing_logs.is_some()
                    || a.min_quorum.is_some()
                    || a.server_stabilization_time.is_some(),
                "autopilot's Raft-health settings (last_contact_threshold, max_trailing_logs, min_quorum, server_stabilization_time)",
                "Drover's autopilot only removes dead servers (cleanup_dead_servers, server.dead_server_cleanup)",
            );
        }
        ignored(
            self.limits.is_some(),
            "limits",
            "the HTTP API's limits (bodies, blocking queries, streams) are fixed; connection limits per client are not configurable yet",
        );
        if let Some(t) = self.client.as_ref().and_then(|c| c.template.as_ref()) {
            ignored(
                t.max_stale.is_some()
                    || t.block_query_wait.is_some()
                    || t.wait.is_some()
                    || t.wait_bounds.is_some()
                    || t.consul_retry.is_some()
                    || t.vault_retry.is_some()
                    || t.nomad_retry.is_some(),
                "client.template's query and retry settings",
                "templates read the client's local state; there are no Consul, Vault or Nomad queries to tune",
            );
        }
        w.splice(0..0, self.notices.iter().cloned());
        w
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
        // Where plugin blocks were written does not travel through JSON: carry it over.
        let mut locations: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (name, b) in self.plugin.iter().chain(o.plugin.iter()) {
            locations
                .entry(name.clone())
                .or_default()
                .extend(b.locations.clone());
        }
        let mut notices = std::mem::take(&mut self.notices);
        notices.extend(o.notices.iter().cloned());
        let mut a = serde_json::to_value(&*self).expect("config serializes");
        deep_merge(&mut a, serde_json::to_value(o).expect("config serializes"));
        *self = serde_json::from_value(a).expect("a merge of valid configs is valid");
        self.notices = notices;
        for (name, b) in self.plugin.iter_mut() {
            b.locations = locations.remove(name).unwrap_or_default();
        }
    }
}

/// The resolved configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub dev: bool,
    pub bootstrap_expect: u32,
    /// Other servers' RPC addresses.
    pub retry_join: Vec<String>,
    pub retry_interval: std::time::Duration,
    pub retry_max: u32,
    /// Remove a server the leader cannot reach for this long (autopilot's cleanup).
    pub dead_server_cleanup: Option<std::time::Duration>,
    /// How old finished evaluations, dead jobs and down nodes must be before the leader
    /// deletes them.
    pub gc: drover_server::GcThresholds,
    /// Leave the cluster (not just stop) on SIGTERM / SIGINT.
    pub leave_on_terminate: bool,
    pub leave_on_interrupt: bool,
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub data_dir: PathBuf,
    /// The addresses the HTTP API and RPC listen on (`addresses.*`, else `bind_addr`).
    pub http_bind: String,
    pub rpc_bind: String,
    pub http_port: u16,
    pub rpc_port: u16,
    pub advertise_rpc: String,
    pub advertise_http: String,
    pub server: bool,
    pub client: bool,
    pub servers: Vec<String>,
    pub node_class: String,
    /// `client { node_pool }`: the pool this node registers in (created if it does not
    /// exist; never `all`).
    pub node_pool: String,
    pub meta: BTreeMap<String, String>,
    pub plugins: BTreeMap<String, PluginBlock>,
    /// Where third-party plugins are found (executables, *.wasm, *.so).
    pub plugin_dir: Option<PathBuf>,
    pub heartbeat_ttl: std::time::Duration,
    pub reserved: drover_model::NodeResources,
    pub host_volumes: BTreeMap<String, drover_model::HostVolume>,
    /// `client { network_interface }`: None = the default route's interface.
    pub network_interface: Option<String>,
    /// `client { host_network "NAME" { ... } }`.
    pub host_networks: BTreeMap<String, drover_client::HostNetwork>,
    /// `client { bind_wildcard_default_host_network }` (default true).
    pub bind_wildcard_default_host_network: bool,
    pub raft_snapshot_threshold: u64,
    pub raft_trailing_logs: u64,
    pub num_schedulers: usize,
    pub job_max_count: u32,
    pub max_placements_per_eval: usize,
    /// `keyring "file" { path }`: the KEK file (None: `<data_dir>/server/keyring.kek`).
    pub kek_file: Option<PathBuf>,
    /// `server { default_scheduler_config }`: in force until one is set through the API.
    pub default_scheduler_config: drover_model::SchedulerConfiguration,
    pub dynamic_ports: (u16, u16),
    pub gc_max_allocs: usize,
    pub gc_disk_usage_threshold: f64,
    pub artifacts: drover_client::ArtifactConfig,
    /// `client { cni_path, cni_config_dir }`.
    pub cni: drover_client::CniLocations,
    /// `client { cpu_total_compute, memory_total_mb }`: what the node offers instead of
    /// what is fingerprinted.
    pub resource_totals: drover_client::ResourceTotals,
    /// `client { max_kill_timeout }`.
    pub max_kill_timeout: std::time::Duration,
    /// `client { disable_remote_exec }`: `alloc exec` is refused on this client.
    pub disable_remote_exec: bool,
    /// `client { bridge_network_* }`: the built-in bridge network.
    pub bridge: drover_client::BridgeNetwork,
    /// `acl { ... }`: ACL enforcement by the HTTP API.
    pub acl: drover_api::acl::AclConfig,
    /// The `tls` block.
    pub tls: crate::tls::TlsSettings,
    /// `dns { ... }`: None when disabled.
    pub dns: Option<drover_dns::DnsConfig>,
    /// `client { common_plugin_dir }` (default `<data_dir>/common_plugins`).
    pub common_plugin_dir: PathBuf,
}

/// `client { common_plugin_dir }`: an absolute path (Nomad's rule), by default
/// `<data_dir>/common_plugins`.
fn common_plugin_dir(c: &ClientBlock, data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    match c.common_plugin_dir.as_deref().map(str::trim) {
        None | Some("") => Ok(data_dir.join("common_plugins")),
        Some(d) if std::path::Path::new(d).is_absolute() => Ok(PathBuf::from(d)),
        Some(d) => bail!("client.common_plugin_dir {d:?} must be an absolute path"),
    }
}

/// `client { bridge_network_name, bridge_network_subnet, bridge_network_subnet_ipv6,
/// bridge_network_hairpin_mode }` over Nomad's defaults: the name must be an interface name,
/// the subnets CIDRs of their address family.
fn bridge_network(c: &ClientBlock) -> anyhow::Result<drover_client::BridgeNetwork> {
    let mut b = drover_client::BridgeNetwork::default();
    if let Some(n) = c.bridge_network_name.as_deref().map(str::trim) {
        if n.is_empty()
            || n.len() > 15
            || n.contains(['/', ':', '\0'])
            || n.contains(char::is_whitespace)
        {
            bail!(
                "client.bridge_network_name {n:?} is not an interface name (1 to 15 bytes, no '/', ':' or spaces)"
            );
        }
        b.name = n.to_string();
    }
    let cidr = |field: &str, v: &str, v4: bool| -> anyhow::Result<String> {
        let fam = if v4 { "IPv4" } else { "IPv6" };
        match v.parse::<drover_client::Cidr>() {
            Ok(c) if c.ip.is_ipv4() == v4 => Ok(v.to_string()),
            _ => bail!("client.{field} {v:?} is not an {fam} CIDR (address/prefix length)"),
        }
    };
    if let Some(s) = c.bridge_network_subnet.as_deref().map(str::trim) {
        b.subnet = cidr("bridge_network_subnet", s, true)?;
    }
    if let Some(s) = c.bridge_network_subnet_ipv6.as_deref().map(str::trim) {
        b.subnet_ipv6 = Some(cidr("bridge_network_subnet_ipv6", s, false)?);
    }
    if let Some(h) = c.bridge_network_hairpin_mode {
        b.hairpin_mode = h;
    }
    Ok(b)
}

/// A server's RPC address from `host[:port]`: the default port is 4647; Nomad's Serf port
/// 4648 (as existing Nomad configs list) is mapped to the RPC port with a warning, since
/// Drover has no gossip port.
pub fn rpc_address(a: &str, field: &str) -> anyhow::Result<String> {
    let a = a.trim();
    if a.is_empty() {
        bail!("{field}: an empty address");
    }
    // "[v6]:port", "host:port", or a bare host (a bare IPv6 address has several colons).
    let has_port = if a.starts_with('[') {
        a.contains("]:")
    } else {
        a.matches(':').count() == 1
    };
    let (host, port) = match a.rsplit_once(':') {
        Some((h, p)) if has_port => {
            let port: u16 = p
                .parse()
                .with_context(|| format!("{field}: {a:?} has a port that is not a number"))?;
            (h.to_string(), port)
        }
        _ => (a.to_string(), 4647),
    };
    let port = if port == 4648 {
        tracing::warn!(
            "{field}: {a} names Nomad's Serf port 4648; Drover has no gossip port, so it joins through the RPC port {host}:4647"
        );
        4647
    } else {
        port
    };
    Ok(format!("{host}:{port}"))
}

/// The modes of the data dir's layout: `data_dir` and `alloc/` 0711 (tasks running as other
/// users reach their own directories below, without listing anyone else's), `server/`,
/// `client/` and `plugins/` 0700 (Raft state, client state with job env and templates,
/// plugin sockets). The files inside are created 0600 by their owners (drover-raft, the
/// client's local state).
pub const DATA_DIR_LAYOUT: [(&str, u32); 5] = [
    ("", 0o711),
    ("alloc", 0o711),
    ("server", 0o700),
    ("client", 0o700),
    ("plugins", 0o700),
];

/// Creates the data dir's layout with its modes, whatever the umask, and repairs modes an
/// earlier version left (checked at every start). `server/` only on a server, `client/`,
/// `alloc/` and `plugins/` only on a client.
pub fn prepare_data_dir(data_dir: &Path, server: bool, client: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    for (sub, mode) in DATA_DIR_LAYOUT {
        let wanted = match sub {
            "" => true,
            "server" => server,
            _ => client,
        };
        if !wanted {
            continue;
        }
        let dir = data_dir.join(sub);
        match std::fs::DirBuilder::new().mode(mode).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot create {}", dir.display()));
            }
        }
        let meta = std::fs::symlink_metadata(&dir)
            .with_context(|| format!("cannot read {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        if meta.permissions().mode() & 0o7777 != mode {
            tracing::info!(dir = %dir.display(), from = format!("{:o}", meta.permissions().mode() & 0o7777), to = format!("{mode:o}"), "repairing the mode of a data_dir directory");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("cannot set the mode of {}", dir.display()))?;
        }
    }
    Ok(())
}

impl AgentConfig {
    /// The configuration the agent runs with, and its data_dir, created.
    pub fn resolve(f: FileConfig, dev: bool) -> anyhow::Result<AgentConfig> {
        let mut cfg = AgentConfig::check(f, dev)?;
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
        cfg.data_dir = std::fs::canonicalize(&cfg.data_dir)
            .with_context(|| format!("cannot resolve data_dir {}", cfg.data_dir.display()))?;
        prepare_data_dir(&cfg.data_dir, cfg.server, cfg.client)?;
        Ok(cfg)
    }

    /// Every value checked and defaulted, with no effect on the machine (`config validate`).
    pub fn check(f: FileConfig, dev: bool) -> anyhow::Result<AgentConfig> {
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "drover".into());
        let data_dir = match (&f.data_dir, dev) {
            (Some(d), _) => PathBuf::from(d),
            (None, true) => std::env::temp_dir().join(format!("drover-dev-{}", std::process::id())),
            (None, false) => bail!(
                "data_dir is required (set data_dir in the config file, -data-dir, or use -dev)"
            ),
        };
        let net = Listeners::check(&f, dev)?;
        let server_block = f.server.clone().unwrap_or_default();
        let client_block = f.client.clone().unwrap_or_default();
        let server = server_block.enabled.unwrap_or(dev);
        let client = client_block.enabled.unwrap_or(dev);
        if !server && !client {
            bail!(
                "neither server nor client is enabled: set server {{ enabled = true }} and/or client {{ enabled = true }}, or use -dev"
            );
        }
        let join = server_block.server_join.clone().unwrap_or_default();
        let retry_join = retry_join(&join, server, server_block.bootstrap_expect.unwrap_or(1))?;
        let servers = client_servers(
            &client_block,
            server,
            client,
            &net.advertise_rpc,
            &retry_join,
        )?;
        for w in f.warnings() {
            tracing::warn!("{w}");
        }
        let joins = server_block.bootstrap_expect.unwrap_or(1) > 1 || !retry_join.is_empty();
        let tls = crate::tls::TlsSettings::resolve(f.tls.as_ref(), server, server && joins)?;
        let mut plugins = f.plugin.clone();
        if let Some(chroot) = &client_block.chroot_env {
            // Nomad's `client { chroot_env }` is the exec driver's; its plugin block wins.
            let p = plugins.entry("exec".into()).or_default();
            let chroot = serde_json::to_value(chroot).expect("a map of strings serializes");
            p.config
                .get_or_insert_with(Default::default)
                .entry("chroot_env")
                .or_insert(chroot);
        }
        if dev {
            // Like Nomad's -dev: raw_exec is enabled.
            let p = plugins.entry("raw_exec".into()).or_default();
            p.config
                .get_or_insert_with(Default::default)
                .entry("enabled")
                .or_insert(serde_json::Value::Bool(true));
        }
        let mut cfg = AgentConfig {
            bootstrap_expect: server_block.bootstrap_expect.unwrap_or(1),
            retry_join,
            retry_interval: duration_or(
                &join.retry_interval,
                "server.server_join.retry_interval",
                "15s",
                std::time::Duration::from_secs(1),
            )?,
            retry_max: join.retry_max.unwrap_or(0),
            dead_server_cleanup: Some(duration_or(
                &server_block.dead_server_cleanup,
                "server.dead_server_cleanup",
                "5m",
                std::time::Duration::from_secs(600),
            )?)
            .filter(|d| !d.is_zero())
            .filter(|_| {
                f.autopilot
                    .as_ref()
                    .and_then(|a| a.cleanup_dead_servers)
                    .unwrap_or(true)
            }),
            gc: gc_thresholds(&server_block)?,
            leave_on_terminate: f.leave_on_terminate.unwrap_or(false),
            leave_on_interrupt: f.leave_on_interrupt.unwrap_or(false),
            gc_max_allocs: client_block.gc_max_allocs.unwrap_or(50),
            gc_disk_usage_threshold: client_block.gc_disk_usage_threshold.unwrap_or(80.0),
            artifacts: client_block
                .artifact
                .clone()
                .unwrap_or_default()
                .resolve()?,
            dynamic_ports: (20000, 32000),
            num_schedulers: server_block.num_schedulers.unwrap_or(4).max(1) as usize,
            job_max_count: server_block
                .job_max_count
                .unwrap_or(drover_server::DEFAULT_JOB_MAX_COUNT),
            max_placements_per_eval: server_block
                .max_placements_per_eval
                .unwrap_or(drover_server::DEFAULT_MAX_PLACEMENTS_PER_EVAL)
                .max(1),
            kek_file: keyring_kek_file(&f.keyring)?,
            default_scheduler_config: default_scheduler_config(&server_block)?,
            raft_snapshot_threshold: server_block
                .raft_snapshot_threshold
                .unwrap_or(drover_raft::RaftNodeConfig::DEFAULT_SNAPSHOT_THRESHOLD)
                .max(1),
            raft_trailing_logs: server_block
                .raft_trailing_logs
                .unwrap_or(drover_raft::RaftNodeConfig::DEFAULT_TRAILING_LOGS),
            reserved: drover_model::NodeResources::default(),
            host_volumes: BTreeMap::new(),
            network_interface: None,
            host_networks: BTreeMap::new(),
            bind_wildcard_default_host_network: client_block
                .bind_wildcard_default_host_network
                .unwrap_or(true),
            cni: drover_client::CniLocations::default(),
            resource_totals: drover_client::ResourceTotals {
                cpu: client_block.cpu_total_compute,
                memory_mb: client_block.memory_total_mb,
            },
            max_kill_timeout: duration_or(
                &client_block.max_kill_timeout,
                "client.max_kill_timeout",
                "30s",
                std::time::Duration::from_secs(30),
            )?,
            disable_remote_exec: client_block.disable_remote_exec.unwrap_or(false),
            common_plugin_dir: common_plugin_dir(&client_block, &data_dir)?,
            acl: acl_config(&f.acl, &data_dir)?,
            bridge: drover_client::BridgeNetwork::default(),
            tls,
            dns: dns::resolve(f.dns.as_ref())?,
            dev,
            name: f.name.clone().unwrap_or(host),
            region: f.region.clone().unwrap_or_else(|| "global".into()),
            datacenter: f.datacenter.clone().unwrap_or_else(|| "dc1".into()),
            data_dir,
            http_port: net.http_port,
            rpc_port: net.rpc_port,
            advertise_http: net.advertise_http,
            http_bind: net.http_bind,
            rpc_bind: net.rpc_bind,
            advertise_rpc: net.advertise_rpc,
            server,
            client,
            servers,
            node_class: client_block.node_class.clone().unwrap_or_default(),
            node_pool: client_node_pool(client_block.node_pool.as_deref())?,
            meta: client_block.meta.clone().unwrap_or_default(),
            plugins,
            plugin_dir: f.plugin_dir.as_ref().map(PathBuf::from),
            heartbeat_ttl: duration_or(
                &server_block.heartbeat_grace,
                "server.heartbeat_grace",
                "10s",
                std::time::Duration::from_secs(10),
            )?,
        };
        cfg.offer_client_resources(&client_block)?;
        Ok(cfg)
    }

    /// What the client offers jobs and keeps back: reserved resources, host volumes and the
    /// dynamic port range.
    fn offer_client_resources(&mut self, client_block: &ClientBlock) -> anyhow::Result<()> {
        let r = client_block.reserved.clone().unwrap_or_default();
        self.reserved = drover_model::NodeResources {
            cpu: r.cpu.unwrap_or(0),
            memory_mb: r.memory.unwrap_or(0),
            disk_mb: r.disk.unwrap_or(0),
            reservable_cores: core_list(r.cores.as_deref().unwrap_or(""))?,
            ..Default::default()
        };
        self.network_interface = client_block
            .network_interface
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(str::to_string);
        if let Some(i) = &self.network_interface
            && (i.len() > 15 || i.contains(['/', '\0']))
        {
            bail!("client.network_interface {i:?} is not an interface name");
        }
        self.host_networks = client_block
            .host_network
            .iter()
            .map(|(name, h)| Ok((name.clone(), h.resolve(name)?)))
            .collect::<anyhow::Result<_>>()?;
        if let Some(p) = &client_block.cni_path {
            self.cni.plugin_path = drover_cni::PluginPath::parse(p);
            if self.cni.plugin_path.dirs().is_empty() {
                bail!("client.cni_path {p:?} names no directory");
            }
        }
        if let Some(d) = client_block.cni_config_dir.as_deref().map(str::trim) {
            if d.is_empty() {
                bail!("client.cni_config_dir is empty");
            }
            self.cni.config_dir = PathBuf::from(d);
        }
        self.bridge = bridge_network(client_block)?;
        self.host_volumes = client_block
            .host_volume
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    drover_model::HostVolume {
                        path: v.path.clone(),
                        read_only: v.read_only.unwrap_or(false),
                    },
                )
            })
            .collect();
        self.dynamic_ports = (
            client_block.min_dynamic_port.unwrap_or(20000),
            client_block.max_dynamic_port.unwrap_or(32000),
        );
        if self.dynamic_ports.0 > self.dynamic_ports.1 {
            bail!(
                "client.min_dynamic_port {} is above client.max_dynamic_port {}",
                self.dynamic_ports.0,
                self.dynamic_ports.1
            );
        }
        Ok(())
    }
}

/// Where the HTTP API and RPC listen and what they advertise: `bind_addr`, overridden per
/// listener by `addresses { http rpc }`, `ports`, and `advertise` (the bind address, or
/// 127.0.0.1 when binding every address).
struct Listeners {
    http_bind: String,
    rpc_bind: String,
    http_port: u16,
    rpc_port: u16,
    advertise_http: String,
    advertise_rpc: String,
}

impl Listeners {
    fn check(f: &FileConfig, dev: bool) -> anyhow::Result<Listeners> {
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
        // `addresses { http = ..., rpc = ... }` override bind_addr for that listener.
        let addresses = f.addresses.clone().unwrap_or_default();
        let listen = |a: &Option<String>, key: &str| -> anyhow::Result<String> {
            let ip = a.clone().unwrap_or_else(|| bind_addr.clone());
            ip.parse::<std::net::IpAddr>()
                .with_context(|| format!("{key} {ip:?} is not an IP address"))?;
            Ok(ip)
        };
        let http_bind = listen(&addresses.http, "addresses.http")?;
        let rpc_bind = listen(&addresses.rpc, "addresses.rpc")?;
        let advertise = f.advertise.clone().unwrap_or_default();
        let adv_default = |bind: &str| {
            if bind == "0.0.0.0" || bind == "::" {
                adv_host.clone()
            } else {
                bind.to_string()
            }
        };
        let with_port = |a: Option<String>, port: u16, bind: &str| match a {
            Some(a) if a.contains(':') => a,
            Some(a) => format!("{a}:{port}"),
            None => format!("{}:{port}", adv_default(bind)),
        };
        Ok(Listeners {
            advertise_http: with_port(advertise.http, http_port, &http_bind),
            advertise_rpc: with_port(advertise.rpc, rpc_port, &rpc_bind),
            http_bind,
            rpc_bind,
            http_port,
            rpc_port,
        })
    }
}

/// The `acl` block as the API enforces it (Nomad's defaults: off, 30 s cache, tokens
/// expiring 1 minute to 24 hours after creation). The bootstrap reset file is Nomad's
/// `acl-bootstrap-reset` in the server's data directory.
fn acl_config(
    block: &Option<AclBlock>,
    data_dir: &std::path::Path,
) -> anyhow::Result<drover_api::acl::AclConfig> {
    let b = block.clone().unwrap_or_default();
    let d = drover_api::acl::AclConfig::default();
    for (key, v) in [
        ("acl.policy_ttl", &b.policy_ttl),
        ("acl.role_ttl", &b.role_ttl),
    ] {
        duration_or(v, key, "30s", d.token_ttl)?;
    }
    let cfg = drover_api::acl::AclConfig {
        enabled: b.enabled.unwrap_or(false),
        token_ttl: duration_or(&b.token_ttl, "acl.token_ttl", "30s", d.token_ttl)?,
        token_min_ttl: duration_or(
            &b.token_min_expiration_ttl,
            "acl.token_min_expiration_ttl",
            "1m",
            d.token_min_ttl,
        )?,
        token_max_ttl: duration_or(
            &b.token_max_expiration_ttl,
            "acl.token_max_expiration_ttl",
            "24h",
            d.token_max_ttl,
        )?,
        bootstrap_reset_file: data_dir.join("server").join("acl-bootstrap-reset"),
    };
    if cfg.token_min_ttl > cfg.token_max_ttl {
        bail!("acl.token_min_expiration_ttl is longer than acl.token_max_expiration_ttl");
    }
    Ok(cfg)
}

/// A duration setting (`"15s"`, `"1h"`), or `default` when it is not set.
fn duration_or(
    value: &Option<String>,
    key: &str,
    example: &str,
    default: std::time::Duration,
) -> anyhow::Result<std::time::Duration> {
    match value {
        None => Ok(default),
        Some(s) => drover_jobspec::parse_duration(s)
            .with_context(|| format!("{key} {s:?} is not a duration like \"{example}\"")),
    }
}

/// The other servers a server joins (`server_join { retry_join start_join }`), which a
/// server expecting more than itself must have.
fn retry_join(
    join: &ServerJoin,
    server: bool,
    bootstrap_expect: u32,
) -> anyhow::Result<Vec<String>> {
    let retry_join: Vec<String> = join
        .retry_join
        .iter()
        .chain(join.start_join.iter())
        .flatten()
        .map(|a| rpc_address(a, "server.server_join.retry_join"))
        .collect::<anyhow::Result<_>>()?;
    if server && bootstrap_expect > 1 && retry_join.is_empty() {
        bail!(
            "server.bootstrap_expect = {bootstrap_expect} needs the other servers' addresses: set server {{ server_join {{ retry_join = [\"host:4647\", ...] }} }}"
        );
    }
    Ok(retry_join)
}

/// The servers a client talks to: `client { servers server_join }`, else (on an agent that
/// is also a server) itself and the servers it joins.
fn client_servers(
    client_block: &ClientBlock,
    server: bool,
    client: bool,
    advertise_rpc: &str,
    retry_join: &[String],
) -> anyhow::Result<Vec<String>> {
    let client_join = client_block.server_join.clone().unwrap_or_default();
    let mut servers: Vec<String> = client_block
        .servers
        .iter()
        .chain(client_join.retry_join.iter())
        .chain(client_join.start_join.iter())
        .flatten()
        .map(|a| rpc_address(a, "client.servers"))
        .collect::<anyhow::Result<_>>()?;
    if servers.is_empty() && server {
        servers.push(advertise_rpc.to_string());
        servers.extend(retry_join.iter().cloned());
    }
    if client && servers.is_empty() {
        bail!(
            "client.servers is empty: a client-only agent needs at least one server address (host:4647)"
        );
    }
    servers.dedup();
    Ok(servers)
}

/// How old finished evaluations, dead jobs and down nodes must be before they are collected.
fn gc_thresholds(server_block: &ServerBlock) -> anyhow::Result<drover_server::GcThresholds> {
    let threshold = |value: &Option<String>, key: &str, default: std::time::Duration| {
        duration_or(value, &format!("server.{key}"), "1h", default)
    };
    let defaults = drover_server::GcThresholds::default();
    Ok(drover_server::GcThresholds {
        eval: threshold(
            &server_block.eval_gc_threshold,
            "eval_gc_threshold",
            defaults.eval,
        )?,
        batch_eval: threshold(
            &server_block.batch_eval_gc_threshold,
            "batch_eval_gc_threshold",
            defaults.batch_eval,
        )?,
        job: threshold(
            &server_block.job_gc_threshold,
            "job_gc_threshold",
            defaults.job,
        )?,
        node: threshold(
            &server_block.node_gc_threshold,
            "node_gc_threshold",
            defaults.node,
        )?,
    })
}

/// `client { node_pool }`: a valid pool name other than `all`; `default` when unset.
fn client_node_pool(pool: Option<&str>) -> anyhow::Result<String> {
    let pool = pool.unwrap_or(drover_model::DEFAULT_NODE_POOL);
    if pool == drover_model::ALL_NODE_POOL {
        bail!(
            "client.node_pool cannot be \"all\": that built-in pool holds every node and none names it"
        );
    }
    if !drover_model::valid_node_pool_name(pool) {
        bail!(
            "client.node_pool {pool:?} is not a valid node pool name (1 to 128 letters, digits, '-' and '_')"
        );
    }
    Ok(pool.to_string())
}

/// `server { default_scheduler_config { scheduler_algorithm reject_job_registration
/// pause_eval_broker } }` over Nomad's defaults (binpack).
fn default_scheduler_config(
    server_block: &ServerBlock,
) -> anyhow::Result<drover_model::SchedulerConfiguration> {
    let sched = server_block
        .default_scheduler_config
        .clone()
        .unwrap_or_default();
    let mut config = drover_model::SchedulerConfiguration::default();
    if let Some(a) = sched.scheduler_algorithm.as_deref() {
        config.scheduler_algorithm = drover_model::SchedulerAlgorithm::parse(a).with_context(|| {
            format!("server.default_scheduler_config.scheduler_algorithm {a:?} is not binpack or spread")
        })?;
    }
    config.reject_job_registration = sched.reject_job_registration.unwrap_or(false);
    config.pause_eval_broker = sched.pause_eval_broker.unwrap_or(false);
    Ok(config)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_data_dir_layout_has_its_modes_under_umask_000_and_is_repaired() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = tmp.path().join("data");
        std::fs::create_dir(&data_dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        // SAFETY: umask(2) only swaps the process mask; the old one is restored below.
        let old = unsafe { libc::umask(0) };
        let made = prepare_data_dir(&data_dir, true, true);
        // SAFETY: restores the mask saved above.
        unsafe { libc::umask(old) };
        made.unwrap();
        for (sub, m) in DATA_DIR_LAYOUT {
            assert_eq!(mode(&data_dir.join(sub)), m, "{sub:?}");
        }
        // Modes an earlier version left are repaired at the next start.
        for sub in ["", "alloc", "server", "client"] {
            std::fs::set_permissions(data_dir.join(sub), std::fs::Permissions::from_mode(0o777))
                .unwrap();
        }
        prepare_data_dir(&data_dir, true, true).unwrap();
        for (sub, m) in DATA_DIR_LAYOUT {
            assert_eq!(mode(&data_dir.join(sub)), m, "{sub:?}");
        }
    }
    use super::*;

    fn parse(text: &str) -> anyhow::Result<FileConfig> {
        FileConfig::parse(text, Path::new("agent.hcl"))
    }

    #[test]
    fn parses_hcl_with_plugin_blocks() {
        let f = parse(
            r#"
            data_dir = "/tmp/x"
            ports { http = 5646 }
            server { enabled = true }
            client {
              enabled = true
              meta { rack = "r1" }
              reserved { memory = 512 }
              host_volume "certs" {
                path      = "/etc/ssl"
                read_only = true
              }
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
        let c = f.client.unwrap();
        assert_eq!(c.host_volume["certs"].path, "/etc/ssl");
        assert_eq!(c.reserved.unwrap().memory, Some(512));
    }

    #[test]
    fn unknown_keys_and_bad_values_name_file_line_and_key() {
        let e =
            parse("data_dir = \"/x\"\nserver {\n  enabled = true\n  bootstrap_expectt = 1\n}\n")
                .unwrap_err();
        assert!(
            e.to_string().starts_with(
                "agent.hcl:4:3: server.bootstrap_expectt: unknown field `bootstrap_expectt`"
            ),
            "{e}"
        );
        let e = parse("ports {\n  http = \"eighty\"\n}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agent.hcl:2:3: ports.http: invalid type: string \"eighty\""),
            "{e}"
        );
        let e = parse("plugin \"raw_exec\" {\n  confg {}\n}\n").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("agent.hcl:2:3: plugin.raw_exec.confg: unknown field"),
            "{e}"
        );
        let e =
            FileConfig::parse("{\n  \"datacenter\": 3\n}", Path::new("agent.json")).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "agent.json:2:3: datacenter: invalid type: integer `3`, expected a string"
            ),
            "{e}"
        );
    }

    #[test]
    fn known_but_unused_blocks_warn() {
        let f = parse("consul {\n  address = \"127.0.0.1:8500\"\n}\nvault {\n  enabled = true\n}\nserver {\n  encrypt = \"abc\"\n}\n").unwrap();
        let w = f.warnings().join("\n");
        assert!(w.contains("consul is ignored"), "{w}");
        assert!(w.contains("vault is ignored"), "{w}");
        assert!(
            w.contains("server.encrypt is ignored: Drover has no gossip ring"),
            "{w}"
        );
    }

    #[test]
    fn later_files_win_key_by_key() {
        let mut a =
            parse("datacenter = \"dc1\"\nclient {\n  enabled = true\n  meta { a = \"1\" }\n}\n")
                .unwrap();
        a.merge(parse("client {\n  meta { b = \"2\" }\n}\nregion = \"eu\"\n").unwrap());
        assert_eq!(a.datacenter.as_deref(), Some("dc1"));
        assert_eq!(a.region.as_deref(), Some("eu"));
        let c = a.client.unwrap();
        assert_eq!(c.enabled, Some(true));
        assert_eq!(c.meta.unwrap().len(), 2);
    }

    #[test]
    fn retry_join_addresses_default_to_the_rpc_port_and_map_serf_to_it() {
        assert_eq!(rpc_address("10.0.0.1", "f").unwrap(), "10.0.0.1:4647");
        assert_eq!(rpc_address("10.0.0.1:5000", "f").unwrap(), "10.0.0.1:5000");
        assert_eq!(rpc_address("10.0.0.1:4648", "f").unwrap(), "10.0.0.1:4647");
        assert_eq!(rpc_address("server-1", "f").unwrap(), "server-1:4647");
        assert_eq!(rpc_address("[::1]:4648", "f").unwrap(), "[::1]:4647");
        assert_eq!(rpc_address("::1", "f").unwrap(), "::1:4647");
        let e = rpc_address("host:http", "server.server_join.retry_join").unwrap_err();
        assert!(
            e.to_string().contains("server.server_join.retry_join"),
            "{e}"
        );
    }

    #[test]
    fn server_join_is_read_and_bootstrap_expect_needs_addresses() {
        let f = parse(
            "data_dir = \"/tmp/x\"\nserver {\n  enabled = true\n  bootstrap_expect = 3\n  server_join {\n    retry_join = [\"10.0.0.2\", \"10.0.0.3:4648\"]\n    retry_interval = \"5s\"\n    retry_max = 4\n  }\n}\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut f = f;
        f.data_dir = Some(dir.path().to_str().unwrap().to_string());
        let c = AgentConfig::resolve(f, false).unwrap();
        assert_eq!(c.bootstrap_expect, 3);
        assert_eq!(c.retry_join, vec!["10.0.0.2:4647", "10.0.0.3:4647"]);
        assert_eq!(c.retry_interval, std::time::Duration::from_secs(5));
        assert_eq!(c.retry_max, 4);
        let mut f = parse("server {\n  enabled = true\n  bootstrap_expect = 3\n}\n").unwrap();
        f.data_dir = Some(dir.path().to_str().unwrap().to_string());
        let e = AgentConfig::resolve(f, false).unwrap_err().to_string();
        assert!(e.contains("retry_join"), "{e}");
    }

    #[test]
    fn network_interface_and_reserved_cores_reach_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = parse(
            "server {\n  enabled = true\n}\nclient {\n  enabled = true\n  network_interface = \"eth0\"\n  reserved {\n    cores = \"0-1,3\"\n  }\n}\n",
        )
        .unwrap();
        f.data_dir = Some(dir.path().to_str().unwrap().to_string());
        let c = AgentConfig::resolve(f, false).unwrap();
        assert_eq!(c.network_interface.as_deref(), Some("eth0"));
        assert_eq!(c.reserved.reservable_cores, vec![0, 1, 3]);
        for bad in ["x", "3-1"] {
            let mut f = parse(&format!(
                "server {{\n  enabled = true\n}}\nclient {{\n  enabled = true\n  reserved {{\n    cores = \"{bad}\"\n  }}\n}}\n"
            ))
            .unwrap();
            f.data_dir = Some(dir.path().to_str().unwrap().to_string());
            let e = AgentConfig::resolve(f, false).unwrap_err().to_string();
            assert!(e.contains("client.reserved.cores"), "{e}");
        }
        let mut f = parse("server {\n  enabled = true\n}\nclient {\n  enabled = true\n  network_interface = \"a/b\"\n}\n").unwrap();
        f.data_dir = Some(dir.path().to_str().unwrap().to_string());
        let e = AgentConfig::resolve(f, false).unwrap_err().to_string();
        assert!(e.contains("not an interface name"), "{e}");
    }

    #[test]
    fn the_node_pool_and_the_default_scheduler_config_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |text: &str| {
            let mut f = parse(text).unwrap();
            f.data_dir = Some(dir.path().to_str().unwrap().to_string());
            AgentConfig::resolve(f, false)
        };
        let c = resolve("server {\n  enabled = true\n  default_scheduler_config {\n    scheduler_algorithm = \"spread\"\n    reject_job_registration = true\n  }\n}\nclient {\n  enabled = true\n  node_pool = \"gpu\"\n}\n").unwrap();
        assert_eq!(c.node_pool, "gpu");
        let s = c.default_scheduler_config;
        assert_eq!(
            s.scheduler_algorithm,
            drover_model::SchedulerAlgorithm::Spread
        );
        assert!(s.reject_job_registration && !s.pause_eval_broker);
        assert!(s.preemption_config.system_scheduler_enabled);
        let c = resolve("server {\n  enabled = true\n}\nclient {\n  enabled = true\n}\n").unwrap();
        assert_eq!(c.node_pool, "default");
        for (pool, want) in [
            ("all", "cannot be \"all\""),
            ("a b", "not a valid node pool name"),
        ] {
            let text = format!(
                "server {{\n  enabled = true\n}}\nclient {{\n  enabled = true\n  node_pool = \"{pool}\"\n}}\n"
            );
            let e = resolve(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    /// `config validate` without the machine: parse, then check as the agent would.
    fn nomad_fixture(name: &str, text: &str) -> (FileConfig, AgentConfig) {
        let f = FileConfig::parse(text, Path::new(name)).unwrap();
        let c = AgentConfig::check(f.clone(), false).unwrap();
        (f, c)
    }

    #[test]
    fn nomads_server_example_with_deprecated_join_keys_validates_with_warnings() {
        let (f, c) = nomad_fixture("server.hcl", include_str!("config/fixtures/server.hcl"));
        let w = f.warnings();
        let expected = [
            "server.retry_join is deprecated: use server { server_join { retry_join } }",
            "server.retry_max is deprecated: use server { server_join { retry_max } }",
            "server.retry_interval is deprecated: use server { server_join { retry_interval } }",
            "server.encrypt is ignored: Drover has no gossip ring",
            "server.rejoin_after_leave is ignored: Drover has no gossip ring",
            "serf port/address is ignored",
            "autopilot's Raft-health settings",
            "limits is ignored",
        ];
        for e in expected {
            assert!(w.iter().any(|x| x.starts_with(e)), "no {e:?} in {w:#?}");
        }
        assert_eq!(w.len(), expected.len(), "{w:#?}");
        // The deprecated keys act as server_join's.
        assert_eq!(c.retry_join, vec!["10.0.0.11:4647", "10.0.0.12:4647"]);
        assert_eq!(c.retry_max, 3);
        assert_eq!(c.retry_interval, std::time::Duration::from_secs(15));
        // autopilot { cleanup_dead_servers = false } turns the cleanup off.
        assert_eq!(c.dead_server_cleanup, None);
        assert!(c.leave_on_interrupt && c.leave_on_terminate);
    }

    #[test]
    fn nomads_client_example_with_quoted_keys_labels_and_repeated_blocks_is_acted_on() {
        let (f, c) = nomad_fixture("client.hcl", include_str!("config/fixtures/client.hcl"));
        let w = f.warnings();
        assert_eq!(
            w,
            vec![
                "client.network_speed is deprecated: bandwidth is neither fingerprinted nor scheduled; remove it".to_string(),
                "client.options \"driver.raw_exec.enable\" is deprecated: use plugin \"raw_exec\" { config { enabled = true } }".to_string(),
            ]
        );
        assert_eq!(
            c.meta,
            BTreeMap::from([
                ("owner".to_string(), "ops".to_string()),
                ("rack".into(), "r12".into()),
                ("zone".into(), "eu-1".into()),
            ])
        );
        assert_eq!(c.node_class, "prod");
        assert_eq!(c.gc_max_allocs, 20);
        assert_eq!((c.reserved.cpu, c.reserved.memory_mb), (500, 512));
        assert_eq!(
            c.resource_totals,
            drover_client::ResourceTotals {
                cpu: Some(20000),
                memory_mb: Some(4096)
            }
        );
        assert_eq!(c.max_kill_timeout, std::time::Duration::from_secs(60));
        assert_eq!(
            c.plugins["raw_exec"].config.as_ref().unwrap()["enabled"],
            true
        );
        let chroot = &c.plugins["exec"].config.as_ref().unwrap()["chroot_env"];
        assert_eq!(chroot["/lib64"], "/lib64");
        assert_eq!(chroot.as_object().unwrap().len(), 5);
    }

    #[test]
    fn hcl1_json_with_objects_in_lists_reads_as_its_hcl() {
        let (f, c) = nomad_fixture("client.json", include_str!("config/fixtures/client.json"));
        assert_eq!(c.meta["zone"], "eu-1");
        assert_eq!(c.servers, vec!["10.0.0.10:4647"]);
        assert_eq!(
            c.plugins["raw_exec"].config.as_ref().unwrap()["enabled"],
            true
        );
        assert_eq!(
            c.plugins["exec"].config.as_ref().unwrap()["chroot_env"]["/usr"],
            "/usr"
        );
        assert_eq!(
            c.plugins["docker"].config.as_ref().unwrap()["allow_privileged"],
            false
        );
        assert_eq!(f.warnings().len(), 1, "{:?}", f.warnings());
    }

    #[test]
    fn keys_nomad_refuses_enterprise_keys_and_unbuilt_features_are_errors() {
        let e = parse("data_dir = \"/x\"\nnode_name = \"a\"\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent.hcl:2:1: node_name: unknown field `node_name`, expected one of `name`, `region`, `datacenter`, `data_dir`, `bind_addr`, `log_level`, `log_json`, `log_file`, `plugin_dir`, `ports`, `addresses`, `advertise`, `server`, `client`, `plugin`, `acl`, `tls`, `telemetry`, `ui`, `consul`, `vault`, `leave_on_interrupt`, `leave_on_terminate`, `enable_debug`, `disable_update_check`, `enable_syslog`, `syslog_facility`, `autopilot`, `limits`, `keyring`, `dns` (the node's name is set with the top-level `name`)"
        );
        let e = parse("server {\n  enabled = true\n  non_voting_server = true\n}\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent.hcl:3:3: server.non_voting_server: this is a Nomad Enterprise setting, which Drover does not have; remove it"
        );
        let e = parse("client {\n  meta {\n    \"zone\" = \"a\"\n    \"slots\" = 4\n  }\n}\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "agent.hcl:4:5: client.meta.slots: meta values are strings: write slots = \"4\""
        );
        for (text, key) in [
            (
                "client {\n  node_max_allocs = 10\n}\n",
                "client.node_max_allocs",
            ),
            (
                "client \"fingerprint\" \"env_aws\" {\n  retry_attempts = 3\n}\n",
                "client.fingerprint",
            ),
            ("enable_syslog = true\n", "enable_syslog"),
            (
                "client {\n  template {\n    function_denylist = [\"env\"]\n  }\n}\n",
                "client.template.function_denylist",
            ),
            (
                "client {\n  options {\n    \"driver.allowlist\" = \"exec\"\n  }\n}\n",
                "client.options",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(
                e.contains(&format!(": {key}: ")) && e.contains("not implemented yet"),
                "{e}"
            );
        }
        // Nomad's default denylist names functions Drover does not have: accepted.
        let f = parse("client {\n  template {\n    function_denylist = [\"plugin\", \"writeToFile\"]\n  }\n}\n").unwrap();
        assert!(f.warnings().is_empty(), "{:?}", f.warnings());
    }

    #[test]
    fn host_networks_and_wildcard_binding_reach_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |client: &str| {
            let mut f = parse(&format!(
                "server {{\n  enabled = true\n}}\nclient {{\n  enabled = true\n{client}}}\n"
            ))?;
            f.data_dir = Some(dir.path().to_str().unwrap().to_string());
            AgentConfig::resolve(f, false)
        };
        let c = resolve("").unwrap();
        assert!(c.host_networks.is_empty());
        assert!(c.bind_wildcard_default_host_network, "Nomad's default");
        let c = resolve(
            "  bind_wildcard_default_host_network = false\n  host_network \"private\" {\n    cidr = \"10.0.0.0/8, fd00::/8\"\n    reserved_ports = \"22,8000-8002\"\n  }\n  host_network \"public\" {\n    interface = \"eth1\"\n  }\n",
        )
        .unwrap();
        assert!(!c.bind_wildcard_default_host_network);
        let private = &c.host_networks["private"];
        assert_eq!(private.cidrs.len(), 2);
        assert!(private.cidrs[0].contains("10.9.8.7".parse().unwrap()));
        assert_eq!(private.reserved_ports, "22,8000-8002");
        assert_eq!(private.interface, None);
        assert_eq!(c.host_networks["public"].interface.as_deref(), Some("eth1"));
        for (bad, why) in [
            (
                "  host_network \"x\" {\n    cidr = \"10.0.0.0/40\"\n  }\n",
                "client.host_network.x.cidr",
            ),
            (
                "  host_network \"x\" {\n    reserved_ports = \"9-1\"\n  }\n",
                "client.host_network.x.reserved_ports",
            ),
            (
                "  host_network \"x\" {\n    interface = \"{{ GetDefaultInterfaces }}\"\n  }\n",
                "not an interface name",
            ),
            ("  host_network \"a/b\" {\n  }\n", "host network name"),
            ("  host_network \"x\" {\n    mode = \"y\"\n  }\n", "mode"),
        ] {
            let e = format!("{:#}", resolve(bad).unwrap_err());
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn cni_locations_reach_the_client_with_nomads_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |client: &str| {
            let mut f = parse(&format!(
                "server {{\n  enabled = true\n}}\nclient {{\n  enabled = true\n{client}}}\n"
            ))
            .unwrap();
            f.data_dir = Some(dir.path().to_str().unwrap().to_string());
            AgentConfig::resolve(f, false)
        };
        let c = resolve("").unwrap();
        assert_eq!(c.cni, drover_client::CniLocations::default());
        assert_eq!(c.cni.config_dir, PathBuf::from("/opt/cni/config"));
        let c = resolve(
            "  cni_path = \"/usr/lib/cni::/opt/cni/bin\"\n  cni_config_dir = \"/etc/cni/net.d\"\n",
        )
        .unwrap();
        assert_eq!(
            c.cni.plugin_path.dirs(),
            [PathBuf::from("/usr/lib/cni"), PathBuf::from("/opt/cni/bin")]
        );
        assert_eq!(c.cni.config_dir, PathBuf::from("/etc/cni/net.d"));
        let e = resolve("  cni_path = \":\"\n").unwrap_err().to_string();
        assert!(e.contains("client.cni_path"), "{e}");
        let e = resolve("  cni_config_dir = \" \"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("client.cni_config_dir"), "{e}");
    }

    #[test]
    fn bridge_network_keys_reach_the_client_with_nomads_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let resolve = |client: &str| {
            let mut f = parse(&format!(
                "server {{\n  enabled = true\n}}\nclient {{\n  enabled = true\n{client}}}\n"
            ))
            .unwrap();
            f.data_dir = Some(dir.path().to_str().unwrap().to_string());
            AgentConfig::resolve(f, false)
        };
        let c = resolve("").unwrap();
        assert_eq!(c.bridge.name, "nomad");
        assert_eq!(c.bridge.subnet, "172.26.64.0/20");
        assert_eq!(c.bridge.subnet_ipv6, None);
        assert!(!c.bridge.hairpin_mode);
        let c = resolve(
            "  bridge_network_name = \"br9\"\n  bridge_network_subnet = \"10.9.0.0/24\"\n  bridge_network_subnet_ipv6 = \"fd00:9::/64\"\n  bridge_network_hairpin_mode = true\n",
        )
        .unwrap();
        assert_eq!(c.bridge.name, "br9");
        assert_eq!(c.bridge.subnet, "10.9.0.0/24");
        assert_eq!(c.bridge.subnet_ipv6.as_deref(), Some("fd00:9::/64"));
        assert!(c.bridge.hairpin_mode);
        for (bad, field) in [
            ("bridge_network_name = \"a/b\"", "bridge_network_name"),
            (
                "bridge_network_name = \"much-too-long-name\"",
                "bridge_network_name",
            ),
            (
                "bridge_network_subnet = \"10.0.0.0\"",
                "bridge_network_subnet",
            ),
            (
                "bridge_network_subnet = \"fd00::/64\"",
                "bridge_network_subnet",
            ),
            (
                "bridge_network_subnet_ipv6 = \"10.0.0.0/8\"",
                "bridge_network_subnet_ipv6",
            ),
        ] {
            let e = resolve(&format!("  {bad}\n")).unwrap_err().to_string();
            assert!(e.contains(&format!("client.{field}")), "{bad}: {e}");
        }
    }
}
