//! Leadership: the leader's duties start after a linearizable read barrier (so the state
//! they read includes everything committed by earlier leaders) and stop when it steps down.

use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::task::JoinHandle;

use crate::Server;
use crate::broker::Broker;

pub async fn watch_leadership(server: Server) {
    let raft = server.raft().raft.clone();
    let mut metrics = raft.metrics();
    let mut duties: Vec<JoinHandle<()>> = Vec::new();
    loop {
        let leading = metrics.borrow().state == ServerState::Leader;
        if leading && duties.is_empty() {
            match raft.ensure_linearizable().await {
                Ok(_) => {
                    tracing::info!(
                        server_id = server.raft().id,
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
    let feeder = {
        let (server, broker) = (server.clone(), broker.clone());
        tokio::spawn(async move {
            let mut changed = server.store().subscribe();
            loop {
                broker.enqueue_pending(&server.store().snapshot());
                // Re-scan at least every second: a nacked evaluation is redelivered even when
                // nothing else changes.
                let wait = tokio::time::timeout(Duration::from_secs(1), changed.changed()).await;
                if matches!(wait, Ok(Err(_))) {
                    break;
                }
            }
        })
    };
    let worker = tokio::spawn(crate::worker::run(server.clone(), broker));
    let heartbeats = tokio::spawn(crate::heartbeat::monitor(server.clone()));
    vec![feeder, worker, heartbeats]
}
