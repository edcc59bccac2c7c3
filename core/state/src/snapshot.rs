use std::collections::BTreeMap;
use std::sync::Arc;

use im::OrdMap;
use serde::{Deserialize, Serialize};

use drover_model::{
    Allocation, EvalStatus, Evaluation, Index, Job, JobStatus, Node, ServiceRegistration, Variable,
};

/// The tables whose modify indexes are tracked for blocking queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Table {
    Jobs,
    Allocs,
    Evals,
    Nodes,
    Variables,
    Services,
}

impl Table {
    pub fn parse(s: &str) -> Option<Table> {
        Some(match s {
            "jobs" => Table::Jobs,
            "allocs" => Table::Allocs,
            "evals" => Table::Evals,
            "nodes" => Table::Nodes,
            "variables" => Table::Variables,
            "services" => Table::Services,
            _ => return None,
        })
    }
}

type JobKey = (String, String);

/// (negated priority, create index, id): highest priority first, then oldest.
pub(crate) type PendingKey = (i64, Index, String);

pub(crate) fn service_name_key(r: &ServiceRegistration) -> (String, String, String) {
    (r.namespace.clone(), r.service_name.clone(), r.id.clone())
}

pub(crate) fn pending_key(e: &Evaluation) -> PendingKey {
    (-(e.priority as i64), e.create_index, e.id.clone())
}

/// An immutable view of the whole state at one index. Cloning it is O(1).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(into = "SnapshotData", from = "SnapshotData")]
pub struct StateSnapshot {
    pub(crate) index: Index,
    pub(crate) table_index: BTreeMap<Table, Index>,
    // Rows are shared (`Arc`): a write copies the B-tree nodes on its path, and a node then
    // holds 64 pointers instead of 64 whole rows (a job is kilobytes deep).
    pub(crate) jobs: OrdMap<JobKey, Arc<Job>>,
    pub(crate) job_versions: OrdMap<(String, String, u64), Arc<Job>>,
    pub(crate) allocs: OrdMap<String, Arc<Allocation>>,
    pub(crate) evals: OrdMap<String, Arc<Evaluation>>,
    pub(crate) nodes: OrdMap<String, Arc<Node>>,
    /// (namespace, path) -> variable.
    pub(crate) vars: OrdMap<(String, String), Arc<Variable>>,
    /// Service registrations by id.
    pub(crate) services: OrdMap<String, Arc<ServiceRegistration>>,
    // Secondary indexes, rebuilt on restore.
    /// (namespace, service name, registration id).
    pub(crate) services_by_name: OrdMap<(String, String, String), ()>,
    /// (allocation id, registration id).
    pub(crate) services_by_alloc: OrdMap<(String, String), ()>,
    pub(crate) allocs_by_node: OrdMap<(String, String), ()>,
    pub(crate) allocs_by_job: OrdMap<(String, String, String), ()>,
    pub(crate) evals_by_job: OrdMap<(String, String, String), ()>,
    /// Pending evaluations in the order the broker serves them.
    pub(crate) evals_pending: OrdMap<PendingKey, ()>,
    /// A restore being committed chunk by chunk (part of the state, so it survives
    /// snapshots and reaches servers that install one mid-restore).
    pub(crate) staged: Option<StagedRestore>,
}

/// Rows of a backup, part of a restore (`Command::RestoreChunk`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RestoreRows {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jobs: Vec<Arc<Job>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub job_versions: Vec<Arc<Job>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocs: Vec<Arc<Allocation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evals: Vec<Arc<Evaluation>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Arc<Node>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Arc<Variable>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Arc<ServiceRegistration>>,
}

impl RestoreRows {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.job_versions.is_empty()
            && self.allocs.is_empty()
            && self.evals.is_empty()
            && self.nodes.is_empty()
            && self.variables.is_empty()
            && self.services.is_empty()
    }
}

/// A restore being staged: its id and the chunks committed so far, in order.
#[derive(Debug, Clone)]
pub(crate) struct StagedRestore {
    pub(crate) id: String,
    pub(crate) chunks: im::Vector<Arc<RestoreRows>>,
}

#[derive(Serialize, Deserialize)]
struct StagedData {
    id: String,
    chunks: Vec<Arc<RestoreRows>>,
}

/// A row too large for any chunk.
#[derive(Debug, thiserror::Error)]
#[error("a {table} row of {bytes} bytes exceeds the {max}-byte limit of one Raft entry")]
pub struct RowTooLarge {
    pub table: &'static str,
    pub bytes: usize,
    pub max: usize,
}

/// Counts serialized bytes without keeping them.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The size of `v` serialized as JSON.
pub fn json_size<T: Serialize + ?Sized>(v: &T) -> usize {
    let mut c = Counter(0);
    serde_json::to_writer(&mut c, v).expect("state rows serialize");
    c.0
}

/// The serialized form of a state: its tables as lists (the keys are derived), with the
/// encoding version that wrote them (absent before versions: 1). Unknown tables and fields
/// are ignored on read (see [`crate::version`]).
#[derive(Serialize, Deserialize)]
struct SnapshotData {
    #[serde(default = "crate::version::unversioned")]
    v: u32,
    index: Index,
    table_index: BTreeMap<Table, Index>,
    jobs: Vec<Arc<Job>>,
    job_versions: Vec<Arc<Job>>,
    allocs: Vec<Arc<Allocation>>,
    evals: Vec<Arc<Evaluation>>,
    nodes: Vec<Arc<Node>>,
    #[serde(default)]
    variables: Vec<Arc<Variable>>,
    #[serde(default)]
    services: Vec<Arc<ServiceRegistration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged_restore: Option<StagedData>,
}

impl From<StateSnapshot> for SnapshotData {
    fn from(s: StateSnapshot) -> Self {
        SnapshotData {
            v: crate::ENCODING_VERSION,
            index: s.index,
            table_index: s.table_index,
            jobs: s.jobs.values().cloned().collect(),
            job_versions: s.job_versions.values().cloned().collect(),
            allocs: s.allocs.values().cloned().collect(),
            evals: s.evals.values().cloned().collect(),
            nodes: s.nodes.values().cloned().collect(),
            variables: s.vars.values().cloned().collect(),
            services: s.services.values().cloned().collect(),
            staged_restore: s.staged.map(|st| StagedData {
                id: st.id,
                chunks: st.chunks.into_iter().collect(),
            }),
        }
    }
}

impl From<SnapshotData> for StateSnapshot {
    fn from(d: SnapshotData) -> Self {
        if d.v > crate::ENCODING_VERSION {
            tracing::warn!(
                version = d.v,
                reads = crate::ENCODING_VERSION,
                "a state snapshot written by a newer server: its unknown fields are ignored"
            );
        }
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
            vars: d
                .variables
                .into_iter()
                .map(|v| ((v.namespace.clone(), v.path.clone()), v))
                .collect(),
            services: d.services.into_iter().map(|r| (r.id.clone(), r)).collect(),
            staged: d.staged_restore.map(|st| StagedRestore {
                id: st.id,
                chunks: st.chunks.into_iter().collect(),
            }),
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
        self.jobs
            .get(&(namespace.to_string(), id.to_string()))
            .map(Arc::as_ref)
    }

    pub fn job_version(&self, namespace: &str, id: &str, version: u64) -> Option<&Job> {
        self.job_versions
            .get(&(namespace.to_string(), id.to_string(), version))
            .map(Arc::as_ref)
    }

    /// Every stored version of a job, newest first.
    pub fn job_versions(&self, namespace: &str, id: &str) -> Vec<&Job> {
        let lo = (namespace.to_string(), id.to_string(), 0);
        let hi = (namespace.to_string(), id.to_string(), u64::MAX);
        let mut v: Vec<&Job> = self
            .job_versions
            .range(lo..=hi)
            .map(|(_, j)| &**j)
            .collect();
        v.reverse();
        v
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values().map(Arc::as_ref)
    }

    pub fn alloc(&self, id: &str) -> Option<&Allocation> {
        self.allocs.get(id).map(Arc::as_ref)
    }

    pub fn allocs(&self) -> impl Iterator<Item = &Allocation> {
        self.allocs.values().map(Arc::as_ref)
    }

    pub fn allocs_by_node(&self, node_id: &str) -> impl Iterator<Item = &Allocation> {
        let lo = (node_id.to_string(), String::new());
        self.allocs_by_node
            .range(lo..)
            .take_while(move |((n, _), _)| n == node_id)
            .filter_map(|((_, a), _)| self.alloc(a))
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
            .filter_map(|((_, _, a), _)| self.alloc(a))
    }

    pub fn eval(&self, id: &str) -> Option<&Evaluation> {
        self.evals.get(id).map(Arc::as_ref)
    }

    pub fn evals(&self) -> impl Iterator<Item = &Evaluation> {
        self.evals.values().map(Arc::as_ref)
    }

    pub fn evals_by_job(&self, namespace: &str, job_id: &str) -> impl Iterator<Item = &Evaluation> {
        let lo = (namespace.to_string(), job_id.to_string(), String::new());
        self.evals_by_job
            .range(lo..)
            .take_while(move |((ns, j, _), _)| ns == namespace && j == job_id)
            .filter_map(|((_, _, e), _)| self.eval(e))
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id).map(Arc::as_ref)
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values().map(Arc::as_ref)
    }

    pub fn variable(&self, namespace: &str, path: &str) -> Option<&Variable> {
        self.vars
            .get(&(namespace.to_string(), path.to_string()))
            .map(Arc::as_ref)
    }

    /// Every variable, by namespace and path.
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.vars.values().map(Arc::as_ref)
    }

    pub fn service_registration(&self, id: &str) -> Option<&ServiceRegistration> {
        self.services.get(id).map(Arc::as_ref)
    }

    /// Every registration, by id.
    pub fn service_registrations(&self) -> impl Iterator<Item = &ServiceRegistration> {
        self.services.values().map(Arc::as_ref)
    }

    /// The registrations of service `name` in `namespace`, by id.
    pub fn services_by_name(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = &ServiceRegistration> {
        let lo = (namespace.to_string(), name.to_string(), String::new());
        self.services_by_name
            .range(lo..)
            .take_while(move |((ns, n, _), _)| ns == namespace && n == name)
            .filter_map(|((_, _, id), _)| self.service_registration(id))
    }

    /// The registrations of service `name` in `namespace`, by id, as the shared rows.
    pub fn service_instances(
        &self,
        namespace: &str,
        name: &str,
    ) -> impl Iterator<Item = &Arc<ServiceRegistration>> {
        let lo = (namespace.to_string(), name.to_string(), String::new());
        self.services_by_name
            .range(lo..)
            .take_while(move |((ns, n, _), _)| ns == namespace && n == name)
            .filter_map(|((_, _, id), _)| self.services.get(id))
    }

    /// The registrations of allocation `alloc_id`, by id.
    pub fn services_by_alloc(&self, alloc_id: &str) -> impl Iterator<Item = &ServiceRegistration> {
        let lo = (alloc_id.to_string(), String::new());
        self.services_by_alloc
            .range(lo..)
            .take_while(move |((a, _), _)| a == alloc_id)
            .filter_map(|((_, id), _)| self.service_registration(id))
    }

    /// A job's status as Nomad derives it: running while any allocation is, pending while
    /// evaluations or placements are outstanding, dead when stopped or finished.
    pub(crate) fn derive_job_status(&self, job: &Job) -> JobStatus {
        // A periodic or parameterized parent runs nothing itself: it is "running" (waiting
        // to launch children) until it is stopped, as in Nomad.
        if job.is_parent() {
            return if job.stop {
                JobStatus::Dead
            } else {
                JobStatus::Running
            };
        }
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
        self.evals_pending = self
            .evals
            .values()
            .filter(|e| e.status == EvalStatus::Pending)
            .map(|e| (pending_key(e), ()))
            .collect();
        self.services_by_name = self
            .services
            .values()
            .map(|r| (service_name_key(r), ()))
            .collect();
        self.services_by_alloc = self
            .services
            .values()
            .map(|r| ((r.alloc_id.clone(), r.id.clone()), ()))
            .collect();
    }

    /// Splits the state's rows into chunks of at most about `max_bytes` of JSON each (a
    /// restore's entries). Refuses a row larger than `max_bytes` by itself.
    pub fn restore_chunks(&self, max_bytes: usize) -> Result<Vec<RestoreRows>, RowTooLarge> {
        let mut out = Vec::new();
        let mut cur = RestoreRows::default();
        let mut size = 0usize;
        macro_rules! add {
            ($rows:expr, $field:ident, $table:literal) => {
                for row in $rows {
                    let bytes = json_size(row) + 1;
                    if bytes > max_bytes {
                        return Err(RowTooLarge {
                            table: $table,
                            bytes,
                            max: max_bytes,
                        });
                    }
                    if size + bytes > max_bytes && !cur.is_empty() {
                        out.push(std::mem::take(&mut cur));
                        size = 0;
                    }
                    size += bytes;
                    cur.$field.push(row.clone());
                }
            };
        }
        add!(self.jobs.values(), jobs, "jobs");
        add!(self.job_versions.values(), job_versions, "job_versions");
        add!(self.allocs.values(), allocs, "allocs");
        add!(self.evals.values(), evals, "evals");
        add!(self.nodes.values(), nodes, "nodes");
        add!(self.vars.values(), variables, "variables");
        add!(self.services.values(), services, "services");
        if !cur.is_empty() || out.is_empty() {
            out.push(cur);
        }
        Ok(out)
    }

    /// The state made of restored rows (indexes rebuilt), at index 0.
    pub(crate) fn from_rows<'a>(chunks: impl Iterator<Item = &'a RestoreRows>) -> Self {
        let mut d = SnapshotData {
            v: crate::ENCODING_VERSION,
            index: 0,
            table_index: BTreeMap::new(),
            jobs: Vec::new(),
            job_versions: Vec::new(),
            allocs: Vec::new(),
            evals: Vec::new(),
            nodes: Vec::new(),
            variables: Vec::new(),
            services: Vec::new(),
            staged_restore: None,
        };
        for c in chunks {
            d.jobs.extend(c.jobs.iter().cloned());
            d.job_versions.extend(c.job_versions.iter().cloned());
            d.allocs.extend(c.allocs.iter().cloned());
            d.evals.extend(c.evals.iter().cloned());
            d.nodes.extend(c.nodes.iter().cloned());
            d.variables.extend(c.variables.iter().cloned());
            d.services.extend(c.services.iter().cloned());
        }
        d.into()
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
