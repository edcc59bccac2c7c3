//! The `exec` task driver: runs a command isolated, without a container image.
//!
//! Each task runs under the task shim (so it outlives the plugin and the agent) as the child
//! of `task-shim init`, pid 1 of new pid, mount, ipc and uts namespaces (and the
//! allocation's network namespace). Its root is a tmpfs holding read-only bind mounts of host
//! paths (`chroot_env`), its writable `local/`, `secrets/`, `tmp/` and the shared `alloc/`,
//! a private /proc and a minimal /dev: nothing is copied. Its cgroups carry the memory, CPU
//! and pids limits; it runs as `user` (default `nobody`) with no_new_privs and a reduced
//! capability set. See `drover_plugin_sdk::shim::isolate`.
//!
//! Plugin configuration: `chroot_env` (map of host path -> path inside, default /bin, /etc,
//! /lib, /lib32, /lib64, /run/resolvconf, /sbin, /usr), `allow_caps` (list, default
//! Nomad's exec set), `pids_limit` (number, 0 = none). Task configuration: `command`
//! (required), `args`, `cap_add`, `cap_drop`, `pids_limit`.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use drover_plugin_sdk::proto::base::{AgentConfig, ConfigField};
use drover_plugin_sdk::proto::driver::{
    CapabilitiesResponse, ExecTaskSetup, ExitResult, FingerprintResponse, HealthState,
    StartTaskResponse, TaskConfig, TaskHandle, TerminalSize, exec_task_request, exec_task_response,
};
use drover_plugin_sdk::shim::isolate::{self, Bind, CgroupSpec, Isolation, caps, cgroup};
use drover_plugin_sdk::shim::{self, LaunchSpec, ShimClient, ShimError, ShimHandle, ShimTasks};
use drover_plugin_sdk::{DriverError, PluginInfo, TaskDriver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

/// Serves exec as a plugin on the current tokio runtime until the host stops it
/// (`drover plugin serve exec`). The binary's synchronous `main` must have called
/// [`drover_plugin_sdk::shim::exit_if_invoked`] first: tasks run under
/// `<current exe> task-shim ...`.
pub async fn serve() -> Result<(), drover_plugin_sdk::ServeError> {
    drover_plugin_sdk::init_logging(NAME);
    drover_plugin_sdk::serve_driver(Exec::default()).await
}

/// The plugin's name.
pub const NAME: &str = "exec";
/// The parent of every task's cgroup, in every controller.
pub const CGROUP_PARENT: &str = "drover";
/// The user tasks run as when the jobspec names none.
pub const DEFAULT_USER: &str = "nobody";

/// The plugin's `config { ... }` block.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PluginConfig {
    #[serde(default)]
    chroot_env: Option<BTreeMap<String, String>>,
    #[serde(default)]
    allow_caps: Option<Vec<String>>,
    #[serde(default)]
    pids_limit: u64,
    #[serde(default)]
    denied_host_uids: Option<String>,
    #[serde(default)]
    denied_host_gids: Option<String>,
}

/// The keys a task's `config { ... }` block may hold ([`TaskDriverConfig`]'s), checked at
/// `job validate`.
pub fn task_config_schema() -> Vec<ConfigField> {
    let field = |name: &str, ty: &str, required: bool, description: &str| ConfigField {
        name: name.into(),
        r#type: ty.into(),
        required,
        description: description.into(),
        ..Default::default()
    };
    vec![
        field(
            "command",
            "string",
            true,
            "The program to run, looked up in the task's PATH.",
        ),
        field("args", "list(string)", false, "Its arguments."),
        field(
            "cap_add",
            "list(string)",
            false,
            "Capabilities to add (of the plugin's allow_caps).",
        ),
        field(
            "cap_drop",
            "list(string)",
            false,
            "Capabilities to drop (\"all\" for every one).",
        ),
        field(
            "pids_limit",
            "number",
            false,
            "Most processes the task may have.",
        ),
    ]
}

/// A task's `config { ... }` block.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskDriverConfig {
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    cap_add: Vec<String>,
    #[serde(default)]
    cap_drop: Vec<String>,
    #[serde(default)]
    pids_limit: Option<u64>,
}

struct Settings {
    chroot_env: BTreeMap<String, String>,
    allow_caps: Vec<String>,
    pids_limit: u64,
    /// Users (uid) and groups (primary or supplementary gid) tasks may not run as.
    denied_uids: IdRanges,
    denied_gids: IdRanges,
}

/// The uids and gids denied unless the operator says otherwise: root's.
pub const DEFAULT_DENIED_IDS: &str = "0";

impl Default for Settings {
    fn default() -> Self {
        let root = IdRanges::parse(DEFAULT_DENIED_IDS).expect("the default parses");
        Self {
            chroot_env: isolate::default_chroot_env(),
            allow_caps: caps::DEFAULT.iter().map(|s| s.to_string()).collect(),
            pids_limit: 0,
            denied_uids: root.clone(),
            denied_gids: root,
        }
    }
}

/// A set of ids written as Nomad writes them: `0,10-20,1000` (empty: none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRanges(Vec<(u32, u32)>);

impl IdRanges {
    pub fn parse(s: &str) -> Result<IdRanges, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |t: &str| {
                t.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{part:?} is not an id or a range of ids (a-b)"))
            };
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if a > b {
                return Err(format!("{part:?}: the range runs backwards"));
            }
            out.push((a, b));
        }
        Ok(IdRanges(out))
    }

    pub fn contains(&self, id: u32) -> bool {
        self.0.iter().any(|(a, b)| (*a..=*b).contains(&id))
    }
}

#[derive(Default)]
struct State {
    settings: Settings,
    shims_root: Option<PathBuf>,
    /// Each known task's shim id (its cgroups are `drover/<shim id>`).
    shim_ids: BTreeMap<String, String>,
    /// Cores pinned to tasks (the jobspec's `cores`), by task id, until they are destroyed.
    reserved_cores: BTreeMap<String, Vec<u32>>,
}

/// Parses a cpuset list (`0-3,6`).
pub fn parse_cpu_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    out.extend(a..=b);
                }
            }
            None => out.extend(part.trim().parse::<u32>().ok()),
        }
    }
    out
}

/// Formats cores as a cpuset list (`0,2,3`).
pub fn format_cpu_list(cores: &[u32]) -> String {
    cores
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The cores tasks may be pinned to: those of the root cpuset.
fn node_cpus() -> Result<Vec<u32>, String> {
    let candidates = [
        "/sys/fs/cgroup/cpuset/cpuset.cpus",
        "/sys/fs/cgroup/cpuset.cpus.effective",
    ];
    for c in candidates {
        if let Ok(s) = std::fs::read_to_string(c) {
            return Ok(parse_cpu_list(&s));
        }
    }
    Err(format!(
        "cannot read the node's cores from {}",
        candidates.join(" or ")
    ))
}

/// The cores the scheduler reserved for the task (`core_ids`): each must be one of the
/// node's (`all`); ascending, without duplicates.
fn scheduled_cores(all: &[u32], given: &[u32], task: &str) -> Result<Vec<u32>, DriverError> {
    if let Some(c) = given.iter().find(|c| !all.contains(c)) {
        return Err(DriverError::FailedPrecondition(format!(
            "task {task:?} is reserved core {c}, which this node does not have (it has {})",
            format_cpu_list(all)
        )));
    }
    let set: std::collections::BTreeSet<u32> = given.iter().copied().collect();
    Ok(set.into_iter().collect())
}

/// Picks `n` cores of `all` that are not in `taken`.
fn pick_cores(all: &[u32], taken: &[u32], n: usize, task: &str) -> Result<Vec<u32>, DriverError> {
    let free: Vec<u32> = all.iter().copied().filter(|c| !taken.contains(c)).collect();
    if free.len() < n {
        return Err(DriverError::FailedPrecondition(format!(
            "task {task:?} reserves {n} cores, but only {} of this node's {} are free ({} pinned to other tasks)",
            free.len(),
            all.len(),
            taken.len()
        )));
    }
    Ok(free[..n].to_vec())
}

/// The exec driver.
pub struct Exec {
    state: Mutex<State>,
    tasks: ShimTasks,
    /// Why this host cannot run isolated tasks, if it cannot.
    unusable: Option<String>,
    /// Whether tasks' cgroups hold them to the allowed devices (cgroup v1).
    restricts_devices: bool,
    fingerprint: watch::Sender<FingerprintResponse>,
}

/// Whether this host can isolate tasks: root, namespaces, usable cgroups.
pub fn check_host() -> Result<cgroup::Version, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(
            "the exec driver needs root: it creates namespaces, cgroups and mounts (run the agent as root, or use raw_exec)".into(),
        );
    }
    for ns in ["pid", "mnt", "ipc", "uts", "net"] {
        if !Path::new("/proc/self/ns").join(ns).exists() {
            return Err(format!(
                "the kernel has no {ns} namespaces (/proc/self/ns/{ns} is missing)"
            ));
        }
    }
    cgroup::detect(&cgroup::RealFs, Path::new("/sys/fs/cgroup"))
}

impl Default for Exec {
    fn default() -> Self {
        let host = check_host();
        let fp = match &host {
            Ok(version) => FingerprintResponse {
                attributes: [
                    ("driver.exec".to_string(), "1".to_string()),
                    (
                        "driver.exec.cgroup".to_string(),
                        match version {
                            cgroup::Version::V1 => "v1",
                            cgroup::Version::V2 => "v2",
                        }
                        .to_string(),
                    ),
                ]
                .into_iter()
                .collect(),
                health: HealthState::Healthy as i32,
                health_description: "healthy".into(),
            },
            Err(why) => FingerprintResponse {
                attributes: Default::default(),
                health: HealthState::Unhealthy as i32,
                health_description: why.clone(),
            },
        };
        Self {
            state: Mutex::new(State::default()),
            tasks: ShimTasks::default(),
            restricts_devices: matches!(host, Ok(cgroup::Version::V1)),
            unusable: host.err(),
            fingerprint: watch::channel(fp).0,
        }
    }
}

/// The capabilities a task keeps: the default set within `allow_caps`, plus its `cap_add`
/// (each must be allowed), minus its `cap_drop` (`all` drops every one).
fn task_capabilities(
    allow: &[String],
    add: &[String],
    drop: &[String],
    task: &str,
) -> Result<Vec<String>, DriverError> {
    let norm = |n: &String, what: &str| {
        caps::normalize(n).ok_or_else(|| {
            DriverError::InvalidArgument(format!(
                "task {task:?}: {what} names an unknown capability {n:?}"
            ))
        })
    };
    let mut set: Vec<String> = caps::DEFAULT
        .iter()
        .map(|s| s.to_string())
        .filter(|c| allow.contains(c))
        .collect();
    for a in add {
        let c = norm(a, "cap_add")?;
        if !allow.contains(&c) {
            return Err(DriverError::InvalidArgument(format!(
                "task {task:?}: cap_add {c} is not allowed by the exec plugin's allow_caps ({})",
                allow.join(", ")
            )));
        }
        if !set.contains(&c) {
            set.push(c);
        }
    }
    for d in drop {
        if d.eq_ignore_ascii_case("all") {
            set.clear();
            continue;
        }
        let c = norm(d, "cap_drop")?;
        set.retain(|x| *x != c);
    }
    set.sort();
    Ok(set)
}

/// Rewrites host paths of the task's directories in its environment to their paths inside.
fn inside_env(env: &BTreeMap<String, String>, binds: &[Bind]) -> BTreeMap<String, String> {
    env.iter()
        .map(|(k, v)| {
            let p = Path::new(v);
            let mapped = binds.iter().find_map(|b| {
                p.strip_prefix(&b.source).ok().map(|rest| {
                    if rest.as_os_str().is_empty() {
                        b.target.display().to_string()
                    } else {
                        b.target.join(rest).display().to_string()
                    }
                })
            });
            (k.clone(), mapped.unwrap_or_else(|| v.clone()))
        })
        .collect()
}

impl Exec {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn build_spec(&self, task: &TaskConfig) -> Result<LaunchSpec, DriverError> {
        let bad = |m: String| DriverError::InvalidArgument(format!("task {:?}: {m}", task.name));
        if task.driver_config_json.is_empty() {
            return Err(bad("exec needs a config block with a command".into()));
        }
        let cfg: TaskDriverConfig = serde_json::from_slice(&task.driver_config_json)
            .map_err(|e| bad(format!("bad exec config: {e}")))?;
        let command = cfg
            .command
            .filter(|c| !c.trim().is_empty())
            .ok_or_else(|| bad("exec config needs \"command\" (the program to run)".into()))?;
        if task.task_dir.is_empty() {
            return Err(bad("exec needs the task's directory (task_dir)".into()));
        }
        let (chroot_env, allow, default_pids) = {
            let st = self.lock();
            (
                st.settings.chroot_env.clone(),
                st.settings.allow_caps.clone(),
                st.settings.pids_limit,
            )
        };
        let task_dir = PathBuf::from(&task.task_dir);
        let mut writable: Vec<Bind> = ["local", "secrets", "tmp"]
            .into_iter()
            .map(|d| Bind {
                source: task_dir.join(d),
                target: Path::new("/").join(d),
            })
            .collect();
        if !task.alloc_dir.is_empty() {
            writable.push(Bind {
                source: task.alloc_dir.clone().into(),
                target: "/alloc".into(),
            });
        }
        for b in &writable {
            if !b.source.is_dir() {
                return Err(bad(format!(
                    "the task directory {} does not exist",
                    b.source.display()
                )));
            }
        }
        let capabilities = task_capabilities(&allow, &cfg.cap_add, &cfg.cap_drop, &task.name)?;
        let mut volumes = Vec::new();
        for m in &task.mounts {
            if !m.task_path.starts_with('/') || m.task_path.split('/').any(|c| c == "..") {
                return Err(bad(format!(
                    "volume mount {:?}: the path inside must be absolute, without ..",
                    m.task_path
                )));
            }
            if !Path::new(&m.host_path).exists() {
                return Err(bad(format!(
                    "volume mount {:?}: the host path {} does not exist",
                    m.task_path, m.host_path
                )));
            }
            volumes.push(isolate::Volume {
                source: m.host_path.clone().into(),
                target: m.task_path.clone().into(),
                read_only: m.read_only,
            });
        }
        let res = task.resources.clone().unwrap_or_default();
        let mb = |m: i64| (m.max(0) as u64) << 20;
        let env_host: BTreeMap<String, String> = task
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut spec = LaunchSpec::new(&task.id, &command, cfg.args, "/".into());
        spec.env = inside_env(&env_host, &writable);
        spec.user = Some(if task.user.is_empty() {
            DEFAULT_USER.to_string()
        } else {
            task.user.clone()
        });
        spec.log_to(task);
        let hostname: String = task
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .take(63)
            .collect();
        spec.isolation = Some(Isolation {
            hostname,
            network_ns: Some(PathBuf::from(&task.network_ns_path))
                .filter(|p| !p.as_os_str().is_empty()),
            chroot_env,
            writable,
            volumes,
            cgroup: CgroupSpec {
                parent: CGROUP_PARENT.into(),
                memory_bytes: mb(res.memory_mb),
                memory_max_bytes: mb(res.memory_max_mb),
                cpu_shares: res.cpu_mhz.max(0) as u64,
                cpuset_cpus: String::new(),
                pids_max: cfg.pids_limit.unwrap_or(default_pids),
            },
            capabilities,
        });
        Ok(spec)
    }
}

#[tonic::async_trait]
impl TaskDriver for Exec {
    fn plugin_info(&self) -> PluginInfo {
        PluginInfo {
            name: NAME.into(),
            version: env!("CARGO_PKG_VERSION").into(),
            protocol_versions: vec![1],
        }
    }

    fn config_schema(&self) -> Vec<ConfigField> {
        vec![
            ConfigField {
                name: "chroot_env".into(),
                r#type: "map(string)".into(),
                required: false,
                description: "Host paths bound read-only into each task's root: host path -> path inside. Nothing is copied.".into(),
                default_json: serde_json::to_string(&isolate::default_chroot_env()).unwrap_or_default(),
                fields: Vec::new(),
            },
            ConfigField {
                name: "allow_caps".into(),
                r#type: "list(string)".into(),
                required: false,
                description: "Capabilities tasks may keep or add with cap_add.".into(),
                default_json: serde_json::to_string(caps::DEFAULT).unwrap_or_default(),
                fields: Vec::new(),
            },
            ConfigField {
                name: "denied_host_uids".into(),
                r#type: "string".into(),
                required: false,
                description: "Users (uids: \"0,1000-2000\") tasks may not run as; \"\" allows every user, root included.".into(),
                default_json: format!("{DEFAULT_DENIED_IDS:?}"),
                fields: Vec::new(),
            },
            ConfigField {
                name: "denied_host_gids".into(),
                r#type: "string".into(),
                required: false,
                description: "Groups (gids) a task's user may not have, as its primary or a supplementary group.".into(),
                default_json: format!("{DEFAULT_DENIED_IDS:?}"),
                fields: Vec::new(),
            },
            ConfigField {
                name: "pids_limit".into(),
                r#type: "number".into(),
                required: false,
                description: "Most processes a task may have, unless its config sets pids_limit; 0 = no limit.".into(),
                default_json: "0".into(),
                fields: Vec::new(),
            },
        ]
    }

    fn task_config_schema(&self) -> Vec<ConfigField> {
        task_config_schema()
    }

    async fn set_config(
        &self,
        config: serde_json::Value,
        agent: AgentConfig,
    ) -> Result<(), DriverError> {
        let cfg: PluginConfig = serde_json::from_value(config)
            .map_err(|e| DriverError::InvalidArgument(format!("exec plugin config: {e}")))?;
        let mut settings = Settings::default();
        if let Some(env) = cfg.chroot_env {
            for (src, dst) in &env {
                if !src.starts_with('/') || !dst.starts_with('/') {
                    return Err(DriverError::InvalidArgument(format!(
                        "exec plugin config: chroot_env {src:?} = {dst:?}: both paths must be absolute"
                    )));
                }
            }
            settings.chroot_env = env;
        }
        if let Some(allow) = cfg.allow_caps {
            settings.allow_caps = allow
                .iter()
                .map(|c| {
                    caps::normalize(c).ok_or_else(|| {
                        DriverError::InvalidArgument(format!(
                            "exec plugin config: allow_caps names an unknown capability {c:?}"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        settings.pids_limit = cfg.pids_limit;
        for (field, value, slot) in [
            (
                "denied_host_uids",
                &cfg.denied_host_uids,
                &mut settings.denied_uids,
            ),
            (
                "denied_host_gids",
                &cfg.denied_host_gids,
                &mut settings.denied_gids,
            ),
        ] {
            if let Some(v) = value {
                *slot = IdRanges::parse(v).map_err(|e| {
                    DriverError::InvalidArgument(format!("exec plugin config: {field}: {e}"))
                })?;
            }
        }
        let mut st = self.lock();
        st.settings = settings;
        st.shims_root = Some(agent.data_dir)
            .filter(|d| !d.is_empty())
            .map(|d| PathBuf::from(d).join("shims"));
        tracing::info!(usable = self.unusable.is_none(), "exec configured");
        Ok(())
    }

    fn capabilities(&self) -> CapabilitiesResponse {
        CapabilitiesResponse {
            send_signals: true,
            exec: true,
            fs_isolation: "chroot".into(),
            must_create_network: false,
            mounts: true,
        }
    }

    fn fingerprint(&self) -> watch::Receiver<FingerprintResponse> {
        self.fingerprint.subscribe()
    }

    fn shim_tasks(&self) -> Option<&ShimTasks> {
        Some(&self.tasks)
    }

    async fn start_task(&self, task: TaskConfig) -> Result<StartTaskResponse, DriverError> {
        if let Some(why) = &self.unusable {
            return Err(DriverError::FailedPrecondition(format!(
                "the exec driver cannot run here: {why}"
            )));
        }
        self.tasks.check_new(&task.id)?;
        let shims_root = self.lock().shims_root.clone().ok_or_else(|| {
            DriverError::FailedPrecondition(
                "exec has no data directory: the agent did not configure it".into(),
            )
        })?;
        let mut spec = self.build_spec(&task)?;
        let cores = task.resources.as_ref().map_or(0, |r| r.cores) as usize;
        let given = task
            .resources
            .as_ref()
            .map(|r| r.core_ids.as_slice())
            .unwrap_or_default();
        if cores > 0 || !given.is_empty() {
            let all = node_cpus().map_err(DriverError::FailedPrecondition)?;
            let mut st = self.lock();
            let picked = if given.is_empty() {
                // An older server reserved a number of cores, not ids: pick free ones.
                let taken: Vec<u32> = st.reserved_cores.values().flatten().copied().collect();
                pick_cores(&all, &taken, cores, &task.name)?
            } else {
                scheduled_cores(&all, given, &task.name)?
            };
            if let Some(iso) = spec.isolation.as_mut() {
                iso.cgroup.cpuset_cpus = format_cpu_list(&picked);
            }
            st.reserved_cores.insert(task.id.clone(), picked);
        }
        let id = task.id.clone();
        let launched = async {
            let user = spec.user.as_deref().unwrap_or(DEFAULT_USER);
            let found = admit_user(&task, user, &self.lock().settings, self.restricts_devices)?;
            own_task_dirs(&task, &found)?;
            self.tasks.launch(task, spec, shims_root).await
        }
        .await;
        let mut st = self.lock();
        match &launched {
            Ok(r) => {
                if let Some(h) = &r.handle
                    && let Ok(shim) = serde_json::from_slice::<ShimHandle>(&h.driver_state)
                {
                    st.shim_ids.insert(id, shim.shim_id);
                }
            }
            Err(_) => {
                st.reserved_cores.remove(&id);
            }
        }
        launched
    }

    async fn destroy_task(&self, task_id: &str, force: bool) -> Result<(), DriverError> {
        self.tasks.destroy(task_id, force).await?;
        let shim_id = {
            let mut st = self.lock();
            st.reserved_cores.remove(task_id);
            st.shim_ids.remove(task_id)
        };
        if let Some(shim_id) = shim_id {
            // The shim removes the task's cgroups; one that died first could not.
            let _ = tokio::task::spawn_blocking(move || remove_leftover_cgroup(&shim_id)).await;
        }
        Ok(())
    }

    async fn recover_task(&self, handle: TaskHandle) -> Result<(), DriverError> {
        let id = handle
            .config
            .as_ref()
            .map(|c| c.id.clone())
            .unwrap_or_default();
        let shim = serde_json::from_slice::<ShimHandle>(&handle.driver_state).ok();
        self.tasks.recover(handle).await?;
        let Some(shim) = shim else { return Ok(()) };
        // A task pinned to cores keeps them while it runs: its spec says which.
        let running = self.tasks.running_config(&id).is_ok();
        let pinned = std::fs::read(shim.shim_dir.join(shim::SPEC_FILE))
            .ok()
            .and_then(|raw| serde_json::from_slice::<LaunchSpec>(&raw).ok())
            .and_then(|spec| spec.isolation)
            .map(|iso| parse_cpu_list(&iso.cgroup.cpuset_cpus))
            .filter(|cores| !cores.is_empty() && running);
        let mut st = self.lock();
        if let Some(cores) = pinned {
            st.reserved_cores.insert(id.clone(), cores);
        }
        st.shim_ids.insert(id, shim.shim_id);
        Ok(())
    }

    async fn exec_task(
        &self,
        setup: ExecTaskSetup,
        input: mpsc::Receiver<exec_task_request::Msg>,
        output: mpsc::Sender<exec_task_response::Msg>,
    ) -> Result<ExitResult, DriverError> {
        let (_, shim) = self.tasks.running_config(&setup.task_id)?;
        tracing::info!(task_id = %setup.task_id, command = ?setup.command, tty = setup.tty, "exec");
        let client = ShimClient::from_handle(shim);
        run_in_task(
            &client,
            &setup.command,
            setup.tty,
            setup.size,
            input,
            output,
        )
        .await
    }
}

/// Looks the task's user up and refuses it when its uid, primary gid or a supplementary gid
/// is denied, or when it is root and the task's cgroup cannot hold it to the allowed devices.
fn admit_user(
    task: &TaskConfig,
    user: &str,
    settings: &Settings,
    restricts_devices: bool,
) -> Result<nix::unistd::User, DriverError> {
    let found = nix::unistd::User::from_name(user)
        .map_err(|e| DriverError::Internal(format!("cannot look up user {user:?}: {e}")))?
        .ok_or_else(|| {
            DriverError::InvalidArgument(format!(
                "task {:?}: user {user:?} does not exist on this node",
                task.name
            ))
        })?;
    let denied = |what: String, field: &str| {
        DriverError::InvalidArgument(format!(
            "task {:?}: user {user:?} {what}, which this node's exec plugin denies ({field}); an operator can change that in plugin \"exec\" {{ config {{ {field} = ... }} }}",
            task.name
        ))
    };
    let uid = found.uid.as_raw();
    if settings.denied_uids.contains(uid) {
        return Err(denied(format!("has uid {uid}"), "denied_host_uids"));
    }
    let name = std::ffi::CString::new(found.name.clone())
        .map_err(|_| DriverError::InvalidArgument(format!("user {user:?} has a NUL byte")))?;
    let groups = nix::unistd::getgrouplist(&name, found.gid)
        .map_err(|e| DriverError::Internal(format!("cannot list the groups of {user:?}: {e}")))?;
    for g in std::iter::once(found.gid).chain(groups) {
        if settings.denied_gids.contains(g.as_raw()) {
            return Err(denied(
                format!("is in group {}", g.as_raw()),
                "denied_host_gids",
            ));
        }
    }
    if uid == 0 && !restricts_devices {
        return Err(DriverError::InvalidArgument(format!(
            "task {:?}: root tasks need a device cgroup, which Drover sets up on cgroup v1 only: run the task as another user",
            task.name
        )));
    }
    Ok(found)
}

/// Gives the task's user its `local/` and `secrets/` (tmp/ is sticky and world-writable).
fn own_task_dirs(task: &TaskConfig, found: &nix::unistd::User) -> Result<(), DriverError> {
    let user = &found.name;
    for d in ["local", "secrets"] {
        let p = Path::new(&task.task_dir).join(d);
        std::os::unix::fs::chown(&p, Some(found.uid.as_raw()), Some(found.gid.as_raw())).map_err(
            |e| DriverError::Internal(format!("cannot give {} to {user:?}: {e}", p.display())),
        )?;
    }
    Ok(())
}

/// Removes a task's cgroups if they are still there and empty (its shim died before it
/// could); a cgroup with processes in it is left alone.
fn remove_leftover_cgroup(shim_id: &str) {
    if let Ok(cg) = cgroup::Cgroup::host(CGROUP_PARENT, shim_id)
        && cg.pids().is_empty()
    {
        let _ = cg.destroy();
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), DriverError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| DriverError::Internal(format!("cannot create a pipe: {e}")))
}

fn set_size(master: &OwnedFd, size: &TerminalSize) {
    use std::os::fd::AsRawFd;
    let ws = libc::winsize {
        ws_row: size.rows.min(u16::MAX as u32) as u16,
        ws_col: size.cols.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

async fn forward(
    fd: OwnedFd,
    output: mpsc::Sender<exec_task_response::Msg>,
    wrap: fn(Vec<u8>) -> exec_task_response::Msg,
) {
    let mut r = tokio::fs::File::from_std(std::fs::File::from(fd));
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `argv` inside the task through its shim, with pipes or a terminal, streaming
/// output and feeding input.
async fn run_in_task(
    client: &ShimClient,
    argv: &[String],
    tty: bool,
    size: Option<TerminalSize>,
    mut input: mpsc::Receiver<exec_task_request::Msg>,
    output: mpsc::Sender<exec_task_response::Msg>,
) -> Result<ExitResult, DriverError> {
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| DriverError::Internal(format!("cannot duplicate a descriptor: {e}")))
    };
    let (stdio, stdin_w, readers, master) = if tty {
        let pty = nix::pty::openpty(None, None)
            .map_err(|e| DriverError::Internal(format!("cannot open a pseudo-terminal: {e}")))?;
        if let Some(size) = &size {
            set_size(&pty.master, size);
        }
        let stdio = [dup(&pty.slave)?, dup(&pty.slave)?, pty.slave];
        let w = dup(&pty.master)?;
        let r = dup(&pty.master)?;
        (stdio, w, vec![(r, true)], Some(pty.master))
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        (
            [in_r, out_w, err_w],
            in_w,
            vec![(out_r, true), (err_r, false)],
            None,
        )
    };
    let session = client.exec(argv, tty, stdio).await.map_err(|e| match e {
        ShimError::Refused(m) => DriverError::FailedPrecondition(m),
        other => DriverError::Internal(other.to_string()),
    })?;
    let mut outs = Vec::new();
    for (fd, is_stdout) in readers {
        let wrap: fn(Vec<u8>) -> exec_task_response::Msg = if is_stdout {
            exec_task_response::Msg::Stdout
        } else {
            exec_task_response::Msg::Stderr
        };
        outs.push(tokio::spawn(forward(fd, output.clone(), wrap)));
    }
    drop(output);
    let feeder = tokio::spawn(async move {
        let mut w = Some(tokio::fs::File::from_std(std::fs::File::from(stdin_w)));
        while let Some(msg) = input.recv().await {
            match msg {
                exec_task_request::Msg::Stdin(data) => {
                    let Some(f) = w.as_mut() else { continue };
                    if f.write_all(&data).await.is_err() || f.flush().await.is_err() {
                        w = None;
                    }
                }
                exec_task_request::Msg::StdinClose(_) => {
                    if tty {
                        // End of input on a terminal is ^D.
                        if let Some(f) = w.as_mut() {
                            let _ = f.write_all(&[4]).await;
                            let _ = f.flush().await;
                        }
                    } else {
                        w = None;
                    }
                }
                exec_task_request::Msg::Resize(size) => {
                    if let Some(m) = &master {
                        set_size(m, &size);
                    }
                }
                exec_task_request::Msg::Setup(_) => {}
            }
        }
    });
    // The caller's input ends only when its session is over: if the command still runs then,
    // nobody is left to read it. Closing our connection makes the shim kill it.
    let mut feeder = feeder;
    let exit = tokio::select! {
        exit = session.wait() => exit,
        _ = &mut feeder => {
            for o in outs {
                o.abort();
            }
            return Err(DriverError::FailedPrecondition(
                "the exec session's caller went away; the command was killed".into(),
            ));
        }
    };
    feeder.abort();
    for o in outs {
        // A terminal's reader sees EIO once the last slave is gone; pipes see end of file.
        if tokio::time::timeout(Duration::from_secs(2), o)
            .await
            .is_err()
        {
            tracing::warn!("exec output did not end within 2s of the command's exit");
        }
    }
    let exit = exit.map_err(|e| DriverError::Internal(e.to_string()))?;
    Ok(shim::exit_result(&exit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_default_add_drop_and_refusal() {
        let allow: Vec<String> = caps::DEFAULT.iter().map(|s| s.to_string()).collect();
        let set = task_capabilities(&allow, &[], &[], "t").unwrap();
        assert_eq!(set.len(), caps::DEFAULT.len());
        let set = task_capabilities(&allow, &[], &["chown".into()], "t").unwrap();
        assert!(!set.contains(&"CAP_CHOWN".to_string()));
        let e = task_capabilities(&allow, &["sys_admin".into()], &[], "t").unwrap_err();
        assert!(e.to_string().contains("CAP_SYS_ADMIN"), "{e}");
        let mut wider = allow.clone();
        wider.push("CAP_NET_RAW".into());
        let set = task_capabilities(&wider, &["net_raw".into()], &[], "t").unwrap();
        assert!(set.contains(&"CAP_NET_RAW".to_string()));
        let set = task_capabilities(&allow, &[], &["all".into()], "t").unwrap();
        assert!(set.is_empty());
        let e = task_capabilities(&allow, &["bogus".into()], &[], "t").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn denied_ids_are_read_as_nomad_writes_them() {
        let r = IdRanges::parse("0, 10-20,1000").unwrap();
        for id in [0, 10, 15, 20, 1000] {
            assert!(r.contains(id), "{id}");
        }
        for id in [1, 9, 21, 999, 65534] {
            assert!(!r.contains(id), "{id}");
        }
        assert_eq!(IdRanges::parse("").unwrap(), IdRanges::default());
        for bad in ["x", "5-1", "1-", "-3", "0,,a"] {
            assert!(IdRanges::parse(bad).is_err(), "{bad}");
        }
        let d = Settings::default();
        assert!(d.denied_uids.contains(0) && d.denied_gids.contains(0));
        assert!(!d.denied_uids.contains(65534));
    }

    /// The keys serde expects, from its error for an unknown one.
    fn serde_keys<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> Vec<String> {
        let e = serde_json::from_value::<T>(serde_json::json!({"zz_unknown": 1})).unwrap_err();
        let msg = e.to_string();
        let list = msg
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("{msg}"));
        list.split(',')
            .map(|k| k.trim().trim_matches('`').to_string())
            .filter(|k| !k.is_empty())
            .collect()
    }

    #[test]
    fn the_task_config_schema_is_the_config_struct() {
        let schema = task_config_schema();
        let names: Vec<String> = schema.iter().map(|f| f.name.clone()).collect();
        let mut keys = serde_keys::<TaskDriverConfig>();
        keys.sort();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        // A config with every key, typed as the schema says, decodes.
        let mut full = serde_json::Map::new();
        for f in &schema {
            let v = match f.r#type.as_str() {
                "string" => serde_json::json!("x"),
                "number" => serde_json::json!(1),
                "list(string)" => serde_json::json!(["x"]),
                other => panic!("no sample for {other}"),
            };
            full.insert(f.name.clone(), v);
        }
        serde_json::from_value::<TaskDriverConfig>(full.into()).unwrap();
    }

    #[test]
    fn cpu_lists_and_picking_cores() {
        assert_eq!(parse_cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(parse_cpu_list("1"), vec![1]);
        assert_eq!(format_cpu_list(&[0, 2]), "0,2");
        assert_eq!(pick_cores(&[0, 1, 2], &[1], 2, "t").unwrap(), vec![0, 2]);
        assert_eq!(
            scheduled_cores(&[0, 1, 2, 3], &[3, 1, 3], "t").unwrap(),
            vec![1, 3]
        );
        let e = scheduled_cores(&[0, 1], &[7], "t").unwrap_err();
        assert!(e.to_string().contains("core 7"), "{e}");
        let e = pick_cores(&[0, 1], &[1], 2, "t").unwrap_err();
        assert!(e.to_string().contains("only 1 of this node's 2"), "{e}");
    }

    #[test]
    fn task_dirs_in_the_environment_are_paths_inside() {
        let binds = vec![
            Bind {
                source: "/data/alloc/a1/web/local".into(),
                target: "/local".into(),
            },
            Bind {
                source: "/data/alloc/a1/alloc".into(),
                target: "/alloc".into(),
            },
        ];
        let env: BTreeMap<String, String> = [
            ("NOMAD_TASK_DIR", "/data/alloc/a1/web/local"),
            ("NOMAD_ALLOC_DIR", "/data/alloc/a1/alloc"),
            ("X", "/data/alloc/a1/alloc/data/x"),
            ("PATH", "/usr/bin:/bin"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let e = inside_env(&env, &binds);
        assert_eq!(e["NOMAD_TASK_DIR"], "/local");
        assert_eq!(e["NOMAD_ALLOC_DIR"], "/alloc");
        assert_eq!(e["X"], "/alloc/data/x");
        assert_eq!(e["PATH"], "/usr/bin:/bin");
    }
}
