//! The HTTP API: Nomad's paths and JSON shapes, blocking queries (`?index=&wait=`), and log
//! streaming from the clients through the server.

mod events;
mod exec;
pub mod guard;
pub mod limits;
mod logs;
pub mod operator;
mod plugins;
mod variables;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use drover_api_types as api;
use drover_server::{Server, ServerError};
use drover_state::{StateSnapshot, Table};
use serde::Serialize;

/// What the agent says about itself (`/v1/agent/self`).
#[derive(Clone, Debug, Serialize)]
pub struct AgentInfo {
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub http_addr: String,
    pub rpc_addr: String,
    pub version: String,
}

#[derive(Clone)]
pub struct ApiState {
    pub server: Server,
    pub agent: AgentInfo,
    /// The client's plugin host, when this agent runs a client.
    pub plugins: Option<std::sync::Arc<drover_plugin_host::PluginHost>>,
    /// How the HTTP listener is exposed (for the Host check of [`guard`]).
    pub exposure: guard::Exposure,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(
            "/v1/jobs",
            get(list_jobs).put(register_job).post(register_job),
        )
        .route("/v1/jobs/parse", post(parse_job).put(parse_job))
        .route("/v1/vars", get(variables::list))
        .route(
            "/v1/var/{*path}",
            get(variables::read)
                .put(variables::put)
                .post(variables::put)
                .delete(variables::delete)
                .layer(axum::extract::DefaultBodyLimit::max(
                    limits::MAX_VARIABLE_BODY,
                )),
        )
        .route(
            "/v1/job/{id}",
            get(read_job)
                .put(register_job_at)
                .post(register_job_at)
                .delete(deregister_job),
        )
        .route("/v1/job/{id}/allocations", get(job_allocs))
        .route("/v1/job/{id}/evaluations", get(job_evals))
        .route("/v1/job/{id}/versions", get(job_versions))
        .route("/v1/job/{id}/plan", post(plan_job).put(plan_job))
        .route("/v1/agent/members", get(operator::members))
        .route(
            "/v1/agent/force-leave",
            post(operator::force_leave).put(operator::force_leave),
        )
        .route(
            "/v1/operator/raft/configuration",
            get(operator::raft_configuration),
        )
        .route(
            "/v1/operator/raft/peer",
            axum::routing::delete(operator::remove_peer),
        )
        .route(
            "/v1/operator/snapshot",
            get(operator::snapshot_save)
                .put(operator::snapshot_restore)
                .post(operator::snapshot_restore)
                .layer(axum::extract::DefaultBodyLimit::max(4 << 30)),
        )
        .route("/v1/allocations", get(list_allocs))
        .route("/v1/allocation/{id}", get(read_alloc))
        .route(
            "/v1/allocation/{id}/stop",
            post(stop_alloc)
                .put(stop_alloc)
                .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_SMALL_BODY)),
        )
        .route(
            "/v1/client/allocation/{id}/restart",
            post(restart_alloc)
                .put(restart_alloc)
                .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_SMALL_BODY)),
        )
        .route(
            "/v1/client/allocation/{id}/signal",
            post(signal_alloc)
                .put(signal_alloc)
                .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_SMALL_BODY)),
        )
        .route("/v1/evaluations", get(list_evals))
        .route("/v1/evaluation/{id}", get(read_eval))
        .route("/v1/nodes", get(list_nodes))
        .route("/v1/node/{id}", get(read_node))
        .route("/v1/node/{id}/allocations", get(node_allocs))
        .route("/v1/system/gc", put(system_gc).post(system_gc))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/regions", get(regions))
        .route("/v1/agent/plugins", get(plugins::list))
        .route("/v1/client/fs/logs/{alloc}", get(logs::stream))
        .route("/v1/client/allocation/{alloc}/stats", get(exec::stats))
        .route("/v1/client/allocation/{alloc}/exec", get(exec::exec))
        .route("/v1/event/stream", get(events::stream))
        .route("/v1/client/fs/{op}/{alloc}", get(logs::fs))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client_requests_to_leader,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            known_leader,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        // Jobs, plans, parses: up to MAX_BODY; the routes above set their own.
        .layer(axum::extract::DefaultBodyLimit::max(limits::MAX_BODY))
        .with_state(state)
}

/// Blocking-query answers carry `X-Nomad-KnownLeader`: whether this server knows a leader
/// as it answers (a stale read from a server without one says `false`).
async fn known_leader(
    State(st): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    if resp.headers().contains_key("X-Nomad-Index") {
        let known = st.server.raft().leader().is_some();
        resp.headers_mut().insert(
            "X-Nomad-KnownLeader",
            HeaderValue::from_static(if known { "true" } else { "false" }),
        );
        // How long ago this server last heard from the leader (0 on the leader).
        if let Some(ms) = st.server.raft().last_contact_ms() {
            resp.headers_mut().insert(
                "X-Nomad-LastContact",
                HeaderValue::from_str(&ms.to_string()).expect("digits are a header value"),
            );
        }
    }
    resp
}

/// Node-bound requests (`/v1/client/...`: logs, fs, exec, stats, restart, signal) need the
/// server that holds the client's stream, which is the leader (clients attach to it): a
/// follower redirects them there, 307 keeping the method and body.
async fn client_requests_to_leader(
    State(st): State<ApiState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path().starts_with("/v1/client/")
        && let Some(http) = st.server.raft().leader_http().await
    {
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        return (
            StatusCode::TEMPORARY_REDIRECT,
            [(
                axum::http::header::LOCATION,
                format!("http://{http}{target}"),
            )],
        )
            .into_response();
    }
    next.run(req).await
}

/// An API error: a status code and a plain-text message (as Nomad answers).
pub struct ApiError(pub(crate) StatusCode, pub(crate) String);

impl ApiError {
    fn bad_request(m: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, m.into())
    }
    fn not_found(m: impl Into<String>) -> Self {
        ApiError(StatusCode::NOT_FOUND, m.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, self.1).into_response()
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        let code = match &e {
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::NodeNotConnected(_) => StatusCode::SERVICE_UNAVAILABLE,
            ServerError::Invalid(_) => StatusCode::BAD_REQUEST,
            ServerError::Write(drover_raft::WriteError::Rejected(_)) => StatusCode::BAD_REQUEST,
            ServerError::Write(drover_raft::WriteError::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ServerError::Write(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(code, e.to_string())
    }
}

type Params = Query<BTreeMap<String, String>>;

fn namespace(q: &BTreeMap<String, String>) -> String {
    q.get("namespace")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "default".into())
}

fn ns_matches(q: &BTreeMap<String, String>, ns: &str) -> bool {
    let want = namespace(q);
    want == "*" || want == ns
}

/// Parses Nomad's wait syntax: "5s", "1m", or bare milliseconds... (Nomad takes Go durations).
fn parse_wait(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return None,
    })
}

/// Answers from a snapshot, blocking first when the query has `?index=`.
async fn query(
    st: &ApiState,
    q: &BTreeMap<String, String>,
    table: Table,
) -> Result<StateSnapshot, ApiError> {
    let store = st.server.store();
    if !q.contains_key("stale") {
        consistent(st).await?;
    }
    match q.get("index") {
        None => Ok(store.snapshot()),
        Some(i) => {
            let index: u64 = i
                .parse()
                .map_err(|_| ApiError::bad_request(format!("index {i:?} is not a number")))?;
            let _slot = limits::blocking_query()?;
            let wait = match q.get("wait") {
                None => Duration::from_secs(300),
                Some(w) => parse_wait(w).ok_or_else(|| {
                    ApiError::bad_request(format!("wait {w:?} is not a duration like 30s or 5m"))
                })?,
            };
            Ok(store
                .wait_for(table, index, wait.min(Duration::from_secs(600)))
                .await)
        }
    }
}

/// Makes a read consistent: this server must have applied what the leader had when the read
/// arrived (the leader confirms its leadership with a quorum first). Without a leader the read
/// fails with "no cluster leader"; `?stale` reads skip this and answer from local state.
async fn consistent(st: &ApiState) -> Result<(), ApiError> {
    let index = st.server.raft().read_index().await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e} (add ?stale to read this server's possibly stale state)"),
        )
    })?;
    let store = st.server.store();
    let mut rx = store.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.index() < index {
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            return Err(ApiError(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "this server has applied index {} but the leader is at {index}: it is catching up (add ?stale to read its state anyway)",
                    store.index()
                ),
            ));
        }
    }
    Ok(())
}

fn with_index<T: Serialize>(index: u64, body: &T) -> Response {
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&index.max(1).to_string()).expect("digits are a header value");
    h.insert("X-Nomad-Index", v.clone());
    h.insert("X-Drover-Index", v);
    h.insert("X-Nomad-LastContact", HeaderValue::from_static("0"));
    (h, axum::Json(body)).into_response()
}

fn prefix_ok(q: &BTreeMap<String, String>, id: &str) -> bool {
    q.get("prefix").is_none_or(|p| id.starts_with(p.as_str()))
}

async fn list_jobs(State(st): State<ApiState>, Query(q): Params) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let jobs: Vec<api::JobListStub> = snap
        .jobs()
        .filter(|j| ns_matches(&q, &j.namespace) && prefix_ok(&q, &j.id))
        .map(api::JobListStub::from_model)
        .collect();
    Ok(with_index(snap.table_index(Table::Jobs), &jobs))
}

fn decode_job(body: &[u8]) -> Result<drover_model::Job, ApiError> {
    api::decode_job(body, false).map_err(|e| ApiError::bad_request(format!("invalid job: {e}")))
}

async fn register(st: &ApiState, job: drover_model::Job) -> Result<Response, ApiError> {
    // What the HCL path prints for blocks not acted on yet, for API JSON too.
    let warnings = drover_jobspec::model_warnings(&job).join("\n");
    let (eval_id, index, _version) = st.server.register_job(job.clone()).await?;
    let snap = st.server.store().snapshot();
    let jmi = snap
        .job(&job.namespace, &job.id)
        .map(|j| j.job_modify_index)
        .unwrap_or(index);
    let resp = api::JobRegisterResponse {
        eval_id,
        eval_create_index: index,
        job_modify_index: jmi,
        warnings,
        index,
    };
    Ok(with_index(index, &resp))
}

async fn register_job(State(st): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    let job = decode_job(&body)?;
    register(&st, job).await
}

async fn register_job_at(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let job = decode_job(&body)?;
    if job.id != id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the path",
            job.id
        )));
    }
    register(&st, job).await
}

async fn parse_job(body: Bytes) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ParseReq {
        #[serde(rename = "JobHCL")]
        job_hcl: String,
    }
    let req: ParseReq = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("request body must be {{\"JobHCL\": \"...\"}}: {e}"))
    })?;
    // Parsed here, on the server: no server files (`file()`), no server environment.
    let vars = drover_jobspec::Variables {
        on_server: true,
        ..Default::default()
    };
    let parsed = drover_jobspec::parse_with(&req.job_hcl, "<JobHCL>", &vars)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(axum::Json(&parsed.job).into_response())
}

async fn plan_job(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let job = decode_job(&body)?;
    if job.id != id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the path",
            job.id
        )));
    }
    let diff = api::job_diff(
        st.server.store().snapshot().job(&job.namespace, &job.id),
        &job,
    );
    let jp = st.server.plan_job(job.clone()).await?;
    let mut updates: BTreeMap<String, api::DesiredUpdates> = BTreeMap::new();
    for g in &job.groups {
        updates.insert(g.name.clone(), api::DesiredUpdates::default());
    }
    let replaced: std::collections::BTreeSet<&str> = jp
        .plan
        .allocs
        .iter()
        .map(|a| a.previous_allocation.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let touched: std::collections::BTreeSet<&str> = jp
        .plan
        .allocs
        .iter()
        .map(|a| a.id.as_str())
        .chain(jp.plan.stops.iter().map(|s| s.alloc_id.as_str()))
        .collect();
    for a in &jp.plan.allocs {
        let u = updates.entry(a.task_group.clone()).or_default();
        if jp.before.alloc(&a.id).is_some() {
            u.in_place_update += 1;
        } else if !a.previous_allocation.is_empty() {
            u.destructive_update += 1;
        } else {
            u.place += 1;
        }
    }
    for s in &jp.plan.stops {
        if let Some(a) = jp.before.alloc(&s.alloc_id)
            && !replaced.contains(a.id.as_str())
        {
            updates.entry(a.task_group.clone()).or_default().stop += 1;
        }
    }
    for a in jp
        .before
        .allocs_by_job(&job.namespace, &job.id)
        .filter(|a| a.is_active() && !touched.contains(a.id.as_str()))
    {
        updates.entry(a.task_group.clone()).or_default().ignore += 1;
    }
    let resp = api::JobPlanResponse {
        job_modify_index: jp
            .previous
            .as_ref()
            .map(|j| j.job_modify_index)
            .unwrap_or(0),
        diff: Some(diff),
        annotations: api::PlanAnnotations {
            desired_tg_updates: updates,
        },
        failed_tg_allocs: jp.plan.failed.clone(),
        warnings: String::new(),
    };
    Ok(with_index(jp.before.index(), &resp))
}

async fn read_job(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let job = snap
        .job(&namespace(&q), &id)
        .ok_or_else(|| ApiError::not_found("job not found"))?;
    Ok(with_index(job.modify_index, &job))
}

async fn deregister_job(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let purge = q
        .get("purge")
        .is_some_and(|p| p.eq_ignore_ascii_case("true") || p == "1");
    let (eval_id, index) = st.server.deregister_job(&namespace(&q), &id, purge).await?;
    let resp = api::JobDeregisterResponse {
        eval_id,
        eval_create_index: index,
        job_modify_index: index,
        index,
    };
    Ok(with_index(index, &resp))
}

fn alloc_view(
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

async fn job_allocs(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs_by_job(&namespace(&q), &id)
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}

async fn job_evals(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let v: Vec<api::Evaluation> = snap.evals_by_job(&namespace(&q), &id).cloned().collect();
    Ok(with_index(snap.table_index(Table::Evals), &v))
}

async fn job_versions(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let versions: Vec<api::Job> = snap
        .job_versions(&namespace(&q), &id)
        .into_iter()
        .cloned()
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found("job not found"));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Versions {
        versions: Vec<api::Job>,
        diffs: Option<Vec<api::JobDiff>>,
    }
    // `?diffs=true`: each version against the one before it (Nomad's shape: newest first,
    // one diff fewer than versions).
    let diffs = q
        .get("diffs")
        .is_some_and(|d| d == "true" || d == "1")
        .then(|| {
            let mut sorted: Vec<&api::Job> = versions.iter().collect();
            sorted.sort_by_key(|j| std::cmp::Reverse(j.version));
            sorted
                .windows(2)
                .map(|w| api::job_diff(Some(w[1]), w[0]))
                .collect()
        });
    Ok(with_index(
        snap.table_index(Table::Jobs),
        &Versions { versions, diffs },
    ))
}

async fn list_allocs(State(st): State<ApiState>, Query(q): Params) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs()
        .filter(|a| ns_matches(&q, &a.namespace) && prefix_ok(&q, &a.id))
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}

/// Finds an allocation by id or unique id prefix (as the CLI accepts short ids).
/// An object by its id or a unique prefix of it (the CLI accepts short ids).
fn by_id_or_prefix<'a, T: 'a>(
    exact: Option<&'a T>,
    all: impl Iterator<Item = &'a T>,
    id_of: impl Fn(&T) -> &str,
    id: &str,
    what: &str,
) -> Result<&'a T, ApiError> {
    if let Some(x) = exact {
        return Ok(x);
    }
    let matches: Vec<&T> = all.filter(|x| id_of(x).starts_with(id)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(ApiError::not_found(format!("{what} {id} not found"))),
        _ => Err(ApiError::bad_request(format!(
            "{what} prefix {id} matches {} {what}s; give more of the id",
            matches.len()
        ))),
    }
}

fn find_alloc<'a>(
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
fn find_alloc_to_act<'a>(
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

async fn read_alloc(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let a = find_alloc(&snap, &id)?;
    Ok(with_index(a.modify_index, &alloc_view(&snap, a, true)))
}

async fn stop_alloc(
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
async fn alloc_action(
    st: &ApiState,
    id: &str,
    body: &[u8],
    action: &str,
) -> Result<Response, ApiError> {
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

async fn restart_alloc(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    alloc_action(&st, &id, &body, "restart").await
}

async fn signal_alloc(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    alloc_action(&st, &id, &body, "signal").await
}

async fn list_evals(State(st): State<ApiState>, Query(q): Params) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let v: Vec<api::Evaluation> = snap
        .evals()
        .filter(|e| ns_matches(&q, &e.namespace) && prefix_ok(&q, &e.id))
        .cloned()
        .collect();
    Ok(with_index(snap.table_index(Table::Evals), &v))
}

async fn read_eval(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let e = by_id_or_prefix(snap.eval(&id), snap.evals(), |e| &e.id, &id, "evaluation")?;
    Ok(with_index(e.modify_index, &e))
}

/// A node as the API shows it: without its secret.
pub(crate) fn public_node(n: &api::Node) -> api::Node {
    let mut n = n.clone();
    n.secret_id.clear();
    n
}

async fn list_nodes(State(st): State<ApiState>, Query(q): Params) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Nodes).await?;
    let v: Vec<api::Node> = snap
        .nodes()
        .filter(|n| prefix_ok(&q, &n.id))
        .map(public_node)
        .collect();
    Ok(with_index(snap.table_index(Table::Nodes), &v))
}

async fn read_node(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Nodes).await?;
    let n = by_id_or_prefix(snap.node(&id), snap.nodes(), |n| &n.id, &id, "node")?;
    Ok(with_index(n.modify_index, &public_node(n)))
}

async fn node_allocs(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs_by_node(&id)
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}

/// `PUT /v1/system/gc`: a garbage-collection pass now, with no age thresholds (Nomad's
/// forced GC): every finished evaluation, dead job and down node that nothing still needs.
async fn system_gc(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let collected = st
        .server
        .collect_garbage(&drover_server::GcThresholds::ZERO)
        .await?;
    tracing::info!(?collected, "forced garbage collection");
    Ok(StatusCode::OK.into_response())
}

async fn status_leader(State(st): State<ApiState>) -> Result<Response, ApiError> {
    match st.server.raft().leader() {
        Some((_, addr)) => Ok(axum::Json(addr).into_response()),
        None => Err(ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "No cluster leader".into(),
        )),
    }
}

async fn status_peers(State(st): State<ApiState>) -> Response {
    let peers: Vec<String> = st
        .server
        .raft()
        .peers()
        .into_iter()
        .map(|(_, a)| a)
        .collect();
    axum::Json(peers).into_response()
}

async fn agent_self(State(st): State<ApiState>) -> Response {
    let leader = st.server.raft().leader();
    let metrics = st.server.raft().raft.metrics().borrow().clone();
    // This member as its Raft state shows it: serving ("alive") while its Raft runs.
    let status = if metrics.running_state.is_ok() {
        "alive"
    } else {
        "failed"
    };
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
            "Tags": { "region": st.agent.region, "dc": st.agent.datacenter, "id": st.server.raft().id.to_string() },
            "Status": status,
        },
        "stats": {
            "raft": {
                "leader": leader.is_some_and(|(id, _)| id == st.server.raft().id).to_string(),
                "state": format!("{:?}", metrics.state),
                "term": metrics.current_term.to_string(),
                "last_log_index": metrics.last_log_index.unwrap_or(0).to_string(),
                "applied_index": metrics.last_applied.map_or(0, |l| l.index).to_string(),
                "num_peers": st.server.raft().peers().len().saturating_sub(1).to_string(),
            },
        },
    });
    axum::Json(body).into_response()
}

async fn regions(State(st): State<ApiState>) -> Response {
    axum::Json(vec![st.agent.region.clone()]).into_response()
}
