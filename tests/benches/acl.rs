//! What ACL enforcement costs: two single-server agents in the same run, one with
//! `acl { enabled = true }` (requests carry a client token whose policy writes namespace
//! `default`: the policy is compiled once and cached, each request hashes the secret and
//! checks), one without. Rounds alternate between them so both see the same machine.
//!
//! - job registrations per second: `PUT /v1/jobs`, 8 writers, BENCH_SECS seconds a round;
//! - API request latency: sequential `GET /v1/job/<id>`, p50 and p99.
//!
//! Target: ACLs on cost at most 5 %.
//!
//! `cargo build --release -p drover-agent && cargo bench -p drover-tests --bench acl`
//! Environment: BENCH_SECS (seconds per round, default 5), BENCH_ROUNDS (default 2).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use drover_tests::*;
use serde_json::{Value, json};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Target {
    agent: Agent,
    token: Option<String>,
}

fn server(dir: &std::path::Path, acl: bool) -> Agent {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("agent.hcl");
    std::fs::write(
        &config,
        format!(
            "server {{\n  enabled = true\n  bootstrap_expect = 1\n}}\nacl {{\n  enabled = {acl}\n}}\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(
        &["-config", config.to_str().unwrap()],
        &dir.join("data"),
        free_port(),
        free_port(),
    );
    agent.wait_ready();
    agent
}

fn send(
    c: &reqwest::blocking::Client,
    t: &Target,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> reqwest::blocking::Response {
    let mut r = c.request(method, format!("{}{path}", t.agent.address()));
    if let Some(tok) = &t.token {
        r = r.header("X-Nomad-Token", tok);
    }
    if let Some(b) = body {
        r = r.json(b);
    }
    let resp = r.send().expect("request");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp
}

fn job(id: &str) -> Value {
    json!({ "Job": {
        "ID": id, "Name": id, "Type": "service", "Datacenters": ["*"],
        "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{
            "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/true" },
            "Resources": { "CPU": 10, "MemoryMB": 10 } }] }] } })
}

fn registrations_per_sec(t: &Target, secs: u64, round: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for w in 0..8 {
            let (stop, done) = (stop.clone(), done.clone());
            s.spawn(move || {
                let c = http();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("r{round}-w{w}-{i}");
                    send(&c, t, reqwest::Method::PUT, "/v1/jobs", Some(&job(&id)));
                    done.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            });
        }
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn read_latencies(t: &Target, n: usize, out: &mut Vec<Duration>) {
    let c = http();
    send(&c, t, reqwest::Method::PUT, "/v1/jobs", Some(&job("probe")));
    for _ in 0..n {
        let s = Instant::now();
        let r = send(&c, t, reqwest::Method::GET, "/v1/job/probe", None);
        let _ = r.bytes();
        out.push(s.elapsed());
    }
}

fn main() {
    let secs = env_num("BENCH_SECS", 5);
    let rounds = env_num("BENCH_ROUNDS", 2) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let off = Target {
        agent: server(&tmp.path().join("off"), false),
        token: None,
    };
    let on_agent = server(&tmp.path().join("on"), true);
    let c = http();
    let boot: Value = c
        .post(format!("{}/v1/acl/bootstrap", on_agent.address()))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let root = boot["SecretID"].as_str().unwrap().to_string();
    let mut admin = Target {
        agent: on_agent,
        token: Some(root),
    };
    let policy =
        json!({ "Name": "writer", "Rules": "namespace \"default\" { policy = \"write\" }" });
    send(
        &c,
        &admin,
        reqwest::Method::POST,
        "/v1/acl/policy/writer",
        Some(&policy),
    );
    let tok: Value = send(
        &c,
        &admin,
        reqwest::Method::POST,
        "/v1/acl/token",
        Some(&json!({ "Name": "bench", "Type": "client", "Policies": ["writer"] })),
    )
    .json()
    .unwrap();
    admin.token = Some(tok["SecretID"].as_str().unwrap().to_string());
    let on = admin;

    let (mut reg_off, mut reg_on) = (0.0f64, 0.0f64);
    let (mut lat_off, mut lat_on) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // Alternate which goes first, so neither always runs on a warmer machine.
        let order: [(&Target, bool); 2] = if round % 2 == 0 {
            [(&off, false), (&on, true)]
        } else {
            [(&on, true), (&off, false)]
        };
        for (t, is_on) in order {
            let r = registrations_per_sec(t, secs, round);
            let lat = if is_on { &mut lat_on } else { &mut lat_off };
            read_latencies(t, 2000, lat);
            if is_on {
                reg_on += r;
            } else {
                reg_off += r;
            }
        }
    }
    let (reg_off, reg_on) = (reg_off / rounds as f64, reg_on / rounds as f64);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (p50_off, p50_on) = (
        us(percentile(&mut lat_off, 0.5)),
        us(percentile(&mut lat_on, 0.5)),
    );
    let (p99_off, p99_on) = (
        us(percentile(&mut lat_off, 0.99)),
        us(percentile(&mut lat_on, 0.99)),
    );
    println!("BENCH acl_off_job_registrations {reg_off:.0} reg/s");
    println!("BENCH acl_on_job_registrations {reg_on:.0} reg/s");
    println!(
        "BENCH acl_registration_slowdown {:.1} %",
        (reg_off - reg_on) / reg_off * 100.0
    );
    println!("BENCH acl_off_read_latency_p50 {p50_off:.0} us");
    println!("BENCH acl_on_read_latency_p50 {p50_on:.0} us");
    println!("BENCH acl_off_read_latency_p99 {p99_off:.0} us");
    println!("BENCH acl_on_read_latency_p99 {p99_on:.0} us");
    println!(
        "BENCH acl_read_latency_p50_slowdown {:.1} %",
        (p50_on - p50_off) / p50_off * 100.0
    );
}
