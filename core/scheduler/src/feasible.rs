//! Feasibility: constraints with every Nomad operator over `${attr.*}`, `${node.*}` and
//! `${meta.*}`, version and semver comparisons; the networks a group asks for.

use std::collections::BTreeMap;

use drover_model::{Constraint, ConstraintOperand, Node, TaskGroup};

/// Why `node` cannot give `group` its networks, as Nomad's network checker says it: a
/// network mode the node does not report (`missing network bridge`, `missing network
/// cni/mynet`; "host" and "none" are everywhere), or a port's host network the node lacks.
pub fn network_missing(group: &TaskGroup, node: &Node) -> Option<String> {
    for net in &group.networks {
        if !node.has_network_mode(&net.mode) {
            return Some(format!("missing network {}", net.mode));
        }
        for p in net.reserved_ports.iter().chain(&net.dynamic_ports) {
            if node.host_network_ip(&p.host_network).is_none() {
                return Some(format!(
                    "missing host network {:?} for port {:?}",
                    p.host_network, p.label
                ));
            }
        }
    }
    None
}

/// Resolves a constraint target against a node: `${attr.X}`, `${meta.X}`, `${node.unique.id}`,
/// `${node.datacenter}`, `${node.unique.name}`, `${node.class}`, `${node.pool}`,
/// `${node.region}`; anything else is a literal. None: the attribute is not set.
pub fn resolve<'a>(target: &'a str, node: &'a Node) -> Option<&'a str> {
    let Some(inner) = target.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Some(target);
    };
    if let Some(a) = inner.strip_prefix("attr.") {
        return node.attributes.get(a).map(String::as_str);
    }
    if let Some(m) = inner.strip_prefix("meta.") {
        return node.meta.get(m).map(String::as_str);
    }
    match inner {
        "node.unique.id" => Some(&node.id),
        "node.unique.name" => Some(&node.name),
        "node.datacenter" => Some(&node.datacenter),
        "node.class" => Some(&node.node_class),
        "node.pool" => Some(&node.node_pool),
        "node.region" => Some(
            node.attributes
                .get("region")
                .map(String::as_str)
                .unwrap_or("global"),
        ),
        _ => None,
    }
}

/// Whether `node` satisfies `c`. distinct_hosts and distinct_property depend on other
/// placements and are checked by the scheduler, not here (they pass).
pub fn satisfies(
    c: &Constraint,
    node: &Node,
    regex_cache: &mut BTreeMap<String, Option<regex::Regex>>,
) -> bool {
    let l = resolve(&c.l_target, node);
    let r = resolve(&c.r_target, node);
    use ConstraintOperand as Op;
    match c.operand {
        Op::DistinctHosts | Op::DistinctProperty => true,
        Op::IsSet => l.is_some(),
        Op::IsNotSet => l.is_none(),
        op => {
            let (Some(l), Some(r)) = (l, r) else {
                return false;
            };
            match op {
                Op::Unset | Op::Equal | Op::EqualEqual | Op::Is => l == r,
                Op::NotEqual | Op::Not => l != r,
                Op::Less => compare(l, r).is_some_and(|o| o.is_lt()),
                Op::LessEqual => compare(l, r).is_some_and(|o| o.is_le()),
                Op::Greater => compare(l, r).is_some_and(|o| o.is_gt()),
                Op::GreaterEqual => compare(l, r).is_some_and(|o| o.is_ge()),
                Op::Regexp => {
                    if !regex_cache.contains_key(r) {
                        regex_cache.insert(r.to_string(), regex::Regex::new(r).ok());
                    }
                    regex_cache[r].as_ref().is_some_and(|re| re.is_match(l))
                }
                Op::SetContains | Op::SetContainsAll => {
                    let have = set(l);
                    set(r).iter().all(|x| have.contains(x))
                }
                Op::SetContainsAny => {
                    let have = set(l);
                    set(r).iter().any(|x| have.contains(x))
                }
                Op::Version => version_matches(l, r, false),
                Op::Semver => version_matches(l, r, true),
                // Answered above, before the targets are resolved.
                Op::DistinctHosts | Op::DistinctProperty | Op::IsSet | Op::IsNotSet => true,
            }
        }
    }
}

fn set(s: &str) -> Vec<String> {
    s.split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// Numbers compare numerically, anything else lexically.
fn compare(l: &str, r: &str) -> Option<std::cmp::Ordering> {
    match (l.parse::<f64>(), r.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(l.cmp(r)),
    }
}

/// A parsed version: numeric parts and an optional pre-release.
#[derive(Debug, PartialEq, Eq)]
struct Version {
    parts: [u64; 3],
    pre: Option<String>,
}

fn parse_version(s: &str, strict: bool) -> Option<Version> {
    let s = s.trim().trim_start_matches('v');
    let (core, pre) = match s.split_once('-') {
        Some((c, p)) => (c, Some(p.split('+').next().unwrap_or(p).to_string())),
        None => (s.split('+').next().unwrap_or(s), None),
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty() || nums.len() > 3 || (strict && nums.len() != 3) {
        return None;
    }
    let mut parts = [0u64; 3];
    for (i, n) in nums.iter().enumerate() {
        parts[i] = n.parse().ok()?;
    }
    Some(Version { parts, pre })
}

fn cmp_versions(a: &Version, b: &Version) -> std::cmp::Ordering {
    a.parts.cmp(&b.parts).then_with(|| match (&a.pre, &b.pre) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (Some(_), None) => std::cmp::Ordering::Less,
        (Some(x), Some(y)) => x.cmp(y),
    })
}

/// `constraint` is a comma-separated list of `OP VERSION` (`>= 1.2, < 2.0`, `~> 1.4`).
fn version_matches(value: &str, constraint: &str, strict: bool) -> bool {
    let Some(v) = parse_version(value, strict) else {
        return false;
    };
    constraint.split(',').all(|c| {
        let c = c.trim();
        let op_len = c
            .find(|ch: char| ch.is_ascii_digit() || ch == 'v')
            .unwrap_or(c.len());
        let (op, ver) = c.split_at(op_len);
        let Some(want) = parse_version(ver, false) else {
            return false;
        };
        let o = cmp_versions(&v, &want);
        match op.trim() {
            "" | "=" => o.is_eq(),
            "!=" => !o.is_eq(),
            ">" => o.is_gt(),
            ">=" => o.is_ge(),
            "<" => o.is_lt(),
            "<=" => o.is_le(),
            "~>" => {
                // Pessimistic: >= want, and the same prefix up to the last given part.
                let given = ver
                    .trim()
                    .trim_start_matches('v')
                    .split('-')
                    .next()
                    .unwrap_or("")
                    .split('.')
                    .count();
                let fixed = given.saturating_sub(1).max(1);
                o.is_ge() && v.parts[..fixed] == want.parts[..fixed]
            }
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> Node {
        let mut n = Node {
            id: "n1".into(),
            name: "web-1".into(),
            datacenter: "dc1".into(),
            node_class: "large".into(),
            ..Default::default()
        };
        n.attributes.insert("kernel.name".into(), "linux".into());
        n.attributes.insert("cpu.numcores".into(), "8".into());
        n.attributes
            .insert("driver.docker.version".into(), "24.0.7".into());
        n.meta.insert("tags".into(), "ssd,gpu,fast".into());
        n
    }

    fn ok(l: &str, op: &str, r: &str) -> bool {
        satisfies(
            &Constraint {
                l_target: l.into(),
                operand: ConstraintOperand::parse(op).expect("an operator"),
                r_target: r.into(),
            },
            &node(),
            &mut BTreeMap::new(),
        )
    }

    #[test]
    fn every_operator() {
        assert!(ok("${attr.kernel.name}", "=", "linux"));
        assert!(!ok("${attr.kernel.name}", "!=", "linux"));
        assert!(ok("${attr.cpu.numcores}", ">=", "4"));
        assert!(!ok("${attr.cpu.numcores}", "<", "4"));
        assert!(!ok("${attr.cpu.numcores}", ">", "10"));
        assert!(ok("${node.datacenter}", "regexp", "^dc[0-9]$"));
        assert!(ok("${meta.tags}", "set_contains", "ssd,gpu"));
        assert!(ok("${meta.tags}", "set_contains_all", "fast"));
        assert!(!ok("${meta.tags}", "set_contains", "ssd,arm"));
        assert!(ok("${meta.tags}", "set_contains_any", "arm,gpu"));
        assert!(ok(
            "${attr.driver.docker.version}",
            "version",
            ">= 20.10, < 25"
        ));
        assert!(!ok("${attr.driver.docker.version}", "version", "< 24"));
        assert!(ok("${attr.driver.docker.version}", "semver", "~> 24.0"));
        assert!(ok("${attr.kernel.name}", "is_set", ""));
        assert!(ok("${attr.nope}", "is_not_set", ""));
        assert!(
            !ok("${attr.nope}", "=", "x"),
            "an unset attribute fails comparisons"
        );
        assert!(ok("${node.class}", "=", "large"));
        assert!(ok("${node.unique.name}", "==", "web-1"));
    }
}
