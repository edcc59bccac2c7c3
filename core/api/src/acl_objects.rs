//! What the ACL policy, role and token handlers share: the kinds of ACL object, their
//! "not found" answers, their name and description checks, deletion by key, and the empty
//! indexed answer of a write.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use drover_model::MAX_ACL_DESCRIPTION;
use drover_state::StateSnapshot;

use crate::acl::require_enabled;
use crate::{ApiError, ApiState};

/// A kind of ACL object: a policy (by name), a role or a token (by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AclKind {
    Policy,
    Role,
    Token,
}

impl AclKind {
    fn label(self) -> &'static str {
        match self {
            AclKind::Policy => "policy",
            AclKind::Role => "role",
            AclKind::Token => "token",
        }
    }

    /// The 404 for `key`.
    pub(crate) fn not_found(self, key: &str) -> ApiError {
        ApiError::not_found(format!("ACL {} {key} not found", self.label()))
    }

    fn exists(self, snap: &StateSnapshot, key: &str) -> bool {
        match self {
            AclKind::Policy => snap.acl_policy(key).is_some(),
            AclKind::Role => snap.acl_role(key).is_some(),
            AclKind::Token => snap.acl_token(key).is_some(),
        }
    }

    /// A name (policies and roles) and a description the API accepts.
    pub(crate) fn check_named(self, name: &str, description: &str) -> Result<(), ApiError> {
        drover_model::validate_acl_name(self.label(), name).map_err(ApiError::bad_request)?;
        if description.len() > MAX_ACL_DESCRIPTION {
            return Err(ApiError::bad_request(format!(
                "{} description is longer than {MAX_ACL_DESCRIPTION} characters",
                self.label()
            )));
        }
        Ok(())
    }
}

/// `DELETE /v1/acl/policy/:name`, `/v1/acl/role/:id`, `/v1/acl/token/:accessor`: 404 when
/// there is no such object.
pub(crate) async fn delete(
    st: &ApiState,
    kind: AclKind,
    key: String,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    if !kind.exists(&st.server.store().snapshot(), &key) {
        return Err(kind.not_found(&key));
    }
    let keys = vec![key];
    let index = match kind {
        AclKind::Policy => st.server.delete_acl_policies(keys).await?,
        AclKind::Role => st.server.delete_acl_roles(keys).await?,
        AclKind::Token => st.server.delete_acl_tokens(keys).await?,
    };
    Ok(indexed_ok(index))
}

/// An empty 200 with the write's index.
pub(crate) fn indexed_ok(index: u64) -> Response {
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut().insert(
        "X-Nomad-Index",
        index
            .to_string()
            .parse()
            .expect("digits are a header value"),
    );
    resp
}
