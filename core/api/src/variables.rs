//! Nomad's Variables API: `GET /v1/vars`, and `GET|PUT|DELETE /v1/var/<path>` with `?cas=`
//! check-and-set (409 Conflict with the current variable when the index does not match).

use std::collections::BTreeMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_acl::VarCap;
use drover_model::Variable;
use drover_server::VarWrite;
use drover_state::Table;
use serde::Serialize;

use crate::acl::{Caller, denied};
use crate::query::{Params, namespace, ns_matches, query, with_index};
use crate::{ApiError, ApiState};

/// A list row: a variable without its items.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct VariableMetadata<'a> {
    namespace: &'a str,
    path: &'a str,
    create_index: u64,
    modify_index: u64,
    create_time: i64,
    modify_time: i64,
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Variables).await?;
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let rows: Vec<VariableMetadata> = snap
        .variables()
        .filter(|v| ns_matches(&q, &v.namespace) && v.path.starts_with(prefix))
        .filter(|v| caller.can_variable(&v.namespace, &v.path, VarCap::List))
        .map(|v| VariableMetadata {
            namespace: &v.namespace,
            path: &v.path,
            create_index: v.create_index,
            modify_index: v.modify_index,
            create_time: v.create_time,
            modify_time: v.modify_time,
        })
        .collect();
    Ok(with_index(snap.table_index(Table::Variables), &rows))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(path): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Variables).await?;
    let ns = namespace(&q);
    let v = snap.variable(&ns, &path).ok_or_else(|| {
        ApiError::not_found(format!("variable {path:?} not found in namespace {ns:?}"))
    })?;
    let v = st.server.open_variable(&snap, v).await?;
    Ok(with_index(snap.table_index(Table::Variables), &v))
}

fn cas(q: &BTreeMap<String, String>) -> Result<Option<u64>, ApiError> {
    q.get("cas")
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::bad_request(format!("cas {c:?} is not an index")))
        })
        .transpose()
}

fn conflict(current: Option<std::sync::Arc<Variable>>) -> Response {
    (
        StatusCode::CONFLICT,
        axum::Json(current.as_deref().cloned().unwrap_or_default()),
    )
        .into_response()
}

pub(crate) async fn put(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
    Query(q): Params,
    body: Bytes,
) -> Result<Response, ApiError> {
    let mut var: Variable = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid variable: {e}")))?;
    if !var.path.is_empty() && var.path != path {
        return Err(ApiError::bad_request(format!(
            "variable path {:?} in the body does not match {path:?} in the URL",
            var.path
        )));
    }
    var.path = path;
    if q.contains_key("namespace") || var.namespace.is_empty() {
        var.namespace = namespace(&q);
    }
    // The namespace the body may name is checked too, not only the request's.
    if !caller.can_variable(&var.namespace, &var.path, VarCap::Write) {
        return Err(denied());
    }
    match st.server.put_variable(var, cas(&q)?).await? {
        VarWrite::Done(Some(v)) => Ok(with_index(v.modify_index, &*v)),
        VarWrite::Done(None) => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the write committed without returning the variable".into(),
        )),
        VarWrite::Conflict(current) => Ok(conflict(current)),
    }
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(path): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let ns = namespace(&q);
    match st.server.delete_variable(&ns, &path, cas(&q)?).await? {
        VarWrite::Done(_) => Ok(StatusCode::OK.into_response()),
        VarWrite::Conflict(current) => Ok(conflict(current)),
    }
}
