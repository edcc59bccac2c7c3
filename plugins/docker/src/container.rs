//! A task turned into the engine's create request. Pure: nothing here talks to the engine
//! or the disk, so every check of hostile input is unit-tested.

pub mod mounts;
pub mod ports;
pub mod resources;

use std::collections::BTreeMap;

use bollard::models::{
    ContainerCreateBody, DeviceMapping, HealthConfig, HostConfig, HostConfigLogConfig,
};
use drover_plugin_sdk::proto::driver::TaskConfig as Task;

use crate::caps;
use crate::config::{Settings, TaskConfig};

/// Why a task's config cannot become a container (the user must fix the job).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Every container Drover creates carries this label = "true" (the gc reaper's mark).
pub const LABEL_MANAGED: &str = "drover.managed";
/// The task id (`<alloc>/<task>/<attempt>`) of the container.
pub const LABEL_TASK_ID: &str = "drover.task_id";
/// The node (agent) whose plugin made the container.
pub const LABEL_NODE_ID: &str = "drover.node_id";
/// "true" on an allocation's network (infra) container.
pub const LABEL_INFRA: &str = "drover.infra";
pub const LABEL_ALLOC_ID: &str = "com.hashicorp.nomad.alloc_id";
pub const LABEL_TASK_NAME: &str = "com.hashicorp.nomad.task_name";
pub const LABEL_JOB_NAME: &str = "com.hashicorp.nomad.job_name";
pub const LABEL_GROUP_NAME: &str = "com.hashicorp.nomad.task_group_name";

/// Label namespaces a job may not set: they are how Drover knows its own containers.
const RESERVED_LABEL_PREFIXES: &[&str] = &["drover.", "com.hashicorp.nomad."];

/// What the driver creates: the container's name and the request.
#[derive(Debug)]
pub struct ContainerSpec {
    pub name: String,
    pub body: ContainerCreateBody,
    /// Bind sources relative to the task directory, to check on disk before creating.
    pub relative_sources: Vec<std::path::PathBuf>,
}

/// The container's name: the task id made a valid container name.
pub fn container_name(task_id: &str) -> String {
    let cleaned: String = task_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(200)
        .collect();
    if cleaned.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        cleaned
    } else {
        format!("drover-{cleaned}")
    }
}

/// The container's labels: the job's, Drover's own, and the operator's `extra_labels`.
pub fn labels(
    task: &Task,
    cfg: &TaskConfig,
    settings: &Settings,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out = BTreeMap::new();
    for (k, v) in &cfg.labels {
        if RESERVED_LABEL_PREFIXES.iter().any(|p| k.starts_with(p)) {
            return Err(SpecError(format!(
                "label {k:?}: the prefixes {} are Drover's own",
                RESERVED_LABEL_PREFIXES.join(", ")
            )));
        }
        out.insert(k.clone(), v.clone());
    }
    out.insert(LABEL_MANAGED.into(), "true".into());
    out.insert(LABEL_TASK_ID.into(), task.id.clone());
    if !settings.node_id.is_empty() {
        out.insert(LABEL_NODE_ID.into(), settings.node_id.clone());
    }
    out.insert(LABEL_ALLOC_ID.into(), task.alloc_id.clone());
    out.insert(LABEL_TASK_NAME.into(), task.name.clone());
    let extra = [
        ("job_name", LABEL_JOB_NAME, &task.job_name),
        ("task_group_name", LABEL_GROUP_NAME, &task.group_name),
    ];
    for (key, label, value) in extra {
        let wanted = settings
            .extra_labels
            .iter()
            .any(|p| p == key || (p.ends_with('*') && key.starts_with(p.trim_end_matches('*'))));
        if wanted && !value.is_empty() {
            out.insert(label.into(), value.clone());
        }
    }
    Ok(out)
}

/// The command line: `command` + `args`, or `args` alone (appended to the entrypoint).
fn cmd(cfg: &TaskConfig) -> Option<Vec<String>> {
    match cfg.command.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(
            std::iter::once(c.to_string())
                .chain(cfg.args.iter().cloned())
                .collect(),
        ),
        None if !cfg.args.is_empty() => Some(cfg.args.clone()),
        None => None,
    }
}

/// The task's environment as `K=V` lines, with the task directories as paths inside.
fn env(task: &Task) -> Result<Vec<String>, SpecError> {
    mounts::inside_env(task)
        .into_iter()
        .map(|(k, v)| {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SpecError(format!(
                    "environment variable {k:?} is not valid"
                )));
            }
            Ok(format!("{k}={v}"))
        })
        .collect()
}

/// Settings that widen what the container can touch, each refused unless the operator
/// allows privileged tasks.
fn check_privileges(cfg: &TaskConfig, settings: &Settings) -> Result<(), SpecError> {
    if settings.allow_privileged {
        return Ok(());
    }
    let refuse = |what: String| {
        Err(SpecError(format!(
            "{what} needs allow_privileged in the docker plugin's config"
        )))
    };
    if cfg.privileged {
        return refuse("privileged = true".into());
    }
    for (key, mode) in [
        ("ipc_mode", &cfg.ipc_mode),
        ("pid_mode", &cfg.pid_mode),
        ("uts_mode", &cfg.uts_mode),
    ] {
        if let Some(m) = mode
            .as_deref()
            .filter(|m| *m == "host" || m.starts_with("container:"))
        {
            return refuse(format!("{key} = {m:?}"));
        }
    }
    if !cfg.devices.is_empty() {
        return refuse("devices".into());
    }
    if cfg.oom_score_adj.is_some_and(|a| a < 0) {
        return refuse("a negative oom_score_adj".into());
    }
    // Only no-new-privileges narrows; a custom seccomp profile, apparmor profile or SELinux
    // label can as well widen what the container may do.
    for o in &cfg.security_opt {
        let lower = o.to_ascii_lowercase().replace(':', "=");
        if lower != "no-new-privileges" && lower != "no-new-privileges=true" {
            return refuse(format!("security_opt {o:?}"));
        }
    }
    Ok(())
}

fn check_runtime(cfg: &TaskConfig, settings: &Settings) -> Result<(), SpecError> {
    match cfg.runtime.as_deref().filter(|r| !r.is_empty()) {
        Some(r) if !settings.allow_runtimes.iter().any(|a| a == r) => Err(SpecError(format!(
            "runtime {r:?} is not in the docker plugin's allow_runtimes ({})",
            settings.allow_runtimes.join(", ")
        ))),
        _ => Ok(()),
    }
}

fn devices(cfg: &TaskConfig) -> Result<Vec<DeviceMapping>, SpecError> {
    cfg.devices
        .iter()
        .map(|d| {
            if !d.host_path.starts_with("/dev/") {
                return Err(SpecError(format!(
                    "devices: {:?} is not under /dev",
                    d.host_path
                )));
            }
            Ok(DeviceMapping {
                path_on_host: Some(d.host_path.clone()),
                path_in_container: Some(
                    d.container_path
                        .clone()
                        .unwrap_or_else(|| d.host_path.clone()),
                ),
                cgroup_permissions: Some(
                    d.cgroup_permissions.clone().unwrap_or_else(|| "rwm".into()),
                ),
            })
        })
        .collect()
}

/// The log driver: the config's, else json-file (which the driver can follow).
fn log_config(cfg: &TaskConfig) -> HostConfigLogConfig {
    let l = cfg.logging.clone().unwrap_or_default();
    let kind = l.kind.or(l.driver).filter(|k| !k.is_empty());
    match kind {
        Some(k) => HostConfigLogConfig {
            typ: Some(k),
            config: Some(l.config.into_iter().collect()),
        },
        None => HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(
                [("max-file", "2"), ("max-size", "2m")]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .chain(l.config)
                    .collect(),
            ),
        },
    }
}

/// Whether the network mode leaves nothing to publish (another container's, the host's,
/// or no network).
fn publishes_nothing(mode: Option<&str>) -> bool {
    mode.is_some_and(|m| m == "host" || m == "none" || m.starts_with("container:"))
}

fn host_config(
    task: &Task,
    cfg: &TaskConfig,
    settings: &Settings,
    core_mhz: u64,
    mounts: Vec<bollard::models::Mount>,
) -> Result<HostConfig, SpecError> {
    let non_empty = |v: &Vec<String>| Some(v.clone()).filter(|v| !v.is_empty());
    let mode = |m: &Option<String>| m.clone().filter(|m| !m.is_empty());
    let mut hc = HostConfig {
        mounts: Some(mounts),
        privileged: Some(cfg.privileged),
        readonly_rootfs: Some(cfg.readonly_rootfs),
        init: Some(cfg.init),
        dns: non_empty(&cfg.dns_servers),
        dns_search: non_empty(&cfg.dns_search_domains),
        dns_options: non_empty(&cfg.dns_options),
        extra_hosts: non_empty(&cfg.extra_hosts),
        group_add: non_empty(&cfg.group_add),
        security_opt: non_empty(&cfg.security_opt),
        ipc_mode: mode(&cfg.ipc_mode),
        pid_mode: mode(&cfg.pid_mode),
        uts_mode: mode(&cfg.uts_mode),
        network_mode: mode(&cfg.network_mode),
        runtime: mode(&cfg.runtime),
        log_config: Some(log_config(cfg)),
        ..Default::default()
    };
    if !cfg.privileged {
        let set = caps::effective(&settings.allow_caps, &cfg.cap_add, &cfg.cap_drop)
            .map_err(|e| SpecError(e.to_string()))?;
        hc.cap_drop = Some(vec!["ALL".into()]);
        hc.cap_add = Some(set.into_iter().collect());
    }
    if let Some(p) = cfg.pids_limit {
        if p < 0 {
            return Err(SpecError(format!("pids_limit {p} must not be negative")));
        }
        hc.pids_limit = Some(p).filter(|p| *p > 0);
    }
    if let Some(s) = cfg.shm_size {
        if s < 0 {
            return Err(SpecError(format!("shm_size {s} must not be negative")));
        }
        hc.shm_size = Some(s).filter(|s| *s > 0);
    }
    if let Some(a) = cfg.oom_score_adj {
        if !(-1000..=1000).contains(&a) {
            return Err(SpecError(format!(
                "oom_score_adj {a} is outside -1000..1000"
            )));
        }
        hc.oom_score_adj = Some(a);
    }
    if !cfg.sysctl.is_empty() {
        hc.sysctls = Some(cfg.sysctl.clone().into_iter().collect());
    }
    if !cfg.storage_opt.is_empty() {
        hc.storage_opt = Some(cfg.storage_opt.clone().into_iter().collect());
    }
    let ulimits = resources::ulimits(cfg)?;
    hc.ulimits = Some(ulimits).filter(|u| !u.is_empty());
    let devices = devices(cfg)?;
    hc.devices = Some(devices).filter(|d| !d.is_empty());
    resources::apply(
        &mut hc,
        cfg,
        &task.resources.clone().unwrap_or_default(),
        core_mhz,
    )?;
    Ok(hc)
}

/// Parses a task's `config { }` JSON.
pub fn parse_config(task: &Task) -> Result<TaskConfig, SpecError> {
    if task.driver_config_json.is_empty() {
        return Err(SpecError(
            "docker needs a config block with an image".into(),
        ));
    }
    let cfg: TaskConfig = serde_json::from_slice(&task.driver_config_json)
        .map_err(|e| SpecError(format!("docker config: {e}")))?;
    if cfg.image.trim().is_empty() && cfg.load.is_none() {
        return Err(SpecError("docker config needs \"image\"".into()));
    }
    Ok(cfg)
}

/// A task of a group with its own network (`network_ns_path`) shares the allocation's
/// network container: it sets no network of its own, publishes nothing (the network hook
/// maps the group's ports) and names no host or DNS (the network container's are the
/// allocation's). Refuses the first key that asks otherwise.
pub fn check_shared_network(cfg: &TaskConfig) -> Result<(), SpecError> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    let asked = [
        ("network_mode", set(&cfg.network_mode)),
        ("ports", !cfg.ports.is_empty()),
        ("hostname", set(&cfg.hostname)),
        ("dns_servers", !cfg.dns_servers.is_empty()),
        ("dns_search_domains", !cfg.dns_search_domains.is_empty()),
        ("dns_options", !cfg.dns_options.is_empty()),
        ("extra_hosts", !cfg.extra_hosts.is_empty()),
    ];
    match asked.iter().find(|(_, a)| *a) {
        Some((key, _)) => Err(SpecError(format!(
            "{key}: this task's group has its own network (bridge or CNI mode), which the allocation's tasks share; set it in the group's network block, not in the docker config"
        ))),
        None => Ok(()),
    }
}

/// The create request for `task` running `image` (the reference or id the engine knows).
/// `infra` is the allocation's network container when the task's group has its own network
/// (the task joins it: `container:<infra>`).
pub fn build(
    task: &Task,
    cfg: &TaskConfig,
    image: &str,
    settings: &Settings,
    core_mhz: u64,
    infra: Option<&str>,
) -> Result<ContainerSpec, SpecError> {
    check_privileges(cfg, settings)?;
    check_runtime(cfg, settings)?;
    if infra.is_some() {
        check_shared_network(cfg)?;
    }
    let m = mounts::mounts(task, &cfg.mount, &cfg.volumes, settings)?;
    let mut hc = host_config(task, cfg, settings, core_mhz, m.mounts)?;
    if let Some(id) = infra {
        hc.network_mode = Some(format!("container:{id}"));
    }
    let mut exposed = None;
    if !publishes_nothing(hc.network_mode.as_deref()) && !cfg.ports.is_empty() {
        let p = ports::publish(&cfg.ports, &task.ports)?;
        hc.port_bindings = Some(p.bindings);
        exposed = Some(p.exposed);
    }
    let body = ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: cmd(cfg),
        entrypoint: Some(cfg.entrypoint.clone()).filter(|e| !e.is_empty()),
        working_dir: cfg.work_dir.clone().filter(|w| !w.is_empty()),
        env: Some(env(task)?),
        labels: Some(labels(task, cfg, settings)?.into_iter().collect()),
        hostname: cfg.hostname.clone().filter(|h| !h.is_empty()),
        tty: Some(cfg.tty),
        open_stdin: Some(cfg.interactive),
        exposed_ports: exposed,
        healthcheck: cfg
            .healthchecks
            .as_ref()
            .filter(|h| h.disable)
            .map(|_| HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }),
        host_config: Some(hc),
        ..Default::default()
    };
    Ok(ContainerSpec {
        name: container_name(&task.id),
        body,
        relative_sources: m.relative_sources,
    })
}

#[cfg(test)]
mod tests;
