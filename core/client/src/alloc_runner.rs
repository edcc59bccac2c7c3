//! The allocation runner: runs the allocation hooks ([`crate::alloc_hooks`]: the allocation
//! directory first), one task runner per task through the group's lifecycle (prestart,
//! main, poststart, poststop tasks), folds their states into the allocation's client status,
//! persists it and reports it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use drover_model::{
    AllocClientUpdate, Allocation, ClientStatus, Job, LifecycleHook, TaskGroup, TaskLifecycle,
    TaskState,
};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::Client;
use crate::alloc_hooks::{AllocHook, AllocHookCtx, AllocHookError, Prepared};
use crate::env::TaskDirs;
use crate::state::{LocalAlloc, LocalTask};
use crate::task_runner;
use crate::task_status::{TaskMsg, event};

#[derive(Clone)]
pub struct AllocRunner {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    local: Mutex<LocalAlloc>,
    /// true once the allocation must stop (server's desired status, or the agent's own).
    stop: watch::Sender<Option<String>>,
    done: watch::Sender<bool>,
    /// Running tasks' control channels (`alloc restart`, `alloc signal`).
    controls: Mutex<BTreeMap<String, mpsc::Sender<task_runner::Control>>>,
    /// Task runners' channels for their driver's events, with the driver's name.
    driver_events: Mutex<BTreeMap<String, (String, mpsc::Sender<drover_model::TaskEvent>)>>,
    /// The allocation as the server last changed it, for the hooks' `update`.
    updates: watch::Sender<Allocation>,
    /// The allocation hooks, once the allocation stopped running (for `destroy`).
    hooks: Mutex<Vec<Box<dyn AllocHook>>>,
}

impl AllocRunner {
    pub fn spawn(client: Client, local: LocalAlloc) -> AllocRunner {
        let stop_now = (local.alloc.desired_status != drover_model::DesiredStatus::Run)
            .then(|| local.alloc.desired_description.clone());
        let runner = AllocRunner {
            inner: Arc::new(Inner {
                client,
                updates: watch::channel(local.alloc.clone()).0,
                local: Mutex::new(local),
                stop: watch::channel(stop_now).0,
                done: watch::channel(false).0,
                controls: Mutex::default(),
                driver_events: Mutex::default(),
                hooks: Mutex::default(),
            }),
        };
        let r = runner.clone();
        let span = {
            let l = r.inner.local.lock().expect("alloc lock");
            tracing::info_span!("alloc", alloc_id = %l.alloc.id, job_id = %l.alloc.job_id)
        };
        tokio::spawn(async move { r.run().await }.instrument(span));
        runner
    }

    pub fn has_task(&self, task: &str) -> bool {
        let l = self.inner.local.lock().expect("alloc lock");
        l.job
            .group(&l.alloc.task_group)
            .is_some_and(|g| g.tasks.iter().any(|t| t.name == task))
    }

    /// The running tasks of the allocation (all of them when `task` is empty), each as
    /// (task name, driver name, the driver's task id).
    pub fn running_tasks(&self, task: &str) -> Result<Vec<(String, String, String)>, String> {
        use prost::Message;
        let l = self.inner.local.lock().expect("alloc lock");
        let group = l
            .job
            .group(&l.alloc.task_group)
            .ok_or_else(|| format!("the allocation's group {:?} is gone", l.alloc.task_group))?;
        if !task.is_empty() && !group.tasks.iter().any(|t| t.name == task) {
            let names: Vec<&str> = group.tasks.iter().map(|t| t.name.as_str()).collect();
            return Err(format!(
                "task {task:?} not found in allocation {} (its tasks: {})",
                l.alloc.id,
                names.join(", ")
            ));
        }
        let mut out = Vec::new();
        for t in group
            .tasks
            .iter()
            .filter(|t| task.is_empty() || t.name == task)
        {
            let Some(local) = l.tasks.get(&t.name) else {
                continue;
            };
            if local.state.state != TaskLifecycle::Running {
                continue;
            }
            let id = local
                .handle
                .as_deref()
                .and_then(|h| drover_proto::driver::TaskHandle::decode(h).ok())
                .and_then(|h| h.config)
                .map(|c| c.id);
            if let Some(id) = id {
                out.push((t.name.clone(), t.driver.clone(), id));
            }
        }
        if out.is_empty() {
            return Err(if task.is_empty() {
                format!("allocation {} has no running task", l.alloc.id)
            } else {
                format!("task {task:?} is not running in allocation {}", l.alloc.id)
            });
        }
        Ok(out)
    }

    /// Stops task `task` as failed for a group check's `check_restart` (its restart policy
    /// decides whether it starts again).
    pub(crate) async fn restart_unhealthy(&self, task: &str, why: String) -> Result<(), String> {
        let control = self
            .inner
            .controls
            .lock()
            .expect("controls lock")
            .get(task)
            .cloned()
            .ok_or_else(|| format!("task {task:?} is not running in this allocation"))?;
        control
            .send(task_runner::Control::RestartUnhealthy(why))
            .await
            .map_err(|_| format!("task {task:?} is not running"))
    }

    /// Restarts or signals a task (all running tasks when `task` is empty).
    pub async fn act(&self, task: &str, action: &str, signal: &str) -> Result<(), String> {
        let targets: Vec<(String, mpsc::Sender<task_runner::Control>)> = self
            .inner
            .controls
            .lock()
            .expect("controls lock")
            .iter()
            .filter(|(n, _)| task.is_empty() || *n == task)
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        if targets.is_empty() {
            return Err(if task.is_empty() {
                "the allocation has no running task".into()
            } else {
                format!("task {task:?} is not running in this allocation")
            });
        }
        for (name, c) in targets {
            let (reply, answer) = tokio::sync::oneshot::channel();
            let msg = match action {
                "restart" => task_runner::Control::Restart(reply),
                "signal" => task_runner::Control::Signal(
                    if signal.is_empty() {
                        "SIGKILL".into()
                    } else {
                        signal.to_string()
                    },
                    reply,
                ),
                other => return Err(format!("unknown action {other:?}")),
            };
            c.send(msg)
                .await
                .map_err(|_| format!("task {name:?} is not running"))?;
            answer
                .await
                .map_err(|_| format!("task {name:?} stopped before answering"))??;
        }
        Ok(())
    }

    /// An event driver `driver` reported for task `task`: recorded as the task's, when the
    /// task runs on that driver; dropped when its runner has too many waiting already.
    pub fn driver_event(&self, task: &str, driver: &str, e: drover_model::TaskEvent) {
        let events = self.inner.driver_events.lock().expect("driver events lock");
        match events.get(task) {
            Some((d, tx)) if d == driver => {
                if tx.try_send(e).is_err() {
                    tracing::debug!(task, "driver event dropped: too many waiting");
                }
            }
            _ => tracing::debug!(task, driver, "driver event for no task of that driver"),
        }
    }

    /// The server changed the allocation.
    pub fn update(&self, a: Allocation) {
        let stop = a.desired_status != drover_model::DesiredStatus::Run;
        let desc = a.desired_description.clone();
        let updated = {
            let mut l = self.inner.local.lock().expect("alloc lock");
            l.alloc.desired_status = a.desired_status;
            l.alloc.desired_description = a.desired_description;
            l.alloc.alloc_modify_index = a.alloc_modify_index;
            l.alloc.job_version = a.job_version;
            l.alloc.clone()
        };
        self.inner.updates.send_replace(updated);
        if stop {
            self.stop(&desc);
        }
    }

    pub fn stop(&self, reason: &str) {
        self.inner.stop.send_if_modified(|s| {
            if s.is_none() {
                *s = Some(reason.to_string());
                true
            } else {
                false
            }
        });
    }

    pub async fn wait_done(&self) {
        let mut rx = self.inner.done.subscribe();
        let _ = rx.wait_for(|d| *d).await;
    }

    /// Whether every task has finished.
    pub fn is_done(&self) -> bool {
        *self.inner.done.borrow()
    }

    /// When the allocation last changed on this client (for garbage-collection order).
    pub fn modified(&self) -> (i64, String) {
        let l = self.inner.local.lock().expect("alloc lock");
        let last = l
            .tasks
            .values()
            .map(|t| t.state.finished_at)
            .max()
            .unwrap_or(0);
        (last, l.alloc.id.clone())
    }

    /// Once its tasks are gone: removes the allocation's local state, then runs the
    /// allocation hooks' `destroy` (the directory goes).
    pub fn destroy_when_done(&self) {
        let r = self.clone();
        tokio::spawn(async move {
            r.wait_done().await;
            let alloc = r.inner.local.lock().expect("alloc lock").alloc.clone();
            let client = &r.inner.client;
            client.inner.state.remove(&alloc.id);
            let mut hooks = std::mem::take(&mut *r.inner.hooks.lock().expect("hooks lock"));
            for h in hooks.iter_mut() {
                h.destroy(client, &alloc).await;
            }
            tracing::info!(alloc_id = %alloc.id, "allocation garbage-collected");
        });
    }

    /// Stores the allocation's state; false (logged) when it could not be.
    async fn persist(&self) -> bool {
        let snapshot = self.inner.local.lock().expect("alloc lock").clone();
        let state = self.inner.client.inner.state.clone();
        match tokio::task::spawn_blocking(move || state.save(&snapshot)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot persist allocation state");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "persisting allocation state panicked");
                false
            }
        }
    }

    /// Sends the allocation's current status to the servers (after persisting its sequence).
    async fn report(&self) {
        let update = {
            let mut l = self.inner.local.lock().expect("alloc lock");
            l.seq += 1;
            let (status, desc) = client_status(&l);
            l.alloc.client_status = status;
            l.alloc.client_description = desc.clone();
            AllocClientUpdate {
                alloc_id: l.alloc.id.clone(),
                seq: l.seq,
                client_status: status,
                client_description: desc,
                task_states: l
                    .tasks
                    .iter()
                    .map(|(k, t)| (k.clone(), t.state.clone()))
                    .collect(),
                network_status: l.alloc.network_status.clone(),
            }
        };
        // An update whose sequence number is not on disk is not sent: after a restart the
        // same number could carry another status, which the servers would ignore.
        if self.persist().await {
            self.inner.client.send_update(update);
        }
    }

    /// Runs the allocation: the hooks' prerun, the tasks through their lifecycle, the
    /// hooks' postrun; then the runner is done.
    async fn run(self) {
        let (alloc, job) = {
            let l = self.inner.local.lock().expect("alloc lock");
            (l.alloc.clone(), l.job.clone())
        };
        let mut hooks = crate::alloc_hooks::for_alloc();
        match job.group(&alloc.task_group).cloned() {
            None => tracing::error!(group = %alloc.task_group, "the job version has no such group"),
            Some(group) => match self.prerun(&mut hooks, &alloc, &job, &group).await {
                Ok(prepared) => {
                    let mut alloc = alloc.clone();
                    if let Some(net) = &prepared.network {
                        alloc.network_status = Some(net.status.clone());
                        self.inner
                            .local
                            .lock()
                            .expect("alloc lock")
                            .alloc
                            .network_status = Some(net.status.clone());
                    }
                    let tasks = Lifecycle::new(&self, alloc, job, group, prepared);
                    self.run_tasks(tasks, &mut hooks).await;
                }
                Err(e) => {
                    let names: Vec<String> = group.tasks.iter().map(|t| t.name.clone()).collect();
                    self.fail_all(&names, &e.to_string()).await;
                }
            },
        }
        for h in hooks.iter_mut() {
            h.postrun(&self.inner.client, &alloc).await;
        }
        *self.inner.hooks.lock().expect("hooks lock") = hooks;
        self.inner.done.send_replace(true);
    }

    /// Runs every allocation hook's prerun, in order; the first failure stops.
    async fn prerun(
        &self,
        hooks: &mut [Box<dyn AllocHook>],
        alloc: &Allocation,
        job: &Job,
        group: &TaskGroup,
    ) -> Result<Prepared, AllocHookError> {
        let ctx = AllocHookCtx {
            client: &self.inner.client,
            alloc,
            job,
            group,
        };
        let mut prepared = Prepared::default();
        for h in hooks.iter_mut() {
            h.prerun(&ctx, &mut prepared).await?;
        }
        Ok(prepared)
    }

    /// Drives the tasks through the group's lifecycle until every one is dead, reporting
    /// their states, and passing the server's changes to the allocation hooks.
    async fn run_tasks(&self, mut tasks: Lifecycle, hooks: &mut [Box<dyn AllocHook>]) {
        let mut rx = tasks.rx.take().expect("the lifecycle's receiver");
        for name in tasks.names_where(|s| s.resumed || s.stage == Stage::Prestart) {
            self.spawn_task(&mut tasks, &name);
        }
        let mut alloc_stop = self.inner.stop.subscribe();
        let mut updates = self.inner.updates.subscribe();
        let mut stopping: Option<String> = alloc_stop.borrow().clone();
        let mut prekilled = false;
        loop {
            if stopping.is_some() && !prekilled {
                // Before any task is told to stop (and its shutdown delay starts).
                prekilled = true;
                for h in hooks.iter_mut() {
                    h.prekill().await;
                }
            }
            if self.advance(&mut tasks, &mut stopping).await {
                return;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => self.on_task_msg(&mut tasks, msg).await,
                    None => return,
                },
                _ = alloc_stop.changed() => {
                    stopping = alloc_stop.borrow().clone();
                }
                Ok(()) = updates.changed() => {
                    let alloc = updates.borrow_and_update().clone();
                    for h in hooks.iter_mut() {
                        h.update(&alloc);
                    }
                }
            }
        }
    }

    /// Moves the tasks through the lifecycle as far as their states allow; true once every
    /// task is dead (the last state reported).
    async fn advance(&self, tasks: &mut Lifecycle, stopping: &mut Option<String>) -> bool {
        let phase = Phase::of(&tasks.slots);
        if let Some(reason) = stopping.as_deref() {
            continue_stopping(&tasks.slots, reason);
        }
        if phase.prestart_failed || phase.leader_dead {
            let why = if phase.prestart_failed {
                "a prestart task failed"
            } else {
                "the leader task exited"
            };
            stopping.get_or_insert_with(|| why.to_string());
            continue_stopping(&tasks.slots, why);
        }
        if stopping.is_none() && phase.prestart_done {
            for name in tasks.names_where(|s| s.stage == Stage::Main) {
                self.spawn_task(tasks, &name);
            }
        }
        let phase = Phase::of(&tasks.slots);
        if stopping.is_none() && phase.main_started {
            for name in tasks.names_where(|s| s.stage == Stage::Poststart) {
                self.spawn_task(tasks, &name);
            }
        }
        if phase.main_done || (stopping.is_some() && phase.main_quiet) {
            // The main work is over: sidecars go, poststop tasks run.
            continue_stopping(&tasks.slots, "the main tasks have finished");
            for name in tasks.names_where(|s| s.stage == Stage::Poststop) {
                self.spawn_task(tasks, &name);
            }
        }
        // Tasks that will never run now are recorded as such.
        if (stopping.is_some() || phase.main_done) && self.never_started(tasks) {
            self.report().await;
        }
        if tasks
            .slots
            .values()
            .all(|s| s.state.state == TaskLifecycle::Dead)
        {
            self.report().await;
            return true;
        }
        false
    }

    /// Records the tasks that have not started and never will (the allocation stopped)
    /// as dead; whether there were any.
    fn never_started(&self, tasks: &mut Lifecycle) -> bool {
        let mut changed = false;
        for (name, slot) in tasks.slots.iter_mut().filter(|(_, s)| {
            !s.spawned && s.stage != Stage::Poststop && s.state.state == TaskLifecycle::Pending
        }) {
            slot.spawned = true;
            slot.state.state = TaskLifecycle::Dead;
            slot.state
                .events
                .push(event("Killed", "Task not started: the allocation stopped"));
            self.inner
                .local
                .lock()
                .expect("alloc lock")
                .tasks
                .entry(name.clone())
                .or_insert_with(new_task)
                .state = slot.state.clone();
            changed = true;
        }
        changed
    }

    /// Changes task `name`'s local record (created if it has none yet).
    fn with_local_task(&self, name: String, f: impl FnOnce(&mut LocalTask)) {
        let mut local = self.inner.local.lock().expect("alloc lock");
        f(local.tasks.entry(name).or_insert_with(new_task));
    }

    /// A task runner's news: its handle is persisted, its state reported.
    async fn on_task_msg(&self, tasks: &mut Lifecycle, msg: TaskMsg) {
        match msg {
            TaskMsg::Handle(name, handle) => {
                self.with_local_task(name, |t| t.handle = handle);
                self.persist().await;
            }
            TaskMsg::State(name, state) => {
                if let Some(s) = tasks.slots.get_mut(&name) {
                    s.state = state.clone();
                }
                self.with_local_task(name, |t| t.state = state);
                self.report().await;
            }
        }
    }

    /// Starts the runner of task `name`, unless it was started already or finished before
    /// the agent restarted.
    fn spawn_task(&self, tasks: &mut Lifecycle, name: &str) {
        let slot = tasks.slots.get_mut(name).expect("task slot");
        if slot.spawned {
            return;
        }
        slot.spawned = true;
        if slot.state.state == TaskLifecycle::Dead {
            return; // finished before the agent restarted
        }
        let stop = slot.stop.subscribe();
        let task = tasks
            .group
            .tasks
            .iter()
            .find(|t| t.name == name)
            .expect("task of the group")
            .clone();
        let restored = self
            .inner
            .local
            .lock()
            .expect("alloc lock")
            .tasks
            .get(name)
            .cloned();
        let (control, control_rx) = mpsc::channel(4);
        self.inner
            .controls
            .lock()
            .expect("controls lock")
            .insert(name.to_string(), control);
        let (events, events_rx) = mpsc::channel(task_runner::DRIVER_EVENTS_WAITING);
        self.inner
            .driver_events
            .lock()
            .expect("driver events lock")
            .insert(name.to_string(), (task.driver.clone(), events));
        let ctx = task_runner::TaskCtx {
            client: self.inner.client.clone(),
            alloc: tasks.alloc.clone(),
            job: tasks.job.clone(),
            restart: task
                .restart
                .clone()
                .unwrap_or_else(|| tasks.group.restart_policy(tasks.job.job_type)),
            task,
            dirs: tasks.dirs.remove(name).expect("task dirs"),
            network: tasks.network.clone(),
            stop,
            tx: tasks.tx.clone(),
            restored,
            group_shutdown_delay: tasks.group.shutdown_delay.unwrap_or_default(),
            control: Some(control_rx),
            driver_events: Some(events_rx),
            alloc_updates: self.inner.updates.subscribe(),
            identities: crate::identities::TaskIdentities::new(
                self.inner.client.clone(),
                &tasks.alloc.id,
                name,
            ),
        };
        let span = tracing::info_span!("task", task = %name);
        tokio::spawn(task_runner::run(ctx).instrument(span));
    }

    async fn fail_all(&self, tasks: &[String], msg: &str) {
        tracing::error!(error = msg, "allocation failed before its tasks started");
        {
            let mut l = self.inner.local.lock().expect("alloc lock");
            for t in tasks {
                let mut st = TaskState {
                    state: TaskLifecycle::Dead,
                    failed: true,
                    ..Default::default()
                };
                st.events.push(event("Setup Failure", msg));
                l.tasks.insert(
                    t.clone(),
                    LocalTask {
                        handle: None,
                        state: st,
                    },
                );
            }
        }
        self.report().await;
    }
}

/// When a task runs in its allocation's lifecycle (its `lifecycle { hook }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Prestart,
    Main,
    Poststart,
    Poststop,
}

#[derive(Clone)]
struct Slot {
    stage: Stage,
    sidecar: bool,
    leader: bool,
    /// This task's own stop signal (sidecars stop when the main tasks finish).
    stop: watch::Sender<Option<String>>,
    spawned: bool,
    /// Started before an agent restart: resumes at once.
    resumed: bool,
    state: TaskState,
}

/// The allocation's tasks as its runner drives them through the group's lifecycle.
struct Lifecycle {
    alloc: Allocation,
    job: Job,
    group: TaskGroup,
    slots: BTreeMap<String, Slot>,
    /// The directories of the tasks not started yet.
    dirs: BTreeMap<String, TaskDirs>,
    /// The allocation's own network, when it has one.
    network: Option<crate::alloc_hooks::AllocNetwork>,
    /// The task runners' news, and where it arrives (taken by the runner's loop).
    tx: mpsc::Sender<TaskMsg>,
    rx: Option<mpsc::Receiver<TaskMsg>>,
}

impl Lifecycle {
    /// The tasks' slots, from the states restored from the local state (if any).
    fn new(
        runner: &AllocRunner,
        alloc: Allocation,
        job: Job,
        group: TaskGroup,
        prepared: Prepared,
    ) -> Lifecycle {
        let (tx, rx) = mpsc::channel::<TaskMsg>(64);
        let local = runner.inner.local.lock().expect("alloc lock");
        let slots = group
            .tasks
            .iter()
            .map(|task| {
                let restored = local.tasks.get(&task.name);
                let (stage, sidecar) = match &task.lifecycle {
                    Some(l) => match l.hook {
                        LifecycleHook::Prestart => (Stage::Prestart, l.sidecar),
                        LifecycleHook::Poststart => (Stage::Poststart, l.sidecar),
                        LifecycleHook::Poststop => (Stage::Poststop, false),
                    },
                    None => (Stage::Main, false),
                };
                let slot = Slot {
                    stage,
                    sidecar,
                    leader: task.leader,
                    stop: watch::channel(None).0,
                    spawned: false,
                    // After an agent restart, tasks that had started resume now, whatever
                    // their phase.
                    resumed: restored.is_some_and(|t| {
                        t.handle.is_some() || t.state.state != TaskLifecycle::Pending
                    }),
                    state: restored.map(|t| t.state.clone()).unwrap_or_default(),
                };
                (task.name.clone(), slot)
            })
            .collect();
        drop(local);
        Lifecycle {
            alloc,
            job,
            group,
            slots,
            dirs: prepared.task_dirs,
            network: prepared.network,
            tx,
            rx: Some(rx),
        }
    }

    /// The names of the tasks whose slot matches.
    fn names_where(&self, f: impl Fn(&Slot) -> bool) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| f(s))
            .map(|(n, _)| n.clone())
            .collect()
    }
}

/// Where the allocation's lifecycle stands.
struct Phase {
    prestart_done: bool,
    prestart_failed: bool,
    main_started: bool,
    main_done: bool,
    /// No main task is running (some may never have started).
    main_quiet: bool,
    leader_dead: bool,
}

impl Phase {
    fn of(slots: &BTreeMap<String, Slot>) -> Phase {
        let ephemeral_prestart = || {
            slots
                .values()
                .filter(|s| s.stage == Stage::Prestart && !s.sidecar)
        };
        let mains = || slots.values().filter(|s| s.stage == Stage::Main);
        let dead = |s: &Slot| s.state.state == TaskLifecycle::Dead;
        Phase {
            prestart_done: ephemeral_prestart().all(|s| dead(s) && !s.state.failed),
            prestart_failed: ephemeral_prestart().any(|s| dead(s) && s.state.failed),
            main_started: mains().all(|s| s.state.state != TaskLifecycle::Pending),
            main_done: mains().all(|s| s.spawned && dead(s)),
            main_quiet: mains().all(|s| s.state.state != TaskLifecycle::Running),
            leader_dead: slots.values().any(|s| s.leader && dead(s)),
        }
    }
}

/// Stops every task but the poststop ones.
fn continue_stopping(slots: &BTreeMap<String, Slot>, why: &str) {
    for s in slots.values().filter(|s| s.stage != Stage::Poststop) {
        s.stop
            .send_if_modified(|v| v.is_none().then(|| *v = Some(why.to_string())).is_some());
    }
}

fn new_task() -> LocalTask {
    LocalTask {
        handle: None,
        state: TaskState::default(),
    }
}

/// The allocation's client status from its tasks' states.
fn client_status(l: &LocalAlloc) -> (ClientStatus, String) {
    let states: Vec<&TaskState> = l.tasks.values().map(|t| &t.state).collect();
    let n_tasks = l
        .job
        .group(&l.alloc.task_group)
        .map(|g| g.tasks.len())
        .unwrap_or(0);
    if states.iter().any(|s| s.state == TaskLifecycle::Running) {
        return (ClientStatus::Running, "Tasks are running".into());
    }
    if states.len() == n_tasks && states.iter().all(|s| s.state == TaskLifecycle::Dead) {
        if states.iter().any(|s| s.failed) {
            return (ClientStatus::Failed, "Failed tasks".into());
        }
        return (ClientStatus::Complete, "All tasks have completed".into());
    }
    (ClientStatus::Pending, "No tasks have started".into())
}
