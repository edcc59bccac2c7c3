//! The task driver trait and its gRPC adapters (`BasePlugin` + `Driver`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::base::{self, AgentConfig, ConfigField, PluginKind};
use drover_proto::driver::{
    self, CapabilitiesResponse, ExitResult, FingerprintResponse, InspectTaskResponse,
    StartTaskResponse, TaskConfig, TaskHandle,
};
use tokio::sync::watch;
use tokio_stream::Stream;
use tokio_stream::wrappers::WatchStream;
use tonic::{Request, Response, Status};

/// Who a plugin is, as reported by `PluginInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin's name, e.g. `raw_exec`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: String,
    /// The versions of driver.proto it implements; the newest common one is negotiated.
    pub protocol_versions: Vec<u32>,
}

/// An error a driver returns; each maps to a gRPC status code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// No task with that id is known to the driver.
    #[error("task {0:?} is not known to this driver")]
    TaskNotFound(String),
    /// The request or the task's configuration is wrong (the user must fix it).
    #[error("{0}")]
    InvalidArgument(String),
    /// The driver cannot do this now (disabled, not configured, task still running ...).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

impl From<DriverError> for Status {
    fn from(e: DriverError) -> Self {
        let msg = e.to_string();
        match e {
            DriverError::TaskNotFound(_) => Status::not_found(msg),
            DriverError::InvalidArgument(_) => Status::invalid_argument(msg),
            DriverError::FailedPrecondition(_) => Status::failed_precondition(msg),
            DriverError::Internal(_) => Status::internal(msg),
        }
    }
}

/// A task driver. Implement this, then hand it to [`crate::main`] (a standalone binary) or
/// [`crate::serve_driver`] (inside an existing runtime).
///
/// Drivers that run processes should start each task under the task shim
/// ([`crate::shim::launch`]) so that tasks outlive the plugin, and keep the shim's
/// [`crate::shim::ShimHandle`] in [`TaskHandle::driver_state`].
///
/// ```no_run
/// use drover_plugin_sdk::{DriverError, PluginInfo, TaskDriver};
/// use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
/// use drover_plugin_sdk::proto::driver::*;
/// use std::time::Duration;
/// use tokio::sync::watch;
///
/// struct Echo { fp: watch::Sender<FingerprintResponse> }
///
/// #[tonic::async_trait]
/// impl TaskDriver for Echo {
///     fn plugin_info(&self) -> PluginInfo {
///         PluginInfo { name: "echo".into(), version: "0.1.0".into(), protocol_versions: vec![1] }
///     }
///     fn config_schema(&self) -> Vec<ConfigField> { Vec::new() }
///     async fn set_config(&self, _c: serde_json::Value, _a: AgentConfig) -> Result<(), DriverError> { Ok(()) }
///     fn capabilities(&self) -> CapabilitiesResponse { CapabilitiesResponse::default() }
///     fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> { self.fp.subscribe() }
///     async fn start_task(&self, _t: TaskConfig) -> Result<StartTaskResponse, DriverError> {
///         Err(DriverError::FailedPrecondition("echo runs nothing".into()))
///     }
///     async fn wait_task(&self, id: &str) -> Result<ExitResult, DriverError> { Err(DriverError::TaskNotFound(id.into())) }
///     async fn stop_task(&self, id: &str, _s: &str, _t: Duration) -> Result<(), DriverError> { Err(DriverError::TaskNotFound(id.into())) }
///     async fn destroy_task(&self, id: &str, _f: bool) -> Result<(), DriverError> { Err(DriverError::TaskNotFound(id.into())) }
///     async fn inspect_task(&self, id: &str) -> Result<InspectTaskResponse, DriverError> { Err(DriverError::TaskNotFound(id.into())) }
///     async fn signal_task(&self, id: &str, _s: &str) -> Result<(), DriverError> { Err(DriverError::TaskNotFound(id.into())) }
///     async fn recover_task(&self, _h: TaskHandle) -> Result<(), DriverError> { Ok(()) }
/// }
///
/// fn main() {
///     drover_plugin_sdk::main(|| Echo { fp: watch::channel(FingerprintResponse::default()).0 })
/// }
/// ```
#[tonic::async_trait]
pub trait TaskDriver: Send + Sync + 'static {
    /// Name, version and supported driver protocol versions.
    fn plugin_info(&self) -> PluginInfo;
    /// The keys the plugin's `config { ... }` block may hold.
    fn config_schema(&self) -> Vec<ConfigField>;
    /// The operator's configuration (a JSON object) and the agent's own settings.
    async fn set_config(
        &self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), DriverError>;
    /// What the driver can do.
    fn capabilities(&self) -> CapabilitiesResponse;
    /// Node attributes and health; every change of the watched value is streamed to the host.
    fn fingerprint(&self) -> watch::Receiver<FingerprintResponse>;
    /// Starts a task; the returned handle must be enough to [`TaskDriver::recover_task`] it.
    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError>;
    /// Returns once the task has exited.
    async fn wait_task(&self, task_id: &str) -> Result<ExitResult, DriverError>;
    /// Sends `signal` (e.g. `SIGTERM`), then SIGKILL after `timeout` if the task still runs.
    async fn stop_task(
        &self,
        task_id: &str,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError>;
    /// Forgets the task and removes its driver state (`force` kills it first if it runs).
    async fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError>;
    /// The task's state.
    async fn inspect_task(&self, task_id: &str) -> Result<InspectTaskResponse, DriverError>;
    /// Sends a signal to the task.
    async fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError>;
    /// Re-attaches to a task started by an earlier instance of the plugin.
    async fn recover_task(&self, handle: TaskHandle) -> Result<(), DriverError>;
}

/// Adapts a [`TaskDriver`] to the generated `BasePlugin` and `Driver` services.
pub(crate) struct DriverService<D: TaskDriver> {
    pub(crate) driver: Arc<D>,
}

impl<D: TaskDriver> Clone for DriverService<D> {
    fn clone(&self) -> Self {
        Self {
            driver: self.driver.clone(),
        }
    }
}

#[tonic::async_trait]
impl<D: TaskDriver> base::base_plugin_server::BasePlugin for DriverService<D> {
    async fn plugin_info(
        &self,
        _req: Request<base::PluginInfoRequest>,
    ) -> Result<Response<base::PluginInfoResponse>, Status> {
        let info = self.driver.plugin_info();
        Ok(Response::new(base::PluginInfoResponse {
            name: info.name,
            kind: PluginKind::Driver as i32,
            version: info.version,
            protocol_versions: info.protocol_versions,
        }))
    }

    async fn config_schema(
        &self,
        _req: Request<base::ConfigSchemaRequest>,
    ) -> Result<Response<base::ConfigSchemaResponse>, Status> {
        Ok(Response::new(base::ConfigSchemaResponse {
            fields: self.driver.config_schema(),
        }))
    }

    async fn set_config(
        &self,
        req: Request<base::SetConfigRequest>,
    ) -> Result<Response<base::SetConfigResponse>, Status> {
        let req = req.into_inner();
        let config = if req.config_json.is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_slice(&req.config_json).map_err(|e| {
                Status::invalid_argument(format!("the plugin configuration is not JSON: {e}"))
            })?
        };
        if !config.is_object() {
            return Err(Status::invalid_argument(
                "the plugin configuration must be a JSON object",
            ));
        }
        let supported = self.driver.plugin_info().protocol_versions;
        if req.protocol_version != 0 && !supported.contains(&req.protocol_version) {
            return Err(Status::invalid_argument(format!(
                "the host chose protocol version {}, this plugin speaks {supported:?}",
                req.protocol_version
            )));
        }
        self.driver
            .set_config(config, req.agent.unwrap_or_default())
            .await?;
        Ok(Response::new(base::SetConfigResponse {}))
    }
}

type FingerprintStream =
    Pin<Box<dyn Stream<Item = Result<FingerprintResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl<D: TaskDriver> driver::driver_server::Driver for DriverService<D> {
    async fn capabilities(
        &self,
        _req: Request<driver::CapabilitiesRequest>,
    ) -> Result<Response<CapabilitiesResponse>, Status> {
        Ok(Response::new(self.driver.capabilities()))
    }

    type FingerprintStream = FingerprintStream;

    async fn fingerprint(
        &self,
        _req: Request<driver::FingerprintRequest>,
    ) -> Result<Response<Self::FingerprintStream>, Status> {
        use tokio_stream::StreamExt;
        let stream = WatchStream::new(self.driver.fingerprint()).map(Ok);
        Ok(Response::new(Box::pin(stream)))
    }

    async fn start_task(
        &self,
        req: Request<driver::StartTaskRequest>,
    ) -> Result<Response<StartTaskResponse>, Status> {
        let task = req
            .into_inner()
            .task
            .ok_or_else(|| Status::invalid_argument("StartTask needs a task"))?;
        if task.id.is_empty() {
            return Err(Status::invalid_argument("StartTask needs a task id"));
        }
        Ok(Response::new(self.driver.start_task(task).await?))
    }

    async fn wait_task(
        &self,
        req: Request<driver::WaitTaskRequest>,
    ) -> Result<Response<driver::WaitTaskResponse>, Status> {
        let result = self.driver.wait_task(&req.into_inner().task_id).await?;
        Ok(Response::new(driver::WaitTaskResponse {
            result: Some(result),
        }))
    }

    async fn stop_task(
        &self,
        req: Request<driver::StopTaskRequest>,
    ) -> Result<Response<driver::StopTaskResponse>, Status> {
        let req = req.into_inner();
        let signal = if req.signal.is_empty() {
            "SIGTERM"
        } else {
            &req.signal
        };
        self.driver
            .stop_task(&req.task_id, signal, Duration::from_millis(req.timeout_ms))
            .await?;
        Ok(Response::new(driver::StopTaskResponse {}))
    }

    async fn destroy_task(
        &self,
        req: Request<driver::DestroyTaskRequest>,
    ) -> Result<Response<driver::DestroyTaskResponse>, Status> {
        let req = req.into_inner();
        self.driver.destroy_task(&req.task_id, req.force).await?;
        Ok(Response::new(driver::DestroyTaskResponse {}))
    }

    async fn inspect_task(
        &self,
        req: Request<driver::InspectTaskRequest>,
    ) -> Result<Response<InspectTaskResponse>, Status> {
        Ok(Response::new(
            self.driver.inspect_task(&req.into_inner().task_id).await?,
        ))
    }

    async fn signal_task(
        &self,
        req: Request<driver::SignalTaskRequest>,
    ) -> Result<Response<driver::SignalTaskResponse>, Status> {
        let req = req.into_inner();
        self.driver.signal_task(&req.task_id, &req.signal).await?;
        Ok(Response::new(driver::SignalTaskResponse {}))
    }

    async fn recover_task(
        &self,
        req: Request<driver::RecoverTaskRequest>,
    ) -> Result<Response<driver::RecoverTaskResponse>, Status> {
        let handle = req
            .into_inner()
            .handle
            .ok_or_else(|| Status::invalid_argument("RecoverTask needs a handle"))?;
        self.driver.recover_task(handle).await?;
        Ok(Response::new(driver::RecoverTaskResponse {}))
    }
}

/// `ExitResult` for a task that exited with `code` or was killed by `signal`.
pub fn exit_result(code: i32, signal: i32) -> ExitResult {
    ExitResult {
        exit_code: code,
        signal,
        oom_killed: false,
        err: String::new(),
    }
}

impl<D: TaskDriver> DriverService<D> {
    pub(crate) fn new(driver: D) -> Self {
        Self {
            driver: Arc::new(driver),
        }
    }
}
