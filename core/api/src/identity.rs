//! The OIDC discovery endpoints of workload identities (issue 22), public as Nomad's:
//! `GET /.well-known/jwks.json`, the RSA public keys of every root key in the keyring (a
//! removed key no longer verifies what it signed), and `GET
//! /.well-known/openid-configuration`.
//!
//! The issuer is the URL the caller reached this agent at (`http://<Host>`): Drover
//! has no `oidc_issuer` setting yet, and identities carry no `iss` claim (as Nomad's
//! without one).

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::ApiState;

pub(crate) async fn jwks(State(st): State<ApiState>) -> Response {
    let snap = st.server.store().snapshot();
    axum::Json(drover_keyring::identity::jwks(snap.root_keys())).into_response()
}

pub(crate) async fn openid_configuration(headers: HeaderMap) -> Response {
    let issuer = issuer(&headers);
    axum::Json(serde_json::json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "id_token_signing_alg_values_supported": [drover_keyring::identity::ALGORITHM],
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
    }))
    .into_response()
}

/// `http://<Host>` (an agent serving HTTPS is not told apart yet); a Host that is not a plain authority (letters, digits, `.-:[]`)
/// is not echoed back.
fn issuer(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_issuer_is_the_host_asked_and_never_odd_text() {
        let mut h = HeaderMap::new();
        assert_eq!(issuer(&h), "http://localhost");
        h.insert(header::HOST, HeaderValue::from_static("10.0.0.1:4646"));
        assert_eq!(issuer(&h), "http://10.0.0.1:4646");
        h.insert(header::HOST, HeaderValue::from_static("a/\"><x"));
        assert_eq!(issuer(&h), "http://localhost");
    }
}
