//! Nomad's ACL role API: `GET /v1/acl/roles`, `POST /v1/acl/role` (create),
//! `GET|POST|DELETE /v1/acl/role/:id` and `GET /v1/acl/role/name/:name`. A token that is
//! not a management token lists and reads only its own roles.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_model::{AclRole, AclRolePolicyLink, MAX_ACL_LINKS};
use drover_state::{StateSnapshot, Table};
use serde::Deserialize;

use crate::acl::{Caller, denied, require_enabled};
use crate::acl_objects::AclKind;
use crate::query::{Params, query, with_index};
use crate::request_body::{agrees_with_path, decode};
use crate::{ApiError, ApiState};

/// Whether the caller may read the role with this id or name: a management token, or a
/// token linked to it (a role it does not hold is refused whether or not it exists).
fn may_read_link(caller: &Caller, id: Option<&str>, name: Option<&str>) -> bool {
    caller.acl.is_management()
        || caller.token.as_ref().is_some_and(|t| {
            t.roles
                .iter()
                .any(|l| Some(l.id.as_str()) == id || Some(l.name.as_str()) == name)
        })
}

fn may_read(caller: &Caller, role: &AclRole) -> bool {
    may_read_link(caller, Some(&role.id), Some(&role.name))
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let snap = query(&st, &q, Table::AclRoles).await?;
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let v: Vec<&AclRole> = snap
        .acl_roles()
        .filter(|r| r.id.starts_with(prefix) && may_read(&caller, r))
        .collect();
    Ok(with_index(snap.table_index(Table::AclRoles), &v))
}

fn answer(role: Option<&AclRole>, what: &str) -> Result<Response, ApiError> {
    let r = role.ok_or_else(|| AclKind::Role.not_found(what))?;
    Ok(with_index(r.modify_index, r))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    if !may_read_link(&caller, Some(&id), None) {
        return Err(denied());
    }
    let snap = query(&st, &q, Table::AclRoles).await?;
    answer(snap.acl_role(&id), &id)
}

pub(crate) async fn read_by_name(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    if !may_read_link(&caller, None, Some(&name)) {
        return Err(denied());
    }
    let snap = query(&st, &q, Table::AclRoles).await?;
    answer(snap.acl_role_by_name(&name), &name)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct RoleRequest {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    description: String,
    policies: Vec<AclRolePolicyLink>,
}

/// A role from a request: a valid name, a bounded description, and at least one policy,
/// each of which exists.
fn checked(snap: &StateSnapshot, id: String, req: RoleRequest) -> Result<AclRole, ApiError> {
    AclKind::Role.check_named(&req.name, &req.description)?;
    if req.policies.is_empty() || req.policies.len() > MAX_ACL_LINKS {
        return Err(ApiError::bad_request(format!(
            "a role links 1 to {MAX_ACL_LINKS} policies"
        )));
    }
    for p in &req.policies {
        if snap.acl_policy(&p.name).is_none() {
            return Err(ApiError::bad_request(format!(
                "cannot find policy {}",
                p.name
            )));
        }
    }
    let mut policies = req.policies;
    policies.sort();
    policies.dedup();
    Ok(AclRole {
        id,
        name: req.name,
        description: req.description,
        policies,
        ..Default::default()
    })
}

async fn store(st: &ApiState, role: AclRole) -> Result<Response, ApiError> {
    let id = role.id.clone();
    let index = st.server.upsert_acl_roles(vec![role]).await?;
    let snap = st.server.store().snapshot();
    let r = snap
        .acl_role(&id)
        .ok_or_else(|| AclKind::Role.not_found(&id))?;
    Ok(with_index(index, r))
}

pub(crate) async fn create(State(st): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: RoleRequest = decode(&body, "ACL role")?;
    if !req.id.is_empty() {
        return Err(ApiError::bad_request(
            "ID is chosen by the servers; update a role with POST /v1/acl/role/<id>",
        ));
    }
    let role = checked(&st.server.store().snapshot(), drover_server::new_id(), req)?;
    store(&st, role).await
}

pub(crate) async fn update(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: RoleRequest = decode(&body, "ACL role")?;
    agrees_with_path("role ID", &req.id, &id)?;
    let snap = st.server.store().snapshot();
    if snap.acl_role(&id).is_none() {
        return Err(AclKind::Role.not_found(&id));
    }
    let role = checked(&snap, id, req)?;
    store(&st, role).await
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl_objects::delete(&st, AclKind::Role, id).await
}
