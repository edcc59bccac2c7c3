//! A secret provider plugin process for the tests, served by the SDK over gRPC (the same
//! handshake as drivers): its secrets come from its config block, leased for `ttl_secs`. The
//! path `fetches` answers `{"n": N}`, how many times it has been fetched (for tests of
//! secrets fetched again when their lease runs down). It looks at who asks: `whoami`
//! answers `{"jwt": <the asking task's identity>}`, and `scoped/<job>` answers
//! `{"ok": "yes"}` only to a task of job `<job>` (by its identity's `nomad_job_id`
//! claim: a provider scoping what a job may read).

use std::collections::BTreeMap;
use std::time::Duration;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::{ProviderInfo, Secret, SecretError, SecretProvider};

#[derive(Default)]
struct ConfigSecrets {
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    ttl: Duration,
    fetches: std::sync::atomic::AtomicU64,
}

impl SecretProvider for ConfigSecrets {
    fn plugin_info(&self) -> ProviderInfo {
        ProviderInfo {
            name: "grpc-secrets".into(),
            version: "0.1.0".into(),
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        vec![
            ConfigField {
                name: "secrets".into(),
                r#type: "map(map(string))".into(),
                ..Default::default()
            },
            ConfigField {
                name: "ttl_secs".into(),
                r#type: "number".into(),
                ..Default::default()
            },
        ]
    }

    fn set_config(
        &mut self,
        config: serde_json::Value,
        _agent: AgentConfig,
    ) -> Result<(), SecretError> {
        self.secrets = serde_json::from_value(config["secrets"].clone())
            .map_err(|e| SecretError::InvalidArgument(format!("config.secrets: {e}")))?;
        self.ttl = Duration::from_secs_f64(config["ttl_secs"].as_f64().unwrap_or(0.0).max(0.0));
        Ok(())
    }

    fn fetch(&self, path: &str) -> Result<Secret, SecretError> {
        if path == "fetches" {
            let n = 1 + self
                .fetches
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Secret {
                data: BTreeMap::from([("n".to_string(), n.to_string())]),
                lease_id: String::new(),
                ttl: self.ttl,
                renewable: false,
            });
        }
        let data = self
            .secrets
            .get(path)
            .cloned()
            .ok_or_else(|| SecretError::NotFound(format!("no secret at {path:?}")))?;
        Ok(Secret {
            data,
            lease_id: format!("{path}#1"),
            ttl: self.ttl,
            renewable: true,
        })
    }

    fn fetch_as(&self, path: &str, identity: &str) -> Result<Secret, SecretError> {
        let answer = |k: &str, v: &str| Secret {
            data: BTreeMap::from([(k.to_string(), v.to_string())]),
            ..Secret::default()
        };
        if path == "whoami" {
            return Ok(answer("jwt", identity));
        }
        if let Some(job) = path.strip_prefix("scoped/") {
            return if job_of(identity).as_deref() == Some(job) {
                Ok(answer("ok", "yes"))
            } else {
                Err(SecretError::PermissionDenied(format!(
                    "{path:?} is job {job:?}'s; the asking task's identity is not"
                )))
            };
        }
        self.fetch(path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError> {
        Ok(self
            .secrets
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect())
    }

    fn renew(&self, lease_id: &str, increment: Duration) -> Result<Duration, SecretError> {
        match lease_id.split_once('#') {
            Some((path, _)) if self.secrets.contains_key(path) => Ok(increment.min(self.ttl)),
            _ => Err(SecretError::NotFound(format!("no lease {lease_id:?}"))),
        }
    }
}

/// The `nomad_job_id` claim of a JWT (its signature is the test's to verify, via JWKS).
fn job_of(jwt: &str) -> Option<String> {
    use base64::Engine;
    let claims = jwt.split('.').nth(1)?;
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(claims)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&claims).ok()?;
    Some(claims["nomad_job_id"].as_str()?.to_string())
}

fn main() {
    drover_plugin_sdk::main_secrets(ConfigSecrets::default)
}
