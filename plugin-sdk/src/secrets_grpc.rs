//! A [`SecretProvider`] served over gRPC: `BasePlugin` + `SecretProvider` on the go-plugin
//! server of [`crate::serve`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use drover_proto::base::{
    self, ConfigSchemaRequest, ConfigSchemaResponse, PluginInfoRequest, PluginInfoResponse,
    SetConfigRequest, SetConfigResponse,
};
use drover_proto::secrets::secret_provider_server::{
    SecretProvider as SecretProviderRpc, SecretProviderServer,
};
use drover_proto::secrets::{
    FetchRequest, FetchResponse, ListRequest, ListResponse, RenewRequest, RenewResponse,
};
use tonic::{Request, Response, Status};

use crate::secrets::{
    SECRETS_PROTOCOL_VERSIONS, SecretError, SecretProvider, config_value, fetch_response,
    plugin_info_response,
};
use crate::serve::{ServeError, check_cookie_or_exit, serve_plugin};

impl From<SecretError> for Status {
    fn from(e: SecretError) -> Self {
        let msg = e.to_string();
        match e {
            SecretError::NotFound(_) => Status::not_found(msg),
            SecretError::InvalidArgument(_) => Status::invalid_argument(msg),
            SecretError::FailedPrecondition(_) => Status::failed_precondition(msg),
            SecretError::PermissionDenied(_) => Status::permission_denied(msg),
            SecretError::Internal(_) => Status::internal(msg),
        }
    }
}

/// Adapts a [`SecretProvider`] to the generated services. The provider is synchronous and may
/// block: every call runs on tokio's blocking pool.
struct SecretService<P: SecretProvider> {
    provider: Arc<RwLock<P>>,
}

impl<P: SecretProvider> Clone for SecretService<P> {
    fn clone(&self) -> Self {
        Self {
            provider: self.provider.clone(),
        }
    }
}

impl<P: SecretProvider> SecretService<P> {
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&RwLock<P>) -> Result<T, SecretError> + Send + 'static,
    ) -> Result<T, Status> {
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || f(&provider))
            .await
            .map_err(|e| Status::internal(format!("the secret provider panicked: {e}")))?
            .map_err(Status::from)
    }
}

fn poisoned() -> SecretError {
    SecretError::Internal("the provider panicked in an earlier call".into())
}

#[tonic::async_trait]
impl<P: SecretProvider> base::base_plugin_server::BasePlugin for SecretService<P> {
    async fn plugin_info(
        &self,
        _req: Request<PluginInfoRequest>,
    ) -> Result<Response<PluginInfoResponse>, Status> {
        let info = self
            .run(|p| Ok(p.read().map_err(|_| poisoned())?.plugin_info()))
            .await?;
        Ok(Response::new(plugin_info_response(info)))
    }

    async fn config_schema(
        &self,
        _req: Request<ConfigSchemaRequest>,
    ) -> Result<Response<ConfigSchemaResponse>, Status> {
        let fields = self
            .run(|p| Ok(p.read().map_err(|_| poisoned())?.config_schema()))
            .await?;
        Ok(Response::new(ConfigSchemaResponse { fields }))
    }

    async fn set_config(
        &self,
        req: Request<SetConfigRequest>,
    ) -> Result<Response<SetConfigResponse>, Status> {
        let req = req.into_inner();
        let config = config_value(&req)?;
        let agent = req.agent.unwrap_or_default();
        self.run(move |p| p.write().map_err(|_| poisoned())?.set_config(config, agent))
            .await?;
        Ok(Response::new(SetConfigResponse {}))
    }
}

#[tonic::async_trait]
impl<P: SecretProvider> SecretProviderRpc for SecretService<P> {
    async fn fetch(&self, req: Request<FetchRequest>) -> Result<Response<FetchResponse>, Status> {
        let req = req.into_inner();
        let secret = self
            .run(move |p| {
                p.read()
                    .map_err(|_| poisoned())?
                    .fetch_as(&req.path, &req.identity)
            })
            .await?;
        Ok(Response::new(fetch_response(secret)))
    }

    async fn list(&self, req: Request<ListRequest>) -> Result<Response<ListResponse>, Status> {
        let prefix = req.into_inner().prefix;
        let paths = self
            .run(move |p| p.read().map_err(|_| poisoned())?.list(&prefix))
            .await?;
        Ok(Response::new(ListResponse { paths }))
    }

    async fn renew(&self, req: Request<RenewRequest>) -> Result<Response<RenewResponse>, Status> {
        let req = req.into_inner();
        let ttl = self
            .run(move |p| {
                p.read()
                    .map_err(|_| poisoned())?
                    .renew(&req.lease_id, Duration::from_millis(req.increment_ms))
            })
            .await?;
        Ok(Response::new(RenewResponse {
            ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        }))
    }
}

/// Serves `provider` as a go-plugin-compatible gRPC plugin until the host stops it: the same
/// handshake, health service, controller and shutdown as [`crate::serve_driver`], with
/// `BasePlugin` (kind `PLUGIN_KIND_SECRETS`) and `SecretProvider`.
///
/// Must run inside a tokio runtime. The process should exit once it returns.
pub async fn serve_secrets<P: SecretProvider>(provider: P) -> Result<(), ServeError> {
    check_cookie_or_exit();
    let info = provider.plugin_info();
    let service = SecretService {
        provider: Arc::new(RwLock::new(provider)),
    };
    serve_plugin(
        &info.name,
        &info.version,
        SECRETS_PROTOCOL_VERSIONS,
        move |router| {
            router
                .add_service(base::base_plugin_server::BasePluginServer::new(
                    service.clone(),
                ))
                .add_service(SecretProviderServer::new(service))
        },
    )
    .await
}

/// The complete `main()` of a standalone secret provider plugin binary: checks the magic
/// cookie (exits 1 with an explanation when run by hand), installs hclog logging, builds a
/// tokio runtime and serves the provider until the host stops it.
///
/// ```ignore
/// fn main() {
///     drover_plugin_sdk::main_secrets(MyProvider::default)
/// }
/// ```
pub fn main_secrets<P: SecretProvider>(make: impl FnOnce() -> P) -> ! {
    check_cookie_or_exit();
    let provider = make();
    crate::init_logging(&provider.plugin_info().name);
    crate::serve::serve_to_exit(serve_secrets(provider))
}
