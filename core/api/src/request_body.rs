//! What write handlers read from a request body: JSON decoded with the path of a bad field,
//! a name or id in the body agreeing with the one in the path, and the create, update and
//! delete of the objects written by name alone (namespaces, node pools).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use drover_model::{Namespace, NodePool};
use drover_server::ServerError;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::query::with_index;
use crate::{ApiError, ApiState};

/// A request body (`what` names it in errors, with the path of the bad field); an empty
/// body is the default request.
pub(crate) fn decode<T: for<'de> Deserialize<'de> + Default>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de)
        .map_err(|e| ApiError::bad_request(format!("invalid {what}: {}: {}", e.path(), e.inner())))
}

/// A name or id in the body (`what`, e.g. "policy name"), when given, must be the one in
/// the path.
pub(crate) fn agrees_with_path(what: &str, in_body: &str, in_path: &str) -> Result<(), ApiError> {
    if !in_body.is_empty() && in_body != in_path {
        return Err(ApiError::bad_request(format!(
            "{what} {in_body:?} in the body does not match {in_path:?} in the path"
        )));
    }
    Ok(())
}

/// An object the API creates, replaces and deletes by its name alone.
pub(crate) trait Named: DeserializeOwned + Send + 'static {
    /// What it is called in errors ("namespace", "node pool").
    const KIND: &'static str;
    fn name_mut(&mut self) -> &mut String;
    fn upsert(st: &ApiState, v: Self) -> impl Future<Output = Result<u64, ServerError>> + Send;
    fn delete(st: &ApiState, name: &str) -> impl Future<Output = Result<u64, ServerError>> + Send;
}

impl Named for Namespace {
    const KIND: &'static str = "namespace";
    fn name_mut(&mut self) -> &mut String {
        &mut self.name
    }
    fn upsert(st: &ApiState, v: Self) -> impl Future<Output = Result<u64, ServerError>> + Send {
        st.server.upsert_namespace(v)
    }
    fn delete(st: &ApiState, name: &str) -> impl Future<Output = Result<u64, ServerError>> + Send {
        st.server.delete_namespace(name)
    }
}

impl Named for NodePool {
    const KIND: &'static str = "node pool";
    fn name_mut(&mut self) -> &mut String {
        &mut self.name
    }
    fn upsert(st: &ApiState, v: Self) -> impl Future<Output = Result<u64, ServerError>> + Send {
        st.server.upsert_node_pool(v)
    }
    fn delete(st: &ApiState, name: &str) -> impl Future<Output = Result<u64, ServerError>> + Send {
        st.server.delete_node_pool(name)
    }
}

/// The object in the body; its name, when given, must be the one in the path, and it must
/// have one.
pub(crate) fn decode_named<T: Named>(body: &[u8], path_name: Option<&str>) -> Result<T, ApiError> {
    let mut v: T = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid {}: {e}", T::KIND)))?;
    let name = v.name_mut();
    if let Some(p) = path_name {
        agrees_with_path(&format!("{} name", T::KIND), name, p)?;
        if name.is_empty() {
            *name = p.to_string();
        }
    }
    if name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "invalid {}: missing Name",
            T::KIND
        )));
    }
    Ok(v)
}

async fn upsert<T: Named>(st: &ApiState, v: T) -> Result<Response, ApiError> {
    let index = T::upsert(st, v).await?;
    Ok(with_index(index, &serde_json::json!({})))
}

/// `POST|PUT /v1/namespace`, `/v1/node/pools`: the body names the object.
pub(crate) async fn create<T: Named>(
    State(st): State<ApiState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    upsert(&st, decode_named::<T>(&body, None)?).await
}

/// `POST|PUT /v1/namespace/:name`, `/v1/node/pool/:name`.
pub(crate) async fn update<T: Named>(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    upsert(&st, decode_named::<T>(&body, Some(&name))?).await
}

/// `DELETE /v1/namespace/:name`, `/v1/node/pool/:name`.
pub(crate) async fn delete<T: Named>(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let index = T::delete(&st, &name).await?;
    Ok(with_index(index, &serde_json::json!({})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_and_path_names_agree() {
        let ns = decode_named::<Namespace>(br#"{"Description":"d"}"#, Some("prod"))
            .ok()
            .unwrap();
        assert_eq!(ns.name, "prod");
        let Err(e) = decode_named::<Namespace>(br#"{"Name":"dev"}"#, Some("prod")) else {
            panic!("a mismatched name was accepted")
        };
        assert_eq!(
            e.1,
            "namespace name \"dev\" in the body does not match \"prod\" in the path"
        );
        let Err(e) = decode_named::<Namespace>(br#"{"Description":"d"}"#, None) else {
            panic!("a namespace without a name was accepted")
        };
        assert_eq!(e.1, "invalid namespace: missing Name");
        let Err(e) = decode_named::<Namespace>(br#"{"Name":"x","Meta":{"a":1}}"#, None) else {
            panic!("a non-string meta value was accepted")
        };
        assert!(e.1.contains("invalid namespace"), "{}", e.1);
        let Err(e) = decode_named::<NodePool>(br#"{"Name":"a"}"#, Some("b")) else {
            panic!("a mismatched pool name was accepted")
        };
        assert_eq!(
            e.1,
            "node pool name \"a\" in the body does not match \"b\" in the path"
        );
        let pool = decode_named::<NodePool>(br#"{}"#, Some("gpu"))
            .ok()
            .unwrap();
        assert_eq!(pool.name, "gpu");
    }
}
