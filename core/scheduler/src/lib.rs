//! The pure scheduler: (read-only state snapshot, evaluation) -> plan.
//!
//! No I/O, no clock (the caller passes `now`), no hash-map iteration, and randomness only from
//! an RNG seeded by the evaluation id: the same snapshot and evaluation always give the same
//! plan. [`fit`] is the one resource check, used here and again by the server's plan applier.
//!
//! - [`reconcile`]: what each task group needs (service, batch, system, sysbatch): count
//!   changes, in-place versus destructive updates, stops, lost and failed allocations under the
//!   reschedule policy.
//! - [`place`]: where: feasibility (constraints, drivers, pools, volumes), then ranking by
//!   bin-packing or spread plus affinities and spreads, over a sampled set of candidates.
#![deny(clippy::disallowed_types)]

pub mod feasible;
pub mod fit;
mod place;
mod reconcile;

use std::collections::BTreeMap;

use drover_model::{EvalStatus, Evaluation, JobType, PlacementFailure, UnixNanos};
use drover_state::{AllocStop, StateSnapshot};

pub use fit::{Misfit, Usage, fit, fits};

/// What a scheduler decided for one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub eval_id: String,
    /// The index of the snapshot the plan was computed on.
    pub snapshot_index: u64,
    /// New allocations (and in-place updates).
    pub allocs: Vec<drover_model::Allocation>,
    pub stops: Vec<AllocStop>,
    /// Task groups whose allocations could not all be placed.
    pub failed: BTreeMap<String, PlacementFailure>,
    /// Follow-up evaluations: delayed reschedules, the blocked evaluation for what could not
    /// be placed, and older blocked evaluations it replaces (canceled).
    pub new_evals: Vec<Evaluation>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.allocs.is_empty() && self.stops.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("evaluation {0} has no job to schedule")]
    NoJob(String),
}

/// How nodes are ranked (the cluster's scheduler configuration, or the job's node pool's).
pub use drover_model::SchedulerAlgorithm as Algorithm;

/// What the scheduler needs besides the snapshot and the evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The leader's clock when the evaluation was dequeued.
    pub now: UnixNanos,
    pub algorithm: Algorithm,
    /// Candidates ranked per placement when no affinity or spread asks for more.
    pub candidates: usize,
    /// At most this many new placements per evaluation (over all groups); what is left is
    /// placed by a follow-up evaluation the plan carries. Bounds the work and the Raft entry
    /// one evaluation makes, whatever a job's `count`. The server sets its own limit; the
    /// default is unbounded.
    pub max_placements: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            now: 0,
            algorithm: Algorithm::Binpack,
            candidates: 2,
            max_placements: usize::MAX,
        }
    }
}

/// Glob match for datacenters: `*` matches any run of characters.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    fn m(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => (0..=s.len()).any(|i| m(rest, &s[i..])),
            Some((c, rest)) => s.first() == Some(c) && m(rest, &s[1..]),
        }
    }
    m(pattern.as_bytes(), s.as_bytes())
}

/// Computes the plan for `eval` against `snap`.
pub fn schedule(
    snap: &StateSnapshot,
    eval: &Evaluation,
    opts: &Options,
) -> Result<Plan, ScheduleError> {
    let mut s = reconcile::Scheduler::new(snap, eval, opts);
    s.run();
    Ok(s.finish())
}

/// The evaluation's status once its plan is committed.
pub fn finished_eval(eval: &Evaluation, plan: &Plan) -> Evaluation {
    let mut e = eval.clone();
    e.status = EvalStatus::Complete;
    e.failed_tg_allocs = plan.failed.clone();
    if let Some(b) = plan
        .new_evals
        .iter()
        .find(|n| n.status == EvalStatus::Blocked)
    {
        e.blocked_eval = b.id.clone();
    }
    e.status_description = if plan.failed.is_empty() {
        String::new()
    } else {
        let groups: Vec<&str> = plan.failed.keys().map(String::as_str).collect();
        format!("placement failed for group(s) {}", groups.join(", "))
    };
    e
}

/// Whether a job type places one allocation per eligible node.
pub fn per_node(t: JobType) -> bool {
    matches!(t, JobType::System | JobType::Sysbatch)
}

#[cfg(test)]
mod tests;
