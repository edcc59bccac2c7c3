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
    let choose = q.get("choose").map(|c| parse_choose(c)).transpose()?;
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
        regs = rendezvous(regs, n, &key);
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

/// `choose=N|key`: how many instances, and the key they are chosen for.
fn parse_choose(c: &str) -> Result<(usize, String), ApiError> {
    let bad = || ApiError::bad_request(format!("choose {c:?} is not of the form <number>|<key>"));
    let (n, key) = c.split_once('|').ok_or_else(bad)?;
    let n: usize = n.parse().map_err(|_| bad())?;
    if n == 0 || key.is_empty() {
        return Err(bad());
    }
    Ok((n, key.to_string()))
}

/// The `n` instances that rank highest for `key` (rendezvous hashing: each instance's
/// weight is a hash of the key and its id), so that the same key keeps the same instances
/// while others come and go.
fn rendezvous<'a>(
    mut regs: Vec<&'a ServiceRegistration>,
    n: usize,
    key: &str,
) -> Vec<&'a ServiceRegistration> {
    let weight = |r: &ServiceRegistration| fnv1a(key.as_bytes(), r.id.as_bytes());
    regs.sort_by_key(|r| std::cmp::Reverse(weight(r)));
    regs.truncate(n);
    regs
}

/// FNV-1a over two byte strings: stable across builds and machines (unlike std's hasher).
fn fnv1a(a: &[u8], b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.iter().chain([0u8].iter()).chain(b) {
        h ^= u64::from(*byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> ServiceRegistration {
        ServiceRegistration {
            id: id.into(),
            ..Default::default()
        }
    }

    #[test]
    fn choose_keeps_a_keys_instances_while_others_come_and_go() {
        let all: Vec<ServiceRegistration> = (0..20).map(|i| reg(&format!("r{i}"))).collect();
        let picked: Vec<String> = rendezvous(all.iter().collect(), 3, "client-a")
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(picked.len(), 3);
        // Removing instances that were not picked changes nothing for this key.
        let fewer: Vec<&ServiceRegistration> = all
            .iter()
            .filter(|r| picked.contains(&r.id) || r.id.ends_with('7'))
            .collect();
        let again: Vec<String> = rendezvous(fewer, 3, "client-a")
            .iter()
            .map(|r| r.id.clone())
            .collect();
        assert_eq!(again, picked);
        // Another key is spread elsewhere (not always the same three).
        let keys_pick_differently = (0..10).any(|k| {
            let other: Vec<String> = rendezvous(all.iter().collect(), 3, &format!("k{k}"))
                .iter()
                .map(|r| r.id.clone())
                .collect();
            other != picked
        });
        assert!(keys_pick_differently);
    }

    #[test]
    fn choose_is_parsed_strictly() {
        assert!(matches!(parse_choose("2|abc"), Ok((2, k)) if k == "abc"));
        for bad in ["2", "x|abc", "0|abc", "2|"] {
            assert!(parse_choose(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn healthy_is_off_unless_asked_and_parsed_strictly() {
        assert!(matches!(parse_healthy(None), Ok(false)));
        assert!(matches!(parse_healthy(Some("false")), Ok(false)));
        assert!(matches!(parse_healthy(Some("true")), Ok(true)));
        assert!(parse_healthy(Some("yes")).is_err());
    }
}
