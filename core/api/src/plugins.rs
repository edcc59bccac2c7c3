//! `GET /v1/agent/plugins`: the plugins of this agent's client (name, kind, transport,
//! version, state, health, restarts, last error), refused ones included.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

pub(crate) async fn list(State(st): State<ApiState>) -> Response {
    let status = match &st.plugins {
        Some(host) => host.status().await,
        None => Vec::new(),
    };
    axum::Json(status).into_response()
}
