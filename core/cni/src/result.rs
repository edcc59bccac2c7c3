//! The spec's result (1.0.0, and 0.4.0 whose `ips[]` also carry `version`) and error types.
//! Unknown keys are kept, so a result passed on as `prevResult` is the plugin's own.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What ADD returns: interfaces, addresses, routes, DNS.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for an interface inside the container; absent for host interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IpConfig {
    /// `"4"` or `"6"`: only in 0.4.0 results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// CIDR notation, e.g. `10.1.2.3/24`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_none()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

impl IpConfig {
    /// The address and prefix length of `address`, if it is a valid CIDR.
    pub fn cidr(&self) -> Option<(IpAddr, u8)> {
        let (ip, prefix) = self.address.split_once('/')?;
        let ip: IpAddr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some((ip, prefix))
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.cidr().map(|(ip, _)| ip)
    }
}

impl CniResult {
    /// The interface an address is on (by its `interface` index), if it names one.
    pub fn interface_of(&self, ip: &IpConfig) -> Option<&Interface> {
        ip.interface.and_then(|i| self.interfaces.get(i))
    }

    /// The first address on the interface called `ifname` inside the sandbox.
    pub fn address_on(&self, ifname: &str) -> Option<&IpConfig> {
        self.ips.iter().find(|ip| {
            self.interface_of(ip)
                .is_some_and(|i| i.name == ifname && i.sandbox.is_some())
        })
    }
}

/// The spec's error shape, printed on stdout by a failing plugin.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PluginErrorReply {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: Option<String>,
    pub code: u32,
    #[serde(default)]
    pub msg: String,
    #[serde(default)]
    pub details: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_1_0_0_result_parses_and_round_trips() {
        let raw = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:ff"},
                {"name": "vethx", "mac": "00:11:22:33:44:55"},
                {"name": "eth0", "mac": "0a:58:0a:01:02:03", "sandbox": "/run/netns/a", "mtu": 1500}
            ],
            "ips": [{"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 2}],
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}],
            "dns": {"nameservers": ["10.1.2.1"], "search": ["example"]},
            "vendorKey": {"x": 1}
        });
        let r: CniResult = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.interfaces.len(), 3);
        let ip = &r.ips[0];
        assert_eq!(ip.cidr(), Some(("10.1.2.3".parse().unwrap(), 24)));
        assert_eq!(ip.gateway.as_deref(), Some("10.1.2.1"));
        assert_eq!(r.address_on("eth0"), Some(ip));
        assert_eq!(r.address_on("cni0"), None);
        assert_eq!(r.routes[0].gw.as_deref(), Some("10.1.2.1"));
        assert_eq!(r.dns.nameservers, ["10.1.2.1"]);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            raw,
            "unknown keys survive"
        );
    }

    #[test]
    fn a_0_4_0_result_keeps_the_ip_version() {
        let raw = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/a"}],
            "ips": [
                {"version": "4", "address": "172.26.64.5/20", "gateway": "172.26.64.1", "interface": 0},
                {"version": "6", "address": "fd00::5/64", "interface": 0}
            ],
            "dns": {}
        });
        let r: CniResult = serde_json::from_value(raw).unwrap();
        assert_eq!(r.ips[0].version.as_deref(), Some("4"));
        assert_eq!(r.ips[1].cidr(), Some(("fd00::5".parse().unwrap(), 64)));
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["ips"][0]["version"], "4");
        assert!(back.get("dns").is_none(), "empty dns is not written");
    }

    #[test]
    fn bad_addresses_have_no_cidr() {
        for a in ["10.1.2.3", "10.1.2.3/33", "x/24", "fd00::1/129", ""] {
            let ip = IpConfig {
                address: a.into(),
                ..Default::default()
            };
            assert_eq!(ip.cidr(), None, "{a}");
        }
    }

    #[test]
    fn the_error_shape_parses() {
        let e: PluginErrorReply = serde_json::from_str(
            r#"{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"bad subnet"}"#,
        )
        .unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "invalid network config");
        assert_eq!(e.details.as_deref(), Some("bad subnet"));
        let e: PluginErrorReply = serde_json::from_str(r#"{"code":100,"msg":"x"}"#).unwrap();
        assert_eq!(e.details, None);
        assert!(serde_json::from_str::<PluginErrorReply>(r#"{"msg":"x"}"#).is_err());
    }
}
