//! Published ports as Nomad publishes them: only the labels the config lists, TCP and UDP,
//! on the node's address for the port (never every address), container port = `to` or else
//! the host port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use bollard::models::{PortBinding, PortMap};
use drover_plugin_sdk::proto::driver::PortMapping;

use super::SpecError;

/// Where a port is published when the scheduler gave no usable address.
pub const FALLBACK_HOST_IP: &str = "127.0.0.1";

/// The exposed ports and their bindings.
#[derive(Debug, Default, PartialEq)]
pub struct Published {
    pub exposed: Vec<String>,
    pub bindings: PortMap,
}

/// The address a port is published on: the mapping's, or 127.0.0.1 when it has none (or
/// names every address, which is never what a node reserved).
pub fn host_ip(m: &PortMapping) -> Result<String, SpecError> {
    let ip = m.host_ip.trim();
    if ip.is_empty() {
        tracing::warn!(label = %m.label, "port has no host address; publishing it on {FALLBACK_HOST_IP}");
        return Ok(FALLBACK_HOST_IP.into());
    }
    let parsed: IpAddr = ip.parse().map_err(|_| {
        SpecError(format!(
            "port {:?}: host address {ip:?} is not an IP address",
            m.label
        ))
    })?;
    if parsed.is_unspecified() {
        tracing::warn!(label = %m.label, "port's host address is {ip}; publishing it on {FALLBACK_HOST_IP} instead");
        return Ok(FALLBACK_HOST_IP.into());
    }
    Ok(parsed.to_string())
}

/// The bindings of the labels in `labels`, from the allocation's `ports`.
pub fn publish(labels: &[String], ports: &[PortMapping]) -> Result<Published, SpecError> {
    let mut out = Published::default();
    let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    for label in labels {
        let m = ports.iter().find(|p| p.label == *label).ok_or_else(|| {
            let known: Vec<&str> = ports.iter().map(|p| p.label.as_str()).collect();
            SpecError(format!(
                "ports: {label:?} is not a port of the group's network (it has: {})",
                known.join(", ")
            ))
        })?;
        if !(1..=65535).contains(&m.value) {
            return Err(SpecError(format!(
                "port {label:?}: host port {} is out of range",
                m.value
            )));
        }
        if !(0..=65535).contains(&m.to) {
            return Err(SpecError(format!(
                "port {label:?}: container port {} is out of range",
                m.to
            )));
        }
        let inside = if m.to > 0 { m.to } else { m.value };
        let ip = host_ip(m)?;
        for proto in ["tcp", "udp"] {
            let key = format!("{inside}/{proto}");
            if !out.exposed.contains(&key) {
                out.exposed.push(key.clone());
            }
            bindings
                .entry(key)
                .or_default()
                .get_or_insert_with(Vec::new)
                .push(PortBinding {
                    host_ip: Some(ip.clone()),
                    host_port: Some(m.value.to_string()),
                });
        }
    }
    out.bindings = bindings.into_iter().collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(label: &str, value: i32, to: i32, ip: &str) -> PortMapping {
        PortMapping {
            label: label.into(),
            value,
            to,
            host_ip: ip.into(),
        }
    }

    #[test]
    fn only_listed_labels_on_their_address() {
        let ports = [
            pm("http", 25000, 8080, "10.0.0.5"),
            pm("admin", 25001, 0, "10.0.0.5"),
        ];
        let p = publish(&["http".into()], &ports).unwrap();
        assert_eq!(p.exposed, vec!["8080/tcp", "8080/udp"]);
        let b = p.bindings["8080/tcp"].as_ref().unwrap();
        assert_eq!(b[0].host_ip.as_deref(), Some("10.0.0.5"));
        assert_eq!(b[0].host_port.as_deref(), Some("25000"));
        assert!(!p.bindings.keys().any(|k| k.starts_with("25001")));
        let p = publish(&["admin".into()], &ports).unwrap();
        assert!(
            p.bindings.contains_key("25001/udp"),
            "to = 0: the same port inside"
        );
    }

    #[test]
    fn never_every_address() {
        for ip in ["", "0.0.0.0", "::"] {
            let p = publish(&["a".into()], &[pm("a", 2000, 0, ip)]).unwrap();
            let b = p.bindings["2000/tcp"].as_ref().unwrap();
            assert_eq!(b[0].host_ip.as_deref(), Some(FALLBACK_HOST_IP), "{ip:?}");
        }
        assert!(publish(&["a".into()], &[pm("a", 2000, 0, "not-an-ip")]).is_err());
    }

    #[test]
    fn unknown_labels_and_bad_numbers_are_refused() {
        let e = publish(&["nope".into()], &[pm("a", 2000, 0, "")]).unwrap_err();
        assert!(e.0.contains("nope") && e.0.contains("a"), "{e}");
        assert!(publish(&["a".into()], &[pm("a", 0, 0, "")]).is_err());
        assert!(publish(&["a".into()], &[pm("a", 70000, 0, "")]).is_err());
        assert!(publish(&["a".into()], &[pm("a", 2000, -1, "")]).is_err());
    }
}
