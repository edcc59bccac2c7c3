use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Index, UnixNanos};

/// A rollout of a new job version under the `update` strategy (tracked, not driven yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Deployment {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    pub job_modify_index: Index,
    /// "running", "paused", "failed", "successful", "cancelled".
    pub status: String,
    pub status_description: String,
    pub task_groups: BTreeMap<String, DeploymentState>,
    pub create_index: Index,
    pub modify_index: Index,
    pub create_time: UnixNanos,
    pub modify_time: UnixNanos,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeploymentState {
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub promoted: bool,
    pub desired_canaries: u32,
    pub desired_total: u32,
    pub placed_allocs: u32,
    pub healthy_allocs: u32,
    pub unhealthy_allocs: u32,
    pub placed_canaries: Vec<String>,
}
