//! Nodes: list, read (without their secrets), and a node's allocations.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_acl::NsCap;
use drover_api_types as api;
use drover_state::Table;

use crate::acl::Caller;
use crate::allocations::alloc_view;
use crate::query::{Params, by_id_or_prefix, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

/// A node as the API shows it: without its secret.
pub(crate) fn public_node(n: &api::Node) -> api::Node {
    let mut n = n.clone();
    n.secret_id.clear();
    n
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Nodes).await?;
    let v: Vec<api::Node> = snap
        .nodes()
        .filter(|n| prefix_ok(&q, &n.id))
        .map(public_node)
        .collect();
    Ok(with_index(snap.table_index(Table::Nodes), &v))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Nodes).await?;
    let n = by_id_or_prefix(snap.node(&id), snap.nodes(), |n| &n.id, &id, "node")?;
    Ok(with_index(n.modify_index, &public_node(n)))
}

pub(crate) async fn allocations(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs_by_node(&id)
        .filter(|a| caller.can(&a.namespace, NsCap::ReadJob))
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}
