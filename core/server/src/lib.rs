//! The server: leader duties (eval broker, scheduler worker, plan applier, heartbeat timers)
//! and the RPC handlers clients and the HTTP API call.
//!
//! Writes go through Raft ([`drover_raft::RaftNode::write`]); the leader's duties start only
//! after a linearizable read barrier and stop when leadership is lost.

mod acl;
mod broker;
mod catalog_push;
mod consensus;
mod gc;
mod heartbeat;
pub mod identity;
mod keyring;
mod leader;
mod namespaces;
mod node_stream;
mod plan_apply;
mod scheduler_config;
mod service_lookup;
mod service_updates;
mod worker;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_model::{Evaluation, Job, Variable, format_uuid};
use drover_raft::RaftNode;
use drover_state::{Command, StateStore};

pub use drover_raft::node::{RaftStats, RestoreError};
pub use drover_raft::{NodeId, PeerError, ServerStatus, WriteError};
pub use gc::{Collected, GcThresholds};
pub use node_stream::{ExecSession, LogsSession, NodeStreamService};
pub use plan_apply::PlanOutcome;
pub use scheduler_config::SchedulerConfigSet;
pub use service_lookup::StateCatalog;
pub use service_updates::{ServiceUpdateError, limits as service_update_limits};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How long a node may go without a heartbeat before it is marked down.
    pub heartbeat_ttl: Duration,
    /// Scheduler workers on the leader (the broker keeps one evaluation per job in flight).
    pub workers: usize,
    /// The scheduler configuration in force until one is set through the API
    /// (`server.default_scheduler_config`).
    pub scheduler: drover_model::SchedulerConfiguration,
    /// The leader removes a server it has not reached for this long (autopilot's dead-server
    /// cleanup); None disables it.
    pub dead_server_cleanup: Option<Duration>,
    /// How old finished evaluations, dead jobs and down nodes must be before the leader
    /// deletes them (Nomad's `*_gc_threshold`s).
    pub gc: GcThresholds,
    /// The largest `count` a task group may ask for; registering (or planning) a job above
    /// it is refused (`server.job_max_count`).
    pub job_max_count: u32,
    /// New placements one evaluation makes at most; the rest follow in a follow-up
    /// evaluation (`server.max_placements_per_eval`).
    pub max_placements_per_eval: usize,
    /// Where the keyring's key-encryption key comes from (`keyring "file" { path }`);
    /// None: variables are refused.
    pub kek: Option<Arc<dyn drover_keyring::KekProvider>>,
}

/// Default for [`ServerConfig::job_max_count`].
pub const DEFAULT_JOB_MAX_COUNT: u32 = 10_000;
/// Default for [`ServerConfig::max_placements_per_eval`].
pub const DEFAULT_MAX_PLACEMENTS_PER_EVAL: usize = 1_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            heartbeat_ttl: Duration::from_secs(10),
            workers: 4,
            scheduler: drover_model::SchedulerConfiguration::default(),
            dead_server_cleanup: None,
            gc: GcThresholds::default(),
            job_max_count: DEFAULT_JOB_MAX_COUNT,
            max_placements_per_eval: DEFAULT_MAX_PLACEMENTS_PER_EVAL,
            kek: None,
        }
    }
}

pub use drover_model::now_nanos;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("{0}")]
    NotFound(String),
    #[error("node {0} is not connected to this server")]
    NodeNotConnected(String),
    #[error("{0}")]
    Invalid(String),
    /// A membership change (removing a server) failed.
    #[error("{0}")]
    Membership(String),
    /// The keyring refused (no KEK on this server, a ciphertext that does not decrypt).
    #[error(transparent)]
    Keyring(#[from] drover_keyring::KeyringError),
}

/// What registering a job committed: the answer `PUT /v1/jobs` gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRegistered {
    /// The evaluation created with it; empty for a periodic or parameterized parent.
    pub eval_id: String,
    /// The Raft index of the write (the evaluation's creation index).
    pub eval_create_index: u64,
    /// The job's `JobModifyIndex` after the write.
    pub job_modify_index: u64,
    /// The job version the write stored.
    pub job_version: u64,
}

/// What a variable write did.
#[derive(Debug)]
pub enum VarWrite {
    /// Written (the stored variable) or deleted (None).
    Done(Option<Arc<Variable>>),
    /// The check-and-set index did not match: the current variable, if there is one.
    Conflict(Option<Arc<Variable>>),
}

/// What `job plan` computed.
pub struct JobPlan {
    /// The job version the submitted one would replace.
    pub previous: Option<Job>,
    pub plan: drover_scheduler::Plan,
    /// The state the plan was computed against.
    pub before: drover_state::StateSnapshot,
}

/// One server: Raft plus everything the leader runs.
#[derive(Clone)]
pub struct Server {
    inner: Arc<Inner>,
}

struct Inner {
    raft: RaftNode,
    config: ServerConfig,
    /// Connected clients, for server-to-client requests (log sessions).
    nodes: Mutex<BTreeMap<String, node_stream::NodeLink>>,
    /// Open sessions waiting for the client's data, by session id.
    sessions: Mutex<BTreeMap<String, node_stream::SessionSink>>,
    /// Exec sessions waiting for the client's ExecSession RPC, by session id.
    exec_sessions: Mutex<BTreeMap<String, node_stream::ExecPending>>,
    heartbeats: heartbeat::Heartbeats,
    /// Plans are checked one at a time.
    applier: tokio::sync::Mutex<()>,
    /// Plans accepted and still committing.
    inflight: plan_apply::InFlight,
    keyring: drover_keyring::Keyring,
}

/// A random UUID from the OS's generator.
pub fn new_id() -> String {
    format_uuid(*uuid::Uuid::new_v4().as_bytes())
}

impl Server {
    /// Starts the server's background duties (leadership watch) on the current runtime.
    pub fn start(raft: RaftNode, config: ServerConfig) -> Self {
        let server = Server {
            inner: Arc::new(Inner {
                heartbeats: heartbeat::Heartbeats::new(config.heartbeat_ttl),
                keyring: drover_keyring::Keyring::new(config.kek.clone()),
                raft,
                config,
                nodes: Mutex::default(),
                sessions: Mutex::default(),
                exec_sessions: Mutex::default(),
                applier: tokio::sync::Mutex::new(()),
                inflight: Default::default(),
            }),
        };
        tokio::spawn(leader::watch_leadership(server.clone()));
        tokio::spawn(keyring::purge_plaintext_log(server.clone()));
        server
    }

    pub(crate) fn raft(&self) -> &RaftNode {
        &self.inner.raft
    }

    pub fn store(&self) -> &StateStore {
        self.inner.raft.store()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// Registers (or updates) a job and creates its evaluation.
    /// A periodic or parameterized parent gets no evaluation (its evaluation id is empty):
    /// it is never placed itself.
    pub async fn register_job(&self, job: Job) -> Result<JobRegistered, ServerError> {
        self.check_job(&job)?;
        if self
            .scheduler_config(&self.store().snapshot())
            .reject_job_registration
        {
            return Err(ServerError::Invalid(
                "job registration is disabled by the scheduler configuration (RejectJobRegistration; `drover operator scheduler set-config -reject-job-registration=false`)".into(),
            ));
        }
        let eval = (!job.is_parent()).then(|| Evaluation::new(new_id(), &job, "job-register"));
        let eval_id = eval.as_ref().map(|e| e.id.clone()).unwrap_or_default();
        let key = (job.namespace.clone(), job.id.clone());
        let resp = self
            .inner
            .raft
            .write(Command::JobRegister {
                job: Box::new(job),
                eval,
            })
            .await?;
        let job_modify_index = self
            .store()
            .snapshot()
            .job(&key.0, &key.1)
            .map_or(resp.index, |j| j.job_modify_index);
        Ok(JobRegistered {
            eval_id,
            eval_create_index: resp.index,
            job_modify_index,
            job_version: resp.job_version.unwrap_or(0),
        })
    }

    /// What the server refuses to register or plan: a job in a namespace or node pool that
    /// does not exist or with a driver or network mode its namespace does not allow, and
    /// task groups above `job_max_count`.
    fn check_job(&self, job: &Job) -> Result<(), ServerError> {
        namespaces::check_job_scope(&self.store().snapshot(), job)?;
        let max = self.config().job_max_count;
        for g in &job.groups {
            if g.count > max {
                return Err(ServerError::Invalid(format!(
                    "task group {:?} asks for count = {}, above this server's limit of {max} (server.job_max_count)",
                    g.name, g.count
                )));
            }
        }
        Ok(())
    }

    /// The scheduler's options on this server, under the configuration of `snap`.
    pub(crate) fn scheduler_options(
        &self,
        snap: &drover_state::StateSnapshot,
    ) -> drover_scheduler::Options {
        drover_scheduler::Options {
            now: now_nanos(),
            algorithm: self.scheduler_config(snap).scheduler_algorithm,
            max_placements: self.config().max_placements_per_eval,
            ..Default::default()
        }
    }

    /// Submits a plan to the plan applier, as a scheduler worker does (also the hook tests use
    /// to race plans computed from one snapshot).
    pub async fn submit_plan(&self, plan: drover_scheduler::Plan, eval: Evaluation) -> PlanOutcome {
        plan_apply::apply_plan(self, plan, eval).await
    }

    /// A dry run of registering `job`: the scheduler's plan against the current state, with
    /// the job version it would replace. Nothing is written. The scheduler runs on the
    /// blocking pool, never on the async runtime.
    pub async fn plan_job(&self, job: Job) -> Result<JobPlan, ServerError> {
        self.check_job(&job)?;
        let server = self.clone();
        tokio::task::spawn_blocking(move || server.plan_job_blocking(job))
            .await
            .map_err(|e| ServerError::Invalid(format!("the plan failed: {e}")))?
    }

    fn plan_job_blocking(&self, job: Job) -> Result<JobPlan, ServerError> {
        let snap = self.store().snapshot();
        let previous = snap.job(&job.namespace, &job.id).cloned();
        let scratch = StateStore::from_snapshot(snap.clone());
        let eval = Evaluation::new(new_id(), &job, "job-plan");
        let time = now_nanos();
        let entry = drover_state::Entry {
            time,
            command: Command::JobRegister {
                job: Box::new(job),
                eval: Some(eval.clone()),
            },
        };
        scratch.apply(snap.index() + 1, &entry);
        let after = scratch.snapshot();
        let eval = after
            .eval(&eval.id)
            .cloned()
            .expect("the plan's evaluation was just applied");
        let opts = self.scheduler_options(&after);
        let plan = drover_scheduler::schedule(&after, &eval, &opts)
            .map_err(|e| ServerError::Invalid(e.to_string()))?;
        Ok(JobPlan {
            previous,
            plan,
            before: snap,
        })
    }

    /// Stops one allocation; the evaluation that comes with it places a replacement.
    pub async fn stop_alloc(&self, alloc_id: &str) -> Result<(String, u64), ServerError> {
        let snap = self.store().snapshot();
        let a = snap
            .alloc(alloc_id)
            .ok_or_else(|| ServerError::NotFound(format!("allocation {alloc_id} not found")))?;
        let job = snap.job(&a.namespace, &a.job_id).ok_or_else(|| {
            ServerError::NotFound(format!("the job of allocation {alloc_id} is gone"))
        })?;
        let eval = Evaluation::new(new_id(), job, "alloc-stop");
        let eval_id = eval.id.clone();
        let stop = drover_state::AllocStop {
            alloc_id: a.id.clone(),
            description: "alloc was stopped by the user".into(),
            client_status: None,
        };
        let result = drover_state::PlanResult {
            stops: vec![stop],
            new_evals: vec![eval],
            ..Default::default()
        };
        let resp = self.inner.raft.write(Command::PlanApply(result)).await?;
        Ok((eval_id, resp.index))
    }

    /// Creates or replaces a variable; with `cas`, only at that modify index (0: only if
    /// absent).
    pub async fn put_variable(
        &self,
        var: Variable,
        cas: Option<u64>,
    ) -> Result<VarWrite, ServerError> {
        var.validate().map_err(ServerError::Invalid)?;
        if self.store().snapshot().namespace(&var.namespace).is_none() {
            return Err(ServerError::Invalid(format!(
                "variable {:?} is in nonexistent namespace {:?} (create it with `drover namespace apply {}`)",
                var.path, var.namespace, var.namespace
            )));
        }
        let items = var.items.clone();
        let var = self.seal_variable(var).await?;
        Ok(
            match self.write_variable(Command::VarUpsert { var, cas }).await? {
                // The stored variable with the items just written (it holds ciphertext).
                VarWrite::Done(Some(v)) => VarWrite::Done(Some(Arc::new(Variable {
                    items,
                    encrypted: None,
                    ..(*v).clone()
                }))),
                w => w,
            },
        )
    }

    /// Writes a variable command; a conflict's current variable comes back decrypted.
    async fn write_variable(&self, command: Command) -> Result<VarWrite, ServerError> {
        let resp = self.inner.raft.write(command).await?;
        if !resp.conflict {
            return Ok(VarWrite::Done(resp.variable));
        }
        let current = match resp.variable {
            Some(v) => {
                let snap = self.store().snapshot();
                Some(Arc::new(self.open_variable(&snap, &v).await?))
            }
            None => None,
        };
        Ok(VarWrite::Conflict(current))
    }

    /// Deletes a service registration (Nomad's `DELETE /v1/service/:name/:id`); the
    /// registration must exist under that namespace and service name. Returns the index.
    pub async fn delete_service_registration(
        &self,
        namespace: &str,
        service: &str,
        id: &str,
    ) -> Result<u64, ServerError> {
        let snap = self.store().snapshot();
        snap.service_registration(id)
            .filter(|r| r.namespace == namespace && r.service_name == service)
            .ok_or_else(|| {
                ServerError::NotFound(format!(
                    "service registration {id:?} of service {service:?} not found in namespace {namespace:?}"
                ))
            })?;
        let ids = vec![id.to_string()];
        Ok(self
            .inner
            .raft
            .write(Command::ServiceRegDelete { ids })
            .await?
            .index)
    }

    /// Deletes a variable; with `cas`, only at that modify index.
    pub async fn delete_variable(
        &self,
        namespace: &str,
        path: &str,
        cas: Option<u64>,
    ) -> Result<VarWrite, ServerError> {
        self.write_variable(Command::VarDelete {
            namespace: namespace.into(),
            path: path.into(),
            cas,
        })
        .await
    }

    /// Stops (or purges) a job and creates the evaluation that stops its allocations.
    pub async fn deregister_job(
        &self,
        namespace: &str,
        job_id: &str,
        purge: bool,
    ) -> Result<(String, u64), ServerError> {
        let snap = self.store().snapshot();
        let job = snap.job(namespace, job_id).ok_or_else(|| {
            ServerError::NotFound(format!(
                "job {job_id:?} not found in namespace {namespace:?}"
            ))
        })?;
        let eval = Evaluation::new(new_id(), job, "job-deregister");
        let eval_id = eval.id.clone();
        let resp = self
            .inner
            .raft
            .write(Command::JobDeregister {
                namespace: namespace.to_string(),
                job_id: job_id.to_string(),
                purge,
                eval: Some(eval),
            })
            .await?;
        Ok((eval_id, resp.index))
    }
}
