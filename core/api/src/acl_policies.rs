//! Nomad's ACL policy API: `GET /v1/acl/policies`, `GET|POST|DELETE /v1/acl/policy/:name`.
//! A token that is not a management token lists and reads only the policies it holds
//! (directly or through its roles).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_model::{AclPolicy, JobAcl};
use drover_state::{StateSnapshot, Table};
use serde::{Deserialize, Serialize};

use crate::acl::{Caller, denied, require_enabled, token_policies};
use crate::acl_objects::{AclKind, indexed_ok};
use crate::query::{Params, query, with_index};
use crate::request_body::{agrees_with_path, decode};
use crate::{ApiError, ApiState};

/// Whether the caller may read policy `name`.
fn may_read(snap: &StateSnapshot, caller: &Caller, name: &str) -> bool {
    caller.acl.is_management()
        || caller
            .token
            .as_ref()
            .is_some_and(|t| token_policies(snap, t).iter().any(|p| p == name))
}

/// Nomad's `ACLPolicyListStub`.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Stub<'a> {
    name: &'a str,
    description: &'a str,
    #[serde(rename = "JobACL", skip_serializing_if = "Option::is_none")]
    job_acl: Option<&'a JobAcl>,
    create_index: u64,
    modify_index: u64,
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let snap = query(&st, &q, Table::AclPolicies).await?;
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let v: Vec<Stub> = snap
        .acl_policies()
        .filter(|p| p.name.starts_with(prefix) && may_read(&snap, &caller, &p.name))
        .map(|p| Stub {
            name: &p.name,
            description: &p.description,
            job_acl: p.job_acl.as_ref(),
            create_index: p.create_index,
            modify_index: p.modify_index,
        })
        .collect();
    Ok(with_index(snap.table_index(Table::AclPolicies), &v))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let snap = query(&st, &q, Table::AclPolicies).await?;
    if !may_read(&snap, &caller, &name) {
        return Err(denied());
    }
    let p = snap
        .acl_policy(&name)
        .ok_or_else(|| AclKind::Policy.not_found(&name))?;
    Ok(with_index(p.modify_index, p))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct PolicyRequest {
    name: String,
    description: String,
    rules: String,
    #[serde(rename = "JobACL")]
    job_acl: Option<JobAcl>,
}

/// `POST /v1/acl/policy/:name`: creates or replaces a policy; its rules must parse.
pub(crate) async fn upsert(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: PolicyRequest = decode(&body, "ACL policy")?;
    agrees_with_path("policy name", &req.name, &name)?;
    AclKind::Policy.check_named(&name, &req.description)?;
    drover_acl::parse(&req.rules)
        .map_err(|e| ApiError::bad_request(format!("policy {name:?}: {e}")))?;
    let policy = AclPolicy {
        name,
        description: req.description,
        rules: req.rules,
        job_acl: req.job_acl,
        ..Default::default()
    };
    let index = st.server.upsert_acl_policies(vec![policy]).await?;
    Ok(indexed_ok(index))
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl_objects::delete(&st, AclKind::Policy, name).await
}
