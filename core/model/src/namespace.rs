//! Namespaces (Nomad's `Namespace`): the objects jobs, variables and services live in.
//! `default` always exists and cannot be deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{DEFAULT_NAMESPACE, Index};

/// A namespace, in Nomad's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct Namespace {
    pub name: String,
    pub description: String,
    /// Enterprise-only in Nomad (resource quotas); kept, not enforced.
    pub quota: String,
    pub meta: BTreeMap<String, String>,
    /// Which task drivers and network modes the namespace's jobs may use (Nomad's
    /// community edition enforces these; so does Drover at registration).
    pub capabilities: Option<NamespaceCapabilities>,
    /// Enterprise-only in Nomad (the pools a namespace's jobs may use); kept, not enforced.
    pub node_pool_configuration: Option<NamespaceNodePoolConfiguration>,
    pub create_index: Index,
    pub modify_index: Index,
}

/// Nomad's `NamespaceCapabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceCapabilities {
    pub enabled_task_drivers: Vec<String>,
    pub disabled_task_drivers: Vec<String>,
    pub enabled_network_modes: Vec<String>,
    pub disabled_network_modes: Vec<String>,
}

/// Nomad's `NamespaceNodePoolConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NamespaceNodePoolConfiguration {
    pub default: String,
    pub allowed: Vec<String>,
    pub denied: Vec<String>,
}

/// The most a namespace's or node pool's description may hold (Nomad's limit).
pub const MAX_DESCRIPTION_BYTES: usize = 256;
/// The most meta entries, and bytes per key or value, a namespace or pool may hold.
pub const MAX_META_ENTRIES: usize = 64;
pub const MAX_META_BYTES: usize = 1024;
/// The most drivers or network modes a capabilities list may name.
pub const MAX_CAPABILITY_ENTRIES: usize = 64;

/// What is wrong with a namespace or a node pool as submitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    #[error("{what} name {name:?} is not valid: use 1 to 128 letters, digits and '-' ({pattern})")]
    Name {
        what: &'static str,
        name: String,
        pattern: &'static str,
    },
    #[error("{what} {name:?}: the description is {len} bytes, more than the {max} allowed", max = MAX_DESCRIPTION_BYTES)]
    Description {
        what: &'static str,
        name: String,
        len: usize,
    },
    #[error("{what} {name:?}: meta holds {count} entries, more than the {max} allowed", max = MAX_META_ENTRIES)]
    MetaCount {
        what: &'static str,
        name: String,
        count: usize,
    },
    #[error("{what} {name:?}: meta key {key:?} or its value is longer than {max} bytes", max = MAX_META_BYTES)]
    MetaSize {
        what: &'static str,
        name: String,
        key: String,
    },
    #[error("{what} {name:?}: {field} names more than {max} entries (of at most 128 bytes)", max = MAX_CAPABILITY_ENTRIES)]
    TooMany {
        what: &'static str,
        name: String,
        field: &'static str,
    },
}

/// Nomad's namespace name rule, `^[a-zA-Z0-9-]{1,128}$`.
pub fn valid_namespace_name(name: &str) -> bool {
    (1..=128).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

pub(crate) fn check_common(
    what: &'static str,
    name: &str,
    description: &str,
    meta: &BTreeMap<String, String>,
) -> Result<(), ObjectError> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(ObjectError::Description {
            what,
            name: name.into(),
            len: description.len(),
        });
    }
    if meta.len() > MAX_META_ENTRIES {
        return Err(ObjectError::MetaCount {
            what,
            name: name.into(),
            count: meta.len(),
        });
    }
    if let Some((k, _)) = meta
        .iter()
        .find(|(k, v)| k.len() > MAX_META_BYTES || v.len() > MAX_META_BYTES)
    {
        return Err(ObjectError::MetaSize {
            what,
            name: name.into(),
            key: k.chars().take(64).collect(),
        });
    }
    Ok(())
}

impl Namespace {
    /// The built-in namespace (Nomad's description).
    pub fn default_namespace() -> Namespace {
        Namespace {
            name: DEFAULT_NAMESPACE.into(),
            description: "Default shared namespace".into(),
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        }
    }

    /// A namespace that existed only as the name on jobs or variables (written before
    /// namespaces were objects), made an object at `index`.
    pub fn adopted(name: &str, index: Index) -> Namespace {
        Namespace {
            name: name.into(),
            create_index: index,
            modify_index: index,
            ..Default::default()
        }
    }

    /// Checks the name, description, meta and capabilities; the error names what is wrong.
    pub fn validate(&self) -> Result<(), ObjectError> {
        if !valid_namespace_name(&self.name) {
            return Err(ObjectError::Name {
                what: "namespace",
                name: self.name.chars().take(140).collect(),
                pattern: "^[a-zA-Z0-9-]{1,128}$",
            });
        }
        check_common("namespace", &self.name, &self.description, &self.meta)?;
        if let Some(c) = &self.capabilities {
            for (field, list) in [
                ("EnabledTaskDrivers", &c.enabled_task_drivers),
                ("DisabledTaskDrivers", &c.disabled_task_drivers),
                ("EnabledNetworkModes", &c.enabled_network_modes),
                ("DisabledNetworkModes", &c.disabled_network_modes),
            ] {
                if list.len() > MAX_CAPABILITY_ENTRIES || list.iter().any(|d| d.len() > 128) {
                    return Err(ObjectError::TooMany {
                        what: "namespace",
                        name: self.name.clone(),
                        field,
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the namespace lets its jobs use task driver `driver` (Nomad's rule: a
    /// disabled driver never, and with an enabled list only those).
    pub fn allows_driver(&self, driver: &str) -> bool {
        let Some(c) = &self.capabilities else {
            return true;
        };
        !c.disabled_task_drivers.iter().any(|d| d == driver)
            && (c.enabled_task_drivers.is_empty()
                || c.enabled_task_drivers.iter().any(|d| d == driver))
    }

    /// Whether the namespace lets its jobs use network mode `mode` ("host" when empty).
    pub fn allows_network_mode(&self, mode: &str) -> bool {
        let Some(c) = &self.capabilities else {
            return true;
        };
        let mode = if mode.is_empty() { "host" } else { mode };
        !c.disabled_network_modes.iter().any(|d| d == mode)
            && (c.enabled_network_modes.is_empty()
                || c.enabled_network_modes.iter().any(|d| d == mode))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nomads_pattern() {
        for ok in ["default", "prod-eu-1", "A9", &"a".repeat(128)] {
            assert!(valid_namespace_name(ok), "{ok}");
        }
        for bad in ["", "a b", "a_b", "ä", "a/b", &"a".repeat(129), "*"] {
            assert!(!valid_namespace_name(bad), "{bad}");
        }
        let ns = Namespace {
            name: "a b".into(),
            ..Default::default()
        };
        let e = ns.validate().unwrap_err().to_string();
        assert!(
            e.contains("\"a b\"") && e.contains("^[a-zA-Z0-9-]{1,128}$"),
            "{e}"
        );
    }

    #[test]
    fn descriptions_and_meta_are_bounded() {
        let mut ns = Namespace {
            name: "x".into(),
            description: "d".repeat(257),
            ..Default::default()
        };
        assert!(matches!(
            ns.validate(),
            Err(ObjectError::Description { .. })
        ));
        ns.description.clear();
        ns.meta = (0..65).map(|i| (i.to_string(), String::new())).collect();
        assert!(matches!(ns.validate(), Err(ObjectError::MetaCount { .. })));
        ns.meta = [("k".to_string(), "v".repeat(1025))].into();
        assert!(matches!(ns.validate(), Err(ObjectError::MetaSize { .. })));
        ns.meta.clear();
        assert!(ns.validate().is_ok());
    }

    #[test]
    fn capabilities_decide_drivers_and_network_modes() {
        let mut ns = Namespace::default_namespace();
        assert!(ns.allows_driver("docker") && ns.allows_network_mode("bridge"));
        ns.capabilities = Some(NamespaceCapabilities {
            enabled_task_drivers: vec!["raw_exec".into(), "docker".into()],
            disabled_task_drivers: vec!["docker".into()],
            disabled_network_modes: vec!["host".into()],
            ..Default::default()
        });
        assert!(ns.allows_driver("raw_exec"));
        assert!(!ns.allows_driver("docker") && !ns.allows_driver("exec"));
        assert!(!ns.allows_network_mode("") && ns.allows_network_mode("bridge"));
    }

    #[test]
    fn the_json_is_nomads() {
        let v = serde_json::to_value(Namespace::default_namespace()).unwrap();
        for k in [
            "Name",
            "Description",
            "Quota",
            "Meta",
            "Capabilities",
            "NodePoolConfiguration",
            "CreateIndex",
            "ModifyIndex",
        ] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
    }
}
