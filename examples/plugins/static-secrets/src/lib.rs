//! The example secret provider: its secrets come from its own `config` block, leased for
//! `ttl` when that is set. Written once against plugin-sdk's `SecretProvider`, it is exported
//! unchanged by both example plugins: `wasm-secrets` (an Extism module, which also offers
//! `remote_url`: the secret at path `remote` fetched over HTTP through the sandbox) and
//! `native-secrets` (a native library).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::{ProviderInfo, Secret, SecretError, SecretProvider};

pub struct StaticSecrets {
    name: &'static str,
    /// Whether the `remote_url` setting exists (the Extism build, where the sandbox does
    /// the HTTP request).
    remote: bool,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    ttl: Duration,
    remote_url: Option<String>,
    leases: AtomicU64,
}

impl StaticSecrets {
    /// A provider reporting `name`, with the `remote_url` setting when `remote`.
    pub fn new(name: &'static str, remote: bool) -> Self {
        StaticSecrets {
            name,
            remote,
            secrets: BTreeMap::new(),
            ttl: Duration::ZERO,
            remote_url: None,
            leases: AtomicU64::new(0),
        }
    }
}

impl SecretProvider for StaticSecrets {
    fn plugin_info(&self) -> ProviderInfo {
        ProviderInfo {
            name: self.name.into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        let mut fields = vec![
            ConfigField {
                name: "secrets".into(),
                r#type: "map(map(string))".into(),
                description: "path -> { key = value }".into(),
                ..Default::default()
            },
            ConfigField {
                name: "ttl".into(),
                r#type: "duration".into(),
                description: "lease TTL of fetched secrets (\"0s\": not leased)".into(),
                default_json: "\"0s\"".into(),
                ..Default::default()
            },
        ];
        if self.remote {
            fields.push(ConfigField {
                name: "remote_url".into(),
                r#type: "string".into(),
                description: "where the secret at path \"remote\" is fetched from (HTTP GET)"
                    .into(),
                ..Default::default()
            });
        }
        fields
    }

    fn set_config(
        &mut self,
        config: serde_json::Value,
        _agent: AgentConfig,
    ) -> Result<(), SecretError> {
        self.secrets = match config.get("secrets") {
            None => BTreeMap::new(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                SecretError::InvalidArgument(format!(
                    "config.secrets must map paths to {{ key = \"value\" }} objects: {e}"
                ))
            })?,
        };
        self.ttl = match config.get("ttl") {
            None => Duration::ZERO,
            Some(v) => parse_duration(v)?,
        };
        self.remote_url = config
            .get("remote_url")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(())
    }

    fn fetch(&self, path: &str) -> Result<Secret, SecretError> {
        if path == "remote"
            && let Some(url) = &self.remote_url
        {
            return fetch_remote(url);
        }
        let data = self
            .secrets
            .get(path)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(format!("no secret at {path:?}")))?;
        let leased = !self.ttl.is_zero();
        Ok(Secret {
            data,
            lease_id: if leased {
                format!("{path}#{}", self.leases.fetch_add(1, Ordering::Relaxed) + 1)
            } else {
                String::new()
            },
            ttl: self.ttl,
            renewable: leased,
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError> {
        Ok(self
            .secrets
            .keys()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn renew(&self, lease_id: &str, increment: Duration) -> Result<Duration, SecretError> {
        let issued = lease_id
            .rsplit_once('#')
            .is_some_and(|(path, _)| self.secrets.contains_key(path));
        if !issued || self.ttl.is_zero() {
            return Err(SecretError::NotFound(format!("no lease {lease_id:?}")));
        }
        Ok(increment.min(self.ttl))
    }
}

/// The secret at `url`: the body of an HTTP GET, as key `value`.
#[cfg(target_arch = "wasm32")]
fn fetch_remote(url: &str) -> Result<Secret, SecretError> {
    let body = drover_plugin_sdk::abi::wasm::http_get(url)?;
    let value = String::from_utf8(body)
        .map_err(|_| SecretError::Internal(format!("{url} answered a body that is not UTF-8")))?;
    Ok(Secret {
        data: BTreeMap::from([("value".to_string(), value)]),
        ..Secret::default()
    })
}

/// Built for the host (a unit test, say), there is no sandbox to ask for HTTP.
#[cfg(not(target_arch = "wasm32"))]
fn fetch_remote(url: &str) -> Result<Secret, SecretError> {
    Err(SecretError::FailedPrecondition(format!(
        "{url}: remote secrets are fetched through the Extism sandbox; build for wasm32"
    )))
}

/// `"90s"`, `"15m"`, `"1h"`, or a number of seconds.
fn parse_duration(v: &serde_json::Value) -> Result<Duration, SecretError> {
    let bad =
        || SecretError::InvalidArgument(format!("config.ttl {v} is not a duration like \"1h\""));
    if let Some(n) = v.as_u64() {
        return Ok(Duration::from_secs(n));
    }
    let s = v.as_str().ok_or_else(bad)?;
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}
