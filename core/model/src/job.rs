use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{DEFAULT_NAMESPACE, Index, UnixNanos};

/// What kind of scheduling a job gets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Long-running: allocations are kept running and replaced when they fail.
    #[default]
    Service,
    /// Run to completion: a task that exits 0 is done.
    Batch,
    /// One allocation on every eligible node.
    System,
    /// One run-to-completion allocation on every eligible node.
    Sysbatch,
}

impl JobType {
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Service => "service",
            JobType::Batch => "batch",
            JobType::System => "system",
            JobType::Sysbatch => "sysbatch",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "service" => JobType::Service,
            "batch" => JobType::Batch,
            "system" => JobType::System,
            "sysbatch" => JobType::Sysbatch,
            _ => return None,
        })
    }

    /// Whether a task that exits successfully is finished rather than restarted.
    pub fn runs_to_completion(self) -> bool {
        matches!(self, JobType::Batch | JobType::Sysbatch)
    }
}

/// A job's overall status, derived from its allocations and evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    #[default]
    Pending,
    Running,
    Dead,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Dead => "dead",
        }
    }
}

/// A job: the unit users submit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub namespace: String,
    pub id: String,
    pub name: String,
    pub job_type: JobType,
    pub priority: i32,
    pub region: String,
    pub datacenters: Vec<String>,
    pub meta: BTreeMap<String, String>,
    pub groups: Vec<TaskGroup>,
    /// Set by `job stop`: the job stays in state but its allocations are stopped.
    pub stop: bool,
    pub status: JobStatus,
    /// Incremented on every registration that changes the job.
    pub version: u64,
    pub submit_time: UnixNanos,
    pub create_index: Index,
    pub modify_index: Index,
    /// The index of the last registration that changed the job's specification.
    pub job_modify_index: Index,
}

impl Job {
    /// A job with Nomad's defaults for everything but its id and groups.
    pub fn new(id: impl Into<String>, job_type: JobType) -> Self {
        let id = id.into();
        Job {
            namespace: DEFAULT_NAMESPACE.to_string(),
            name: id.clone(),
            id,
            job_type,
            priority: 50,
            region: "global".to_string(),
            datacenters: vec!["*".to_string()],
            meta: BTreeMap::new(),
            groups: Vec::new(),
            stop: false,
            status: JobStatus::Pending,
            version: 0,
            submit_time: 0,
            create_index: 0,
            modify_index: 0,
            job_modify_index: 0,
        }
    }

    pub fn group(&self, name: &str) -> Option<&TaskGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Whether two versions of a job differ in anything the user specified
    /// (as opposed to bookkeeping such as indexes, status and version).
    pub fn spec_differs(&self, other: &Job) -> bool {
        let strip = |j: &Job| {
            let mut j = j.clone();
            j.status = JobStatus::Pending;
            j.version = 0;
            j.submit_time = 0;
            j.create_index = 0;
            j.modify_index = 0;
            j.job_modify_index = 0;
            j
        };
        strip(self) != strip(other)
    }
}

/// A group of tasks placed together on one node, `count` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskGroup {
    pub name: String,
    pub count: u32,
    pub meta: BTreeMap<String, String>,
    pub restart: RestartPolicy,
    pub tasks: Vec<Task>,
}

impl TaskGroup {
    /// The sum of the group's tasks' resources: what one allocation needs.
    pub fn resources(&self) -> Resources {
        self.tasks
            .iter()
            .fold(Resources::ZERO, |acc, t| acc.add(&t.resources))
    }
}

/// One process (or container, or VM) run by a task driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub name: String,
    pub driver: String,
    /// The driver's free-form `config { ... }` block.
    pub config: serde_json::Map<String, serde_json::Value>,
    pub env: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub resources: Resources,
    /// The task's own restart policy; the group's applies where this is absent.
    pub restart: Option<RestartPolicy>,
    pub user: String,
    pub kill_timeout: Duration,
    pub kill_signal: String,
    pub logs: LogConfig,
}

impl Task {
    pub fn new(name: impl Into<String>, driver: impl Into<String>) -> Self {
        Task {
            name: name.into(),
            driver: driver.into(),
            config: serde_json::Map::new(),
            env: BTreeMap::new(),
            meta: BTreeMap::new(),
            resources: Resources::default(),
            restart: None,
            user: String::new(),
            kill_timeout: Duration::from_secs(5),
            kill_signal: "SIGTERM".to_string(),
            logs: LogConfig::default(),
        }
    }
}

/// Compute resources a task asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU in MHz.
    pub cpu: u64,
    pub memory_mb: u64,
    /// The hard memory limit when it may exceed `memory_mb` (oversubscription); 0 = none.
    pub memory_max_mb: u64,
}

impl Default for Resources {
    /// Nomad's defaults: 100 MHz and 300 MB.
    fn default() -> Self {
        Resources {
            cpu: 100,
            memory_mb: 300,
            memory_max_mb: 0,
        }
    }
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu: 0,
        memory_mb: 0,
        memory_max_mb: 0,
    };

    pub fn add(&self, o: &Resources) -> Resources {
        Resources {
            cpu: self.cpu + o.cpu,
            memory_mb: self.memory_mb + o.memory_mb,
            memory_max_mb: self.memory_max_mb + o.memory_max_mb,
        }
    }
}

/// What happens when a task exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RestartMode {
    /// After `attempts` restarts within `interval`, the task fails.
    Fail,
    /// After `attempts` restarts within `interval`, wait for the rest of the interval and go on.
    Delay,
}

impl RestartMode {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartMode::Fail => "fail",
            RestartMode::Delay => "delay",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub attempts: u32,
    pub interval: Duration,
    pub delay: Duration,
    pub mode: RestartMode,
}

impl RestartPolicy {
    /// Nomad's defaults per job type.
    pub fn default_for(job_type: JobType) -> Self {
        match job_type {
            JobType::Service | JobType::System => RestartPolicy {
                attempts: 2,
                interval: Duration::from_secs(30 * 60),
                delay: Duration::from_secs(15),
                mode: RestartMode::Fail,
            },
            JobType::Batch | JobType::Sysbatch => RestartPolicy {
                attempts: 3,
                interval: Duration::from_secs(24 * 3600),
                delay: Duration::from_secs(15),
                mode: RestartMode::Fail,
            },
        }
    }
}

/// How a task's stdout and stderr are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    pub max_files: u32,
    pub max_file_size_mb: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
        }
    }
}
