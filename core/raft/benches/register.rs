//! Job registrations committed per second through Raft on one server, fsync on, with 64
//! writes in flight; and how many fsyncs each commit cost (group commit makes it < 1).
//!
//! `cargo bench -p drover-raft --bench register`

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use drover_raft::{RaftNode, RaftNodeConfig};
use drover_state::Command;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WRITES: usize = 20_000;
const IN_FLIGHT: usize = 64;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run());
}

async fn run() {
    let dir =
        tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into())).unwrap();
    let src = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/bench/web-60.hcl"
    ))
    .unwrap();
    let job = drover_jobspec::parse(&src, "web-60.hcl").unwrap().job;
    let node = RaftNode::open(RaftNodeConfig {
        data_dir: dir.path().to_path_buf(),
        advertise_http: String::new(),
        advertise_rpc: "127.0.0.1:1".into(),
        name: "bench".into(),
        join: Default::default(),
        snapshot_threshold: RaftNodeConfig::DEFAULT_SNAPSHOT_THRESHOLD,
        trailing_logs: RaftNodeConfig::DEFAULT_TRAILING_LOGS,
    })
    .await
    .unwrap();
    node.raft()
        .wait(None)
        .state(openraft::ServerState::Leader, "leader")
        .await
        .unwrap();
    let node = Arc::new(node);
    let syncs0 = node.log().counters.syncs.load(Relaxed);
    let appends0 = node.log().counters.appends.load(Relaxed);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (node, next, job) = (node.clone(), next.clone(), job.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Relaxed);
                if i >= WRITES {
                    return lat;
                }
                let mut j = job.clone();
                j.id = format!("web-{i}");
                let t = Instant::now();
                node.write(Command::JobRegister {
                    job: Box::new(j),
                    eval: None,
                })
                .await
                .unwrap();
                lat.push(t.elapsed().as_micros() as u64);
            }
        }));
    }
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let syncs = node.log().counters.syncs.load(Relaxed) - syncs0;
    let appends = node.log().counters.appends.load(Relaxed) - appends0;
    println!(
        "BENCH raft_job_registrations_per_s {:.0} writes/s",
        WRITES as f64 / secs
    );
    println!("BENCH raft_job_registration_p50 {} us", lat[lat.len() / 2]);
    println!(
        "BENCH raft_job_registration_p99 {} us",
        lat[lat.len() * 99 / 100]
    );
    println!(
        "BENCH raft_fsyncs_per_commit {:.3} fsyncs/commit",
        syncs as f64 / WRITES as f64
    );
    println!(
        "BENCH raft_appends_per_fsync {:.1} appends/fsync",
        appends as f64 / syncs.max(1) as f64
    );
    node.shutdown().await;
}
