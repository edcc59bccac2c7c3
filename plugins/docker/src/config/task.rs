//! A task's `config { ... }` block: Nomad's docker driver keys, with Nomad's types and
//! defaults. Unknown keys are refused.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::de;

/// Nomad's default `image_pull_timeout`.
pub const DEFAULT_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// A task's docker config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskConfig {
    pub image: String,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub entrypoint: Vec<String>,
    #[serde(default)]
    pub work_dir: Option<String>,
    #[serde(default)]
    pub ports: Vec<String>,
    #[serde(default)]
    pub network_mode: Option<String>,
    #[serde(default, deserialize_with = "de::blocks")]
    pub mount: Vec<MountBlock>,
    #[serde(default)]
    pub volumes: Vec<String>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns_servers: Vec<String>,
    #[serde(default)]
    pub dns_search_domains: Vec<String>,
    #[serde(default)]
    pub dns_options: Vec<String>,
    #[serde(default)]
    pub extra_hosts: Vec<String>,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub readonly_rootfs: bool,
    #[serde(default)]
    pub pids_limit: Option<i64>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub ulimit: BTreeMap<String, String>,
    #[serde(default)]
    pub shm_size: Option<i64>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub sysctl: BTreeMap<String, String>,
    #[serde(default)]
    pub security_opt: Vec<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub interactive: bool,
    #[serde(default)]
    pub init: bool,
    #[serde(default)]
    pub ipc_mode: Option<String>,
    #[serde(default)]
    pub pid_mode: Option<String>,
    #[serde(default)]
    pub uts_mode: Option<String>,
    #[serde(default, deserialize_with = "de::blocks")]
    pub devices: Vec<DeviceBlock>,
    #[serde(default)]
    pub cpu_hard_limit: bool,
    #[serde(default)]
    pub cpu_cfs_period: Option<i64>,
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    #[serde(default)]
    pub memory_hard_limit: Option<i64>,
    #[serde(default)]
    pub oom_score_adj: Option<i64>,
    #[serde(default)]
    pub group_add: Vec<String>,
    #[serde(default)]
    pub runtime: Option<String>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub storage_opt: BTreeMap<String, String>,
    #[serde(default)]
    pub force_pull: bool,
    #[serde(default, deserialize_with = "de::duration")]
    pub image_pull_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de::block")]
    pub auth: Option<AuthBlock>,
    #[serde(default)]
    pub auth_soft_fail: bool,
    #[serde(default)]
    pub load: Option<String>,
    #[serde(default, deserialize_with = "de::block")]
    pub logging: Option<LoggingBlock>,
    #[serde(default, deserialize_with = "de::block")]
    pub healthchecks: Option<HealthchecksBlock>,
}

impl TaskConfig {
    /// `image_pull_timeout`, or Nomad's default.
    pub fn pull_timeout(&self) -> Duration {
        self.image_pull_timeout
            .unwrap_or(DEFAULT_IMAGE_PULL_TIMEOUT)
    }
}

/// A `mount { }` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountBlock {
    /// `bind`, `volume` (the default) or `tmpfs`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub readonly: bool,
    #[serde(default, deserialize_with = "de::block")]
    pub bind_options: Option<BindOptions>,
    #[serde(default, deserialize_with = "de::block")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(default, deserialize_with = "de::block")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    #[serde(default)]
    pub propagation: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    #[serde(default)]
    pub no_copy: bool,
    #[serde(default, deserialize_with = "de::string_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "de::block")]
    pub driver_config: Option<VolumeDriverConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDriverConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default)]
    pub size: Option<i64>,
    #[serde(default)]
    pub mode: Option<i64>,
}

/// A `devices { }` block.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceBlock {
    #[serde(default)]
    pub host_path: String,
    #[serde(default)]
    pub container_path: Option<String>,
    #[serde(default)]
    pub cgroup_permissions: Option<String>,
}

/// The task's registry credentials (`auth { }`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthBlock {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub server_address: Option<String>,
}

/// `logging { type config { } }`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggingBlock {
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The pre-0.9 name of `type`.
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default, deserialize_with = "de::string_map")]
    pub config: BTreeMap<String, String>,
}

/// `healthchecks { disable = true }`: turns off the image's HEALTHCHECK.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthchecksBlock {
    #[serde(default)]
    pub disable: bool,
}
