//! The agent's configuration: HCL or JSON files (`-config` may repeat; directories are read
//! in name order), merged in order, with `-dev` defaults underneath.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

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
}

/// Nomad's `acl` block. ACLs are not built yet: `enabled = true` stops the agent (it would
/// run open); the other keys are checked for typos only.
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

/// Nomad's `tls` block. TLS is not built yet: `http = true` or `rpc = true` stops the agent
/// (it would serve plaintext); the other keys are checked for typos only.
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
    /// Nomad's gossip key: Drover has no gossip, so there is nothing to encrypt.
    pub encrypt: Option<String>,
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

/// Where each key of a config file is: dotted path -> (line, column).
type Spans = BTreeMap<String, (usize, usize)>;

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

/// HCL to JSON on hcl-edit's tree, remembering every key's position. Labeled blocks
/// (`plugin "raw_exec" { ... }`) become maps by label.
fn hcl_to_json(
    text: &str,
    body: &hcl::edit::structure::Body,
    prefix: &str,
    spans: &mut Spans,
) -> anyhow::Result<serde_json::Value> {
    use hcl::edit::Span;
    use hcl::eval::Evaluate;
    let mut out = serde_json::Map::new();
    let at = |n: &dyn Span| n.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
    for a in body.attributes() {
        let key = a.key.as_str().to_string();
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let (l, c) = at(a);
        spans.insert(path.clone(), (l, c));
        let e: hcl::Expression = a.value.clone().into();
        let v = e
            .evaluate(&hcl::eval::Context::new())
            .map_err(|err| anyhow::anyhow!("{l}:{c}: {path}: {err}"))?;
        out.insert(key, serde_json::to_value(v)?);
    }
    for b in body.blocks() {
        let ident = b.ident.as_str().to_string();
        let (l, c) = at(b);
        match b.labels.first() {
            Some(label) => {
                let path = format!(
                    "{}{ident}.{}",
                    if prefix.is_empty() {
                        String::new()
                    } else {
                        format!("{prefix}.")
                    },
                    label.as_str()
                );
                spans.insert(path.clone(), (l, c));
                spans
                    .entry(
                        path.rsplit_once('.')
                            .map(|(p, _)| p.to_string())
                            .unwrap_or_default(),
                    )
                    .or_insert((l, c));
                let inner = hcl_to_json(text, &b.body, &path, spans)?;
                let entry = out
                    .entry(ident)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                if let serde_json::Value::Object(m) = entry {
                    m.insert(label.as_str().to_string(), inner);
                }
            }
            None => {
                let path = if prefix.is_empty() {
                    ident.clone()
                } else {
                    format!("{prefix}.{ident}")
                };
                if out.contains_key(&ident) {
                    anyhow::bail!("{l}:{c}: block {ident:?} may appear only once here");
                }
                spans.insert(path.clone(), (l, c));
                out.insert(ident, hcl_to_json(text, &b.body, &path, spans)?);
            }
        }
    }
    Ok(serde_json::Value::Object(out))
}

/// What Drover refuses to run with: (dotted key, whether a file sets it, why), in the order
/// [`FileConfig::refusals`] reports them.
type Refusal = (&'static str, fn(&FileConfig) -> bool, &'static str);

const REFUSALS: &[Refusal] = &[
    (
        "acl.enabled",
        |f| f.acl.as_ref().is_some_and(|acl| acl.enabled == Some(true)),
        "ACLs are not implemented yet, so this agent would serve every request unauthenticated; remove the acl block (or set enabled = false) to run without ACLs knowingly",
    ),
    (
        "tls.http",
        |f| f.tls.as_ref().is_some_and(|tls| tls.http == Some(true)),
        "TLS is not implemented yet, so the HTTP API would be plaintext; set http = false (or remove the tls block) to run without TLS knowingly",
    ),
    (
        "tls.rpc",
        |f| f.tls.as_ref().is_some_and(|tls| tls.rpc == Some(true)),
        "TLS is not implemented yet, so RPC would be plaintext; set rpc = false (or remove the tls block) to run without TLS knowingly",
    ),
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
        "client.node_pool",
        |f| {
            f.client
                .as_ref()
                .is_some_and(|c| c.node_pool.as_deref().is_some_and(|p| p != "default"))
        },
        "node pools other than \"default\" are not configurable yet",
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
        "server.default_scheduler_config.reject_job_registration",
        |f| {
            f.server
                .as_ref()
                .and_then(|s| s.default_scheduler_config.as_ref())
                .is_some_and(|d| d.reject_job_registration == Some(true))
        },
        "rejecting job registrations is not implemented yet",
    ),
    (
        "server.default_scheduler_config.pause_eval_broker",
        |f| {
            f.server
                .as_ref()
                .and_then(|s| s.default_scheduler_config.as_ref())
                .is_some_and(|d| d.pause_eval_broker == Some(true))
        },
        "pausing the evaluation broker is not implemented yet",
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
];

impl FileConfig {
    /// Reads one file (HCL, or JSON for `*.json`).
    pub fn load(path: &Path) -> anyhow::Result<FileConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Self::parse(&text, path)
            .with_context(|| format!("invalid agent configuration in {}", path.display()))
    }

    /// Parses one config file's text (HCL, or JSON for `*.json`). Errors name
    /// `file:line:column` and the key.
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<FileConfig> {
        let file = path.display();
        if path.extension().is_some_and(|e| e == "json") {
            let de = &mut serde_json::Deserializer::from_str(text);
            let parsed: FileConfig = serde_path_to_error::deserialize(de).map_err(|e| {
                let inner = e.inner();
                let msg = inner.to_string();
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                anyhow::anyhow!(
                    "{file}:{}:{}: {}: {msg}",
                    inner.line(),
                    inner.column(),
                    e.path()
                )
            })?;
            // JSON keeps no positions: point at the key's first occurrence.
            parsed.check_refusals(&file.to_string(), |key| {
                let last = key.rsplit('.').next().unwrap_or(key);
                text.find(&format!("\"{last}\""))
                    .map(|o| line_col(text, o))
                    .unwrap_or((0, 0))
            })?;
            return Ok(parsed);
        }
        let body: hcl::edit::structure::Body =
            text.parse().map_err(|e: hcl::edit::parser::Error| {
                anyhow::anyhow!(
                    "{file}:{}:{}: invalid HCL: {}",
                    e.location().line(),
                    e.location().column(),
                    e.message()
                )
            })?;
        let mut spans = Spans::new();
        let json =
            hcl_to_json(text, &body, "", &mut spans).map_err(|e| anyhow::anyhow!("{file}:{e}"))?;
        let mut parsed: FileConfig = serde_path_to_error::deserialize(json).map_err(|e| {
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
            let (l, c) = spans
                .get(&full)
                .or_else(|| spans.get(&path))
                .copied()
                .unwrap_or((0, 0));
            anyhow::anyhow!("{file}:{l}:{c}: {full}: {msg}")
        })?;
        parsed.check_refusals(&file.to_string(), |key| {
            spans.get(key).copied().unwrap_or((0, 0))
        })?;
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
    /// such a file is refused rather than run with the option silently ignored. `acl` and
    /// `tls` enabled are here too: until they exist, such an agent would run open.
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
                s.encrypt.is_some(),
                "server.encrypt",
                "Drover has no gossip ring, so there is no gossip key",
            );
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
        let mut a = serde_json::to_value(&*self).expect("config serializes");
        deep_merge(&mut a, serde_json::to_value(o).expect("config serializes"));
        *self = serde_json::from_value(a).expect("a merge of valid configs is valid");
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
    pub meta: BTreeMap<String, String>,
    pub plugins: BTreeMap<String, PluginBlock>,
    /// Where third-party plugins are found (executables, *.wasm, *.so).
    pub plugin_dir: Option<PathBuf>,
    pub heartbeat_ttl: std::time::Duration,
    pub reserved: drover_model::NodeResources,
    pub host_volumes: BTreeMap<String, drover_model::HostVolume>,
    /// `client { network_interface }`: None = the default route's interface.
    pub network_interface: Option<String>,
    pub raft_snapshot_threshold: u64,
    pub raft_trailing_logs: u64,
    pub num_schedulers: usize,
    pub job_max_count: u32,
    pub max_placements_per_eval: usize,
    pub scheduler_algorithm: drover_scheduler::Algorithm,
    pub dynamic_ports: (u16, u16),
    pub gc_max_allocs: usize,
    pub gc_disk_usage_threshold: f64,
    pub artifacts: drover_client::ArtifactConfig,
    /// `client { cni_path, cni_config_dir }`.
    pub cni: drover_client::CniLocations,
    /// `client { bridge_network_* }`: the built-in bridge network.
    pub bridge: drover_client::BridgeNetwork,
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
        let ok = v.split_once('/').is_some_and(|(ip, len)| {
            let max = if v4 { 32 } else { 128 };
            let ip_ok = if v4 {
                ip.parse::<std::net::Ipv4Addr>().is_ok()
            } else {
                ip.parse::<std::net::Ipv6Addr>().is_ok()
            };
            ip_ok && len.parse::<u8>().is_ok_and(|l| l <= max)
        });
        if !ok {
            let fam = if v4 { "IPv4" } else { "IPv6" };
            bail!("client.{field} {v:?} is not an {fam} CIDR (address/prefix length)");
        }
        Ok(v.to_string())
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
        let mut plugins = f.plugin.clone();
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
            .filter(|d| !d.is_zero()),
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
            scheduler_algorithm: scheduler_algorithm(&server_block)?,
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
            cni: drover_client::CniLocations::default(),
            bridge: drover_client::BridgeNetwork::default(),
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

/// `server { default_scheduler_config { scheduler_algorithm } }`: binpack (the default) or
/// spread.
fn scheduler_algorithm(server_block: &ServerBlock) -> anyhow::Result<drover_scheduler::Algorithm> {
    let sched = server_block
        .default_scheduler_config
        .clone()
        .unwrap_or_default();
    Ok(match sched.scheduler_algorithm.as_deref() {
        None | Some("binpack") => drover_scheduler::Algorithm::Binpack,
        Some("spread") => drover_scheduler::Algorithm::Spread,
        Some(o) => bail!(
            "server.default_scheduler_config.scheduler_algorithm {o:?} is not binpack or spread"
        ),
    })
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
                "agent.json:2:17: datacenter: invalid type: integer `3`, expected a string"
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
