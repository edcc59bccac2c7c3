use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::serde_fmt::{nanos, opt_nanos};
use crate::{
    ConstraintOperand, DEFAULT_NAMESPACE, Index, LifecycleHook, TemplateChangeMode, UnixNanos,
    VolumeType,
};

/// Free-form configuration: a driver's `config`, a scaling policy, artifact options.
pub type FreeForm = serde_json::Map<String, serde_json::Value>;

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

/// A job: the unit users submit. Its serde form is Nomad's job JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    pub namespace: String,
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    #[serde(rename = "Type")]
    pub job_type: JobType,
    pub priority: i32,
    pub region: String,
    pub datacenters: Vec<String>,
    pub node_pool: String,
    pub all_at_once: bool,
    pub meta: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    #[serde(rename = "TaskGroups")]
    pub groups: Vec<TaskGroup>,
    pub update: Option<UpdateStrategy>,
    pub periodic: Option<PeriodicConfig>,
    #[serde(rename = "ParameterizedJob")]
    pub parameterized: Option<ParameterizedJobConfig>,
    /// How the web UI presents the job (the `ui` block).
    #[serde(rename = "UI")]
    pub ui: Option<JobUiConfig>,
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

impl Default for Job {
    fn default() -> Self {
        Job::new("", JobType::Service)
    }
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
            node_pool: "default".to_string(),
            all_at_once: false,
            meta: BTreeMap::new(),
            constraints: Vec::new(),
            affinities: Vec::new(),
            spreads: Vec::new(),
            groups: Vec::new(),
            update: None,
            periodic: None,
            parameterized: None,
            ui: None,
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

    /// A periodic or parameterized job is a parent: it is never placed itself, only the
    /// children it launches are (Nomad's behaviour).
    pub fn is_parent(&self) -> bool {
        self.periodic.is_some() || self.parameterized.is_some()
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

    /// Fills in what a submitter may leave out (as Nomad's API canonicalizes a job) and
    /// checks what must be there. Errors name the field in Nomad's JSON terms.
    pub fn canonicalize(&mut self) -> Result<(), Vec<String>> {
        let mut errs = Vec::new();
        if self.id.is_empty() {
            errs.push("Job.ID: missing job ID".to_string());
        }
        if self.id.contains(' ') || self.id.contains('\0') {
            errs.push(format!("Job.ID: {:?} must not contain spaces", self.id));
        }
        if self.name.is_empty() {
            self.name = self.id.clone();
        }
        if self.namespace.is_empty() {
            self.namespace = DEFAULT_NAMESPACE.into();
        }
        if self.region.is_empty() {
            self.region = "global".into();
        }
        if self.datacenters.is_empty() {
            self.datacenters = vec!["*".into()];
        }
        if self.node_pool.is_empty() {
            self.node_pool = "default".into();
        }
        if self.priority == 0 {
            self.priority = 50;
        }
        if !(1..=100).contains(&self.priority) {
            errs.push(format!(
                "Job.Priority: must be between 1 and 100, got {}",
                self.priority
            ));
        }
        if self.groups.is_empty() {
            errs.push("Job.TaskGroups: a job needs at least one task group".into());
        }
        let job_type = self.job_type;
        let mut names = std::collections::BTreeSet::new();
        for (gi, g) in self.groups.iter_mut().enumerate() {
            let gf = format!("Job.TaskGroups[{gi}]");
            if g.name.is_empty() {
                errs.push(format!("{gf}.Name: missing group name"));
            } else if let Err(e) = check_name(&g.name) {
                errs.push(format!("{gf}.Name: {e}"));
            } else if !names.insert(g.name.clone()) {
                errs.push(format!("{gf}.Name: group {:?} is defined twice", g.name));
            }
            if g.restart.is_none() {
                g.restart = Some(RestartPolicy::default_for(job_type));
            }
            if g.tasks.is_empty() {
                errs.push(format!("{gf}.Tasks: a task group needs at least one task"));
            }
            if let Err(e) = g.canonicalize_services() {
                errs.push(format!("{gf}: {e}"));
            }
            errs.extend(
                g.port_label_errors()
                    .into_iter()
                    .map(|e| format!("{gf}: {e}")),
            );
            errs.extend(
                g.canonicalize_checks()
                    .into_iter()
                    .map(|e| format!("{gf}: {e}")),
            );
            let mut tnames = std::collections::BTreeSet::new();
            for (ti, t) in g.tasks.iter().enumerate() {
                let tf = format!("{gf}.Tasks[{ti}]");
                if t.name.is_empty() {
                    errs.push(format!("{tf}.Name: missing task name"));
                } else if let Err(e) = check_name(&t.name) {
                    errs.push(format!("{tf}.Name: {e}"));
                } else if !tnames.insert(t.name.clone()) {
                    errs.push(format!("{tf}.Name: task {:?} is defined twice", t.name));
                }
                if t.driver.is_empty() {
                    errs.push(format!("{tf}.Driver: missing driver"));
                }
                if t.logs.max_files == 0 || t.logs.max_file_size_mb == 0 {
                    errs.push(format!(
                        "{tf}.LogConfig: MaxFiles and MaxFileSizeMB must be at least 1"
                    ));
                }
                errs.extend(secret_errors(&t.secrets, &tf));
            }
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }
}

/// What is wrong with a task's `secret` blocks: each needs a name (once per task, usable in
/// `${secret.<name>.<key>}`), a provider that is one plugin name (Vault is not integrated in
/// Drover) and a path.
fn secret_errors(secrets: &[Secret], tf: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (i, s) in secrets.iter().enumerate() {
        let sf = format!("{tf}.Secrets[{i}]");
        if s.name.is_empty() || s.name.contains(['.', '}', '$']) {
            errs.push(format!(
                "{sf}.Name: {:?} must be a non-empty name without '.', '$' or '}}'",
                s.name
            ));
        } else if !seen.insert(s.name.as_str()) {
            errs.push(format!("{sf}.Name: secret {:?} is defined twice", s.name));
        }
        if let Err(e) = check_name(&s.provider) {
            errs.push(format!(
                "{sf}.Provider: {e} (the provider names a plugin: \"nomad\", an exec provider in common_plugin_dir/secrets, or a secret provider plugin)"
            ));
        } else if s.provider == "vault" {
            errs.push(format!(
                "{sf}.Provider: Vault is not integrated in Drover; use a secret provider plugin or an exec provider"
            ));
        }
        if s.path.is_empty() {
            errs.push(format!("{sf}.Path: missing the secret's path"));
        }
    }
    errs
}

/// A placement constraint: `LTarget Operand RTarget`, e.g. `${attr.kernel.name} = linux`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Constraint {
    pub l_target: String,
    pub r_target: String,
    pub operand: ConstraintOperand,
}

/// A placement preference with a weight in -100..=100.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Affinity {
    pub l_target: String,
    pub r_target: String,
    pub operand: ConstraintOperand,
    pub weight: i8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Spread {
    pub attribute: String,
    pub weight: i8,
    pub spread_target: Vec<SpreadTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct SpreadTarget {
    pub value: String,
    pub percent: u8,
}

/// Rolling updates and canaries (the `update` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateStrategy {
    #[serde(with = "nanos")]
    pub stagger: Duration,
    pub max_parallel: u32,
    /// "checks", "task_states" or "manual".
    pub health_check: String,
    #[serde(with = "nanos")]
    pub min_healthy_time: Duration,
    #[serde(with = "nanos")]
    pub healthy_deadline: Duration,
    #[serde(with = "nanos")]
    pub progress_deadline: Duration,
    pub auto_revert: bool,
    pub auto_promote: bool,
    pub canary: u32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        UpdateStrategy {
            stagger: Duration::from_secs(30),
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: Duration::from_secs(10),
            healthy_deadline: Duration::from_secs(300),
            progress_deadline: Duration::from_secs(600),
            auto_revert: false,
            auto_promote: false,
            canary: 0,
        }
    }
}

/// Drain migrations (the `migrate` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct MigrateStrategy {
    pub max_parallel: u32,
    pub health_check: String,
    #[serde(with = "nanos")]
    pub min_healthy_time: Duration,
    #[serde(with = "nanos")]
    pub healthy_deadline: Duration,
}

impl Default for MigrateStrategy {
    fn default() -> Self {
        MigrateStrategy {
            max_parallel: 1,
            health_check: "checks".into(),
            min_healthy_time: Duration::from_secs(10),
            healthy_deadline: Duration::from_secs(300),
        }
    }
}

/// When failed allocations are replaced (the `reschedule` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReschedulePolicy {
    pub attempts: u32,
    #[serde(with = "nanos")]
    pub interval: Duration,
    #[serde(with = "nanos")]
    pub delay: Duration,
    /// "constant", "exponential" or "fibonacci".
    pub delay_function: String,
    #[serde(with = "nanos")]
    pub max_delay: Duration,
    pub unlimited: bool,
}

impl ReschedulePolicy {
    /// Nomad's defaults: services reschedule without limit with an exponential delay from
    /// 30 s up to an hour; batch jobs once a day after 5 s; system jobs never.
    pub fn default_for(job_type: JobType) -> Self {
        match job_type {
            JobType::Service => ReschedulePolicy {
                attempts: 0,
                interval: Duration::ZERO,
                delay: Duration::from_secs(30),
                delay_function: "exponential".into(),
                max_delay: Duration::from_secs(3600),
                unlimited: true,
            },
            JobType::Batch => ReschedulePolicy {
                attempts: 1,
                interval: Duration::from_secs(24 * 3600),
                delay: Duration::from_secs(5),
                delay_function: "constant".into(),
                max_delay: Duration::ZERO,
                unlimited: false,
            },
            JobType::System | JobType::Sysbatch => ReschedulePolicy::default(),
        }
    }

    /// The delay before the `n`th reschedule (n >= 1) of a chain.
    pub fn delay_for(&self, n: u32) -> Duration {
        let base = self.delay;
        let d = match self.delay_function.as_str() {
            "exponential" => {
                base.saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            }
            "fibonacci" => {
                let (mut a, mut b) = (1u32, 1u32);
                for _ in 1..n {
                    (a, b) = (b, a.saturating_add(b));
                }
                base.saturating_mul(a)
            }
            _ => base,
        };
        if self.max_delay > Duration::ZERO {
            d.min(self.max_delay)
        } else {
            d
        }
    }
}

/// Cron-like launches (the `periodic` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct PeriodicConfig {
    pub enabled: bool,
    pub spec: String,
    pub specs: Vec<String>,
    pub spec_type: String,
    pub prohibit_overlap: bool,
    pub time_zone: String,
}

/// Dispatch jobs (the `parameterized` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ParameterizedJobConfig {
    /// "optional", "required" or "forbidden".
    pub payload: String,
    pub meta_required: Vec<String>,
    pub meta_optional: Vec<String>,
}

/// A group of tasks placed together on one node, `count` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: String,
    pub count: u32,
    pub meta: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub spreads: Vec<Spread>,
    /// The group's restart policy; [`Job::canonicalize`] fills in the job type's default.
    #[serde(rename = "RestartPolicy")]
    pub restart: Option<RestartPolicy>,
    #[serde(rename = "ReschedulePolicy")]
    pub reschedule: Option<ReschedulePolicy>,
    pub migrate: Option<MigrateStrategy>,
    pub update: Option<UpdateStrategy>,
    pub networks: Vec<NetworkResource>,
    pub services: Vec<Service>,
    pub volumes: BTreeMap<String, VolumeRequest>,
    pub ephemeral_disk: Option<EphemeralDisk>,
    #[serde(with = "opt_nanos")]
    pub shutdown_delay: Option<Duration>,
    #[serde(with = "opt_nanos")]
    pub stop_after_client_disconnect: Option<Duration>,
    #[serde(with = "opt_nanos")]
    pub max_client_disconnect: Option<Duration>,
    pub scaling: Option<ScalingPolicy>,
    pub consul: Option<FreeForm>,
    /// What happens when the group's client disconnects (Nomad 1.8's `disconnect` block).
    pub disconnect: Option<DisconnectStrategy>,
    pub tasks: Vec<Task>,
}

impl Default for TaskGroup {
    fn default() -> Self {
        TaskGroup {
            name: String::new(),
            count: 1,
            meta: BTreeMap::new(),
            constraints: Vec::new(),
            affinities: Vec::new(),
            spreads: Vec::new(),
            restart: None,
            reschedule: None,
            migrate: None,
            update: None,
            networks: Vec::new(),
            services: Vec::new(),
            volumes: BTreeMap::new(),
            ephemeral_disk: None,
            shutdown_delay: None,
            stop_after_client_disconnect: None,
            max_client_disconnect: None,
            scaling: None,
            consul: None,
            disconnect: None,
            tasks: Vec::new(),
        }
    }
}

impl TaskGroup {
    /// A group of `count` with these tasks and the job type's default restart policy.
    pub fn new(name: impl Into<String>, count: u32, job_type: JobType, tasks: Vec<Task>) -> Self {
        TaskGroup {
            name: name.into(),
            count,
            restart: Some(RestartPolicy::default_for(job_type)),
            tasks,
            ..Default::default()
        }
    }

    /// The sum of the group's tasks' resources: what one allocation needs.
    pub fn resources(&self) -> Resources {
        self.tasks
            .iter()
            .fold(Resources::ZERO, |acc, t| acc.add(&t.resources))
    }

    /// Nomad's port label rules: every label of the group's and its tasks' networks is
    /// unique (compared without case) and has no spaces.
    pub fn port_label_errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let nets = self
            .networks
            .iter()
            .chain(self.tasks.iter().flat_map(|t| &t.resources.networks));
        for p in nets.flat_map(|n| n.reserved_ports.iter().chain(&n.dynamic_ports)) {
            if p.label.is_empty() || p.label.chars().any(char::is_whitespace) {
                errs.push(format!(
                    "port label {:?} must be a non-empty word without spaces",
                    p.label
                ));
            } else if !seen.insert(p.label.to_lowercase()) {
                errs.push(format!(
                    "port label {:?} is used twice (labels are compared without case)",
                    p.label
                ));
            }
        }
        errs
    }

    /// The group's reschedule policy (Nomad's default for the job type when none was given).
    pub fn reschedule_policy(&self, job_type: JobType) -> ReschedulePolicy {
        self.reschedule
            .clone()
            .unwrap_or_else(|| ReschedulePolicy::default_for(job_type))
    }

    /// The group's restart policy (the job type's default when none was given).
    pub fn restart_policy(&self, job_type: JobType) -> RestartPolicy {
        self.restart
            .clone()
            .unwrap_or_else(|| RestartPolicy::default_for(job_type))
    }
}

/// One process (or container, or VM) run by a task driver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: String,
    pub driver: String,
    pub user: String,
    /// The driver's free-form `config { ... }` block.
    pub config: FreeForm,
    pub env: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub resources: Resources,
    /// The task's own restart policy; the group's applies where this is absent.
    #[serde(rename = "RestartPolicy")]
    pub restart: Option<RestartPolicy>,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
    pub services: Vec<Service>,
    pub templates: Vec<Template>,
    pub artifacts: Vec<TaskArtifact>,
    pub vault: Option<Vault>,
    pub identities: Vec<WorkloadIdentity>,
    pub lifecycle: Option<TaskLifecycleConfig>,
    pub volume_mounts: Vec<VolumeMount>,
    pub dispatch_payload: Option<DispatchPayload>,
    #[serde(rename = "CSIPluginConfig")]
    pub csi_plugin: Option<CsiPluginConfig>,
    pub secrets: Vec<Secret>,
    /// Commands an operator may run in the task (`action "NAME"` blocks).
    pub actions: Vec<Action>,
    /// Vertical scaling policies (`scaling "cpu"` and `scaling "mem"`).
    pub scaling_policies: Vec<ScalingPolicy>,
    pub leader: bool,
    #[serde(with = "nanos")]
    pub kill_timeout: Duration,
    pub kill_signal: String,
    #[serde(with = "nanos")]
    pub shutdown_delay: Duration,
    #[serde(rename = "LogConfig")]
    pub logs: LogConfig,
    pub kind: String,
}

impl Default for Task {
    fn default() -> Self {
        Task::new("", "")
    }
}

impl Task {
    pub fn new(name: impl Into<String>, driver: impl Into<String>) -> Self {
        Task {
            name: name.into(),
            driver: driver.into(),
            user: String::new(),
            config: FreeForm::new(),
            env: BTreeMap::new(),
            meta: BTreeMap::new(),
            resources: Resources::default(),
            restart: None,
            constraints: Vec::new(),
            affinities: Vec::new(),
            services: Vec::new(),
            templates: Vec::new(),
            artifacts: Vec::new(),
            vault: None,
            identities: Vec::new(),
            lifecycle: None,
            volume_mounts: Vec::new(),
            dispatch_payload: None,
            csi_plugin: None,
            secrets: Vec::new(),
            actions: Vec::new(),
            scaling_policies: Vec::new(),
            leader: false,
            kill_timeout: Duration::from_secs(5),
            kill_signal: "SIGTERM".to_string(),
            shutdown_delay: Duration::ZERO,
            logs: LogConfig::default(),
            kind: String::new(),
        }
    }
}

/// Compute resources a task asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// CPU in MHz.
    #[serde(rename = "CPU")]
    pub cpu: u64,
    /// Whole reserved cores (0 = none).
    #[serde(rename = "Cores")]
    pub cores: u32,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    /// The hard memory limit when it may exceed `memory_mb` (oversubscription); 0 = none.
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: u64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
    #[serde(rename = "Networks")]
    pub networks: Vec<NetworkResource>,
    #[serde(rename = "Devices")]
    pub devices: Vec<RequestedDevice>,
    /// In an allocation's `task_resources`: the node's core ids the scheduler reserved for
    /// the task's `cores` (Nomad's `AllocatedCpuResources.ReservedCores`), ascending. Empty
    /// in a job, and in allocations placed by servers that did not assign ids.
    #[serde(rename = "ReservedCores", skip_serializing_if = "Vec::is_empty")]
    pub reserved_cores: Vec<u16>,
}

impl Default for Resources {
    /// Nomad's defaults: 100 MHz and 300 MB.
    fn default() -> Self {
        Resources {
            cpu: 100,
            memory_mb: 300,
            ..Resources::ZERO
        }
    }
}

impl Resources {
    pub const ZERO: Resources = Resources {
        cpu: 0,
        cores: 0,
        memory_mb: 0,
        memory_max_mb: 0,
        disk_mb: 0,
        networks: Vec::new(),
        devices: Vec::new(),
        reserved_cores: Vec::new(),
    };

    /// The sum of the scalar dimensions (networks, devices and core ids are not summed).
    pub fn add(&self, o: &Resources) -> Resources {
        Resources {
            cpu: self.cpu + o.cpu,
            cores: self.cores + o.cores,
            memory_mb: self.memory_mb + o.memory_mb,
            memory_max_mb: self.memory_max_mb + o.memory_max_mb,
            disk_mb: self.disk_mb + o.disk_mb,
            networks: Vec::new(),
            devices: Vec::new(),
            reserved_cores: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestedDevice {
    pub name: String,
    pub count: u64,
    pub constraints: Vec<Constraint>,
    pub affinities: Vec<Affinity>,
}

/// A group's network (the `network` block): mode and ports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkResource {
    /// "host" (default), "bridge", "none", or "cni/<name>".
    pub mode: String,
    pub hostname: String,
    #[serde(rename = "MBits")]
    pub mbits: u32,
    #[serde(rename = "DNS")]
    pub dns: Option<DnsConfig>,
    /// `cni { args }`: extra `CNI_ARGS` for the CNI plugins (Nomad's `CNIConfig`).
    #[serde(rename = "CNI", skip_serializing_if = "Option::is_none")]
    pub cni: Option<CniConfig>,
    /// Ports with a fixed host port (`static`).
    pub reserved_ports: Vec<Port>,
    /// Ports the scheduler picks.
    pub dynamic_ports: Vec<Port>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Port {
    pub label: String,
    /// The host port (static, or assigned).
    pub value: u16,
    /// The port inside the task's network namespace (0 = same as the host port).
    pub to: i32,
    pub host_network: String,
}

/// A network's `cni` block (Nomad's `CNIConfig`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CniConfig {
    pub args: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DnsConfig {
    pub servers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// A service to register (the `service` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Service {
    pub name: String,
    pub task_name: String,
    pub port_label: String,
    pub address_mode: String,
    pub address: String,
    pub tags: Vec<String>,
    pub canary_tags: Vec<String>,
    pub enable_tag_override: bool,
    /// "nomad" or "consul" (Nomad's default): both register in Drover's own catalog.
    pub provider: String,
    pub checks: Vec<ServiceCheck>,
    /// The service's `check_restart`, merged into each of its checks that has none when
    /// the job is canonicalized (as Nomad's API does), then cleared.
    pub check_restart: Option<CheckRestart>,
    pub meta: BTreeMap<String, String>,
    pub connect: Option<FreeForm>,
    /// "require_healthy" (the default), "ignore_warnings" or "ignore".
    pub on_update: String,
    /// Consul's tagged addresses (kept in the job; Drover's catalog does not use them).
    pub tagged_addresses: BTreeMap<String, String>,
    /// Meta of canary instances (canaries are not driven yet).
    pub canary_meta: BTreeMap<String, String>,
}

/// The service providers Nomad knows; Drover keeps both in its own catalog.
pub const SERVICE_PROVIDERS: &[&str] = &["consul", "nomad"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceCheck {
    pub name: String,
    /// "http", "tcp", "script" or "grpc".
    #[serde(rename = "Type")]
    pub check_type: String,
    pub command: String,
    pub args: Vec<String>,
    pub path: String,
    pub protocol: String,
    pub port_label: String,
    pub address_mode: String,
    pub method: String,
    pub header: BTreeMap<String, Vec<String>>,
    #[serde(with = "nanos")]
    pub interval: Duration,
    #[serde(with = "nanos")]
    pub timeout: Duration,
    pub initial_status: String,
    pub task_name: String,
    pub check_restart: Option<CheckRestart>,
    /// The http check's request body.
    pub body: String,
    #[serde(rename = "TLSSkipVerify")]
    pub tls_skip_verify: bool,
    #[serde(rename = "TLSServerName")]
    pub tls_server_name: String,
    #[serde(rename = "GRPCService")]
    pub grpc_service: String,
    #[serde(rename = "GRPCUseTLS")]
    pub grpc_use_tls: bool,
    pub success_before_passing: u32,
    pub failures_before_critical: u32,
    pub failures_before_warning: u32,
    /// "require_healthy" (the default), "ignore_warnings" or "ignore".
    pub on_update: String,
    /// Consul Connect's expose path: accepted, without a mesh it changes nothing.
    pub expose: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CheckRestart {
    pub limit: u32,
    #[serde(with = "nanos")]
    pub grace: Duration,
    pub ignore_warnings: bool,
}

/// A volume the group asks for (the group's `volume "NAME"` block). `Type` must be given;
/// every other field may be left out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VolumeRequest {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "Type")]
    pub volume_type: VolumeType,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub access_mode: String,
    #[serde(default)]
    pub attachment_mode: String,
    #[serde(default)]
    pub per_alloc: bool,
    /// A CSI volume's `mount_options`.
    #[serde(default)]
    pub mount_options: Option<CsiMountOptions>,
}

/// How a CSI volume is mounted (`mount_options { fs_type, mount_flags }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CsiMountOptions {
    #[serde(rename = "FSType")]
    pub fs_type: String,
    pub mount_flags: Vec<String>,
}

/// Where a task mounts one of its group's volumes (`volume_mount`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeMount {
    pub volume: String,
    pub destination: String,
    pub read_only: bool,
    pub propagation_mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EphemeralDisk {
    pub sticky: bool,
    #[serde(rename = "SizeMB")]
    pub size_mb: u64,
    pub migrate: bool,
}

impl Default for EphemeralDisk {
    fn default() -> Self {
        EphemeralDisk {
            sticky: false,
            size_mb: 300,
            migrate: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct ScalingPolicy {
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub enabled: bool,
    #[serde(rename = "Type")]
    pub policy_type: String,
    pub policy: FreeForm,
}

/// A file rendered into the task's directory (the `template` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Template {
    pub source_path: String,
    pub dest_path: String,
    pub embedded_tmpl: String,
    pub change_mode: TemplateChangeMode,
    pub change_signal: String,
    #[serde(with = "nanos")]
    pub splay: Duration,
    pub perms: String,
    pub uid: Option<i64>,
    pub gid: Option<i64>,
    pub left_delim: String,
    pub right_delim: String,
    pub envvars: bool,
    pub err_missing_key: bool,
    /// Quiescence bounds between a change and a re-render (`wait { min, max }`).
    pub wait: Option<WaitConfig>,
}

/// A template's `wait` block: durations in nanoseconds, absent when not given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WaitConfig {
    #[serde(with = "opt_nanos")]
    pub min: Option<Duration>,
    #[serde(with = "opt_nanos")]
    pub max: Option<Duration>,
}

impl Default for Template {
    fn default() -> Self {
        Template {
            source_path: String::new(),
            dest_path: String::new(),
            embedded_tmpl: String::new(),
            change_mode: TemplateChangeMode::Restart,
            change_signal: String::new(),
            splay: Duration::from_secs(5),
            perms: "0644".into(),
            uid: None,
            gid: None,
            left_delim: "{{".into(),
            right_delim: "}}".into(),
            envvars: false,
            err_missing_key: false,
            wait: None,
        }
    }
}

/// A file fetched before the task starts (the `artifact` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskArtifact {
    pub getter_source: String,
    pub getter_options: BTreeMap<String, String>,
    pub getter_headers: BTreeMap<String, String>,
    /// "any", "file" or "dir".
    pub getter_mode: String,
    pub relative_dest: String,
}

/// A task's `lifecycle` block: `Hook` must be given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskLifecycleConfig {
    pub hook: LifecycleHook,
    #[serde(default)]
    pub sidecar: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Vault {
    pub policies: Vec<String>,
    pub role: String,
    pub namespace: String,
    pub cluster: String,
    pub env: bool,
    pub disable_file: bool,
    pub change_mode: String,
    pub change_signal: String,
}

/// A workload identity token for the task (the `identity` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct WorkloadIdentity {
    pub name: String,
    pub audience: Vec<String>,
    pub env: bool,
    pub file: bool,
    #[serde(rename = "TTL", with = "nanos")]
    pub ttl: Duration,
    pub change_mode: String,
    pub change_signal: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DispatchPayload {
    pub file: String,
}

/// The task is a CSI plugin (the `csi_plugin` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct CsiPluginConfig {
    #[serde(rename = "ID")]
    pub id: String,
    /// "controller", "node" or "monolith".
    #[serde(rename = "Type")]
    pub plugin_type: String,
    pub mount_dir: String,
    pub stage_publish_base_dir: String,
    #[serde(with = "nanos")]
    pub health_timeout: Duration,
}

/// A secret made available to the task (the `secret "NAME"` block).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Secret {
    pub name: String,
    pub provider: String,
    pub path: String,
    pub config: FreeForm,
    /// Environment given to a custom provider's plugin.
    pub env: BTreeMap<String, String>,
}

/// A command an operator may run in a task (`action "NAME" { command, args }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Action {
    pub name: String,
    pub command: String,
    pub args: Vec<String>,
}

/// A group's `disconnect` block (Nomad 1.8+): when a disconnected client's allocations are
/// replaced, stopped, and reconciled when it comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DisconnectStrategy {
    #[serde(with = "opt_nanos")]
    pub lost_after: Option<Duration>,
    pub replace: Option<bool>,
    /// "best_score" (Nomad's default), "longest_running", "keep_original" or "keep_replacement".
    pub reconcile: String,
    #[serde(with = "opt_nanos")]
    pub stop_on_client_after: Option<Duration>,
}

/// The job's `ui` block: a description and links shown by the web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobUiConfig {
    pub description: String,
    pub links: Vec<JobUiLink>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobUiLink {
    pub label: String,
    pub url: String,
}

/// What happens when a task exits on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RestartMode {
    /// After `attempts` restarts within `interval`, the task fails.
    #[default]
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: u32,
    #[serde(with = "nanos")]
    pub interval: Duration,
    #[serde(with = "nanos")]
    pub delay: Duration,
    pub mode: RestartMode,
    pub render_templates: bool,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy::default_for(JobType::Service)
    }
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
                render_templates: false,
            },
            JobType::Batch | JobType::Sysbatch => RestartPolicy {
                attempts: 3,
                interval: Duration::from_secs(24 * 3600),
                delay: Duration::from_secs(15),
                mode: RestartMode::Fail,
                render_templates: false,
            },
        }
    }
}

/// How a task's stdout and stderr are rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    #[serde(rename = "MaxFiles")]
    pub max_files: u32,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: u64,
    #[serde(rename = "Disabled")]
    pub disabled: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            max_files: 10,
            max_file_size_mb: 10,
            disabled: false,
        }
    }
}

/// Longest group or task name: it becomes a directory and part of log file names
/// (`<task>.stdout.<n>`), which must fit in 255 bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Why a group or task name cannot be used. These names become directory and file names on
/// the client, which acts on them as root, so only plain names are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the name is empty")]
    Empty,
    #[error("the name is {0} bytes long; at most {MAX_NAME_LEN} are allowed")]
    TooLong(usize),
    #[error("{0:?} cannot be used: the name must not contain '/' or '\\'")]
    Slash(String),
    #[error("{0:?} cannot be used as a name")]
    Dots(String),
    #[error("{0:?} cannot be used: the name must not contain NUL or control characters")]
    Control(String),
}

/// Checks a group or task name (Nomad refuses `/` in task names; Drover also refuses `\`,
/// `.` and `..`, NUL and control characters, and bounds the length).
pub fn check_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.contains(['/', '\\']) {
        return Err(NameError::Slash(name.into()));
    }
    if name == "." || name == ".." {
        return Err(NameError::Dots(name.into()));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control(name.into()));
    }
    Ok(())
}

#[cfg(test)]
mod port_label_tests {
    use super::*;

    fn port(label: &str) -> Port {
        Port {
            label: label.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_job_with_a_port_label_twice_or_with_a_space_is_refused() {
        let mut task = Task::new("t", "raw_exec");
        task.resources.networks.push(NetworkResource {
            dynamic_ports: vec![port("HTTP")],
            ..Default::default()
        });
        let mut g = TaskGroup::new("g", 1, JobType::Service, vec![task]);
        g.networks.push(NetworkResource {
            dynamic_ports: vec![port("http"), port("my port")],
            ..Default::default()
        });
        let mut job = Job::new("j", JobType::Service);
        job.groups.push(g);
        let errs = job.canonicalize().unwrap_err();
        assert_eq!(
            errs,
            vec![
                "Job.TaskGroups[0]: port label \"my port\" must be a non-empty word without spaces",
                "Job.TaskGroups[0]: port label \"HTTP\" is used twice (labels are compared without case)",
            ]
        );
    }
}

#[cfg(test)]
mod secret_block_tests {
    use super::*;

    fn secret(name: &str, provider: &str, path: &str) -> Secret {
        Secret {
            name: name.into(),
            provider: provider.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    #[test]
    fn secret_blocks_need_a_name_a_plain_provider_and_a_path() {
        let mut task = Task::new("t", "raw_exec");
        task.secrets = vec![
            secret("db", "nomad", "app/db"),
            secret("db", "mine", "x"),
            secret("a.b", "../bin/sh", ""),
            secret("v", "vault", "kv/x"),
        ];
        let g = TaskGroup::new("g", 1, JobType::Batch, vec![task]);
        let mut job = Job::new("j", JobType::Batch);
        job.groups.push(g);
        let errs = job.canonicalize().unwrap_err();
        let f = "Job.TaskGroups[0].Tasks[0].Secrets";
        assert_eq!(errs.len(), 5, "{errs:#?}");
        assert!(errs[0].starts_with(&format!("{f}[1].Name: secret \"db\" is defined twice")));
        assert!(errs[1].starts_with(&format!("{f}[2].Name: \"a.b\" must be")));
        assert!(errs[2].starts_with(&format!("{f}[2].Provider: \"../bin/sh\" cannot be used")));
        assert!(errs[3].starts_with(&format!("{f}[2].Path: missing")));
        assert!(errs[4].starts_with(&format!("{f}[3].Provider: Vault is not integrated")));
    }
}
