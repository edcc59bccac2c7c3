//! The secret provider trait, and its dispatch over the unary ABI shared by every transport.
//!
//! A secret provider is synchronous: a third party writes `impl SecretProvider for MyProvider`
//! and gets, from the same source,
//! - a plugin process served over gRPC ([`crate::serve_secrets`], [`crate::main_secrets`]);
//! - an Extism module (`*.wasm`, built for `wasm32-unknown-unknown` with the `wasm` feature) and
//! - a native library (`*.so`, a `cdylib` with the `native` feature),
//!
//! the last two through [`crate::export_secret_provider!`].

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::base::{
    AgentConfig, CallError, CallResult, ConfigField, ConfigSchemaResponse, PluginInfoResponse,
    PluginKind, SetConfigRequest, call_error::Code, call_result,
};
use drover_proto::secrets::{
    FetchRequest, FetchResponse, ListRequest, ListResponse, RenewRequest, RenewResponse,
};
use prost::Message;

use crate::abi::method;

/// The versions of secrets.proto this SDK implements.
pub const SECRETS_PROTOCOL_VERSIONS: &[u32] = &[1];

/// Who a secret provider is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The provider's name, e.g. `static`.
    pub name: String,
    /// The provider's own version (semver).
    pub version: String,
}

/// One secret, as [`SecretProvider::fetch`] returns it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Secret {
    /// The secret's keys and values.
    pub data: BTreeMap<String, String>,
    /// The lease holding the secret; empty when the store does not lease it.
    pub lease_id: String,
    /// How long the secret stays valid; zero when it does not expire.
    pub ttl: Duration,
    /// Whether [`SecretProvider::renew`] can extend the lease.
    pub renewable: bool,
}

/// An error a secret provider returns. Each kind travels to the host (as a gRPC status or a
/// [`CallError`] code) so the host can tell "no such secret" from "the store is down".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No secret (or lease) at that path.
    #[error("{0}")]
    NotFound(String),
    /// The request or the configuration is wrong (the operator must fix it).
    #[error("{0}")]
    InvalidArgument(String),
    /// The provider cannot answer now (not configured yet, lease not renewable ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The provider is not allowed to do this (a denied store, a sandbox refusing access).
    #[error("{0}")]
    PermissionDenied(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl SecretError {
    fn code(&self) -> Code {
        match self {
            SecretError::NotFound(_) => Code::NotFound,
            SecretError::InvalidArgument(_) => Code::InvalidArgument,
            SecretError::FailedPrecondition(_) => Code::FailedPrecondition,
            SecretError::PermissionDenied(_) => Code::PermissionDenied,
            SecretError::Internal(_) => Code::Internal,
        }
    }
}

/// A secret provider. Implement this, then serve it over gRPC ([`crate::main_secrets`]) or
/// export it as an Extism module or native library ([`crate::export_secret_provider!`]).
///
/// Calls may come from several threads at once (over gRPC); [`SecretProvider::set_config`]
/// is the only one that gets `&mut self`. Methods may block (an HTTP call to a store): the
/// host runs them off its async runtime.
///
/// ```
/// use std::collections::BTreeMap;
/// use drover_plugin_sdk::{ProviderInfo, Secret, SecretError, SecretProvider};
/// use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
///
/// /// Secrets written in the plugin's own `config { secrets = { ... } }` block.
/// #[derive(Default)]
/// struct StaticSecrets { secrets: BTreeMap<String, String> }
///
/// impl SecretProvider for StaticSecrets {
///     fn plugin_info(&self) -> ProviderInfo {
///         ProviderInfo { name: "static".into(), version: "0.1.0".into() }
///     }
///     fn config_schema(&self) -> Vec<ConfigField> {
///         vec![ConfigField { name: "secrets".into(), r#type: "map(string)".into(), ..Default::default() }]
///     }
///     fn set_config(&mut self, config: serde_json::Value, _agent: AgentConfig) -> Result<(), SecretError> {
///         self.secrets = serde_json::from_value(config["secrets"].clone())
///             .map_err(|e| SecretError::InvalidArgument(format!("secrets: {e}")))?;
///         Ok(())
///     }
///     fn fetch(&self, path: &str) -> Result<Secret, SecretError> {
///         let value = self.secrets.get(path).ok_or_else(|| SecretError::NotFound(path.into()))?;
///         Ok(Secret { data: BTreeMap::from([("value".into(), value.clone())]), ..Secret::default() })
///     }
///     fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError> {
///         Ok(self.secrets.keys().filter(|k| k.starts_with(prefix)).cloned().collect())
///     }
/// }
///
/// // In a `cdylib` crate: a .wasm with the `wasm` feature, a .so with `native`.
/// drover_plugin_sdk::export_secret_provider!(StaticSecrets);
///
/// // Or a plugin process over gRPC (the `grpc` feature):
/// // fn main() { drover_plugin_sdk::main_secrets(StaticSecrets::default) }
/// ```
pub trait SecretProvider: Send + Sync + 'static {
    /// Name and version.
    fn plugin_info(&self) -> ProviderInfo;
    /// The keys the plugin's `config { ... }` block may hold (none by default).
    fn config_schema(&self) -> Vec<ConfigField> {
        Vec::new()
    }
    /// The operator's configuration (a JSON object, already checked against
    /// [`SecretProvider::config_schema`]) and the agent's own settings.
    fn set_config(
        &mut self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), SecretError>;
    /// The secret at `path`.
    fn fetch(&self, path: &str) -> Result<Secret, SecretError>;
    /// The secret at `path`, asked for by the task whose workload identity is `identity`
    /// (an RS256 JWT with audience `drover-secrets/<provider>`, verifiable against the
    /// cluster's `/.well-known/jwks.json`; empty when no task asks). A provider that scopes
    /// what a job may read overrides this; the default ignores who asks.
    fn fetch_as(&self, path: &str, identity: &str) -> Result<Secret, SecretError> {
        let _ = identity;
        self.fetch(path)
    }
    /// The paths under `prefix`.
    fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError>;
    /// Extends lease `lease_id` by (at most) `increment`; returns its new TTL. Providers
    /// without leases keep the default, which refuses.
    fn renew(&self, lease_id: &str, increment: Duration) -> Result<Duration, SecretError> {
        let _ = increment;
        Err(SecretError::FailedPrecondition(format!(
            "lease {lease_id:?} is not renewable: this provider does not lease secrets"
        )))
    }
}

/// `PluginInfo` of a secret provider, as every transport reports it.
pub fn plugin_info_response(info: ProviderInfo) -> PluginInfoResponse {
    PluginInfoResponse {
        name: info.name,
        kind: PluginKind::Secrets as i32,
        version: info.version,
        protocol_versions: SECRETS_PROTOCOL_VERSIONS.to_vec(),
    }
}

/// A secret as the wire carries it.
pub fn fetch_response(s: Secret) -> FetchResponse {
    FetchResponse {
        data: s.data,
        lease_id: s.lease_id,
        ttl_ms: duration_ms(s.ttl),
        renewable: s.renewable,
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Decodes a `SetConfigRequest`'s JSON (empty means `{}`).
pub fn config_value(req: &SetConfigRequest) -> Result<serde_json::Value, SecretError> {
    if req.config_json.is_empty() {
        return Ok(serde_json::Value::Object(Default::default()));
    }
    serde_json::from_slice(&req.config_json)
        .map_err(|e| SecretError::InvalidArgument(format!("the config is not JSON: {e}")))
}

fn decode<M: Message + Default>(method: &str, input: &[u8]) -> Result<M, SecretError> {
    M::decode(input).map_err(|e| {
        SecretError::InvalidArgument(format!(
            "the host sent a request to {method:?} that is not a valid protobuf message: {e}"
        ))
    })
}

/// Runs one unary ABI call against `provider`: `input` is the method's prost-encoded request,
/// the answer a prost-encoded [`CallResult`] (the response message, or the error). Unknown
/// methods are answered with `UNIMPLEMENTED`. Used by the Extism and native exports.
pub fn dispatch<P: SecretProvider>(
    provider: &std::sync::RwLock<P>,
    method_name: &str,
    input: &[u8],
) -> Vec<u8> {
    let result = dispatch_inner(provider, method_name, input);
    let result = match result {
        Ok(bytes) => call_result::Result::Ok(bytes),
        Err(e) => call_result::Result::Error(CallError {
            code: e.code() as i32,
            message: e.to_string(),
        }),
    };
    CallResult {
        result: Some(result),
    }
    .encode_to_vec()
}

/// An answer saying `method` does not exist (also for ABI-level failures).
pub fn unimplemented_result(message: String) -> Vec<u8> {
    error_result(Code::Unimplemented, message)
}

/// An answer saying the plugin failed (a panic caught at the ABI's edge).
pub fn internal_result(message: String) -> Vec<u8> {
    error_result(Code::Internal, message)
}

fn error_result(code: Code, message: String) -> Vec<u8> {
    CallResult {
        result: Some(call_result::Result::Error(CallError {
            code: code as i32,
            message,
        })),
    }
    .encode_to_vec()
}

fn dispatch_inner<P: SecretProvider>(
    provider: &std::sync::RwLock<P>,
    method_name: &str,
    input: &[u8],
) -> Result<Vec<u8>, SecretError> {
    let poisoned = || SecretError::Internal("the provider panicked in an earlier call".into());
    match method_name {
        method::PLUGIN_INFO => {
            let p = provider.read().map_err(|_| poisoned())?;
            Ok(plugin_info_response(p.plugin_info()).encode_to_vec())
        }
        method::CONFIG_SCHEMA => {
            let p = provider.read().map_err(|_| poisoned())?;
            Ok(ConfigSchemaResponse {
                fields: p.config_schema(),
            }
            .encode_to_vec())
        }
        method::SET_CONFIG => {
            let req: SetConfigRequest = decode(method_name, input)?;
            let config = config_value(&req)?;
            let mut p = provider.write().map_err(|_| poisoned())?;
            p.set_config(config, req.agent.unwrap_or_default())?;
            Ok(Vec::new())
        }
        method::FETCH => {
            let req: FetchRequest = decode(method_name, input)?;
            let p = provider.read().map_err(|_| poisoned())?;
            Ok(fetch_response(p.fetch_as(&req.path, &req.identity)?).encode_to_vec())
        }
        method::LIST => {
            let req: ListRequest = decode(method_name, input)?;
            let p = provider.read().map_err(|_| poisoned())?;
            Ok(ListResponse {
                paths: p.list(&req.prefix)?,
            }
            .encode_to_vec())
        }
        method::RENEW => {
            let req: RenewRequest = decode(method_name, input)?;
            let p = provider.read().map_err(|_| poisoned())?;
            let ttl = p.renew(&req.lease_id, Duration::from_millis(req.increment_ms))?;
            Ok(RenewResponse {
                ttl_ms: duration_ms(ttl),
            }
            .encode_to_vec())
        }
        other => Err(SecretError::Internal(format!(
            "no method {other:?} (a secret provider answers {})",
            method::SECRETS.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::RwLock;

    #[derive(Default)]
    struct Fixed {
        prefix: String,
    }

    impl SecretProvider for Fixed {
        fn plugin_info(&self) -> ProviderInfo {
            ProviderInfo {
                name: "fixed".into(),
                version: "1.0.0".into(),
            }
        }
        fn set_config(
            &mut self,
            config: serde_json::Value,
            _agent: AgentConfig,
        ) -> Result<(), SecretError> {
            self.prefix = config["prefix"].as_str().unwrap_or_default().to_string();
            Ok(())
        }
        fn fetch(&self, path: &str) -> Result<Secret, SecretError> {
            if path == "missing" {
                return Err(SecretError::NotFound(format!("no secret at {path}")));
            }
            Ok(Secret {
                data: BTreeMap::from([("v".into(), format!("{}{path}", self.prefix))]),
                lease_id: "l1".into(),
                ttl: Duration::from_secs(60),
                renewable: true,
            })
        }
        fn list(&self, prefix: &str) -> Result<Vec<String>, SecretError> {
            Ok(vec![format!("{prefix}a")])
        }
    }

    fn ok(bytes: Vec<u8>) -> Vec<u8> {
        match CallResult::decode(bytes.as_slice()).unwrap().result {
            Some(call_result::Result::Ok(b)) => b,
            other => panic!("not ok: {other:?}"),
        }
    }

    fn err(bytes: Vec<u8>) -> CallError {
        match CallResult::decode(bytes.as_slice()).unwrap().result {
            Some(call_result::Result::Error(e)) => e,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn dispatches_every_method() {
        let p = RwLock::new(Fixed::default());
        let info =
            PluginInfoResponse::decode(ok(dispatch(&p, method::PLUGIN_INFO, &[])).as_slice())
                .unwrap();
        assert_eq!(info.kind, PluginKind::Secrets as i32);
        assert_eq!(info.name, "fixed");
        let req = SetConfigRequest {
            config_json: br#"{"prefix":"p-"}"#.to_vec(),
            ..Default::default()
        };
        ok(dispatch(&p, method::SET_CONFIG, &req.encode_to_vec()));
        let got = FetchResponse::decode(
            ok(dispatch(
                &p,
                method::FETCH,
                &FetchRequest {
                    path: "db".into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ))
            .as_slice(),
        )
        .unwrap();
        assert_eq!(got.data["v"], "p-db");
        assert_eq!(got.ttl_ms, 60_000);
        let e = err(dispatch(
            &p,
            method::FETCH,
            &FetchRequest {
                path: "missing".into(),
                ..Default::default()
            }
            .encode_to_vec(),
        ));
        assert_eq!(e.code, Code::NotFound as i32);
        let e = err(dispatch(
            &p,
            method::RENEW,
            &RenewRequest {
                lease_id: "l1".into(),
                increment_ms: 5,
            }
            .encode_to_vec(),
        ));
        assert!(e.message.contains("not renewable"), "{}", e.message);
        let e = err(dispatch(&p, "nope", &[]));
        assert!(e.message.contains("no method \"nope\""), "{}", e.message);
        let e = err(dispatch(&p, method::FETCH, &[0xff, 0xff]));
        assert_eq!(e.code, Code::InvalidArgument as i32);
    }
}
