//! Nomad's service registration API: `GET /v1/services` (names and tags per namespace),
//! `GET /v1/service/:name` (`?tag=`, `?choose=N|key`, and Drover's `?healthy=true`: only
//! instances whose checks are not critical — off by default, as Nomad returns them all), `DELETE /v1/service/:name/:id`,
//! `GET /v1/job/:id/services` and `GET /v1/allocation/:id/services`; all blocking on the
//! services table. And `GET /v1/client/allocation/:id/checks`: the latest results of the
//! allocation's checks, asked of the client that runs them.

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use drover_acl::NsCap;
use drover_model::ServiceRegistration;
use drover_state::Table;
use serde::Serialize;

use crate::acl::Caller;
use crate::query::{Params, by_id_or_prefix, namespace, ns_matches, query, with_index};
use crate::{ApiError, ApiState};

/// One namespace's services (Nomad's `ServiceRegistrationListStub`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct NamespaceServices {
    namespace: String,
    services: Vec<ServiceStub>,
}

/// A service's name and the union of its instances' tags (Nomad's
/// `ServiceRegistrationStub`).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceStub {
    service_name: String,
    tags: Vec<String>,
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Services).await?;
    let mut by_ns: BTreeMap<&str, BTreeMap<&str, BTreeSet<&str>>> = BTreeMap::new();
    for r in snap
        .service_registrations()
        .filter(|r| ns_matches(&q, &r.namespace) && caller.can(&r.namespace, NsCap::ReadJob))
    {
        by_ns
            .entry(&r.namespace)
            .or_default()
            .entry(&r.service_name)
            .or_default()
            .extend(r.tags.iter().map(String::as_str));
    }
    let out: Vec<NamespaceServices> = by_ns
        .into_iter()
        .map(|(ns, services)| NamespaceServices {
            namespace: ns.to_string(),
            services: services
                .into_iter()
                .map(|(name, tags)| ServiceStub {
                    service_name: name.to_string(),
                    tags: tags.into_iter().map(str::to_string).collect(),
                })
                .collect(),
        })
        .collect();
    Ok(with_index(snap.table_index(Table::Services), &out))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(name): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let choose = q
        .get("choose")
        .map(|c| drover_catalog::parse_choose(c))
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let snap = query(&st, &q, Table::Services).await?;
    let ns = namespace(&q);
    let tag = q.get("tag");
    let healthy = parse_healthy(q.get("healthy").map(String::as_str))?;
    let mut regs: Vec<&ServiceRegistration> = snap
        .services_by_name(&ns, &name)
        .filter(|r| tag.is_none_or(|t| r.tags.contains(t)))
        .filter(|r| !healthy || r.health.is_healthy())
        .collect();
    if let Some((n, key)) = choose {
        regs = drover_catalog::choose(regs, n, &key);
    }
    Ok(with_index(snap.table_index(Table::Services), &regs))
}

/// `?healthy=`: absent or false returns every instance (Nomad's behaviour).
fn parse_healthy(v: Option<&str>) -> Result<bool, ApiError> {
    match v {
        None | Some("" | "false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "healthy={other:?}: expected true or false"
        ))),
    }
}

pub(crate) async fn alloc_checks(
    State(st): State<ApiState>,
    Path(alloc_id): Path<String>,
) -> Result<Response, ApiError> {
    let alloc = crate::allocations::find_alloc(&st.server.store().snapshot(), &alloc_id)?.clone();
    let req = drover_proto::node::ChecksRequest {
        alloc_id: alloc.id.clone(),
    };
    let body = st.server.alloc_checks(&alloc.node_id, req).await?;
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("the client's check results are not JSON: {e}"))
    })?;
    Ok(axum::response::IntoResponse::into_response(axum::Json(
        value,
    )))
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path((name, id)): Path<(String, String)>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let index = st
        .server
        .delete_service_registration(&namespace(&q), &name, &id)
        .await?;
    Ok(with_index(index, &serde_json::json!({ "Index": index })))
}

pub(crate) async fn of_job(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Services).await?;
    let ns = namespace(&q);
    let regs: Vec<&ServiceRegistration> = snap
        .allocs_by_job(&ns, &id)
        .flat_map(|a| snap.services_by_alloc(&a.id))
        .collect();
    Ok(with_index(snap.table_index(Table::Services), &regs))
}

pub(crate) async fn of_alloc(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Services).await?;
    let alloc = by_id_or_prefix(snap.alloc(&id), snap.allocs(), |a| &a.id, &id, "allocation")?;
    let regs: Vec<&ServiceRegistration> = snap.services_by_alloc(&alloc.id).collect();
    Ok(with_index(snap.table_index(Table::Services), &regs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_is_off_unless_asked_and_parsed_strictly() {
        assert!(matches!(parse_healthy(None), Ok(false)));
        assert!(matches!(parse_healthy(Some("false")), Ok(false)));
        assert!(matches!(parse_healthy(Some("true")), Ok(true)));
        assert!(parse_healthy(Some("yes")).is_err());
    }
}
