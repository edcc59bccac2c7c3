//! `GET /v1/agent/plugins`: the plugins of this agent's client (name, kind, version, pid).

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

pub async fn list(State(st): State<ApiState>) -> Response {
    let Some(host) = &st.plugins else {
        return axum::Json(Vec::<serde_json::Value>::new()).into_response();
    };
    let mut out = Vec::new();
    for name in host.plugin_names() {
        let info = host.info(&name).await;
        let pid = host.plugin_pid(&name).await;
        out.push(match info {
            Ok(i) => serde_json::json!({
                "Name": name,
                "Kind": i.kind().as_str_name(),
                "Version": i.version,
                "Transport": "grpc",
                "Healthy": true,
                "Pid": pid,
            }),
            Err(e) => serde_json::json!({ "Name": name, "Transport": "grpc", "Healthy": false, "Error": e.to_string() }),
        });
    }
    // Extism modules and native libraries loaded from plugin_dir, and what was refused.
    for m in host.modules() {
        out.push(serde_json::json!({
            "Name": m.name,
            "Kind": m.kind,
            "Version": m.version,
            "Transport": m.transport.as_str(),
            "Path": m.path,
            "Healthy": true,
        }));
    }
    for r in host.refused() {
        out.push(serde_json::json!({
            "Name": r.name,
            "Path": r.path,
            "Healthy": false,
            "Error": format!("refused: {}", r.reason),
        }));
    }
    axum::Json(out).into_response()
}
