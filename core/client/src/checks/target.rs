//! Where a check connects. In an allocation with its own network namespace (bridge, CNI)
//! the check runs inside that namespace and reaches the task at the allocation's address on
//! the port inside (`to`) — what the task listens on, whatever `address_mode` the catalog
//! shows. On the host's network it reaches the port's host address and host port
//! (`address_mode` host/auto), or the service's own `address` when the check uses the
//! service's port.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use drover_model::{Allocation, Service, ServiceCheck, ServiceRegistration};

use crate::env::interpolate;

/// Why a check has nowhere to connect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TargetError {
    #[error("port {0:?} is not a port label of the group's network nor a number")]
    UnknownPort(String),
    #[error("the check has no port (neither the check nor its service names one)")]
    NoPort,
    #[error("address {0:?} is not an IP address")]
    NotAnIp(String),
    #[error(
        "address_mode \"alloc\" needs the allocation's own network (bridge or cni); this allocation has none"
    )]
    NoAllocNetwork,
}

/// The address check `check` of service `service` (registered as `reg`) connects to;
/// `in_netns`: the check runs in the allocation's own network namespace.
pub(crate) fn target(
    alloc: &Allocation,
    service: &Service,
    check: &ServiceCheck,
    reg: &ServiceRegistration,
    in_netns: bool,
    env: &BTreeMap<String, String>,
) -> Result<SocketAddr, TargetError> {
    let own_label = interpolate(&check.port_label, env);
    let label = if own_label.is_empty() {
        interpolate(&service.port_label, env)
    } else {
        own_label.clone()
    };
    if label.is_empty() {
        return Err(TargetError::NoPort);
    }
    let port = alloc
        .shared_resources
        .ports
        .iter()
        .find(|p| p.label == label);
    let numeric: Option<u16> = label.parse().ok();
    if port.is_none() && numeric.is_none() {
        return Err(TargetError::UnknownPort(label));
    }
    let ip = |a: &str| -> Result<IpAddr, TargetError> {
        a.parse().map_err(|_| TargetError::NotAnIp(a.to_string()))
    };
    if in_netns {
        let inside = port
            .map(|p| if p.to > 0 { p.to as u16 } else { p.value })
            .or(numeric)
            .unwrap_or(0);
        let addr = alloc
            .network_status
            .as_ref()
            .map(|n| n.address.as_str())
            .filter(|a| !a.is_empty());
        let addr = match addr {
            Some(a) => ip(a)?,
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        return Ok(SocketAddr::new(addr, inside));
    }
    let mode = if check.address_mode.is_empty() {
        service.address_mode.as_str()
    } else {
        check.address_mode.as_str()
    };
    if mode == "alloc" {
        return Err(TargetError::NoAllocNetwork);
    }
    if own_label.is_empty() || own_label == reg_label(service, env) {
        // The service's own port: where the catalog sends its clients.
        return Ok(SocketAddr::new(ip(&reg.address)?, reg.port));
    }
    let host = match port {
        Some(p) if !p.host_ip.is_empty() => p.host_ip.clone(),
        _ => reg.address.clone(),
    };
    let number = port.map(|p| p.value).or(numeric).unwrap_or(0);
    Ok(SocketAddr::new(ip(&host)?, number))
}

fn reg_label(service: &Service, env: &BTreeMap<String, String>) -> String {
    interpolate(&service.port_label, env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{AllocatedPort, NetworkStatus};

    fn alloc() -> Allocation {
        let mut a = Allocation {
            id: "a1".into(),
            ..Default::default()
        };
        for (label, value, to) in [("http", 23456, 8080), ("admin", 23457, 0)] {
            a.shared_resources.ports.push(AllocatedPort {
                label: label.into(),
                value,
                to,
                host_ip: "10.0.0.5".into(),
            });
        }
        a
    }

    fn svc(mode: &str, address: &str) -> (Service, ServiceRegistration) {
        let s = Service {
            name: "api".into(),
            port_label: "http".into(),
            address_mode: mode.into(),
            address: address.into(),
            ..Default::default()
        };
        let addr = if address.is_empty() {
            "10.0.0.5"
        } else {
            address
        };
        let r = ServiceRegistration {
            address: addr.into(),
            port: 23456,
            ..Default::default()
        };
        (s, r)
    }

    fn check(port: &str) -> ServiceCheck {
        ServiceCheck {
            port_label: port.into(),
            ..Default::default()
        }
    }

    fn at(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn on_the_hosts_network_a_check_reaches_the_host_port() {
        let env = BTreeMap::new();
        let (s, r) = svc("host", "");
        let t = target(&alloc(), &s, &check(""), &r, false, &env).unwrap();
        assert_eq!(t, at("10.0.0.5:23456"));
        // Another port of the group: that port's host address and port.
        let t = target(&alloc(), &s, &check("admin"), &r, false, &env).unwrap();
        assert_eq!(t, at("10.0.0.5:23457"));
        // The service's own address, for its own port.
        let (s, r) = svc("host", "127.0.0.1");
        let t = target(&alloc(), &s, &check(""), &r, false, &env).unwrap();
        assert_eq!(t, at("127.0.0.1:23456"));
        let e = target(&alloc(), &s, &check("nope"), &r, false, &env).unwrap_err();
        assert_eq!(e, TargetError::UnknownPort("nope".into()));
        let (s, r) = svc("alloc", "");
        let e = target(&alloc(), &s, &check(""), &r, false, &env).unwrap_err();
        assert_eq!(e, TargetError::NoAllocNetwork);
    }

    #[test]
    fn in_a_namespace_a_check_reaches_the_port_inside_at_the_allocations_address() {
        let env = BTreeMap::new();
        let mut a = alloc();
        a.network_status = Some(NetworkStatus {
            address: "172.26.64.9".into(),
            ..Default::default()
        });
        for mode in ["host", "alloc", ""] {
            let (s, r) = svc(mode, "");
            let t = target(&a, &s, &check(""), &r, true, &env).unwrap();
            assert_eq!(t, at("172.26.64.9:8080"), "{mode}");
        }
        // `to = 0`: the same port inside as outside.
        let (s, r) = svc("host", "");
        let t = target(&a, &s, &check("admin"), &r, true, &env).unwrap();
        assert_eq!(t, at("172.26.64.9:23457"));
        a.network_status = None;
        let t = target(&a, &s, &check("9000"), &r, true, &env).unwrap();
        assert_eq!(t, at("127.0.0.1:9000"));
    }
}
