//! Namespaces (Nomad's `/v1/namespaces`, `/v1/namespace/:name`): list, read, create or
//! update, delete. `default` always exists; one holding jobs or variables is not deleted.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_model::Namespace;
use drover_state::Table;

use crate::query::{Params, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Namespaces).await?;
    let v: Vec<&Namespace> = snap
        .namespaces()
        .filter(|n| prefix_ok(&q, &n.name))
        .collect();
    Ok(with_index(snap.table_index(Table::Namespaces), &v))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Namespaces).await?;
    let ns = snap
        .namespace(&name)
        .ok_or_else(|| ApiError::not_found(format!("namespace {name:?} not found")))?;
    Ok(with_index(ns.modify_index, ns))
}

/// The namespace in the body; its name, when given, must be the one in the path.
fn decode(body: &[u8], path_name: Option<&str>) -> Result<Namespace, ApiError> {
    let mut ns: Namespace = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid namespace: {e}")))?;
    if let Some(p) = path_name {
        if ns.name.is_empty() {
            ns.name = p.to_string();
        } else if ns.name != p {
            return Err(ApiError::bad_request(format!(
                "namespace name {:?} in the body does not match {p:?} in the path",
                ns.name
            )));
        }
    }
    if ns.name.is_empty() {
        return Err(ApiError::bad_request("invalid namespace: missing Name"));
    }
    Ok(ns)
}

async fn apply(st: &ApiState, ns: Namespace) -> Result<Response, ApiError> {
    let index = st.server.upsert_namespace(ns).await?;
    Ok(with_index(index, &serde_json::json!({})))
}

/// `POST|PUT /v1/namespace`: the body names the namespace.
pub(crate) async fn create(State(st): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    apply(&st, decode(&body, None)?).await
}

/// `POST|PUT /v1/namespace/:name`.
pub(crate) async fn update(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    apply(&st, decode(&body, Some(&name))?).await
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let index = st.server.delete_namespace(&name).await?;
    Ok(with_index(index, &serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_and_path_names_agree() {
        let ns = decode(br#"{"Description":"d"}"#, Some("prod"))
            .ok()
            .unwrap();
        assert_eq!(ns.name, "prod");
        let Err(e) = decode(br#"{"Name":"dev"}"#, Some("prod")) else {
            panic!("a mismatched name was accepted")
        };
        assert!(
            e.1.contains("\"dev\"") && e.1.contains("\"prod\""),
            "{}",
            e.1
        );
        assert!(decode(br#"{"Description":"d"}"#, None).is_err());
        let Err(e) = decode(br#"{"Name":"x","Meta":{"a":1}}"#, None) else {
            panic!("a non-string meta value was accepted")
        };
        assert!(e.1.contains("invalid namespace"), "{}", e.1);
    }
}
