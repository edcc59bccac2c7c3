//! Placement: which node takes an allocation. Nodes are visited in a seeded random order from
//! a rotating cursor; each is checked for feasibility (cached per group and node), the
//! distinct_* constraints and fit; the first few feasible ones are ranked and the best wins.

use std::collections::{BTreeMap, BTreeSet};

use drover_model::{
    AllocatedPort, Allocation, ClientStatus, Constraint, ConstraintOperand, DesiredStatus, Job,
    Node, NodeStatus, PlacementFailure, Port, RescheduleEvent, Resources, SharedResources,
    TaskGroup, VolumeType, format_uuid,
};
use drover_state::StateSnapshot;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::feasible::{resolve, satisfies};
use crate::fit::{PortHost, Usage, fits};
use crate::{Algorithm, Options, glob_match};

/// Candidates ranked per placement when affinities or spreads are in play.
const RANKED_CANDIDATES: usize = 64;

pub(crate) struct Placer<'a> {
    snap: &'a StateSnapshot,
    opts: Options,
    pub rng: StdRng,
    nodes: Vec<&'a Node>,
    cursor: usize,
    usage: BTreeMap<String, Usage>,
    stopping: BTreeSet<String>,
    /// This job's active allocations per (node, group).
    on_node: BTreeMap<(String, String), u32>,
    /// Allocations per (group or "" for the job, attribute expression, value): for
    /// distinct_property and spreads.
    by_value: BTreeMap<(String, String, String), u32>,
    /// Feasibility per group, by position in `nodes` (None: not checked yet).
    feasible: BTreeMap<String, BTreeMap<usize, Option<String>>>,
    regexes: BTreeMap<String, Option<regex::Regex>>,
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
        let nodes: Vec<&Node> = snap.nodes().collect();
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
            usage: BTreeMap::new(),
            stopping: BTreeSet::new(),
            on_node: BTreeMap::new(),
            by_value: BTreeMap::new(),
            feasible: BTreeMap::new(),
            regexes: BTreeMap::new(),
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
        for (scope, attr) in Self::value_keys(job, group) {
            if let Some(v) = resolve(&attr, node) {
                bump(self.by_value.entry((scope, attr, v)).or_default());
            }
        }
    }

    fn ensure_usage(&mut self, node: &Node) {
        if !self.usage.contains_key(&node.id) {
            let stopping = &self.stopping;
            let u = Usage::of(
                node,
                self.snap
                    .allocs_by_node(&node.id)
                    .filter(|a| !stopping.contains(&a.id)),
            );
            self.usage.insert(node.id.clone(), u);
        }
    }

    fn usage(&mut self, node: &Node) -> &mut Usage {
        self.ensure_usage(node);
        self.usage.get_mut(&node.id).expect("just inserted")
    }

    /// The plan stops `a`: its resources are free for this plan's placements.
    pub fn release(&mut self, job: Option<&Job>, a: &Allocation) {
        if !self.stopping.insert(a.id.clone()) {
            return;
        }
        if let Some(u) = self.usage.get_mut(&a.node_id)
            && a.is_active()
        {
            u.remove(a);
        }
        if let Some(job) = job
            && a.is_active()
        {
            self.count(job, a, -1);
        }
    }

    /// Why the node at `pos` can never run `group`, in plain words (cached).
    fn infeasible(&mut self, job: &Job, group: &TaskGroup, pos: usize) -> Option<String> {
        if let Some(r) = self.feasible.get(&group.name).and_then(|m| m.get(&pos)) {
            return r.clone();
        }
        let node = self.nodes[pos];
        let r = self.check(job, group, node);
        self.feasible
            .entry(group.name.clone())
            .or_default()
            .insert(pos, r.clone());
        r
    }

    fn check(&mut self, job: &Job, group: &TaskGroup, node: &Node) -> Option<String> {
        if node.status != NodeStatus::Ready {
            return Some(format!("node is {}", node.status.as_str()));
        }
        if node.scheduling_eligibility != drover_model::SchedulingEligibility::Eligible {
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
        let pool = if node.node_pool.is_empty() {
            "default"
        } else {
            node.node_pool.as_str()
        };
        if job.node_pool != "all" && !job.node_pool.is_empty() && job.node_pool != pool {
            return Some(format!("node pool {pool} is not {}", job.node_pool));
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
            if let Some(d) = t.resources.devices.first() {
                return Some(format!("missing device {}", d.name));
            }
        }
        let constraints: Vec<&Constraint> = job
            .constraints
            .iter()
            .chain(group.constraints.iter())
            .chain(group.tasks.iter().flat_map(|t| t.constraints.iter()))
            .collect();
        for c in constraints {
            if !satisfies(c, node, &mut self.regexes) {
                return Some(
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
                    .to_string(),
                );
            }
        }
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
        crate::feasible::network_missing(group, node)
    }

    /// The distinct_hosts / distinct_property constraint `node` would break, if any.
    fn distinct(&self, job: &Job, group: &TaskGroup, node: &Node) -> Option<String> {
        let job_level = job
            .constraints
            .iter()
            .any(|c| c.operand == ConstraintOperand::DistinctHosts);
        let group_level = group
            .constraints
            .iter()
            .any(|c| c.operand == ConstraintOperand::DistinctHosts);
        if job_level {
            let any = self
                .on_node
                .range((node.id.clone(), String::new())..)
                .take_while(|((n, _), _)| *n == node.id)
                .any(|(_, c)| *c > 0);
            if any {
                return Some("distinct_hosts: the node already runs this job".into());
            }
        } else if group_level
            && self
                .on_node
                .get(&(node.id.clone(), group.name.clone()))
                .copied()
                .unwrap_or(0)
                > 0
        {
            return Some("distinct_hosts: the node already runs this group".into());
        }
        let scoped = job
            .constraints
            .iter()
            .map(|c| (String::new(), c))
            .chain(group.constraints.iter().map(|c| (group.name.clone(), c)));
        for (scope, c) in scoped.filter(|(_, c)| c.operand == ConstraintOperand::DistinctProperty) {
            let limit: u32 = c.r_target.parse().unwrap_or(1).max(1);
            let Some(v) = resolve(&c.l_target, node) else {
                return Some(format!("distinct_property {} is not set", c.l_target));
            };
            if self
                .by_value
                .get(&(scope, c.l_target.clone(), v.clone()))
                .copied()
                .unwrap_or(0)
                >= limit
            {
                return Some(format!(
                    "distinct_property {} = {v} already has {limit}",
                    c.l_target
                ));
            }
        }
        None
    }

    fn score(
        &self,
        job: &Job,
        group: &TaskGroup,
        node: &Node,
        usage: &Usage,
        need: &Resources,
    ) -> f64 {
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
        let affinities: Vec<_> = job
            .affinities
            .iter()
            .chain(group.affinities.iter())
            .chain(group.tasks.iter().flat_map(|t| t.affinities.iter()))
            .collect();
        if !affinities.is_empty() {
            let sum: f64 = affinities
                .iter()
                .map(|a| (a.weight as f64).abs())
                .sum::<f64>()
                .max(1.0);
            let mut regexes = BTreeMap::new();
            let got: f64 = affinities
                .iter()
                .filter(|a| {
                    satisfies(
                        &Constraint {
                            l_target: a.l_target.clone(),
                            r_target: a.r_target.clone(),
                            operand: a.operand,
                        },
                        node,
                        &mut regexes,
                    )
                })
                .map(|a| a.weight as f64)
                .sum();
            total += got / sum;
            parts += 1.0;
        }
        for s in job.spreads.iter().chain(group.spreads.iter()) {
            let value = resolve(&s.attribute, node).unwrap_or_default();
            let current = self
                .by_value
                .get(&(group.name.clone(), s.attribute.clone(), value.clone()))
                .copied()
                .unwrap_or(0) as f64;
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
        let mut f = PlacementFailure::default();
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
        let node = self.select(&req, &need, &static_ports, &mut f)?;
        let ports = self.assign_ports(node, group, &static_ports, f)?;
        let task_resources = self.reserve_cores(node, group)?;
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
        self.usage(node).add(&alloc);
        self.count(job, &alloc, 1);
        Ok(alloc)
    }

    /// The node an allocation goes to: visits nodes from the cursor, filters the infeasible
    /// and the full ones, ranks the first `limit` that fit and returns the best. On failure
    /// `f` says why each node was passed over, and which came nearest.
    fn select(
        &mut self,
        req: &Request<'_>,
        need: &Resources,
        static_ports: &[Port],
        f: &mut PlacementFailure,
    ) -> Result<&'a Node, PlacementFailure> {
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
        let only = req
            .only
            .map(|o| self.nodes.iter().position(|x| x.id == o.id));
        let n = match only {
            Some(Some(_)) => 1,
            Some(None) => 0,
            None => self.nodes.len(),
        };
        let mut best: Option<(f64, &'a Node)> = None;
        let mut found = 0;
        let mut nearest: Option<(u64, String)> = None;
        let mut visited = 0;
        for i in 0..n {
            let pos = match only {
                Some(Some(p)) => p,
                _ => (self.cursor + i) % n,
            };
            let node = self.nodes[pos];
            visited = i + 1;
            f.nodes_evaluated += 1;
            if let Some(reason) = self
                .infeasible(job, group, pos)
                .or_else(|| self.distinct(job, group, node))
            {
                f.nodes_filtered += 1;
                *f.constraint_filtered.entry(reason).or_default() += 1;
                continue;
            }
            self.ensure_usage(node);
            let usage = &self.usage[&node.id];
            match fits(node, usage, need, static_ports) {
                Ok(()) => {
                    let score = self.score(job, group, node, usage, need);
                    if best
                        .as_ref()
                        .is_none_or(|(s, b)| score > *s || (score == *s && node.id < b.id))
                    {
                        best = Some((score, node));
                    }
                    found += 1;
                    if found >= limit {
                        break;
                    }
                }
                Err(m) => {
                    *f.dimension_exhausted.entry(m.dimension()).or_default() += 1;
                    if nearest.as_ref().is_none_or(|(s, _)| m.shortfall() < *s) {
                        nearest = Some((
                            m.shortfall(),
                            format!(
                                "node {} ({}) lacks {m}",
                                node.name,
                                &node.id[..node.id.len().min(8)]
                            ),
                        ));
                    }
                }
            }
        }
        if req.only.is_none() && n > 0 {
            self.cursor = (self.cursor + visited) % n;
        }
        match best {
            Some((_, node)) => Ok(node),
            None => {
                f.nearest_miss = match nearest {
                    Some((_, msg)) => msg,
                    None if n == 0 => "no nodes are registered".into(),
                    None => "every node was filtered out".into(),
                };
                Err(std::mem::take(f))
            }
        }
    }

    /// The group's ports on `node`, each on the address of its host network: the static
    /// ones as asked, dynamic ones picked at random from the node's range, none held there
    /// already (nor a value one of the group's static ports has). `to` is the port inside
    /// the allocation's network: 0 and -1 both mean the host port's value (Nomad).
    fn assign_ports(
        &mut self,
        node: &Node,
        group: &TaskGroup,
        static_ports: &[Port],
        mut f: PlacementFailure,
    ) -> Result<Vec<AllocatedPort>, PlacementFailure> {
        let to = |p: &Port, value: u16| if p.to <= 0 { value as i32 } else { p.to };
        // Feasibility refused nodes without the host networks the ports name.
        let host_ip = |p: &Port| node.host_network_ip(&p.host_network).unwrap_or_default();
        let mut ports = Vec::new();
        self.ensure_usage(node);
        let usage = &self.usage[&node.id];
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
                    f.dimension_exhausted
                        .insert("network: dynamic port range exhausted".into(), 1);
                    f.nearest_miss = format!("node {} has no free dynamic port", node.name);
                    return Err(f);
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
        node: &Node,
        group: &TaskGroup,
    ) -> Result<BTreeMap<String, Resources>, PlacementFailure> {
        let mut free = self.usage(node).free_cores(node).into_iter();
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
        self.nodes.clone()
    }

    /// Whether `group` can ever run on `node` (feasibility only, not fit).
    pub fn feasible_on(&mut self, job: &Job, group: &TaskGroup, node: &Node) -> Option<String> {
        match self.nodes.iter().position(|x| x.id == node.id) {
            Some(pos) => self.infeasible(job, group, pos),
            None => Some("node is gone".into()),
        }
    }
}
