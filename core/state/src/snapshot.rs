use std::collections::BTreeMap;
use std::sync::Arc;

use im::OrdMap;
use serde::{Deserialize, Serialize};

use drover_model::{
    AclPolicy, AclRole, AclToken, Allocation, EvalStatus, Evaluation, Index, Job, JobStatus,
    Namespace, Node, NodePool, RootKey, RootKeyState, SchedulerConfiguration, ServiceRegistration,
    Variable,
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
    /// The keyring's root keys.
    Keyring,
    AclPolicies,
    AclTokens,
    AclRoles,
    Namespaces,
    NodePools,
    SchedulerConfig,
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
            "keyring" => Table::Keyring,
            "acl_policies" => Table::AclPolicies,
            "acl_tokens" => Table::AclTokens,
            "acl_roles" => Table::AclRoles,
            "namespaces" => Table::Namespaces,
            "node_pools" => Table::NodePools,
            "scheduler_config" => Table::SchedulerConfig,
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub(crate) nodes: crate::node_table::NodeTable,
    /// (namespace, path) -> variable.
    pub(crate) vars: OrdMap<(String, String), Arc<Variable>>,
    /// Service registrations by id.
    pub(crate) services: OrdMap<String, Arc<ServiceRegistration>>,
    /// The keyring's root keys (wrapped) by key id.
    pub(crate) root_keys: OrdMap<String, Arc<RootKey>>,
    /// The index of the last write that left a variable in plaintext (written before the
    /// keyring existed, or restored from such a backup): Raft log entries up to it may hold
    /// plaintext, so once every variable is encrypted each server snapshots and purges its
    /// log past it. 0: none.
    pub(crate) plaintext_index: Index,
    /// Namespaces by name; `default` always.
    pub(crate) namespaces: OrdMap<String, Arc<Namespace>>,
    /// Node pools by name; `default` and `all` always.
    pub(crate) node_pools: OrdMap<String, Arc<NodePool>>,
    /// The cluster's scheduler configuration, once one is set (else the servers' default).
    pub(crate) scheduler_config: Option<Arc<SchedulerConfiguration>>,
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
    /// ACL policies by name.
    pub(crate) acl_policies: OrdMap<String, Arc<AclPolicy>>,
    /// ACL tokens by accessor id.
    pub(crate) acl_tokens: OrdMap<String, Arc<AclToken>>,
    /// ACL roles by id.
    pub(crate) acl_roles: OrdMap<String, Arc<AclRole>>,
    /// Secondary: token secret hash -> accessor id; role name -> id.
    pub(crate) acl_tokens_by_secret: OrdMap<String, String>,
    pub(crate) acl_roles_by_name: OrdMap<String, String>,
    /// The index of the ACL bootstrap, once it happened.
    pub(crate) acl_bootstrap: Option<Index>,
}

impl Default for StateSnapshot {
    /// An empty state: nothing but the built-in namespace and node pools.
    fn default() -> Self {
        let mut s = StateSnapshot {
            index: 0,
            table_index: BTreeMap::new(),
            jobs: OrdMap::new(),
            job_versions: OrdMap::new(),
            allocs: OrdMap::new(),
            evals: OrdMap::new(),
            nodes: Default::default(),
            vars: OrdMap::new(),
            services: OrdMap::new(),
            root_keys: OrdMap::new(),
            plaintext_index: 0,
            namespaces: OrdMap::new(),
            node_pools: OrdMap::new(),
            scheduler_config: None,
            services_by_name: OrdMap::new(),
            services_by_alloc: OrdMap::new(),
            allocs_by_node: OrdMap::new(),
            allocs_by_job: OrdMap::new(),
            evals_by_job: OrdMap::new(),
            evals_pending: OrdMap::new(),
            staged: None,
            acl_policies: OrdMap::new(),
            acl_tokens: OrdMap::new(),
            acl_roles: OrdMap::new(),
            acl_tokens_by_secret: OrdMap::new(),
            acl_roles_by_name: OrdMap::new(),
            acl_bootstrap: None,
        };
        s.ensure_builtins();
        s
    }
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub root_keys: Vec<Arc<RootKey>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_policies: Vec<Arc<AclPolicy>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_tokens: Vec<Arc<AclToken>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acl_roles: Vec<Arc<AclRole>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<Arc<Namespace>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_pools: Vec<Arc<NodePool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_config: Option<Arc<SchedulerConfiguration>>,
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
            && self.root_keys.is_empty()
            && self.acl_policies.is_empty()
            && self.acl_tokens.is_empty()
            && self.acl_roles.is_empty()
            && self.namespaces.is_empty()
            && self.node_pools.is_empty()
            && self.scheduler_config.is_none()
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

/// The first few names of a list, for an error message.
fn few(names: &[&str]) -> String {
    const SHOWN: usize = 5;
    let mut s = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("{n:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        s.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    s
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
    #[serde(default)]
    root_keys: Vec<Arc<RootKey>>,
    #[serde(default)]
    plaintext_index: Index,
    #[serde(default)]
    namespaces: Vec<Arc<Namespace>>,
    #[serde(default)]
    node_pools: Vec<Arc<NodePool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scheduler_config: Option<Arc<SchedulerConfiguration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    staged_restore: Option<StagedData>,
    #[serde(default)]
    acl_policies: Vec<Arc<AclPolicy>>,
    #[serde(default)]
    acl_tokens: Vec<Arc<AclToken>>,
    #[serde(default)]
    acl_roles: Vec<Arc<AclRole>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    acl_bootstrap_index: Option<Index>,
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
            root_keys: s.root_keys.values().cloned().collect(),
            plaintext_index: s.plaintext_index,
            namespaces: s.namespaces.values().cloned().collect(),
            node_pools: s.node_pools.values().cloned().collect(),
            scheduler_config: s.scheduler_config,
            staged_restore: s.staged.map(|st| StagedData {
                id: st.id,
                chunks: st.chunks.into_iter().collect(),
            }),
            acl_policies: s.acl_policies.values().cloned().collect(),
            acl_tokens: s.acl_tokens.values().cloned().collect(),
            acl_roles: s.acl_roles.values().cloned().collect(),
            acl_bootstrap_index: s.acl_bootstrap,
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
            root_keys: d
                .root_keys
                .into_iter()
                .map(|k| (k.key_id.clone(), k))
                .collect(),
            plaintext_index: d.plaintext_index,
            namespaces: d
                .namespaces
                .into_iter()
                .map(|n| (n.name.clone(), n))
                .collect(),
            node_pools: d
                .node_pools
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            scheduler_config: d.scheduler_config,
            staged: d.staged_restore.map(|st| StagedRestore {
                id: st.id,
                chunks: st.chunks.into_iter().collect(),
            }),
            acl_policies: d
                .acl_policies
                .into_iter()
                .map(|p| (p.name.clone(), p))
                .collect(),
            acl_tokens: d
                .acl_tokens
                .into_iter()
                .map(|t| (t.accessor_id.clone(), t))
                .collect(),
            acl_roles: d.acl_roles.into_iter().map(|r| (r.id.clone(), r)).collect(),
            acl_bootstrap: d.acl_bootstrap_index,
            ..Default::default()
        };
        // A state written before namespaces and pools were tables gets the built-ins.
        s.ensure_builtins();
        s.rebuild_indexes();
        if s.plaintext_index == 0 && s.plaintext_variables().next().is_some() {
            // Written before the keyring existed: its entries may hold plaintext.
            s.plaintext_index = s.index.max(1);
        }
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

    /// Every node in id order, as a slice: built once per version of the nodes table and
    /// shared by the snapshots of that version (the scheduler walks it for every
    /// evaluation).
    pub fn node_list(&self) -> &[Arc<Node>] {
        self.nodes.list()
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

    /// The keyring's root keys, by key id.
    pub fn root_keys(&self) -> impl Iterator<Item = &RootKey> {
        self.root_keys.values().map(Arc::as_ref)
    }

    pub fn root_key(&self, key_id: &str) -> Option<&RootKey> {
        self.root_keys.get(key_id).map(Arc::as_ref)
    }

    /// The key that encrypts new variables and signs new identities.
    pub fn active_root_key(&self) -> Option<&RootKey> {
        self.root_keys().find(|k| k.state == RootKeyState::Active)
    }

    /// Replaces the root keys (a backup's, re-wrapped for the restoring cluster).
    pub fn replace_root_keys(&mut self, keys: Vec<RootKey>) {
        self.root_keys = keys
            .into_iter()
            .map(|k| (k.key_id.clone(), Arc::new(k)))
            .collect();
    }

    /// Variables still stored in plaintext (written before the keyring existed).
    pub fn plaintext_variables(&self) -> impl Iterator<Item = &Variable> {
        self.variables().filter(|v| v.encrypted.is_none())
    }

    /// The index of the last write that left a variable in plaintext (0: none): the Raft
    /// log up to it may hold plaintext.
    pub fn plaintext_index(&self) -> Index {
        self.plaintext_index
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

    pub fn acl_policy(&self, name: &str) -> Option<&AclPolicy> {
        self.acl_policies.get(name).map(Arc::as_ref)
    }

    /// Every ACL policy, by name.
    pub fn acl_policies(&self) -> impl Iterator<Item = &AclPolicy> {
        self.acl_policies.values().map(Arc::as_ref)
    }

    pub fn acl_token(&self, accessor_id: &str) -> Option<&AclToken> {
        self.acl_tokens.get(accessor_id).map(Arc::as_ref)
    }

    /// The token whose secret has this SHA-256 (hex).
    pub fn acl_token_by_secret_hash(&self, hash: &str) -> Option<&AclToken> {
        self.acl_tokens_by_secret
            .get(hash)
            .and_then(|a| self.acl_token(a))
    }

    /// Every ACL token, by accessor id.
    pub fn acl_tokens(&self) -> impl Iterator<Item = &AclToken> {
        self.acl_tokens.values().map(Arc::as_ref)
    }

    pub fn acl_role(&self, id: &str) -> Option<&AclRole> {
        self.acl_roles.get(id).map(Arc::as_ref)
    }

    pub fn acl_role_by_name(&self, name: &str) -> Option<&AclRole> {
        self.acl_roles_by_name
            .get(name)
            .and_then(|id| self.acl_role(id))
    }

    /// Every ACL role, by id.
    pub fn acl_roles(&self) -> impl Iterator<Item = &AclRole> {
        self.acl_roles.values().map(Arc::as_ref)
    }

    /// The index of the ACL bootstrap (None: never bootstrapped).
    pub fn acl_bootstrap_index(&self) -> Option<Index> {
        self.acl_bootstrap
    }

    /// A namespace by name (`default` always exists).
    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.get(name).map(Arc::as_ref)
    }

    /// Every namespace, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = &Namespace> {
        self.namespaces.values().map(Arc::as_ref)
    }

    /// A node pool by name (`default` and `all` always exist).
    pub fn node_pool(&self, name: &str) -> Option<&NodePool> {
        self.node_pools.get(name).map(Arc::as_ref)
    }

    /// Every node pool, by name.
    pub fn node_pools(&self) -> impl Iterator<Item = &NodePool> {
        self.node_pools.values().map(Arc::as_ref)
    }

    /// The scheduler configuration set through the API, if one was.
    pub fn scheduler_config(&self) -> Option<&SchedulerConfiguration> {
        self.scheduler_config.as_deref()
    }

    /// Why namespace `name` cannot be deleted now: it is built in, or it holds jobs or
    /// variables (named, the first few). None when it can go.
    pub fn namespace_in_use(&self, name: &str) -> Option<String> {
        if name == drover_model::DEFAULT_NAMESPACE {
            return Some("the default namespace cannot be deleted".into());
        }
        let jobs: Vec<&str> = self
            .jobs
            .keys()
            .filter(|(ns, _)| ns == name)
            .map(|(_, id)| id.as_str())
            .collect();
        if !jobs.is_empty() {
            return Some(format!(
                "namespace {name:?} has {} job(s) (purge them first): {}",
                jobs.len(),
                few(&jobs)
            ));
        }
        let vars: Vec<&str> = self
            .vars
            .keys()
            .filter(|(ns, _)| ns == name)
            .map(|(_, p)| p.as_str())
            .collect();
        if !vars.is_empty() {
            return Some(format!(
                "namespace {name:?} has {} variable(s): {}",
                vars.len(),
                few(&vars)
            ));
        }
        None
    }

    /// Why node pool `name` cannot be deleted now: it is built in, or nodes or jobs are in
    /// it (named, the first few). None when it can go.
    pub fn node_pool_in_use(&self, name: &str) -> Option<String> {
        if drover_model::is_builtin_node_pool(name) {
            return Some(format!(
                "node pool {name:?} is built in and cannot be deleted"
            ));
        }
        let nodes: Vec<&str> = self
            .nodes()
            .filter(|n| n.node_pool == name)
            .map(|n| n.id.as_str())
            .collect();
        if !nodes.is_empty() {
            return Some(format!(
                "node pool {name:?} has {} node(s): {}",
                nodes.len(),
                few(&nodes)
            ));
        }
        let jobs: Vec<String> = self
            .jobs()
            .filter(|j| j.node_pool == name)
            .map(|j| format!("{}@{}", j.id, j.namespace))
            .collect();
        if !jobs.is_empty() {
            let names: Vec<&str> = jobs.iter().map(String::as_str).collect();
            return Some(format!(
                "node pool {name:?} has {} job(s): {}",
                jobs.len(),
                few(&names)
            ));
        }
        None
    }

    /// Inserts the namespace and node pools that always exist, and the namespaces jobs
    /// and variables name (a state written before namespaces were objects), where they are
    /// missing.
    pub(crate) fn ensure_builtins(&mut self) {
        let ns = Namespace::default_namespace();
        if !self.namespaces.contains_key(&ns.name) {
            self.namespaces.insert(ns.name.clone(), Arc::new(ns));
        }
        let named: std::collections::BTreeSet<String> = self
            .jobs
            .keys()
            .map(|(ns, _)| ns.clone())
            .chain(self.vars.keys().map(|(ns, _)| ns.clone()))
            .filter(|ns| !self.namespaces.contains_key(ns))
            .collect();
        for name in named {
            let ns = Namespace::adopted(&name, self.index);
            if ns.validate().is_ok() {
                self.namespaces.insert(name, Arc::new(ns));
            }
        }
        for p in NodePool::builtins() {
            if !self.node_pools.contains_key(&p.name) {
                self.node_pools.insert(p.name.clone(), Arc::new(p));
            }
        }
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
        self.acl_tokens_by_secret = self
            .acl_tokens
            .values()
            .map(|t| (t.secret_hash.clone(), t.accessor_id.clone()))
            .collect();
        self.acl_roles_by_name = self
            .acl_roles
            .values()
            .map(|r| (r.name.clone(), r.id.clone()))
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
        add!(self.root_keys.values(), root_keys, "root_keys");
        add!(self.acl_policies.values(), acl_policies, "acl_policies");
        add!(self.acl_tokens.values(), acl_tokens, "acl_tokens");
        add!(self.acl_roles.values(), acl_roles, "acl_roles");
        add!(self.namespaces.values(), namespaces, "namespaces");
        add!(self.node_pools.values(), node_pools, "node_pools");
        cur.scheduler_config = self.scheduler_config.clone();
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
            root_keys: Vec::new(),
            plaintext_index: 0,
            namespaces: Vec::new(),
            node_pools: Vec::new(),
            scheduler_config: None,
            staged_restore: None,
            acl_policies: Vec::new(),
            acl_tokens: Vec::new(),
            acl_roles: Vec::new(),
            acl_bootstrap_index: None,
        };
        for c in chunks {
            d.jobs.extend(c.jobs.iter().cloned());
            d.job_versions.extend(c.job_versions.iter().cloned());
            d.allocs.extend(c.allocs.iter().cloned());
            d.evals.extend(c.evals.iter().cloned());
            d.nodes.extend(c.nodes.iter().cloned());
            d.variables.extend(c.variables.iter().cloned());
            d.services.extend(c.services.iter().cloned());
            d.root_keys.extend(c.root_keys.iter().cloned());
            d.acl_policies.extend(c.acl_policies.iter().cloned());
            d.acl_tokens.extend(c.acl_tokens.iter().cloned());
            d.acl_roles.extend(c.acl_roles.iter().cloned());
            d.namespaces.extend(c.namespaces.iter().cloned());
            d.node_pools.extend(c.node_pools.iter().cloned());
            if c.scheduler_config.is_some() {
                d.scheduler_config = c.scheduler_config.clone();
            }
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
