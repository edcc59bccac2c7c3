//! The node's network: the interface the operator names (`client { network_interface }`) or
//! else the one of the default route, and its IPv4 addresses, as Nomad's
//! `NodeResources.Networks` (mode "host") and attribute `unique.network.ip-address`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use drover_model::NodeNetwork;

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

/// Fingerprints the node's networks into `attrs` and returns them: `configured` is the
/// operator's `network_interface` (it must exist and carry an IPv4 address); without one,
/// the default route's interface, or the loopback when there is no default route.
pub fn fingerprint(
    configured: Option<&str>,
    attrs: &mut BTreeMap<String, String>,
) -> Vec<NodeNetwork> {
    let device = match configured {
        Some(d) => d.to_string(),
        None => std::fs::read_to_string("/proc/net/route")
            .ok()
            .and_then(|t| default_route_interface(&t))
            .unwrap_or_else(|| LOOPBACK.to_string()),
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
        return Vec::new();
    }
    attrs.insert("unique.network.ip-address".into(), addrs[0].to_string());
    networks_of(&device, &addrs)
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
        let nets = fingerprint(Some(LOOPBACK), &mut attrs);
        assert_eq!(nets[0].device, "lo");
        assert_eq!(nets[0].mode, "host");
        assert_eq!(nets[0].cidr, format!("{}/32", nets[0].ip));
        assert_eq!(attrs["unique.network.ip-address"], nets[0].ip);
    }

    #[test]
    fn an_unknown_interface_reports_no_network() {
        let mut attrs = BTreeMap::new();
        assert!(fingerprint(Some("nosuchif0"), &mut attrs).is_empty());
        assert!(!attrs.contains_key("unique.network.ip-address"));
    }
}
