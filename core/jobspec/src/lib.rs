//! Nomad-style HCL jobspecs to Drover's model.
//!
//! The document is walked on hcl-edit's syntax tree, which keeps byte spans, so every error
//! names `file:line:column` and the block path (`job "web" > group "g" > task "t"`).
//! Expressions are evaluated with hcl-rs; runtime interpolations (`${NOMAD_*}`, `${attr.*}`,
//! `${node.*}`, `${meta.*}`) cannot be evaluated at submit time and are kept as written, for
//! the client to interpolate.

mod reader;

use drover_model::{
    Job, JobType, LogConfig, Resources, RestartMode, RestartPolicy, Task, TaskGroup,
};
use hcl::edit::structure::{Block, Body};

use reader::{BlockReader, Source};

/// A jobspec that could not be turned into a job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {path}{sep}{message}", sep = if path.is_empty() { "" } else { ": " })]
pub struct JobspecError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Where in the document: `job "web" > group "g" > task "t"`.
    pub path: String,
    pub message: String,
}

/// A parsed job, and what in it Drover read but does not act on yet.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub job: Job,
    pub warnings: Vec<String>,
}

/// Parses the HCL jobspec `src`, read from `file` (used in error messages).
pub fn parse(src: &str, file: &str) -> Result<Parsed, JobspecError> {
    let source = Source::new(src, file);
    let body: Body = src.parse::<Body>().map_err(|e| JobspecError {
        file: file.to_string(),
        line: e.location().line(),
        column: e.location().column(),
        path: String::new(),
        message: format!("invalid HCL: {}", e.message()),
    })?;
    let mut warnings = Vec::new();
    let mut jobs = body.blocks().filter(|b| b.ident.as_str() == "job");
    let Some(job_block) = jobs.next() else {
        return Err(source.error_at(
            0,
            "",
            "no job block: a jobspec holds exactly one `job \"NAME\" { ... }`",
        ));
    };
    if let Some(second) = jobs.next() {
        return Err(source.error_span(second, "", "a jobspec holds exactly one job block"));
    }
    for s in body.iter() {
        if let Some(b) = s.as_block() {
            if b.ident.as_str() != "job" {
                return Err(source.error_span(
                    b,
                    "",
                    &format!("unknown block {:?} at top level", b.ident.as_str()),
                ));
            }
        } else if let Some(a) = s.as_attribute() {
            return Err(source.error_span(
                a,
                "",
                &format!("unknown key {:?} at top level", a.key.as_str()),
            ));
        }
    }
    let job = parse_job(&source, job_block, &mut warnings)?;
    Ok(Parsed { job, warnings })
}

/// Blocks Drover recognises but does not act on yet; they produce a warning, not an error.
const NOT_YET: &[(&str, &str)] = &[
    ("constraint", "placement constraints"),
    ("affinity", "placement affinities"),
    ("spread", "spread placement"),
    ("update", "rolling updates"),
    ("migrate", "drain migrations"),
    ("reschedule", "rescheduling policies"),
    ("periodic", "periodic jobs"),
    ("parameterized", "dispatch jobs"),
    ("multiregion", "multi-region jobs"),
    ("vault", "Vault secrets"),
    ("consul", "Consul integration"),
    ("network", "group networks and ports"),
    ("service", "service registration"),
    ("volume", "volumes"),
    ("ephemeral_disk", "ephemeral disks"),
    ("scaling", "scaling policies"),
    ("template", "templates"),
    ("artifact", "artifacts"),
    ("lifecycle", "task lifecycle hooks"),
    ("volume_mount", "volume mounts"),
    ("identity", "workload identity"),
    ("csi_plugin", "CSI plugins"),
    ("dispatch_payload", "dispatch payloads"),
    ("device", "devices"),
    ("secret", "secrets"),
];

fn not_yet(r: &mut BlockReader<'_>, names: &[&str]) {
    for name in names {
        let what = NOT_YET
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, w)| *w)
            .unwrap_or("this block");
        for b in r.blocks(name) {
            let msg = format!(
                "block {name:?} is accepted but not acted on yet ({what} are not implemented)"
            );
            r.warn_at(b, &msg);
        }
    }
}

fn parse_job(
    src: &Source<'_>,
    block: &Block,
    warnings: &mut Vec<String>,
) -> Result<Job, JobspecError> {
    let mut r = BlockReader::new(src, block, String::new(), "job")?;
    let id = r.label().to_string();
    let job_type = match r.opt_string("type")? {
        None => JobType::Service,
        Some((t, at)) => JobType::parse(&t).ok_or_else(|| {
            r.error_at(
                at,
                &format!("type {t:?} is not one of service, batch, system, sysbatch"),
            )
        })?,
    };
    let mut job = Job::new(id, job_type);
    if let Some((n, _)) = r.opt_string("name")? {
        job.name = n;
    }
    if let Some((n, _)) = r.opt_string("namespace")? {
        job.namespace = n;
    }
    if let Some((n, _)) = r.opt_string("region")? {
        job.region = n;
    }
    if let Some(p) = r.opt_int("priority")? {
        if !(1..=100).contains(&p) {
            return Err(r.error_key("priority", "priority must be between 1 and 100"));
        }
        job.priority = p as i32;
    }
    if let Some(dcs) = r.opt_string_list("datacenters")? {
        job.datacenters = dcs;
    }
    job.meta = r.meta()?;
    not_yet(
        &mut r,
        &[
            "constraint",
            "affinity",
            "spread",
            "update",
            "migrate",
            "reschedule",
            "periodic",
            "parameterized",
            "multiregion",
            "vault",
            "consul",
        ],
    );
    r.unimplemented_attrs(&[
        "all_at_once",
        "node_pool",
        "vault_token",
        "consul_token",
        "id",
    ]);
    let groups: Vec<&Block> = r.blocks("group");
    for g in groups {
        let group = parse_group(src, g, r.path(), job_type, warnings)?;
        if job.groups.iter().any(|x| x.name == group.name) {
            return Err(src.error_span(
                g,
                r.path(),
                &format!("group {:?} is defined twice", group.name),
            ));
        }
        job.groups.push(group);
    }
    if job.groups.is_empty() {
        return Err(r.error_here("a job needs at least one group block"));
    }
    warnings.extend(r.finish()?);
    Ok(job)
}

fn parse_group(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    job_type: JobType,
    warnings: &mut Vec<String>,
) -> Result<TaskGroup, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "group")?;
    let name = r.label().to_string();
    let count = match r.opt_int("count")? {
        None => 1,
        Some(c) if c >= 0 => c as u32,
        Some(_) => return Err(r.error_key("count", "count must not be negative")),
    };
    let meta = r.meta()?;
    let restart = match r.block_once("restart")? {
        Some(b) => parse_restart(
            src,
            b,
            r.path(),
            RestartPolicy::default_for(job_type),
            warnings,
        )?,
        None => RestartPolicy::default_for(job_type),
    };
    not_yet(
        &mut r,
        &[
            "constraint",
            "affinity",
            "spread",
            "update",
            "migrate",
            "reschedule",
            "network",
            "service",
            "volume",
            "ephemeral_disk",
            "scaling",
            "consul",
            "vault",
        ],
    );
    r.unimplemented_attrs(&[
        "shutdown_delay",
        "stop_after_client_disconnect",
        "max_client_disconnect",
        "prevent_reschedule_on_lost",
    ]);
    let mut tasks = Vec::new();
    for t in r.blocks("task") {
        let task = parse_task(src, t, r.path(), job_type, warnings)?;
        if tasks.iter().any(|x: &Task| x.name == task.name) {
            return Err(src.error_span(
                t,
                r.path(),
                &format!("task {:?} is defined twice", task.name),
            ));
        }
        tasks.push(task);
    }
    if tasks.is_empty() {
        return Err(r.error_here("a group needs at least one task block"));
    }
    warnings.extend(r.finish()?);
    Ok(TaskGroup {
        name,
        count,
        meta,
        restart: Some(restart),
        tasks,
        ..Default::default()
    })
}

fn parse_restart(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    mut p: RestartPolicy,
    warnings: &mut Vec<String>,
) -> Result<RestartPolicy, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "restart")?;
    if let Some(a) = r.opt_int("attempts")? {
        p.attempts = u32::try_from(a)
            .map_err(|_| r.error_key("attempts", "attempts must not be negative"))?;
    }
    if let Some(d) = r.opt_duration("interval")? {
        p.interval = d;
    }
    if let Some(d) = r.opt_duration("delay")? {
        p.delay = d;
    }
    if let Some((m, at)) = r.opt_string("mode")? {
        p.mode = match m.as_str() {
            "fail" => RestartMode::Fail,
            "delay" => RestartMode::Delay,
            _ => return Err(r.error_at(at, &format!("mode {m:?} is not one of fail, delay"))),
        };
    }
    r.unimplemented_attrs(&["render_templates"]);
    warnings.extend(r.finish()?);
    Ok(p)
}

fn parse_task(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    job_type: JobType,
    warnings: &mut Vec<String>,
) -> Result<Task, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "task")?;
    let name = r.label().to_string();
    let driver = match r.opt_string("driver")? {
        Some((d, _)) => d,
        None => return Err(r.error_here("missing required key \"driver\"")),
    };
    let mut task = Task::new(name, driver);
    if let Some((u, _)) = r.opt_string("user")? {
        task.user = u;
    }
    if let Some(d) = r.opt_duration("kill_timeout")? {
        task.kill_timeout = d;
    }
    if let Some((s, _)) = r.opt_string("kill_signal")? {
        task.kill_signal = s;
    }
    if let Some(c) = r.block_once("config")? {
        task.config = r.free_form(c)?;
    }
    task.env = r.string_map("env")?;
    task.meta = r.meta()?;
    if let Some(b) = r.block_once("resources")? {
        task.resources = parse_resources(src, b, r.path(), warnings)?;
    }
    if let Some(b) = r.block_once("restart")? {
        task.restart = Some(parse_restart(
            src,
            b,
            r.path(),
            RestartPolicy::default_for(job_type),
            warnings,
        )?);
    }
    if let Some(b) = r.block_once("logs")? {
        task.logs = parse_logs(src, b, r.path(), warnings)?;
    }
    not_yet(
        &mut r,
        &[
            "template",
            "artifact",
            "service",
            "vault",
            "identity",
            "lifecycle",
            "constraint",
            "affinity",
            "volume_mount",
            "csi_plugin",
            "dispatch_payload",
            "scaling",
            "consul",
            "secret",
        ],
    );
    r.unimplemented_attrs(&["leader", "shutdown_delay", "kind"]);
    warnings.extend(r.finish()?);
    Ok(task)
}

fn parse_resources(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<Resources, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "resources")?;
    let mut res = Resources::default();
    let nonneg = |r: &BlockReader<'_>, k: &str, v: i64| {
        u64::try_from(v).map_err(|_| r.error_key(k, &format!("{k} must not be negative")))
    };
    if let Some(v) = r.opt_int("cpu")? {
        res.cpu = nonneg(&r, "cpu", v)?;
    }
    if let Some(v) = r.opt_int("memory")? {
        res.memory_mb = nonneg(&r, "memory", v)?;
    }
    if let Some(v) = r.opt_int("memory_max")? {
        res.memory_max_mb = nonneg(&r, "memory_max", v)?;
    }
    r.unimplemented_attrs(&["cores", "disk", "iops"]);
    not_yet(&mut r, &["device"]);
    warnings.extend(r.finish()?);
    Ok(res)
}

fn parse_logs(
    src: &Source<'_>,
    block: &Block,
    parent: &str,
    warnings: &mut Vec<String>,
) -> Result<LogConfig, JobspecError> {
    let mut r = BlockReader::new(src, block, parent.to_string(), "logs")?;
    let mut l = LogConfig::default();
    if let Some(v) = r.opt_int("max_files")? {
        l.max_files = u32::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| r.error_key("max_files", "max_files must be at least 1"))?;
    }
    if let Some(v) = r.opt_int("max_file_size")? {
        l.max_file_size_mb = u64::try_from(v)
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| r.error_key("max_file_size", "max_file_size must be at least 1 (MB)"))?;
    }
    r.unimplemented_attrs(&["disabled", "enabled"]);
    warnings.extend(r.finish()?);
    Ok(l)
}

pub use drover_model::serde_fmt::{format_duration, parse_duration};

#[cfg(test)]
mod tests;
