//! A policy's rules, checked and decoded: Nomad's `namespace`, `node_pool`, `host_volume`,
//! `agent`, `node`, `operator`, `quota` and `plugin` rules, with each `policy` shorthand
//! expanded into the capabilities it grants. Unknown blocks, keys and words are refused,
//! naming where they are and what is accepted (Nomad's strict parse for writes).

use crate::capability::{Level, NsCap, VarCap};
use crate::rules::{self, Block, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the rules do not parse: {0}")]
    Syntax(String),
    #[error("{0}")]
    Shape(String),
    #[error(
        "the rules grant nothing: give at least one namespace, node_pool, host_volume, agent, node, operator, quota or plugin rule"
    )]
    Empty,
    #[error("the rules are {0} bytes long, more than the {1} allowed")]
    TooLong(usize, usize),
}

/// A namespace rule: a glob or a name, and what it grants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamespaceRule {
    pub name: String,
    /// The capabilities, the `policy` shorthand expanded into them.
    pub capabilities: Vec<NsCap>,
    pub variables: Vec<VariablesRule>,
}

/// A `variables { path "spec" { capabilities } }` rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VariablesRule {
    pub path: String,
    pub capabilities: Vec<VarCap>,
}

/// A `host_volume` or `node_pool` rule: a glob or a name and its capability words.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NamedRule {
    pub name: String,
    pub capabilities: Vec<String>,
}

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    pub namespaces: Vec<NamespaceRule>,
    pub node_pools: Vec<NamedRule>,
    pub host_volumes: Vec<NamedRule>,
    pub agent: Option<Level>,
    pub node: Option<Level>,
    pub operator: Option<Level>,
    pub quota: Option<Level>,
    pub plugin: Option<Level>,
}

/// The longest rules text accepted.
pub const MAX_RULES: usize = 64 * 1024;

/// Parses and checks a policy's rules.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    if text.len() > MAX_RULES {
        return Err(PolicyError::TooLong(text.len(), MAX_RULES));
    }
    let root = rules::parse(text)?;
    if let Some(k) = root.attrs.keys().next() {
        return Err(PolicyError::Shape(format!(
            "{k}: not a rule of the policy language (namespace, node_pool, host_volume, agent, node, operator, quota, plugin)"
        )));
    }
    let mut p = Policy::default();
    for b in &root.blocks {
        match b.kind.as_str() {
            "namespace" => p.namespaces.push(namespace(b)?),
            "node_pool" => p
                .node_pools
                .push(named(b, &["delete", "deny", "read", "write"])?),
            "host_volume" => p
                .host_volumes
                .push(named(b, &["deny", "mount-readonly", "mount-readwrite"])?),
            "agent" => p.agent = Some(level_rule(b, &["deny", "read", "write"])?),
            "node" => p.node = Some(level_rule(b, &["deny", "read", "write"])?),
            "operator" => p.operator = Some(level_rule(b, &["deny", "read", "write"])?),
            "quota" => p.quota = Some(level_rule(b, &["deny", "read", "write"])?),
            "plugin" => p.plugin = Some(level_rule(b, &["deny", "read", "list", "write"])?),
            other => {
                return Err(PolicyError::Shape(format!(
                    "{other}: not a rule of the policy language (namespace, node_pool, host_volume, agent, node, operator, quota, plugin)"
                )));
            }
        }
    }
    if p == Policy::default() {
        return Err(PolicyError::Empty);
    }
    Ok(p)
}

fn at(b: &Block) -> String {
    match &b.label {
        Some(l) => format!("{} {l:?}", b.kind),
        None => b.kind.clone(),
    }
}

fn only_keys(b: &Block, attrs: &[&str], blocks: &[&str]) -> Result<(), PolicyError> {
    if let Some(k) = b.attrs.keys().find(|k| !attrs.contains(&k.as_str())) {
        return Err(PolicyError::Shape(format!(
            "{}.{k}: unknown key (accepted: {})",
            at(b),
            attrs.join(", ")
        )));
    }
    if let Some(c) = b.blocks.iter().find(|c| !blocks.contains(&c.kind.as_str())) {
        return Err(PolicyError::Shape(format!(
            "{}.{}: unknown block{}",
            at(b),
            c.kind,
            if blocks.is_empty() {
                String::new()
            } else {
                format!(" (accepted: {})", blocks.join(", "))
            }
        )));
    }
    Ok(())
}

fn text<'a>(b: &'a Block, key: &str) -> Result<Option<&'a str>, PolicyError> {
    match b.attrs.get(key) {
        None => Ok(None),
        Some(Value::Text(s)) => Ok(Some(s)),
        Some(Value::List(_)) => Err(PolicyError::Shape(format!(
            "{}.{key}: a string is expected",
            at(b)
        ))),
    }
}

fn list<'a>(b: &'a Block, key: &str) -> Result<&'a [String], PolicyError> {
    match b.attrs.get(key) {
        None => Ok(&[]),
        Some(Value::List(l)) => Ok(l),
        Some(Value::Text(_)) => Err(PolicyError::Shape(format!(
            "{}.{key}: a list of strings is expected",
            at(b)
        ))),
    }
}

fn policy_word(b: &Block, accepted: &[&str]) -> Result<Option<Level>, PolicyError> {
    let Some(w) = text(b, "policy")? else {
        return Ok(None);
    };
    if !accepted.contains(&w) {
        return Err(PolicyError::Shape(format!(
            "{}.policy: {w:?} is not one of {}",
            at(b),
            accepted.join(", ")
        )));
    }
    Ok(Level::parse(w))
}

/// A name or glob: 1 to 128 letters, digits, `-`, `_` and `*`.
fn check_name(b: &Block) -> Result<String, PolicyError> {
    let name = b.label.clone().unwrap_or_default();
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*');
    if !ok {
        return Err(PolicyError::Shape(format!(
            "{}: the name must be 1 to 128 letters, digits, '-', '_' or '*'",
            at(b)
        )));
    }
    Ok(name)
}

fn namespace(b: &Block) -> Result<NamespaceRule, PolicyError> {
    only_keys(b, &["policy", "capabilities"], &["variables"])?;
    let name = check_name(b)?;
    let mut caps = Vec::new();
    for w in list(b, "capabilities")? {
        let c = NsCap::parse(w).ok_or_else(|| {
            PolicyError::Shape(format!(
                "{}.capabilities: {w:?} is not a namespace capability",
                at(b)
            ))
        })?;
        caps.push(c);
        caps.extend_from_slice(c.implied());
    }
    if let Some(level) = policy_word(b, &["deny", "read", "write", "scale"])? {
        caps.extend_from_slice(NsCap::expand_policy(level));
    }
    caps.sort();
    caps.dedup();
    let mut variables = Vec::new();
    for v in &b.blocks {
        only_keys(v, &[], &["path"])?;
        if v.blocks.is_empty() {
            return Err(PolicyError::Shape(format!(
                "{}.variables: no path rules",
                at(b)
            )));
        }
        for p in &v.blocks {
            only_keys(p, &["capabilities"], &[])?;
            let path = p.label.clone().unwrap_or_default();
            if path.is_empty() || path.len() > 256 {
                return Err(PolicyError::Shape(format!(
                    "{}.variables.path: a path of 1 to 256 characters is expected",
                    at(b)
                )));
            }
            let mut vc = Vec::new();
            for w in list(p, "capabilities")? {
                vc.push(VarCap::parse(w).ok_or_else(|| {
                    PolicyError::Shape(format!(
                        "{}.variables.{}.capabilities: {w:?} is not one of list, read, write, destroy, deny",
                        at(b),
                        at(p)
                    ))
                })?);
            }
            // Nomad's expandVariablesCapabilities: deny alone; read implies list.
            if vc.contains(&VarCap::Deny) {
                vc = vec![VarCap::Deny];
            } else if vc.contains(&VarCap::Read) && !vc.contains(&VarCap::List) {
                vc.push(VarCap::List);
            }
            vc.sort();
            vc.dedup();
            variables.push(VariablesRule {
                path,
                capabilities: vc,
            });
        }
    }
    Ok(NamespaceRule {
        name,
        capabilities: caps,
        variables,
    })
}

fn named(b: &Block, words: &[&str]) -> Result<NamedRule, PolicyError> {
    only_keys(b, &["policy", "capabilities"], &[])?;
    let name = check_name(b)?;
    let mut caps: Vec<String> = Vec::new();
    for w in list(b, "capabilities")? {
        if !words.contains(&w.as_str()) {
            return Err(PolicyError::Shape(format!(
                "{}.capabilities: {w:?} is not one of {}",
                at(b),
                words.join(", ")
            )));
        }
        caps.push(w.clone());
    }
    if let Some(level) = policy_word(b, &["deny", "read", "write"])? {
        let more: &[&str] = match (b.kind.as_str(), level) {
            (_, Level::Deny) => &["deny"],
            ("host_volume", Level::Read) => &["mount-readonly"],
            ("host_volume", _) => &["mount-readonly", "mount-readwrite"],
            (_, Level::Read) => &["read"],
            _ => &["delete", "read", "write"],
        };
        caps.extend(more.iter().map(|s| s.to_string()));
    }
    caps.sort();
    caps.dedup();
    Ok(NamedRule {
        name,
        capabilities: caps,
    })
}

fn level_rule(b: &Block, accepted: &[&str]) -> Result<Level, PolicyError> {
    // Nomad's operator rule also takes capabilities (snapshot-save, license-read).
    let attrs: &[&str] = if b.kind == "operator" {
        &["policy", "capabilities"]
    } else {
        &["policy"]
    };
    only_keys(b, attrs, &[])?;
    if b.label.is_some() {
        return Err(PolicyError::Shape(format!(
            "{}: this rule takes no label",
            at(b)
        )));
    }
    policy_word(b, accepted)?.ok_or_else(|| {
        PolicyError::Shape(format!(
            "{}.policy: missing (one of {})",
            at(b),
            accepted.join(", ")
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorthands_expand_and_capabilities_add() {
        let p = parse(
            r#"
namespace "default" {
  policy = "read"
  capabilities = ["alloc-node-exec", "host-volume-create"]
  variables {
    path "app/*" { capabilities = ["read"] }
    path "secret" { capabilities = ["deny", "read"] }
  }
}
namespace "prod-*" { policy = "deny" }
node { policy = "read" }
agent { policy = "write" }
operator { policy = "read" }
plugin { policy = "list" }
host_volume "data-*" { policy = "write" }
"#,
        )
        .unwrap();
        let ns = &p.namespaces[0];
        for c in [
            NsCap::ListJobs,
            NsCap::ReadJob,
            NsCap::ParseJob,
            NsCap::AllocNodeExec,
            NsCap::HostVolumeRead,
        ] {
            assert!(ns.capabilities.contains(&c), "{c:?}");
        }
        assert!(!ns.capabilities.contains(&NsCap::SubmitJob));
        assert_eq!(
            ns.variables[0].capabilities,
            vec![VarCap::List, VarCap::Read]
        );
        assert_eq!(ns.variables[1].capabilities, vec![VarCap::Deny]);
        assert_eq!(p.namespaces[1].capabilities, vec![NsCap::Deny]);
        assert_eq!(
            (p.node, p.agent, p.operator, p.plugin),
            (
                Some(Level::Read),
                Some(Level::Write),
                Some(Level::Read),
                Some(Level::List)
            )
        );
        assert_eq!(
            p.host_volumes[0].capabilities,
            vec!["mount-readonly", "mount-readwrite"]
        );
    }

    #[test]
    fn unknown_words_and_keys_are_refused_by_name() {
        let e = |t: &str| parse(t).unwrap_err().to_string();
        assert!(
            e(r#"namespace "a" { policy = "admin" }"#)
                .contains("\"admin\" is not one of deny, read, write, scale")
        );
        assert!(
            e(r#"namespace "a" { capabilities = ["exec"] }"#)
                .contains("\"exec\" is not a namespace capability")
        );
        assert!(
            e(r#"namespace "a" { polcy = "read" }"#).contains("namespace \"a\".polcy: unknown key")
        );
        assert!(e(r#"namespaces "a" { policy = "read" }"#).contains("namespaces: not a rule"));
        assert!(e(r#"namespace "a b" { policy = "read" }"#).contains("the name must be"));
        assert!(e(r#"node { policy = "scale" }"#).contains("is not one of deny, read, write"));
        assert!(e("").contains("grant nothing"));
        assert!(e(&"#".repeat(MAX_RULES + 1)).contains("more than"));
    }
}
