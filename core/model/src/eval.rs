use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Index, JobType, UnixNanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum EvalStatus {
    #[default]
    Pending,
    Complete,
    Failed,
    Blocked,
    Canceled,
}

impl EvalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EvalStatus::Pending => "pending",
            EvalStatus::Complete => "complete",
            EvalStatus::Failed => "failed",
            EvalStatus::Blocked => "blocked",
            EvalStatus::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            EvalStatus::Complete | EvalStatus::Failed | EvalStatus::Canceled
        )
    }
}

/// A request to reconcile a job's desired state with the cluster: the scheduler's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    /// Why it exists: "job-register", "job-deregister", "node-update", "alloc-failure", ...
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: Index,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub status: EvalStatus,
    pub status_description: String,
    /// Per task group: why placements failed.
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, PlacementFailure>,
    /// The blocked evaluation created to retry failed placements when capacity frees.
    pub blocked_eval: String,
    pub previous_eval: String,
    /// A delayed evaluation (a reschedule after its delay) is not processed before this time.
    pub wait_until: UnixNanos,
    pub create_index: Index,
    pub modify_index: Index,
    pub create_time: UnixNanos,
    pub modify_time: UnixNanos,
}

impl Evaluation {
    pub fn new(id: String, job: &crate::Job, triggered_by: &str) -> Self {
        Evaluation {
            id,
            namespace: job.namespace.clone(),
            priority: job.priority,
            job_type: job.job_type,
            triggered_by: triggered_by.to_string(),
            job_id: job.id.clone(),
            job_modify_index: job.job_modify_index,
            node_id: String::new(),
            status: EvalStatus::Pending,
            status_description: String::new(),
            failed_tg_allocs: BTreeMap::new(),
            blocked_eval: String::new(),
            previous_eval: String::new(),
            wait_until: 0,
            create_index: 0,
            modify_index: 0,
            create_time: 0,
            modify_time: 0,
        }
    }
}

/// Why a task group's allocations could not all be placed (Nomad's AllocMetric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PlacementFailure {
    /// Unplaced allocations beyond the first (Nomad's name and meaning).
    pub coalesced_failures: u32,
    pub nodes_evaluated: u32,
    pub nodes_filtered: u32,
    /// Filter reason -> how many nodes it removed ("missing driver raw_exec": 2).
    pub constraint_filtered: BTreeMap<String, u32>,
    /// Nodes that were feasible but full, per exhausted dimension ("memory": 3).
    pub dimension_exhausted: BTreeMap<String, u32>,
    /// The node that came nearest to fitting, and what it lacked.
    pub nearest_miss: String,
}
