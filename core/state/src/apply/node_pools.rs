//! Creating, updating and deleting node pools. Each command is all or nothing; the
//! built-in pools (`default`, `all`) are never changed by one.

use std::sync::Arc;

use drover_model::{NodePool, is_builtin_node_pool};

use super::{Apply, touch};
use crate::{StateSnapshot, Table};

/// Creates or updates node pools (an update keeps its create index).
pub(super) fn upsert(cx: &mut Apply, pools: &[NodePool]) {
    for p in pools {
        if is_builtin_node_pool(&p.name) {
            cx.resp.error = Some(format!(
                "node pool {:?} is built in and cannot be modified",
                p.name
            ));
            return;
        }
        if let Err(e) = p.validate() {
            cx.resp.error = Some(e.to_string());
            return;
        }
    }
    for p in pools {
        put(cx.s, cx.index, p.clone());
    }
}

/// Deletes node pools: none if any is unknown, built in, or holds nodes or jobs.
pub(super) fn delete(cx: &mut Apply, names: &[String]) {
    let s = &mut *cx.s;
    for name in names {
        if s.node_pool(name).is_none() {
            cx.resp.error = Some(format!("node pool {name:?} does not exist"));
            return;
        }
        if let Some(why) = s.node_pool_in_use(name) {
            cx.resp.error = Some(why);
            return;
        }
    }
    for name in names {
        s.node_pools.remove(name);
    }
    if !names.is_empty() {
        touch(s, Table::NodePools, cx.index);
    }
}

/// Creates the pool a node registers in when it does not exist yet (as Nomad does). A
/// name that is not a valid pool name creates nothing.
pub(super) fn ensure_for_node(s: &mut StateSnapshot, index: drover_model::Index, name: &str) {
    if name.is_empty()
        || s.node_pools.contains_key(name)
        || NodePool::named(name).validate().is_err()
    {
        return;
    }
    put(s, index, NodePool::named(name));
}

fn put(s: &mut StateSnapshot, index: drover_model::Index, mut pool: NodePool) {
    match s.node_pools.get(&pool.name) {
        Some(old) => pool.create_index = old.create_index,
        None => pool.create_index = index,
    }
    pool.modify_index = index;
    s.node_pools.insert(pool.name.clone(), Arc::new(pool));
    touch(s, Table::NodePools, index);
}
