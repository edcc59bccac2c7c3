//! The task runner: starts a task through its driver, waits for it, applies the restart
//! policy, stops it when asked, and — when the driver plugin dies — reattaches to the task
//! through its handle instead of starting it again.

use std::time::Duration;

use drover_model::{
    Allocation, Job, RestartMode, RestartPolicy, Task, TaskEvent, TaskLifecycle, TaskState,
    now_nanos,
};
use drover_proto::driver::{
    DestroyTaskRequest, ExitResult, LogConfig, RecoverTaskRequest, Resources, SignalTaskRequest,
    StartTaskRequest, StopTaskRequest, TaskConfig, TaskHandle, WaitTaskRequest,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::Client;
use crate::env::{TaskDirs, interpolate, interpolate_json, task_env};
use crate::state::LocalTask;
use crate::task_hooks::{Action, HookError, TaskHook};

/// Requests to a running task from `alloc restart` and `alloc signal`.
pub enum Control {
    Restart(oneshot::Sender<Result<(), String>>),
    Signal(String, oneshot::Sender<Result<(), String>>),
}

pub enum TaskMsg {
    /// The task's driver handle (protobuf bytes), or None once the task is gone.
    Handle(String, Option<Vec<u8>>),
    State(String, TaskState),
}

pub struct TaskCtx {
    pub client: Client,
    pub alloc: Allocation,
    pub job: Job,
    pub task: Task,
    pub restart: RestartPolicy,
    pub dirs: TaskDirs,
    pub stop: watch::Receiver<Option<String>>,
    pub tx: mpsc::Sender<TaskMsg>,
    pub restored: Option<LocalTask>,
    /// The group's shutdown_delay (the task's own applies when longer).
    pub group_shutdown_delay: Duration,
    pub control: Option<mpsc::Receiver<Control>>,
}

pub fn event(kind: &str, message: &str) -> TaskEvent {
    TaskEvent {
        kind: kind.into(),
        time: now_nanos(),
        message: message.into(),
        display_message: message.into(),
        ..Default::default()
    }
}

/// How a wait for the task ended.
enum Waited {
    Exited(ExitResult),
    /// The task could not be tracked any more (its shim is gone).
    Lost(String),
}

pub(crate) struct Runner {
    pub(crate) ctx: TaskCtx,
    state: TaskState,
    handle: Option<TaskHandle>,
    restarts: Vec<Instant>,
    /// `alloc restart` asked for a restart that does not count against the policy.
    restart_requested: bool,
    /// The task's hooks (artifacts, templates), in order.
    hooks: Vec<Box<dyn TaskHook>>,
    /// What the hooks running beside the task ask of it (see [`Action`]).
    hook_actions: Option<mpsc::Receiver<Action>>,
}

impl Runner {
    pub(crate) async fn emit(&mut self, e: TaskEvent) {
        tracing::info!(event = %e.kind, message = %e.message, "task event");
        self.state.events.push(e);
        if self.state.events.len() > 20 {
            self.state.events.remove(0);
        }
        self.send_state().await;
    }

    async fn send_state(&self) {
        let _ = self
            .ctx
            .tx
            .send(TaskMsg::State(
                self.ctx.task.name.clone(),
                self.state.clone(),
            ))
            .await;
    }

    async fn set_handle(&mut self, h: Option<TaskHandle>) {
        let bytes = h.as_ref().map(|h| h.encode_to_vec());
        self.handle = h;
        let _ = self
            .ctx
            .tx
            .send(TaskMsg::Handle(self.ctx.task.name.clone(), bytes))
            .await;
    }

    fn stop_reason(&self) -> Option<String> {
        self.ctx.stop.borrow().clone()
    }

    async fn finish(&mut self, failed: bool) {
        self.exited_hooks();
        self.state.state = TaskLifecycle::Dead;
        self.state.failed = failed;
        self.state.finished_at = now_nanos();
        self.set_handle(None).await;
        self.send_state().await;
    }

    /// The task's `volume_mount`s resolved against its group's volumes and this node's host
    /// volumes.
    fn mounts(&self) -> Result<Vec<drover_proto::driver::Mount>, String> {
        let c = &self.ctx;
        let group = c
            .job
            .group(&c.alloc.task_group)
            .ok_or_else(|| format!("group {:?} is gone from the job", c.alloc.task_group))?;
        c.task
            .volume_mounts
            .iter()
            .map(|m| {
                let req = group.volumes.get(&m.volume).ok_or_else(|| {
                    format!(
                        "volume_mount names volume {:?}, which group {:?} does not declare",
                        m.volume, group.name
                    )
                })?;
                if req.volume_type != "host" {
                    return Err(format!(
                        "volume {:?} is a {} volume; this client mounts host volumes only",
                        m.volume, req.volume_type
                    ));
                }
                let host = c.client.inner.config.host_volumes.get(&req.source).ok_or_else(|| {
                    format!(
                        "host volume {:?} is not configured on this node (client {{ host_volume {:?} {{ path = ... }} }})",
                        req.source, req.source
                    )
                })?;
                if !m.destination.starts_with('/') {
                    return Err(format!(
                        "volume_mount destination {:?} must be an absolute path",
                        m.destination
                    ));
                }
                Ok(drover_proto::driver::Mount {
                    host_path: host.path.clone(),
                    task_path: m.destination.clone(),
                    read_only: m.read_only || req.read_only || host.read_only,
                })
            })
            .collect()
    }

    /// The task's environment: [`Self::base_env`], then what its hooks add (`env = true`
    /// templates).
    pub(crate) fn env(&self) -> std::collections::BTreeMap<String, String> {
        let mut env = self.base_env();
        for h in &self.hooks {
            if let Some(add) = h.env() {
                env.extend(add.clone());
            }
        }
        env
    }

    /// `NOMAD_*`/`DROVER_*`, then the task's own `env` block interpolated: what templates
    /// render with.
    pub(crate) fn base_env(&self) -> std::collections::BTreeMap<String, String> {
        let c = &self.ctx;
        let cfg = &c.client.inner.config;
        let host_ip = cfg
            .http_addr
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("127.0.0.1");
        let mut env = task_env(
            &c.job,
            &c.alloc,
            &c.task,
            &c.dirs,
            &cfg.region,
            &cfg.datacenter,
            host_ip,
        );
        let base = env.clone();
        for (k, v) in &c.task.env {
            env.insert(k.clone(), interpolate(v, &base));
        }
        env
    }

    /// Stops the running task so that it starts again, without counting against the restart
    /// policy (`alloc restart`, a re-rendered template).
    async fn stop_to_restart(
        &mut self,
        driver: &drover_proto::driver::driver_client::DriverClient<tonic::transport::Channel>,
        task_id: &str,
        why: &str,
    ) {
        self.restart_requested = true;
        self.emit(event("Restart Signaled", why)).await;
        self.send_stop(driver, task_id, Duration::ZERO);
    }

    /// Asks the driver, after `delay` and without waiting, to stop the task: its
    /// `kill_signal`, then a kill after `kill_timeout`.
    fn send_stop(
        &self,
        driver: &drover_proto::driver::driver_client::DriverClient<tonic::transport::Channel>,
        task_id: &str,
        delay: Duration,
    ) {
        let req = StopTaskRequest {
            task_id: task_id.to_string(),
            signal: self.ctx.task.kill_signal.clone(),
            timeout_ms: self.ctx.task.kill_timeout.as_millis() as u64,
        };
        let mut d = driver.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if let Err(e) = d.stop_task(req).await {
                tracing::warn!(error = %e.message(), "stopping the task failed");
            }
        });
    }

    /// Runs every hook's prestart, in order; the first failure stops.
    async fn prestart_hooks(&mut self) -> Result<(), HookError> {
        let mut hooks = std::mem::take(&mut self.hooks);
        let mut result = Ok(());
        for h in hooks.iter_mut() {
            result = h.prestart(self).await;
            if result.is_err() {
                break;
            }
        }
        self.hooks = hooks;
        result
    }

    /// Runs every hook's poststart: the task runs.
    fn poststart_hooks(&mut self) {
        self.exited_hooks();
        let (tx, rx) = mpsc::channel(4);
        let mut hooks = std::mem::take(&mut self.hooks);
        for h in hooks.iter_mut() {
            h.poststart(self, &tx);
        }
        self.hooks = hooks;
        self.hook_actions = Some(rx);
    }

    /// Runs every hook's exited: the task no longer runs.
    fn exited_hooks(&mut self) {
        for h in self.hooks.iter_mut() {
            h.exited();
        }
        self.hook_actions = None;
    }

    fn task_config(&self, attempt: u32) -> TaskConfig {
        let c = &self.ctx;
        let env = self.env();
        let config = interpolate_json(&serde_json::Value::Object(c.task.config.clone()), &env);
        let logs_dir = std::path::Path::new(&c.dirs.alloc_dir).join("logs");
        TaskConfig {
            id: format!("{}/{}/{}", c.alloc.id, c.task.name, attempt),
            name: c.task.name.clone(),
            alloc_id: c.alloc.id.clone(),
            job_name: c.job.name.clone(),
            group_name: c.alloc.task_group.clone(),
            driver_config_json: serde_json::to_vec(&config).expect("config serializes"),
            env: env.into_iter().collect(),
            resources: Some(Resources {
                cpu_mhz: c.task.resources.cpu as i64,
                memory_mb: c.task.resources.memory_mb as i64,
                memory_max_mb: c.task.resources.memory_max_mb as i64,
                cores: c.task.resources.cores,
            }),
            user: c.task.user.clone(),
            alloc_dir: c.dirs.alloc_dir.clone(),
            task_dir: c.dirs.task_dir.clone(),
            stdout_path: logs_dir
                .join(format!("{}.stdout", c.task.name))
                .display()
                .to_string(),
            stderr_path: logs_dir
                .join(format!("{}.stderr", c.task.name))
                .display()
                .to_string(),
            logs: Some(LogConfig {
                max_files: c.task.logs.max_files,
                max_file_size_mb: c.task.logs.max_file_size_mb,
            }),
            network_ns_path: String::new(),
            mounts: Vec::new(),
        }
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
        let driver_name = self.ctx.task.driver.clone();
        let mut stop_sent = false;
        let mut failures = 0u32;
        loop {
            let mut driver = match self.ctx.client.host().driver(&driver_name).await {
                Ok(d) => d,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, "driver plugin unavailable; retrying");
                    if failures > 30 {
                        return Waited::Lost(format!(
                            "driver plugin {driver_name} unavailable: {e}"
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if failures > 0 {
                // A new plugin instance: hand it the task back.
                if let Err(e) = driver
                    .recover_task(RecoverTaskRequest {
                        handle: Some(handle.clone()),
                    })
                    .await
                {
                    tracing::warn!(error = %e.message(), "reattaching to the task failed");
                    if e.code() == tonic::Code::NotFound
                        || e.code() == tonic::Code::InvalidArgument
                        || failures > 30
                    {
                        return Waited::Lost(format!(
                            "task could not be reattached: {}",
                            e.message()
                        ));
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
                tracing::info!("reattached to the running task");
                self.emit(event(
                    "Reattached",
                    "task reattached after its driver plugin restarted",
                ))
                .await;
            }
            let mut waiter = driver.clone();
            let wait = waiter.wait_task(WaitTaskRequest {
                task_id: task_id.clone(),
            });
            tokio::pin!(wait);
            let mut stop = self.ctx.stop.clone();
            let mut control = self.ctx.control.take();
            let mut actions = self.hook_actions.take();
            let outcome = loop {
                tokio::select! {
                    r = &mut wait => break r,
                    Some(action) = async { match actions.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                        match action {
                            Action::Signal { signal, why } => {
                                self.emit(event("Signaling", &why)).await;
                                let req = SignalTaskRequest { task_id: task_id.clone(), signal };
                                if let Err(e) = driver.clone().signal_task(req).await {
                                    tracing::warn!(error = %e.message(), "signalling the task for a hook failed");
                                }
                            }
                            Action::Restart { why } if !stop_sent => {
                                stop_sent = true;
                                self.stop_to_restart(&driver, &task_id, &why).await;
                            }
                            Action::Restart { .. } => {}
                        }
                    }
                    Some(c) = async { match control.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                        match c {
                            Control::Signal(sig, reply) => {
                                self.emit(event("Signaling", &format!("Task being sent signal {sig}"))).await;
                                let req = SignalTaskRequest { task_id: task_id.clone(), signal: sig };
                                let r = driver.clone().signal_task(req).await.map(|_| ()).map_err(|e| e.message().to_string());
                                let _ = reply.send(r);
                            }
                            Control::Restart(reply) => {
                                if !stop_sent {
                                    stop_sent = true;
                                    self.stop_to_restart(&driver, &task_id, "User requested the task restart").await;
                                }
                                let _ = reply.send(Ok(()));
                            }
                        }
                    }
                    _ = stop.changed(), if !stop_sent => {
                        let reason = stop.borrow().clone();
                        if let Some(reason) = reason {
                            stop_sent = true;
                            // shutdown_delay: the task keeps running a while before the signal
                            // (time for clients to stop sending it work).
                            let delay = self.ctx.task.shutdown_delay.max(self.ctx.group_shutdown_delay);
                            let msg = if delay.is_zero() {
                                format!("Sent interrupt: {reason}")
                            } else {
                                format!("Sent interrupt after a shutdown delay of {delay:?}: {reason}")
                            };
                            self.emit(event("Killing", &msg)).await;
                            self.send_stop(&driver, &task_id, delay);
                        }
                    }
                }
            };
            self.ctx.control = control;
            self.hook_actions = actions;
            match outcome {
                Ok(r) => return Waited::Exited(r.into_inner().result.unwrap_or_default()),
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e.message(), "lost contact with the driver plugin while waiting; reattaching");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
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
        self.state.restarts += 1;
        true
    }

    pub(crate) async fn sleep_unless_stopped(&mut self, d: Duration) -> bool {
        let mut stop = self.ctx.stop.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => self.stop_reason().is_none(),
            _ = stop.wait_for(|s| s.is_some()) => false,
        }
    }

    async fn start(&mut self) -> Result<(), String> {
        let mut cfg = self.task_config(self.state.restarts);
        let mut driver = self
            .ctx
            .client
            .host()
            .driver(&self.ctx.task.driver)
            .await
            .map_err(|e| e.to_string())?;
        cfg.mounts = self.mounts()?;
        if !cfg.mounts.is_empty() {
            let caps = driver
                .capabilities(drover_proto::driver::CapabilitiesRequest {})
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner();
            if !caps.mounts {
                return Err(format!(
                    "the {} driver cannot mount volumes: volume_mount needs a driver with filesystem isolation (exec, docker)",
                    self.ctx.task.driver
                ));
            }
        }
        let resp = driver
            .start_task(StartTaskRequest { task: Some(cfg) })
            .await
            .map_err(|e| e.message().to_string())?
            .into_inner();
        let handle = resp.handle.ok_or("driver returned no task handle")?;
        self.set_handle(Some(handle)).await;
        self.state.state = TaskLifecycle::Running;
        self.state.started_at = now_nanos();
        self.emit(event("Started", "Task started by client")).await;
        Ok(())
    }

    async fn destroy(&self) {
        let Some(h) = &self.handle else { return };
        let task_id = h.config.as_ref().map(|c| c.id.clone()).unwrap_or_default();
        if let Ok(mut d) = self.ctx.client.host().driver(&self.ctx.task.driver).await {
            let _ = d
                .destroy_task(DestroyTaskRequest {
                    task_id,
                    force: true,
                })
                .await;
        }
    }
}

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
        state: TaskState::default(),
        handle: None,
        restarts: Vec::new(),
        restart_requested: false,
        hooks: crate::task_hooks::for_task(&ctx.task),
        hook_actions: None,
        ctx,
    };
    let mut resume = false;
    if let Some(local) = restored {
        r.state = local.state;
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
        r.emit(event("Task Setup", "Building Task Directory")).await;
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
        let recovered = match self.ctx.client.host().driver(&self.ctx.task.driver).await {
            Ok(mut d) => d
                .recover_task(RecoverTaskRequest {
                    handle: Some(handle),
                })
                .await
                .map_err(|e| e.message().to_string()),
            Err(e) => Err(e.to_string()),
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
        }
        if let Err(e) = self.start().await {
            let mut ev = event("Driver Failure", &e);
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
            self.state.restarts += 1;
            self.emit(event("Restarting", "Task restarting as requested"))
                .await;
            return Next::Start;
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
