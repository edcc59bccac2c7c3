//! The `TaskDriver`: the plugin's entry point. A task is a container; its id is in the task
//! handle, so a new plugin instance recovers the task instead of starting it again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use bollard::query_parameters::{
    CreateContainerOptionsBuilder, KillContainerOptionsBuilder, RemoveContainerOptionsBuilder,
};
use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::proto::driver::{
    CapabilitiesResponse, CreateNetworkResponse, ExecTaskSetup, ExitResult, FingerprintResponse,
    InspectTaskResponse, StartTaskResponse, TaskConfig, TaskEvent, TaskHandle, TaskStatsResponse,
    exec_task_request, exec_task_response,
};
use drover_plugin_sdk::{DriverError, PluginInfo, TaskDriver};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{self, Settings};
use crate::container::{self, SpecError};
use crate::engine::{Engine, EngineError};
use crate::events::Emitter;
use crate::exec::ExecError;
use crate::gc::{self, ImageGc, ImageRefs};
use crate::image::{self, ImageError};
use crate::logs::{self, LogFollower, LogTarget};
use crate::network::{self, Infra, NetworkError, Networks};
use crate::stats::StatsError;
use crate::tasks::{DriverState, Tasks, exit_of, not_found};
use crate::time::unix_nanos;

/// The plugin's name.
pub const NAME: &str = "docker";
/// The version of [`DriverState`] in task handles.
pub const HANDLE_VERSION: u32 = 1;

/// The docker driver.
pub struct Docker {
    settings: RwLock<Settings>,
    engine: Arc<Engine>,
    tasks: Arc<Tasks>,
    events: broadcast::Sender<TaskEvent>,
    /// One core's MHz: what `cpu` is counted in, for `cpu_hard_limit`'s quota.
    core_mhz: u64,
    /// The agent's data dir (SetConfig): log cursors live under `<it>/docker/logs`.
    data_dir: RwLock<PathBuf>,
    /// Tasks per image, for image GC; made on the first start or recovery (it needs the
    /// engine).
    images: OnceLock<Arc<ImageRefs>>,
    /// The dangling-container reaper of the current configuration.
    reaper: Mutex<Option<JoinHandle<()>>>,
    /// The allocations' network (infra) containers this plugin keeps.
    networks: Arc<Networks>,
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            settings: RwLock::new(Settings::default()),
            engine: Arc::new(Engine::default()),
            tasks: Arc::new(Tasks::default()),
            events: broadcast::channel(256).0,
            core_mhz: core_mhz(),
            data_dir: RwLock::new(std::env::temp_dir().join("drover-docker")),
            images: OnceLock::new(),
            reaper: Mutex::new(None),
            networks: Arc::new(Networks::default()),
        }
    }
}

/// One core's clock in MHz, as the node fingerprints it (1000 when it cannot be read).
fn core_mhz() -> u64 {
    let max = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(|khz| khz / 1000);
    let info = || {
        std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("cpu MHz"))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
        })
    };
    max.or_else(info).filter(|m| *m > 0).unwrap_or(1000)
}

fn engine_err(e: EngineError) -> DriverError {
    DriverError::FailedPrecondition(e.to_string())
}

fn spec_err(e: SpecError) -> DriverError {
    DriverError::InvalidArgument(e.0)
}

fn image_err(e: ImageError) -> DriverError {
    if e.is_users() {
        DriverError::InvalidArgument(e.to_string())
    } else {
        DriverError::FailedPrecondition(e.to_string())
    }
}

fn network_err(e: NetworkError) -> DriverError {
    if e.is_callers() {
        DriverError::InvalidArgument(e.to_string())
    } else {
        DriverError::FailedPrecondition(e.to_string())
    }
}

fn bollard_err(what: &str, e: bollard::errors::Error) -> DriverError {
    DriverError::Internal(format!("{what}: {e}"))
}

fn stats_err(e: StatsError) -> DriverError {
    match e {
        StatsError::NotFound(id) => DriverError::TaskNotFound(id),
        e @ StatsError::NotRunning(_) => DriverError::FailedPrecondition(e.to_string()),
        e => DriverError::Internal(e.to_string()),
    }
}

fn exec_err(e: ExecError) -> DriverError {
    match e {
        e @ ExecError::NoCommand => DriverError::InvalidArgument(e.to_string()),
        e @ (ExecError::NotFound(_) | ExecError::NotRunning(_)) => {
            DriverError::FailedPrecondition(e.to_string())
        }
        e => DriverError::Internal(e.to_string()),
    }
}

/// A task id (`<alloc id>/<task>/<attempt>`, job data) as one file name: every byte outside
/// `[A-Za-z0-9._-]` is written `%XX`, so distinct ids never share a file and none climbs out.
fn file_name_of(task_id: &str) -> String {
    let mut out = String::with_capacity(task_id.len());
    for b in task_id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Docker {
    /// The settings from the plugin's config block.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The engine connection (for the logs, stats, exec and gc modules).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The tracked tasks.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    fn client(&self) -> Result<bollard::Docker, DriverError> {
        self.engine.client().map_err(engine_err)
    }

    /// The image reference counts (image GC), made on first use. Counted per reference the
    /// tasks started as (`name:tag`): removing one untags it, and the engine deletes the
    /// image when no other name holds it.
    fn images(&self, docker: &bollard::Docker) -> &Arc<ImageRefs> {
        self.images.get_or_init(|| {
            let gc = self.settings().gc;
            ImageRefs::new(
                docker.clone(),
                ImageGc {
                    enabled: gc.image,
                    delay: gc.image_delay,
                },
            )
        })
    }

    /// Where the task's log follower keeps its cursor.
    fn cursor_path(&self, task_id: &str) -> PathBuf {
        let dir = self.data_dir.read().unwrap_or_else(|p| p.into_inner());
        dir.join("docker")
            .join("logs")
            .join(format!("{}.cursor", file_name_of(task_id)))
    }

    /// Starts following the container's output into the task's log files (unless the
    /// operator turned log collection off, or the task has no log paths). A follower of a
    /// recovered task resumes from its cursor.
    fn follow_logs(
        &self,
        docker: &bollard::Docker,
        task: &TaskConfig,
        container_id: &str,
    ) -> Option<LogFollower> {
        if self.settings().disable_log_collection || task.stdout_path.is_empty() {
            return None;
        }
        let alloc_dir = Path::new(&task.alloc_dir);
        let root = alloc_dir
            .parent()
            .filter(|p| !task.alloc_dir.is_empty() && !p.as_os_str().is_empty())?;
        let limits = task.logs.unwrap_or_default();
        let target = LogTarget {
            stdout_path: PathBuf::from(&task.stdout_path),
            stderr_path: PathBuf::from(&task.stderr_path),
            logs_dir_root: root.to_path_buf(),
            max_files: limits.max_files,
            max_file_size_mb: limits.max_file_size_mb,
            cursor_path: self.cursor_path(&task.id),
        };
        Some(logs::follow(
            docker.clone(),
            container_id.to_string(),
            target,
        ))
    }

    /// Restarts the dangling-container reaper with the current settings.
    fn restart_reaper(&self, docker: bollard::Docker) {
        let all = self.settings();
        let (settings, node) = (all.gc.dangling, all.node_id);
        let (tasks, networks) = (self.tasks.clone(), self.networks.clone());
        let tracked: Arc<dyn Fn(&str) -> bool + Send + Sync> = Arc::new(move |id: &str| {
            networks.holds(id) || tasks.container_ids().iter().any(|c| c == id)
        });
        let handle = gc::spawn_reaper(docker, node, settings, tracked);
        if let Some(old) = self
            .reaper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace(handle)
        {
            old.abort();
        }
    }

    /// Keeps `infra` as `alloc_id`'s network container, counting its image (once per
    /// container: finding the same one again changes nothing).
    fn keep_network(&self, docker: &bollard::Docker, alloc_id: &str, infra: Infra) {
        let image = infra.image.clone();
        let replaced = self.networks.insert(alloc_id, infra.clone());
        if replaced.as_ref() == Some(&infra) {
            return;
        }
        let images = self.images(docker);
        images.acquire(&image);
        if let Some(old) = replaced {
            images.release(&old.image);
        }
    }

    /// Keeps again the running network containers of this node (after a plugin restart),
    /// before the reaper's first pass.
    async fn adopt_networks(&self, docker: &bollard::Docker) {
        let node = self.settings().node_id;
        match network::running(docker, &node).await {
            Ok(found) => {
                for (alloc_id, infra) in found {
                    tracing::info!(alloc_id, container = %infra.container_id, "network container found again");
                    self.keep_network(docker, &alloc_id, infra);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot look for the allocations' network containers")
            }
        }
    }

    /// Creates the container; a leftover of the same task (same name, same task id label,
    /// not running) is removed first.
    async fn create(
        &self,
        docker: &bollard::Docker,
        task: &TaskConfig,
        spec: container::ContainerSpec,
    ) -> Result<String, DriverError> {
        let opts = CreateContainerOptionsBuilder::default()
            .name(&spec.name)
            .build();
        match docker
            .create_container(Some(opts.clone()), spec.body.clone())
            .await
        {
            Ok(r) => return Ok(r.id),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => {}
            Err(e) => return Err(bollard_err("cannot create the container", e)),
        }
        let old = docker
            .inspect_container(&spec.name, None)
            .await
            .map_err(|e| bollard_err("cannot inspect the conflicting container", e))?;
        let ours = old
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(container::LABEL_TASK_ID))
            .is_some_and(|t| *t == task.id);
        if !ours || exit_of(&old).is_none() {
            return Err(DriverError::FailedPrecondition(format!(
                "a container named {} already exists",
                spec.name
            )));
        }
        let rm = RemoveContainerOptionsBuilder::default().force(true).build();
        docker
            .remove_container(&spec.name, Some(rm))
            .await
            .map_err(|e| bollard_err("cannot remove the task's leftover container", e))?;
        docker
            .create_container(Some(opts), spec.body)
            .await
            .map(|r| r.id)
            .map_err(|e| bollard_err("cannot create the container", e))
    }

    async fn start_container(
        &self,
        docker: &bollard::Docker,
        task: &TaskConfig,
    ) -> Result<(DriverState, i64), DriverError> {
        let cfg = container::parse_config(task).map_err(spec_err)?;
        let settings = self.settings();
        let infra = if task.network_ns_path.is_empty() {
            None
        } else {
            container::check_shared_network(&cfg).map_err(spec_err)?;
            Some(
                network::infra_of_task(docker, task)
                    .await
                    .map_err(network_err)?,
            )
        };
        if let Some(target) = cfg
            .network_mode
            .as_deref()
            .and_then(|m| m.strip_prefix("container:"))
        {
            check_network_owner(docker, target, task).await?;
        }
        let events = Emitter::new(self.events.clone(), task);
        let task_dir = Path::new(&task.task_dir).to_path_buf();
        let img = image::ensure(docker, &task_dir, &cfg, &settings, &events)
            .await
            .map_err(image_err)?;
        let spec = container::build(
            task,
            &cfg,
            &img.reference,
            &settings,
            self.core_mhz,
            infra.as_deref(),
        )
        .map_err(spec_err)?;
        let rel = spec.relative_sources.clone();
        tokio::task::spawn_blocking(move || {
            container::mounts::check_relative_sources(&task_dir, &rel)
        })
        .await
        .map_err(|e| DriverError::Internal(e.to_string()))?
        .map_err(spec_err)?;
        let name = spec.name.clone();
        let id = self.create(docker, task, spec).await?;
        if let Err(e) = docker.start_container(&id, None).await {
            let rm = RemoveContainerOptionsBuilder::default().force(true).build();
            let _ = docker.remove_container(&id, Some(rm)).await;
            return Err(DriverError::FailedPrecondition(format!(
                "cannot start the container: {e}"
            )));
        }
        let pid = docker
            .inspect_container(&id, None)
            .await
            .ok()
            .and_then(|i| i.state.and_then(|s| s.pid))
            .unwrap_or(0);
        tracing::info!(task = %task.id, container = %id, image = %img.reference, "container started");
        let state = DriverState {
            container_id: id,
            container_name: name,
            image_id: img.id,
            image: img.reference,
        };
        Ok((state, pid))
    }

    async fn wait_exit(&self, task_id: &str, timeout: Duration) -> Option<ExitResult> {
        let mut rx = self.tasks.get(task_id).ok()?.exit.clone();
        let r = tokio::time::timeout(timeout, rx.wait_for(|e| e.is_some())).await;
        match r {
            Ok(Ok(e)) => e.clone(),
            _ => None,
        }
    }

    async fn kill(&self, container_id: &str, signal: &str) -> Result<(), DriverError> {
        let docker = self.client()?;
        let opts = KillContainerOptionsBuilder::default()
            .signal(signal)
            .build();
        match docker.kill_container(container_id, Some(opts)).await {
            Ok(()) => Ok(()),
            // Not running (409) or gone (404): nothing to signal.
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409 | 404,
                ..
            }) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message,
            }) if message.contains("is not running") => Ok(()),
            Err(e) => Err(bollard_err(&format!("cannot send {signal}"), e)),
        }
    }
}

/// `network_mode = "container:<target>"` joins another container's network namespace: only
/// a container Drover made for the same allocation (its tasks or its network container).
async fn check_network_owner(
    docker: &bollard::Docker,
    target: &str,
    task: &TaskConfig,
) -> Result<(), DriverError> {
    let refuse = |why: &str| {
        DriverError::InvalidArgument(format!(
            "network_mode \"container:{target}\": {why}; only a container of the same allocation may be joined"
        ))
    };
    let info = match docker.inspect_container(target, None).await {
        Ok(i) => i,
        Err(e) if not_found(&e) => return Err(refuse("no such container")),
        Err(e) => return Err(bollard_err("cannot inspect the network container", e)),
    };
    let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
    let managed = labels
        .get(container::LABEL_MANAGED)
        .is_some_and(|v| v == "true");
    let same_alloc = labels
        .get(container::LABEL_ALLOC_ID)
        .is_some_and(|a| !task.alloc_id.is_empty() && *a == task.alloc_id);
    if managed && same_alloc {
        Ok(())
    } else {
        Err(refuse("it is not a container of this allocation"))
    }
}

#[tonic::async_trait]
impl TaskDriver for Docker {
    fn plugin_info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_versions: vec![1],
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        config::plugin_config_schema()
    }

    fn task_config_schema(&self) -> Vec<ConfigField> {
        config::task_config_schema()
    }

    async fn set_config(
        &self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), DriverError> {
        let mut settings =
            Settings::from_json(config).map_err(|e| DriverError::InvalidArgument(e.to_string()))?;
        settings.node_id = agent.node_id.clone();
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings.clone();
        if !agent.data_dir.is_empty() {
            *self.data_dir.write().unwrap_or_else(|p| p.into_inner()) =
                PathBuf::from(&agent.data_dir);
        }
        self.engine.start(settings).await;
        if let Ok(docker) = self.engine.client() {
            self.adopt_networks(&docker).await;
            self.restart_reaper(docker);
        }
        Ok(())
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            send_signals: true,
            exec: true,
            fs_isolation: "image".into(),
            must_create_network: true,
            mounts: true,
        }
    }

    fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> {
        self.engine.fingerprint()
    }

    fn task_events(&self) -> Option<broadcast::Receiver<TaskEvent>> {
        Some(self.events.subscribe())
    }

    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError> {
        if self.tasks.contains(&task.id) {
            return Err(DriverError::FailedPrecondition(format!(
                "task {:?} is already running",
                task.id
            )));
        }
        let docker = self.client()?;
        let (state, pid) = self.start_container(&docker, &task).await?;
        let handle = TaskHandle {
            version: HANDLE_VERSION,
            config: Some(task.clone()),
            driver_state: serde_json::to_vec(&state)
                .map_err(|e| DriverError::Internal(e.to_string()))?,
        };
        let events = Emitter::new(self.events.clone(), &task);
        self.images(&docker).acquire(&state.image);
        let logs = self.follow_logs(&docker, &task, &state.container_id);
        self.tasks
            .track(self.engine.clone(), task, state, events, logs);
        Ok(StartTaskResponse {
            handle: Some(handle),
            pid,
        })
    }

    async fn wait_task(&self, task_id: &str) -> Result<ExitResult, DriverError> {
        let mut rx = self.tasks.get(task_id)?.exit.clone();
        let exit = rx.wait_for(|e| e.is_some()).await.map_err(|_| {
            DriverError::Internal(format!("task {task_id:?} was forgotten while waited for"))
        })?;
        Ok(exit.clone().unwrap_or_default())
    }

    async fn stop_task(
        &self,
        task_id: &str,
        signal: &str,
        timeout: Duration,
    ) -> Result<(), DriverError> {
        let entry = self.tasks.get(task_id)?;
        if entry.exit.borrow().is_some() {
            return Ok(());
        }
        let id = entry.state.container_id.clone();
        self.kill(&id, signal).await?;
        if self.wait_exit(task_id, timeout).await.is_some() {
            return Ok(());
        }
        tracing::info!(task = %task_id, "still running {timeout:?} after {signal}; killing it");
        self.kill(&id, "SIGKILL").await?;
        self.wait_exit(task_id, Duration::from_secs(30)).await;
        Ok(())
    }

    async fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        let entry = self.tasks.get(task_id)?;
        let running = entry.exit.borrow().is_none();
        if running && !force {
            return Err(DriverError::FailedPrecondition(format!(
                "task {task_id:?} is still running (destroy it with force)"
            )));
        }
        let id = entry.state.container_id.clone();
        if self.settings().gc.container {
            let docker = self.client()?;
            let rm = RemoveContainerOptionsBuilder::default()
                .force(true)
                .v(true)
                .build();
            match docker.remove_container(&id, Some(rm)).await {
                Ok(()) => {}
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(bollard_err("cannot remove the container", e)),
            }
        } else if running {
            self.kill(&id, "SIGKILL").await?;
        }
        self.tasks.remove(task_id);
        if let Some(images) = self.images.get() {
            images.release(&entry.state.image);
        }
        let cursor = self.cursor_path(task_id);
        let _ = tokio::task::spawn_blocking(move || logs::forget(&cursor)).await;
        Ok(())
    }

    async fn inspect_task(&self, task_id: &str) -> Result<InspectTaskResponse, DriverError> {
        let entry = self.tasks.get(task_id)?;
        let docker = self.client()?;
        let info = docker
            .inspect_container(&entry.state.container_id, None)
            .await
            .map_err(|e| bollard_err("cannot inspect the container", e))?;
        let st = info.state.clone().unwrap_or_default();
        let result = exit_of(&info);
        Ok(InspectTaskResponse {
            task_id: task_id.into(),
            state: if result.is_some() {
                "exited"
            } else {
                "running"
            }
            .into(),
            pid: st.pid.unwrap_or(0),
            started_at_unix_nanos: unix_nanos(st.started_at.as_deref().unwrap_or("")),
            result,
        })
    }

    async fn signal_task(&self, task_id: &str, signal: &str) -> Result<(), DriverError> {
        let entry = self.tasks.get(task_id)?;
        if entry.exit.borrow().is_some() {
            return Err(DriverError::FailedPrecondition(format!(
                "task {task_id:?} has exited"
            )));
        }
        self.kill(&entry.state.container_id, signal).await
    }

    async fn recover_task(&self, handle: TaskHandle) -> Result<(), DriverError> {
        let task = handle
            .config
            .ok_or_else(|| DriverError::InvalidArgument("the handle has no task config".into()))?;
        if self.tasks.contains(&task.id) {
            return Ok(());
        }
        let state: DriverState = serde_json::from_slice(&handle.driver_state).map_err(|e| {
            DriverError::InvalidArgument(format!(
                "the handle's driver state is not a docker task's: {e}"
            ))
        })?;
        let docker = self.client()?;
        let info = docker
            .inspect_container(&state.container_id, None)
            .await
            .map_err(|e| {
                if not_found(&e) {
                    DriverError::TaskNotFound(format!(
                        "{} (its container {} is gone)",
                        task.id, state.container_id
                    ))
                } else {
                    bollard_err("cannot inspect the task's container", e)
                }
            })?;
        let labelled = info
            .config
            .as_ref()
            .and_then(|c| c.labels.as_ref())
            .and_then(|l| l.get(container::LABEL_TASK_ID))
            .is_some_and(|t| *t == task.id);
        if !labelled {
            return Err(DriverError::InvalidArgument(format!(
                "container {} is not task {:?}'s",
                state.container_id, task.id
            )));
        }
        tracing::info!(task = %task.id, container = %state.container_id, running = exit_of(&info).is_none(), "task recovered");
        let events = Emitter::new(self.events.clone(), &task);
        self.images(&docker).acquire(&state.image);
        let logs = self.follow_logs(&docker, &task, &state.container_id);
        self.tasks
            .track(self.engine.clone(), task, state, events, logs);
        Ok(())
    }

    async fn task_stats(&self, task_id: &str) -> Result<TaskStatsResponse, DriverError> {
        let entry = self.tasks.get(task_id)?;
        let docker = self.client()?;
        crate::stats::sample(&docker, &entry.state.container_id)
            .await
            .map_err(stats_err)
    }

    async fn create_network(
        &self,
        alloc_id: &str,
        hostname: &str,
    ) -> Result<CreateNetworkResponse, DriverError> {
        let docker = self.client()?;
        let events = Emitter::new(
            self.events.clone(),
            &TaskConfig {
                alloc_id: alloc_id.to_string(),
                ..Default::default()
            },
        );
        let made = network::create(&docker, alloc_id, hostname, &self.settings(), &events)
            .await
            .map_err(network_err)?;
        self.keep_network(&docker, alloc_id, made.infra);
        Ok(CreateNetworkResponse {
            namespace_path: made.namespace_path,
            created: made.created,
        })
    }

    async fn destroy_network(
        &self,
        alloc_id: &str,
        _namespace_path: &str,
    ) -> Result<(), DriverError> {
        let docker = self.client()?;
        network::destroy(&docker, alloc_id)
            .await
            .map_err(network_err)?;
        if let Some(infra) = self.networks.remove(alloc_id) {
            self.images(&docker).release(&infra.image);
        }
        Ok(())
    }

    async fn exec_task(
        &self,
        setup: ExecTaskSetup,
        input: mpsc::Receiver<exec_task_request::Msg>,
        output: mpsc::Sender<exec_task_response::Msg>,
    ) -> Result<ExitResult, DriverError> {
        let entry = self.tasks.get(&setup.task_id)?;
        let docker = self.client()?;
        let container = entry.state.container_id.clone();
        crate::exec::run(&docker, &container, setup, input, output)
            .await
            .map_err(exec_err)
    }
}

#[cfg(test)]
mod tests {
    use super::file_name_of;

    #[test]
    fn task_ids_become_distinct_plain_file_names() {
        assert_eq!(file_name_of("a1b2/web/0"), "a1b2%2Fweb%2F0");
        assert_eq!(file_name_of("../x"), "%2E.%2Fx");
        assert_ne!(file_name_of("a/b"), file_name_of("a%2Fb"));
        assert!(!file_name_of("..").contains('/'));
    }
}
