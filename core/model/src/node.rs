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

    /// The resources left for allocations once the reserved part is taken out.
    pub fn allocatable(&self) -> NodeResources {
        NodeResources {
            cpu: self.resources.cpu.saturating_sub(self.reserved.cpu),
            memory_mb: self
                .resources
                .memory_mb
                .saturating_sub(self.reserved.memory_mb),
            disk_mb: self.resources.disk_mb.saturating_sub(self.reserved.disk_mb),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct NodeResources {
    /// Total CPU in MHz (cores x clock).
    #[serde(rename = "CPU")]
    pub cpu: u64,
    #[serde(rename = "MemoryMB")]
    pub memory_mb: u64,
    #[serde(rename = "DiskMB")]
    pub disk_mb: u64,
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
