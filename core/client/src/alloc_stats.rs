//! `alloc status -stats` on the client: the tasks' resource usage from their drivers'
//! TaskStats, answered as Nomad's AllocResourceUsage.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_proto::driver::{TaskStatsRequest, TaskStatsResponse};
use drover_proto::node::StatsRequest;
use serde_json::{Value, json};
use tokio_stream::StreamExt;

use crate::Client;

/// Nomad's ResourceUsage object from one TaskStats sample.
fn resource_usage(s: &TaskStatsResponse, core_mhz: f64) -> Value {
    let cpu = s.cpu.clone().unwrap_or_default();
    let mem = s.memory.clone().unwrap_or_default();
    json!({
        "MemoryStats": {
            "RSS": mem.rss, "Cache": mem.cache, "Swap": mem.swap, "Usage": mem.usage,
            "MaxUsage": mem.max_usage, "KernelUsage": 0, "KernelMaxUsage": 0,
            "Measured": mem.measured,
        },
        "CpuStats": {
            "SystemMode": cpu.system_mode, "UserMode": cpu.user_mode,
            "TotalTicks": cpu.percent / 100.0 * core_mhz,
            "ThrottledPeriods": cpu.throttled_periods, "ThrottledTime": cpu.throttled_time_ns,
            "Percent": cpu.percent, "Measured": cpu.measured,
        },
        "DeviceStats": [],
    })
}

/// The resource usage of the allocation's running tasks: two samples 500 ms apart per task,
/// so CPU percentages cover that window.
pub async fn alloc_stats(client: &Client, req: &StatsRequest) -> Result<Vec<u8>, String> {
    let tasks = client.runner(&req.alloc_id)?.running_tasks(&req.task)?;
    let core_mhz = crate::fingerprint::core_mhz(
        &tokio::fs::read_to_string("/proc/cpuinfo")
            .await
            .unwrap_or_default(),
    ) as f64;
    let sample = |driver: String, task_id: String| {
        let client = client.clone();
        async move {
            let mut d = client
                .host()
                .driver(&driver)
                .await
                .map_err(|e| e.to_string())?;
            let mut stream = d
                .task_stats(TaskStatsRequest {
                    task_id,
                    interval_ms: 500,
                })
                .await
                .map_err(|e| e.message().to_string())?
                .into_inner();
            let mut last = None;
            for _ in 0..2 {
                match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
                    Ok(Some(Ok(s))) => last = Some(s),
                    Ok(Some(Err(e))) => return Err(e.message().to_string()),
                    Ok(None) | Err(_) => break,
                }
            }
            last.ok_or_else(|| "the driver sent no statistics".to_string())
        }
    };
    let samples = futures::future::join_all(
        tasks
            .iter()
            .map(|(_, driver, id)| sample(driver.clone(), id.clone())),
    )
    .await;
    let mut per_task = BTreeMap::new();
    let (mut rss, mut usage, mut cpu_pct, mut user, mut system) = (0, 0, 0.0, 0.0, 0.0);
    let mut newest = 0;
    for ((name, _, _), s) in tasks.iter().zip(samples) {
        let s = s.map_err(|e| format!("task {name:?}: {e}"))?;
        let mem = s.memory.clone().unwrap_or_default();
        let cpu = s.cpu.clone().unwrap_or_default();
        rss += mem.rss;
        usage += mem.usage;
        cpu_pct += cpu.percent;
        user += cpu.user_mode;
        system += cpu.system_mode;
        newest = newest.max(s.timestamp_unix_nanos);
        per_task.insert(
            name.clone(),
            json!({
                "ResourceUsage": resource_usage(&s, core_mhz),
                "Timestamp": s.timestamp_unix_nanos,
                "Pids": null,
            }),
        );
    }
    let total = TaskStatsResponse {
        timestamp_unix_nanos: newest,
        cpu: Some(drover_proto::driver::CpuStats {
            percent: cpu_pct,
            user_mode: user,
            system_mode: system,
            measured: vec!["Percent".into(), "User Mode".into(), "System Mode".into()],
            ..Default::default()
        }),
        memory: Some(drover_proto::driver::MemoryStats {
            rss,
            usage,
            measured: vec!["RSS".into()],
            ..Default::default()
        }),
        pids: 0,
    };
    let body = json!({
        "ResourceUsage": resource_usage(&total, core_mhz),
        "Tasks": per_task,
        "Timestamp": newest,
    });
    Ok(serde_json::to_vec(&body).expect("JSON serializes"))
}
