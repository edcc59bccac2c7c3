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
    // Ports the scheduler assigned: NOMAD_PORT_<label> (the port the task listens on),
    // NOMAD_HOST_PORT_<label>, NOMAD_IP_<label>, NOMAD_ADDR_<label>.
    for p in &alloc.shared_resources.ports {
        let label = p.label.replace('-', "_");
        let inside = if p.to > 0 {
            p.to as u32
        } else {
            p.value as u32
        };
        both(&format!("PORT_{label}"), inside.to_string());
        both(&format!("HOST_PORT_{label}"), p.value.to_string());
        both(&format!("IP_{label}"), host_ip.to_string());
        both(&format!("ADDR_{label}"), format!("{host_ip}:{}", p.value));
    }
    env.insert(
        "PATH".into(),
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
    );
    env.insert("TMPDIR".into(), dirs.tmp_dir.clone());
    env
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
}
