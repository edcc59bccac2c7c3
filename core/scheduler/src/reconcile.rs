//! Reconciliation: what a job's groups need against what the cluster runs.

use std::collections::BTreeMap;

use drover_model::{
    Allocation, ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, JobType, NodeStatus,
    PlacementFailure, RescheduleEvent, TaskGroup, UnixNanos,
};
use drover_state::{AllocStop, StateSnapshot};

use crate::place::{Placer, Request};
use crate::{Options, Plan, per_node};

pub(crate) struct Scheduler<'a> {
    snap: &'a StateSnapshot,
    eval: &'a Evaluation,
    job: Option<&'a Job>,
    now: UnixNanos,
    placer: Placer<'a>,
    plan: Plan,
    /// The earliest time a failed allocation may be rescheduled, for the delayed evaluation.
    next_reschedule: Option<UnixNanos>,
    /// New placements this evaluation may still make.
    budget: usize,
    /// Placements were left for a follow-up evaluation (the budget ran out).
    truncated: bool,
}

fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl<'a> Scheduler<'a> {
    pub fn new(snap: &'a StateSnapshot, eval: &'a Evaluation, opts: &Options) -> Self {
        let job = snap.job(&eval.namespace, &eval.job_id);
        Scheduler {
            snap,
            eval,
            job,
            now: opts.now,
            placer: Placer::new(snap, job, seed(&eval.id), opts),
            plan: Plan {
                eval_id: eval.id.clone(),
                snapshot_index: snap.index(),
                ..Default::default()
            },
            next_reschedule: None,
            budget: opts.max_placements,
            truncated: false,
        }
    }

    fn stop(&mut self, a: &Allocation, description: &str, client_status: Option<ClientStatus>) {
        self.placer.release(self.job, a);
        self.plan.stops.push(AllocStop {
            alloc_id: a.id.clone(),
            description: description.to_string(),
            client_status,
        });
    }

    pub fn run(&mut self) {
        let snap = self.snap;
        let existing: Vec<&Allocation> = snap
            .allocs_by_job(&self.eval.namespace, &self.eval.job_id)
            .filter(|a| a.desired_status == DesiredStatus::Run)
            .collect();
        let Some(job) = self.job.filter(|j| !j.stop) else {
            for a in existing {
                if !a.client_status.is_terminal() {
                    self.stop(a, "alloc not needed since job was stopped", None);
                }
            }
            return;
        };
        if job.is_parent() {
            // A periodic or parameterized parent is never placed; only its children are.
            for a in existing {
                if !a.client_status.is_terminal() {
                    self.stop(
                        a,
                        "alloc not needed: the job is a periodic or parameterized parent",
                        None,
                    );
                }
            }
            return;
        }
        for a in &existing {
            if job.group(&a.task_group).is_none() && !a.client_status.is_terminal() {
                self.stop(
                    a,
                    "alloc not needed: its task group was removed from the job",
                    None,
                );
            }
        }
        // Allocations on down or vanished nodes are lost, whatever the job type.
        let mut live: Vec<&Allocation> = Vec::new();
        let mut lost: Vec<&Allocation> = Vec::new();
        for a in existing {
            let down = snap
                .node(&a.node_id)
                .is_none_or(|n| n.status == NodeStatus::Down);
            if down && !a.client_status.is_terminal() {
                self.stop(
                    a,
                    "alloc is lost since its node is down",
                    Some(ClientStatus::Lost),
                );
                lost.push(a);
            } else {
                live.push(a);
            }
        }
        for group in &job.groups {
            let allocs: Vec<&Allocation> = live
                .iter()
                .copied()
                .filter(|a| a.task_group == group.name)
                .collect();
            if per_node(job.job_type) {
                self.per_node_group(job, group, &allocs);
            } else {
                let lost: Vec<&Allocation> = lost
                    .iter()
                    .copied()
                    .filter(|a| a.task_group == group.name)
                    .collect();
                self.counted_group(job, group, &allocs, &lost);
            }
        }
    }

    /// Same spec (count aside): updated in place; otherwise replaced.
    fn update(&mut self, job: &Job, group: &TaskGroup, a: &Allocation) -> bool {
        if a.job_version == job.version || a.client_status.is_terminal() {
            return true;
        }
        let old_group = self
            .snap
            .job_version(&job.namespace, &job.id, a.job_version)
            .and_then(|j| j.group(&group.name));
        let same = old_group.is_some_and(|g| {
            TaskGroup {
                count: group.count,
                ..g.clone()
            } == *group
        });
        if same {
            let mut updated = a.clone();
            updated.job_version = job.version;
            updated.eval_id = self.eval.id.clone();
            self.plan.allocs.push(updated);
            true
        } else {
            self.stop(a, "alloc is being updated due to job update", None);
            false
        }
    }

    fn place(
        &mut self,
        job: &'a Job,
        group: &'a TaskGroup,
        index: u32,
        previous: Option<&'a Allocation>,
        reschedule: Vec<RescheduleEvent>,
        only: Option<&'a drover_model::Node>,
    ) -> Option<PlacementFailure> {
        let req = Request {
            job,
            group,
            index,
            eval_id: self.eval.id.clone(),
            previous,
            reschedule,
            only,
        };
        match self.placer.place(req) {
            Ok(a) => {
                self.plan.allocs.push(a);
                None
            }
            Err(f) => Some(f),
        }
    }

    fn fail(&mut self, group: &str, f: PlacementFailure) {
        match self.plan.failed.get_mut(group) {
            Some(existing) => existing.coalesced_failures += 1,
            None => {
                self.plan.failed.insert(group.to_string(), f);
            }
        }
    }

    /// A failed allocation: reschedule it now, later (delayed evaluation), or never.
    /// Returns the reschedule event when it should be replaced now.
    fn reschedule(
        &mut self,
        job: &Job,
        group: &TaskGroup,
        a: &Allocation,
    ) -> Option<RescheduleEvent> {
        if !a.next_allocation.is_empty() {
            return None;
        }
        let policy = group.reschedule_policy(job.job_type);
        let recent = a
            .reschedule_tracker
            .iter()
            .filter(|e| {
                policy.unlimited || self.now - e.reschedule_time < policy.interval.as_nanos() as i64
            })
            .count() as u32;
        if !policy.unlimited && recent >= policy.attempts {
            return None;
        }
        let delay = policy.delay_for(a.reschedule_tracker.len() as u32 + 1);
        let ready_at = a.failed_at() + delay.as_nanos() as i64;
        if self.now < ready_at {
            self.next_reschedule = Some(self.next_reschedule.map_or(ready_at, |t| t.min(ready_at)));
            return None;
        }
        Some(RescheduleEvent {
            reschedule_time: self.now,
            prev_alloc_id: a.id.clone(),
            prev_node_id: a.node_id.clone(),
            delay: delay.as_nanos() as i64,
        })
    }

    /// Service and batch: `count` allocations, indexed.
    /// `lost`: the group's allocations this plan marks lost, which their replacements follow.
    fn counted_group(
        &mut self,
        job: &'a Job,
        group: &'a TaskGroup,
        allocs: &[&'a Allocation],
        lost: &[&'a Allocation],
    ) {
        let mut by_index: BTreeMap<u32, Vec<&'a Allocation>> = BTreeMap::new();
        for a in allocs {
            by_index.entry(a.index()).or_default().push(a);
        }
        let mut to_place: Vec<(u32, Option<&'a Allocation>, Vec<RescheduleEvent>)> = Vec::new();
        for (&index, list) in &by_index {
            let mut running: Vec<&Allocation> = list
                .iter()
                .copied()
                .filter(|a| !a.client_status.is_terminal())
                .collect();
            running.sort_by_key(|a| (a.create_index, a.id.clone()));
            if index >= group.count {
                for a in running {
                    self.stop(a, "alloc not needed due to job update", None);
                }
                continue;
            }
            if let Some((first, dups)) = running.split_first() {
                for a in dups {
                    self.stop(a, "alloc not needed: duplicate index", None);
                }
                if !self.update(job, group, first) {
                    to_place.push((index, Some(*first), Vec::new()));
                }
                continue;
            }
            // Only terminal allocations hold this index.
            let done = list.iter().any(|a| {
                a.client_status == ClientStatus::Complete && job.job_type.runs_to_completion()
            });
            if done {
                continue;
            }
            let Some(failed) = list
                .iter()
                .copied()
                .filter(|a| a.client_status == ClientStatus::Failed)
                .max_by_key(|a| a.create_index)
            else {
                // complete service allocations (stopped tasks) and lost ones are replaced.
                to_place.push((index, None, Vec::new()));
                continue;
            };
            if let Some(event) = self.reschedule(job, group, failed) {
                self.stop(failed, "alloc was rescheduled because it failed", None);
                let mut tracker = failed.reschedule_tracker.clone();
                tracker.push(event);
                to_place.push((index, Some(failed), tracker));
            }
        }
        // Never more candidates than the evaluation may place: a huge count costs no more
        // than the budget (the rest waits for the follow-up evaluation).
        let mut more = false;
        for i in 0..group.count {
            if by_index.contains_key(&i) {
                continue;
            }
            if to_place.len() >= self.budget {
                more = true;
                break;
            }
            let previous = lost.iter().copied().find(|a| a.index() == i);
            to_place.push((i, previous, Vec::new()));
        }
        to_place.sort_by_key(|(i, _, _)| *i);
        if to_place.len() > self.budget {
            to_place.truncate(self.budget);
            more = true;
        }
        self.truncated |= more;
        self.budget -= to_place.len();
        let mut failed = false;
        for (index, previous, tracker) in to_place {
            if failed {
                self.plan
                    .failed
                    .get_mut(&group.name)
                    .expect("failure recorded")
                    .coalesced_failures += 1;
                continue;
            }
            if let Some(f) = self.place(job, group, index, previous, tracker, None) {
                self.fail(&group.name, f);
                failed = true;
            }
        }
    }

    /// System and sysbatch: one allocation on every feasible node.
    fn per_node_group(&mut self, job: &'a Job, group: &'a TaskGroup, allocs: &[&'a Allocation]) {
        let mut by_node: BTreeMap<&str, Vec<&'a Allocation>> = BTreeMap::new();
        for a in allocs {
            by_node.entry(a.node_id.as_str()).or_default().push(a);
        }
        for node in self.placer.all_nodes() {
            let here = by_node.remove(node.id.as_str()).unwrap_or_default();
            let running: Vec<&Allocation> = here
                .iter()
                .copied()
                .filter(|a| !a.client_status.is_terminal())
                .collect();
            let reason = self.placer.feasible_on(job, group, node);
            if reason.is_some() {
                for a in running {
                    self.stop(a, "alloc not needed: the node is no longer eligible", None);
                }
                continue;
            }
            if let Some((first, dups)) = running.split_first() {
                for a in dups {
                    self.stop(a, "alloc not needed: duplicate on the node", None);
                }
                if !self.update(job, group, first)
                    && let Some(f) = self.place(job, group, 0, Some(first), Vec::new(), Some(node))
                {
                    self.fail(&group.name, f);
                }
                continue;
            }
            let finished = here.iter().any(|a| {
                a.client_status == ClientStatus::Complete && job.job_type == JobType::Sysbatch
            });
            if finished {
                continue;
            }
            // Failed system allocations run again on the next evaluation of the node.
            let previous = here
                .iter()
                .copied()
                .filter(|a| a.client_status == ClientStatus::Failed)
                .max_by_key(|a| a.create_index);
            if let Some(p) = previous {
                if job.job_type == JobType::Sysbatch {
                    continue; // a failed sysbatch run is not repeated
                }
                self.stop(p, "alloc is being replaced on its node", None);
            }
            if let Some(f) = self.place(job, group, 0, previous, Vec::new(), Some(node)) {
                self.fail(&group.name, f);
            }
        }
        // Allocations on nodes that no longer exist were handled as lost.
    }

    pub fn finish(mut self) -> Plan {
        // What could not be placed waits in a blocked evaluation until capacity changes. It
        // replaces older blocked evaluations of the job, which also end when nothing is left
        // to place (the job was stopped, purged, or placed in full): a blocked evaluation
        // left behind would keep the job from ever being garbage-collected.
        let live = self.job.filter(|j| !j.stop);
        let blocks = live.is_some_and(|j| !self.plan.failed.is_empty() && !per_node(j.job_type));
        let why = if blocks {
            format!(
                "superseded by a newer blocked evaluation from {}",
                self.eval.id
            )
        } else {
            format!("nothing left to place after evaluation {}", self.eval.id)
        };
        for old in self
            .snap
            .evals_by_job(&self.eval.namespace, &self.eval.job_id)
            .filter(|e| e.status == EvalStatus::Blocked && e.id != self.eval.id)
        {
            let mut c = old.clone();
            c.status = EvalStatus::Canceled;
            c.status_description = why.clone();
            self.plan.new_evals.push(c);
        }
        let Some(job) = live else {
            return self.plan;
        };
        if let Some(at) = self.next_reschedule {
            let mut e = Evaluation::new(self.placer.new_id(), job, "alloc-failure");
            e.wait_until = at;
            e.previous_eval = self.eval.id.clone();
            self.plan.new_evals.push(e);
        }
        if self.truncated && !blocks {
            // The placement budget ran out: a follow-up evaluation places the rest.
            let mut e = Evaluation::new(self.placer.new_id(), job, "queued-allocs");
            e.previous_eval = self.eval.id.clone();
            e.status_description =
                "placing the allocations the previous evaluation's placement limit left".into();
            self.plan.new_evals.push(e);
        }
        if blocks {
            let mut b = Evaluation::new(self.placer.new_id(), job, "queued-allocs");
            b.status = EvalStatus::Blocked;
            b.previous_eval = self.eval.id.clone();
            b.status_description = "waiting for capacity to place the remaining allocations".into();
            self.plan.new_evals.push(b);
        }
        self.plan
    }
}
