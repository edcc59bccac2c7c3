//! What a query name asks, relative to the domain.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A name under the domain, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// The domain itself.
    Apex,
    /// The instances of a service (with a tag: those carrying it).
    Service {
        namespace: String,
        name: String,
        tag: Option<String>,
    },
    /// `<hex>.addr`: an address an SRV answer names as its target.
    Addr(IpAddr),
}

/// The namespace of names that do not say one.
const DEFAULT_NAMESPACE: &str = "default";

/// Understands the labels left of the domain (left to right); None: no such name.
pub fn parse_labels(labels: &[&str]) -> Option<Question> {
    match labels {
        [] => Some(Question::Apex),
        [hex, "addr"] => parse_hex_addr(hex).map(Question::Addr),
        _ => {
            let at = labels.iter().position(|l| *l == "service")?;
            let (before, after) = (&labels[..at], &labels[at + 1..]);
            let namespace = match after {
                [] => DEFAULT_NAMESPACE.to_string(),
                [ns, "ns"] if !ns.is_empty() => ns.to_string(),
                _ => return None,
            };
            let (name, tag) = match before {
                [name] if !name.starts_with('_') => (name.to_string(), None),
                [tag, name] if !name.starts_with('_') && !tag.starts_with('_') => {
                    (name.to_string(), Some(tag.to_string()))
                }
                // RFC 2782: _service._proto (or _service._tag).
                [name, tag] if name.starts_with('_') && tag.starts_with('_') => {
                    let tag = &tag[1..];
                    let tag = (tag != "tcp" && tag != "udp").then(|| tag.to_string());
                    (name[1..].to_string(), tag)
                }
                _ => return None,
            };
            if name.is_empty() || tag.as_deref() == Some("") {
                return None;
            }
            Some(Question::Service {
                namespace,
                name,
                tag,
            })
        }
    }
}

/// `7f000001` -> 127.0.0.1; 32 hex digits -> an IPv6 address.
fn parse_hex_addr(hex: &str) -> Option<IpAddr> {
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match hex.len() {
        8 => u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        32 => u128::from_str_radix(hex, 16)
            .ok()
            .map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        _ => None,
    }
}

/// The `<hex>` label of an address (the inverse of `parse_hex_addr`).
pub(crate) fn hex_addr(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{:08x}", u32::from(v4)),
        IpAddr::V6(v6) => format!("{:032x}", u128::from(v6)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, tag: Option<&str>) -> Option<Question> {
        Some(Question::Service {
            namespace: ns.into(),
            name: name.into(),
            tag: tag.map(str::to_string),
        })
    }

    #[test]
    fn every_form_of_service_name() {
        assert_eq!(
            parse_labels(&["web", "service"]),
            svc("default", "web", None)
        );
        assert_eq!(
            parse_labels(&["v2", "web", "service"]),
            svc("default", "web", Some("v2"))
        );
        assert_eq!(
            parse_labels(&["web", "service", "prod", "ns"]),
            svc("prod", "web", None)
        );
        assert_eq!(
            parse_labels(&["v2", "web", "service", "prod", "ns"]),
            svc("prod", "web", Some("v2"))
        );
        assert_eq!(
            parse_labels(&["_web", "_tcp", "service"]),
            svc("default", "web", None)
        );
        assert_eq!(
            parse_labels(&["_web", "_v2", "service"]),
            svc("default", "web", Some("v2"))
        );
        assert_eq!(parse_labels(&[]), Some(Question::Apex));
    }

    #[test]
    fn names_that_are_not_ours() {
        for bad in [
            &["web"][..],
            &["service"],
            &["a", "b", "web", "service"],
            &["web", "service", "prod"],
            &["web", "service", "prod", "dc"],
            &["_web", "service"],
            &["web", "_v2", "service"],
            &["zz", "addr"],
            &["7f00001", "addr"],
        ] {
            assert_eq!(parse_labels(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn addresses_round_trip_through_their_hex_label() {
        for ip in ["127.0.0.1", "10.1.2.3", "::1", "fd00::1:2"] {
            let ip: IpAddr = ip.parse().unwrap();
            let hex = hex_addr(ip);
            assert_eq!(parse_labels(&[&hex, "addr"]), Some(Question::Addr(ip)));
        }
        assert_eq!(hex_addr("127.0.0.1".parse().unwrap()), "7f000001");
    }
}
