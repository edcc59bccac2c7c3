use serde::{Deserialize, Serialize};

use crate::RestoreRows;

use drover_model::{
    AclPolicy, AclRole, AclToken, AllocClientUpdate, Allocation, ClientStatus, Evaluation, Index,
    Job, Namespace, Node, NodePool, NodeStatus, RootKey, SchedulerConfiguration,
    ServiceRegistration, UnixNanos, Variable,
};

/// One Raft log entry's payload: a command stamped with the leader's clock, so every server
/// applies it identically. Encoded as `{"v": <encoding version>, "time", "command"}`
/// (see [`crate::version`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub time: UnixNanos,
    pub command: Command,
}

/// Every change to the cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Register a job (new or a new version) and the evaluation that reconciles it.
    JobRegister {
        job: Box<Job>,
        eval: Option<Evaluation>,
    },
    /// Stop a job (or purge it from state) and evaluate it.
    JobDeregister {
        namespace: String,
        job_id: String,
        purge: bool,
        eval: Option<Evaluation>,
    },
    NodeRegister {
        node: Node,
    },
    /// A node's status changes (ready, down); evaluations for its jobs come with it.
    NodeStatus {
        node_id: String,
        status: NodeStatus,
        description: String,
        evals: Vec<Evaluation>,
    },
    /// Clients' reports of their allocations, and evaluations they make necessary.
    AllocClientUpdate {
        updates: Vec<AllocClientUpdate>,
        evals: Vec<Evaluation>,
    },
    /// The result of a plan the applier accepted.
    PlanApply(PlanResult),
    EvalUpsert {
        evals: Vec<Evaluation>,
    },
    /// The garbage collector's deletions (Nomad's core GC). Each is checked again as it
    /// applies, against what the collector saw: a job or node only at the modify index the
    /// collector saw (a job registered again meanwhile survives), then an evaluation only if
    /// it is finished, an allocation only if its client reports it ended and its job, as it
    /// is then, does not still need it (`Allocation::still_needed_by`). A deleted job takes
    /// its versions with it. (Entries written as `EvalDelete { eval_ids }` by earlier versions
    /// still read as this.)
    #[serde(alias = "EvalDelete")]
    Collect {
        #[serde(default, alias = "eval_ids")]
        evals: Vec<String>,
        #[serde(default)]
        allocs: Vec<String>,
        #[serde(default)]
        jobs: Vec<JobAt>,
        #[serde(default)]
        nodes: Vec<NodeAt>,
    },
    /// Create or replace a variable. With `cas`, only if its modify index is `cas` (0: only
    /// if it does not exist); otherwise the response reports a conflict and nothing changes.
    VarUpsert {
        var: Variable,
        cas: Option<Index>,
    },
    /// Delete a variable (with `cas`, only at that modify index).
    VarDelete {
        namespace: String,
        path: String,
        cas: Option<Index>,
    },
    /// Registers service instances (a client's, for the allocations it runs). Skips any
    /// whose allocation is unknown, on another node, or has ended.
    ServiceRegUpsert {
        services: Vec<ServiceRegistration>,
    },
    /// Deletes service registrations by id (a client deregistering, or the API's delete).
    ServiceRegDelete {
        ids: Vec<String>,
    },
    /// Adds or replaces a root key of the keyring (its secret material wrapped by the
    /// key-encryption key). An active key demotes the previously active one to inactive.
    RootKeyUpsert {
        key: RootKey,
    },
    /// Removes a root key, unless it is active or a variable is still encrypted with it.
    RootKeyDelete {
        key_id: String,
    },
    /// Creates or replaces ACL policies (by name; an update keeps its create index).
    AclPolicyUpsert {
        policies: Vec<AclPolicy>,
    },
    /// Deletes ACL policies by name (unknown names are ignored).
    AclPolicyDelete {
        names: Vec<String>,
    },
    /// Creates or replaces ACL tokens (by accessor id). A token carries only the SHA-256 of
    /// its secret; a token whose secret hash another token already has is refused.
    AclTokenUpsert {
        tokens: Vec<AclToken>,
    },
    /// Deletes ACL tokens by accessor id (unknown ones are ignored): a user's delete, or
    /// the leader reaping expired tokens.
    AclTokenDelete {
        accessors: Vec<String>,
    },
    /// Nomad's ACL bootstrap: creates the first management token, only if the cluster was
    /// never bootstrapped, or if `reset_index` is the index of the last bootstrap (the
    /// `acl-bootstrap-reset` file's way to bootstrap again).
    AclBootstrap {
        token: AclToken,
        reset_index: Option<Index>,
    },
    /// Creates or replaces ACL roles (by id; names are unique).
    AclRoleUpsert {
        roles: Vec<AclRole>,
    },
    /// Deletes ACL roles by id.
    AclRoleDelete {
        ids: Vec<String>,
    },
    /// Creates or updates namespaces (an update keeps its create index). All or nothing:
    /// one that is not valid refuses the command.
    NamespaceUpsert {
        namespaces: Vec<Namespace>,
    },
    /// Deletes namespaces. All or nothing: `default`, an unknown one, or one that holds
    /// jobs or variables refuses the command, naming why.
    NamespaceDelete {
        names: Vec<String>,
    },
    /// Creates or updates node pools. All or nothing: a built-in pool or an invalid one
    /// refuses the command.
    NodePoolUpsert {
        pools: Vec<NodePool>,
    },
    /// Deletes node pools. All or nothing: a built-in, unknown or non-empty (nodes or jobs)
    /// pool refuses the command, naming why.
    NodePoolDelete {
        names: Vec<String>,
    },
    /// Sets the cluster's scheduler configuration; with `cas`, only if the current one's
    /// modify index is `cas` (0: only if none was set), else a conflict changes nothing.
    SchedulerConfigSet {
        config: SchedulerConfiguration,
        cas: Option<Index>,
    },
    /// Commands written concurrently, committed as one entry (one fsync) and applied in order.
    Batch(Vec<Command>),
    /// Replaces the whole state with a backup in one entry. Written by earlier versions
    /// only (a large state did not fit one entry, nor one replication message); still
    /// applied when read from a log. Restores now use `RestoreChunk` and `RestoreSwap`.
    Restore {
        state: serde_json::Value,
    },
    /// One bounded part of a backup being restored (`operator snapshot restore`): rows
    /// staged in the state, invisible to reads, until `RestoreSwap`. Chunk 0 starts a new
    /// staging (dropping any abandoned one); a chunk out of sequence is refused.
    RestoreChunk {
        id: String,
        seq: u32,
        rows: RestoreRows,
    },
    /// Replaces the whole state with the staged restore `id`, if all `chunks` are staged.
    RestoreSwap {
        id: String,
        chunks: u32,
    },
    /// Drops the staged restore `id` (one that failed part-way), if it is still staged.
    RestoreAbort {
        id: String,
    },
    /// A command this server cannot decode (written by a newer one). Never written by this
    /// server and never applied: the state machine stops at it.
    #[serde(skip)]
    Unknown(crate::UnknownCommand),
}

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Command::JobRegister { .. } => "JobRegister",
            Command::JobDeregister { .. } => "JobDeregister",
            Command::NodeRegister { .. } => "NodeRegister",
            Command::NodeStatus { .. } => "NodeStatus",
            Command::AllocClientUpdate { .. } => "AllocClientUpdate",
            Command::PlanApply(_) => "PlanApply",
            Command::EvalUpsert { .. } => "EvalUpsert",
            Command::Collect { .. } => "Collect",
            Command::VarUpsert { .. } => "VarUpsert",
            Command::VarDelete { .. } => "VarDelete",
            Command::Batch(_) => "Batch",
            Command::Restore { .. } => "Restore",
            Command::RestoreChunk { .. } => "RestoreChunk",
            Command::RestoreSwap { .. } => "RestoreSwap",
            Command::RestoreAbort { .. } => "RestoreAbort",
            Command::ServiceRegUpsert { .. } => "ServiceRegUpsert",
            Command::ServiceRegDelete { .. } => "ServiceRegDelete",
            Command::RootKeyUpsert { .. } => "RootKeyUpsert",
            Command::RootKeyDelete { .. } => "RootKeyDelete",
            Command::AclPolicyUpsert { .. } => "AclPolicyUpsert",
            Command::AclPolicyDelete { .. } => "AclPolicyDelete",
            Command::AclTokenUpsert { .. } => "AclTokenUpsert",
            Command::AclTokenDelete { .. } => "AclTokenDelete",
            Command::AclBootstrap { .. } => "AclBootstrap",
            Command::AclRoleUpsert { .. } => "AclRoleUpsert",
            Command::AclRoleDelete { .. } => "AclRoleDelete",
            Command::NamespaceUpsert { .. } => "NamespaceUpsert",
            Command::NamespaceDelete { .. } => "NamespaceDelete",
            Command::NodePoolUpsert { .. } => "NodePoolUpsert",
            Command::NodePoolDelete { .. } => "NodePoolDelete",
            Command::SchedulerConfigSet { .. } => "SchedulerConfigSet",
            Command::Unknown(_) => "Unknown",
        }
    }

    /// The server version that introduced this command: the leader writes it only once
    /// every server reports at least this version (see `ServerNode::version`). A batch
    /// needs what its most recent command needs.
    pub fn min_version(&self) -> u32 {
        match self {
            // The keyring (issue 22): root keys, and variables (or restored rows) holding
            // ciphertext, which an older server would store as empty.
            Command::RootKeyUpsert { .. } | Command::RootKeyDelete { .. } => 4,
            Command::VarUpsert { var, .. } if var.encrypted.is_some() => 4,
            Command::RestoreChunk { rows, .. }
                if !rows.root_keys.is_empty()
                    || rows.variables.iter().any(|v| v.encrypted.is_some()) =>
            {
                4
            }
            Command::JobRegister { .. }
            | Command::JobDeregister { .. }
            | Command::NodeRegister { .. }
            | Command::NodeStatus { .. }
            | Command::AllocClientUpdate { .. }
            | Command::PlanApply(_)
            | Command::EvalUpsert { .. }
            | Command::Collect { .. }
            | Command::VarUpsert { .. }
            | Command::VarDelete { .. }
            | Command::Restore { .. } => 1,
            // Added after 580767e (the first versioned server is 2).
            Command::RestoreChunk { .. }
            | Command::RestoreSwap { .. }
            | Command::RestoreAbort { .. } => 2,
            // The service catalog (issue 19).
            Command::ServiceRegUpsert { .. } | Command::ServiceRegDelete { .. } => 3,
            // ACLs (issue 20).
            Command::AclPolicyUpsert { .. }
            | Command::AclPolicyDelete { .. }
            | Command::AclTokenUpsert { .. }
            | Command::AclTokenDelete { .. }
            | Command::AclBootstrap { .. }
            | Command::AclRoleUpsert { .. }
            | Command::AclRoleDelete { .. } => ACL_VERSION,
            // Namespaces, node pools and the scheduler configuration (issue 25).
            Command::NamespaceUpsert { .. }
            | Command::NamespaceDelete { .. }
            | Command::NodePoolUpsert { .. }
            | Command::NodePoolDelete { .. }
            | Command::SchedulerConfigSet { .. } => 4,
            Command::Batch(cs) => cs.iter().map(Command::min_version).max().unwrap_or(1),
            // Never written; a server that has it cannot apply it.
            Command::Unknown(u) => u.version.max(crate::ENCODING_VERSION + 1),
        }
    }
}

/// The server version that introduced the ACL commands. Other features may bump
/// [`crate::SERVER_VERSION`] too: this stays the version ACLs came with.
pub const ACL_VERSION: u32 = 4;

/// A job as the garbage collector saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobAt {
    pub namespace: String,
    pub job_id: String,
    pub modify_index: Index,
}

/// A node as the garbage collector saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAt {
    pub node_id: String,
    pub modify_index: Index,
}

/// What a committed plan changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct PlanResult {
    /// New allocations and in-place updates, complete.
    pub allocs: Vec<Allocation>,
    pub stops: Vec<AllocStop>,
    /// The evaluation that produced the plan, with its final status.
    pub eval: Option<Evaluation>,
    /// Follow-up evaluations (blocked, delayed).
    pub new_evals: Vec<Evaluation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocStop {
    pub alloc_id: String,
    pub description: String,
    /// Set when the servers know the client status (e.g. `lost` for a down node).
    pub client_status: Option<ClientStatus>,
}

/// What applying an entry answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Response {
    pub index: Index,
    /// Set when the command was refused by the state machine (e.g. deregistering an unknown job).
    pub error: Option<String>,
    /// The job version a JobRegister produced.
    pub job_version: Option<u64>,
    /// For a Batch: each command's answer, in order.
    pub batch: Vec<Response>,
    /// VarUpsert/VarDelete: the check-and-set index did not match; nothing changed.
    #[serde(default)]
    pub conflict: bool,
    /// VarUpsert: the variable as stored; on a conflict, the current one (if any).
    #[serde(default)]
    pub variable: Option<std::sync::Arc<Variable>>,
}
