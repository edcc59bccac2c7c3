//! Placement: which node takes an allocation. Nodes are visited in a seeded random order from
//! a rotating cursor; each is checked for feasibility (cached per group and node), the
//! distinct_* constraints and fit; the first few feasible ones are ranked and the best wins.
//!
//! The walk is the scheduler's hot loop (a spread ranks 64 candidates per placement, each
//! seen for the first time in the evaluation): per-node state lives in vectors indexed by
//! the node's position in the snapshot's node list, and why a node was passed over is kept
//! as a small [`Why`] that is put into words only when the placement fails.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use drover_model::{
    Affinity, AllocatedPort, Allocation, ClientStatus, Constraint, ConstraintOperand,
    DesiredStatus, Job, Node, NodeStatus, PlacementFailure, Port, RescheduleEvent, Resources,
    SharedResources, Spread, TaskGroup, VolumeType, format_uuid,
};
use drover_state::StateSnapshot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::feasible::{resolve, satisfies};
use crate::fit::{Misfit, PortHost, Usage, fits};
use crate::{Algorithm, Options, glob_match};

/// Candidates ranked per placement when affinities or spreads are in play.
const RANKED_CANDIDATES: usize = 64;

/// No usage computed yet for a node (in `Placer::usage_slot`).
const NO_USAGE: u32 = u32::MAX;

/// Why a node was passed over, put into words by [`Placer::describe`] only for a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    Status,
    Ineligible,
    Datacenter,
    Pool,
    /// The task at this index: its driver is detected but unhealthy.
    DriverUnhealthy(u32),
    DriverMissing(u32),
    DeviceMissing(u32),
    /// The constraint at this index of job, group and task constraints in turn.
    Constraint(u32),
    HostVolume,
    Network,
    DistinctHostsJob,
    DistinctHostsGroup,
    /// The distinct_property constraint at this index of job then group constraints.
    DistinctPropertyUnset(u32),
    DistinctPropertyFull(u32),
}

/// A group's feasibility on one node, cached for the evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feasibility {
    Unchecked,
    Feasible,
    Infeasible(Why),
}

/// What the current placement's walk saw, for its failure (put into words only then).
#[derive(Default)]
struct Walk {
    evaluated: u32,
    /// Nodes passed over, by position, and why.
    filtered: Vec<(usize, Why)>,
    /// Feasible nodes that were full, and what they lacked.
    exhausted: Vec<Misfit>,
    /// The full node that came nearest: shortfall, position, what it lacked.
    nearest: Option<(u64, usize, Misfit)>,
}

/// What ranks a group's candidates, gathered once per placement.
struct Ranking<'j> {
    affinities: Vec<Constraint>,
    affinity_weights: Vec<f64>,
    affinity_sum: f64,
    /// Each spread with the key of its counts in `Placer::by_value`.
    spreads: Vec<(&'j Spread, (String, String))>,
}

impl<'j> Ranking<'j> {
    fn of(job: &'j Job, group: &'j TaskGroup) -> Self {
        let affinities: Vec<&Affinity> = job
            .affinities
            .iter()
            .chain(group.affinities.iter())
            .chain(group.tasks.iter().flat_map(|t| t.affinities.iter()))
            .collect();
        let affinity_sum = affinities
            .iter()
            .map(|a| (a.weight as f64).abs())
            .sum::<f64>()
            .max(1.0);
        Ranking {
            affinity_weights: affinities.iter().map(|a| a.weight as f64).collect(),
            affinities: affinities
                .iter()
                .map(|a| Constraint {
                    l_target: a.l_target.clone(),
                    r_target: a.r_target.clone(),
                    operand: a.operand,
                })
                .collect(),
            affinity_sum,
            spreads: job
                .spreads
                .iter()
                .chain(group.spreads.iter())
                .map(|s| (s, (group.name.clone(), s.attribute.clone())))
                .collect(),
        }
    }
}

/// The distinct_* constraints of a group, gathered once per placement.
struct Distinct<'j> {
    job_hosts: bool,
    group_hosts: bool,
    /// distinct_property constraints, job's then group's: (scope, constraint).
    properties: Vec<(String, &'j Constraint)>,
}

impl<'j> Distinct<'j> {
    fn of(job: &'j Job, group: &'j TaskGroup) -> Self {
        Distinct {
            job_hosts: job
                .constraints
                .iter()
                .any(|c| c.operand == ConstraintOperand::DistinctHosts),
            group_hosts: group
                .constraints
                .iter()
                .any(|c| c.operand == ConstraintOperand::DistinctHosts),
            properties: job
                .constraints
                .iter()
                .map(|c| (String::new(), c))
                .chain(group.constraints.iter().map(|c| (group.name.clone(), c)))
                .filter(|(_, c)| c.operand == ConstraintOperand::DistinctProperty)
                .collect(),
        }
    }
}

pub(crate) struct Placer<'a> {
    snap: &'a StateSnapshot,
    opts: Options,
    pub rng: StdRng,
    /// Every node, in id order.
    nodes: &'a [Arc<Node>],
    cursor: usize,
    /// By node position: where its usage is in `usages` (NO_USAGE: not computed yet).
    usage_slot: Vec<u32>,
    usages: Vec<Usage>,
    stopping: BTreeSet<String>,
    /// This job's active allocations per (node, group).
    on_node: BTreeMap<(String, String), u32>,
    /// Allocations per (group or "" for the job, attribute expression) and value: for
    /// distinct_property and spreads.
    by_value: BTreeMap<(String, String), BTreeMap<String, u32>>,
    /// Feasibility per group, by node position.
    feasible: BTreeMap<String, Vec<Feasibility>>,
    regexes: BTreeMap<String, Option<regex::Regex>>,
    walk: Walk,
}

/// A request to place one allocation.
pub(crate) struct Request<'j> {
    pub job: &'j Job,
    pub group: &'j TaskGroup,
    pub index: u32,
    pub eval_id: String,
    pub previous: Option<&'j Allocation>,
    pub reschedule: Vec<RescheduleEvent>,
    /// Only this node (system jobs).
    pub only: Option<&'j Node>,
}

impl<'a> Placer<'a> {
    pub fn new(snap: &'a StateSnapshot, job: Option<&Job>, seed: u64, opts: &Options) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        // Node ids are random, so id order is a random order: start at a seeded offset.
        let nodes = snap.node_list();
        let cursor = if nodes.is_empty() {
            0
        } else {
            rng.random_range(0..nodes.len())
        };
        // A job's node pool may rank its nodes its own way (Drover's extension of Nomad
        // Enterprise's per-pool scheduler configuration); the cluster's otherwise.
        let mut opts = *opts;
        if let Some(algorithm) = job
            .and_then(|j| snap.node_pool(&j.node_pool))
            .and_then(|p| p.scheduler_configuration.as_ref())
            .and_then(|c| c.scheduler_algorithm)
        {
            opts.algorithm = algorithm;
        }
        let mut p = Placer {
            snap,
            opts,
            rng,
            nodes,
            cursor,
            usage_slot: vec![NO_USAGE; nodes.len()],
            usages: Vec::new(),
            stopping: BTreeSet::new(),
            on_node: BTreeMap::new(),
            by_value: BTreeMap::new(),
            feasible: BTreeMap::new(),
            regexes: BTreeMap::new(),
            walk: Walk::default(),
        };
        if let Some(job) = job {
            for a in snap
                .allocs_by_job(&job.namespace, &job.id)
                .filter(|a| a.is_active())
            {
                p.count(job, a, 1);
            }
        }
        p
    }

    pub fn new_id(&mut self) -> String {
        format_uuid(self.rng.random())
    }

    /// The position of node `id` in the node list.
    fn position(&self, id: &str) -> Option<usize> {
        self.nodes.binary_search_by(|n| n.id.as_str().cmp(id)).ok()
    }

    /// Distinct-property and spread attributes of a group.
    fn value_keys(job: &Job, group: &TaskGroup) -> Vec<(String, String)> {
        let mut keys = Vec::new();
        for c in job
            .constraints
            .iter()
            .filter(|c| c.operand == ConstraintOperand::DistinctProperty)
        {
            keys.push((String::new(), c.l_target.clone()));
        }
        for c in group
            .constraints
            .iter()
            .filter(|c| c.operand == ConstraintOperand::DistinctProperty)
        {
            keys.push((group.name.clone(), c.l_target.clone()));
        }
        for s in job.spreads.iter().chain(group.spreads.iter()) {
            keys.push((group.name.clone(), s.attribute.clone()));
        }
        keys
    }

    fn count(&mut self, job: &Job, a: &Allocation, delta: i64) {
        let bump = |v: &mut u32| *v = (*v as i64 + delta).max(0) as u32;
        bump(
            self.on_node
                .entry((a.node_id.clone(), a.task_group.clone()))
                .or_default(),
        );
        let Some(node) = self.snap.node(&a.node_id) else {
            return;
        };
        let Some(group) = job.group(&a.task_group) else {
            return;
        };
        for key in Self::value_keys(job, group) {
            if let Some(v) = resolve(&key.1, node).map(str::to_string) {
                bump(self.by_value.entry(key).or_default().entry(v).or_default());
            }
        }
    }

    /// How many of the group's (or job's) allocations have `value` for the attribute `key`.
    fn value_count(&self, key: &(String, String), value: &str) -> u32 {
        self.by_value
            .get(key)
            .and_then(|values| values.get(value))
            .copied()
            .unwrap_or(0)
    }

    /// The usage of the node at `pos`, computed on first use.
    fn usage_at(&mut self, pos: usize) -> &mut Usage {
        let mut slot = self.usage_slot[pos];
        if slot == NO_USAGE {
            let node = &self.nodes[pos];
            let stopping = &self.stopping;
            let u = Usage::of(
                node,
                self.snap
                    .allocs_by_node(&node.id)
                    .filter(|a| !stopping.contains(&a.id)),
            );
            slot = self.usages.len() as u32;
            self.usages.push(u);
            self.usage_slot[pos] = slot;
        }
        &mut self.usages[slot as usize]
    }

    /// The plan stops `a`: its resources are free for this plan's placements.
    pub fn release(&mut self, job: Option<&Job>, a: &Allocation) {
        if !self.stopping.insert(a.id.clone()) {
            return;
        }
        if let Some(pos) = self.position(&a.node_id)
            && self.usage_slot[pos] != NO_USAGE
            && a.is_active()
        {
            self.usage_at(pos).remove(a);
        }
        if let Some(job) = job
            && a.is_active()
        {
            self.count(job, a, -1);
        }
    }

    /// Whether the node at `pos` can ever run `group` (cached in `cache`).
    fn feasibility(
        &mut self,
        cache: &mut [Feasibility],
        job: &Job,
        group: &TaskGroup,
        pos: usize,
    ) -> Option<Why> {
        match cache[pos] {
            Feasibility::Feasible => None,
            Feasibility::Infeasible(why) => Some(why),
            Feasibility::Unchecked => {
                let r = self.check(job, group, &self.nodes[pos]);
                cache[pos] = match r {
                    None => Feasibility::Feasible,
                    Some(why) => Feasibility::Infeasible(why),
                };
                r
            }
        }
    }

    fn check(&mut self, job: &Job, group: &TaskGroup, node: &Node) -> Option<Why> {
        if node.status != NodeStatus::Ready {
            return Some(Why::Status);
        }
        if node.scheduling_eligibility != drover_model::SchedulingEligibility::Eligible {
            return Some(Why::Ineligible);
        }
        if !job
            .datacenters
            .iter()
            .any(|dc| glob_match(dc, &node.datacenter))
        {
            return Some(Why::Datacenter);
        }
        let pool = node_pool(node);
        if job.node_pool != "all" && !job.node_pool.is_empty() && job.node_pool != pool {
            return Some(Why::Pool);
        }
        for (i, t) in group.tasks.iter().enumerate() {
            let i = i as u32;
            match node.drivers.get(&t.driver) {
                Some(d) if d.detected && d.healthy => {}
                Some(d) if d.detected => return Some(Why::DriverUnhealthy(i)),
                _ => return Some(Why::DriverMissing(i)),
            }
            if !t.resources.devices.is_empty() {
                return Some(Why::DeviceMissing(i));
            }
        }
        for (i, c) in constraints(job, group).enumerate() {
            if !satisfies(c, node, &mut self.regexes) {
                return Some(Why::Constraint(i as u32));
            }
        }
        if host_volume_missing(group, node).is_some() {
            return Some(Why::HostVolume);
        }
        if crate::feasible::network_missing(group, node).is_some() {
            return Some(Why::Network);
        }
        None
    }

    /// The distinct_hosts / distinct_property constraint `node` would break, if any.
    fn distinct(&self, d: &Distinct<'_>, group: &TaskGroup, node: &Node) -> Option<Why> {
        if d.job_hosts {
            let any = self
                .on_node
                .range((node.id.clone(), String::new())..)
                .take_while(|((n, _), _)| *n == node.id)
                .any(|(_, c)| *c > 0);
            if any {
                return Some(Why::DistinctHostsJob);
            }
        } else if d.group_hosts
            && self
                .on_node
                .get(&(node.id.clone(), group.name.clone()))
                .copied()
                .unwrap_or(0)
                > 0
        {
            return Some(Why::DistinctHostsGroup);
        }
        for (i, (scope, c)) in d.properties.iter().enumerate() {
            let Some(v) = resolve(&c.l_target, node) else {
                return Some(Why::DistinctPropertyUnset(i as u32));
            };
            let limit: u32 = c.r_target.parse().unwrap_or(1).max(1);
            if self.value_count(&(scope.clone(), c.l_target.clone()), v) >= limit {
                return Some(Why::DistinctPropertyFull(i as u32));
            }
        }
        None
    }

    /// Why `node` was passed over, in plain words.
    fn describe(&self, why: Why, job: &Job, group: &TaskGroup, node: &Node) -> String {
        let task = |i: u32| &group.tasks[i as usize];
        let property = |i: u32| Distinct::of(job, group).properties[i as usize].1.clone();
        match why {
            Why::Status => format!("node is {}", node.status.as_str()),
            Why::Ineligible => "node is ineligible for scheduling".into(),
            Why::Datacenter => format!(
                "datacenter {} is not in {:?}",
                node.datacenter, job.datacenters
            ),
            Why::Pool => format!("node pool {} is not {}", node_pool(node), job.node_pool),
            Why::DriverUnhealthy(i) => {
                let t = task(i);
                let health = node
                    .drivers
                    .get(&t.driver)
                    .map(|d| d.health_description.as_str())
                    .unwrap_or_default();
                format!("driver {} is unhealthy: {health}", t.driver)
            }
            Why::DriverMissing(i) => format!("missing driver {}", task(i).driver),
            Why::DeviceMissing(i) => {
                let d = task(i).resources.devices.first().map(|d| d.name.as_str());
                format!("missing device {}", d.unwrap_or_default())
            }
            Why::Constraint(i) => {
                let c = constraints(job, group)
                    .nth(i as usize)
                    .expect("the constraint that failed");
                format!(
                    "constraint {} {} {}",
                    c.l_target,
                    if c.operand == ConstraintOperand::Unset {
                        "="
                    } else {
                        c.operand.as_str()
                    },
                    c.r_target
                )
                .trim_end()
                .to_string()
            }
            Why::HostVolume => host_volume_missing(group, node).unwrap_or_default(),
            Why::Network => crate::feasible::network_missing(group, node).unwrap_or_default(),
            Why::DistinctHostsJob => "distinct_hosts: the node already runs this job".into(),
            Why::DistinctHostsGroup => "distinct_hosts: the node already runs this group".into(),
            Why::DistinctPropertyUnset(i) => {
                format!("distinct_property {} is not set", property(i).l_target)
            }
            Why::DistinctPropertyFull(i) => {
                let c = property(i);
                let limit: u32 = c.r_target.parse().unwrap_or(1).max(1);
                let v = resolve(&c.l_target, node).unwrap_or_default();
                format!("distinct_property {} = {v} already has {limit}", c.l_target)
            }
        }
    }

    /// The current placement's walk, in words.
    fn failure(&self, job: &Job, group: &TaskGroup) -> PlacementFailure {
        let w = &self.walk;
        let mut f = PlacementFailure {
            nodes_evaluated: w.evaluated,
            nodes_filtered: w.filtered.len() as u32,
            ..Default::default()
        };
        for (pos, why) in &w.filtered {
            let reason = self.describe(*why, job, group, &self.nodes[*pos]);
            *f.constraint_filtered.entry(reason).or_default() += 1;
        }
        for m in &w.exhausted {
            *f.dimension_exhausted.entry(m.dimension()).or_default() += 1;
        }
        f
    }

    fn score(
        &mut self,
        ranking: &Ranking<'_>,
        group: &TaskGroup,
        pos: usize,
        need: &Resources,
    ) -> f64 {
        let node = &self.nodes[pos];
        let usage = &self.usages[self.usage_slot[pos] as usize];
        let cap = node.allocatable();
        let frac = |used: u64, need: u64, cap: u64| {
            if cap == 0 {
                1.0
            } else {
                (used + need) as f64 / cap as f64
            }
        };
        let fullness = (frac(usage.cpu, need.cpu, cap.cpu)
            + frac(usage.memory_mb, need.memory_mb, cap.memory_mb))
            / 2.0;
        let mut total = match self.opts.algorithm {
            Algorithm::Binpack => fullness,
            Algorithm::Spread => 1.0 - fullness,
        };
        let mut parts = 1.0;
        if !ranking.affinities.is_empty() {
            let got: f64 = ranking
                .affinities
                .iter()
                .zip(&ranking.affinity_weights)
                .filter(|(a, _)| satisfies(a, node, &mut self.regexes))
                .map(|(_, w)| *w)
                .sum();
            total += got / ranking.affinity_sum;
            parts += 1.0;
        }
        for (s, key) in &ranking.spreads {
            let value = resolve(&s.attribute, node).unwrap_or_default();
            let current = self.value_count(key, value) as f64;
            let count = group.count.max(1) as f64;
            let boost = if s.spread_target.is_empty() {
                // Even spread: the fewer this value already has, the better.
                1.0 - current / count
            } else {
                let pct = s
                    .spread_target
                    .iter()
                    .find(|t| t.value == value)
                    .map(|t| t.percent as f64)
                    .unwrap_or(0.0);
                let desired = pct * count / 100.0;
                if desired <= 0.0 {
                    -1.0
                } else {
                    ((desired - current) / desired).clamp(-1.0, 1.0)
                }
            };
            total += boost * s.weight as f64 / 100.0;
            parts += 1.0;
        }
        total / parts
    }

    /// Places one allocation, or explains why it cannot be placed.
    pub fn place(&mut self, req: Request<'_>) -> Result<Allocation, PlacementFailure> {
        let (job, group) = (req.job, req.group);
        let mut need = group.resources();
        need.disk_mb = group
            .ephemeral_disk
            .as_ref()
            .map(|d| d.size_mb)
            .unwrap_or(0);
        let static_ports: Vec<Port> = group
            .networks
            .iter()
            .flat_map(|n| n.reserved_ports.iter().cloned())
            .collect();
        let pos = self.select(&req, &need, &static_ports)?;
        let node: &'a Node = &self.nodes[pos];
        let ports = match self.assign_ports(pos, group, &static_ports) {
            Ok(ports) => ports,
            Err(()) => {
                let mut f = self.failure(job, group);
                f.dimension_exhausted
                    .insert("network: dynamic port range exhausted".into(), 1);
                f.nearest_miss = format!("node {} has no free dynamic port", node.name);
                return Err(f);
            }
        };
        let task_resources = self.reserve_cores(pos, group)?;
        let alloc = Allocation {
            id: self.new_id(),
            namespace: job.namespace.clone(),
            eval_id: req.eval_id,
            name: format!("{}.{}[{}]", job.id, group.name, req.index),
            node_id: node.id.clone(),
            job_id: job.id.clone(),
            job_version: job.version,
            task_group: group.name.clone(),
            task_resources,
            shared_resources: SharedResources {
                disk_mb: need.disk_mb,
                ports,
            },
            desired_status: DesiredStatus::Run,
            client_status: ClientStatus::Pending,
            previous_allocation: req.previous.map(|p| p.id.clone()).unwrap_or_default(),
            reschedule_tracker: req.reschedule,
            ..Default::default()
        };
        self.usage_at(pos).add(&alloc);
        self.count(job, &alloc, 1);
        Ok(alloc)
    }

    /// The position of the node an allocation goes to: visits nodes from the cursor,
    /// filters the infeasible and the full ones, ranks the first `limit` that fit and
    /// returns the best. `self.walk` keeps what the walk saw; on failure it is put into
    /// words: why each node was passed over, and which came nearest.
    fn select(
        &mut self,
        req: &Request<'_>,
        need: &Resources,
        static_ports: &[Port],
    ) -> Result<usize, PlacementFailure> {
        let (job, group) = (req.job, req.group);
        let ranked = !(job.affinities.is_empty()
            && group.affinities.is_empty()
            && job.spreads.is_empty()
            && group.spreads.is_empty());
        // Affinities and spreads rank a wider sample; a system job looks at its one node.
        let limit = if req.only.is_some() {
            usize::MAX
        } else if ranked {
            RANKED_CANDIDATES
        } else {
            self.opts.candidates.max(1)
        };
        let only = req.only.map(|o| self.position(&o.id));
        let n = match only {
            Some(Some(_)) => 1,
            Some(None) => 0,
            None => self.nodes.len(),
        };
        let ranking = Ranking::of(job, group);
        let distinct = Distinct::of(job, group);
        let mut feasible = self
            .feasible
            .remove(&group.name)
            .unwrap_or_else(|| vec![Feasibility::Unchecked; self.nodes.len()]);
        let mut walk = std::mem::take(&mut self.walk);
        walk.evaluated = 0;
        walk.filtered.clear();
        walk.exhausted.clear();
        walk.nearest = None;
        let mut best: Option<(f64, usize)> = None;
        let mut found = 0;
        let mut visited = 0;
        for i in 0..n {
            let pos = match only {
                Some(Some(p)) => p,
                _ => (self.cursor + i) % n,
            };
            let node: &'a Node = &self.nodes[pos];
            visited = i + 1;
            walk.evaluated += 1;
            if let Some(why) = self
                .feasibility(&mut feasible, job, group, pos)
                .or_else(|| self.distinct(&distinct, group, node))
            {
                walk.filtered.push((pos, why));
                continue;
            }
            match fits(node, self.usage_at(pos), need, static_ports) {
                Ok(()) => {
                    let score = self.score(&ranking, group, pos, need);
                    if best.is_none_or(|(s, b)| {
                        score > s || (score == s && node.id < self.nodes[b].id)
                    }) {
                        best = Some((score, pos));
                    }
                    found += 1;
                    if found >= limit {
                        break;
                    }
                }
                Err(m) => {
                    if walk
                        .nearest
                        .as_ref()
                        .is_none_or(|(s, _, _)| m.shortfall() < *s)
                    {
                        walk.nearest = Some((m.shortfall(), pos, m.clone()));
                    }
                    walk.exhausted.push(m);
                }
            }
        }
        self.feasible.insert(group.name.clone(), feasible);
        self.walk = walk;
        if req.only.is_none() && n > 0 {
            self.cursor = (self.cursor + visited) % n;
        }
        match best {
            Some((_, pos)) => Ok(pos),
            None => {
                let mut f = self.failure(job, group);
                f.nearest_miss = match &self.walk.nearest {
                    Some((_, pos, m)) => {
                        let node = &self.nodes[*pos];
                        format!(
                            "node {} ({}) lacks {m}",
                            node.name,
                            &node.id[..node.id.len().min(8)]
                        )
                    }
                    None if n == 0 => "no nodes are registered".into(),
                    None => "every node was filtered out".into(),
                };
                Err(f)
            }
        }
    }

    /// The group's ports on `node`, each on the address of its host network: the static
    /// ones as asked, dynamic ones picked at random from the node's range, none held there
    /// already (nor a value one of the group's static ports has). `to` is the port inside
    /// the allocation's network: 0 and -1 both mean the host port's value (Nomad).
    /// Err: the node's dynamic port range is exhausted.
    fn assign_ports(
        &mut self,
        pos: usize,
        group: &TaskGroup,
        static_ports: &[Port],
    ) -> Result<Vec<AllocatedPort>, ()> {
        let node: &Node = &self.nodes[pos];
        let to = |p: &Port, value: u16| if p.to <= 0 { value as i32 } else { p.to };
        // Feasibility refused nodes without the host networks the ports name.
        let host_ip = |p: &Port| node.host_network_ip(&p.host_network).unwrap_or_default();
        let mut ports = Vec::new();
        self.usage_at(pos);
        let usage = &self.usages[self.usage_slot[pos] as usize];
        let mut mine: BTreeSet<(PortHost, u16)> = BTreeSet::new();
        for p in static_ports {
            mine.insert((usage.host_of(host_ip(p)), p.value));
        }
        for net in &group.networks {
            for p in &net.reserved_ports {
                ports.push(AllocatedPort {
                    label: p.label.clone(),
                    value: p.value,
                    to: to(p, p.value),
                    host_ip: host_ip(p).to_string(),
                });
            }
            for p in &net.dynamic_ports {
                let ip = host_ip(p);
                let host = usage.host_of(ip);
                let range = node.dynamic_ports();
                let (lo, span) = (*range.start(), (*range.end() - *range.start()) as usize + 1);
                let start = self.rng.random_range(0..span);
                let Some(value) = (0..span)
                    .map(|k| lo + ((start + k) % span) as u16)
                    .find(|v| {
                        usage.port_free(&host, *v)
                            && !static_ports.iter().any(|s| s.value == *v)
                            && !mine.iter().any(|(h, m)| {
                                *m == *v
                                    && (*h == host || *h == PortHost::Any || host == PortHost::Any)
                            })
                    })
                else {
                    return Err(());
                };
                mine.insert((host, value));
                ports.push(AllocatedPort {
                    label: p.label.clone(),
                    value,
                    to: to(p, value),
                    host_ip: ip.to_string(),
                });
            }
        }
        Ok(ports)
    }

    /// Each task's resources, with the node's core ids its `cores` reserves: the lowest
    /// free ones, task by task in the group's order (Nomad's `ReservedCores`).
    fn reserve_cores(
        &mut self,
        pos: usize,
        group: &TaskGroup,
    ) -> Result<BTreeMap<String, Resources>, PlacementFailure> {
        let node: &Node = &self.nodes[pos];
        let mut free = self.usage_at(pos).free_cores(node).into_iter();
        let mut out = BTreeMap::new();
        for t in &group.tasks {
            let mut r = t.resources.clone();
            // A job never chooses core ids (an API body might carry some).
            r.reserved_cores = free.by_ref().take(r.cores as usize).collect();
            if r.reserved_cores.len() < r.cores as usize {
                let mut f = PlacementFailure::default();
                f.dimension_exhausted.insert("cores".into(), 1);
                f.nearest_miss = format!(
                    "node {} has too few free cores for task {}",
                    node.name, t.name
                );
                return Err(f);
            }
            out.insert(t.name.clone(), r);
        }
        Ok(out)
    }

    /// Nodes where a per-node (system) job may run: every node, in id order.
    pub fn all_nodes(&self) -> Vec<&'a Node> {
        self.nodes.iter().map(Arc::as_ref).collect()
    }

    /// Whether `group` can ever run on `node` (feasibility only, not fit).
    pub fn feasible_on(&mut self, job: &Job, group: &TaskGroup, node: &Node) -> Option<String> {
        let Some(pos) = self.position(&node.id) else {
            return Some("node is gone".into());
        };
        let mut feasible = self
            .feasible
            .remove(&group.name)
            .unwrap_or_else(|| vec![Feasibility::Unchecked; self.nodes.len()]);
        let why = self.feasibility(&mut feasible, job, group, pos);
        self.feasible.insert(group.name.clone(), feasible);
        why.map(|why| self.describe(why, job, group, node))
    }
}

/// The node's pool ("default" when it names none).
fn node_pool(node: &Node) -> &str {
    if node.node_pool.is_empty() {
        "default"
    } else {
        node.node_pool.as_str()
    }
}

/// The job's, the group's and the group's tasks' constraints, in that order.
fn constraints<'j>(job: &'j Job, group: &'j TaskGroup) -> impl Iterator<Item = &'j Constraint> {
    job.constraints
        .iter()
        .chain(group.constraints.iter())
        .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
}

/// A host volume the group mounts that the node lacks, or has read-only for a writer.
fn host_volume_missing(group: &TaskGroup, node: &Node) -> Option<String> {
    for v in group
        .volumes
        .values()
        .filter(|v| v.volume_type == VolumeType::Host)
    {
        match node.host_volumes.get(&v.source) {
            None => return Some(format!("missing host volume {}", v.source)),
            Some(h) if h.read_only && !v.read_only => {
                return Some(format!("host volume {} is read-only", v.source));
            }
            _ => {}
        }
    }
    None
}
