//! [`Acl`]: a token's policies compiled into one object, checked on every request.
//!
//! Nomad's rules: capabilities of the same namespace (or glob) across policies add up,
//! except `deny`, which replaces them and wins; a namespace named exactly beats every glob,
//! and among matching globs the closest one (fewest characters left to the stars) decides;
//! node, agent, operator, quota and plugin take the highest level granted, deny winning.

use std::collections::BTreeMap;

use crate::capability::{Level, NsCap, NsCaps, VarCap};
use crate::glob;
use crate::policy::Policy;

/// A set of variable capabilities, as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct VarCaps(u8);

impl VarCaps {
    fn has(self, c: VarCap) -> bool {
        self.0 & c.bit() != 0
    }
}

/// Capability sets by name, exact names apart from globs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ByName<T> {
    exact: BTreeMap<String, T>,
    globs: BTreeMap<String, T>,
}

impl<T: Copy> ByName<T> {
    fn entry(&mut self, name: &str, glob_key: bool, empty: T) -> &mut T {
        let map = if glob_key || name.contains('*') {
            &mut self.globs
        } else {
            &mut self.exact
        };
        map.entry(name.to_string()).or_insert(empty)
    }

    /// The set for `name`: its exact entry, else the closest matching glob's.
    fn matching(&self, name: &str) -> Option<T> {
        if let Some(c) = self.exact.get(name) {
            return Some(*c);
        }
        self.globs
            .iter()
            .filter(|(g, _)| glob::matches(g, name))
            .min_by_key(|(g, _)| glob::difference(g, name))
            .map(|(_, c)| *c)
    }

    fn any(&self, f: impl Fn(&T) -> bool) -> bool {
        self.exact.values().chain(self.globs.values()).any(f)
    }
}

/// What a token may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acl {
    management: bool,
    namespaces: ByName<NsCaps>,
    /// Keyed by `namespace \0 path`.
    variables: ByName<VarCaps>,
    host_volumes: ByName<u8>,
    node_pools: ByName<u8>,
    agent: Option<Level>,
    node: Option<Level>,
    operator: Option<Level>,
    quota: Option<Level>,
    plugin: Option<Level>,
}

const DENY_BIT: u8 = 1;

impl Acl {
    /// A management token's: everything is allowed.
    pub fn management() -> Acl {
        Acl {
            management: true,
            ..Default::default()
        }
    }

    /// The union of `policies`, by Nomad's precedence rules.
    pub fn compile<'a>(policies: impl IntoIterator<Item = &'a Policy>) -> Acl {
        let mut acl = Acl::default();
        for p in policies {
            for ns in &p.namespaces {
                let glob_ns = ns.name.contains('*');
                for v in &ns.variables {
                    let key = format!("{}\0{}", ns.name, v.path);
                    let set = acl.variables.entry(
                        &key,
                        glob_ns || v.path.contains('*'),
                        VarCaps::default(),
                    );
                    for c in &v.capabilities {
                        set.0 |= c.bit();
                    }
                }
                let set = acl.namespaces.entry(&ns.name, glob_ns, NsCaps::default());
                if set.has(NsCap::Deny) {
                    continue;
                }
                if ns.capabilities.contains(&NsCap::Deny) {
                    *set = NsCaps::default();
                    set.set(NsCap::Deny);
                    continue;
                }
                for c in &ns.capabilities {
                    set.set(*c);
                }
            }
            for (rules, into) in [
                (&p.host_volumes, &mut acl.host_volumes),
                (&p.node_pools, &mut acl.node_pools),
            ] {
                for r in rules {
                    let set = into.entry(&r.name, false, 0);
                    if *set & DENY_BIT != 0 {
                        continue;
                    }
                    if r.capabilities.iter().any(|c| c == "deny") {
                        *set = DENY_BIT;
                    } else if !r.capabilities.is_empty() {
                        *set |= 2;
                    }
                }
            }
            for (level, into) in [
                (p.agent, &mut acl.agent),
                (p.node, &mut acl.node),
                (p.operator, &mut acl.operator),
                (p.quota, &mut acl.quota),
                (p.plugin, &mut acl.plugin),
            ] {
                if let Some(l) = level {
                    *into = Level::max(*into, l);
                }
            }
        }
        acl
    }

    pub fn is_management(&self) -> bool {
        self.management
    }

    /// Whether `op` is allowed in namespace `ns` (`*`: in any namespace).
    pub fn allow_ns_op(&self, ns: &str, op: NsCap) -> bool {
        if self.management {
            return true;
        }
        if ns == "*" && self.namespaces.any(|c| c.has(op) && !c.has(NsCap::Deny)) {
            return true;
        }
        self.namespaces
            .matching(ns)
            .is_some_and(|c| c.has(op) && !c.has(NsCap::Deny))
    }

    /// Whether anything at all is allowed in namespace `ns` (`*`: in any).
    pub fn allow_namespace(&self, ns: &str) -> bool {
        if self.management {
            return true;
        }
        let some = |c: &NsCaps| !c.is_empty() && !c.has(NsCap::Deny);
        if ns == "*" {
            return self.namespaces.any(some);
        }
        self.namespaces.matching(ns).is_some_and(|c| some(&c))
    }

    /// Whether `op` is allowed on the variable at `path` in namespace `ns`.
    pub fn allow_variable_op(&self, ns: &str, path: &str, op: VarCap) -> bool {
        if self.management {
            return true;
        }
        self.variables
            .matching(&format!("{ns}\0{path}"))
            .is_some_and(|c| c.has(op) && !c.has(VarCap::Deny))
    }

    /// Whether the token has any variables rule for namespace `ns` (`*`: any): the loose
    /// check before a listing is filtered path by path.
    pub fn allow_variable_search(&self, ns: &str) -> bool {
        if self.management {
            return true;
        }
        if ns == "*" {
            return self.variables.any(|_| true);
        }
        let prefix = format!("{ns}\0");
        self.variables.exact.keys().any(|k| k.starts_with(&prefix))
            || self
                .variables
                .globs
                .keys()
                .any(|k| k.split('\0').next().is_some_and(|g| glob::matches(g, ns)))
    }

    /// Whether a host volume may be mounted.
    pub fn allow_host_volume(&self, name: &str) -> bool {
        self.management
            || self
                .host_volumes
                .matching(name)
                .is_some_and(|c| c & DENY_BIT == 0 && c != 0)
    }

    fn level(&self, l: Option<Level>, write: bool) -> bool {
        self.management
            || match l {
                Some(Level::Write) => true,
                Some(Level::Read) => !write,
                _ => false,
            }
    }

    pub fn allow_node_read(&self) -> bool {
        self.level(self.node, false)
    }
    pub fn allow_node_write(&self) -> bool {
        self.level(self.node, true)
    }
    pub fn allow_agent_read(&self) -> bool {
        self.level(self.agent, false)
    }
    pub fn allow_agent_write(&self) -> bool {
        self.level(self.agent, true)
    }
    pub fn allow_operator_read(&self) -> bool {
        self.level(self.operator, false)
    }
    pub fn allow_operator_write(&self) -> bool {
        self.level(self.operator, true)
    }
    pub fn allow_quota_read(&self) -> bool {
        self.level(self.quota, false)
    }
    /// Plugins: `list` lists them, `read` (or `write`) reads them too.
    pub fn allow_plugin_list(&self) -> bool {
        self.management || matches!(self.plugin, Some(Level::List | Level::Read | Level::Write))
    }
    pub fn allow_plugin_read(&self) -> bool {
        self.management || matches!(self.plugin, Some(Level::Read | Level::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn acl(texts: &[&str]) -> Acl {
        let ps: Vec<Policy> = texts.iter().map(|t| parse(t).unwrap()).collect();
        Acl::compile(&ps)
    }

    #[test]
    fn exact_beats_glob_and_the_closest_glob_wins() {
        let a = acl(&[r#"
namespace "*" { policy = "read" }
namespace "prod-*" { policy = "write" }
namespace "prod-secret" { policy = "deny" }
"#]);
        assert!(a.allow_ns_op("dev", NsCap::ReadJob));
        assert!(!a.allow_ns_op("dev", NsCap::SubmitJob));
        assert!(a.allow_ns_op("prod-web", NsCap::SubmitJob));
        assert!(!a.allow_ns_op("prod-secret", NsCap::ReadJob));
        assert!(!a.allow_namespace("prod-secret"));
        assert!(a.allow_ns_op("*", NsCap::SubmitJob));
    }

    #[test]
    fn capabilities_add_up_across_policies_and_deny_wins() {
        let a = acl(&[
            r#"namespace "a" { capabilities = ["read-job"] }"#,
            r#"namespace "a" { capabilities = ["submit-job"] }"#,
        ]);
        assert!(a.allow_ns_op("a", NsCap::ReadJob) && a.allow_ns_op("a", NsCap::SubmitJob));
        assert!(!a.allow_ns_op("b", NsCap::ReadJob));
        let d = acl(&[
            r#"namespace "a" { policy = "write" }"#,
            r#"namespace "a" { policy = "deny" }"#,
            r#"namespace "a" { policy = "write" }"#,
        ]);
        assert!(!d.allow_ns_op("a", NsCap::ReadJob));
        assert!(!d.allow_ns_op("*", NsCap::ReadJob));
    }

    #[test]
    fn variables_by_path_and_levels() {
        let a = acl(&[
            r#"
namespace "default" {
  variables {
    path "app/*" { capabilities = ["read", "write"] }
    path "app/secret" { capabilities = ["deny"] }
  }
}
node { policy = "read" }
agent { policy = "write" }
operator { policy = "deny" }
"#,
            r#"operator { policy = "write" }"#,
        ]);
        assert!(a.allow_variable_op("default", "app/x", VarCap::Write));
        assert!(a.allow_variable_op("default", "app/x", VarCap::List));
        assert!(!a.allow_variable_op("default", "app/x", VarCap::Destroy));
        assert!(!a.allow_variable_op("default", "app/secret", VarCap::Read));
        assert!(!a.allow_variable_op("other", "app/x", VarCap::Read));
        assert!(a.allow_variable_search("default") && !a.allow_variable_search("other"));
        assert!(a.allow_node_read() && !a.allow_node_write());
        assert!(a.allow_agent_write());
        assert!(!a.allow_operator_read(), "deny wins over write");
        let m = Acl::management();
        assert!(m.allow_ns_op("x", NsCap::AllocNodeExec) && m.allow_operator_write());
        let none = Acl::default();
        assert!(!none.allow_ns_op("default", NsCap::ListJobs) && !none.allow_node_read());
    }
}
