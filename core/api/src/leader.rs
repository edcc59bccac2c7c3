//! What every answer says about the leader, and where node-bound requests go: the
//! `X-Nomad-KnownLeader`/`X-Nomad-LastContact` headers, and the redirect of
//! `/v1/client/...` requests from a follower to the leader.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

/// Blocking-query answers carry `X-Nomad-KnownLeader`: whether this server knows a leader
/// as it answers (a stale read from a server without one says `false`).
pub(crate) async fn known_leader(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if resp.headers().contains_key("X-Nomad-Index") {
        let known = st.server.leader().is_some();
        resp.headers_mut().insert(
            "X-Nomad-KnownLeader",
            HeaderValue::from_static(if known { "true" } else { "false" }),
        );
        // How long ago this server last heard from the leader (0 on the leader).
        if let Some(ms) = st.server.last_contact_ms() {
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
pub(crate) async fn client_requests_to_leader(
    State(st): State<ApiState>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path().starts_with("/v1/client/")
        && let Some(http) = st.server.leader_http().await
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
