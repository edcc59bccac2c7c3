//! What an allocation's group network asks of CNI: the mode (`bridge`, `cni/<name>`,
//! `none`, or host networking), Nomad's built-in bridge configuration list, and the
//! attachment's parameters (container id = allocation id, `eth0`, `CNI_ARGS`, the
//! `portMappings` capability argument).

use std::path::PathBuf;

use drover_cni::{Attachment, NetworkConfigList};
use drover_model::{Allocation, Job, NetworkResource, NetworkStatus, TaskGroup};
use serde_json::{Value, json};

/// The interface the allocation's address is on (Nomad's).
pub const IFNAME: &str = "eth0";

/// `client { bridge_network_name, bridge_network_subnet, bridge_network_subnet_ipv6,
/// bridge_network_hairpin_mode }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeNetwork {
    pub name: String,
    pub subnet: String,
    pub subnet_ipv6: Option<String>,
    pub hairpin_mode: bool,
}

impl Default for BridgeNetwork {
    /// Nomad's defaults: bridge `nomad` on 172.26.64.0/20, no IPv6, hairpin off.
    fn default() -> Self {
        BridgeNetwork {
            name: "nomad".into(),
            subnet: "172.26.64.0/20".into(),
            subnet_ipv6: None,
            hairpin_mode: false,
        }
    }
}

/// The name of the built-in bridge configuration list (Nomad's).
pub const BRIDGE_NETWORK: &str = "nomad";
/// The name of the list that only brings up the loopback (`mode = "none"`).
pub const NONE_NETWORK: &str = "nomad-none";

/// How a group is networked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// The host's namespace (`host`, or no network block): nothing to do.
    Host,
    /// Nomad's built-in bridge list.
    Bridge,
    /// A list of `cni_config_dir` by name.
    Cni(String),
    /// A namespace with its loopback only.
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum ModeError {
    #[error("network mode {0:?} is not one of host, bridge, none, cni/<name>")]
    Unknown(String),
    #[error("network mode {0:?}: the CNI network name is empty")]
    NoCniName(String),
}

impl Mode {
    /// The mode of the group's (first) network.
    pub fn of(group: &TaskGroup) -> Result<Mode, ModeError> {
        let Some(net) = group.networks.first() else {
            return Ok(Mode::Host);
        };
        match net.mode.as_str() {
            "" | "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            "none" => Ok(Mode::None),
            m => match m.strip_prefix("cni/") {
                Some("") => Err(ModeError::NoCniName(m.to_string())),
                Some(name) => Ok(Mode::Cni(name.to_string())),
                None => Err(ModeError::Unknown(m.to_string())),
            },
        }
    }
}

/// Nomad's built-in bridge configuration list.
pub fn bridge_conflist(b: &BridgeNetwork) -> NetworkConfigList {
    let mut ranges = vec![json!([{ "subnet": b.subnet }])];
    let mut routes = vec![json!({ "dst": "0.0.0.0/0" })];
    if let Some(v6) = &b.subnet_ipv6 {
        ranges.push(json!([{ "subnet": v6 }]));
        routes.push(json!({ "dst": "::/0" }));
    }
    let list = json!({
        "cniVersion": "0.4.0",
        "name": BRIDGE_NETWORK,
        "plugins": [
            { "type": "loopback" },
            {
                "type": "bridge",
                "bridge": b.name,
                "ipMasq": true,
                "isGateway": true,
                "forceAddress": true,
                "hairpinMode": b.hairpin_mode,
                "ipam": { "type": "host-local", "ranges": ranges, "routes": routes }
            },
            { "type": "firewall", "backend": "iptables", "iptablesAdminChainName": "NOMAD-ADMIN" },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    });
    NetworkConfigList::from_value(list).expect("the built-in bridge list is valid")
}

/// The list for `mode = "none"`: the loopback plugin alone.
pub fn none_conflist() -> NetworkConfigList {
    NetworkConfigList::from_value(json!({
        "cniVersion": "0.4.0",
        "name": NONE_NETWORK,
        "plugins": [{ "type": "loopback" }]
    }))
    .expect("the built-in none list is valid")
}

/// The `portMappings` capability argument: each of the allocation's ports, TCP and UDP, from
/// its host port (on its host IP) to its `to` port (the host port when `to <= 0`).
pub fn port_mappings(alloc: &Allocation) -> Value {
    let mut out = Vec::new();
    for p in &alloc.shared_resources.ports {
        let container = if p.to > 0 { p.to } else { i32::from(p.value) };
        for proto in ["tcp", "udp"] {
            let mut m = json!({
                "hostPort": p.value,
                "containerPort": container,
                "protocol": proto,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = Value::from(p.host_ip.clone());
            }
            out.push(m);
        }
    }
    Value::Array(out)
}

/// The attachment of allocation `alloc` through namespace `netns`: `CNI_ARGS` are the
/// group's `cni { args }` then the ones Nomad always sets, and `IgnoreUnknown=1` so plugins
/// that do not know them accept them.
pub fn attachment(
    alloc: &Allocation,
    job: &Job,
    group: &TaskGroup,
    region: &str,
    netns: PathBuf,
) -> Attachment {
    let mut a = Attachment::new(&alloc.id, netns, IFNAME);
    a.args.push(("IgnoreUnknown".into(), "1".into()));
    if let Some(cni) = group_network(group).and_then(|n| n.cni.as_ref()) {
        a.args
            .extend(cni.args.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    for (k, v) in [
        ("NOMAD_REGION", region),
        ("NOMAD_NAMESPACE", &job.namespace),
        ("NOMAD_JOB_ID", &job.id),
        ("NOMAD_GROUP_NAME", &group.name),
        ("NOMAD_ALLOC_ID", &alloc.id),
    ] {
        a.args.push((k.to_string(), v.to_string()));
    }
    a.capability_args
        .insert("portMappings".into(), port_mappings(alloc));
    a
}

/// The allocation's `NetworkStatus` from the list's result: the first IPv4 and IPv6
/// addresses (not loopback ones) on an interface inside the namespace (any address when
/// the result names no such interface, as ptp's may not), and the result's DNS. With no
/// address (`mode = "none"`) the interface and addresses are empty.
pub fn status_of(result: &drover_cni::CniResult) -> NetworkStatus {
    // The loopback plugin reports 127.0.0.1 and ::1 on `lo`: not the allocation's address.
    let routable: Vec<_> = result
        .ips
        .iter()
        .filter(|ip| ip.ip().is_some_and(|a| !a.is_loopback()))
        .collect();
    let inside: Vec<_> = routable
        .iter()
        .copied()
        .filter(|ip| result.interface_of(ip).is_some_and(|i| i.sandbox.is_some()))
        .collect();
    let candidates = if inside.is_empty() { routable } else { inside };
    let first = |v4: bool| {
        candidates
            .iter()
            .copied()
            .find(|ip| ip.ip().is_some_and(|a| a.is_ipv4() == v4))
    };
    let interface_name = match first(true).or_else(|| first(false)) {
        // An address the result puts on no interface is on ours; no address, no interface.
        Some(ip) => result
            .interface_of(ip)
            .map(|i| i.name.clone())
            .unwrap_or_else(|| IFNAME.to_string()),
        None => String::new(),
    };
    let dns = (!result.dns.is_empty()).then(|| drover_model::DnsConfig {
        servers: result.dns.nameservers.clone(),
        searches: result.dns.search.clone(),
        options: result.dns.options.clone(),
    });
    NetworkStatus {
        interface_name,
        address: first(true)
            .and_then(|ip| ip.ip())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        address_ipv6: first(false)
            .and_then(|ip| ip.ip())
            .map(|a| a.to_string())
            .unwrap_or_default(),
        dns,
    }
}

/// The group's (first) network block, when it has one.
pub fn group_network(group: &TaskGroup) -> Option<&NetworkResource> {
    group.networks.first()
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::AllocatedPort;

    fn bare() -> TaskGroup {
        TaskGroup::new("web", 1, drover_model::JobType::Service, vec![])
    }

    fn group(mode: &str) -> TaskGroup {
        let mut g = bare();
        g.networks.push(NetworkResource {
            mode: mode.into(),
            ..Default::default()
        });
        g
    }

    #[test]
    fn modes_are_parsed_as_nomad_names_them() {
        assert_eq!(Mode::of(&bare()).unwrap(), Mode::Host);
        assert_eq!(Mode::of(&group("")).unwrap(), Mode::Host);
        assert_eq!(Mode::of(&group("host")).unwrap(), Mode::Host);
        assert_eq!(Mode::of(&group("bridge")).unwrap(), Mode::Bridge);
        assert_eq!(Mode::of(&group("none")).unwrap(), Mode::None);
        assert_eq!(
            Mode::of(&group("cni/mynet")).unwrap(),
            Mode::Cni("mynet".into())
        );
        assert!(matches!(
            Mode::of(&group("cni/")),
            Err(ModeError::NoCniName(_))
        ));
        let e = Mode::of(&group("macvlan")).unwrap_err();
        assert!(e.to_string().contains("\"macvlan\""), "{e}");
    }

    #[test]
    fn the_bridge_list_is_nomads() {
        let b = BridgeNetwork {
            name: "br9".into(),
            subnet: "10.9.0.0/24".into(),
            subnet_ipv6: Some("fd00:9::/64".into()),
            hairpin_mode: true,
        };
        let v = bridge_conflist(&b).to_value();
        let types: Vec<&str> = v["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["loopback", "bridge", "firewall", "portmap"]);
        let br = &v["plugins"][1];
        assert_eq!(br["bridge"], "br9");
        assert_eq!(br["hairpinMode"], true);
        for k in ["ipMasq", "isGateway", "forceAddress"] {
            assert_eq!(br[k], true, "{k}");
        }
        assert_eq!(br["ipam"]["type"], "host-local");
        assert_eq!(br["ipam"]["ranges"][0][0]["subnet"], "10.9.0.0/24");
        assert_eq!(br["ipam"]["ranges"][1][0]["subnet"], "fd00:9::/64");
        assert_eq!(br["ipam"]["routes"][1]["dst"], "::/0");
        assert_eq!(v["plugins"][2]["iptablesAdminChainName"], "NOMAD-ADMIN");
        assert_eq!(v["plugins"][3]["snat"], true);
        assert_eq!(v["plugins"][3]["capabilities"]["portMappings"], true);
        let d = bridge_conflist(&BridgeNetwork::default()).to_value();
        assert_eq!(d["plugins"][1]["bridge"], "nomad");
        assert_eq!(d["plugins"][1]["hairpinMode"], false);
        assert_eq!(
            d["plugins"][1]["ipam"]["ranges"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn ports_map_tcp_and_udp_to_their_to_port_on_their_host_ip() {
        let mut alloc = Allocation::default();
        alloc.shared_resources.ports = vec![
            AllocatedPort {
                label: "http".into(),
                value: 25000,
                to: 8080,
                host_ip: "10.0.0.5".into(),
            },
            AllocatedPort {
                label: "same".into(),
                value: 25001,
                to: -1,
                host_ip: String::new(),
            },
        ];
        let m = port_mappings(&alloc);
        assert_eq!(m.as_array().unwrap().len(), 4);
        assert_eq!(
            m[0],
            json!({"hostPort": 25000, "containerPort": 8080, "protocol": "tcp", "hostIP": "10.0.0.5"})
        );
        assert_eq!(m[1]["protocol"], "udp");
        assert_eq!(m[2]["containerPort"], 25001, "to <= 0: the host port");
        assert!(m[2].get("hostIP").is_none());
    }

    #[test]
    fn the_status_is_the_first_address_inside_the_namespace() {
        let r: drover_cni::CniResult = serde_json::from_value(json!({
            "cniVersion": "0.4.0",
            "interfaces": [
                {"name": "nomad"},
                {"name": "veth1"},
                {"name": "eth0", "sandbox": "/var/run/netns/a"}
            ],
            "ips": [
                {"version": "4", "address": "172.26.64.1/20", "interface": 0},
                {"version": "6", "address": "fd00::5/64", "interface": 2},
                {"version": "4", "address": "172.26.64.5/20", "interface": 2}
            ],
            "dns": {"nameservers": ["10.0.0.53"]}
        }))
        .unwrap();
        let s = status_of(&r);
        assert_eq!(s.interface_name, "eth0");
        assert_eq!(s.address, "172.26.64.5");
        assert_eq!(s.address_ipv6, "fd00::5");
        assert_eq!(s.dns.unwrap().servers, ["10.0.0.53"]);
        let bare: drover_cni::CniResult = serde_json::from_value(json!({
            "cniVersion": "1.0.0", "ips": [{"address": "10.1.0.7/24"}]
        }))
        .unwrap();
        let s = status_of(&bare);
        assert_eq!(
            (s.interface_name.as_str(), s.address.as_str()),
            ("eth0", "10.1.0.7")
        );
        assert!(s.dns.is_none());
        // The loopback plugin's result alone (mode "none"): no address.
        let lo: drover_cni::CniResult = serde_json::from_value(json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo", "sandbox": "/var/run/netns/a"}],
            "ips": [
                {"version": "4", "address": "127.0.0.1/8", "interface": 0},
                {"version": "6", "address": "::1/128", "interface": 0}
            ]
        }))
        .unwrap();
        let s = status_of(&lo);
        assert_eq!(
            (
                s.interface_name.as_str(),
                s.address.as_str(),
                s.address_ipv6.as_str()
            ),
            ("", "", "")
        );
    }

    #[test]
    fn cni_args_carry_the_groups_then_nomads() {
        let mut job = Job::new("web", drover_model::JobType::Service);
        job.namespace = "prod".into();
        let mut g = group("cni/x");
        g.networks[0].cni = Some(drover_model::CniConfig {
            args: [("FOO".to_string(), "bar".to_string())].into(),
        });
        let alloc = Allocation {
            id: "a-1".into(),
            ..Default::default()
        };
        let a = attachment(&alloc, &job, &g, "eu", "/var/run/netns/a-1".into());
        assert_eq!(
            a.cni_args().unwrap(),
            "IgnoreUnknown=1;FOO=bar;NOMAD_REGION=eu;NOMAD_NAMESPACE=prod;NOMAD_JOB_ID=web;NOMAD_GROUP_NAME=web;NOMAD_ALLOC_ID=a-1"
        );
        assert_eq!(a.ifname, "eth0");
        assert_eq!(a.container_id, "a-1");
        assert!(a.capability_args.contains_key("portMappings"));
    }
}
