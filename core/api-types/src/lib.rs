//! The JSON shapes of Nomad's HTTP API (PascalCase, durations in nanoseconds, times in Unix
//! nanoseconds) and their conversions to and from Drover's model. The HTTP API and the CLI
//! share them, so Nomad's wire format never leaks into the model.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model as m;
use serde::{Deserialize, Serialize};

fn ns(d: Duration) -> i64 {
    d.as_nanos() as i64
}

fn dur(n: Option<i64>, default: Duration) -> Duration {
    match n {
        Some(n) if n >= 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// A job as the API reads and writes it. Every field is optional on input.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Job {
    #[serde(rename = "ID")]
    pub id: Option<String>,
    pub name: Option<String>,
    pub namespace: Option<String>,
    #[serde(rename = "Type")]
    pub job_type: Option<String>,
    pub priority: Option<i32>,
    pub region: Option<String>,
    pub datacenters: Option<Vec<String>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub task_groups: Option<Vec<TaskGroup>>,
    pub stop: Option<bool>,
    pub status: Option<String>,
    pub version: Option<u64>,
    pub submit_time: Option<i64>,
    pub create_index: Option<u64>,
    pub modify_index: Option<u64>,
    pub job_modify_index: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskGroup {
    pub name: Option<String>,
    pub count: Option<i64>,
    pub meta: Option<BTreeMap<String, String>>,
    pub restart_policy: Option<RestartPolicy>,
    pub tasks: Option<Vec<Task>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub attempts: Option<i64>,
    pub interval: Option<i64>,
    pub delay: Option<i64>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Task {
    pub name: Option<String>,
    pub driver: Option<String>,
    pub user: Option<String>,
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    pub env: Option<BTreeMap<String, String>>,
    pub meta: Option<BTreeMap<String, String>>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
    pub kill_timeout: Option<i64>,
    pub kill_signal: Option<String>,
    pub log_config: Option<LogConfig>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Resources {
    #[serde(rename = "CPU")]
    pub cpu: Option<i64>,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: Option<i64>,
    #[serde(rename = "MemoryMaxMB")]
    pub memory_max_mb: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    #[serde(rename = "MaxFiles")]
    pub max_files: Option<i64>,
    #[serde(rename = "MaxFileSizeMB")]
    pub max_file_size_mb: Option<i64>,
}

/// A request body the API could not turn into a job: names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidJob {
    pub field: String,
    pub message: String,
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> InvalidJob {
    InvalidJob {
        field: field.into(),
        message: message.into(),
    }
}

fn nonneg(field: &str, v: Option<i64>, default: u64) -> Result<u64, InvalidJob> {
    match v {
        None => Ok(default),
        Some(v) => {
            u64::try_from(v).map_err(|_| invalid(field, format!("must not be negative, got {v}")))
        }
    }
}

impl Job {
    /// Converts an API job to the model, applying Nomad's defaults and naming bad fields.
    pub fn to_model(&self) -> Result<m::Job, InvalidJob> {
        let id = self
            .id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("Job.ID", "missing job ID"))?;
        let job_type = match &self.job_type {
            None => m::JobType::Service,
            Some(t) => m::JobType::parse(t).ok_or_else(|| {
                invalid(
                    "Job.Type",
                    format!("{t:?} is not one of service, batch, system, sysbatch"),
                )
            })?,
        };
        let mut job = m::Job::new(id, job_type);
        if let Some(n) = &self.name {
            job.name = n.clone();
        }
        if let Some(n) = self.namespace.clone().filter(|s| !s.is_empty()) {
            job.namespace = n;
        }
        if let Some(r) = self.region.clone().filter(|s| !s.is_empty()) {
            job.region = r;
        }
        if let Some(p) = self.priority {
            if !(1..=100).contains(&p) {
                return Err(invalid(
                    "Job.Priority",
                    format!("must be between 1 and 100, got {p}"),
                ));
            }
            job.priority = p;
        }
        if let Some(d) = &self.datacenters {
            job.datacenters = d.clone();
        }
        job.meta = self.meta.clone().unwrap_or_default();
        job.stop = self.stop.unwrap_or(false);
        let groups = self.task_groups.as_deref().unwrap_or_default();
        if groups.is_empty() {
            return Err(invalid(
                "Job.TaskGroups",
                "a job needs at least one task group",
            ));
        }
        for (gi, g) in groups.iter().enumerate() {
            let gf = format!("Job.TaskGroups[{gi}]");
            let name = g
                .name
                .clone()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| invalid(format!("{gf}.Name"), "missing group name"))?;
            if job.groups.iter().any(|x| x.name == name) {
                return Err(invalid(
                    format!("{gf}.Name"),
                    format!("group {name:?} is defined twice"),
                ));
            }
            let default_restart = m::RestartPolicy::default_for(job_type);
            let restart = restart_to_model(
                &format!("{gf}.RestartPolicy"),
                g.restart_policy.as_ref(),
                default_restart,
            )?;
            let mut tasks = Vec::new();
            for (ti, t) in g.tasks.as_deref().unwrap_or_default().iter().enumerate() {
                let tf = format!("{gf}.Tasks[{ti}]");
                let tname = t
                    .name
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid(format!("{tf}.Name"), "missing task name"))?;
                let driver = t
                    .driver
                    .clone()
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| invalid(format!("{tf}.Driver"), "missing driver"))?;
                let mut task = m::Task::new(tname, driver);
                task.user = t.user.clone().unwrap_or_default();
                task.config = t.config.clone().unwrap_or_default();
                task.env = t.env.clone().unwrap_or_default();
                task.meta = t.meta.clone().unwrap_or_default();
                if let Some(r) = &t.resources {
                    let d = m::Resources::default();
                    task.resources = m::Resources {
                        cpu: nonneg(&format!("{tf}.Resources.CPU"), r.cpu, d.cpu)?,
                        memory_mb: nonneg(
                            &format!("{tf}.Resources.MemoryMB"),
                            r.memory_mb,
                            d.memory_mb,
                        )?,
                        memory_max_mb: nonneg(
                            &format!("{tf}.Resources.MemoryMaxMB"),
                            r.memory_max_mb,
                            0,
                        )?,
                    };
                }
                if t.restart_policy.is_some() {
                    task.restart = Some(restart_to_model(
                        &format!("{tf}.RestartPolicy"),
                        t.restart_policy.as_ref(),
                        restart,
                    )?);
                }
                task.kill_timeout = dur(t.kill_timeout, task.kill_timeout);
                if let Some(s) = t.kill_signal.clone().filter(|s| !s.is_empty()) {
                    task.kill_signal = s;
                }
                if let Some(l) = &t.log_config {
                    let d = m::LogConfig::default();
                    task.logs = m::LogConfig {
                        max_files: nonneg(
                            &format!("{tf}.LogConfig.MaxFiles"),
                            l.max_files,
                            d.max_files as u64,
                        )?
                        .max(1) as u32,
                        max_file_size_mb: nonneg(
                            &format!("{tf}.LogConfig.MaxFileSizeMB"),
                            l.max_file_size_mb,
                            d.max_file_size_mb,
                        )?
                        .max(1),
                    };
                }
                tasks.push(task);
            }
            if tasks.is_empty() {
                return Err(invalid(
                    format!("{gf}.Tasks"),
                    "a task group needs at least one task",
                ));
            }
            job.groups.push(m::TaskGroup {
                name,
                count: nonneg(&format!("{gf}.Count"), g.count, 1)? as u32,
                meta: g.meta.clone().unwrap_or_default(),
                restart,
                tasks,
            });
        }
        Ok(job)
    }

    pub fn from_model(j: &m::Job) -> Job {
        Job {
            id: Some(j.id.clone()),
            name: Some(j.name.clone()),
            namespace: Some(j.namespace.clone()),
            job_type: Some(j.job_type.as_str().into()),
            priority: Some(j.priority),
            region: Some(j.region.clone()),
            datacenters: Some(j.datacenters.clone()),
            meta: Some(j.meta.clone()),
            task_groups: Some(j.groups.iter().map(group_from_model).collect()),
            stop: Some(j.stop),
            status: Some(j.status.as_str().into()),
            version: Some(j.version),
            submit_time: Some(j.submit_time),
            create_index: Some(j.create_index),
            modify_index: Some(j.modify_index),
            job_modify_index: Some(j.job_modify_index),
        }
    }
}

fn restart_to_model(
    field: &str,
    r: Option<&RestartPolicy>,
    d: m::RestartPolicy,
) -> Result<m::RestartPolicy, InvalidJob> {
    let Some(r) = r else { return Ok(d) };
    Ok(m::RestartPolicy {
        attempts: nonneg(&format!("{field}.Attempts"), r.attempts, d.attempts as u64)? as u32,
        interval: dur(r.interval, d.interval),
        delay: dur(r.delay, d.delay),
        mode: match r.mode.as_deref() {
            None | Some("") => d.mode,
            Some("fail") => m::RestartMode::Fail,
            Some("delay") => m::RestartMode::Delay,
            Some(o) => {
                return Err(invalid(
                    format!("{field}.Mode"),
                    format!("{o:?} is not one of fail, delay"),
                ));
            }
        },
    })
}

fn restart_from_model(r: &m::RestartPolicy) -> RestartPolicy {
    RestartPolicy {
        attempts: Some(r.attempts as i64),
        interval: Some(ns(r.interval)),
        delay: Some(ns(r.delay)),
        mode: Some(r.mode.as_str().into()),
    }
}

fn group_from_model(g: &m::TaskGroup) -> TaskGroup {
    TaskGroup {
        name: Some(g.name.clone()),
        count: Some(g.count as i64),
        meta: Some(g.meta.clone()),
        restart_policy: Some(restart_from_model(&g.restart)),
        tasks: Some(
            g.tasks
                .iter()
                .map(|t| Task {
                    name: Some(t.name.clone()),
                    driver: Some(t.driver.clone()),
                    user: Some(t.user.clone()),
                    config: Some(t.config.clone()),
                    env: Some(t.env.clone()),
                    meta: Some(t.meta.clone()),
                    resources: Some(Resources {
                        cpu: Some(t.resources.cpu as i64),
                        memory_mb: Some(t.resources.memory_mb as i64),
                        memory_max_mb: Some(t.resources.memory_max_mb as i64),
                    }),
                    restart_policy: t.restart.as_ref().map(restart_from_model),
                    kill_timeout: Some(ns(t.kill_timeout)),
                    kill_signal: Some(t.kill_signal.clone()),
                    log_config: Some(LogConfig {
                        max_files: Some(t.logs.max_files as i64),
                        max_file_size_mb: Some(t.logs.max_file_size_mb as i64),
                    }),
                })
                .collect(),
        ),
    }
}

/// `PUT /v1/jobs` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterRequest {
    pub job: Option<Job>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobRegisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub warnings: String,
    pub index: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobDeregisterResponse {
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub eval_create_index: u64,
    pub job_modify_index: u64,
    pub index: u64,
}

/// `GET /v1/jobs` entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JobListStub {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub namespace: String,
    #[serde(rename = "Type")]
    pub job_type: String,
    pub priority: i32,
    pub status: String,
    pub stop: bool,
    pub datacenters: Vec<String>,
    pub version: u64,
    pub submit_time: i64,
    pub create_index: u64,
    pub modify_index: u64,
    pub job_modify_index: u64,
}

impl JobListStub {
    pub fn from_model(j: &m::Job) -> Self {
        JobListStub {
            id: j.id.clone(),
            name: j.name.clone(),
            namespace: j.namespace.clone(),
            job_type: j.job_type.as_str().into(),
            priority: j.priority,
            status: j.status.as_str().into(),
            stop: j.stop,
            datacenters: j.datacenters.clone(),
            version: j.version,
            submit_time: j.submit_time,
            create_index: j.create_index,
            modify_index: j.modify_index,
            job_modify_index: j.job_modify_index,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskEvent {
    #[serde(rename = "Type")]
    pub kind: String,
    pub time: i64,
    pub message: String,
    pub display_message: String,
    pub exit_code: i32,
    pub signal: i32,
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    pub fails_task: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TaskState {
    pub state: String,
    pub failed: bool,
    pub restarts: u32,
    /// RFC 3339, or null before the task started.
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub events: Vec<TaskEvent>,
}

fn rfc3339(ns: i64) -> Option<String> {
    if ns <= 0 {
        return None;
    }
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    ))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

impl TaskState {
    pub fn from_model(t: &m::TaskState) -> Self {
        TaskState {
            state: t.state.as_str().into(),
            failed: t.failed,
            restarts: t.restarts,
            started_at: rfc3339(t.started_at),
            finished_at: rfc3339(t.finished_at),
            events: t
                .events
                .iter()
                .map(|e| TaskEvent {
                    kind: e.kind.clone(),
                    time: e.time,
                    message: e.message.clone(),
                    display_message: e.message.clone(),
                    exit_code: e.exit_code,
                    signal: e.signal,
                    oom_killed: e.oom_killed,
                    fails_task: e.fails_task,
                })
                .collect(),
        }
    }
}

/// An allocation, as `GET /v1/allocation/:id` returns it and (without `Job`) as list entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Allocation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    #[serde(rename = "EvalID")]
    pub eval_id: String,
    pub name: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub node_name: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    pub task_group: String,
    pub desired_status: String,
    pub desired_description: String,
    pub client_status: String,
    pub client_description: String,
    pub task_states: BTreeMap<String, TaskState>,
    pub previous_allocation: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Allocation {
    pub fn from_model(a: &m::Allocation, node_name: &str, job: Option<&m::Job>) -> Self {
        Allocation {
            id: a.id.clone(),
            namespace: a.namespace.clone(),
            eval_id: a.eval_id.clone(),
            name: a.name.clone(),
            node_id: a.node_id.clone(),
            node_name: node_name.into(),
            job_id: a.job_id.clone(),
            job_version: a.job_version,
            job: job.map(Job::from_model),
            task_group: a.task_group.clone(),
            desired_status: a.desired_status.as_str().into(),
            desired_description: a.desired_description.clone(),
            client_status: a.client_status.as_str().into(),
            client_description: a.client_description.clone(),
            task_states: a
                .task_states
                .iter()
                .map(|(k, v)| (k.clone(), TaskState::from_model(v)))
                .collect(),
            previous_allocation: a.previous_allocation.clone(),
            create_index: a.create_index,
            modify_index: a.modify_index,
            create_time: a.create_time,
            modify_time: a.modify_time,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocationMetric {
    pub nodes_evaluated: u32,
    pub nodes_filtered: u32,
    pub constraint_filtered: BTreeMap<String, u32>,
    pub dimension_exhausted: BTreeMap<String, u32>,
    pub coalesced_failures: u32,
    /// Drover's plain-words explanation of the nearest miss.
    pub nearest_miss: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Evaluation {
    #[serde(rename = "ID")]
    pub id: String,
    pub namespace: String,
    pub priority: i32,
    #[serde(rename = "Type")]
    pub job_type: String,
    pub triggered_by: String,
    #[serde(rename = "JobID")]
    pub job_id: String,
    pub job_modify_index: u64,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    pub status: String,
    pub status_description: String,
    #[serde(rename = "FailedTGAllocs")]
    pub failed_tg_allocs: BTreeMap<String, AllocationMetric>,
    pub blocked_eval: String,
    pub previous_eval: String,
    pub create_index: u64,
    pub modify_index: u64,
    pub create_time: i64,
    pub modify_time: i64,
}

impl Evaluation {
    pub fn from_model(e: &m::Evaluation) -> Self {
        Evaluation {
            id: e.id.clone(),
            namespace: e.namespace.clone(),
            priority: e.priority,
            job_type: e.job_type.as_str().into(),
            triggered_by: e.triggered_by.clone(),
            job_id: e.job_id.clone(),
            job_modify_index: e.job_modify_index,
            node_id: e.node_id.clone(),
            status: e.status.as_str().into(),
            status_description: e.status_description.clone(),
            failed_tg_allocs: e
                .failed_tg_allocs
                .iter()
                .map(|(k, f)| {
                    (
                        k.clone(),
                        AllocationMetric {
                            nodes_evaluated: f.nodes_evaluated,
                            nodes_filtered: f.nodes_filtered,
                            constraint_filtered: f.constraint_filtered.clone(),
                            dimension_exhausted: f.dimension_exhausted.clone(),
                            coalesced_failures: f.unplaced.saturating_sub(1),
                            nearest_miss: f.nearest_miss.clone(),
                        },
                    )
                })
                .collect(),
            blocked_eval: e.blocked_eval.clone(),
            previous_eval: e.previous_eval.clone(),
            create_index: e.create_index,
            modify_index: e.modify_index,
            create_time: e.create_time,
            modify_time: e.modify_time,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeResources {
    #[serde(rename = "CPU")]
    pub cpu: u64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
}

/// A node, as `GET /v1/node/:id` returns it and (trimmed) as `GET /v1/nodes` entries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub name: String,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    pub status: String,
    pub status_description: String,
    pub scheduling_eligibility: String,
    pub drain: bool,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    pub node_resources: NodeResources,
    pub reserved_resources: NodeResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    pub create_index: u64,
    pub modify_index: u64,
}

impl Node {
    pub fn from_model(n: &m::Node) -> Self {
        let res = |r: &m::NodeResources| NodeResources {
            cpu: r.cpu,
            memory_mb: r.memory_mb,
            disk_mb: r.disk_mb,
        };
        Node {
            id: n.id.clone(),
            name: n.name.clone(),
            datacenter: n.datacenter.clone(),
            node_class: n.node_class.clone(),
            node_pool: n.node_pool.clone(),
            status: n.status.as_str().into(),
            status_description: n.status_description.clone(),
            scheduling_eligibility: n.scheduling_eligibility.clone(),
            drain: false,
            http_addr: n.http_addr.clone(),
            attributes: n.attributes.clone(),
            meta: n.meta.clone(),
            node_resources: res(&n.resources),
            reserved_resources: res(&n.reserved),
            drivers: n
                .drivers
                .iter()
                .map(|(k, d)| {
                    (
                        k.clone(),
                        DriverInfo {
                            detected: d.detected,
                            healthy: d.healthy,
                            health_description: d.health_description.clone(),
                            attributes: d.attributes.clone(),
                        },
                    )
                })
                .collect(),
            create_index: n.create_index,
            modify_index: n.modify_index,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_through_api_shape() {
        let body = r#"{"Job":{"ID":"web","Type":"batch","TaskGroups":[{"Name":"g","Count":2,
            "Tasks":[{"Name":"t","Driver":"raw_exec","Config":{"command":"/bin/true"},
            "KillTimeout":3000000000,"Resources":{"CPU":50,"MemoryMB":32}}]}]}}"#;
        let req: JobRegisterRequest = serde_json::from_str(body).unwrap();
        let job = req.job.unwrap().to_model().unwrap();
        assert_eq!(job.job_type, m::JobType::Batch);
        assert_eq!(job.groups[0].count, 2);
        assert_eq!(job.groups[0].tasks[0].kill_timeout, Duration::from_secs(3));
        assert_eq!(job.groups[0].tasks[0].resources.memory_mb, 32);
        let back = Job::from_model(&job).to_model().unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn bad_fields_are_named() {
        let j: Job = serde_json::from_str(
            r#"{"ID":"x","TaskGroups":[{"Name":"g","Tasks":[{"Name":"t"}]}]}"#,
        )
        .unwrap();
        let e = j.to_model().unwrap_err();
        assert_eq!(
            e.to_string(),
            "Job.TaskGroups[0].Tasks[0].Driver: missing driver"
        );
    }

    #[test]
    fn times_format_as_rfc3339() {
        assert_eq!(
            rfc3339(1_700_000_000_123_456_789).unwrap(),
            "2023-11-14T22:13:20.123456789Z"
        );
    }
}
