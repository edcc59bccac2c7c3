//! Heartbeat timers, kept in the leader's memory: only a node's status change (down, ready)
//! goes through Raft. A new leader re-arms every ready node's timer with a full TTL.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use drover_model::{Evaluation, NodeStatus};
use drover_state::Command;
use tokio::time::Instant;

use crate::{Server, new_id};

pub struct Heartbeats {
    ttl: Duration,
    deadlines: Mutex<BTreeMap<String, Instant>>,
}

impl Heartbeats {
    pub fn new(ttl: Duration) -> Self {
        Heartbeats {
            ttl,
            deadlines: Mutex::default(),
        }
    }

    pub fn beat(&self, node_id: &str) {
        self.deadlines
            .lock()
            .expect("heartbeat lock")
            .insert(node_id.to_string(), Instant::now() + self.ttl);
    }

    fn expired(&self) -> Vec<String> {
        let now = Instant::now();
        let mut d = self.deadlines.lock().expect("heartbeat lock");
        let gone: Vec<String> = d
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for n in &gone {
            d.remove(n);
        }
        gone
    }
}

/// Runs on the leader: arms timers for every ready node, then marks nodes whose timers
/// expire as down, with an evaluation for each job that had allocations there.
pub async fn monitor(server: Server) {
    let hb = &server.inner.heartbeats;
    for n in server.store().snapshot().nodes() {
        if n.status == NodeStatus::Ready {
            hb.beat(&n.id);
        }
    }
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        for node_id in hb.expired() {
            let snap = server.store().snapshot();
            let Some(node) = snap.node(&node_id) else {
                continue;
            };
            if node.status != NodeStatus::Ready {
                continue;
            }
            let mut jobs: BTreeMap<(String, String), Evaluation> = BTreeMap::new();
            for a in snap.allocs_by_node(&node_id).filter(|a| a.is_active()) {
                if let Some(job) = snap.job(&a.namespace, &a.job_id) {
                    jobs.entry((a.namespace.clone(), a.job_id.clone()))
                        .or_insert_with(|| {
                            let mut e = Evaluation::new(new_id(), job, "node-update");
                            e.node_id = node_id.clone();
                            e
                        });
                }
            }
            tracing::warn!(node_id, "node missed its heartbeats: marking it down");
            let cmd = Command::NodeStatus {
                node_id: node_id.clone(),
                status: NodeStatus::Down,
                description: "node missed its heartbeats".into(),
                evals: jobs.into_values().collect(),
            };
            if let Err(e) = server.raft().write(cmd).await {
                tracing::warn!(node_id, error = %e, "could not mark node down; will retry");
                hb.beat(&node_id);
            }
        }
    }
}
