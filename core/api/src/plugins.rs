//! `GET /v1/agent/plugins`: the plugins of this agent's client (name, kind, transport,
//! version, state, health, restarts, last error).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

pub async fn list(State(st): State<ApiState>) -> Response {
    let status = match &st.plugins {
        Some(host) => host.status().await,
        None => Vec::new(),
    };
    let mut out: Vec<serde_json::Value> = status
        .into_iter()
        .map(|s| serde_json::to_value(s).expect("status serializes"))
        .collect();
    if let Some(host) = &st.plugins {
        // Extism modules and native libraries loaded from plugin_dir, and what was refused.
        for m in host.modules() {
            out.push(serde_json::json!({
                "Name": m.name,
                "Kind": m.kind,
                "Version": m.version,
                "Transport": m.transport.as_str(),
                "Path": m.path,
                "State": "loaded",
                "Healthy": true,
                "Restarts": 0,
            }));
        }
        for r in host.refused() {
            out.push(serde_json::json!({
                "Name": r.name,
                "Path": r.path,
                "State": "refused",
                "Healthy": false,
                "Restarts": 0,
                "LastError": format!("refused: {}", r.reason),
            }));
        }
    }
    axum::Json(out).into_response()
}
