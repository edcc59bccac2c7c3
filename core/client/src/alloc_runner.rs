//! The allocation runner: prepares the allocation directory, runs one task runner per task,
//! folds their states into the allocation's client status, persists it and reports it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use drover_model::{AllocClientUpdate, Allocation, ClientStatus, TaskLifecycle, TaskState};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use crate::Client;
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
    pub fn destroy_when_done(&self) {
        let r = self.clone();
        tokio::spawn(async move {
            r.wait_done().await;
            let id = r.inner.local.lock().expect("alloc lock").alloc.id.clone();
            let client = &r.inner.client;
            client.inner.state.remove(&id);
            let root = crate::logs::alloc_root(client, &id);
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(root)).await;
            tracing::info!(alloc_id = %id, "allocation garbage-collected");
        });
    }

    fn root(&self) -> PathBuf {
        let id = self
            .inner
            .local
            .lock()
            .expect("alloc lock")
            .alloc
            .id
            .clone();
        crate::logs::alloc_root(&self.inner.client, &id)
    }

    async fn persist(&self) {
        let snapshot = self.inner.local.lock().expect("alloc lock").clone();
        let state = self.inner.client.inner.state.clone();
        match tokio::task::spawn_blocking(move || state.save(&snapshot)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cannot persist allocation state"),
            Err(e) => tracing::error!(error = %e, "persisting allocation state panicked"),
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
        self.persist().await;
        self.inner.client.send_update(update);
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
        let root = self.root();
        let task_names: Vec<String> = group.tasks.iter().map(|t| t.name.clone()).collect();
        let dirs = {
            let root = root.clone();
            let names = task_names.clone();
            tokio::task::spawn_blocking(move || make_dirs(&root, &names)).await
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
        let mut running = 0;
        for (task, dirs) in group.tasks.iter().zip(dirs) {
            let restored = self
                .inner
                .local
                .lock()
                .expect("alloc lock")
                .tasks
                .get(&task.name)
                .cloned();
            if restored
                .as_ref()
                .is_some_and(|t| t.state.state == TaskLifecycle::Dead)
            {
                continue; // finished before the agent restarted
            }
            running += 1;
            let ctx = task_runner::TaskCtx {
                client: self.inner.client.clone(),
                alloc: alloc.clone(),
                job: job.clone(),
                task: task.clone(),
                restart: task
                    .restart
                    .clone()
                    .unwrap_or_else(|| group.restart_policy(job.job_type)),
                dirs,
                stop: self.inner.stop.subscribe(),
                tx: tx.clone(),
                restored,
            };
            let span = tracing::info_span!("task", task = %task.name);
            tokio::spawn(task_runner::run(ctx).instrument(span));
        }
        drop(tx);
        if running == 0 {
            self.report().await;
        }
        while let Some(msg) = rx.recv().await {
            match msg {
                TaskMsg::Handle(name, handle) => {
                    self.inner
                        .local
                        .lock()
                        .expect("alloc lock")
                        .tasks
                        .entry(name)
                        .or_insert_with(new_task)
                        .handle = handle;
                    self.persist().await;
                }
                TaskMsg::State(name, state) => {
                    self.inner
                        .local
                        .lock()
                        .expect("alloc lock")
                        .tasks
                        .entry(name)
                        .or_insert_with(new_task)
                        .state = state;
                    self.report().await;
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

/// Creates `<root>/alloc/{logs,data,tmp}` and per task `<root>/<task>/{local,secrets,tmp}`.
fn make_dirs(root: &std::path::Path, tasks: &[String]) -> std::io::Result<Vec<TaskDirs>> {
    use std::os::unix::fs::PermissionsExt;
    let shared = root.join("alloc");
    for d in ["logs", "data", "tmp"] {
        std::fs::create_dir_all(shared.join(d))?;
    }
    let mut out = Vec::new();
    for t in tasks {
        let td = root.join(t);
        for d in ["local", "secrets", "tmp"] {
            std::fs::create_dir_all(td.join(d))?;
        }
        std::fs::set_permissions(td.join("secrets"), std::fs::Permissions::from_mode(0o700))?;
        std::fs::set_permissions(td.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
        out.push(TaskDirs {
            alloc_dir: shared.display().to_string(),
            task_dir: td.display().to_string(),
            local_dir: td.join("local").display().to_string(),
            secrets_dir: td.join("secrets").display().to_string(),
            tmp_dir: td.join("tmp").display().to_string(),
        });
    }
    Ok(out)
}
