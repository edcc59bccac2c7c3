//! The host's handle on a secret provider, whatever carries it: a gRPC plugin process, an
//! Extism module or a native library. Calls into in-process plugins are synchronous and run on
//! tokio's blocking pool, never on the runtime's workers.

use std::sync::Arc;
use std::time::Duration;

use drover_plugin_abi::abi::method;
use drover_proto::base::call_error::Code;
use drover_proto::secrets::secret_provider_client::SecretProviderClient;
use drover_proto::secrets::{
    FetchRequest, FetchResponse, ListRequest, ListResponse, RenewRequest, RenewResponse,
};
use tonic::transport::Channel;
use tracing::Instrument;

use crate::module::{CallFailure, ModuleCall, UnaryError, call_unary};
use crate::{HostError, PluginHost, Transport};

/// What kind of failure a secret provider call met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretsErrorKind {
    /// No secret or lease there.
    NotFound,
    /// The request or the provider's configuration is wrong.
    InvalidArgument,
    /// The provider cannot do this now (not renewable, not configured ...).
    FailedPrecondition,
    /// Refused: by the store, or by the sandbox (an HTTP host or path not granted).
    PermissionDenied,
    /// The call ran past the sandbox's time limit and was stopped.
    Timeout,
    /// The plugin could not be reached or failed (a trap, a crash, a garbled answer).
    Failed,
}

/// A failed secret provider call; the message names the plugin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret provider {plugin:?} ({transport}): {message}")]
pub struct SecretsError {
    pub plugin: String,
    pub transport: Transport,
    pub kind: SecretsErrorKind,
    pub message: String,
}

#[derive(Clone)]
enum Carrier {
    Grpc(SecretProviderClient<Channel>),
    Module(Arc<dyn ModuleCall>),
}

/// A secret provider, over any transport. Cheap to clone.
#[derive(Clone)]
pub struct SecretsClient {
    name: String,
    transport: Transport,
    carrier: Carrier,
}

impl std::fmt::Debug for SecretsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsClient")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .finish()
    }
}

impl SecretsClient {
    pub(crate) fn grpc(name: &str, channel: Channel) -> Self {
        Self {
            name: name.to_string(),
            transport: Transport::Grpc,
            carrier: Carrier::Grpc(SecretProviderClient::new(channel)),
        }
    }

    pub(crate) fn module(name: &str, transport: Transport, module: Arc<dyn ModuleCall>) -> Self {
        Self {
            name: name.to_string(),
            transport,
            carrier: Carrier::Module(module),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What carries the calls.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The secret at `path`, asked for by no task.
    pub async fn fetch(&self, path: &str) -> Result<FetchResponse, SecretsError> {
        self.fetch_as(path, "").await
    }

    /// The secret at `path`, asked for by the task whose workload identity (for this
    /// provider's audience) is `identity`: the provider sees who asks.
    pub async fn fetch_as(
        &self,
        path: &str,
        identity: &str,
    ) -> Result<FetchResponse, SecretsError> {
        let req = FetchRequest {
            path: path.into(),
            identity: identity.into(),
        };
        match &self.carrier {
            Carrier::Grpc(c) => {
                let mut c = c.clone();
                c.fetch(req)
                    .instrument(self.span("fetch"))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| self.status_error(s))
            }
            Carrier::Module(m) => self.unary::<FetchResponse>(m, method::FETCH, req).await,
        }
    }

    /// The paths under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, SecretsError> {
        let req = ListRequest {
            prefix: prefix.into(),
            identity: String::new(),
        };
        let resp = match &self.carrier {
            Carrier::Grpc(c) => {
                let mut c = c.clone();
                c.list(req)
                    .instrument(self.span("list"))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| self.status_error(s))?
            }
            Carrier::Module(m) => self.unary::<ListResponse>(m, method::LIST, req).await?,
        };
        Ok(resp.paths)
    }

    /// Extends lease `lease_id` by `increment`; answers the lease's new TTL.
    pub async fn renew(
        &self,
        lease_id: &str,
        increment: Duration,
    ) -> Result<Duration, SecretsError> {
        let req = RenewRequest {
            lease_id: lease_id.into(),
            increment_ms: u64::try_from(increment.as_millis()).unwrap_or(u64::MAX),
        };
        let resp = match &self.carrier {
            Carrier::Grpc(c) => {
                let mut c = c.clone();
                c.renew(req)
                    .instrument(self.span("renew"))
                    .await
                    .map(tonic::Response::into_inner)
                    .map_err(|s| self.status_error(s))?
            }
            Carrier::Module(m) => self.unary::<RenewResponse>(m, method::RENEW, req).await?,
        };
        Ok(Duration::from_millis(resp.ttl_ms))
    }

    fn span(&self, call: &'static str) -> tracing::Span {
        tracing::debug_span!("plugin", plugin = %self.name, transport = %self.transport, call)
    }

    async fn unary<Resp: prost::Message + Default + 'static>(
        &self,
        module: &Arc<dyn ModuleCall>,
        method: &'static str,
        req: impl prost::Message + 'static,
    ) -> Result<Resp, SecretsError> {
        let module = module.clone();
        let span = self.span(method);
        let joined = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            call_unary::<Resp>(&*module, method, &req)
        })
        .await;
        match joined {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(self.unary_error(e)),
            Err(join) => Err(self.error(
                SecretsErrorKind::Failed,
                format!("the call to {method:?} panicked in the host: {join}"),
            )),
        }
    }

    fn error(&self, kind: SecretsErrorKind, message: String) -> SecretsError {
        SecretsError {
            plugin: self.name.clone(),
            transport: self.transport,
            kind,
            message,
        }
    }

    fn unary_error(&self, e: UnaryError) -> SecretsError {
        let kind = match &e {
            UnaryError::Call(CallFailure::Timeout { .. }) => SecretsErrorKind::Timeout,
            UnaryError::Call(CallFailure::Denied(_)) => SecretsErrorKind::PermissionDenied,
            UnaryError::Call(CallFailure::Failed(_)) | UnaryError::Garbled { .. } => {
                SecretsErrorKind::Failed
            }
            UnaryError::Answer(a) => match a.code {
                Code::NotFound => SecretsErrorKind::NotFound,
                Code::InvalidArgument => SecretsErrorKind::InvalidArgument,
                Code::FailedPrecondition => SecretsErrorKind::FailedPrecondition,
                Code::PermissionDenied => SecretsErrorKind::PermissionDenied,
                _ => SecretsErrorKind::Failed,
            },
        };
        self.error(kind, e.to_string())
    }

    fn status_error(&self, s: tonic::Status) -> SecretsError {
        let kind = match s.code() {
            tonic::Code::NotFound => SecretsErrorKind::NotFound,
            tonic::Code::InvalidArgument => SecretsErrorKind::InvalidArgument,
            tonic::Code::FailedPrecondition => SecretsErrorKind::FailedPrecondition,
            tonic::Code::PermissionDenied => SecretsErrorKind::PermissionDenied,
            tonic::Code::DeadlineExceeded => SecretsErrorKind::Timeout,
            _ => SecretsErrorKind::Failed,
        };
        self.error(kind, s.message().to_string())
    }
}

impl PluginHost {
    /// A handle on secret provider `name`, whatever carries it: an Extism module or native
    /// library loaded from `plugin_dir`, or a plugin process (launched, or relaunched, like
    /// [`PluginHost::driver`]) that reports the secrets kind.
    pub async fn secrets(&self, name: &str) -> Result<SecretsClient, HostError> {
        if let Some(m) = self.modules.get(name) {
            return Ok(SecretsClient::module(name, m.transport, m.module.clone()));
        }
        if let Some(r) = self.refused.get(name) {
            return Err(HostError::Refused {
                name: name.to_string(),
                path: r.path.clone(),
                reason: r.reason.clone(),
            });
        }
        let running = self.running(name).await?;
        if running.info.kind() != drover_proto::base::PluginKind::Secrets {
            return Err(HostError::WrongKind {
                name: name.to_string(),
                path: running.path.clone(),
                kind: running.info.kind().as_str_name().to_string(),
                wanted: "secret provider",
            });
        }
        Ok(SecretsClient::grpc(name, running.channel.clone()))
    }
}
