//! Cluster operations: members, the Raft configuration, removing servers, and the backup
//! snapshot (`/v1/operator/snapshot`: GET saves, PUT restores through Raft).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use drover_raft::{NodeId, ServerStatus};
use serde::{Deserialize, Serialize};

use crate::{ApiError, ApiState, Params};

/// The backup file: one JSON document holding the whole cluster state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BackupFile {
    pub meta: BackupMeta,
    /// Every table of the state store (`drover_state::StateSnapshot`'s serialized form).
    pub state: serde_json::Value,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "PascalCase")]
pub struct BackupMeta {
    /// "drover-snapshot".
    pub format: String,
    pub version: u32,
    /// The Raft index the state was read at.
    pub index: u64,
    pub term: u64,
    /// Unix nanoseconds when it was taken.
    pub time: i64,
    pub drover_version: String,
    /// Rows per table.
    pub tables: BTreeMap<String, usize>,
}

impl BackupMeta {
    /// Whether this is a backup file this Drover reads.
    pub fn check(&self) -> Result<(), String> {
        if self.format != BACKUP_FORMAT {
            return Err(format!(
                "not a Drover snapshot file: format is {:?}, expected {BACKUP_FORMAT:?}",
                self.format
            ));
        }
        if self.version != 1 {
            return Err(format!(
                "snapshot format version {} is not supported (this Drover reads version 1)",
                self.version
            ));
        }
        Ok(())
    }
}

pub const BACKUP_FORMAT: &str = "drover-snapshot";

/// Snapshot saves run one at a time.
static SNAPSHOT_SAVES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// GET /v1/operator/snapshot: the whole state, consistent unless `?stale`.
pub async fn snapshot_save(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = crate::query(&st, &q, drover_state::Table::Jobs).await?;
    // One snapshot is serialized at a time, on the blocking pool: the whole state is CPU
    // work and memory that must not stall the runtime or multiply with concurrent requests.
    let _one = SNAPSHOT_SAVES
        .acquire()
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let term = st.server.raft().raft.metrics().borrow().current_term;
    let drover_version = st.agent.version.clone();
    let index = snap.index();
    let body = tokio::task::spawn_blocking(move || {
        let state = serde_json::to_value(&snap)?;
        let mut tables = BTreeMap::new();
        for t in [
            "jobs",
            "job_versions",
            "allocs",
            "evals",
            "nodes",
            "variables",
        ] {
            tables.insert(
                t.to_string(),
                state
                    .get(t)
                    .and_then(|v| v.as_array())
                    .map_or(0, |a| a.len()),
            );
        }
        let file = BackupFile {
            meta: BackupMeta {
                format: BACKUP_FORMAT.into(),
                version: 1,
                index,
                term,
                time: drover_server::now_nanos(),
                drover_version,
                tables,
            },
            state,
        };
        serde_json::to_vec(&file)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut h = HeaderMap::new();
    h.insert(
        "X-Nomad-Index",
        HeaderValue::from_str(&index.max(1).to_string()).expect("digits"),
    );
    h.insert(
        "Content-Type",
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok((h, body).into_response())
}

/// Checks a backup file and returns it decoded.
pub fn decode_backup(bytes: &[u8]) -> Result<BackupFile, String> {
    let file: BackupFile = serde_json::from_slice(bytes)
        .map_err(|e| format!("not a Drover snapshot file (expected its JSON): {e}"))?;
    file.meta.check()?;
    drover_state::StateSnapshot::from_value(file.state.clone())
        .map_err(|e| format!("the snapshot's state is not valid: {e}"))?;
    Ok(file)
}

/// The largest backup a restore accepts.
const MAX_BACKUP_BYTES: u64 = 4 << 30;

/// A backup as a restore reads it: the state decoded straight into the store's shape.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BackupIn {
    meta: BackupMeta,
    state: drover_state::StateSnapshot,
}

/// Removes a staged upload when the request ends, however it ends.
struct Staged(std::path::PathBuf);

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams the request body to a new private file, refusing more than `MAX_BACKUP_BYTES`.
async fn stage_upload(body: axum::body::Body, path: &std::path::Path) -> Result<u64, ApiError> {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let internal = |e: std::io::Error| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stage the backup in {}: {e}", path.display()),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .await
        .map_err(internal)?;
    let mut stream = body.into_data_stream();
    let mut written = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the upload: {e}")))?;
        written += chunk.len() as u64;
        if written > MAX_BACKUP_BYTES {
            return Err(ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the backup is larger than {MAX_BACKUP_BYTES} bytes"),
            ));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    Ok(written)
}

/// Reads a staged backup (blocking), checking its format.
fn read_staged(path: &std::path::Path) -> Result<BackupIn, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let file: BackupIn = serde_json::from_reader(std::io::BufReader::new(f))
        .map_err(|e| format!("not a valid Drover snapshot file: {e}"))?;
    file.meta.check()?;
    Ok(file)
}

/// PUT /v1/operator/snapshot: replaces the cluster's state with the file's, through Raft.
/// The upload is streamed to a private file under the server's Raft directory (never held
/// whole in memory as it arrives), then committed as bounded chunk entries and a final swap
/// entry, which replicate to every server like any write.
pub async fn snapshot_restore(
    State(st): State<ApiState>,
    body: axum::body::Body,
) -> Result<Response, ApiError> {
    let raft = st.server.raft().clone();
    let staged = Staged(raft.restore_staging_path());
    let bytes = stage_upload(body, &staged.0).await?;
    let path = staged.0.clone();
    let file = tokio::task::spawn_blocking(move || read_staged(&path))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(ApiError::bad_request)?;
    drop(staged);
    let from_index = file.meta.index;
    let resp = raft.restore(file.state).await.map_err(|e| match e {
        drover_raft::node::RestoreError::RowTooLarge(_) => ApiError::bad_request(e.to_string()),
        e => match e.write_error() {
            Some(w) => {
                let code = ApiError::from(drover_server::ServerError::from(w.clone())).0;
                ApiError(code, e.to_string())
            }
            None => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    })?;
    tracing::info!(
        index = resp.index,
        from_index,
        bytes,
        "restored the cluster state from a snapshot"
    );
    Ok(crate::with_index(
        resp.index,
        &serde_json::json!({ "Index": resp.index }),
    ))
}

/// Probes every member's status, in parallel (1 s each); a member that does not answer is
/// "failed".
async fn member_statuses(
    st: &ApiState,
) -> (ServerStatus, Vec<(NodeId, String, Option<ServerStatus>)>) {
    let raft = st.server.raft();
    let me = raft.status().await;
    let members: Vec<(NodeId, String)> = me.voters.iter().chain(&me.learners).cloned().collect();
    let probes = futures::future::join_all(members.iter().map(|(id, addr)| {
        let me = me.clone();
        async move {
            if *id == me.id {
                Some(me)
            } else {
                raft.peer_status(addr, Duration::from_secs(1)).await.ok()
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
pub async fn members(State(st): State<ApiState>) -> Response {
    let (me, all) = member_statuses(&st).await;
    let voters: Vec<NodeId> = me.voters.iter().map(|(id, _)| *id).collect();
    let leader = me.leader.as_ref().map(|(id, _)| *id);
    let members: Vec<serde_json::Value> = all
        .into_iter()
        .map(|(id, addr, s)| {
            let (name, status, raft_state) = match &s {
                Some(s) => (s.name.clone(), "alive", s.state.clone()),
                None => (
                    st.server.raft().known_name(id),
                    "failed",
                    "unreachable".into(),
                ),
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
pub async fn raft_configuration(State(st): State<ApiState>) -> Response {
    let (me, all) = member_statuses(&st).await;
    let voters: Vec<NodeId> = me.voters.iter().map(|(id, _)| *id).collect();
    let leader = me.leader.as_ref().map(|(id, _)| *id);
    let servers: Vec<serde_json::Value> = all
        .into_iter()
        .map(|(id, addr, s)| {
            serde_json::json!({
                "ID": id.to_string(),
                "Node": s.as_ref().map(|s| s.name.clone()).unwrap_or_else(|| st.server.raft().known_name(id)),
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
                || st.server.raft().known_name(*id) == what
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
    st.server
        .raft()
        .remove_member(id)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    Ok(axum::Json(serde_json::json!({})).into_response())
}

/// DELETE /v1/operator/raft/peer?id=ID or ?address=ADDR.
pub async fn remove_peer(
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
pub async fn force_leave(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let what = q
        .get("node")
        .ok_or_else(|| ApiError::bad_request("give ?node=SERVER_NAME (or its id or address)"))?;
    let id = find_member(&st, what).await?;
    remove(&st, id).await
}
