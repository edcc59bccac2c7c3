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
    /// Whether ports on the default host network are bound on every address of the node
    /// (the client's `bind_wildcard_default_host_network`, in effect only while no
    /// `host_network` is configured, as in Nomad). None: a node registered before this was
    /// reported, which Nomad's default (true) describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_wildcard_default_host_network: Option<bool>,
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
            node_networks: Vec::new(),
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

    /// Whether a port on the default host network holds that port on every address.
    pub fn binds_wildcard(&self) -> bool {
        self.bind_wildcard_default_host_network.unwrap_or(true)
    }

    /// Whether the node offers network mode `mode` ("host", "bridge", "cni/<name>"):
    /// "host" and "none" always (a node without an address reserves ports on 127.0.0.1),
    /// others when the node reports them in `NodeResources.Networks`, as Nomad's
    /// network checker decides.
    pub fn has_network_mode(&self, mode: &str) -> bool {
        let mode = if mode.is_empty() { "host" } else { mode };
        matches!(mode, "host" | "none") || self.resources.networks.iter().any(|n| n.mode == mode)
    }

    /// The address ports on host network `name` are bound to: the first address with that
    /// alias in `NodeResources.NodeNetworks` ("" means "default"). A node that reports no
    /// node networks (an older client) has only the default one, at [`Node::address`].
    pub fn host_network_address(&self, name: &str) -> Option<&NodeNetworkAddress> {
        let name = if name.is_empty() {
            DEFAULT_HOST_NETWORK
        } else {
            name
        };
        self.resources
            .node_networks
            .iter()
            .flat_map(|n| &n.addresses)
            .find(|a| a.alias == name)
    }

    /// The host IP a port on host network `name` gets, None when the node lacks that
    /// network. The default one always resolves: to its alias's address, else (an older
    /// client, or no address on the default route's interface) to [`Node::address`].
    pub fn host_network_ip(&self, name: &str) -> Option<&str> {
        match self.host_network_address(name) {
            Some(a) => Some(a.address.as_str()),
            None if name.is_empty() || name == DEFAULT_HOST_NETWORK => Some(self.address()),
            None => None,
        }
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
    /// The node's network modes (Nomad's `NodeResources.Networks`): one "host" entry per
    /// address, "bridge" when bridge networking works here, "cni/<name>" per CNI network.
    #[serde(rename = "Networks")]
    pub networks: Vec<NodeNetwork>,
    /// The node's interfaces and their addresses by host network (Nomad's
    /// `NodeResources.NodeNetworks`): what a port's `host_network` selects.
    #[serde(rename = "NodeNetworks")]
    pub node_networks: Vec<NodeNetworkResource>,
    /// The core ids tasks may reserve (Nomad's `ReservableCpuCores`); empty in records of
    /// older clients (then `cpu.numcores` counts from 0). In `ReservedResources`: the cores
    /// the operator keeps for the host.
    #[serde(rename = "ReservableCpuCores")]
    pub reservable_cores: Vec<u16>,
}

/// One of the node's network modes (Nomad's `NetworkResource` in `NodeResources`): an
/// address in mode "host", or just the mode ("bridge", "cni/<name>").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetwork {
    /// "host", "bridge" or "cni/<name>".
    pub mode: String,
    /// The interface: `eth0`.
    pub device: String,
    /// The address with its prefix: `10.0.0.5/32` as Nomad writes it.
    #[serde(rename = "CIDR")]
    pub cidr: String,
    #[serde(rename = "IP")]
    pub ip: String,
}

/// The host network ports go to when they name none.
pub const DEFAULT_HOST_NETWORK: &str = "default";

/// One interface of the node (Nomad's `NodeNetworkResource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetworkResource {
    /// "host" (an interface), or "bridge" (the bridge allocations attach to).
    pub mode: String,
    pub device: String,
    pub mac_address: String,
    pub speed: u32,
    pub addresses: Vec<NodeNetworkAddress>,
}

/// One address of an interface under one host network name (Nomad's `NodeNetworkAddress`):
/// an address in two host networks is listed twice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodeNetworkAddress {
    /// "ipv4" or "ipv6".
    pub family: String,
    /// The host network's name ("default" for the default route's interface).
    pub alias: String,
    pub address: String,
    /// Ports no allocation may take on this address (`host_network { reserved_ports }`, as
    /// written: `22,8000-8100`).
    pub reserved_ports: String,
    pub gateway: String,
}

/// The most ports one port list may name (a range counts each of its ports).
pub const MAX_PORT_LIST: usize = 65536;

/// Why a port list (`"22,80,8000-8100"`) is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("port list {list:?}: {why}")]
pub struct PortListError {
    pub list: String,
    pub why: String,
}

/// Parses a port list as Nomad writes one (`reserved_ports = "22,80,8000-8100"`): ports
/// and inclusive ranges, comma-separated, ascending without duplicates.
pub fn parse_port_list(list: &str) -> Result<Vec<u16>, PortListError> {
    let err = |why: String| PortListError {
        list: list.chars().take(256).collect(),
        why,
    };
    let mut out = std::collections::BTreeSet::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| err(format!("{part:?} is not a port (1-65535) or a range a-b")))
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(part)?, num(part)?),
        };
        if a > b {
            return Err(err(format!("the range {part:?} runs backwards")));
        }
        out.extend(a..=b);
        if out.len() > MAX_PORT_LIST {
            return Err(err("too many ports".into()));
        }
    }
    Ok(out.into_iter().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists_parse_as_nomad_writes_them() {
        assert_eq!(
            parse_port_list("22, 80,8000-8002,80").unwrap(),
            [22, 80, 8000, 8001, 8002]
        );
        assert_eq!(parse_port_list("").unwrap(), Vec::<u16>::new());
        for bad in ["0", "65536", "x", "9-1", "1-2-3"] {
            assert!(parse_port_list(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_port_list("1-65535").unwrap().len(), 65535);
    }

    #[test]
    fn host_networks_resolve_to_their_first_address() {
        let mut n = Node::default();
        assert_eq!(n.host_network_ip(""), Some("127.0.0.1"));
        assert_eq!(n.host_network_ip("default"), Some("127.0.0.1"));
        assert_eq!(n.host_network_ip("public"), None);
        n.resources.node_networks.push(NodeNetworkResource {
            mode: "host".into(),
            device: "eth0".into(),
            addresses: vec![
                NodeNetworkAddress {
                    alias: "public".into(),
                    address: "203.0.113.1".into(),
                    ..Default::default()
                },
                NodeNetworkAddress {
                    alias: "default".into(),
                    address: "10.0.0.1".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        });
        assert_eq!(n.host_network_ip("public"), Some("203.0.113.1"));
        assert_eq!(n.host_network_ip(""), Some("10.0.0.1"));
        assert!(
            n.binds_wildcard(),
            "Nomad's default for a node that says nothing"
        );
        assert!(n.has_network_mode("host") && n.has_network_mode("none"));
        assert!(!n.has_network_mode("bridge"));
        let json = serde_json::to_value(&n).unwrap();
        assert_eq!(
            json["NodeResources"]["NodeNetworks"][0]["Addresses"][0]["Alias"],
            "public"
        );
        assert!(json.get("BindWildcardDefaultHostNetwork").is_none());
    }
}
