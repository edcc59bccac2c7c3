//! Client runtime figures on a real dev agent (release build):
//! submit-to-running latency of a raw_exec task, idle memory (PSS of the agent and its
//! plugins), and 500 running allocations (PSS of agent, plugins and shims; agent CPU).
//!
//! `cargo build --release -p drover-agent && cargo bench -p drover-tests --bench client`

use std::time::{Duration, Instant};

use drover_tests::*;
use serde_json::json;

fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &s[s.rfind(')').map(|i| i + 2).unwrap_or(0)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

/// Processes whose command line contains `needle` (plugins, shims).
fn pids_with(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| proc_cmdline(*p).contains(needle))
        .collect()
}

fn job(id: &str, count: u32) -> serde_json::Value {
    json!({ "Job": { "ID": id, "TaskGroups": [{ "Name": "g", "Count": count, "Tasks": [{
        "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/sleep", "args": ["1000"] },
        "Resources": { "CPU": 1, "MemoryMB": 1 } }] }] } })
}

fn post(agent: &Agent, body: &serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/jobs", agent.address()))
        .json(body)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().unwrap());
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    std::thread::sleep(Duration::from_secs(2));
    let dev_data = format!("drover-dev-{}", agent.pid());
    let plugins = pids_with("plugin serve");
    let idle: u64 = pss_kb(agent.pid()) + plugins.iter().map(|p| pss_kb(*p)).sum::<u64>();
    println!(
        "BENCH client_idle_dev_agent_pss {:.1} MB",
        idle as f64 / 1024.0
    );

    let mut lat = Vec::new();
    for i in 0..40 {
        let id = format!("lat{i}");
        let t = Instant::now();
        post(&agent, &job(&id, 1));
        // Poll tightly: the harness's wait_for sleeps 100 ms between looks.
        while !agent
            .allocs(&id)
            .iter()
            .any(|a| a["ClientStatus"] == "running")
        {
            assert!(t.elapsed() < Duration::from_secs(30), "{id} never ran");
            std::thread::sleep(Duration::from_millis(2));
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        let r = reqwest::blocking::Client::new()
            .delete(format!("{}/v1/job/{id}?purge=true", agent.address()))
            .send()
            .unwrap();
        assert!(r.status().is_success());
    }
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "BENCH client_submit_to_running_p50 {:.1} ms",
        lat[lat.len() / 2]
    );
    println!(
        "BENCH client_submit_to_running_p99 {:.1} ms",
        lat[lat.len() * 99 / 100]
    );
    std::thread::sleep(Duration::from_secs(3));

    post(&agent, &job("many", 500));
    wait_for("500 running allocations", Duration::from_secs(300), || {
        (agent
            .allocs("many")
            .iter()
            .filter(|a| a["ClientStatus"] == "running")
            .count()
            == 500)
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(2));
    let shims = pids_with(&format!("{dev_data}/shims"));
    let plugins = pids_with("plugin serve");
    let agent_pss = pss_kb(agent.pid());
    let plugin_pss: u64 = plugins.iter().map(|p| pss_kb(*p)).sum();
    let shim_pss: u64 = shims.iter().map(|p| pss_kb(*p)).sum();
    println!(
        "BENCH client_500_allocs_agent_pss {:.1} MB",
        agent_pss as f64 / 1024.0
    );
    println!(
        "BENCH client_500_allocs_plugins_pss {:.1} MB",
        plugin_pss as f64 / 1024.0
    );
    println!(
        "BENCH client_500_allocs_shims_pss {:.1} MB",
        shim_pss as f64 / 1024.0
    );
    println!("BENCH client_500_allocs_shim_count {} shims", shims.len());
    let hz = 100.0;
    let before = cpu_ticks(agent.pid());
    std::thread::sleep(Duration::from_secs(10));
    let after = cpu_ticks(agent.pid());
    println!(
        "BENCH client_500_allocs_agent_cpu {:.2} %",
        (after - before) as f64 / hz / 10.0 * 100.0
    );
}
