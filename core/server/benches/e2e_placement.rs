//! End-to-end placement throughput on one server: job registrations through Raft, the
//! evaluation broker, scheduler workers, the plan applier and Raft again (fsync on).
//!
//! `cargo bench -p drover-server --bench e2e_placement`

use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_model::{Constraint, Job, JobType, Resources, Task, TaskGroup};
use drover_raft::{RaftNode, RaftNodeConfig};
use drover_server::{Server, ServerConfig};
use drover_state::Command;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NODES: usize = 5000;
const JOBS: usize = 1000;
const COUNT: u32 = 10;

fn job(i: usize) -> Job {
    let mut t = Task::new("t", "raw_exec");
    t.resources = Resources {
        cpu: 100,
        memory_mb: 128,
        ..Resources::ZERO
    };
    let mut j = Job::new(format!("j{i}"), JobType::Service);
    j.constraints.push(Constraint {
        l_target: "${attr.kernel.name}".into(),
        operand: drover_model::ConstraintOperand::Equal,
        r_target: "linux".into(),
    });
    j.groups
        .push(TaskGroup::new("g", COUNT, JobType::Service, vec![t]));
    j
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or_else(|_| ".".into()))
            .unwrap();
        let raft = RaftNode::open(RaftNodeConfig {
            data_dir: dir.path().to_path_buf(),
            advertise_http: String::new(),
            advertise_rpc: "127.0.0.1:1".into(),
            name: "bench".into(),
            join: drover_raft::JoinConfig::default(),
            snapshot_threshold: RaftNodeConfig::DEFAULT_SNAPSHOT_THRESHOLD,
            trailing_logs: RaftNodeConfig::DEFAULT_TRAILING_LOGS,
        })
        .await
        .unwrap();
        raft.raft()
            .wait(Some(Duration::from_secs(10)))
            .state(openraft::ServerState::Leader, "leader")
            .await
            .unwrap();
        let server = Server::start(
            raft.clone(),
            ServerConfig {
                heartbeat_ttl: Duration::from_secs(3600),
                ..Default::default()
            },
        );
        let mut writes = Vec::new();
        for i in 0..NODES {
            let mut node = drover_fixtures::ready_node(
                format!("{i:08x}-0000-0000-0000-000000000000"),
                8000,
                16384,
            );
            node.name = format!("node-{i}");
            let r = raft.clone();
            writes.push(tokio::spawn(async move {
                r.write(Command::NodeRegister { node }).await.unwrap()
            }));
        }
        for w in writes {
            w.await.unwrap();
        }
        let server = Arc::new(server);
        let start = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        let mut regs = Vec::new();
        for i in 0..JOBS {
            let (server, sem) = (server.clone(), sem.clone());
            regs.push(tokio::spawn(async move {
                let _p = sem.acquire_owned().await.unwrap();
                server.register_job(job(i)).await.unwrap();
            }));
        }
        for r in regs {
            r.await.unwrap();
        }
        let registered = start.elapsed();
        let want = JOBS * COUNT as usize;
        loop {
            let placed = server.store().snapshot().allocs().count();
            if placed >= want {
                break;
            }
            if start.elapsed() > Duration::from_secs(600) {
                panic!("only {placed} of {want} placed after 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = start.elapsed().as_secs_f64();
        let c = &raft.log().counters;
        eprintln!(
            "registered in {registered:?}; {} fsyncs, {} appends",
            c.syncs.load(std::sync::atomic::Ordering::Relaxed),
            c.appends.load(std::sync::atomic::Ordering::Relaxed)
        );
        println!(
            "BENCH sched_e2e_placements_{NODES}nodes_{JOBS}jobs {:.0} placements/s",
            want as f64 / secs
        );
        raft.shutdown().await;
    });
}
