use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Index, SchedulingEligibility, UnixNanos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    #[default]
    Initializing,
    Ready,
    Down,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Initializing => "initializing",
            NodeStatus::Ready => "ready",
            NodeStatus::Down => "down",
        }
    }
}

/// A machine that runs allocations: what its client agent fingerprinted and registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    /// Issued by the servers at the node's first registration; never shown by the API.
    #[serde(rename = "SecretID")]
    pub secret_id: String,
    pub name: String,
    pub datacenter: String,
    pub node_class: String,
    pub node_pool: String,
    pub status: NodeStatus,
    pub status_description: String,
    pub scheduling_eligibility: SchedulingEligibility,
    /// Fingerprinted attributes: `cpu.numcores`, `kernel.name`, `unique.hostname`, ...
    pub attributes: BTreeMap<String, String>,
    pub meta: BTreeMap<String, String>,
    #[serde(rename = "NodeResources")]
    pub resources: NodeResources,
    /// What the operator keeps for the host itself.
    #[serde(rename = "ReservedResources")]
    pub reserved: NodeResources,
    pub drivers: BTreeMap<String, DriverInfo>,
    /// The host ports the scheduler may assign to dynamic ports (inclusive; 0 = Nomad's
    /// default 20000-32000).
    pub min_dynamic_port: u16,
    pub max_dynamic_port: u16,
    /// Host paths the operator offers to jobs (`client { host_volume "NAME" { ... } }`).
    pub host_volumes: BTreeMap<String, HostVolume>,
    #[serde(rename = "HTTPAddr")]
    pub http_addr: String,
    /// Draining is not implemented yet; always false.
    pub drain: bool,
    pub status_updated_at: UnixNanos,
    pub create_index: Index,
    pub modify_index: Index,
}

impl Node {
    /// The dynamic port range of this node.
    pub fn dynamic_ports(&self) -> std::ops::RangeInclusive<u16> {
        let lo = if self.min_dynamic_port == 0 {
            20000
        } else {
            self.min_dynamic_port
        };
        let hi = if self.max_dynamic_port == 0 {
            32000
        } else {
            self.max_dynamic_port
        };
        lo..=hi.max(lo)
    }

    pub fn is_ready(&self) -> bool {
        self.status == NodeStatus::Ready
            && self.scheduling_eligibility == SchedulingEligibility::Eligible
    }

    /// The CPU, memory and disk left for allocations once the reserved part is taken out.
    pub fn allocatable(&self) -> NodeResources {
        NodeResources {
            cpu: self.resources.cpu.saturating_sub(self.reserved.cpu),
            memory_mb: self
                .resources
                .memory_mb
                .saturating_sub(self.reserved.memory_mb),
            disk_mb: self.resources.disk_mb.saturating_sub(self.reserved.disk_mb),
            // Scalars only (the scheduler's hot path): see `address` and `reservable_cores`.
            networks: Vec::new(),
            reservable_cores: Vec::new(),
        }
    }

    /// The node's address for ports: its first network's IP (Nomad's `HostIP`), or
    /// 127.0.0.1 when it reports none.
    pub fn address(&self) -> &str {
        self.resources
            .networks
            .iter()
            .map(|n| n.ip.as_str())
            .find(|ip| !ip.is_empty())
            .unwrap_or("127.0.0.1")
    }

    /// The core ids tasks may reserve: the fingerprinted list, or (a node registered by an
    /// older client) `0..cpu.numcores`; less the operator's reserved cores.
    pub fn reservable_cores(&self) -> Vec<u16> {
        let all: Vec<u16> = if self.resources.reservable_cores.is_empty() {
            let n: u16 = self
                .attributes
                .get("cpu.numcores")
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            (0..n).collect()
        } else {
            self.resources.reservable_cores.clone()
        };
        all.into_iter()
            .filter(|c| !self.reserved.reservable_cores.contains(c))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeResources {
    /// Total CPU in MHz (cores x clock).
    #[serde(rename = "CPU")]
    pub cpu: u64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
    /// The node's addresses (Nomad's `NodeResources.Networks`, mode "host").
    #[serde(rename = "Networks")]
    pub networks: Vec<NodeNetwork>,
    /// The core ids tasks may reserve (Nomad's `ReservableCpuCores`); empty in records of
    /// older clients (then `cpu.numcores` counts from 0). In `ReservedResources`: the cores
    /// the operator keeps for the host.
    #[serde(rename = "ReservableCpuCores")]
    pub reservable_cores: Vec<u16>,
}

/// One of the node's network addresses (Nomad's `NetworkResource` in `NodeResources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetwork {
    /// "host".
    pub mode: String,
    /// The interface: `eth0`.
    pub device: String,
    /// The address with its prefix: `10.0.0.5/32` as Nomad writes it.
    #[serde(rename = "CIDR")]
    pub cidr: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

/// A task driver as the node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverInfo {
    pub detected: bool,
    pub healthy: bool,
    pub health_description: String,
    pub attributes: BTreeMap<String, String>,
}

/// A host path offered to jobs as a volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostVolume {
    pub path: String,
    pub read_only: bool,
}
