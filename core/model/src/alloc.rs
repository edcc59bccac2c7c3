use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Index, Resources, UnixNanos};

/// What the servers want of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DesiredStatus {
    #[default]
    Run,
    Stop,
    Evict,
}

impl DesiredStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DesiredStatus::Run => "run",
            DesiredStatus::Stop => "stop",
            DesiredStatus::Evict => "evict",
        }
    }
}

/// What the client reports of an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    #[default]
    Pending,
    Running,
    Complete,
    Failed,
    Lost,
}

impl ClientStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientStatus::Pending => "pending",
            ClientStatus::Running => "running",
            ClientStatus::Complete => "complete",
            ClientStatus::Failed => "failed",
            ClientStatus::Lost => "lost",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost
        )
    }
}

/// One instance of a task group placed on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    /// `<job>.<group>[<index>]`
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The job version this allocation runs; the job itself is looked up, never embedded.
    pub job_version: u64,
    pub task_group: String,
    /// Resources reserved on the node, per task.
    pub task_resources: BTreeMap<String, Resources>,
    /// What the group shares: ephemeral disk and the ports assigned on the node.
    pub shared_resources: SharedResources,
    pub desired_status: DesiredStatus,
    pub desired_description: String,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The client's sequence number of the last status update applied.
    pub client_seq: u64,
    /// The allocation's own network (bridge and CNI modes), as its client configured it;
    /// `None` for host networking or before the network is up (Nomad's `NetworkStatus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_status: Option<NetworkStatus>,
    pub previous_allocation: String,
    /// The allocation that replaced this one (set when it is rescheduled).
    pub next_allocation: String,
    /// Earlier reschedules in this allocation's chain, for the reschedule policy.
    pub reschedule_tracker: Vec<RescheduleEvent>,
    pub create_index: Index,
    pub modify_index: Index,
    /// The index of the last change the servers made (placement, stop, update): what the
    /// client must act on. Client status reports bump only `modify_index`.
    pub alloc_modify_index: Index,
    pub create_time: UnixNanos,
    pub modify_time: UnixNanos,
}

impl Allocation {
    /// The allocation's index within its group, parsed from its name.
    pub fn index(&self) -> u32 {
        self.name
            .rsplit_once('[')
            .and_then(|(_, rest)| rest.strip_suffix(']'))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// What the allocation holds on its node: its tasks' resources plus the group's disk.
    pub fn resources(&self) -> Resources {
        let mut r = self
            .task_resources
            .values()
            .fold(Resources::ZERO, |acc, r| acc.add(r));
        r.disk_mb += self.shared_resources.disk_mb;
        r
    }

    /// When the client last reported the allocation failed (its latest task finish time).
    pub fn failed_at(&self) -> UnixNanos {
        self.task_states
            .values()
            .map(|t| t.finished_at)
            .max()
            .unwrap_or(0)
            .max(self.modify_time)
    }

    /// Whether the allocation holds (or will hold) resources on its node.
    pub fn is_active(&self) -> bool {
        self.desired_status == DesiredStatus::Run && !self.client_status.is_terminal()
    }

    /// Whether the allocation is finished: stopped by the servers or ended on the client.
    pub fn is_terminal(&self) -> bool {
        self.desired_status != DesiredStatus::Run || self.client_status.is_terminal()
    }

    /// Whether `job` (None: gone) still needs this allocation's record once it has ended: a
    /// live batch job's completed allocation records that its work is done, and a failed one
    /// not yet replaced counts for the reschedule policy. (What the garbage collector keeps.)
    pub fn still_needed_by(&self, job: Option<&crate::Job>) -> bool {
        let Some(job) = job.filter(|j| !j.stop) else {
            return false;
        };
        if self.desired_status != DesiredStatus::Run {
            return false;
        }
        match self.client_status {
            ClientStatus::Complete => job.job_type.runs_to_completion(),
            ClientStatus::Failed => self.next_allocation.is_empty(),
            _ => false,
        }
    }
}

/// A task's lifecycle state on the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TaskLifecycle {
    #[default]
    Pending,
    Running,
    Dead,
}

impl TaskLifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskLifecycle::Pending => "pending",
            TaskLifecycle::Running => "running",
            TaskLifecycle::Dead => "dead",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    pub state: TaskLifecycle,
    pub failed: bool,
    pub restarts: u32,
    #[serde(with = "crate::serde_fmt::rfc3339")]
    pub started_at: UnixNanos,
    #[serde(with = "crate::serde_fmt::rfc3339")]
    pub finished_at: UnixNanos,
    pub events: Vec<TaskEvent>,
}

/// Something that happened to a task. `kind` uses Nomad's event names
/// ("Received", "Task Setup", "Started", "Terminated", "Restarting", "Killing", "Killed",
/// "Driver", ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub kind: String,
    pub time: UnixNanos,
    pub message: String,
    pub display_message: String,
    pub exit_code: i32,
    pub signal: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub fails_task: bool,
    /// Why an artifact could not be fetched ("Failed Artifact Download" events).
    pub download_error: String,
    /// What the task's driver reported ("Driver" events: an image pull's progress).
    pub driver_message: String,
}

/// A client's report of an allocation, carried up the node stream and through Raft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocClientUpdate {
    #[serde(rename = "AllocID")]
    pub alloc_id: String,
    /// Per-allocation sequence number assigned by the client: older never overwrites newer.
    pub seq: u64,
    pub client_status: ClientStatus,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    /// The allocation's network once configured (kept by the servers until the next report
    /// carrying one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_status: Option<NetworkStatus>,
}

/// An allocation's own network as its client configured it (Nomad's `AllocNetworkStatus`):
/// the interface the address is on, the addresses, and the DNS the tasks use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkStatus {
    pub interface_name: String,
    pub address: String,
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    #[serde(rename = "DNS")]
    pub dns: Option<crate::DnsConfig>,
}

/// Resources an allocation's group shares on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SharedResources {
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
    /// Host ports assigned to the group's network ports (static and dynamic).
    pub ports: Vec<AllocatedPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocatedPort {
    pub label: String,
    /// The host port.
    pub value: u16,
    /// The port inside the task's network namespace.
    pub to: i32,
    #[serde(rename = "HostIP")]
    pub host_ip: String,
}

/// One reschedule in an allocation's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RescheduleEvent {
    pub reschedule_time: UnixNanos,
    #[serde(rename = "PrevAllocID")]
    pub prev_alloc_id: String,
    #[serde(rename = "PrevNodeID")]
    pub prev_node_id: String,
    /// The delay applied before this reschedule.
    pub delay: i64,
}
