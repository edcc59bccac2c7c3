//! The node's network: the interface the operator names (`client { network_interface }`) or
//! else the one of the default route, and its IPv4 addresses, as Nomad's
//! `NodeResources.Networks` (mode "host") and attribute `unique.network.ip-address`; and
//! every interface's addresses under the host networks they belong to (`client {
//! host_network "NAME" { cidr interface reserved_ports } }`, plus "default" for the
//! default interface), as Nomad's `NodeResources.NodeNetworks`.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use drover_model::{DEFAULT_HOST_NETWORK, NodeNetwork, NodeNetworkAddress, NodeNetworkResource};

/// At most this many interfaces are reported in `NodeNetworks`.
const MAX_INTERFACES: usize = 64;

/// A named host network (`client { host_network "NAME" { ... } }`): the addresses in any of
/// its CIDRs, on its interface when one is named.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNetwork {
    pub cidrs: Vec<Cidr>,
    pub interface: Option<String>,
    /// Ports no allocation may take on these addresses, as written (`22,8000-8100`).
    pub reserved_ports: String,
}

/// An address prefix: `10.0.0.0/8`, `fd00::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub ip: IpAddr,
    pub prefix: u8,
}

/// Why a CIDR is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address prefix like 10.0.0.0/8")]
pub struct CidrError(pub String);

impl std::str::FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let bad = || CidrError(s.chars().take(64).collect());
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { ip, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, addr: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u8) {
            match a {
                IpAddr::V4(v) => (u32::from(v) as u128, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, width), (a, w)) = (bits(self.ip), bits(addr));
        if width != w {
            return false;
        }
        let shift = u32::from(width - self.prefix);
        self.prefix == 0 || net.checked_shr(shift) == a.checked_shr(shift)
    }
}

/// The host networks address `addr` of interface `iface` belongs to, by name; "default"
/// when `iface` is the default interface.
pub fn aliases(
    iface: &str,
    addr: IpAddr,
    host_networks: &BTreeMap<String, HostNetwork>,
    default_iface: &str,
) -> Vec<String> {
    let mut out: Vec<String> = host_networks
        .iter()
        .filter(|(_, h)| h.cidrs.is_empty() || h.cidrs.iter().any(|c| c.contains(addr)))
        .filter(|(_, h)| h.interface.as_deref().is_none_or(|i| i == iface))
        .map(|(name, _)| name.clone())
        .collect();
    if iface == default_iface && !out.iter().any(|a| a == DEFAULT_HOST_NETWORK) {
        out.push(DEFAULT_HOST_NETWORK.to_string());
    }
    out
}

/// Every interface with an address in a host network, as Nomad's `NodeNetworks`: IPv4
/// addresses before IPv6 ones, link-local addresses left out. `addrs` is each interface's
/// addresses in the kernel's order.
pub fn node_networks(
    addrs: &BTreeMap<String, (String, Vec<IpAddr>)>,
    host_networks: &BTreeMap<String, HostNetwork>,
    default_iface: &str,
) -> Vec<NodeNetworkResource> {
    let mut out = Vec::new();
    for (iface, (mac, ips)) in addrs.iter().take(MAX_INTERFACES) {
        let mut ordered: Vec<IpAddr> = ips.iter().copied().filter(|i| i.is_ipv4()).collect();
        ordered.extend(ips.iter().copied().filter(|i| i.is_ipv6()));
        let mut addresses = Vec::new();
        for ip in ordered.into_iter().filter(|ip| !link_local(*ip)) {
            for alias in aliases(iface, ip, host_networks, default_iface) {
                addresses.push(NodeNetworkAddress {
                    family: if ip.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                    reserved_ports: host_networks
                        .get(&alias)
                        .map(|h| h.reserved_ports.clone())
                        .unwrap_or_default(),
                    alias,
                    address: ip.to_string(),
                    gateway: String::new(),
                });
            }
        }
        if !addresses.is_empty() {
            out.push(NodeNetworkResource {
                mode: "host".into(),
                device: iface.clone(),
                mac_address: mac.clone(),
                speed: 1000,
                addresses,
            });
        }
    }
    out
}

fn link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => v.is_link_local(),
        IpAddr::V6(v) => v.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// Every interface's MAC address and IP addresses (at most [`MAX_ADDRESSES`] each).
pub fn all_interfaces() -> Result<BTreeMap<String, (String, Vec<IpAddr>)>, nix::Error> {
    let mut out: BTreeMap<String, (String, Vec<IpAddr>)> = BTreeMap::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        if out.len() >= MAX_INTERFACES && !out.contains_key(&ifa.interface_name) {
            continue;
        }
        let entry = out.entry(ifa.interface_name.clone()).or_default();
        let Some(a) = ifa.address.as_ref() else {
            continue;
        };
        if let Some(link) = a.as_link_addr()
            && let Some(mac) = link.addr()
        {
            entry.0 = mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":");
        }
        let ip = a
            .as_sockaddr_in()
            .map(|s| IpAddr::V4(s.ip()))
            .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())));
        if let Some(ip) = ip
            && !entry.1.contains(&ip)
            && entry.1.len() < MAX_ADDRESSES
        {
            entry.1.push(ip);
        }
    }
    Ok(out)
}

/// The interface used when the node has no default route (Nomad does the same).
pub const LOOPBACK: &str = "lo";

/// At most this many addresses of one interface are reported.
const MAX_ADDRESSES: usize = 16;

/// The interface of the default IPv4 route in /proc/net/route's text: the up route to
/// 0.0.0.0/0 with the lowest metric. None when there is none.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    const RTF_UP: u32 = 0x1;
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            let metric: u32 = f[6].parse().ok()?;
            let default = f[1] == "00000000" && f[7] == "00000000" && flags & RTF_UP != 0;
            default.then(|| (metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The IPv4 addresses of interface `name`, in the order the kernel lists them.
pub fn interface_ipv4(name: &str) -> Result<Vec<Ipv4Addr>, nix::Error> {
    let mut out = Vec::new();
    for ifa in nix::ifaddrs::getifaddrs()? {
        if ifa.interface_name != name {
            continue;
        }
        if let Some(sin) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) {
            let ip = sin.ip();
            if !out.contains(&ip) && out.len() < MAX_ADDRESSES {
                out.push(ip);
            }
        }
    }
    Ok(out)
}

/// The node's networks as Nomad reports them: one per IPv4 address of `device`.
pub fn networks_of(device: &str, addrs: &[Ipv4Addr]) -> Vec<NodeNetwork> {
    addrs
        .iter()
        .map(|ip| NodeNetwork {
            mode: "host".into(),
            device: device.to_string(),
            cidr: format!("{ip}/32"),
            ip: ip.to_string(),
        })
        .collect()
}

/// The node's networks: `Networks` (mode "host", the addresses of `configured`, the
/// operator's `network_interface`, which must exist and carry an IPv4 address; without one,
/// the default route's interface, or the loopback when there is no default route) and
/// `NodeNetworks` (every interface's addresses by host network).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeAddresses {
    pub networks: Vec<NodeNetwork>,
    pub node_networks: Vec<NodeNetworkResource>,
}

/// Fingerprints the node's networks into `attrs` and returns them.
pub fn fingerprint(
    configured: Option<&str>,
    host_networks: &BTreeMap<String, HostNetwork>,
    attrs: &mut BTreeMap<String, String>,
) -> NodeAddresses {
    let device = match configured {
        Some(d) => d.to_string(),
        None => std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| default_route_interface(&t))
            .unwrap_or_else(|| LOOPBACK.to_string()),
    };
    let node_networks = match all_interfaces() {
        Ok(all) => node_networks(&all, host_networks, &device),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the node's interfaces");
            Vec::new()
        }
    };
    let addrs = match interface_ipv4(&device) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(interface = %device, error = %e, "cannot list the node's addresses");
            Vec::new()
        }
    };
    if addrs.is_empty() {
        tracing::warn!(
            interface = %device,
            "the network interface has no IPv4 address: ports are reserved on 127.0.0.1"
        );
        return NodeAddresses {
            networks: Vec::new(),
            node_networks,
        };
    }
    attrs.insert("unique.network.ip-address".into(), addrs[0].to_string());
    NodeAddresses {
        networks: networks_of(&device, &addrs),
        node_networks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0
down0\t00000000\t0100000A\t0002\t0\t0\t1\t00000000\t0\t0\t0
";

    #[test]
    fn the_default_route_with_the_lowest_metric_wins() {
        assert_eq!(default_route_interface(ROUTES).as_deref(), Some("eth0"));
    }

    #[test]
    fn no_default_route_means_none() {
        let only_local = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                          eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(default_route_interface(only_local), None);
        assert_eq!(default_route_interface("garbage\n\u{0}\n"), None);
    }

    #[test]
    fn the_loopback_has_127_0_0_1() {
        let addrs = interface_ipv4(LOOPBACK).unwrap();
        assert!(addrs.contains(&Ipv4Addr::LOCALHOST), "{addrs:?}");
        let mut attrs = BTreeMap::new();
        let found = fingerprint(Some(LOOPBACK), &BTreeMap::new(), &mut attrs);
        let nets = &found.networks;
        assert_eq!(nets[0].device, "lo");
        assert_eq!(nets[0].mode, "host");
        assert_eq!(nets[0].cidr, format!("{}/32", nets[0].ip));
        assert_eq!(attrs["unique.network.ip-address"], nets[0].ip);
        let lo = found
            .node_networks
            .iter()
            .find(|n| n.device == "lo")
            .expect("the loopback in NodeNetworks");
        assert!(
            lo.addresses
                .iter()
                .any(|a| a.alias == "default" && a.address == "127.0.0.1" && a.family == "ipv4"),
            "{lo:?}"
        );
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.168.1.1".parse().unwrap()));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let one: Cidr = "10.0.0.5/32".parse().unwrap();
        assert!(one.contains("10.0.0.5".parse().unwrap()));
        assert!(!one.contains("10.0.0.6".parse().unwrap()));
        for bad in ["10.0.0.0", "10.0.0.0/33", "x/8", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses_are_listed_under_their_host_networks() {
        let hn = |cidr: &str, iface: Option<&str>, reserved: &str| HostNetwork {
            cidrs: cidr
                .split(',')
                .filter(|c| !c.is_empty())
                .map(|c| c.parse().unwrap())
                .collect(),
            interface: iface.map(str::to_string),
            reserved_ports: reserved.into(),
        };
        let host_networks: BTreeMap<String, HostNetwork> = [
            ("private".to_string(), hn("10.0.0.0/8", None, "22")),
            ("public".to_string(), hn("", Some("eth1"), "")),
        ]
        .into();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let addrs: BTreeMap<String, (String, Vec<IpAddr>)> = [
            (
                "eth0".to_string(),
                (
                    "02:00:00:00:00:01".to_string(),
                    vec![ip("fe80::1"), ip("2001:db8::5"), ip("10.0.0.5")],
                ),
            ),
            ("eth1".to_string(), (String::new(), vec![ip("203.0.113.7")])),
            ("eth2".to_string(), (String::new(), vec![ip("192.168.9.9")])),
        ]
        .into();
        let nets = node_networks(&addrs, &host_networks, "eth0");
        assert_eq!(nets.len(), 2, "eth2 is in no host network: {nets:?}");
        let eth0: Vec<(&str, &str)> = nets[0]
            .addresses
            .iter()
            .map(|a| (a.alias.as_str(), a.address.as_str()))
            .collect();
        assert_eq!(
            eth0,
            [
                ("private", "10.0.0.5"),
                ("default", "10.0.0.5"),
                ("default", "2001:db8::5")
            ]
        );
        assert_eq!(nets[0].addresses[0].reserved_ports, "22");
        assert_eq!(nets[0].mac_address, "02:00:00:00:00:01");
        assert_eq!(nets[1].device, "eth1");
        assert_eq!(nets[1].addresses[0].alias, "public");
    }

    #[test]
    fn an_unknown_interface_reports_no_network() {
        let mut attrs = BTreeMap::new();
        assert!(
            fingerprint(Some("nosuchif0"), &BTreeMap::new(), &mut attrs)
                .networks
                .is_empty()
        );
        assert!(!attrs.contains_key("unique.network.ip-address"));
    }
}
