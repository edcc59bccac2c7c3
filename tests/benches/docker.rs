//! Submit-to-running of docker jobs on one `drover agent -dev` against the real engine: a job
//! registered through the HTTP API until its allocation is running (the container started),
//! one job at a time, p50 and p99. Root, a running engine, the offline busybox image.
//!
//! `cargo build --release -p drover-agent && cargo bench -p drover-tests --bench docker`

use std::time::{Duration, Instant};

use drover_driver_testkit::docker::{busybox_image, docker};
use drover_tests::*;
use serde_json::json;

const JOBS: usize = 30;
const WARMUP: usize = 3;

fn main() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "this benchmark needs root");
    let image = busybox_image();
    let tmp = tempfile::tempdir().unwrap();
    let agent = Agent::dev(tmp.path());
    // The agent's docker plugin (`drover plugin serve docker`), idle.
    let plugin = wait_for("the docker plugin", Duration::from_secs(30), || {
        let v = agent.get("/v1/agent/plugins")?;
        let p = v.as_array()?.iter().find(|p| p["Name"] == "docker")?;
        (p["State"] == "running").then(|| p["Pid"].as_i64())?
    }) as i32;
    std::thread::sleep(Duration::from_secs(3));
    let idle_pss = pss_kb(plugin);
    let client = http();
    let mut lat = Vec::new();
    let mut allocs = Vec::new();
    for i in 0..WARMUP + JOBS {
        let id = format!("dbench{i}");
        let body = json!({ "Job": { "ID": id, "TaskGroups": [{ "Name": "g", "Count": 1,
            "Tasks": [{ "Name": "t", "Driver": "docker",
                "Config": { "image": image, "command": "sleep", "args": ["1000"] },
                "Resources": { "CPU": 10, "MemoryMB": 16 } }] }] } });
        let t0 = Instant::now();
        let r = client
            .post(format!("{}/v1/jobs", agent.address()))
            .json(&body)
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().unwrap());
        let alloc = loop {
            if let Some(a) = agent
                .allocs(&id)
                .into_iter()
                .find(|a| a["ClientStatus"] == "running")
            {
                break a;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{id} never ran");
            std::thread::sleep(Duration::from_millis(2));
        };
        if i >= WARMUP {
            lat.push(t0.elapsed());
        }
        allocs.push(alloc["ID"].as_str().unwrap().to_string());
    }
    for i in 0..WARMUP + JOBS {
        let _ = agent.cli(&["job", "stop", "-detach", &format!("dbench{i}")]);
    }
    for a in &allocs {
        wait_for("the containers to go", Duration::from_secs(120), || {
            docker(&[
                "ps",
                "-aq",
                "--filter",
                &format!("label=com.hashicorp.nomad.alloc_id={a}"),
            ])
            .trim()
            .is_empty()
            .then_some(())
        });
    }
    println!(
        "BENCH docker_agent_plugin_idle_pss {:.1} MB",
        idle_pss as f64 / 1024.0
    );
    lat.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "BENCH docker_submit_to_running_p50 {:.1} ms",
        ms(lat[lat.len() / 2])
    );
    println!(
        "BENCH docker_submit_to_running_p99 {:.1} ms",
        ms(lat[(lat.len() * 99 / 100).min(lat.len() - 1)])
    );
}
