//! Cluster operations: members, the Raft configuration, removing servers, and forced
//! garbage collection.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_server::{NodeId, ServerStatus};

use crate::query::Params;
use crate::{ApiError, ApiState};

/// Probes every member's status, in parallel (1 s each); a member that does not answer is
/// "failed".
async fn member_statuses(
    st: &ApiState,
) -> (ServerStatus, Vec<(NodeId, String, Option<ServerStatus>)>) {
    let server = &st.server;
    let me = server.status().await;
    let members: Vec<(NodeId, String)> = me.voters.iter().chain(&me.learners).cloned().collect();
    let probes = futures::future::join_all(members.iter().map(|(id, addr)| {
        let me = me.clone();
        async move {
            if *id == me.id {
                Some(me)
            } else {
                server.peer_status(addr, Duration::from_secs(1)).await.ok()
            }
        }
    }))
    .await;
    let out = members
        .into_iter()
        .zip(probes)
        .map(|((id, addr), s)| (id, addr, s))
        .collect();
    (me, out)
}

/// GET /v1/agent/members: every server in the membership, with its status and Raft role.
pub(crate) async fn members(State(st): State<ApiState>) -> Response {
    let (me, all) = member_statuses(&st).await;
    let voters: Vec<NodeId> = me.voters.iter().map(|(id, _)| *id).collect();
    let leader = me.leader.as_ref().map(|(id, _)| *id);
    let members: Vec<serde_json::Value> = all
        .into_iter()
        .map(|(id, addr, s)| {
            let (name, status, raft_state) = match &s {
                Some(s) => (s.name.clone(), "alive", s.state.clone()),
                None => (st.server.known_name(id), "failed", "unreachable".into()),
            };
            let (host, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "4647"));
            serde_json::json!({
                "Name": name,
                "Addr": host,
                "Port": port.parse::<u16>().unwrap_or(4647),
                "Status": status,
                "Tags": {
                    "id": id.to_string(),
                    "role": "nomad",
                    "region": st.agent.region,
                    "dc": st.agent.datacenter,
                    "rpc_addr": addr,
                    "leader": (leader == Some(id)).to_string(),
                    "raft_voter": voters.contains(&id).to_string(),
                    "raft_state": raft_state,
                    "build": st.agent.version,
                },
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "ServerName": st.agent.name,
        "ServerRegion": st.agent.region,
        "ServerDC": st.agent.datacenter,
        "Members": members,
    }))
    .into_response()
}

/// GET /v1/operator/raft/configuration (Nomad's shape).
pub(crate) async fn raft_configuration(State(st): State<ApiState>) -> Response {
    let (me, all) = member_statuses(&st).await;
    let voters: Vec<NodeId> = me.voters.iter().map(|(id, _)| *id).collect();
    let leader = me.leader.as_ref().map(|(id, _)| *id);
    let servers: Vec<serde_json::Value> = all
        .into_iter()
        .map(|(id, addr, s)| {
            serde_json::json!({
                "ID": id.to_string(),
                "Node": s.as_ref().map(|s| s.name.clone()).unwrap_or_else(|| st.server.known_name(id)),
                "Address": addr,
                "Leader": leader == Some(id),
                "Voter": voters.contains(&id),
                "RaftProtocol": "3",
                "Status": if s.is_some() { "alive" } else { "unreachable" },
                "State": s.map(|s| s.state).unwrap_or_else(|| "unreachable".into()),
            })
        })
        .collect();
    axum::Json(serde_json::json!({
        "Index": me.last_applied,
        "Servers": servers,
    }))
    .into_response()
}

/// Finds a member by id, RPC address, or name.
async fn find_member(st: &ApiState, what: &str) -> Result<NodeId, ApiError> {
    let (_, all) = member_statuses(st).await;
    let found: Vec<NodeId> = all
        .iter()
        .filter(|(id, addr, s)| {
            id.to_string() == what
                || addr == what
                || s.as_ref().is_some_and(|s| s.name == what)
                || st.server.known_name(*id) == what
        })
        .map(|(id, _, _)| *id)
        .collect();
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(ApiError::not_found(format!(
            "no server {what:?} in the cluster (give a server id, RPC address or name; see `drover operator raft list-peers`)"
        ))),
        _ => Err(ApiError::bad_request(format!(
            "{what:?} names several servers: give its id"
        ))),
    }
}

async fn remove(st: &ApiState, id: NodeId) -> Result<Response, ApiError> {
    st.server.remove_member(id).await?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

/// DELETE /v1/operator/raft/peer?id=ID or ?address=ADDR.
pub(crate) async fn remove_peer(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let what = q
        .get("id")
        .or_else(|| q.get("address"))
        .ok_or_else(|| ApiError::bad_request("give ?id=SERVER_ID or ?address=HOST:PORT"))?;
    let id = find_member(&st, what).await?;
    remove(&st, id).await
}

/// POST /v1/agent/force-leave?node=NAME: removes a (failed) server from the cluster.
pub(crate) async fn force_leave(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let what = q
        .get("node")
        .ok_or_else(|| ApiError::bad_request("give ?node=SERVER_NAME (or its id or address)"))?;
    let id = find_member(&st, what).await?;
    remove(&st, id).await
}

/// `PUT /v1/system/gc`: a garbage-collection pass now, with no age thresholds (Nomad's
/// forced GC): every finished evaluation, dead job and down node that nothing still needs.
pub(crate) async fn system_gc(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let collected = st
        .server
        .collect_garbage(&drover_server::GcThresholds::ZERO)
        .await?;
    tracing::info!(?collected, "forced garbage collection");
    Ok(StatusCode::OK.into_response())
}
