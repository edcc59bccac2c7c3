//! The plugin's `config { ... }` block (`plugin "docker" { config { ... } }`), with Nomad's
//! defaults, read into the [`Settings`] the driver works with.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::de;
use crate::caps;

/// The engine's address unless `endpoint` says otherwise.
pub const DEFAULT_ENDPOINT: &str = "unix:///var/run/docker.sock";
/// Nomad's default `infra_image`.
pub const DEFAULT_INFRA_IMAGE: &str = "registry.k8s.io/pause-amd64:3.3";
/// Nomad's default `infra_image_pull_timeout`.
pub const DEFAULT_INFRA_IMAGE_PULL_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Nomad's default `pull_activity_timeout`.
pub const DEFAULT_PULL_ACTIVITY_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Nomad's default `allow_runtimes`.
pub const DEFAULT_RUNTIMES: &[&str] = &["runc", "nvidia"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default, deserialize_with = "de::block")]
    pub auth: Option<AuthConfig>,
    #[serde(default, deserialize_with = "de::block")]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub allow_privileged: bool,
    #[serde(default)]
    pub allow_caps: Option<Vec<String>>,
    #[serde(default)]
    pub allow_runtimes: Option<Vec<String>>,
    #[serde(default, deserialize_with = "de::block")]
    pub volumes: Option<VolumesConfig>,
    #[serde(default)]
    pub extra_labels: Vec<String>,
    #[serde(default, deserialize_with = "de::duration")]
    pub pull_activity_timeout: Option<Duration>,
    #[serde(default)]
    pub infra_image: Option<String>,
    #[serde(default, deserialize_with = "de::duration")]
    pub infra_image_pull_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "de::block")]
    pub gc: Option<GcBlock>,
    #[serde(default)]
    pub disable_log_collection: bool,
}

/// `auth { config helper }`: a docker `config.json` and a credential helper.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default)]
    pub config: Option<String>,
    #[serde(default)]
    pub helper: Option<String>,
}

/// `tls { cert key ca }` for a `tcp://` endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub cert: String,
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub ca: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumesConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub selinuxlabel: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcBlock {
    #[serde(default)]
    pub image: Option<bool>,
    #[serde(default, deserialize_with = "de::duration")]
    pub image_delay: Option<Duration>,
    #[serde(default)]
    pub container: Option<bool>,
    #[serde(default, deserialize_with = "de::block")]
    pub dangling_containers: Option<DanglingBlock>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DanglingBlock {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default, deserialize_with = "de::duration")]
    pub period: Option<Duration>,
    #[serde(default, deserialize_with = "de::duration")]
    pub creation_grace: Option<Duration>,
    #[serde(default)]
    pub dry_run: bool,
}

/// What the garbage collector does (`gc { }`), with Nomad's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    /// Remove images no task uses any more.
    pub image: bool,
    /// How long an unused image stays.
    pub image_delay: Duration,
    /// Remove a task's container when the task is destroyed.
    pub container: bool,
    pub dangling: DanglingConfig,
}

/// The dangling-container reaper (`gc { dangling_containers { } }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DanglingConfig {
    pub enabled: bool,
    pub period: Duration,
    pub creation_grace: Duration,
    pub dry_run: bool,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            image: true,
            image_delay: Duration::from_secs(3 * 60),
            container: true,
            dangling: DanglingConfig {
                enabled: true,
                period: Duration::from_secs(5 * 60),
                creation_grace: Duration::from_secs(5 * 60),
                dry_run: false,
            },
        }
    }
}

impl GcConfig {
    fn from_block(b: Option<GcBlock>) -> Self {
        let mut gc = GcConfig::default();
        let Some(b) = b else { return gc };
        gc.image = b.image.unwrap_or(gc.image);
        gc.image_delay = b.image_delay.unwrap_or(gc.image_delay);
        gc.container = b.container.unwrap_or(gc.container);
        if let Some(d) = b.dangling_containers {
            gc.dangling.enabled = d.enabled.unwrap_or(gc.dangling.enabled);
            gc.dangling.period = d.period.unwrap_or(gc.dangling.period);
            gc.dangling.creation_grace = d.creation_grace.unwrap_or(gc.dangling.creation_grace);
            gc.dangling.dry_run = d.dry_run;
        }
        gc
    }
}

/// The plugin's settings, resolved from its config block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub endpoint: String,
    pub tls: Option<TlsConfig>,
    /// A docker `config.json` whose `auths` hold registry credentials.
    pub auth_config: Option<PathBuf>,
    /// A credential helper (`docker-credential-<helper>`).
    pub auth_helper: Option<String>,
    pub allow_privileged: bool,
    /// Capabilities (upper case, without `CAP_`) tasks may have; `ALL` allows every one.
    pub allow_caps: BTreeSet<String>,
    pub allow_runtimes: Vec<String>,
    pub volumes_enabled: bool,
    pub extra_labels: Vec<String>,
    pub pull_activity_timeout: Duration,
    /// The image of the allocations' network (infra) containers.
    pub infra_image: String,
    /// The longest pulling `infra_image` may take.
    pub infra_image_pull_timeout: Duration,
    pub gc: GcConfig,
    pub disable_log_collection: bool,
    /// The agent's node id (from SetConfig, not the config block): the containers this
    /// plugin makes carry it, and its reaper looks only at this node's containers, so
    /// agents sharing one engine never reap each other's.
    pub node_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_config(PluginConfig::default()).expect("the defaults are valid")
    }
}

/// Why a plugin config is refused.
#[derive(Debug, thiserror::Error)]
#[error("docker plugin config: {0}")]
pub struct ConfigError(pub String);

impl Settings {
    /// Parses and checks the plugin's config block.
    pub fn from_json(v: serde_json::Value) -> Result<Settings, ConfigError> {
        let cfg: PluginConfig =
            serde_json::from_value(v).map_err(|e| ConfigError(e.to_string()))?;
        Settings::from_config(cfg)
    }

    fn from_config(cfg: PluginConfig) -> Result<Settings, ConfigError> {
        let endpoint = cfg
            .endpoint
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        if !["unix://", "tcp://", "http://", "https://"]
            .iter()
            .any(|p| endpoint.starts_with(p))
        {
            return Err(ConfigError(format!(
                "endpoint {endpoint:?} must start with unix://, tcp://, http:// or https://"
            )));
        }
        let allow_caps = match cfg.allow_caps {
            None => caps::NOMAD_DEFAULT_ALLOWED
                .iter()
                .map(|c| c.to_string())
                .collect(),
            Some(list) => list
                .iter()
                .map(|c| caps::normalize(c).map_err(|e| ConfigError(e.to_string())))
                .collect::<Result<_, _>>()?,
        };
        let auth = cfg.auth.unwrap_or_default();
        Ok(Settings {
            endpoint,
            tls: cfg.tls.filter(|t| *t != TlsConfig::default()),
            auth_config: auth.config.filter(|c| !c.is_empty()).map(PathBuf::from),
            auth_helper: auth.helper.filter(|h| !h.is_empty()),
            allow_privileged: cfg.allow_privileged,
            allow_caps,
            allow_runtimes: cfg
                .allow_runtimes
                .unwrap_or_else(|| DEFAULT_RUNTIMES.iter().map(|r| r.to_string()).collect()),
            volumes_enabled: cfg.volumes.is_some_and(|v| v.enabled),
            extra_labels: cfg.extra_labels,
            pull_activity_timeout: cfg
                .pull_activity_timeout
                .unwrap_or(DEFAULT_PULL_ACTIVITY_TIMEOUT),
            infra_image: cfg
                .infra_image
                .filter(|i| !i.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_INFRA_IMAGE.to_string()),
            infra_image_pull_timeout: cfg
                .infra_image_pull_timeout
                .unwrap_or(DEFAULT_INFRA_IMAGE_PULL_TIMEOUT),
            gc: GcConfig::from_block(cfg.gc),
            disable_log_collection: cfg.disable_log_collection,
            node_id: String::new(),
        })
    }
}
