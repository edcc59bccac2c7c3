//! The fit check: does a set of allocations fit a node (CPU, memory, disk, cores, ports)?
//! The scheduler and the plan applier use the same function.
//!
//! Ports are held per host address: the same port may be taken once on each of a node's
//! addresses (host networks), except on the default host network of a node that binds it on
//! the wildcard address (`bind_wildcard_default_host_network`, Nomad's default): such a port
//! is held on every address at once.

use std::collections::{BTreeMap, BTreeSet};

use drover_model::{Allocation, Node, Port, Resources};

/// Where a port is held.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum PortHost {
    /// Every address of the node (the default host network bound on the wildcard).
    Any,
    /// One address.
    Ip(String),
}

/// What active allocations hold on a node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    pub cpu: u64,
    pub memory_mb: u64,
    pub disk_mb: u64,
    /// Whole cores held, with or without ids.
    pub cores: u32,
    /// The core ids held (allocations placed by older servers hold cores without ids).
    pub core_ids: BTreeSet<u16>,
    /// A core id two allocations both hold (a fit failure).
    pub core_collision: Option<u16>,
    /// The ports held, by port: where, and by how many holders (allocations, and the
    /// host networks' `reserved_ports`).
    pub ports: BTreeMap<u16, BTreeMap<PortHost, u32>>,
    /// A port two holders both hold (a fit failure).
    pub collision: Option<u16>,
    /// The node's default host network address when the node binds it on the wildcard:
    /// ports on it are held on every address.
    wildcard_ip: Option<String>,
}

impl Usage {
    /// Nothing held yet on `node` but its host networks' reserved ports.
    pub fn on(node: &Node) -> Usage {
        let mut u = Usage {
            wildcard_ip: node
                .binds_wildcard()
                .then(|| node.host_network_ip("").unwrap_or_default().to_string()),
            ..Usage::default()
        };
        for a in node
            .resources
            .node_networks
            .iter()
            .flat_map(|n| &n.addresses)
        {
            // The client checked the list; one that does not parse reserves nothing.
            for p in drover_model::parse_port_list(&a.reserved_ports).unwrap_or_default() {
                let host = u.host_of(&a.address);
                u.hold(host, p);
            }
        }
        u
    }

    /// What `node`'s active allocations among `allocs` hold.
    pub fn of<'a>(node: &Node, allocs: impl IntoIterator<Item = &'a Allocation>) -> Usage {
        let mut u = Usage::on(node);
        for a in allocs.into_iter().filter(|a| a.is_active()) {
            u.add(a);
        }
        u
    }

    /// Where a port bound on `ip` is held.
    pub fn host_of(&self, ip: &str) -> PortHost {
        match &self.wildcard_ip {
            Some(w) if w == ip => PortHost::Any,
            _ => PortHost::Ip(ip.to_string()),
        }
    }

    /// Whether `port` is free at `host`: nobody holds it there, nor on every address (and,
    /// for every address, nowhere).
    pub fn port_free(&self, host: &PortHost, port: u16) -> bool {
        match self.ports.get(&port) {
            None => true,
            Some(held) => match host {
                PortHost::Any => held.is_empty(),
                PortHost::Ip(_) => !held.contains_key(host) && !held.contains_key(&PortHost::Any),
            },
        }
    }

    fn hold(&mut self, host: PortHost, port: u16) {
        if !self.port_free(&host, port) && self.collision.is_none() {
            self.collision = Some(port);
        }
        *self.ports.entry(port).or_default().entry(host).or_default() += 1;
    }

    fn release(&mut self, host: PortHost, port: u16) {
        if let Some(held) = self.ports.get_mut(&port) {
            if let Some(n) = held.get_mut(&host) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&host);
                }
            }
            if held.is_empty() {
                self.ports.remove(&port);
            }
        }
    }

    pub fn add(&mut self, a: &Allocation) {
        let r = a.resources();
        self.cpu += r.cpu;
        self.memory_mb += r.memory_mb;
        self.disk_mb += r.disk_mb;
        self.cores += r.cores;
        for id in a.task_resources.values().flat_map(|t| &t.reserved_cores) {
            if !self.core_ids.insert(*id) && self.core_collision.is_none() {
                self.core_collision = Some(*id);
            }
        }
        for p in &a.shared_resources.ports {
            let host = self.host_of(&p.host_ip);
            self.hold(host, p.value);
        }
    }

    pub fn remove(&mut self, a: &Allocation) {
        let r = a.resources();
        self.cpu = self.cpu.saturating_sub(r.cpu);
        self.memory_mb = self.memory_mb.saturating_sub(r.memory_mb);
        self.disk_mb = self.disk_mb.saturating_sub(r.disk_mb);
        self.cores = self.cores.saturating_sub(r.cores);
        for id in a.task_resources.values().flat_map(|t| &t.reserved_cores) {
            self.core_ids.remove(id);
        }
        for p in &a.shared_resources.ports {
            let host = self.host_of(&p.host_ip);
            self.release(host, p.value);
        }
    }

    /// Cores held without ids (placed by servers that did not assign them).
    fn unnamed_cores(&self) -> usize {
        (self.cores as usize).saturating_sub(self.core_ids.len())
    }

    /// The node's reservable cores no allocation holds, ascending: those the next
    /// placement may take (the cores held without ids are counted, not named).
    pub fn free_cores(&self, node: &Node) -> Vec<u16> {
        let mut free: Vec<u16> = node
            .reservable_cores()
            .into_iter()
            .filter(|c| !self.core_ids.contains(c))
            .collect();
        free.truncate(free.len().saturating_sub(self.unnamed_cores()));
        free
    }
}

/// Why a node cannot take an allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misfit {
    /// Exhausted dimension ("cpu", "memory", "disk", "cores"), with what was needed in all
    /// and what the node has.
    Exhausted {
        dimension: &'static str,
        needed: u64,
        capacity: u64,
    },
    /// A static port another allocation holds.
    PortTaken(u16),
    /// A core id two allocations hold.
    CoreTaken(u16),
}

impl Misfit {
    pub fn dimension(&self) -> String {
        match self {
            Misfit::Exhausted { dimension, .. } => dimension.to_string(),
            Misfit::PortTaken(p) => format!("network: reserved port {p} collision"),
            Misfit::CoreTaken(_) => "cores".into(),
        }
    }

    /// How far from fitting, for choosing the nearest miss.
    pub fn shortfall(&self) -> u64 {
        match self {
            Misfit::Exhausted {
                needed, capacity, ..
            } => needed - capacity,
            Misfit::PortTaken(_) | Misfit::CoreTaken(_) => u64::MAX / 2,
        }
    }
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Misfit::Exhausted {
                dimension,
                needed,
                capacity,
            } => {
                let unit = match *dimension {
                    "cpu" => " MHz",
                    "cores" => " cores",
                    _ => " MB",
                };
                write!(f, "{dimension}: needs {needed}{unit}, has {capacity}{unit}")
            }
            Misfit::PortTaken(p) => write!(f, "port {p} is already taken"),
            Misfit::CoreTaken(c) => write!(f, "core {c} is already reserved"),
        }
    }
}

/// Would `usage` plus `need` (and the static `ports`, each on its host network) fit `node`?
pub fn fits(node: &Node, usage: &Usage, need: &Resources, ports: &[Port]) -> Result<(), Misfit> {
    let cap = node.allocatable();
    let check = |dimension: &'static str, used: u64, need: u64, capacity: u64| {
        if used + need > capacity {
            Err(Misfit::Exhausted {
                dimension,
                needed: used + need,
                capacity,
            })
        } else {
            Ok(())
        }
    };
    check("cpu", usage.cpu, need.cpu, cap.cpu)?;
    check("memory", usage.memory_mb, need.memory_mb, cap.memory_mb)?;
    if cap.disk_mb > 0 {
        check("disk", usage.disk_mb, need.disk_mb, cap.disk_mb)?;
    }
    if need.cores > 0 || usage.cores > 0 {
        let reservable = node.reservable_cores().len() as u64;
        let free = usage.free_cores(node).len() as u64;
        // Held: every reservable core that is not free (ids the node no longer lists
        // count as held too, through `free`).
        check(
            "cores",
            reservable.saturating_sub(free).max(usage.cores as u64),
            need.cores as u64,
            reservable,
        )?;
        if let Some(c) = usage.core_collision {
            return Err(Misfit::CoreTaken(c));
        }
    }
    if let Some(p) = usage.collision {
        return Err(Misfit::PortTaken(p));
    }
    for p in ports {
        // A host network the node lacks made it infeasible before fit is asked.
        let free = node
            .host_network_ip(&p.host_network)
            .is_some_and(|ip| usage.port_free(&usage.host_of(ip), p.value));
        if !free {
            return Err(Misfit::PortTaken(p.value));
        }
    }
    Ok(())
}

/// The fit check of a node's whole set of (active) allocations: the plan applier's check.
pub fn fit<'a>(
    node: &Node,
    allocs: impl IntoIterator<Item = &'a Allocation>,
) -> Result<(), Misfit> {
    fits(node, &Usage::of(node, allocs), &Resources::ZERO, &[])
}
