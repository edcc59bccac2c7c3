//! Evaluations: list and read.

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_acl::NsCap;
use drover_api_types as api;
use drover_state::Table;

use crate::acl::Caller;
use crate::query::{Params, by_id_or_prefix, ns_matches, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let v: Vec<api::Evaluation> = snap
        .evals()
        .filter(|e| ns_matches(&q, &e.namespace) && prefix_ok(&q, &e.id))
        .filter(|e| caller.can(&e.namespace, NsCap::ReadJob))
        .cloned()
        .collect();
    Ok(with_index(snap.table_index(Table::Evals), &v))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let e = by_id_or_prefix(snap.eval(&id), snap.evals(), |e| &e.id, &id, "evaluation")?;
    Ok(with_index(e.modify_index, &e))
}
