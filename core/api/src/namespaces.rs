//! Namespaces (Nomad's `/v1/namespaces`, `/v1/namespace/:name`): list and read here;
//! create, update and delete through [`crate::request_body`]'s by-name writes. `default`
//! always exists; one holding jobs or variables is not deleted.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_model::Namespace;
use drover_state::Table;

use crate::query::{Params, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Namespaces).await?;
    let v: Vec<&Namespace> = snap
        .namespaces()
        .filter(|n| prefix_ok(&q, &n.name))
        .collect();
    Ok(with_index(snap.table_index(Table::Namespaces), &v))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Namespaces).await?;
    let ns = snap
        .namespace(&name)
        .ok_or_else(|| ApiError::not_found(format!("namespace {name:?} not found")))?;
    Ok(with_index(ns.modify_index, ns))
}
