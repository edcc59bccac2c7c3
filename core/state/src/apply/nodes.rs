//! Registering nodes and recording their status.

use std::sync::Arc;

use drover_model::{Evaluation, Node, NodeStatus};

use super::{Apply, touch, upsert_eval};
use crate::{Event, Table};

/// Registers a node, or registers it again (keeping its create index).
pub(super) fn register(cx: &mut Apply, node: &Node) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    let mut node = node.clone();
    match s.nodes.get(&node.id) {
        Some(old) => node.create_index = old.create_index,
        None => node.create_index = index,
    }
    node.modify_index = index;
    node.status_updated_at = time;
    // A node in a pool that does not exist yet creates it (as Nomad does).
    super::node_pools::ensure_for_node(s, index, &node.node_pool);
    let node = Arc::new(node);
    cx.events
        .push(Event::node(index, "NodeRegistration", &node));
    s.nodes.insert(node.id.clone(), node);
    touch(s, Table::Nodes, index);
}

/// Records a node's new status, and the evaluations it causes; an unknown node is an error.
pub(super) fn update_status(
    cx: &mut Apply,
    node_id: &str,
    status: NodeStatus,
    description: &str,
    evals: &[Evaluation],
) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    let Some(node) = s.nodes.get(node_id).map(|n| (**n).clone()) else {
        cx.resp.error = Some(format!("node {node_id} not found"));
        return;
    };
    if status == NodeStatus::Down {
        // A down node's instances answer nobody: they leave the catalog at once.
        let allocs: Vec<String> = s.allocs_by_node(node_id).map(|a| a.id.clone()).collect();
        for a in allocs {
            super::services::remove_for_alloc(s, index, &a, cx.events);
        }
    }
    let mut node = node;
    node.status = status;
    node.status_description = description.to_string();
    node.status_updated_at = time;
    node.modify_index = index;
    let node = Arc::new(node);
    cx.events.push(Event::node(index, "NodeEvent", &node));
    s.nodes.insert(node_id.to_string(), node);
    touch(s, Table::Nodes, index);
    for e in evals {
        upsert_eval(s, index, time, e.clone(), cx.events);
        cx.touched_jobs
            .push((e.namespace.clone(), e.job_id.clone()));
    }
}
