//! What every answer says about the leader: the `X-Nomad-KnownLeader`/`X-Nomad-LastContact`
//! headers. (Node-bound requests a follower forwards to the leader: [`crate::leader_proxy`].)

use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

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
