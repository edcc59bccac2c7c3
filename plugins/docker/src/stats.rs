//! A container's resource usage from the engine's stats, in the shape of Nomad's
//! `TaskStats` (`alloc status -stats`): cumulative CPU time (the SDK derives the
//! percentages between two samples), memory, throttling and the number of processes.

use bollard::Docker;
use bollard::models::{ContainerCpuStats, ContainerMemoryStats, ContainerStatsResponse};
use bollard::query_parameters::StatsOptions;
use drover_plugin_sdk::proto::driver::{CpuStats, MemoryStats, TaskStatsResponse};
use futures::StreamExt;

/// Why no sample could be taken.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("container {0} is not known to the engine")]
    NotFound(String),
    #[error("container {0} is not running")]
    NotRunning(String),
    #[error("the engine's stats of container {0}: {1}")]
    Engine(String, #[source] bollard::errors::Error),
    #[error("the engine sent no stats for container {0}")]
    NoSample(String),
}

/// One sample of `container_id`'s usage (the engine's one-shot stats: no wait for a second
/// reading).
pub async fn sample(docker: &Docker, container_id: &str) -> Result<TaskStatsResponse, StatsError> {
    let options = StatsOptions {
        stream: false,
        one_shot: true,
    };
    let stream = docker.stats(container_id, Some(options));
    let mut stream = std::pin::pin!(stream);
    let stats = match stream.next().await {
        Some(Ok(s)) => s,
        Some(Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        })) => return Err(StatsError::NotFound(container_id.to_string())),
        Some(Err(e)) => return Err(StatsError::Engine(container_id.to_string(), e)),
        None => return Err(StatsError::NoSample(container_id.to_string())),
    };
    to_task_stats(container_id, &stats)
}

/// The engine's stats as a `TaskStatsResponse`, stamped now.
fn to_task_stats(
    container_id: &str,
    stats: &ContainerStatsResponse,
) -> Result<TaskStatsResponse, StatsError> {
    // A stopped container's stats are empty: no process count, no memory reading.
    let pids = stats.pids_stats.as_ref().and_then(|p| p.current);
    let usage = stats.memory_stats.as_ref().and_then(|m| m.usage);
    if pids.is_none() && usage.is_none() {
        return Err(StatsError::NotRunning(container_id.to_string()));
    }
    Ok(TaskStatsResponse {
        timestamp_unix_nanos: drover_plugin_sdk::shim::now_nanos(),
        cpu: Some(cpu(stats.cpu_stats.as_ref())),
        memory: Some(memory(stats.memory_stats.as_ref())),
        pids: pids.unwrap_or(0),
    })
}

/// Cumulative user and system time, and throttling (`measured` names what is present;
/// the SDK adds the percentages).
fn cpu(stats: Option<&ContainerCpuStats>) -> CpuStats {
    let mut out = CpuStats::default();
    let Some(stats) = stats else {
        return out;
    };
    if let Some(usage) = &stats.cpu_usage {
        out.user_ns_total = usage.usage_in_usermode.unwrap_or(0);
        out.system_ns_total = usage.usage_in_kernelmode.unwrap_or(0);
    }
    if let Some(t) = &stats.throttling_data {
        if let Some(p) = t.throttled_periods {
            out.throttled_periods = p;
            out.measured.push("Throttled Periods".into());
        }
        if let Some(ns) = t.throttled_time {
            out.throttled_time_ns = ns;
            out.measured.push("Throttled Time".into());
        }
    }
    out
}

/// Memory as Nomad's docker driver reports it: on cgroup v1 `rss`, `cache` and `swap` from
/// the memory controller's stats, with usage and max usage; on cgroup v2 `anon` and `file`
/// stand for rss and cache, and there is no max usage.
fn memory(stats: Option<&ContainerMemoryStats>) -> MemoryStats {
    let mut out = MemoryStats::default();
    let Some(stats) = stats else {
        return out;
    };
    let detail = stats.stats.as_ref();
    let pick = |keys: &[&str]| keys.iter().find_map(|k| detail?.get(*k).copied());
    let fields: [(&str, Option<u64>, &mut u64); 5] = [
        ("RSS", pick(&["rss", "anon"]), &mut out.rss),
        ("Cache", pick(&["cache", "file"]), &mut out.cache),
        ("Swap", pick(&["swap"]), &mut out.swap),
        ("Usage", stats.usage, &mut out.usage),
        ("Max Usage", stats.max_usage, &mut out.max_usage),
    ];
    let mut measured = Vec::new();
    for (name, value, slot) in fields {
        if let Some(v) = value {
            *slot = v;
            measured.push(name.to_string());
        }
    }
    out.measured = measured;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_engine::{self, Spec};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_running_container_reports_cpu_memory_and_pids() {
        let docker = test_engine::docker().await;
        let name = test_engine::unique("stats");
        // Two processes: the shell and its sleep; some CPU burnt first.
        let script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 300 & wait";
        let c = test_engine::run(&docker, &name, &Spec::busybox(&["sh", "-c", script])).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let s = loop {
            let s = sample(&docker, &c.id).await.expect("a sample");
            if s.pids >= 2 {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pids stayed {}",
                s.pids
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let cpu = s.cpu.expect("cpu");
        assert!(cpu.user_ns_total + cpu.system_ns_total > 0, "{cpu:?}");
        assert!(cpu.measured.iter().any(|m| m == "Throttled Periods"));
        let mem = s.memory.expect("memory");
        assert!(mem.usage > 0 && mem.max_usage >= mem.usage, "{mem:?}");
        for m in ["RSS", "Cache", "Usage", "Max Usage"] {
            assert!(mem.measured.iter().any(|x| x == m), "{m} missing: {mem:?}");
        }
        assert!(s.timestamp_unix_nanos > 0);
        docker
            .kill_container(
                &c.id,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .expect("kill");
        let waits = docker.wait_container(
            &c.id,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        let _ = std::pin::pin!(waits).next().await;
        assert!(matches!(
            sample(&docker, &c.id).await,
            Err(StatsError::NotRunning(_))
        ));
        test_engine::remove(&docker, &c.id).await;
        assert!(matches!(
            sample(&docker, &c.id).await,
            Err(StatsError::NotFound(_))
        ));
    }
}
