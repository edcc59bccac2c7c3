//! The cost of mTLS on the RPC port, in one run on real `drover` servers (loopback):
//!
//! - committed writes per second on a 3-server cluster with `tls { rpc = false }` and then
//!   with `tls { rpc = true }` (files made by `drover tls`): 64 writes in flight, a 100-byte
//!   variable each (`PUT /v1/var/<key>`, plain HTTP in both runs), spread over the three
//!   servers, so followers forward theirs to the leader over RPC and the leader replicates
//!   over RPC;
//! - the RPC round trip: sequential Raft `Cluster(Status)` calls on one open channel to a
//!   server, p50, plaintext and then mTLS (with a server certificate).
//!
//! Target: mTLS at most 10 % slower. `cargo build --release --bins && cargo bench -p
//! drover-tests --bench tls`. Environment: BENCH_SECS (default 10), BENCH_CALLS (default
//! 2000).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use drover_proto::raft::RaftMessage;
use drover_proto::raft::raft_client::RaftClient;
use drover_tests::*;
use serde_json::json;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const IN_FLIGHT: usize = 64;

/// Three servers; with `pki`, on mTLS with its server certificate.
fn cluster(dir: &Path, pki: Option<&Path>) -> Vec<Agent> {
    let tls = pki.map_or(String::new(), |p| {
        let f = |n: &str| p.join(n).display().to_string();
        format!(
            "tls {{\n  rpc = true\n  ca_file = \"{}\"\n  cert_file = \"{}\"\n  key_file = \"{}\"\n}}\n",
            f("nomad-agent-ca.pem"),
            f("global-server-nomad.pem"),
            f("global-server-nomad-key.pem")
        )
    });
    let servers = drover_tests::servers::start_cluster(
        dir,
        3,
        drover_tests::servers::Extra {
            server: "",
            top: &tls,
        },
    );
    for s in &servers {
        wait_for("three voters and a leader", Duration::from_secs(60), || {
            let c = s.get("/v1/operator/raft/configuration")?;
            let peers = c["Servers"].as_array()?;
            (peers.len() == 3 && peers.iter().any(|p| p["Leader"] == true)).then_some(())
        });
    }
    servers
}

fn writes_per_s(servers: &[Agent], secs: u64) -> f64 {
    let targets: Vec<String> = servers.iter().map(|a| a.address()).collect();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .unwrap();
    let value = "v".repeat(100);
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..IN_FLIGHT)
        .map(|t| {
            let (done, stop) = (done.clone(), stop.clone());
            let (client, targets, value) = (client.clone(), targets.clone(), value.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ok = client
                        .put(format!("{}/v1/var/w{t}-{seq}", targets[t % targets.len()]))
                        .header("Content-Type", "application/json")
                        .body(json!({ "Items": { "v": value } }).to_string())
                        .send()
                        .is_ok_and(|r| r.status().is_success());
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    seq += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let first = done.load(Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let rate = (done.load(Ordering::Relaxed) - first) as f64 / start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        let _ = h.join();
    }
    rate
}

/// p50 of `calls` sequential status calls on one channel (after 100 to warm up).
fn rpc_round_trip(addr: &str, pki: Option<&Path>, calls: u64) -> Duration {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dialer = match pki {
            None => drover_tls::Dialer::plaintext(),
            Some(p) => {
                let id = drover_tls::Identity::from_files(
                    &p.join("nomad-agent-ca.pem"),
                    &p.join("global-server-nomad.pem"),
                    &p.join("global-server-nomad-key.pem"),
                    "global",
                )
                .unwrap();
                drover_tls::Dialer::tls(id.client_config().unwrap())
            }
        };
        let ep = dialer.endpoint(addr).unwrap().tcp_nodelay(true);
        let mut c = RaftClient::new(dialer.connect(ep).await.unwrap());
        let mut samples = Vec::with_capacity(calls as usize);
        for i in 0..calls + 100 {
            let t = Instant::now();
            c.cluster(RaftMessage {
                json: br#""Status""#.to_vec(),
                error: String::new(),
                encoding_version: 2,
            })
            .await
            .unwrap();
            if i >= 100 {
                samples.push(t.elapsed());
            }
        }
        percentile(&mut samples, 0.5)
    })
}

fn main() {
    let secs = env_num("BENCH_SECS", 10);
    let calls = env_num("BENCH_CALLS", 2000);
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    std::fs::create_dir(&pki).unwrap();
    let _ = drover_ok(&pki, &["tls", "ca", "create"]);
    let _ = drover_ok(&pki, &["tls", "cert", "create", "-server"]);

    let mut rates = Vec::new();
    let mut trips = Vec::new();
    for (name, tls) in [("plain", None), ("mtls", Some(pki.as_path()))] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let servers = cluster(&dir, tls);
        let rate = writes_per_s(&servers, secs);
        let trip = rpc_round_trip(&servers[0].rpc_addr(), tls, calls);
        println!("BENCH tls_raft_writes_per_s_{name} {rate:.0} writes/s");
        println!(
            "BENCH tls_rpc_round_trip_p50_{name} {} us",
            trip.as_micros()
        );
        rates.push(rate);
        trips.push(trip.as_secs_f64());
        drop(servers);
    }
    println!(
        "BENCH tls_raft_writes_mtls_to_plain {:.2} x",
        rates[1] / rates[0].max(1.0)
    );
    println!(
        "BENCH tls_rpc_round_trip_mtls_to_plain {:.2} x",
        trips[1] / trips[0].max(1e-9)
    );
}
