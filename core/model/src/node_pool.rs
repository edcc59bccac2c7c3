//! Node pools (Nomad's `NodePool`): groups of nodes a job is placed in. The built-in
//! `default` (every node without a pool) and `all` (every node; a job's pool only) cannot
//! be modified or deleted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::namespace::{ObjectError, check_common};
use crate::{Index, SchedulerAlgorithm};

/// The pool of nodes that name none.
pub const DEFAULT_NODE_POOL: &str = "default";
/// The pool that holds every node: a job may name it, a node may not.
pub const ALL_NODE_POOL: &str = "all";

/// A node pool, in Nomad's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodePool {
    pub name: String,
    pub description: String,
    pub meta: BTreeMap<String, String>,
    /// The scheduler's configuration for jobs in this pool, over the cluster's. Nomad
    /// Enterprise only; a Drover extension in the community shape.
    pub scheduler_configuration: Option<NodePoolSchedulerConfiguration>,
    pub create_index: Index,
    pub modify_index: Index,
}

/// Nomad's `NodePoolSchedulerConfiguration`: each field unset inherits the cluster's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub struct NodePoolSchedulerConfiguration {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduler_algorithm: Option<SchedulerAlgorithm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_oversubscription_enabled: Option<bool>,
}

/// Nomad's node pool name rule, `^[a-zA-Z0-9-_]{1,128}$`.
pub fn valid_node_pool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `name` is one of the pools that always exist.
pub fn is_builtin_node_pool(name: &str) -> bool {
    name == DEFAULT_NODE_POOL || name == ALL_NODE_POOL
}

impl NodePool {
    /// The built-in pools, with Nomad's descriptions.
    pub fn builtins() -> [NodePool; 2] {
        let pool = |name: &str, description: &str| NodePool {
            name: name.into(),
            description: description.into(),
            create_index: 1,
            modify_index: 1,
            ..Default::default()
        };
        [
            pool(ALL_NODE_POOL, "Node pool with all nodes in the cluster."),
            pool(DEFAULT_NODE_POOL, "Default node pool."),
        ]
    }

    /// A pool created because a node registered in it (as Nomad does).
    pub fn named(name: &str) -> NodePool {
        NodePool {
            name: name.into(),
            ..Default::default()
        }
    }

    /// Checks the name, description and meta; the error names what is wrong.
    pub fn validate(&self) -> Result<(), ObjectError> {
        if !valid_node_pool_name(&self.name) {
            return Err(ObjectError::Name {
                what: "node pool",
                name: self.name.chars().take(140).collect(),
                pattern: "^[a-zA-Z0-9-_]{1,128}$",
            });
        }
        check_common("node pool", &self.name, &self.description, &self.meta)
    }

    /// Whether nodes of pool `node_pool` ("" is `default`) are in this pool.
    pub fn holds_node_pool(&self, node_pool: &str) -> bool {
        let node_pool = if node_pool.is_empty() {
            DEFAULT_NODE_POOL
        } else {
            node_pool
        };
        self.name == ALL_NODE_POOL || self.name == node_pool
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_nomads_pattern() {
        assert!(valid_node_pool_name("gpu_pool-1"));
        assert!(!valid_node_pool_name("gpu pool") && !valid_node_pool_name(""));
        let e = NodePool::named("a.b").validate().unwrap_err().to_string();
        assert!(e.contains("node pool name \"a.b\""), "{e}");
    }

    #[test]
    fn the_scheduler_configuration_reads_nomads_json() {
        let p: NodePool = serde_json::from_str(
            r#"{"Name":"gpu","SchedulerConfiguration":{"SchedulerAlgorithm":"spread","MemoryOversubscriptionEnabled":true}}"#,
        )
        .unwrap();
        let c = p.scheduler_configuration.unwrap();
        assert_eq!(c.scheduler_algorithm, Some(SchedulerAlgorithm::Spread));
        assert_eq!(c.memory_oversubscription_enabled, Some(true));
        let bad = serde_json::from_str::<NodePool>(
            r#"{"Name":"gpu","SchedulerConfiguration":{"SchedulerAlgorithm":"random"}}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("random"));
    }

    #[test]
    fn all_holds_every_node_and_default_the_unnamed() {
        let [all, default] = NodePool::builtins();
        assert!(all.holds_node_pool("gpu") && all.holds_node_pool(""));
        assert!(default.holds_node_pool("") && !default.holds_node_pool("gpu"));
    }
}
