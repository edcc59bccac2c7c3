//! Known plugin bugs the runtime works around, each narrowly detected.

use crate::{CniResult, Command, Error};

/// containernetworking/plugins #819 (in Debian's 1.1.1): portmap's CHECK always looks for
/// its per-container ip6tables chain, even when the attachment has no IPv6 address and ADD
/// therefore made none, and fails with "could not check ipv6 dnat: chain CNI-DN-... not
/// found". On an IPv4-only attachment that failure says nothing about the network's health,
/// so CHECK ignores exactly it (IPv4 rules were checked before it, and any other failure
/// still counts).
pub(crate) fn portmap_ipv6_check_bug(plugin_type: &str, error: &Error, result: &CniResult) -> bool {
    let Error::Plugin {
        command: Command::Check,
        msg,
        ..
    } = error
    else {
        return false;
    };
    let ipv4_only = !result
        .ips
        .iter()
        .any(|ip| ip.ip().is_none_or(|a| a.is_ipv6()));
    plugin_type == "portmap"
        && msg.starts_with("could not check ipv6 dnat: chain ")
        && msg.ends_with(" not found in iptables table nat")
        && ipv4_only
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_error(plugin: &str, msg: &str) -> Error {
        Error::Plugin {
            plugin: plugin.into(),
            command: Command::Check,
            code: 999,
            msg: msg.into(),
            details: None,
        }
    }

    fn result(addresses: &[&str]) -> CniResult {
        let ips: Vec<_> = addresses
            .iter()
            .map(|a| serde_json::json!({"address": a}))
            .collect();
        serde_json::from_value(serde_json::json!({"cniVersion": "1.0.0", "ips": ips})).unwrap()
    }

    #[test]
    fn only_the_portmap_ipv6_check_failure_on_ipv4_only_is_tolerated() {
        let bug = "could not check ipv6 dnat: chain CNI-DN-fb6ec94fc130cff6cdcb7 not found in iptables table nat";
        let v4 = result(&["10.0.0.2/24"]);
        assert!(portmap_ipv6_check_bug(
            "portmap",
            &check_error("portmap", bug),
            &v4
        ));
        let dual = result(&["10.0.0.2/24", "fd00::2/64"]);
        assert!(!portmap_ipv6_check_bug(
            "portmap",
            &check_error("portmap", bug),
            &dual
        ));
        assert!(!portmap_ipv6_check_bug(
            "bridge",
            &check_error("bridge", bug),
            &v4
        ));
        let v4_missing =
            "could not check ipv4 dnat: chain CNI-DN-x not found in iptables table nat";
        assert!(!portmap_ipv6_check_bug(
            "portmap",
            &check_error("portmap", v4_missing),
            &v4
        ));
        let del = Error::Plugin {
            plugin: "portmap".into(),
            command: Command::Del,
            code: 999,
            msg: bug.into(),
            details: None,
        };
        assert!(!portmap_ipv6_check_bug("portmap", &del, &v4));
    }
}
