//! `dns { enabled, address, port, domain, ttl }`: the agent's DNS server (Drover's
//! extension; Nomad has no DNS). Defaults: enabled, 127.0.0.1 port 8600 (Consul's), domain
//! `drover`, TTL 0s. `-dns-port` sets the port from the command line (Consul's flag).

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The DNS port when none is configured (Consul's).
pub const DEFAULT_DNS_PORT: u16 = 8600;

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DnsBlock {
    pub enabled: Option<bool>,
    /// The address UDP and TCP listen on (default 127.0.0.1).
    pub address: Option<String>,
    /// 0: any free port.
    pub port: Option<u16>,
    pub domain: Option<String>,
    pub ttl: Option<String>,
}

/// The DNS server's settings, or None when it is disabled.
pub(super) fn resolve(block: Option<&DnsBlock>) -> anyhow::Result<Option<drover_dns::DnsConfig>> {
    let b = block.cloned().unwrap_or_default();
    if !b.enabled.unwrap_or(true) {
        return Ok(None);
    }
    let address = b.address.as_deref().unwrap_or("127.0.0.1").trim();
    let ip: IpAddr = address
        .parse()
        .with_context(|| format!("dns.address {address:?} is not an IP address"))?;
    let domain = b
        .domain
        .as_deref()
        .unwrap_or("drover")
        .trim()
        .trim_end_matches('.');
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if domain.is_empty() || domain.len() > 200 || !domain.split('.').all(label_ok) {
        bail!(
            "dns.domain {domain:?} is not a domain name (labels of letters, digits and dashes, separated by dots)"
        );
    }
    let ttl = super::duration_or(&b.ttl, "dns.ttl", "30s", std::time::Duration::ZERO)?;
    Ok(Some(drover_dns::DnsConfig {
        addr: SocketAddr::new(ip, b.port.unwrap_or(DEFAULT_DNS_PORT)),
        domain: domain.to_ascii_lowercase(),
        ttl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_checks() {
        let d = resolve(None).unwrap().unwrap();
        assert_eq!(d.addr, "127.0.0.1:8600".parse().unwrap());
        assert_eq!(d.domain, "drover");
        assert_eq!(d.ttl, std::time::Duration::ZERO);
        let off = DnsBlock {
            enabled: Some(false),
            ..Default::default()
        };
        assert!(resolve(Some(&off)).unwrap().is_none());
        let set = DnsBlock {
            address: Some("0.0.0.0".into()),
            port: Some(53),
            domain: Some("Cluster.Internal.".into()),
            ttl: Some("30s".into()),
            ..Default::default()
        };
        let d = resolve(Some(&set)).unwrap().unwrap();
        assert_eq!(d.addr, "0.0.0.0:53".parse().unwrap());
        assert_eq!(d.domain, "cluster.internal");
        assert_eq!(d.ttl, std::time::Duration::from_secs(30));
        for (block, word) in [
            (
                DnsBlock {
                    address: Some("localhost".into()),
                    ..Default::default()
                },
                "dns.address",
            ),
            (
                DnsBlock {
                    domain: Some("bad domain".into()),
                    ..Default::default()
                },
                "dns.domain",
            ),
            (
                DnsBlock {
                    ttl: Some("soon".into()),
                    ..Default::default()
                },
                "dns.ttl",
            ),
        ] {
            let e = resolve(Some(&block)).unwrap_err().to_string();
            assert!(e.contains(word), "{e}");
        }
    }
}
