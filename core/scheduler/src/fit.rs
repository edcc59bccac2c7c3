//! The fit check: does a set of allocations fit a node (CPU, memory, disk, cores, ports)?
//! The scheduler and the plan applier use the same function.

use std::collections::BTreeSet;

use drover_model::{Allocation, Node, Resources};

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
    pub ports: BTreeSet<u16>,
    /// A port two allocations both hold (a fit failure).
    pub collision: Option<u16>,
}

impl Usage {
    pub fn of<'a>(allocs: impl IntoIterator<Item = &'a Allocation>) -> Usage {
        let mut u = Usage::default();
        for a in allocs.into_iter().filter(|a| a.is_active()) {
            u.add(a);
        }
        u
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
            if !self.ports.insert(p.value) && self.collision.is_none() {
                self.collision = Some(p.value);
            }
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
            self.ports.remove(&p.value);
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

/// Would `usage` plus `need` (and `ports`) fit `node`?
pub fn fits(node: &Node, usage: &Usage, need: &Resources, ports: &[u16]) -> Result<(), Misfit> {
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
    if let Some(p) = ports.iter().find(|p| usage.ports.contains(p)) {
        return Err(Misfit::PortTaken(*p));
    }
    Ok(())
}

/// The fit check of a node's whole set of (active) allocations: the plan applier's check.
pub fn fit<'a>(
    node: &Node,
    allocs: impl IntoIterator<Item = &'a Allocation>,
) -> Result<(), Misfit> {
    fits(node, &Usage::of(allocs), &Resources::ZERO, &[])
}
