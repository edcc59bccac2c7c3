//! 200 sleeping exec tasks on one client (a real `drover agent -dev`): the resident memory
//! of the agent plus its plugin processes, and of the per-task shims and inits. Root only.
//!
//! `cargo build --release -p drover-agent && cargo bench -p drover-tests --bench exec`

use std::time::Duration;

use drover_tests::*;
use serde_json::json;

const TASKS: usize = 200;

fn rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| proc_cmdline(*p).contains(needle))
        .collect()
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this benchmark needs root");
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    let body = json!({ "Job": { "ID": "sleepers", "TaskGroups": [{ "Name": "g", "Count": TASKS,
        "Tasks": [{ "Name": "t", "Driver": "exec",
            "Config": { "command": "/bin/sleep", "args": ["1000"] },
            "Resources": { "CPU": 10, "MemoryMB": 10 } }] }] } });
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/jobs", agent.address()))
        .json(&body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
    let t0 = std::time::Instant::now();
    wait_for(
        &format!("{TASKS} running exec allocations"),
        Duration::from_secs(600),
        || {
            (agent
                .allocs("sleepers")
                .iter()
                .filter(|a| a["ClientStatus"] == "running")
                .count()
                == TASKS)
                .then_some(())
        },
    );
    let took = t0.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    // This agent's processes only (other agents may run on the machine).
    let shims_dir = format!("drover-dev-{}/shims", agent.pid());
    let plugins: Vec<i32> = pids_with("plugin serve")
        .into_iter()
        .filter(|p| proc_stat(*p).is_some_and(|s| s.0 == agent.pid()))
        .collect();
    let shims = pids_with(&format!("task-shim launch /tmp/{shims_dir}"));
    let inits = pids_with(&format!("task-shim init /tmp/{shims_dir}"));
    let agent_kb = rss_kb(agent.pid());
    let plugins_kb: u64 = plugins.iter().map(|p| rss_kb(*p)).sum();
    let shims_kb: u64 = shims.iter().chain(&inits).map(|p| rss_kb(*p)).sum();
    let shims_pss: u64 = shims.iter().chain(&inits).map(|p| pss_kb(*p)).sum();
    let pss = pss_kb(agent.pid()) + plugins.iter().map(|p| pss_kb(*p)).sum::<u64>();
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "BENCH exec_200_tasks_agent_plus_plugins_pss {:.1} MB",
        mb(pss)
    );
    println!(
        "BENCH exec_200_tasks_shims_and_inits_pss {:.1} MB",
        mb(shims_pss)
    );
    println!(
        "BENCH exec_200_tasks_agent_plus_plugins_rss {:.1} MB",
        mb(agent_kb + plugins_kb)
    );
    println!("BENCH exec_200_tasks_agent_rss {:.1} MB", mb(agent_kb));
    println!("BENCH exec_200_tasks_plugins_rss {:.1} MB", mb(plugins_kb));
    println!(
        "BENCH exec_200_tasks_shims_and_inits_rss {:.1} MB ({} shims, {} inits)",
        mb(shims_kb),
        shims.len(),
        inits.len()
    );
    println!(
        "BENCH exec_200_tasks_submit_to_all_running {:.1} s",
        took.as_secs_f64()
    );
}
