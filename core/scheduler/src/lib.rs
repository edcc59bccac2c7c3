//! The pure scheduler: (read-only state snapshot, evaluation) -> plan.
//!
//! No I/O, no clock, no hash-map iteration, and randomness only from an RNG seeded by the
//! evaluation id: the same snapshot and evaluation always give the same plan. [`fit`] is the
//! one resource check, used here and again by the server's plan applier.
#![deny(clippy::disallowed_types)]

use std::collections::BTreeMap;

use drover_model::{
    Allocation, ClientStatus, DesiredStatus, EvalStatus, Evaluation, Job, JobType, Node,
    NodeResources, NodeStatus, PlacementFailure, Resources, TaskGroup, format_uuid,
};
use drover_state::{AllocStop, StateSnapshot};
use rand::{Rng, SeedableRng, rngs::StdRng};

/// What a scheduler decided for one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub eval_id: String,
    /// The index of the snapshot the plan was computed on.
    pub snapshot_index: u64,
    /// New allocations (and in-place updates), by node.
    pub allocs: Vec<Allocation>,
    pub stops: Vec<AllocStop>,
    /// Task groups whose allocations could not all be placed.
    pub failed: BTreeMap<String, PlacementFailure>,
}

impl Plan {
    pub fn is_noop(&self) -> bool {
        self.allocs.is_empty() && self.stops.is_empty()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("evaluation {0} is for a {1} job: that scheduler is not implemented yet")]
    Unsupported(String, &'static str),
}

/// Why a node cannot take an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// Exhausted dimension ("cpu", "memory") with what was needed and what was free.
    Exhausted {
        dimension: &'static str,
        needed: u64,
        free: u64,
    },
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::Exhausted {
                dimension,
                needed,
                free,
            } => {
                let unit = if *dimension == "cpu" { "MHz" } else { "MB" };
                write!(f, "{dimension}: needs {needed} {unit}, {free} {unit} free")
            }
        }
    }
}

/// The fit check: do `allocs` (the node's active allocations, proposed ones included) fit
/// on `node`? Used by the scheduler and by the plan applier.
pub fn fit<'a>(
    node: &Node,
    allocs: impl IntoIterator<Item = &'a Allocation>,
) -> Result<NodeResources, Misfit> {
    fit_with(node, allocs, &Resources::ZERO)
}

/// [`fit`] with `extra` resources placed on top.
pub fn fit_with<'a>(
    node: &Node,
    allocs: impl IntoIterator<Item = &'a Allocation>,
    extra: &Resources,
) -> Result<NodeResources, Misfit> {
    let used = allocs
        .into_iter()
        .filter(|a| a.is_active())
        .fold(extra.clone(), |acc, a| acc.add(&a.resources()));
    let cap = node.allocatable();
    if used.cpu > cap.cpu {
        return Err(Misfit::Exhausted {
            dimension: "cpu",
            needed: used.cpu,
            free: cap.cpu,
        });
    }
    if used.memory_mb > cap.memory_mb {
        return Err(Misfit::Exhausted {
            dimension: "memory",
            needed: used.memory_mb,
            free: cap.memory_mb,
        });
    }
    Ok(NodeResources {
        cpu: cap.cpu - used.cpu,
        memory_mb: cap.memory_mb - used.memory_mb,
        disk_mb: cap.disk_mb,
    })
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
pub fn schedule(snap: &StateSnapshot, eval: &Evaluation) -> Result<Plan, ScheduleError> {
    match eval.job_type {
        JobType::Service | JobType::Batch => {}
        JobType::System => return Err(ScheduleError::Unsupported(eval.id.clone(), "system")),
        JobType::Sysbatch => return Err(ScheduleError::Unsupported(eval.id.clone(), "sysbatch")),
    }
    let mut s = Scheduler::new(snap, eval);
    s.run();
    Ok(s.plan)
}

struct Scheduler<'a> {
    snap: &'a StateSnapshot,
    eval: &'a Evaluation,
    rng: StdRng,
    plan: Plan,
    /// Allocations proposed by this plan, per node.
    proposed: BTreeMap<String, Vec<Allocation>>,
    /// Allocations this plan stops, so their resources count as free.
    stopping: BTreeMap<String, ()>,
}

impl<'a> Scheduler<'a> {
    fn new(snap: &'a StateSnapshot, eval: &'a Evaluation) -> Self {
        let seed = eval.id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
        Scheduler {
            snap,
            eval,
            rng: StdRng::seed_from_u64(seed),
            plan: Plan {
                eval_id: eval.id.clone(),
                snapshot_index: snap.index(),
                ..Default::default()
            },
            proposed: BTreeMap::new(),
            stopping: BTreeMap::new(),
        }
    }

    fn new_id(&mut self) -> String {
        format_uuid(self.rng.random())
    }

    fn stop(&mut self, a: &Allocation, description: &str, client_status: Option<ClientStatus>) {
        self.stopping.insert(a.id.clone(), ());
        self.plan.stops.push(AllocStop {
            alloc_id: a.id.clone(),
            description: description.to_string(),
            client_status,
        });
    }

    fn run(&mut self) {
        let snap = self.snap;
        let job = snap.job(&self.eval.namespace, &self.eval.job_id);
        let existing: Vec<&Allocation> = snap
            .allocs_by_job(&self.eval.namespace, &self.eval.job_id)
            .filter(|a| a.desired_status == DesiredStatus::Run)
            .collect();
        let Some(job) = job.filter(|j| !j.stop) else {
            for a in existing {
                if !a.client_status.is_terminal() {
                    self.stop(a, "alloc not needed since job was stopped", None);
                }
            }
            return;
        };
        for a in &existing {
            if job.group(&a.task_group).is_none() && !a.client_status.is_terminal() {
                self.stop(
                    a,
                    "alloc not needed: its task group was removed from the job",
                    None,
                );
            }
        }
        for group in &job.groups {
            let allocs: Vec<&Allocation> = existing
                .iter()
                .copied()
                .filter(|a| a.task_group == group.name)
                .collect();
            self.reconcile_group(job, group, &allocs);
        }
    }

    fn reconcile_group(&mut self, job: &Job, group: &TaskGroup, allocs: &[&Allocation]) {
        // index -> the allocation holding that slot
        let mut slots: BTreeMap<u32, &Allocation> = BTreeMap::new();
        let mut to_place: Vec<(u32, Option<&Allocation>)> = Vec::new();
        for a in allocs {
            let node_down = self
                .snap
                .node(&a.node_id)
                .is_none_or(|n| n.status == NodeStatus::Down);
            if node_down && !a.client_status.is_terminal() {
                self.stop(
                    a,
                    "alloc is lost since its node is down",
                    Some(ClientStatus::Lost),
                );
                to_place.push((a.index(), Some(a)));
                continue;
            }
            match a.client_status {
                // A finished batch allocation holds its slot: the work is done.
                ClientStatus::Complete if job.job_type == JobType::Batch => {
                    slots.insert(a.index(), a);
                }
                ClientStatus::Complete | ClientStatus::Failed | ClientStatus::Lost => {
                    // Failed allocations are replaced only under a reschedule policy, which
                    // is not implemented yet: the slot stays failed.
                    if a.client_status == ClientStatus::Failed || job.job_type == JobType::Batch {
                        slots.entry(a.index()).or_insert(a);
                    }
                }
                ClientStatus::Pending | ClientStatus::Running => {
                    if let Some(prev) = slots.get(&a.index())
                        && !prev.client_status.is_terminal()
                    {
                        self.stop(a, "alloc not needed: duplicate index", None);
                        continue;
                    }
                    slots.insert(a.index(), a);
                }
            }
        }
        // Count decreases: stop the highest indexes.
        let extra: Vec<u32> = slots
            .keys()
            .copied()
            .filter(|i| *i >= group.count)
            .collect();
        for i in extra {
            let a = slots.remove(&i).expect("slot exists");
            if !a.client_status.is_terminal() {
                self.stop(a, "alloc not needed due to job update", None);
            }
        }
        // Version changes: the same group spec is updated in place, a changed one replaced.
        for (i, a) in slots.clone() {
            if a.job_version == job.version || a.client_status.is_terminal() {
                continue;
            }
            let old_group = self
                .snap
                .job_version(&job.namespace, &job.id, a.job_version)
                .and_then(|j| j.group(&group.name));
            // A count change alone never replaces running allocations.
            let same_spec = old_group.is_some_and(|g| {
                TaskGroup {
                    count: group.count,
                    ..g.clone()
                } == *group
            });
            if same_spec {
                let mut updated = a.clone();
                updated.job_version = job.version;
                updated.eval_id = self.eval.id.clone();
                self.proposed
                    .entry(updated.node_id.clone())
                    .or_default()
                    .push(updated.clone());
                self.stopping.insert(a.id.clone(), ());
                self.plan.allocs.push(updated);
            } else {
                self.stop(a, "alloc is being updated due to job update", None);
                slots.remove(&i);
                to_place.push((i, Some(a)));
            }
        }
        for i in 0..group.count {
            if !slots.contains_key(&i) && !to_place.iter().any(|(x, _)| *x == i) {
                to_place.push((i, None));
            }
        }
        to_place.sort_by_key(|(i, _)| *i);
        let mut failure: Option<PlacementFailure> = None;
        for (index, previous) in to_place {
            if let Some(f) = failure.as_mut() {
                f.coalesced_failures += 1; // the group already failed: same outcome, coalesced
                continue;
            }
            match self.place(job, group, index, previous) {
                Ok(()) => {}
                Err(f) => failure = Some(f),
            }
        }
        if let Some(f) = failure {
            self.plan.failed.insert(group.name.clone(), f);
        }
    }

    /// The node's active allocations as this plan would leave them.
    fn node_allocs(&self, node_id: &str) -> Vec<&Allocation> {
        self.snap
            .allocs_by_node(node_id)
            .filter(|a| !self.stopping.contains_key(&a.id))
            .chain(self.proposed.get(node_id).into_iter().flatten())
            .collect()
    }

    fn place(
        &mut self,
        job: &Job,
        group: &TaskGroup,
        index: u32,
        previous: Option<&Allocation>,
    ) -> Result<(), PlacementFailure> {
        let mut f = PlacementFailure {
            ..Default::default()
        };
        let need = group.resources();
        let mut best: Option<(f64, &Node)> = None;
        let mut nearest: Option<(u64, String)> = None;
        for node in self.snap.nodes() {
            f.nodes_evaluated += 1;
            if let Some(reason) = self.infeasible(job, group, node) {
                f.nodes_filtered += 1;
                *f.constraint_filtered.entry(reason).or_default() += 1;
                continue;
            }
            match fit_with(node, self.node_allocs(&node.id), &need) {
                Ok(free) => {
                    // Bin-packing: prefer the node left fullest.
                    let cap = node.allocatable();
                    let score = 2.0
                        - (free.cpu as f64 / cap.cpu.max(1) as f64)
                        - (free.memory_mb as f64 / cap.memory_mb.max(1) as f64);
                    if best
                        .as_ref()
                        .is_none_or(|(s, n)| score > *s || (score == *s && node.id < n.id))
                    {
                        best = Some((score, node));
                    }
                }
                Err(
                    m @ Misfit::Exhausted {
                        dimension,
                        needed,
                        free,
                    },
                ) => {
                    *f.dimension_exhausted
                        .entry(dimension.to_string())
                        .or_default() += 1;
                    let short = needed - free;
                    if nearest.as_ref().is_none_or(|(s, _)| short < *s) {
                        nearest = Some((
                            short,
                            format!("node {} ({}) lacks {m}", node.name, short_id(&node.id)),
                        ));
                    }
                }
            }
        }
        let Some((_, node)) = best else {
            f.nearest_miss = match nearest {
                Some((_, msg)) => msg,
                None if f.nodes_evaluated == 0 => "no nodes are registered".into(),
                None => "every node was filtered out".into(),
            };
            return Err(f);
        };
        let alloc = Allocation {
            id: self.new_id(),
            namespace: job.namespace.clone(),
            eval_id: self.eval.id.clone(),
            name: format!("{}.{}[{}]", job.id, group.name, index),
            node_id: node.id.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            task_group: group.name.clone(),
            task_resources: group
                .tasks
                .iter()
                .map(|t| (t.name.clone(), t.resources.clone()))
                .collect(),
            desired_status: DesiredStatus::Run,
            desired_description: String::new(),
            client_status: ClientStatus::Pending,
            client_description: String::new(),
            task_states: BTreeMap::new(),
            client_seq: 0,
            previous_allocation: previous.map(|p| p.id.clone()).unwrap_or_default(),
            create_index: 0,
            modify_index: 0,
            alloc_modify_index: 0,
            create_time: 0,
            modify_time: 0,
        };
        self.proposed
            .entry(node.id.clone())
            .or_default()
            .push(alloc.clone());
        self.plan.allocs.push(alloc);
        Ok(())
    }

    /// Why `node` can never run `group`, in plain words, or None if it can.
    fn infeasible(&self, job: &Job, group: &TaskGroup, node: &Node) -> Option<String> {
        if node.status != NodeStatus::Ready {
            return Some(format!("node is {}", node.status.as_str()));
        }
        if node.scheduling_eligibility != "eligible" {
            return Some("node is ineligible for scheduling".into());
        }
        if !job
            .datacenters
            .iter()
            .any(|dc| glob_match(dc, &node.datacenter))
        {
            return Some(format!(
                "datacenter {} is not in {:?}",
                node.datacenter, job.datacenters
            ));
        }
        for t in &group.tasks {
            match node.drivers.get(&t.driver) {
                Some(d) if d.detected && d.healthy => {}
                Some(d) if d.detected => {
                    return Some(format!(
                        "driver {} is unhealthy: {}",
                        t.driver, d.health_description
                    ));
                }
                _ => return Some(format!("missing driver {}", t.driver)),
            }
        }
        None
    }
}

fn short_id(id: &str) -> &str {
    &id[..id.len().min(8)]
}

/// The evaluation's status once its plan is committed.
pub fn finished_eval(eval: &Evaluation, plan: &Plan) -> Evaluation {
    let mut e = eval.clone();
    e.status = EvalStatus::Complete;
    e.failed_tg_allocs = plan.failed.clone();
    e.status_description = if plan.failed.is_empty() {
        String::new()
    } else {
        let groups: Vec<&str> = plan.failed.keys().map(String::as_str).collect();
        format!("placement failed for group(s) {}", groups.join(", "))
    };
    e
}

#[cfg(test)]
mod tests;
