//! Isolated task start: latency from StartTask to the process running (StartTask answers once
//! the shim saw the task's exec succeed, inside its namespaces and root), and the bytes a
//! start leaves on disk outside the task's own directories. Root only.
//!
//! `cargo bench -p drover-plugin-exec --bench start` (BENCH_DIR picks the data directory's
//! filesystem; default: a temporary directory).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
use drover_proto::driver::{
    Resources, StartTaskRequest, StopTaskRequest, TaskConfig, WaitTaskRequest,
};
use serde_json::json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-exec");
const STARTS: usize = 60;
const WARMUP: usize = 5;

/// (apparent bytes, allocated bytes) of everything under `dir` except `skip`, on `dir`'s own
/// filesystem: what reached the disk (the shims' tmpfs does not count).
fn usage(dir: &Path, skip: &Path) -> (u64, u64) {
    let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
        return (0, 0);
    };
    usage_on(dir, skip, dev)
}

fn usage_on(dir: &Path, skip: &Path, dev: u64) -> (u64, u64) {
    let mut total = (0, 0);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p == skip {
            continue;
        }
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if m.dev() != dev {
            continue;
        }
        total.0 += if m.is_dir() { 0 } else { m.len() };
        total.1 += m.blocks() * 512;
        if m.is_dir() {
            let (a, b) = usage_on(&p, skip, dev);
            total.0 += a;
            total.1 += b;
        }
    }
    total
}

fn task(i: usize, tasks: &Path) -> TaskConfig {
    let dir = tasks.join(format!("t{i}"));
    for d in ["local", "secrets", "tmp", "alloc/logs"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    TaskConfig {
        id: format!("bench/t{i}/0"),
        name: format!("t{i}"),
        alloc_id: format!("alloc-{i}"),
        driver_config_json: serde_json::to_vec(
            &json!({ "command": "/bin/sleep", "args": ["1000"] }),
        )
        .unwrap(),
        env: [("PATH".to_string(), "/usr/bin:/bin".to_string())]
            .into_iter()
            .collect(),
        resources: Some(Resources {
            cpu_mhz: 100,
            memory_mb: 64,
            memory_max_mb: 0,
            cores: 0,
            core_ids: vec![],
        }),
        task_dir: dir.display().to_string(),
        alloc_dir: dir.join("alloc").display().to_string(),
        stdout_path: dir.join("alloc/logs/t.stdout").display().to_string(),
        stderr_path: dir.join("alloc/logs/t.stderr").display().to_string(),
        ..TaskConfig::default()
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this benchmark needs root");
    let base = std::env::var_os("BENCH_DIR").map(PathBuf::from);
    let tmp = match &base {
        Some(b) => tempfile::tempdir_in(b).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let data = tmp.path().join("data");
    // As the agent does at start: shim state on a tmpfs.
    drover_plugin_sdk::shim::state_in_memory(&data.join("shims"));
    let tasks = data.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = PluginHost::new(HostConfig {
            data_dir: data.clone(),
            node_id: "bench".into(),
            plugins: vec![PluginLaunch {
                name: "exec".into(),
                command: PathBuf::from(PLUGIN),
                args: vec![],
                config_json: json!({}),
                config_locations: Default::default(),
                inspect_only: false,
            }],
            handshake_timeout: Duration::from_secs(30),
            ..HostConfig::default()
        });
        let mut driver = host.driver("exec").await.unwrap();
        let mut lat = Vec::new();
        let mut disk_before = (0, 0);
        for i in 0..WARMUP + STARTS {
            let t = task(i, &tasks);
            if i == WARMUP {
                disk_before = usage(&data, &tasks);
            }
            let t0 = Instant::now();
            driver
                .start_task(StartTaskRequest { task: Some(t) })
                .await
                .unwrap();
            if i >= WARMUP {
                lat.push(t0.elapsed());
            }
        }
        let disk_after = usage(&data, &tasks);
        for i in 0..WARMUP + STARTS {
            let id = format!("bench/t{i}/0");
            driver
                .stop_task(StopTaskRequest {
                    task_id: id.clone(),
                    signal: "SIGKILL".into(),
                    timeout_ms: 0,
                })
                .await
                .unwrap();
            driver
                .wait_task(WaitTaskRequest { task_id: id })
                .await
                .unwrap();
        }
        host.shutdown().await;
        lat.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "BENCH exec_start_latency_p50 {:.1} ms",
            ms(lat[lat.len() / 2])
        );
        println!(
            "BENCH exec_start_latency_p99 {:.1} ms",
            ms(lat[lat.len() * 99 / 100])
        );
        let n = STARTS as u64;
        println!(
            "BENCH exec_start_disk_bytes_outside_task_dirs {} bytes",
            (disk_after.0 - disk_before.0) / n
        );
        println!(
            "BENCH exec_start_disk_allocated_outside_task_dirs {} bytes",
            (disk_after.1 - disk_before.1) / n
        );
    });
    let _ = nix::mount::umount2(&data.join("shims"), nix::mount::MntFlags::MNT_DETACH);
}
