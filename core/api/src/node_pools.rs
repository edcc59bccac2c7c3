//! Node pools (Nomad's `/v1/node/pools`, `/v1/node/pool/:name`, and a pool's jobs and
//! nodes; written through [`crate::request_body`]'s by-name writes). The built-ins
//! `default` and `all` are neither modified nor deleted.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_api_types as api;
use drover_model::NodePool;
use drover_state::{StateSnapshot, Table};

use crate::nodes::public_node;
use crate::query::{Params, ns_matches, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::NodePools).await?;
    let v: Vec<&NodePool> = snap
        .node_pools()
        .filter(|p| prefix_ok(&q, &p.name))
        .collect();
    Ok(with_index(snap.table_index(Table::NodePools), &v))
}

fn find<'a>(snap: &'a StateSnapshot, name: &str) -> Result<&'a NodePool, ApiError> {
    snap.node_pool(name)
        .ok_or_else(|| ApiError::not_found(format!("node pool {name:?} not found")))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::NodePools).await?;
    let p = find(&snap, &name)?;
    Ok(with_index(p.modify_index, p))
}

/// `GET /v1/node/pool/:name/jobs`: the jobs placed in the pool (in `?namespace=`, `*` for
/// all).
pub(crate) async fn jobs(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    find(&snap, &name)?;
    let v: Vec<api::JobListStub> = snap
        .jobs()
        .filter(|j| j.node_pool == name && ns_matches(&q, &j.namespace))
        .filter(|j| prefix_ok(&q, &j.id))
        .map(api::JobListStub::from_model)
        .collect();
    Ok(with_index(snap.table_index(Table::Jobs), &v))
}

/// `GET /v1/node/pool/:name/nodes`: the pool's nodes (every node for `all`).
pub(crate) async fn nodes(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Nodes).await?;
    let pool = find(&snap, &name)?;
    let v: Vec<api::Node> = snap
        .nodes()
        .filter(|n| pool.holds_node_pool(&n.node_pool) && prefix_ok(&q, &n.id))
        .map(public_node)
        .collect();
    Ok(with_index(snap.table_index(Table::Nodes), &v))
}
