//! Allocations: list, read, and the actions on one (stop, restart, signal).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use drover_acl::NsCap;
use drover_api_types as api;
use drover_state::{StateSnapshot, Table};

use crate::acl::Caller;
use crate::query::{Params, by_id_or_prefix, ns_matches, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

/// An allocation as the API shows it: with its node's name, and its job when asked.
pub(crate) fn alloc_view(
    snap: &StateSnapshot,
    a: &drover_model::Allocation,
    with_job: bool,
) -> api::Allocation {
    let node_name = snap
        .node(&a.node_id)
        .map(|n| n.name.clone())
        .unwrap_or_default();
    let job = with_job
        .then(|| snap.job_version(&a.namespace, &a.job_id, a.job_version))
        .flatten();
    api::Allocation::from_model(a, &node_name, job)
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs()
        .filter(|a| ns_matches(&q, &a.namespace) && prefix_ok(&q, &a.id))
        .filter(|a| caller.can(&a.namespace, NsCap::ReadJob))
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}

/// An allocation by id or unique id prefix (as the CLI accepts short ids).
pub(crate) fn find_alloc<'a>(
    snap: &'a StateSnapshot,
    id: &str,
) -> Result<&'a drover_model::Allocation, ApiError> {
    by_id_or_prefix(snap.alloc(id), snap.allocs(), |a| &a.id, id, "allocation")
}

/// The fewest characters of an allocation id that exec, stop, restart and signal accept:
/// a guessed one- or two-character prefix must not reach a task.
pub const MIN_ACTION_PREFIX: usize = 8;

/// [`find_alloc`] for requests that act on an allocation: at least [`MIN_ACTION_PREFIX`]
/// characters of its id.
pub(crate) fn find_alloc_to_act<'a>(
    snap: &'a StateSnapshot,
    id: &str,
) -> Result<&'a drover_model::Allocation, ApiError> {
    if id.len() < MIN_ACTION_PREFIX {
        return Err(ApiError::bad_request(format!(
            "allocation id {id:?} is too short: give at least {MIN_ACTION_PREFIX} characters of it"
        )));
    }
    find_alloc(snap, id)
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let a = find_alloc(&snap, &id)?;
    Ok(with_index(a.modify_index, &alloc_view(&snap, a, true)))
}

pub(crate) async fn stop(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let full_id = find_alloc_to_act(&st.server.store().snapshot(), &id)?
        .id
        .clone();
    let (eval_id, index) = st.server.stop_alloc(&full_id).await?;
    Ok(with_index(
        index,
        &serde_json::json!({ "EvalID": eval_id, "Index": index }),
    ))
}

/// `{"TaskName": "..."}` (restart) or `{"Task": "...", "Signal": "SIGHUP"}` (signal); an
/// empty body means every task.
async fn act(st: &ApiState, id: &str, body: &[u8], action: &str) -> Result<Response, ApiError> {
    let v: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?
    };
    let task = v
        .get("TaskName")
        .or_else(|| v.get("Task"))
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let signal = v
        .get("Signal")
        .and_then(|t| t.as_str())
        .unwrap_or("")
        .to_string();
    let snap = st.server.store().snapshot();
    let a = find_alloc_to_act(&snap, id)?;
    if a.client_status.is_terminal() {
        return Err(ApiError::bad_request(format!(
            "allocation {} is {}: nothing to {action}",
            a.id, a.client_status
        )));
    }
    let req = drover_proto::node::AllocAction {
        alloc_id: a.id.clone(),
        task,
        action: action.into(),
        signal,
    };
    st.server.alloc_action(&a.node_id, req).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

pub(crate) async fn restart(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    act(&st, &id, &body, "restart").await
}

pub(crate) async fn signal(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    act(&st, &id, &body, "signal").await
}
