use std::collections::BTreeMap;

use im::OrdMap;
use serde::{Deserialize, Serialize};

use drover_model::{Allocation, EvalStatus, Evaluation, Index, Job, JobStatus, Node};

/// The tables whose modify indexes are tracked for blocking queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Jobs,
    Allocs,
    Evals,
    Nodes,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        Some(match s {
            "jobs" => Table::Jobs,
            "allocs" => Table::Allocs,
            "evals" => Table::Evals,
            "nodes" => Table::Nodes,
            _ => return None,
        })
    }
}

type JobKey = (String, String);

/// An immutable view of the whole state at one index. Cloning it is O(1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "SnapshotData", from = "SnapshotData")]
pub struct StateSnapshot {
    pub(crate) index: Index,
    pub(crate) table_index: BTreeMap<Table, Index>,
    pub(crate) jobs: OrdMap<JobKey, Job>,
    pub(crate) job_versions: OrdMap<(String, String, u64), Job>,
    pub(crate) allocs: OrdMap<String, Allocation>,
    pub(crate) evals: OrdMap<String, Evaluation>,
    pub(crate) nodes: OrdMap<String, Node>,
    // Secondary indexes, rebuilt on restore.
    pub(crate) allocs_by_node: OrdMap<(String, String), ()>,
    pub(crate) allocs_by_job: OrdMap<(String, String, String), ()>,
    pub(crate) evals_by_job: OrdMap<(String, String, String), ()>,
}

/// The serialized form of a state: its tables as lists (the keys are derived).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    index: Index,
    table_index: BTreeMap<Table, Index>,
    jobs: Vec<Job>,
    job_versions: Vec<Job>,
    allocs: Vec<Allocation>,
    evals: Vec<Evaluation>,
    nodes: Vec<Node>,
}

impl From<StateSnapshot> for SnapshotData {
    fn from(s: StateSnapshot) -> Self {
        SnapshotData {
            index: s.index,
            table_index: s.table_index,
            jobs: s.jobs.values().cloned().collect(),
            job_versions: s.job_versions.values().cloned().collect(),
            allocs: s.allocs.values().cloned().collect(),
            evals: s.evals.values().cloned().collect(),
            nodes: s.nodes.values().cloned().collect(),
        }
    }
}

impl From<SnapshotData> for StateSnapshot {
    fn from(d: SnapshotData) -> Self {
        let mut s = StateSnapshot {
            index: d.index,
            table_index: d.table_index,
            jobs: d
                .jobs
                .into_iter()
                .map(|j| ((j.namespace.clone(), j.id.clone()), j))
                .collect(),
            job_versions: d
                .job_versions
                .into_iter()
                .map(|j| ((j.namespace.clone(), j.id.clone(), j.version), j))
                .collect(),
            allocs: d.allocs.into_iter().map(|a| (a.id.clone(), a)).collect(),
            evals: d.evals.into_iter().map(|e| (e.id.clone(), e)).collect(),
            nodes: d.nodes.into_iter().map(|n| (n.id.clone(), n)).collect(),
            ..Default::default()
        };
        s.rebuild_indexes();
        s
    }
}

impl StateSnapshot {
    /// The index of the last applied entry.
    pub fn index(&self) -> Index {
        self.index
    }

    pub fn table_index(&self, t: Table) -> Index {
        self.table_index.get(&t).copied().unwrap_or(0)
    }

    pub fn job(&self, namespace: &str, id: &str) -> Option<&Job> {
        self.jobs.get(&(namespace.to_string(), id.to_string()))
    }

    pub fn job_version(&self, namespace: &str, id: &str, version: u64) -> Option<&Job> {
        self.job_versions
            .get(&(namespace.to_string(), id.to_string(), version))
    }

    /// Every stored version of a job, newest first.
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<&Job> {
        let lo = (namespace.to_string(), id.to_string(), 0);
        let hi = (namespace.to_string(), id.to_string(), u64::MAX);
        let mut v: Vec<&Job> = self.job_versions.range(lo..=hi).map(|(_, j)| j).collect();
        v.reverse();
        v
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn alloc(&self, id: &str) -> Option<&Allocation> {
        self.allocs.get(id)
    }

    pub fn allocs(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.values()
    }

    pub fn allocs_by_node(&self, node_id: &str) -> impl Iterator<Item = &Allocation> {
        let lo = (node_id.to_string(), String::new());
        self.allocs_by_node
            .range(lo..)
            .take_while(move |((n, _), _)| n == node_id)
            .filter_map(|((_, a), _)| self.allocs.get(a))
    }

    pub fn allocs_by_job(
        &self,
        namespace: &str,
        job_id: &str,
    ) -> impl Iterator<Item = &Allocation> {
        let lo = (namespace.to_string(), job_id.to_string(), String::new());
        self.allocs_by_job
            .range(lo..)
            .take_while(move |((ns, j, _), _)| ns == namespace && j == job_id)
            .filter_map(|((_, _, a), _)| self.allocs.get(a))
    }

    pub fn eval(&self, id: &str) -> Option<&Evaluation> {
        self.evals.get(id)
    }

    pub fn evals(&self) -> impl Iterator<Item = &Evaluation> {
        self.evals.values()
    }

    pub fn evals_by_job(&self, namespace: &str, job_id: &str) -> impl Iterator<Item = &Evaluation> {
        let lo = (namespace.to_string(), job_id.to_string(), String::new());
        self.evals_by_job
            .range(lo..)
            .take_while(move |((ns, j, _), _)| ns == namespace && j == job_id)
            .filter_map(|((_, _, e), _)| self.evals.get(e))
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// A job's status as Nomad derives it: running while any allocation is, pending while
    /// evaluations or placements are outstanding, dead when stopped or finished.
    pub(crate) fn derive_job_status(&self, job: &Job) -> JobStatus {
        let mut any_alloc = false;
        for a in self.allocs_by_job(&job.namespace, &job.id) {
            any_alloc = true;
            if !a.client_status.is_terminal()
                && a.desired_status == drover_model::DesiredStatus::Run
            {
                return JobStatus::Running;
            }
        }
        let pending_eval = self
            .evals_by_job(&job.namespace, &job.id)
            .any(|e| matches!(e.status, EvalStatus::Pending | EvalStatus::Blocked));
        if job.stop {
            return JobStatus::Dead;
        }
        if pending_eval {
            return JobStatus::Pending;
        }
        if any_alloc {
            JobStatus::Dead
        } else {
            JobStatus::Pending
        }
    }

    fn rebuild_indexes(&mut self) {
        self.allocs_by_node = self
            .allocs
            .values()
            .map(|a| ((a.node_id.clone(), a.id.clone()), ()))
            .collect();
        self.allocs_by_job = self
            .allocs
            .values()
            .map(|a| ((a.namespace.clone(), a.job_id.clone(), a.id.clone()), ()))
            .collect();
        self.evals_by_job = self
            .evals
            .values()
            .map(|e| ((e.namespace.clone(), e.job_id.clone(), e.id.clone()), ()))
            .collect();
    }

    /// Serializes the whole state (the Raft snapshot's payload).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("state serializes")
    }

    /// Rebuilds a state from the JSON value `serde_json::to_value(&snapshot)` produced.
    pub fn from_value(v: serde_json::Value) -> Result<Self, serde_json::Error> {
        serde_json::from_value(v)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}
