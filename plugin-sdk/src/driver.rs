//! The task driver trait and its gRPC adapters (`BasePlugin` + `Driver`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use drover_proto::base::{self, AgentConfig, ConfigField, PluginKind};
use drover_proto::driver::{
    self, CapabilitiesResponse, CreateNetworkResponse, ExecTaskSetup, ExitResult,
    FingerprintResponse, InspectTaskResponse, StartTaskResponse, TaskConfig, TaskEvent, TaskHandle,
    TaskStatsResponse, exec_task_request, exec_task_response,
};
use tokio::sync::{broadcast, mpsc, watch};
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
    /// The driver does not offer this operation.
    #[error("{0}")]
    Unimplemented(String),
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
            DriverError::Unimplemented(_) => Status::unimplemented(msg),
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
    /// The keys a task's `config { ... }` block may hold, checked at `job validate` with
    /// their file:line. Empty (the default): task configs are not checked.
    fn task_config_schema(&self) -> Vec<ConfigField> {
        Vec::new()
    }
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
    /// A shim-based driver builds its [`crate::shim::LaunchSpec`] and hands it to
    /// [`crate::shim::ShimTasks::launch`].
    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError>;

    /// The task table of a shim-based driver. A driver that returns it gets every RPC that
    /// only talks to a task's shim — wait, stop, destroy, inspect, signal, recover, stats —
    /// from it, and writes only its launch spec ([`TaskDriver::start_task`]), its
    /// configuration and its capabilities; it may still override any of them.
    fn shim_tasks(&self) -> Option<&crate::shim::ShimTasks> {
        None
    }

    /// Returns once the task has exited.
    async fn wait_task(&self, task_id: &str) -> Result<ExitResult, DriverError> {
        shim_tasks_of(self, "wait for")?.wait(task_id).await
    }
    /// Sends `signal` (e.g. `SIGTERM`), then SIGKILL after `timeout` if the task still runs.
    async fn stop_task(
        &self,
        task_id: &str,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        shim_tasks_of(self, "stop")?
            .stop(task_id, signal, timeout)
            .await
    }
    /// Forgets the task and removes its driver state (`force` kills it first if it runs).
    async fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        shim_tasks_of(self, "destroy")?
            .destroy(task_id, force)
            .await
    }
    /// The task's state.
    async fn inspect_task(&self, task_id: &str) -> Result<InspectTaskResponse, DriverError> {
        shim_tasks_of(self, "inspect")?.inspect(task_id).await
    }
    /// Sends a signal to the task.
    async fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        shim_tasks_of(self, "signal")?.signal(task_id, signal).await
    }
    /// Re-attaches to a task started by an earlier instance of the plugin.
    async fn recover_task(&self, handle: TaskHandle) -> Result<(), DriverError> {
        shim_tasks_of(self, "recover")?.recover(handle).await
    }

    /// One sample of the task's resource usage. Fill the cumulative CPU times
    /// (`user_ns_total`, `system_ns_total`) and memory; the SDK streams samples at the
    /// requested interval and derives the CPU percentages from consecutive samples.
    async fn task_stats(&self, task_id: &str) -> Result<TaskStatsResponse, DriverError> {
        match self.shim_tasks() {
            Some(tasks) => tasks.stats(task_id).await,
            None => Err(DriverError::Unimplemented(format!(
                "the {} driver does not report task statistics",
                self.plugin_info().name
            ))),
        }
    }

    /// Driver-side events for all tasks; `None` when the driver has none to tell.
    fn task_events(&self) -> Option<broadcast::Receiver<TaskEvent>> {
        None
    }

    /// Runs `setup.command` inside the task's environment, reading `input` (stdin, resizes)
    /// and writing stdout/stderr to `output`, and returns its exit. [`crate::exec`] runs a
    /// prepared command this way.
    async fn exec_task(
        &self,
        setup: ExecTaskSetup,
        input: mpsc::Receiver<exec_task_request::Msg>,
        output: mpsc::Sender<exec_task_response::Msg>,
    ) -> Result<ExitResult, DriverError> {
        let _ = (setup, input, output);
        Err(DriverError::Unimplemented(format!(
            "the {} driver cannot run commands in its tasks",
            self.plugin_info().name
        )))
    }

    /// Creates the allocation's network namespace (drivers whose capabilities say
    /// `must_create_network`).
    async fn create_network(
        &self,
        alloc_id: &str,
        hostname: &str,
    ) -> Result<CreateNetworkResponse, DriverError> {
        let _ = (alloc_id, hostname);
        Err(DriverError::Unimplemented(format!(
            "the {} driver does not create networks",
            self.plugin_info().name
        )))
    }

    /// Removes what [`TaskDriver::create_network`] made.
    async fn destroy_network(
        &self,
        alloc_id: &str,
        namespace_path: &str,
    ) -> Result<(), DriverError> {
        let _ = (alloc_id, namespace_path);
        Err(DriverError::Unimplemented(format!(
            "the {} driver does not create networks",
            self.plugin_info().name
        )))
    }
}

/// `driver`'s [`TaskDriver::shim_tasks`], or why a driver without it cannot `what` a task.
fn shim_tasks_of<'a, D: TaskDriver + ?Sized>(
    driver: &'a D,
    what: &str,
) -> Result<&'a crate::shim::ShimTasks, DriverError> {
    driver.shim_tasks().ok_or_else(|| {
        DriverError::Unimplemented(format!(
            "the {} driver cannot {what} tasks: it implements neither this call nor shim_tasks",
            driver.plugin_info().name
        ))
    })
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

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The default interval of a TaskStats stream.
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(1);

/// Fills `sample`'s CPU percentages from the CPU time used since `prev`.
fn derive_cpu_percent(prev: Option<&TaskStatsResponse>, sample: &mut TaskStatsResponse) {
    let (Some(prev), Some(cpu)) = (prev, sample.cpu.as_mut()) else {
        return;
    };
    let Some(pcpu) = prev.cpu.as_ref() else {
        return;
    };
    let wall = (sample.timestamp_unix_nanos - prev.timestamp_unix_nanos).max(1) as f64;
    let user = cpu.user_ns_total.saturating_sub(pcpu.user_ns_total) as f64;
    let system = cpu.system_ns_total.saturating_sub(pcpu.system_ns_total) as f64;
    cpu.user_mode = user * 100.0 / wall;
    cpu.system_mode = system * 100.0 / wall;
    cpu.percent = cpu.user_mode + cpu.system_mode;
    for m in ["Percent", "User Mode", "System Mode"] {
        if !cpu.measured.iter().any(|x| x == m) {
            cpu.measured.push(m.to_string());
        }
    }
}

#[tonic::async_trait]
impl<D: TaskDriver> driver::driver_server::Driver for DriverService<D> {
    async fn capabilities(
        &self,
        _req: Request<driver::CapabilitiesRequest>,
    ) -> Result<Response<CapabilitiesResponse>, Status> {
        Ok(Response::new(self.driver.capabilities()))
    }

    type FingerprintStream = BoxStream<FingerprintResponse>;

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

    type TaskStatsStream = BoxStream<TaskStatsResponse>;

    async fn task_stats(
        &self,
        req: Request<driver::TaskStatsRequest>,
    ) -> Result<Response<Self::TaskStatsStream>, Status> {
        let req = req.into_inner();
        let interval = match req.interval_ms {
            0 => DEFAULT_STATS_INTERVAL,
            ms => Duration::from_millis(ms.max(10)),
        };
        // The first sample answers the call, so an unknown task is an error, not a stream.
        let first = self.driver.task_stats(&req.task_id).await?;
        let driver = self.driver.clone();
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut prev = Some(first.clone());
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    _ = tx.closed() => return,
                }
                match driver.task_stats(&req.task_id).await {
                    Ok(mut sample) => {
                        derive_cpu_percent(prev.as_ref(), &mut sample);
                        prev = Some(sample.clone());
                        if tx.send(Ok(sample)).await.is_err() {
                            return;
                        }
                    }
                    // The task exited: the stream ends.
                    Err(DriverError::TaskNotFound(_)) | Err(DriverError::FailedPrecondition(_)) => {
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type TaskEventsStream = BoxStream<TaskEvent>;

    async fn task_events(
        &self,
        _req: Request<driver::TaskEventsRequest>,
    ) -> Result<Response<Self::TaskEventsStream>, Status> {
        use tokio_stream::StreamExt;
        match self.driver.task_events() {
            Some(rx) => {
                // A slow reader skips events rather than stalling the driver.
                let stream = tokio_stream::wrappers::BroadcastStream::new(rx)
                    .filter_map(|e| e.ok())
                    .map(Ok);
                Ok(Response::new(Box::pin(stream)))
            }
            None => Ok(Response::new(Box::pin(tokio_stream::pending()))),
        }
    }

    type ExecTaskStream = BoxStream<driver::ExecTaskResponse>;

    async fn exec_task(
        &self,
        req: Request<tonic::Streaming<driver::ExecTaskRequest>>,
    ) -> Result<Response<Self::ExecTaskStream>, Status> {
        let mut inbound = req.into_inner();
        let setup = match inbound.message().await? {
            Some(driver::ExecTaskRequest {
                msg: Some(exec_task_request::Msg::Setup(s)),
            }) => s,
            _ => {
                return Err(Status::invalid_argument(
                    "ExecTask's first message must be its setup",
                ));
            }
        };
        if setup.command.is_empty() {
            return Err(Status::invalid_argument("ExecTask needs a command"));
        }
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel::<exec_task_response::Msg>(16);
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(msg) = m.msg
                    && in_tx.send(msg).await.is_err()
                {
                    break;
                }
            }
        });
        let (tx, rx) = mpsc::channel(16);
        let driver = self.driver.clone();
        tokio::spawn(async move {
            let run = driver.exec_task(setup, in_rx, out_tx);
            tokio::pin!(run);
            // Forward output while the command runs, then the rest, then the exit.
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    Some(m) = out_rx.recv() => {
                        let _ = tx.send(Ok(driver::ExecTaskResponse { msg: Some(m) })).await;
                    }
                    // The caller went away: dropping the run ends the command (the SDK's
                    // exec helpers kill their child on drop).
                    _ = tx.closed() => return,
                }
            };
            while let Some(m) = out_rx.recv().await {
                let _ = tx.send(Ok(driver::ExecTaskResponse { msg: Some(m) })).await;
            }
            let last = match result {
                Ok(exit) => Ok(driver::ExecTaskResponse {
                    msg: Some(exec_task_response::Msg::Exited(exit)),
                }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.send(last).await;
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn create_network(
        &self,
        req: Request<driver::CreateNetworkRequest>,
    ) -> Result<Response<CreateNetworkResponse>, Status> {
        let req = req.into_inner();
        Ok(Response::new(
            self.driver
                .create_network(&req.alloc_id, &req.hostname)
                .await?,
        ))
    }

    async fn destroy_network(
        &self,
        req: Request<driver::DestroyNetworkRequest>,
    ) -> Result<Response<driver::DestroyNetworkResponse>, Status> {
        let req = req.into_inner();
        self.driver
            .destroy_network(&req.alloc_id, &req.namespace_path)
            .await?;
        Ok(Response::new(driver::DestroyNetworkResponse {}))
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
