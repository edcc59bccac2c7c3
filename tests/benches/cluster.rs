//! Cluster figures on real `drover` servers (release build), on loopback:
//!
//! - failover: SIGKILL of the leader -> the first acknowledged write on the new leader
//!   (writes are retried every 20 ms through the surviving servers), p50 over repeated kills
//!   with Drover's shipped Raft timings;
//! - throughput: committed writes per second on a 3-server Drover cluster and, in the same
//!   run, on a 3-member etcd cluster, driven by the same load generator: 64 writes in flight,
//!   each with a 100-byte value, spread over the three members (followers forward to their
//!   leader in both systems). The compared Drover write is a variable (`PUT /v1/var/<key>`,
//!   one 100-byte item), the same shape as an etcd v3 `put` through etcd's JSON gateway; job
//!   registrations (the job and its evaluation, then scheduled by the leader) are printed
//!   too. etcd is skipped, with a message, when its binary is absent.
//!
//! `cargo build --release --bins && cargo bench -p drover-tests --bench cluster`
//! Environment: BENCH_KILLS (default 7), BENCH_SECS (throughput seconds, default 10).

use std::path::Path;
use std::process::{Child, Command, Stdio};
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

struct Spec {
    host: String,
    http: u16,
    rpc: u16,
    config: std::path::PathBuf,
    data: std::path::PathBuf,
}

fn cluster_specs(dir: &Path, base: u8) -> Vec<Spec> {
    specs_n(dir, base, 3)
}

fn specs_n(dir: &Path, base: u8, n: u8) -> Vec<Spec> {
    let hosts: Vec<String> = (0..n).map(|i| format!("127.0.0.{}", base + i)).collect();
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let join: Vec<String> = hosts
        .iter()
        .zip(&ports)
        .map(|(h, (_, r))| format!("\"{h}:{r}\""))
        .collect();
    (0..n as usize)
        .map(|i| {
            let config = dir.join(format!("s{i}.hcl"));
            std::fs::write(
                &config,
                format!(
                    // One key-encryption key for every server (variables are sealed
                    // on the server that takes the write).
                    "name = \"s{i}\"\nbind_addr = \"{}\"\nkeyring \"file\" {{\n  path = \"{}\"\n}}\nserver {{\n  enabled = true\n  bootstrap_expect = {n}\n  server_join {{\n    retry_join = [{}]\n    retry_interval = \"500ms\"\n  }}\n}}\n",
                    hosts[i],
                    dir.join("keyring.kek").display(),
                    join.join(", ")
                ),
            )
            .unwrap();
            Spec {
                host: hosts[i].clone(),
                http: ports[i].0,
                rpc: ports[i].1,
                config,
                data: dir.join(format!("s{i}")),
            }
        })
        .collect()
}

fn start(s: &Spec) -> Agent {
    Agent::start_on(
        &s.host,
        &[],
        &["-config", s.config.to_str().unwrap()],
        &s.data,
        s.http,
        s.rpc,
    )
}

fn leader(servers: &[Agent]) -> usize {
    wait_for(
        "a leader all running servers agree on",
        Duration::from_secs(60),
        || {
            let live: Vec<&Agent> = servers.iter().filter(|a| a.child.is_some()).collect();
            let l = live[0].get("/v1/status/leader")?.as_str()?.to_string();
            live.iter()
                .all(|a| {
                    a.get("/v1/status/leader")
                        .and_then(|v| v.as_str().map(String::from))
                        == Some(l.clone())
                })
                .then_some(())?;
            servers
                .iter()
                .position(|a| a.child.is_some() && a.rpc_addr() == l)
        },
    )
}

fn job(id: &str, value: &str) -> Value {
    json!({ "Job": { "ID": id, "Datacenters": ["nowhere"], "Meta": { "v": value }, "TaskGroups": [{ "Name": "g", "Count": 1, "Tasks": [{ "Name": "t", "Driver": "raw_exec", "Config": { "command": "/bin/true" } }] }] } })
}

fn failover(dir: &Path) {
    let specs = cluster_specs(dir, 91);
    let mut servers: Vec<Agent> = specs.iter().map(start).collect();
    leader(&servers);
    let c = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let kills = env_num("BENCH_KILLS", 7);
    let mut times = Vec::new();
    for round in 0..kills {
        let l = leader(&servers);
        // Every server holds three voters again before the next kill.
        wait_for("three voters", Duration::from_secs(60), || {
            let v = servers[l].get("/v1/operator/raft/configuration")?;
            (v["Servers"]
                .as_array()?
                .iter()
                .filter(|s| s["Voter"] == true && s["Status"] == "alive")
                .count()
                == 3)
                .then_some(())
        });
        std::thread::sleep(Duration::from_millis(500));
        let survivors: Vec<(String, u16)> = servers
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != l)
            .map(|(_, a)| (a.host.clone(), a.http_port))
            .collect();
        let killed_at = Instant::now();
        servers[l].kill9();
        let mut n = 0usize;
        loop {
            let (h, p) = &survivors[n % 2];
            n += 1;
            let ok = c
                .post(format!("http://{h}:{p}/v1/jobs"))
                .json(&job(&format!("f{round}-{n}"), "x"))
                .send()
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let took = killed_at.elapsed();
        println!("failover round {round}: {took:?}");
        times.push(took);
        servers[l].start_again();
    }
    println!(
        "BENCH cluster_failover_p50 {} ms",
        percentile(&mut times, 0.5).as_millis()
    );
    println!(
        "BENCH cluster_failover_max {} ms",
        times.last().unwrap().as_millis()
    );
}

/// Runs `writers` threads for `secs`, each sending `send(thread, seq)` in a loop; returns the
/// acknowledged writes per second.
fn drive(writers: usize, secs: u64, send: Arc<dyn Fn(usize, u64) -> bool + Send + Sync>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..writers)
        .map(|t| {
            let (done, stop, send) = (done.clone(), stop.clone(), send.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if send(t, seq) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    // Warm up for a second, then measure.
    std::thread::sleep(Duration::from_secs(1));
    let start_count = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let n = done.load(Ordering::Relaxed) - start_count;
    let rate = n as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    rate
}

const IN_FLIGHT: usize = 64;

fn value() -> String {
    "v".repeat(100)
}

/// What one Drover write is.
#[derive(Clone, Copy, PartialEq)]
enum Write {
    /// `PUT /v1/var/<key>` with one 100-byte item: a key-value write, etcd's `put`.
    Variable,
    /// `POST /v1/jobs`: the job (value in its meta) and its evaluation, which the
    /// leader's scheduler then processes on the same cores.
    Job,
}

fn drover_throughput(dir: &Path, secs: u64, n: u8, write: Write) -> f64 {
    let specs = specs_n(dir, 94, n);
    let servers: Vec<Agent> = specs.iter().map(start).collect();
    leader(&servers);
    let targets: Vec<String> = servers.iter().map(|a| a.address()).collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let v = value();
    let rate = drive(
        IN_FLIGHT,
        secs,
        Arc::new(move |t, seq| {
            let target = &targets[t % targets.len()];
            let req = match write {
                Write::Variable => client
                    .put(format!("{target}/v1/var/w{t}-{seq}"))
                    .body(json!({ "Items": { "v": v } }).to_string()),
                Write::Job => client
                    .post(format!("{target}/v1/jobs"))
                    .body(job(&format!("w{t}-{seq}"), &v).to_string()),
            };
            req.header("Content-Type", "application/json")
                .send()
                .is_ok_and(|r| r.status().is_success())
        }),
    );
    drop(servers);
    rate
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

struct Etcd(Vec<Child>);

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn etcd_throughput(dir: &Path, secs: u64) -> Option<f64> {
    if Command::new("etcd").arg("--version").output().is_err() {
        println!(
            "etcd comparison skipped: no `etcd` binary on PATH (Debian: apt-get install etcd-server)"
        );
        return None;
    }
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("e{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut children = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let log = std::fs::File::create(dir.join(format!("etcd{i}.log"))).unwrap();
        let child = Command::new("etcd")
            .args([
                "--name",
                &format!("e{i}"),
                "--data-dir",
                dir.join(format!("etcd{i}")).to_str().unwrap(),
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start etcd");
        children.push(child);
    }
    let _etcd = Etcd(children);
    let targets: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("http://127.0.0.1:{c}"))
        .collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    wait_for(
        "the etcd cluster to accept writes",
        Duration::from_secs(60),
        || {
            client
                .post(format!("{}/v3/kv/put", targets[0]))
                .body(json!({ "key": b64(b"ready"), "value": b64(b"1") }).to_string())
                .send()
                .ok()
                .filter(|r| r.status().is_success())
        },
    );
    let v = b64(value().as_bytes());
    Some(drive(
        IN_FLIGHT,
        secs,
        Arc::new(move |t, seq| {
            let body =
                json!({ "key": b64(format!("w{t}-{seq}").as_bytes()), "value": v }).to_string();
            client
                .post(format!("{}/v3/kv/put", targets[t % 3]))
                .body(body)
                .send()
                .is_ok_and(|r| r.status().is_success())
        }),
    ))
}

fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let secs = env_num("BENCH_SECS", 10);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "failover" {
        let fo = tmp.path().join("failover");
        std::fs::create_dir_all(&fo).unwrap();
        failover(&fo);
    }
    if only == "failover" {
        return;
    }
    let run = |name: &str, n: u8, write: Write| {
        let d = tmp.path().join(name);
        std::fs::create_dir_all(&d).unwrap();
        drover_throughput(&d, secs, n, write)
    };
    if std::env::var("BENCH_SINGLE").is_ok() {
        let one = run("drover1", 1, Write::Variable);
        println!("BENCH cluster_drover_1server_writes_per_s {one:.0} writes/s");
    }
    let jobs = run("drover-jobs", 3, Write::Job);
    println!("BENCH cluster_drover_job_registrations_per_s {jobs:.0} writes/s");
    let drover = run("drover", 3, Write::Variable);
    println!("BENCH cluster_drover_writes_per_s {drover:.0} writes/s");
    let et = tmp.path().join("etcd");
    std::fs::create_dir_all(&et).unwrap();
    if let Some(etcd) = etcd_throughput(&et, secs) {
        println!("BENCH cluster_etcd_writes_per_s {etcd:.0} writes/s");
        println!("BENCH cluster_drover_to_etcd_ratio {:.2} x", drover / etcd);
    }
}
