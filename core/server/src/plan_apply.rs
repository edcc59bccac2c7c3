//! The plan applier: re-checks each node's part of a plan against the committed state plus
//! the plans it has accepted that are still committing, with the scheduler's own fit check,
//! and commits what still fits.
//!
//! Checks are serialized; commits are not: an accepted plan joins the in-flight overlay and
//! is written while the next plan is checked, so concurrent plans share Raft entries (the
//! write batcher) and fsyncs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use drover_model::{Allocation, Evaluation};
use drover_scheduler::{Plan, fit};
use drover_state::{Command, PlanResult, StateSnapshot};

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

/// An accepted plan's new allocations and the ids of those it stops.
type Accepted = (Vec<Allocation>, Vec<String>);

/// Plans accepted but not yet applied to the state.
#[derive(Default)]
pub struct InFlight {
    plans: Mutex<BTreeMap<u64, Accepted>>,
    next: std::sync::atomic::AtomicU64,
}

impl InFlight {
    fn overlay(&self) -> (Vec<Allocation>, BTreeSet<String>) {
        let plans = self.plans.lock().expect("in-flight lock");
        let allocs = plans
            .values()
            .flat_map(|(a, _)| a.iter().cloned())
            .collect();
        let stops = plans
            .values()
            .flat_map(|(_, s)| s.iter().cloned())
            .collect();
        (allocs, stops)
    }
}

pub async fn apply_plan(server: &Server, plan: Plan, eval: Evaluation) -> PlanOutcome {
    let inflight = &server.inner.inflight;
    let ticket = {
        let _serial = server.inner.applier.lock().await;
        let snap = server.store().snapshot();
        let (pending, pending_stops) = inflight.overlay();
        if let Some(node_id) = first_misfit(&snap, &plan, &pending, &pending_stops) {
            tracing::info!(node_id, "plan no longer fits a node");
            return PlanOutcome::Refused {
                refresh_index: snap.index(),
            };
        }
        let ticket = inflight
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stops = plan.stops.iter().map(|s| s.alloc_id.clone()).collect();
        inflight
            .plans
            .lock()
            .expect("in-flight lock")
            .insert(ticket, (plan.allocs.clone(), stops));
        ticket
    };
    let result = PlanResult {
        allocs: plan.allocs,
        stops: plan.stops,
        eval: Some(eval),
        new_evals: plan.new_evals,
    };
    let outcome = match server.raft().write(Command::PlanApply(result)).await {
        Ok(_) => PlanOutcome::Committed,
        Err(e) => PlanOutcome::Error(e.to_string()),
    };
    inflight
        .plans
        .lock()
        .expect("in-flight lock")
        .remove(&ticket);
    outcome
}

/// The first node whose allocations — committed, in flight and this plan's, less what is
/// stopped — would not fit.
pub fn first_misfit(
    snap: &StateSnapshot,
    plan: &Plan,
    pending: &[Allocation],
    pending_stops: &BTreeSet<String>,
) -> Option<String> {
    let stopping: BTreeSet<&str> = plan
        .stops
        .iter()
        .map(|s| s.alloc_id.as_str())
        .chain(pending_stops.iter().map(String::as_str))
        .collect();
    let nodes: BTreeSet<&str> = plan.allocs.iter().map(|a| a.node_id.as_str()).collect();
    for node_id in nodes {
        let Some(node) = snap.node(node_id) else {
            return Some(node_id.to_string());
        };
        if !node.is_ready() {
            return Some(node_id.to_string());
        }
        // By id, so an allocation both committed and still listed in flight counts once, and
        // an in-place update replaces its old version.
        let mut on_node: BTreeMap<&str, &Allocation> = BTreeMap::new();
        for a in snap.allocs_by_node(node_id) {
            on_node.insert(&a.id, a);
        }
        for a in pending
            .iter()
            .chain(plan.allocs.iter())
            .filter(|a| a.node_id == node_id)
        {
            on_node.insert(&a.id, a);
        }
        let live = on_node
            .into_iter()
            .filter(|(id, _)| !stopping.contains(id))
            .map(|(_, a)| a);
        if fit(node, live).is_err() {
            return Some(node_id.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{DesiredStatus, Resources};
    use drover_state::{Entry, StateStore};

    fn alloc(id: &str, mem: u64) -> Allocation {
        Allocation {
            id: id.into(),
            node_id: "a".into(),
            desired_status: DesiredStatus::Run,
            task_resources: [(
                "t".to_string(),
                Resources {
                    memory_mb: mem,
                    ..Resources::ZERO
                },
            )]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn in_flight_plans_count_against_the_next_one() {
        let store = StateStore::new();
        let mut node = drover_fixtures::ready_node("a", 1000, 1000);
        node.resources.disk_mb = 0;
        store.apply(
            1,
            &Entry {
                time: 1,
                command: Command::NodeRegister { node },
            },
        );
        let snap = store.snapshot();
        let plan = Plan {
            allocs: vec![alloc("y", 600)],
            ..Default::default()
        };
        assert_eq!(first_misfit(&snap, &plan, &[], &BTreeSet::new()), None);
        // Another plan holding 600 MB on "a" is still committing: this one no longer fits.
        assert_eq!(
            first_misfit(&snap, &plan, &[alloc("x", 600)], &BTreeSet::new()).as_deref(),
            Some("a")
        );
        // ...unless that in-flight plan also stops what it displaced.
        let stopping: BTreeSet<String> = ["x".to_string()].into();
        assert_eq!(
            first_misfit(&snap, &plan, &[alloc("x", 600)], &stopping),
            None
        );
    }
}
