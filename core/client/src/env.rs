//! The task environment (`NOMAD_*` for existing jobspecs, `DROVER_*` as Drover's own names)
//! and `${...}` interpolation of it into config, env and args.

use std::collections::BTreeMap;

use drover_model::{Allocation, Job, Task};

#[derive(Debug, Clone)]
pub struct TaskDirs {
    pub alloc_dir: String,
    pub task_dir: String,
    pub local_dir: String,
    pub secrets_dir: String,
    pub tmp_dir: String,
}

/// The environment a task starts with, before its own `env` block.
pub fn task_env(
    job: &Job,
    alloc: &Allocation,
    task: &Task,
    dirs: &TaskDirs,
    region: &str,
    dc: &str,
    host_ip: &str,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    let mut both = |k: &str, v: String| {
        env.insert(format!("NOMAD_{k}"), v.clone());
        env.insert(format!("DROVER_{k}"), v);
    };
    both("ALLOC_DIR", dirs.alloc_dir.clone());
    both("TASK_DIR", dirs.local_dir.clone());
    both("SECRETS_DIR", dirs.secrets_dir.clone());
    both("ALLOC_ID", alloc.id.clone());
    both("SHORT_ALLOC_ID", alloc.id.chars().take(8).collect());
    both("ALLOC_NAME", alloc.name.clone());
    both("ALLOC_INDEX", alloc.index().to_string());
    both("JOB_ID", job.id.clone());
    both("JOB_NAME", job.name.clone());
    both("NAMESPACE", job.namespace.clone());
    both("GROUP_NAME", alloc.task_group.clone());
    both("TASK_NAME", task.name.clone());
    both("DC", dc.to_string());
    both("REGION", region.to_string());
    both("CPU_LIMIT", task.resources.cpu.to_string());
    both("MEMORY_LIMIT", task.resources.memory_mb.to_string());
    if task.resources.memory_max_mb > 0 {
        both("MEMORY_MAX_LIMIT", task.resources.memory_max_mb.to_string());
    }
    for (k, v) in &job.meta {
        both(
            &format!("META_{}", k.to_uppercase().replace(['-', '.'], "_")),
            v.clone(),
        );
    }
    // Ports the scheduler assigned, as Nomad names them: NOMAD_PORT_<label> and
    // NOMAD_ALLOC_PORT_<label> are the port the task listens on (`to`, else the host port);
    // NOMAD_{IP,HOST_IP}_<label> the node's address the port is on, NOMAD_{ADDR,HOST_ADDR}
    // that address with the host port; with an allocation network (bridge, CNI),
    // NOMAD_ALLOC_{IP,ADDR,INTERFACE}_<label> its address, with the task's port, and interface.
    let alloc_net = alloc
        .network_status
        .as_ref()
        .filter(|n| !n.address.is_empty());
    for p in &alloc.shared_resources.ports {
        let label = p.label.replace('-', "_");
        let inside = if p.to > 0 {
            p.to as u32
        } else {
            p.value as u32
        };
        both(&format!("PORT_{label}"), inside.to_string());
        both(&format!("ALLOC_PORT_{label}"), inside.to_string());
        both(&format!("HOST_PORT_{label}"), p.value.to_string());
        // The node's address the port is reserved on; allocations placed before ports had
        // one fall back to the agent's address.
        let ip = if p.host_ip.is_empty() {
            host_ip
        } else {
            p.host_ip.as_str()
        };
        let addr = join_host_port(ip, u32::from(p.value));
        both(&format!("IP_{label}"), ip.to_string());
        both(&format!("HOST_IP_{label}"), ip.to_string());
        both(&format!("ADDR_{label}"), addr.clone());
        both(&format!("HOST_ADDR_{label}"), addr);
        if let Some(n) = alloc_net {
            both(&format!("ALLOC_IP_{label}"), n.address.clone());
            both(
                &format!("ALLOC_ADDR_{label}"),
                join_host_port(&n.address, inside),
            );
            both(
                &format!("ALLOC_INTERFACE_{label}"),
                n.interface_name.clone(),
            );
        }
    }
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env.insert("TMPDIR".into(), dirs.tmp_dir.clone());
    env
}

/// `ip:port`, with an IPv6 address in brackets.
fn join_host_port(ip: &str, port: u32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// Where the task sees its directories: the host's paths (raw_exec; exec maps them into its
/// chroot itself), or Nomad's fixed paths inside an image (drivers whose capabilities say
/// `fs_isolation = "image"`, docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathView {
    #[default]
    Host,
    Image,
}

impl PathView {
    /// The view of a driver by its `fs_isolation` capability.
    pub fn of_fs_isolation(fs_isolation: &str) -> PathView {
        if fs_isolation == "image" {
            PathView::Image
        } else {
            PathView::Host
        }
    }
}

/// Rewrites a task environment built with host paths for a task in its own image: the
/// directories are `/alloc`, `/local` and `/secrets` there (as Nomad mounts them), and the
/// image's own `PATH` and temporary directory apply.
pub fn view_from_image(env: &mut BTreeMap<String, String>) {
    for prefix in ["NOMAD", "DROVER"] {
        for (k, v) in [
            ("ALLOC_DIR", "/alloc"),
            ("TASK_DIR", "/local"),
            ("SECRETS_DIR", "/secrets"),
        ] {
            env.insert(format!("{prefix}_{k}"), v.to_string());
        }
    }
    env.remove("PATH");
    env.remove("TMPDIR");
}

/// Replaces `${NAME}` with `env[NAME]`. Unknown names are left as written.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find('}') {
            Some(end) => {
                let name = after[..end].trim();
                match env.get(name) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&rest[start..start + 2 + end + 1]),
                }
                rest = &after[end + 1..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Interpolates every string inside a JSON value.
pub fn interpolate_json(
    v: &serde_json::Value,
    env: &BTreeMap<String, String>,
) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) => serde_json::Value::String(interpolate(s, env)),
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.iter().map(|x| interpolate_json(x, env)).collect())
        }
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, x)| (k.clone(), interpolate_json(x, env)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_known_names_only() {
        let env: BTreeMap<String, String> =
            [("NOMAD_ALLOC_ID".to_string(), "abc".to_string())].into();
        assert_eq!(
            interpolate("id=${NOMAD_ALLOC_ID} x=${attr.kernel.name}", &env),
            "id=abc x=${attr.kernel.name}"
        );
        assert_eq!(interpolate("open ${ brace", &env), "open ${ brace");
    }

    #[test]
    fn port_addresses_use_the_ports_host_ip() {
        let job = Job::new("j", drover_model::JobType::Service);
        let task = Task::new("t", "exec");
        let mut alloc = Allocation::default();
        alloc.shared_resources.ports = vec![
            drover_model::AllocatedPort {
                label: "http".into(),
                value: 25000,
                to: 8080,
                host_ip: "10.0.0.5".into(),
            },
            drover_model::AllocatedPort {
                label: "old-one".into(),
                value: 25001,
                to: 0,
                host_ip: String::new(),
            },
        ];
        let dirs = TaskDirs {
            alloc_dir: "/a".into(),
            task_dir: "/a/t".into(),
            local_dir: "/a/t/local".into(),
            secrets_dir: "/a/t/secrets".into(),
            tmp_dir: "/a/t/tmp".into(),
        };
        let env = task_env(&job, &alloc, &task, &dirs, "global", "dc1", "192.0.2.1");
        assert_eq!(env["NOMAD_IP_http"], "10.0.0.5");
        assert_eq!(env["NOMAD_ADDR_http"], "10.0.0.5:25000");
        assert_eq!(env["NOMAD_PORT_http"], "8080");
        assert_eq!(env["DROVER_ADDR_http"], "10.0.0.5:25000");
        // Placed before ports carried an address: the agent's.
        assert_eq!(env["NOMAD_IP_old_one"], "192.0.2.1");
        assert_eq!(env["NOMAD_ADDR_old_one"], "192.0.2.1:25001");
        assert_eq!(env["NOMAD_HOST_IP_http"], "10.0.0.5");
        assert_eq!(env["NOMAD_HOST_PORT_http"], "25000");
        assert_eq!(env["NOMAD_HOST_ADDR_http"], "10.0.0.5:25000");
        assert_eq!(env["NOMAD_ALLOC_PORT_http"], "8080");
        assert_eq!(env["NOMAD_ALLOC_PORT_old_one"], "25001");
        assert!(
            !env.contains_key("NOMAD_ALLOC_IP_http"),
            "no allocation network, no allocation address"
        );

        // In an allocation network: its address with the port inside.
        alloc.network_status = Some(drover_model::NetworkStatus {
            interface_name: "eth0".into(),
            address: "172.26.64.9".into(),
            ..Default::default()
        });
        let env = task_env(&job, &alloc, &task, &dirs, "global", "dc1", "192.0.2.1");
        assert_eq!(env["NOMAD_ALLOC_IP_http"], "172.26.64.9");
        assert_eq!(env["NOMAD_ALLOC_ADDR_http"], "172.26.64.9:8080");
        assert_eq!(env["NOMAD_ALLOC_INTERFACE_http"], "eth0");
        assert_eq!(env["NOMAD_ALLOC_ADDR_old_one"], "172.26.64.9:25001");
        assert_eq!(env["NOMAD_ADDR_http"], "10.0.0.5:25000");
        assert_eq!(join_host_port("fd00::1", 80), "[fd00::1]:80");
    }

    #[test]
    fn a_task_in_an_image_sees_nomads_container_paths() {
        let job = Job::new("j", drover_model::JobType::Service);
        let task = Task::new("t", "docker");
        let dirs = TaskDirs {
            alloc_dir: "/data/alloc/x/alloc".into(),
            task_dir: "/data/alloc/x/t".into(),
            local_dir: "/data/alloc/x/t/local".into(),
            secrets_dir: "/data/alloc/x/t/secrets".into(),
            tmp_dir: "/data/alloc/x/t/tmp".into(),
        };
        let mut env = task_env(&job, &Allocation::default(), &task, &dirs, "r", "dc", "ip");
        assert_eq!(env["NOMAD_TASK_DIR"], "/data/alloc/x/t/local");
        view_from_image(&mut env);
        for (k, v) in [
            ("ALLOC_DIR", "/alloc"),
            ("TASK_DIR", "/local"),
            ("SECRETS_DIR", "/secrets"),
        ] {
            assert_eq!(env[&format!("NOMAD_{k}")], v);
            assert_eq!(env[&format!("DROVER_{k}")], v);
        }
        assert!(!env.contains_key("PATH") && !env.contains_key("TMPDIR"));
        assert!(env.values().all(|v| !v.contains("/data/alloc")), "{env:?}");
        assert_eq!(PathView::of_fs_isolation("image"), PathView::Image);
        assert_eq!(PathView::of_fs_isolation("chroot"), PathView::Host);
        assert_eq!(PathView::of_fs_isolation("none"), PathView::Host);
    }
}
