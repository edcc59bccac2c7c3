//! The allocation runner: prepares the allocation directory, runs one task runner per task,
//! folds their states into the allocation's client status, persists it and reports it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use drover_model::{AllocClientUpdate, Allocation, ClientStatus, TaskLifecycle, TaskState};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::Client;
use crate::alloc_dir::{AllocDir, AllocDirError};
use crate::env::TaskDirs;
use crate::state::{LocalAlloc, LocalTask};
use crate::task_runner::{self, TaskMsg};

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
}

impl AllocRunner {
    pub fn spawn(client: Client, local: LocalAlloc) -> AllocRunner {
        let stop_now = (local.alloc.desired_status != drover_model::DesiredStatus::Run)
            .then(|| local.alloc.desired_description.clone());
        let runner = AllocRunner {
            inner: Arc::new(Inner {
                client,
                local: Mutex::new(local),
                stop: watch::channel(stop_now).0,
                done: watch::channel(false).0,
                controls: Mutex::default(),
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

    /// The server changed the allocation.
    pub fn update(&self, a: Allocation) {
        let stop = a.desired_status != drover_model::DesiredStatus::Run;
        let desc = a.desired_description.clone();
        {
            let mut l = self.inner.local.lock().expect("alloc lock");
            l.alloc.desired_status = a.desired_status;
            l.alloc.desired_description = a.desired_description;
            l.alloc.alloc_modify_index = a.alloc_modify_index;
            l.alloc.job_version = a.job_version;
        }
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

    /// Removes the allocation's local state and directory once its tasks are gone.
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

    pub fn destroy_when_done(&self) {
        let r = self.clone();
        tokio::spawn(async move {
            r.wait_done().await;
            let id = r.inner.local.lock().expect("alloc lock").alloc.id.clone();
            let client = &r.inner.client;
            client.inner.state.remove(&id);
            if let Ok(dir) = client.alloc_dir(&id) {
                let root = dir.path().to_path_buf();
                let _ = tokio::task::spawn_blocking(move || remove_dir_with_mounts(&root)).await;
            }
            tracing::info!(alloc_id = %id, "allocation garbage-collected");
        });
    }

    fn root(&self) -> Result<AllocDir, AllocDirError> {
        let id = self
            .inner
            .local
            .lock()
            .expect("alloc lock")
            .alloc
            .id
            .clone();
        self.inner.client.alloc_dir(&id)
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
            }
        };
        // An update whose sequence number is not on disk is not sent: after a restart the
        // same number could carry another status, which the servers would ignore.
        if self.persist().await {
            self.inner.client.send_update(update);
        }
    }

    async fn run(self) {
        let (alloc, job) = {
            let l = self.inner.local.lock().expect("alloc lock");
            (l.alloc.clone(), l.job.clone())
        };
        let Some(group) = job.group(&alloc.task_group).cloned() else {
            tracing::error!(group = %alloc.task_group, "the job version has no such group");
            self.inner.done.send_replace(true);
            return;
        };
        let task_names: Vec<String> = group.tasks.iter().map(|t| t.name.clone()).collect();
        let dirs = match self.root() {
            Ok(root) => {
                let names = task_names.clone();
                tokio::task::spawn_blocking(move || root.build(&names)).await
            }
            Err(e) => Ok(Err(e)),
        };
        let dirs = match dirs {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                self.fail_all(
                    &task_names,
                    &format!("cannot create the allocation directory: {e}"),
                )
                .await;
                return;
            }
            Err(e) => {
                self.fail_all(
                    &task_names,
                    &format!("creating the allocation directory panicked: {e}"),
                )
                .await;
                return;
            }
        };
        let (tx, mut rx) = mpsc::channel::<TaskMsg>(64);
        let mut slots: BTreeMap<String, Slot> = BTreeMap::new();
        let mut dirs_by_task: BTreeMap<String, TaskDirs> = BTreeMap::new();
        for (task, dirs) in group.tasks.iter().zip(dirs) {
            let restored = self
                .inner
                .local
                .lock()
                .expect("alloc lock")
                .tasks
                .get(&task.name)
                .cloned();
            let (hook, sidecar) = match &task.lifecycle {
                Some(l) if l.hook == "prestart" => (Hook::Prestart, l.sidecar),
                Some(l) if l.hook == "poststart" => (Hook::Poststart, l.sidecar),
                Some(l) if l.hook == "poststop" => (Hook::Poststop, false),
                _ => (Hook::Main, false),
            };
            let state = restored
                .as_ref()
                .map(|t| t.state.clone())
                .unwrap_or_default();
            // After an agent restart, tasks that had started resume now, whatever their phase.
            let resumed = restored
                .as_ref()
                .is_some_and(|t| t.handle.is_some() || t.state.state != TaskLifecycle::Pending);
            slots.insert(
                task.name.clone(),
                Slot {
                    hook,
                    sidecar,
                    leader: task.leader,
                    stop: watch::channel(None).0,
                    spawned: false,
                    resumed,
                    state,
                },
            );
            dirs_by_task.insert(task.name.clone(), dirs);
        }
        let mut alloc_stop = self.inner.stop.subscribe();
        let spawn = |slots: &mut BTreeMap<String, Slot>,
                     name: &str,
                     dirs_by_task: &mut BTreeMap<String, TaskDirs>| {
            let slot = slots.get_mut(name).expect("task slot");
            if slot.spawned {
                return;
            }
            slot.spawned = true;
            if slot.state.state == TaskLifecycle::Dead {
                return; // finished before the agent restarted
            }
            let task = group
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
            let ctx = task_runner::TaskCtx {
                client: self.inner.client.clone(),
                alloc: alloc.clone(),
                job: job.clone(),
                restart: task
                    .restart
                    .clone()
                    .unwrap_or_else(|| group.restart_policy(job.job_type)),
                task,
                dirs: dirs_by_task.remove(name).expect("task dirs"),
                stop: slot.stop.subscribe(),
                tx: tx.clone(),
                restored,
                group_shutdown_delay: group.shutdown_delay.unwrap_or_default(),
                control: Some({
                    let (ctx_tx, ctx_rx) = mpsc::channel(4);
                    self.inner
                        .controls
                        .lock()
                        .expect("controls lock")
                        .insert(name.to_string(), ctx_tx);
                    ctx_rx
                }),
            };
            let span = tracing::info_span!("task", task = %name);
            tokio::spawn(task_runner::run(ctx).instrument(span));
        };
        for (name, slot) in slots.clone() {
            if slot.resumed || slot.hook == Hook::Prestart {
                spawn(&mut slots, &name, &mut dirs_by_task);
            }
        }
        let mut stopping: Option<String> = alloc_stop.borrow().clone();
        loop {
            // Move through the lifecycle as far as the tasks' states allow.
            let phase = Phase::of(&slots);
            if let Some(reason) = &stopping {
                for s in slots.values().filter(|s| s.hook != Hook::Poststop) {
                    s.stop.send_if_modified(|v| {
                        v.is_none().then(|| *v = Some(reason.clone())).is_some()
                    });
                }
            }
            if phase.prestart_failed || phase.leader_dead {
                let why = if phase.prestart_failed {
                    "a prestart task failed"
                } else {
                    "the leader task exited"
                };
                stopping.get_or_insert_with(|| why.to_string());
                continue_stopping(&slots, why);
            }
            if stopping.is_none() && phase.prestart_done {
                for name in names(&slots, Hook::Main) {
                    spawn(&mut slots, &name, &mut dirs_by_task);
                }
            }
            let phase = Phase::of(&slots);
            if stopping.is_none() && phase.main_started {
                for name in names(&slots, Hook::Poststart) {
                    spawn(&mut slots, &name, &mut dirs_by_task);
                }
            }
            if phase.main_done || (stopping.is_some() && phase.main_quiet) {
                // The main work is over: sidecars go, poststop tasks run.
                continue_stopping(&slots, "the main tasks have finished");
                for name in names(&slots, Hook::Poststop) {
                    spawn(&mut slots, &name, &mut dirs_by_task);
                }
            }
            // Tasks that will never run now are recorded as such.
            if stopping.is_some() || phase.main_done {
                let mut changed = false;
                for (name, slot) in slots.iter_mut().filter(|(_, s)| {
                    !s.spawned
                        && s.hook != Hook::Poststop
                        && s.state.state == TaskLifecycle::Pending
                }) {
                    slot.spawned = true;
                    slot.state.state = TaskLifecycle::Dead;
                    slot.state.events.push(task_runner::event(
                        "Killed",
                        "Task not started: the allocation stopped",
                    ));
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
                if changed {
                    self.report().await;
                }
            }
            if slots.values().all(|s| s.state.state == TaskLifecycle::Dead) {
                self.report().await;
                break;
            }
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(TaskMsg::Handle(name, handle)) => {
                        self.inner.local.lock().expect("alloc lock").tasks.entry(name).or_insert_with(new_task).handle = handle;
                        self.persist().await;
                    }
                    Some(TaskMsg::State(name, state)) => {
                        if let Some(s) = slots.get_mut(&name) {
                            s.state = state.clone();
                        }
                        self.inner.local.lock().expect("alloc lock").tasks.entry(name).or_insert_with(new_task).state = state;
                        self.report().await;
                    }
                    None => break,
                },
                _ = alloc_stop.changed() => {
                    stopping = alloc_stop.borrow().clone();
                }
            }
        }
        self.inner.done.send_replace(true);
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
                st.events.push(task_runner::event("Setup Failure", msg));
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
        self.inner.done.send_replace(true);
    }
}

/// When a task runs in its allocation's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hook {
    Prestart,
    Main,
    Poststart,
    Poststop,
}

#[derive(Clone)]
struct Slot {
    hook: Hook,
    sidecar: bool,
    leader: bool,
    /// This task's own stop signal (sidecars stop when the main tasks finish).
    stop: watch::Sender<Option<String>>,
    spawned: bool,
    /// Started before an agent restart: resumes at once.
    resumed: bool,
    state: TaskState,
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
                .filter(|s| s.hook == Hook::Prestart && !s.sidecar)
        };
        let mains = || slots.values().filter(|s| s.hook == Hook::Main);
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

fn names(slots: &BTreeMap<String, Slot>, hook: Hook) -> Vec<String> {
    slots
        .iter()
        .filter(|(_, s)| s.hook == hook)
        .map(|(n, _)| n.clone())
        .collect()
}

/// Stops every task but the poststop ones.
fn continue_stopping(slots: &BTreeMap<String, Slot>, why: &str) {
    for s in slots.values().filter(|s| s.hook != Hook::Poststop) {
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

/// Lazily unmounts whatever is mounted below `dir` (tasks' secrets/ tmpfs, the shims'
/// tmpfs), deepest first.
pub fn unmount_below(dir: &std::path::Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| std::path::Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes a directory tree after unmounting whatever is mounted below it: an allocation's
/// directory at GC, the dev agent's data dir at exit.
pub fn remove_dir_with_mounts(dir: &std::path::Path) -> std::io::Result<()> {
    unmount_below(dir);
    std::fs::remove_dir_all(dir)
}
