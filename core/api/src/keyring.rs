//! Nomad's keyring API: `GET /v1/operator/keyring/keys`, `PUT /v1/operator/keyring/rotate`
//! (`?full=true` re-encrypts every variable in the background) and
//! `DELETE /v1/operator/keyring/key/:id`. Keys are listed as metadata only (Nomad's
//! `RootKeyMeta`): never their material, wrapped or not.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_model::RootKey;
use drover_state::Table;
use serde::Serialize;

use crate::query::{Params, query, with_index};
use crate::{ApiError, ApiState};

/// Nomad's `RootKeyMeta`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct RootKeyMeta<'a> {
    #[serde(rename = "KeyID")]
    key_id: &'a str,
    algorithm: &'a str,
    create_time: i64,
    create_index: u64,
    modify_index: u64,
    state: &'a str,
    /// Nomad's prepublished keys; Drover publishes at once (0).
    publish_time: i64,
}

fn meta(k: &RootKey) -> RootKeyMeta<'_> {
    RootKeyMeta {
        key_id: &k.key_id,
        algorithm: &k.algorithm,
        create_time: k.create_time,
        create_index: k.create_index,
        modify_index: k.modify_index,
        state: k.state.as_str(),
        publish_time: 0,
    }
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Keyring).await?;
    let keys: Vec<RootKeyMeta> = snap.root_keys().map(meta).collect();
    Ok(with_index(snap.table_index(Table::Keyring), &keys))
}

pub(crate) async fn rotate(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let full = match q.get("full").map(String::as_str) {
        None | Some("false") => false,
        Some("" | "true") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "full={other:?} is not a boolean"
            )));
        }
    };
    if let Some(a) = q
        .get("algorithm")
        .filter(|a| *a != drover_model::ROOT_KEY_ALGORITHM)
    {
        return Err(ApiError::bad_request(format!(
            "algorithm {a:?} is not supported (only {:?})",
            drover_model::ROOT_KEY_ALGORITHM
        )));
    }
    let (key, index) = st.server.rotate_keyring(full).await?;
    Ok(with_index(
        index,
        &serde_json::json!({ "Key": meta(&key), "Index": index }),
    ))
}

pub(crate) async fn remove(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let index = st.server.remove_root_key(&id).await?;
    Ok(with_index(index, &serde_json::json!({ "Index": index })))
}
