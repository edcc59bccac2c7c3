//! How read routes answer: query parameters (`namespace`, `prefix`), consistent reads,
//! blocking queries (`?index=&wait=`), and the index headers.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use drover_state::{StateSnapshot, Table};
use serde::Serialize;

use crate::{ApiError, ApiState, limits};

pub(crate) type Params = Query<BTreeMap<String, String>>;

pub(crate) fn namespace(q: &BTreeMap<String, String>) -> String {
    q.get("namespace")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| "default".into())
}

pub(crate) fn ns_matches(q: &BTreeMap<String, String>, ns: &str) -> bool {
    let want = namespace(q);
    want == "*" || want == ns
}

pub(crate) fn prefix_ok(q: &BTreeMap<String, String>, id: &str) -> bool {
    q.get("prefix").is_none_or(|p| id.starts_with(p.as_str()))
}

/// `?name=true` or `?name=1`.
pub(crate) fn flag(q: &BTreeMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
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
pub(crate) async fn query(
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
                None => limits::DEFAULT_BLOCKING_WAIT,
                Some(w) => parse_wait(w).ok_or_else(|| {
                    ApiError::bad_request(format!("wait {w:?} is not a duration like 30s or 5m"))
                })?,
            };
            Ok(store
                .wait_for(table, index, wait.min(limits::MAX_BLOCKING_WAIT))
                .await)
        }
    }
}

/// Makes a read consistent: this server must have applied what the leader had when the read
/// arrived (the leader confirms its leadership with a quorum first). Without a leader the read
/// fails with "no cluster leader"; `?stale` reads skip this and answer from local state.
pub(crate) async fn consistent(st: &ApiState) -> Result<(), ApiError> {
    let index = st.server.read_index().await.map_err(|e| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{e} (add ?stale to read this server's possibly stale state)"),
        )
    })?;
    let store = st.server.store();
    let mut rx = store.subscribe();
    let deadline = tokio::time::Instant::now() + limits::CATCH_UP_WAIT;
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

/// A JSON answer with its Raft index in `X-Nomad-Index` (at least 1, as Nomad's).
pub(crate) fn with_index<T: Serialize>(index: u64, body: &T) -> Response {
    let mut h = HeaderMap::new();
    let v = HeaderValue::from_str(&index.max(1).to_string()).expect("digits are a header value");
    h.insert("X-Nomad-Index", v.clone());
    h.insert("X-Drover-Index", v);
    h.insert("X-Nomad-LastContact", HeaderValue::from_static("0"));
    (h, axum::Json(body)).into_response()
}

/// An object by its id or a unique prefix of it (the CLI accepts short ids).
pub(crate) fn by_id_or_prefix<'a, T: 'a>(
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
