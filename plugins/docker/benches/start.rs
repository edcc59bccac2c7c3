//! Docker task start through the real plugin and host against `docker run -d` of the same
//! container from the CLI, in one run, on the same locally built image; and the plugin's
//! memory (PSS) idle and with 100 running containers. Root, a running engine.
//!
//! `cargo bench -p drover-plugin-docker --bench start`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use drover_driver_testkit::docker::{busybox_image, docker};
use drover_plugin_host::{HostConfig, PluginHost, PluginLaunch};
use drover_proto::driver::{DestroyTaskRequest, Resources, StartTaskRequest, TaskConfig};
use serde_json::json;

const PLUGIN: &str = env!("CARGO_BIN_EXE_drover-docker");
const STARTS: usize = 30;
const WARMUP: usize = 3;
const HELD: usize = 100;
const LABEL: &str = "drover.bench=docker-start";

fn task(i: usize, tasks: &Path) -> TaskConfig {
    let dir = tasks.join(format!("t{i}"));
    for d in ["local", "secrets", "tmp", "alloc/logs"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    TaskConfig {
        id: format!("bench-{i}/t/0"),
        name: "t".into(),
        alloc_id: format!("bench-{}-{i}", std::process::id()),
        job_name: "bench".into(),
        group_name: "g".into(),
        driver_config_json: serde_json::to_vec(
            &json!({ "image": busybox_image(), "command": "sleep", "args": ["1000"] }),
        )
        .unwrap(),
        resources: Some(Resources {
            cpu_mhz: 100,
            memory_mb: 32,
            ..Default::default()
        }),
        task_dir: dir.display().to_string(),
        alloc_dir: dir.join("alloc").display().to_string(),
        stdout_path: dir.join("alloc/logs/t.stdout").display().to_string(),
        stderr_path: dir.join("alloc/logs/t.stderr").display().to_string(),
        ..TaskConfig::default()
    }
}

/// Proportional set size of `pid`, in bytes.
fn pss(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Pss:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Processes whose parent is `pid` (a per-container process of ours would be one).
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn cli_run(i: usize) -> Duration {
    let t0 = Instant::now();
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &format!("drover-bench-cli-{}-{i}", std::process::id()),
            "--label",
            LABEL,
            "--memory",
            "32m",
            busybox_image(),
            "sleep",
            "1000",
        ])
        .output()
        .unwrap();
    let took = t0.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn percentile(v: &mut [Duration], p: usize) -> f64 {
    v.sort();
    v[(v.len() * p / 100).min(v.len() - 1)].as_secs_f64() * 1000.0
}

fn remove_cli_containers() {
    let ids = docker(&["ps", "-aq", "--filter", &format!("label={LABEL}")]);
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        docker(&args);
    }
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this benchmark needs root");
    busybox_image();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let tasks = data.join("tasks");
    std::fs::create_dir_all(&tasks).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let host = PluginHost::new(HostConfig {
            data_dir: data.clone(),
            node_id: "bench".into(),
            plugins: vec![PluginLaunch {
                name: "docker".into(),
                command: PathBuf::from(PLUGIN),
                args: vec![],
                config_json: json!({}),
                config_locations: Default::default(),
                inspect_only: false,
            }],
            handshake_timeout: Duration::from_secs(30),
            ..HostConfig::default()
        });
        let mut driver = host.driver("docker").await.unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let plugin = host.plugin_pid("docker").await.expect("plugin pid");
        let idle_pss = pss(plugin);

        // Alternate: one start through the plugin, one `docker run -d`.
        let (mut ours, mut cli) = (Vec::new(), Vec::new());
        let mut started = Vec::new();
        for i in 0..WARMUP + STARTS {
            let t = task(i, &tasks);
            let id = t.id.clone();
            let t0 = Instant::now();
            driver
                .start_task(StartTaskRequest { task: Some(t) })
                .await
                .unwrap();
            let took = t0.elapsed();
            started.push(id);
            let c = tokio::task::spawn_blocking(move || cli_run(i))
                .await
                .unwrap();
            if i >= WARMUP {
                ours.push(took);
                cli.push(c);
            }
        }
        tokio::task::spawn_blocking(remove_cli_containers)
            .await
            .unwrap();
        // Up to 100 running containers held by the plugin.
        for i in WARMUP + STARTS..HELD {
            let t = task(i, &tasks);
            started.push(t.id.clone());
            driver
                .start_task(StartTaskRequest { task: Some(t) })
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let held_pss = pss(plugin);
        let ours_per_container: Vec<u64> = children(plugin).into_iter().map(pss).collect();
        for id in &started {
            let _ = driver
                .destroy_task(DestroyTaskRequest {
                    task_id: id.clone(),
                    force: true,
                })
                .await;
        }
        host.shutdown().await;

        let (o50, o99) = (percentile(&mut ours, 50), percentile(&mut ours, 99));
        let (c50, c99) = (percentile(&mut cli, 50), percentile(&mut cli, 99));
        println!("BENCH docker_start_plugin_p50 {o50:.1} ms");
        println!("BENCH docker_start_plugin_p99 {o99:.1} ms");
        println!("BENCH docker_start_cli_run_p50 {c50:.1} ms");
        println!("BENCH docker_start_cli_run_p99 {c99:.1} ms");
        println!("BENCH docker_start_ratio_p50 {:.2} x", o50 / c50);
        println!(
            "BENCH docker_plugin_idle_pss {:.1} MB",
            idle_pss as f64 / 1e6
        );
        println!(
            "BENCH docker_plugin_pss_with_{HELD}_containers {:.1} MB",
            held_pss as f64 / 1e6
        );
        println!(
            "BENCH docker_per_container_processes_of_ours {} processes",
            ours_per_container.len()
        );
        println!(
            "BENCH docker_largest_per_container_process_pss {:.2} MB",
            ours_per_container.iter().max().copied().unwrap_or(0) as f64 / 1e6
        );
    });
}
