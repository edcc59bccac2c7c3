//! The agent and the cluster's status: `/v1/agent/self`, `/v1/status/leader`,
//! `/v1/status/peers`, `/v1/regions`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, ApiState};

pub(crate) async fn status_leader(State(st): State<ApiState>) -> Result<Response, ApiError> {
    match st.server.leader() {
        Some((_, addr)) => Ok(axum::Json(addr).into_response()),
        None => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No cluster leader".into(),
        )),
    }
}

pub(crate) async fn status_peers(State(st): State<ApiState>) -> Response {
    let peers: Vec<String> = st.server.peers().into_iter().map(|(_, a)| a).collect();
    axum::Json(peers).into_response()
}

pub(crate) async fn agent_self(State(st): State<ApiState>) -> Response {
    let leader = st.server.leader();
    let raft = st.server.raft_stats();
    let id = st.server.server_id();
    // This member as its Raft state shows it: serving ("alive") while its Raft runs.
    let status = if raft.running { "alive" } else { "failed" };
    let body = serde_json::json!({
        "config": {
            "Name": st.agent.name,
            "Region": st.agent.region,
            "Datacenter": st.agent.datacenter,
            "Version": { "Version": st.agent.version },
        },
        "member": {
            "Name": st.agent.name,
            "Addr": st.agent.rpc_addr,
            "Tags": { "region": st.agent.region, "dc": st.agent.datacenter, "id": id.to_string() },
            "Status": status,
        },
        "stats": {
            "raft": {
                "leader": leader.is_some_and(|(l, _)| l == id).to_string(),
                "state": raft.state,
                "term": raft.term.to_string(),
                "last_log_index": raft.last_log_index.to_string(),
                "applied_index": raft.applied_index.to_string(),
                "num_peers": st.server.peers().len().saturating_sub(1).to_string(),
            },
        },
    });
    axum::Json(body).into_response()
}

pub(crate) async fn regions(State(st): State<ApiState>) -> Response {
    axum::Json(vec![st.agent.region.clone()]).into_response()
}
