//! Optimistic concurrency in the plan applier: two plans computed from one snapshot both
//! claim the last free slot of a node; exactly one commits, the other is refused with the
//! index to refresh to, and on retry it lands elsewhere.

use std::time::Duration;

use drover_model::{
    DriverInfo, Evaluation, Job, JobType, Node, NodeResources, NodeStatus, Resources, Task,
    TaskGroup,
};
use drover_raft::{RaftNode, RaftNodeConfig};
use drover_scheduler::{Options, finished_eval, schedule};
use drover_server::{PlanOutcome, Server, ServerConfig};
use drover_state::Command;

fn node(id: &str, mem: u64) -> Node {
    Node {
        id: id.into(),
        name: id.into(),
        datacenter: "dc1".into(),
        node_pool: "default".into(),
        status: NodeStatus::Ready,
        scheduling_eligibility: drover_model::SchedulingEligibility::Eligible,
        resources: NodeResources {
            cpu: 10_000,
            memory_mb: mem,
            disk_mb: 0,
        },
        drivers: [(
            "raw_exec".to_string(),
            DriverInfo {
                detected: true,
                healthy: true,
                ..Default::default()
            },
        )]
        .into(),
        ..Default::default()
    }
}

fn job(id: &str, mem: u64) -> Job {
    let mut t = Task::new("t", "raw_exec");
    t.resources = Resources {
        cpu: 10,
        memory_mb: mem,
        ..Resources::ZERO
    };
    let mut j = Job::new(id, JobType::Service);
    j.groups
        .push(TaskGroup::new("g", 1, JobType::Service, vec![t]));
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_plans_for_the_last_slot_one_commits_one_is_refused_and_retries_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
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
    let server = Server::start(raft.clone(), ServerConfig::default());
    // "a" is half full, so bin-packing prefers it; it has room for one more 500 MB allocation.
    for n in [node("a", 1000), node("b", 1000)] {
        raft.write(Command::NodeRegister { node: n }).await.unwrap();
    }
    let filler = job("filler", 500);
    raft.write(Command::JobRegister {
        job: Box::new(filler.clone()),
        eval: None,
    })
    .await
    .unwrap();
    let e0 = Evaluation::new("e0".into(), &filler, "job-register");
    let snap = server.store().snapshot();
    let p0 = schedule(&snap, &e0, &Options::default()).unwrap();
    assert_eq!(p0.allocs[0].node_id, "a");
    assert_eq!(
        server
            .submit_plan(p0.clone(), finished_eval(&e0, &p0))
            .await,
        PlanOutcome::Committed
    );

    // Two jobs, scheduled from the same snapshot: both want the last slot on "a".
    let (x, y) = (job("x", 500), job("y", 500));
    raft.write(Command::JobRegister {
        job: Box::new(x.clone()),
        eval: None,
    })
    .await
    .unwrap();
    raft.write(Command::JobRegister {
        job: Box::new(y.clone()),
        eval: None,
    })
    .await
    .unwrap();
    let snap = server.store().snapshot();
    let (ex, ey) = (
        Evaluation::new("ex".into(), &x, "job-register"),
        Evaluation::new("ey".into(), &y, "job-register"),
    );
    let px = schedule(&snap, &ex, &Options::default()).unwrap();
    let py = schedule(&snap, &ey, &Options::default()).unwrap();
    assert_eq!(px.allocs[0].node_id, "a");
    assert_eq!(py.allocs[0].node_id, "a");

    let first = server
        .submit_plan(px.clone(), finished_eval(&ex, &px))
        .await;
    let second = server
        .submit_plan(py.clone(), finished_eval(&ey, &py))
        .await;
    assert_eq!(first, PlanOutcome::Committed);
    let PlanOutcome::Refused { refresh_index } = second else {
        panic!("the second plan was not refused: {second:?}")
    };
    assert!(
        refresh_index >= snap.index(),
        "refresh index {refresh_index} is older than the plans' snapshot"
    );

    // The refused worker refreshes to that index and plans again: it lands on "b".
    let fresh = server
        .store()
        .wait_for(
            drover_state::Table::Allocs,
            refresh_index.saturating_sub(1),
            Duration::from_secs(5),
        )
        .await;
    let retry = schedule(&fresh, &ey, &Options::default()).unwrap();
    assert_eq!(retry.allocs[0].node_id, "b");
    assert_eq!(
        server
            .submit_plan(retry.clone(), finished_eval(&ey, &retry))
            .await,
        PlanOutcome::Committed
    );
    let snap = server.store().snapshot();
    for n in snap.nodes() {
        drover_scheduler::fit(n, snap.allocs_by_node(&n.id)).expect("no node over-committed");
    }
    assert_eq!(snap.allocs().filter(|a| a.is_active()).count(), 3);
    raft.shutdown().await;
}
