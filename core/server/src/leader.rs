//! Leadership: the leader's duties start after a linearizable read barrier (so the state
//! they read includes everything committed by earlier leaders) and stop when it steps down.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::task::JoinHandle;

use crate::Server;
use crate::broker::Broker;

pub async fn watch_leadership(server: Server) {
    let raft = server.raft().raft().clone();
    let mut metrics = raft.metrics();
    let mut duties: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let leading = metrics.borrow().state == ServerState::Leader;
        if leading && duties.is_empty() {
            match raft.ensure_linearizable().await {
                Ok(_) => {
                    tracing::info!(
                        server_id = server.raft().id(),
                        "leadership established: starting leader duties"
                    );
                    duties = start_duties(&server);
                }
                Err(e) => tracing::warn!(error = %e, "read barrier failed after election"),
            }
        } else if !leading && !duties.is_empty() {
            tracing::info!("lost leadership: stopping leader duties");
            for d in duties.drain(..) {
                d.abort();
            }
        }
        if metrics.changed().await.is_err() {
            break;
        }
    }
    for d in duties {
        d.abort();
    }
}

fn start_duties(server: &Server) -> Vec<JoinHandle<()>> {
    let broker = Arc::new(Broker::default());
    let feeder = tokio::spawn(feed(server.clone(), broker.clone()));
    let mut duties = vec![feeder];
    for _ in 0..server.config().workers.max(1) {
        duties.push(tokio::spawn(crate::worker::run(
            server.clone(),
            broker.clone(),
        )));
    }
    duties.push(tokio::spawn(crate::heartbeat::monitor(server.clone())));
    duties.push(tokio::spawn(crate::gc::run(server.clone())));
    duties.push(tokio::spawn(crate::acl::reap(server.clone())));
    duties.push(tokio::spawn(capacity_watch(server.clone())));
    if server.config().kek.is_some() {
        duties.push(tokio::spawn(crate::keyring::upkeep(server.clone())));
    }
    if let Some(after) = server.config().dead_server_cleanup {
        duties.push(tokio::spawn(drover_raft::cluster::cleanup_dead_servers(
            server.raft().clone(),
            after,
        )));
    }
    duties
}

/// Feeds the broker: every evaluation committed as pending, from the state's event stream,
/// and a rescan of the pending ones every second (so a nacked or delayed evaluation is
/// delivered even when nothing else changes) or when the stream lagged.
async fn feed(server: Server, broker: Arc<Broker>) {
    use drover_state::Payload;
    use tokio::sync::broadcast::error::RecvError;
    let store = server.store().clone();
    // Subscribed before the first scan, so nothing committed in between is missed.
    let (_, mut events) = store.subscribe_events(store.index());
    let mut rescan = tokio::time::interval(Duration::from_secs(1));
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    if let Payload::Evaluation(eval) = &e.payload {
                        broker.enqueue_all([&**eval]);
                    }
                }
                Err(RecvError::Lagged(_)) => broker.enqueue_pending(&store.snapshot()),
                Err(RecvError::Closed) => return,
            },
            _ = rescan.tick() => broker.enqueue_pending(&store.snapshot()),
        }
    }
}

/// Reacts to capacity changes: a node that becomes ready gets evaluations for the system
/// jobs, and blocked evaluations are retried when a node joins or an allocation ends.
async fn capacity_watch(server: Server) {
    use drover_model::{EvalStatus, Evaluation, JobType, NodeStatus};
    use drover_state::{Command, Payload};
    use tokio::sync::broadcast::error::RecvError;
    let store = server.store().clone();
    let (_, mut rx) = store.subscribe_events(store.index());
    loop {
        let mut freed = false;
        let mut ready_nodes: Vec<String> = Vec::new();
        let mut note = |r: Result<drover_state::Event, RecvError>| match r {
            Ok(e) => match &e.payload {
                Payload::Node(n) if n.status == NodeStatus::Ready => {
                    freed = true;
                    ready_nodes.push(n.id.clone());
                    true
                }
                Payload::Allocation(a) if a.is_terminal() => {
                    freed = true;
                    true
                }
                _ => true,
            },
            Err(RecvError::Lagged(_)) => {
                freed = true;
                true
            }
            Err(RecvError::Closed) => false,
        };
        if !note(rx.recv().await) {
            return;
        }
        // Let a burst of changes settle into one retry.
        tokio::time::sleep(Duration::from_millis(50)).await;
        loop {
            match rx.try_recv() {
                Ok(e) => {
                    note(Ok(e));
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                    note(Err(RecvError::Lagged(n)));
                }
                Err(_) => break,
            }
        }
        if !freed {
            continue;
        }
        let snap = store.snapshot();
        let mut evals: Vec<Evaluation> = Vec::new();
        for e in snap.evals().filter(|e| e.status == EvalStatus::Blocked) {
            let mut e = e.clone();
            e.status = EvalStatus::Pending;
            e.status_description = "capacity changed: retrying the blocked placements".into();
            evals.push(e);
        }
        ready_nodes.sort();
        ready_nodes.dedup();
        for node_id in &ready_nodes {
            for job in snap
                .jobs()
                .filter(|j| matches!(j.job_type, JobType::System | JobType::Sysbatch) && !j.stop)
            {
                let pending = snap
                    .evals_by_job(&job.namespace, &job.id)
                    .any(|e| e.status == EvalStatus::Pending);
                if !pending
                    && !evals
                        .iter()
                        .any(|e| e.job_id == job.id && e.namespace == job.namespace)
                {
                    let mut e = Evaluation::new(crate::new_id(), job, "node-update");
                    e.node_id = node_id.clone();
                    evals.push(e);
                }
            }
        }
        if !evals.is_empty()
            && let Err(e) = server.raft().write(Command::EvalUpsert { evals }).await
        {
            tracing::warn!(error = %e, "could not retry blocked evaluations");
        }
    }
}
