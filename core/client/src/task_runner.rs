//! The task runner: starts a task through its driver, waits for it, applies the restart
//! policy, stops it when asked, and — when the driver plugin dies — reattaches to the task
//! through its handle instead of starting it again.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::{
    Allocation, Job, RestartMode, RestartPolicy, Task, TaskLifecycle, TaskState, now_nanos,
};
use drover_plugin_host::HostError;
use drover_proto::driver::driver_client::DriverClient;
use drover_proto::driver::{
    DestroyTaskRequest, ExitResult, PortMapping, RecoverTaskRequest, Resources, SignalTaskRequest,
    StartTaskRequest, StopTaskRequest, TaskConfig, TaskHandle, WaitTaskRequest,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tonic::transport::Channel;

use crate::Client;
use crate::env::{PathView, TaskDirs, interpolate, interpolate_json, task_env, view_from_image};
use crate::state::LocalTask;
use crate::task_hooks::{Action, HookError, TaskHook, TaskHookCtx};
use crate::task_status::{TaskMsg, TaskStatus, event};

type Driver = DriverClient<Channel>;

/// Driver events waiting for a task runner beyond which more are dropped.
pub const DRIVER_EVENTS_WAITING: usize = 32;

/// Requests to a running task from `alloc restart` and `alloc signal`.
pub enum Control {
    Restart(oneshot::Sender<Result<(), String>>),
    Signal(String, oneshot::Sender<Result<(), String>>),
    /// A group service check's `check_restart`: as a task's own check's (the reason).
    RestartUnhealthy(String),
}

pub struct TaskCtx {
    pub client: Client,
    pub alloc: Allocation,
    pub job: Job,
    pub task: Task,
    pub restart: RestartPolicy,
    pub dirs: TaskDirs,
    /// The allocation's own network the task joins (None: the host's).
    pub network: Option<crate::alloc_hooks::AllocNetwork>,
    pub stop: watch::Receiver<Option<String>>,
    pub tx: mpsc::Sender<TaskMsg>,
    pub restored: Option<LocalTask>,
    /// The group's shutdown_delay (the task's own applies when longer).
    pub group_shutdown_delay: Duration,
    pub control: Option<mpsc::Receiver<Control>>,
    /// The task's driver's events ("Driver" task events), while the runner lives.
    pub driver_events: Option<mpsc::Receiver<drover_model::TaskEvent>>,
    /// The allocation as the server last changed it (for the hooks' `update`).
    pub alloc_updates: watch::Receiver<Allocation>,
    /// The task's workload identities, shared by its hooks.
    pub identities: crate::identities::TaskIdentities,
}

/// Why the driver did not start (or take back) the task.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error(transparent)]
    Plugin(#[from] HostError),
    /// The driver's answer (a gRPC status's message).
    #[error("{0}")]
    Driver(String),
    #[error(
        "the {0} driver cannot mount volumes: volume_mount needs a driver with filesystem isolation (exec, docker)"
    )]
    CannotMount(String),
    #[error("driver returned no task handle")]
    NoHandle,
}

impl From<tonic::Status> for StartError {
    fn from(s: tonic::Status) -> StartError {
        StartError::Driver(s.message().to_string())
    }
}

/// What the task's hooks see of it, with `env` as its environment so far.
fn hook_ctx(c: &TaskCtx, env: BTreeMap<String, String>) -> TaskHookCtx<'_> {
    TaskHookCtx {
        client: &c.client,
        alloc: &c.alloc,
        job: &c.job,
        task: &c.task,
        dirs: &c.dirs,
        stop: &c.stop,
        identities: &c.identities,
        env,
        netns: c
            .network
            .as_ref()
            .map(|n| n.ns_path.as_str())
            .filter(|p| !p.is_empty()),
    }
}

/// The allocation's ports as the driver sees them.
fn port_mappings(alloc: &Allocation) -> Vec<PortMapping> {
    alloc
        .shared_resources
        .ports
        .iter()
        .map(|p| PortMapping {
            label: p.label.clone(),
            value: i32::from(p.value),
            to: p.to,
            host_ip: p.host_ip.clone(),
        })
        .collect()
}

/// The core ids the scheduler reserved for task `task` (empty from older servers).
fn reserved_core_ids(alloc: &Allocation, task: &str) -> Vec<u32> {
    alloc
        .task_resources
        .get(task)
        .map(|r| r.reserved_cores.iter().map(|&c| u32::from(c)).collect())
        .unwrap_or_default()
}

/// The next message on an optional channel; never, without one.
async fn recv<T>(rx: &mut Option<mpsc::Receiver<T>>) -> Option<T> {
    match rx.as_mut() {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The driver plugin to wait on the task with, or why not now.
enum Connected {
    Driver(Driver),
    /// Not yet: try again.
    Retry,
    /// The task cannot be tracked any more.
    Lost(String),
}

/// How a wait for the task ended.
enum Waited {
    Exited(ExitResult),
    /// The task could not be tracked any more (its shim is gone).
    Lost(String),
}

struct Runner {
    ctx: TaskCtx,
    /// The task's state, reported to the allocation runner.
    status: TaskStatus,
    handle: Option<TaskHandle>,
    restarts: Vec<Instant>,
    /// `alloc restart` asked for a restart that does not count against the policy.
    restart_requested: bool,
    /// A check's `check_restart` stopped the task: why, for the restart policy.
    unhealthy: Option<String>,
    /// The task's hooks, in order (see [`crate::task_hooks::for_task`]).
    hooks: Vec<Box<dyn TaskHook>>,
    /// Where the task sees its directories (its driver's `fs_isolation`), learnt at start.
    view: PathView,
    /// What the hooks running beside the task ask of it (see [`Action`]).
    hook_actions: Option<mpsc::Receiver<Action>>,
}

impl Runner {
    async fn emit(&mut self, e: drover_model::TaskEvent) {
        self.status.emit(e).await;
    }

    async fn set_handle(&mut self, h: Option<TaskHandle>) {
        let bytes = h.as_ref().map(|h| h.encode_to_vec());
        self.handle = h;
        self.status.send_handle(bytes).await;
    }

    fn stop_reason(&self) -> Option<String> {
        self.ctx.stop.borrow().clone()
    }

    /// The task runner ends: the hooks stop, the task is dead.
    async fn finish(&mut self, failed: bool) {
        for h in self.hooks.iter_mut() {
            h.stop();
        }
        self.hook_actions = None;
        self.status.state.state = TaskLifecycle::Dead;
        self.status.state.failed = failed;
        self.status.state.finished_at = now_nanos();
        self.set_handle(None).await;
        self.status.send().await;
    }

    /// The task's environment: [`Self::base_env`], then what its hooks add (`env = true`
    /// templates).
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = self.base_env(self.view);
        for h in &self.hooks {
            if let Some(add) = h.env() {
                env.extend(add.clone());
            }
        }
        env
    }

    /// What the hooks fetched for `${...}` interpolation that is not environment
    /// (`secret.<name>.<key>`).
    fn interpolation(&self) -> BTreeMap<String, String> {
        let mut vars = BTreeMap::new();
        for h in &self.hooks {
            if let Some(add) = h.interpolation() {
                vars.extend(add.clone());
            }
        }
        vars
    }

    /// What hook `upto` sees: the environment with what the hooks before it add, and the
    /// names they fetched for interpolation.
    fn hook_env(&self, upto: usize) -> BTreeMap<String, String> {
        let mut env = self.base_env(PathView::Host);
        for h in &self.hooks[..upto] {
            if let Some(add) = h.env() {
                env.extend(add.clone());
            }
        }
        env.extend(self.interpolation());
        env
    }

    /// `NOMAD_*`/`DROVER_*`, then the task's own `env` block interpolated (with the secrets
    /// fetched so far): what the first hook sees (with `PathView::Host`: hooks work on the
    /// host), and the start of what the task sees (with its driver's view).
    fn base_env(&self, view: PathView) -> BTreeMap<String, String> {
        let c = &self.ctx;
        let cfg = &c.client.inner.config;
        let host_ip = c.client.host_ip();
        let mut env = task_env(
            &c.job,
            &c.alloc,
            &c.task,
            &c.dirs,
            &cfg.region,
            &cfg.datacenter,
            host_ip,
        );
        if view == PathView::Image {
            view_from_image(&mut env);
        }
        let mut base = env.clone();
        base.extend(self.interpolation());
        for (k, v) in &c.task.env {
            env.insert(k.clone(), interpolate(v, &base));
        }
        env
    }

    /// Stops the running task so that it starts again, without counting against the restart
    /// policy (`alloc restart`, a re-rendered template).
    async fn stop_to_restart(&mut self, driver: &Driver, task_id: &str, why: &str) {
        self.restart_requested = true;
        self.emit(event("Restart Signaled", why)).await;
        self.send_stop(driver, task_id, Duration::ZERO);
    }

    /// Asks the driver, after `delay` and without waiting, to stop the task: its
    /// `kill_signal`, then a kill after `kill_timeout`.
    fn send_stop(&self, driver: &Driver, task_id: &str, delay: Duration) {
        let req = StopTaskRequest {
            task_id: task_id.to_string(),
            signal: self.ctx.task.kill_signal.clone(),
            timeout_ms: kill_timeout(
                self.ctx.task.kill_timeout,
                self.ctx.client.inner.config.max_kill_timeout,
            )
            .as_millis() as u64,
        };
        let mut d = driver.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = d.stop_task(req).await {
                tracing::warn!(error = %e.message(), "stopping the task failed");
            }
        });
    }

    /// Runs every hook's prestart, in order; the first failure stops. Each hook sees the
    /// environment with what the hooks before it add.
    async fn prestart_hooks(&mut self) -> Result<(), HookError> {
        for i in 0..self.hooks.len() {
            let env = self.hook_env(i);
            self.hooks[i]
                .prestart(&hook_ctx(&self.ctx, env), &mut self.status)
                .await?;
        }
        Ok(())
    }

    /// Runs every hook's poststart: the task runs.
    fn poststart_hooks(&mut self) {
        self.exited_hooks();
        let (tx, rx) = mpsc::channel(4);
        for i in 0..self.hooks.len() {
            let env = self.hook_env(i);
            self.hooks[i].poststart(&hook_ctx(&self.ctx, env), &tx);
        }
        self.hook_actions = Some(rx);
    }

    /// Runs every hook's exited: the task no longer runs.
    fn exited_hooks(&mut self) {
        for h in self.hooks.iter_mut() {
            h.exited();
        }
        self.hook_actions = None;
    }

    /// The config the driver starts the task with: the task's own, then what each hook
    /// fills in (log paths, mounts).
    fn task_config(&self, attempt: u32) -> TaskConfig {
        let c = &self.ctx;
        let env = self.env();
        let mut vars = env.clone();
        vars.extend(self.interpolation());
        let config = interpolate_json(&serde_json::Value::Object(c.task.config.clone()), &vars);
        let mut cfg = TaskConfig {
            id: format!("{}/{}/{}", c.alloc.id, c.task.name, attempt),
            name: c.task.name.clone(),
            alloc_id: c.alloc.id.clone(),
            job_name: c.job.name.clone(),
            group_name: c.alloc.task_group.clone(),
            driver_config_json: serde_json::to_vec(&config).expect("config serializes"),
            env: env.clone().into_iter().collect(),
            resources: Some(Resources {
                cpu_mhz: c.task.resources.cpu as i64,
                memory_mb: c.task.resources.memory_mb as i64,
                memory_max_mb: c.task.resources.memory_max_mb as i64,
                cores: c.task.resources.cores,
                core_ids: reserved_core_ids(&c.alloc, &c.task.name),
            }),
            user: c.task.user.clone(),
            alloc_dir: c.dirs.alloc_dir.clone(),
            task_dir: c.dirs.task_dir.clone(),
            ports: port_mappings(&c.alloc),
            network_ns_path: c
                .network
                .as_ref()
                .map(|n| n.ns_path.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        let ctx = hook_ctx(c, env);
        for h in &self.hooks {
            h.configure(&ctx, &mut cfg);
        }
        cfg
    }

    /// Waits for the task to exit, stopping it if asked, and reattaching through the handle
    /// if the plugin dies meanwhile.
    async fn wait(&mut self) -> Waited {
        let handle = self.handle.clone().expect("waiting on a started task");
        let task_id = handle
            .config
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let mut stop_sent = false;
        let mut failures = 0u32;
        loop {
            let driver = match self.connect(&handle, &mut failures).await {
                Connected::Driver(d) => d,
                Connected::Retry => continue,
                Connected::Lost(why) => return Waited::Lost(why),
            };
            match self.wait_exit(&driver, &task_id, &mut stop_sent).await {
                Ok(r) => return Waited::Exited(r),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e.message(), "lost contact with the driver plugin while waiting; reattaching");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// The task's driver plugin, for waiting on the task; after `failures` (a plugin that
    /// died) the task is handed to the new plugin instance first.
    async fn connect(&mut self, handle: &TaskHandle, failures: &mut u32) -> Connected {
        let driver_name = &self.ctx.task.driver;
        let mut driver = match self.ctx.client.host().driver(driver_name).await {
            Ok(d) => d,
            Err(e) => {
                *failures += 1;
                tracing::warn!(error = %e, "driver plugin unavailable; retrying");
                if *failures > 30 {
                    return Connected::Lost(format!(
                        "driver plugin {driver_name} unavailable: {e}"
                    ));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                return Connected::Retry;
            }
        };
        if *failures == 0 {
            return Connected::Driver(driver);
        }
        // A new plugin instance: hand it the task back.
        let recovered = driver
            .recover_task(RecoverTaskRequest {
                handle: Some(handle.clone()),
            })
            .await;
        if let Err(e) = recovered {
            tracing::warn!(error = %e.message(), "reattaching to the task failed");
            if e.code() == tonic::Code::NotFound
                || e.code() == tonic::Code::InvalidArgument
                || *failures > 30
            {
                return Connected::Lost(format!("task could not be reattached: {}", e.message()));
            }
            *failures += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Connected::Retry;
        }
        tracing::info!("reattached to the running task");
        self.emit(event(
            "Reattached",
            "task reattached after its driver plugin restarted",
        ))
        .await;
        Connected::Driver(driver)
    }

    /// One WaitTask call to `driver`, serving meanwhile the stop signal, `alloc restart`/
    /// `alloc signal`, the hooks' actions and the server's allocation updates. An error is
    /// the plugin's: the caller reattaches.
    async fn wait_exit(
        &mut self,
        driver: &Driver,
        task_id: &str,
        stop_sent: &mut bool,
    ) -> Result<ExitResult, tonic::Status> {
        let mut waiter = driver.clone();
        let wait = waiter.wait_task(WaitTaskRequest {
            task_id: task_id.to_string(),
        });
        tokio::pin!(wait);
        let mut stop = self.ctx.stop.clone();
        let mut updates = self.ctx.alloc_updates.clone();
        let mut control = self.ctx.control.take();
        let mut actions = self.hook_actions.take();
        let mut events = self.ctx.driver_events.take();
        let outcome = loop {
            tokio::select! {
                r = &mut wait => break r,
                Some(e) = recv(&mut events) => self.emit(e).await,
                Some(action) = recv(&mut actions) => {
                    self.on_action(action, driver, task_id, stop_sent).await;
                }
                Some(c) = recv(&mut control) => {
                    self.on_control(c, driver, task_id, stop_sent).await;
                }
                _ = stop.changed(), if !*stop_sent => {
                    let reason = stop.borrow().clone();
                    if let Some(reason) = reason {
                        *stop_sent = true;
                        self.stop_now(driver, task_id, &reason).await;
                    }
                }
                Ok(()) = updates.changed() => {
                    let alloc = updates.borrow_and_update().clone();
                    for h in self.hooks.iter_mut() {
                        h.update(&alloc);
                    }
                }
            }
        };
        self.ctx.control = control;
        self.ctx.driver_events = events;
        self.ctx.alloc_updates = updates;
        self.hook_actions = actions;
        outcome.map(|r| r.into_inner().result.unwrap_or_default())
    }

    /// What a hook running beside the task asks for.
    async fn on_action(
        &mut self,
        action: Action,
        driver: &Driver,
        task_id: &str,
        stop_sent: &mut bool,
    ) {
        match action {
            Action::Signal { signal, why } => {
                self.emit(event("Signaling", &why)).await;
                let req = SignalTaskRequest {
                    task_id: task_id.to_string(),
                    signal,
                };
                if let Err(e) = driver.clone().signal_task(req).await {
                    tracing::warn!(error = %e.message(), "signalling the task for a hook failed");
                }
            }
            Action::Restart { why } if !*stop_sent => {
                *stop_sent = true;
                self.stop_to_restart(driver, task_id, &why).await;
            }
            Action::RestartUnhealthy { why } if !*stop_sent => {
                *stop_sent = true;
                self.emit(event("Restart Signaled", &why)).await;
                self.unhealthy = Some(why);
                self.send_stop(driver, task_id, Duration::ZERO);
            }
            Action::Restart { .. } | Action::RestartUnhealthy { .. } => {}
        }
    }

    /// `alloc signal` and `alloc restart`.
    async fn on_control(
        &mut self,
        c: Control,
        driver: &Driver,
        task_id: &str,
        stop_sent: &mut bool,
    ) {
        match c {
            Control::Signal(sig, reply) => {
                self.emit(event("Signaling", &format!("Task being sent signal {sig}")))
                    .await;
                let req = SignalTaskRequest {
                    task_id: task_id.to_string(),
                    signal: sig,
                };
                let r = driver
                    .clone()
                    .signal_task(req)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.message().to_string());
                let _ = reply.send(r);
            }
            Control::Restart(reply) => {
                if !*stop_sent {
                    *stop_sent = true;
                    self.stop_to_restart(driver, task_id, "User requested the task restart")
                        .await;
                }
                let _ = reply.send(Ok(()));
            }
            Control::RestartUnhealthy(why) => {
                self.on_action(Action::RestartUnhealthy { why }, driver, task_id, stop_sent)
                    .await;
            }
        }
    }

    /// The task must stop: after its shutdown_delay (time for clients to stop sending it
    /// work), its kill_signal.
    async fn stop_now(&mut self, driver: &Driver, task_id: &str, reason: &str) {
        // Nomad's PreKilling: clients stop finding the task (its services leave the
        // catalog) before the delay starts.
        for h in self.hooks.iter_mut() {
            h.prekill().await;
        }
        let delay = self
            .ctx
            .task
            .shutdown_delay
            .max(self.ctx.group_shutdown_delay);
        let msg = if delay.is_zero() {
            format!("Sent interrupt: {reason}")
        } else {
            format!("Sent interrupt after a shutdown delay of {delay:?}: {reason}")
        };
        self.emit(event("Killing", &msg)).await;
        self.send_stop(driver, task_id, delay);
    }

    /// Whether the restart policy allows another start; sleeps the delay if so.
    async fn may_restart(&mut self, why: &str) -> bool {
        let p = self.ctx.restart.clone();
        let now = Instant::now();
        self.restarts
            .retain(|t| now.duration_since(*t) < p.interval);
        if self.restarts.len() as u32 >= p.attempts {
            match p.mode {
                RestartMode::Fail => {
                    let msg = format!(
                        "Exceeded allowed attempts {} in interval {:?} and mode is \"fail\"",
                        p.attempts, p.interval
                    );
                    let mut e = event("Not Restarting", &msg);
                    e.fails_task = true;
                    self.emit(e).await;
                    return false;
                }
                RestartMode::Delay => {
                    let oldest = self.restarts.first().copied().unwrap_or(now);
                    let wait = p.interval.saturating_sub(now.duration_since(oldest));
                    self.emit(event(
                        "Restarting",
                        &format!("Exceeded allowed attempts, applying a delay of {wait:?}"),
                    ))
                    .await;
                    if !self.sleep_unless_stopped(wait).await {
                        return false;
                    }
                    self.restarts.clear();
                }
            }
        } else {
            self.emit(event(
                "Restarting",
                &format!("{why}; restarting in {:?}", p.delay),
            ))
            .await;
            if !self.sleep_unless_stopped(p.delay).await {
                return false;
            }
        }
        self.restarts.push(Instant::now());
        self.status.state.restarts += 1;
        true
    }

    async fn sleep_unless_stopped(&mut self, d: Duration) -> bool {
        let mut stop = self.ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stop_reason().is_none(),
            _ = stop.wait_for(|s| s.is_some()) => false,
        }
    }

    /// Starts the task through its driver (one that can mount, when the hooks ask for mounts).
    async fn start(&mut self) -> Result<(), StartError> {
        let host = self.ctx.client.host();
        let caps = host.capabilities(&self.ctx.task.driver).await?;
        self.view = PathView::of_fs_isolation(&caps.fs_isolation);
        let mut cfg = self.task_config(self.status.state.restarts);
        // The allocation's hosts file and resolv.conf, for drivers that can mount them
        // (raw_exec tasks see the host's).
        if caps.mounts
            && let Some(net) = &self.ctx.network
        {
            cfg.mounts.extend(net.mounts.iter().cloned());
        }
        let mut driver = self.ctx.client.host().driver(&self.ctx.task.driver).await?;
        if !cfg.mounts.is_empty() && !caps.mounts {
            return Err(StartError::CannotMount(self.ctx.task.driver.clone()));
        }
        // The driver reports progress (an image pull) while it starts the task.
        let started = driver.start_task(StartTaskRequest { task: Some(cfg) });
        tokio::pin!(started);
        let mut events = self.ctx.driver_events.take();
        let resp = loop {
            tokio::select! {
                r = &mut started => break r,
                Some(e) = recv(&mut events) => self.status.emit(e).await,
            }
        };
        self.ctx.driver_events = events;
        let resp = resp?.into_inner();
        let handle = resp.handle.ok_or(StartError::NoHandle)?;
        self.set_handle(Some(handle)).await;
        self.status.state.state = TaskLifecycle::Running;
        self.status.state.started_at = now_nanos();
        self.emit(event("Started", "Task started by client")).await;
        Ok(())
    }

    /// Asks the driver to forget the exited task and remove what it keeps of it (a docker
    /// container). A plugin relaunched since the task ran does not know it: it is handed the
    /// task back first. A plugin being relaunched is waited for, a few times.
    async fn destroy(&self) {
        let Some(h) = &self.handle else { return };
        let task_id = h.config.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        let req = DestroyTaskRequest {
            task_id,
            force: true,
        };
        for attempt in 0..DESTROY_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let mut d = match self.ctx.client.host().driver(&self.ctx.task.driver).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(error = %e, "destroying the task: driver plugin unavailable");
                    continue;
                }
            };
            let e = match d.destroy_task(req.clone()).await {
                Ok(_) => return,
                Err(e) => e,
            };
            if e.code() != tonic::Code::NotFound {
                tracing::warn!(error = %e.message(), "destroying the task failed");
                continue;
            }
            let handle = Some(h.clone());
            if let Err(e) = d.recover_task(RecoverTaskRequest { handle }).await {
                // Nothing of the task is left to the driver (or it cannot be had back).
                tracing::debug!(error = %e.message(), "the driver has nothing left of the task");
                return;
            }
        }
    }
}

/// How many times an exited task's destroy is tried (a plugin relaunching meanwhile).
const DESTROY_ATTEMPTS: u32 = 5;

/// What the task runner does next.
enum Next {
    /// Start the task (again).
    Start,
    /// Wait for the running task.
    Wait,
    /// The task is done: its runner ends.
    Done,
}

pub async fn run(ctx: TaskCtx) {
    let restored = ctx.restored.clone();
    let mut r = Runner {
        status: TaskStatus::new(ctx.task.name.clone(), TaskState::default(), ctx.tx.clone()),
        handle: None,
        restarts: Vec::new(),
        restart_requested: false,
        unhealthy: None,
        hooks: crate::task_hooks::for_task(&ctx.task),
        view: PathView::Host,
        hook_actions: None,
        ctx,
    };
    let mut resume = false;
    if let Some(local) = restored {
        r.status.state = local.state;
        if let Some(bytes) = local.handle {
            match TaskHandle::decode(bytes.as_slice()) {
                Ok(h) => {
                    r.handle = Some(h);
                    resume = true;
                }
                Err(e) => tracing::error!(error = %e, "stored task handle is corrupt"),
            }
        }
    }
    let mut next = if resume {
        r.reattach().await
    } else {
        r.emit(event("Received", "Task received by client")).await;
        Next::Start
    };
    loop {
        next = match next {
            Next::Start => r.start_once().await,
            Next::Wait => {
                let waited = r.wait().await;
                // The task is no longer running: nothing to watch for until it starts again.
                r.exited_hooks();
                r.after_exit(waited).await
            }
            Next::Done => return,
        };
    }
}

impl Runner {
    /// The agent restarted: hands the running task to the (new) plugin, to wait again.
    async fn reattach(&mut self) -> Next {
        let handle = self.handle.clone().expect("resuming with a handle");
        let recovered: Result<_, StartError> =
            match self.ctx.client.host().driver(&self.ctx.task.driver).await {
                Ok(mut d) => d
                    .recover_task(RecoverTaskRequest {
                        handle: Some(handle),
                    })
                    .await
                    .map_err(StartError::from),
                Err(e) => Err(e.into()),
            };
        if let Err(e) = recovered {
            self.emit(event(
                "Task Lost",
                &format!("task could not be reattached after the agent restarted: {e}"),
            ))
            .await;
            self.finish(true).await;
            return Next::Done;
        }
        tracing::info!("reattached to the task after an agent restart");
        self.poststart_hooks();
        self.emit(event(
            "Reattached",
            "task reattached after the agent restarted",
        ))
        .await;
        Next::Wait
    }

    /// One attempt at starting the task: unless it was asked to stop, the prestart hooks,
    /// the driver's StartTask, the poststart hooks; a failure goes to the restart policy.
    async fn start_once(&mut self) -> Next {
        if let Some(reason) = self.stop_reason() {
            self.emit(event("Killed", &format!("Task not started: {reason}")))
                .await;
            self.finish(false).await;
            return Next::Done;
        }
        match self.prestart_hooks().await {
            Ok(()) => {}
            Err(HookError::Stopped) => return Next::Start, // the check above ends the task
            Err(HookError::Failed {
                event,
                restart_reason,
            }) => {
                // Nomad treats it as a task failure the restart policy may retry.
                self.emit(event).await;
                if self.may_restart(restart_reason).await {
                    return Next::Start;
                }
                let failed = self.stop_reason().is_none();
                self.finish(failed).await;
                return Next::Done;
            }
            Err(HookError::Unrecoverable { event }) => {
                self.emit(event).await;
                self.finish(true).await;
                return Next::Done;
            }
        }
        if let Err(e) = self.start().await {
            let mut ev = event("Driver Failure", &e.to_string());
            ev.fails_task = false;
            self.emit(ev).await;
            if self.may_restart("Driver failure").await {
                return Next::Start;
            }
            self.finish(true).await;
            return Next::Done;
        }
        self.poststart_hooks();
        Next::Wait
    }

    /// What follows the task's exit: the end (killed, lost, done, out of restarts) or
    /// another start.
    async fn after_exit(&mut self, waited: Waited) -> Next {
        let killed = self.stop_reason().is_some();
        let res = match waited {
            Waited::Lost(msg) => {
                self.emit(event("Task Lost", &msg)).await;
                self.finish(true).await;
                return Next::Done;
            }
            Waited::Exited(res) => res,
        };
        let mut ev = event(
            "Terminated",
            &format!(
                "Exit Code: {}{}{}",
                res.exit_code,
                if res.signal != 0 {
                    format!(", Signal: {}", res.signal)
                } else {
                    String::new()
                },
                if res.oom_killed { ", OOM Killed" } else { "" }
            ),
        );
        ev.exit_code = res.exit_code;
        ev.signal = res.signal;
        ev.oom_killed = res.oom_killed;
        self.emit(ev).await;
        self.destroy().await;
        if killed {
            self.emit(event("Killed", "Task successfully killed")).await;
            self.finish(false).await;
            return Next::Done;
        }
        if std::mem::take(&mut self.restart_requested) {
            // A user's (or a template's) restart does not count against the restart policy.
            self.status.state.restarts += 1;
            self.emit(event("Restarting", "Task restarting as requested"))
                .await;
            return Next::Start;
        }
        if let Some(why) = self.unhealthy.take() {
            // Nomad's check_restart: a failure the restart policy decides on.
            if self.may_restart(&why).await {
                return Next::Start;
            }
            let failed = self.stop_reason().is_none();
            self.finish(failed).await;
            return Next::Done;
        }
        let success = res.exit_code == 0 && res.signal == 0;
        if success && self.ctx.job.job_type.runs_to_completion() {
            self.finish(false).await;
            return Next::Done;
        }
        let why = if success {
            "Task exited".to_string()
        } else {
            format!("Task exited with code {}", res.exit_code)
        };
        if self.may_restart(&why).await {
            Next::Start
        } else {
            // Stopped while waiting to restart is a kill, not a failure.
            let failed = self.stop_reason().is_none();
            self.finish(failed).await;
            Next::Done
        }
    }
}

/// The time a task gets between its kill signal and the kill: its `kill_timeout`, at most the
/// client's `max_kill_timeout` (as Nomad's).
fn kill_timeout(task: Duration, max: Duration) -> Duration {
    task.min(max)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_kill_timeout_is_cut_to_the_clients_max_kill_timeout() {
        let s = std::time::Duration::from_secs;
        assert_eq!(super::kill_timeout(s(5), s(30)), s(5));
        assert_eq!(super::kill_timeout(s(300), s(30)), s(30));
    }

    use super::*;
    use drover_model::AllocatedPort;

    #[test]
    fn the_driver_gets_the_allocations_ports_and_its_tasks_core_ids() {
        let mut a = Allocation::default();
        a.shared_resources.ports = vec![AllocatedPort {
            label: "http".into(),
            value: 25000,
            to: 8080,
            host_ip: "10.0.0.5".into(),
        }];
        a.task_resources.insert(
            "web".into(),
            drover_model::Resources {
                cores: 2,
                reserved_cores: vec![1, 3],
                ..drover_model::Resources::ZERO
            },
        );
        assert_eq!(
            port_mappings(&a),
            vec![PortMapping {
                label: "http".into(),
                value: 25000,
                to: 8080,
                host_ip: "10.0.0.5".into(),
            }]
        );
        assert_eq!(reserved_core_ids(&a, "web"), vec![1, 3]);
        assert!(reserved_core_ids(&a, "sidecar").is_empty());
    }
}
