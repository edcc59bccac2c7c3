//! The plan applier: re-checks each node's part of a plan against the latest committed state
//! with the scheduler's own fit check, and commits what still fits.
//!
//! Plans are applied one at a time, each awaited until committed, so "the latest state" is
//! the committed state plus nothing in flight.

use std::collections::BTreeMap;

use drover_model::{Allocation, Evaluation};
use drover_scheduler::{Plan, fit};
use drover_state::{Command, PlanResult};

use crate::Server;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutcome {
    Committed,
    /// Part of the plan no longer fits: refresh the snapshot to at least this index and retry.
    Refused {
        refresh_index: u64,
    },
    Error(String),
}

pub async fn apply_plan(server: &Server, plan: Plan, eval: Evaluation) -> PlanOutcome {
    let _serial = server.inner.applier.lock().await;
    let snap = server.store().snapshot();
    if let Some(node_id) = first_misfit(&snap, &plan) {
        tracing::info!(node_id, "plan no longer fits a node");
        return PlanOutcome::Refused {
            refresh_index: snap.index(),
        };
    }
    let result = PlanResult {
        allocs: plan.allocs,
        stops: plan.stops,
        eval: Some(eval),
        new_evals: plan.new_evals,
    };
    match server.raft().write(Command::PlanApply(result)).await {
        Ok(_) => PlanOutcome::Committed,
        Err(e) => PlanOutcome::Error(e.to_string()),
    }
}

/// The first node whose allocations, with the plan applied, would not fit.
pub fn first_misfit(snap: &drover_state::StateSnapshot, plan: &Plan) -> Option<String> {
    let stopping: std::collections::BTreeSet<&str> =
        plan.stops.iter().map(|s| s.alloc_id.as_str()).collect();
    let mut by_node: BTreeMap<&str, Vec<&Allocation>> = BTreeMap::new();
    for a in &plan.allocs {
        by_node.entry(a.node_id.as_str()).or_default().push(a);
    }
    for (node_id, new) in by_node {
        let Some(node) = snap.node(node_id) else {
            return Some(node_id.to_string());
        };
        if !node.is_ready() {
            return Some(node_id.to_string());
        }
        let replaced: std::collections::BTreeSet<&str> =
            new.iter().map(|a| a.id.as_str()).collect();
        let existing = snap
            .allocs_by_node(node_id)
            .filter(|a| !stopping.contains(a.id.as_str()) && !replaced.contains(a.id.as_str()));
        if fit(node, existing.chain(new.iter().copied())).is_err() {
            return Some(node_id.to_string());
        }
    }
    None
}
