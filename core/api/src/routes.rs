//! The route table: every HTTP route declared once, with its methods, its path, the ACL
//! capability it needs, the largest body it reads and how long it may take to answer. The
//! router is built from this table and nothing else adds routes.

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};

pub use crate::acl::Capability;
use crate::limits::{
    MAX_ACL_BODY, MAX_BACKUP_BODY, MAX_BODY, MAX_SMALL_BODY, MAX_VARIABLE_BODY, NO_BODY,
    READ_TIMEOUT, REQUEST_TIMEOUT,
};
use crate::{
    ApiState, acl, acl_policies, acl_roles, acl_tokens, agent, allocations, backup, evaluations,
    events, exec, identity, jobs, keyring, leader_proxy, logs, namespaces, node_pools, nodes,
    operator, plugins, request_body, scheduler_config, search, services, tls_rotation, variables,
};
use drover_model::{Namespace, NodePool};

/// An HTTP method a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    /// GET (and HEAD, as axum answers it).
    Get,
    Put,
    Post,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Put => MethodFilter::PUT,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// How long a route may take to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// Its handler answers within this long, or the request fails with 504.
    Within(Duration),
    /// A stream (log follow, file stream, events, an exec session) or a bulk transfer (a
    /// backup): it lasts as long as the caller and the data do; the stream's own limits
    /// (heartbeats, slots, the client's session) bound it.
    Open,
}

/// One route of the API.
#[derive(Clone)]
pub struct Route {
    pub verbs: &'static [Verb],
    pub path: &'static str,
    pub capability: Capability,
    /// The largest request body its handler reads (see [`crate::limits`]).
    pub body_limit: usize,
    pub timeout: Timeout,
    /// The handler, on the given methods.
    handler: fn(MethodFilter) -> MethodRouter<ApiState>,
}

const GET: &[Verb] = &[Verb::Get];
const WRITE: &[Verb] = &[Verb::Put, Verb::Post];
const DELETE: &[Verb] = &[Verb::Delete];
/// A read: it may block (`?index=`) up to the longest wait.
const READ: Timeout = Timeout::Within(READ_TIMEOUT);
const REQUEST: Timeout = Timeout::Within(REQUEST_TIMEOUT);

fn route(
    verbs: &'static [Verb],
    path: &'static str,
    capability: Capability,
    body_limit: usize,
    timeout: Timeout,
    handler: fn(MethodFilter) -> MethodRouter<ApiState>,
) -> Route {
    Route {
        verbs,
        path,
        capability,
        body_limit,
        timeout,
        handler,
    }
}

/// Every route of the API.
#[rustfmt::skip]
pub fn table() -> Vec<Route> {
    use Capability as C;
    vec![
        // Jobs.
        route(GET, "/v1/jobs", C::ListJobs, NO_BODY, READ, |m| on(m, jobs::list)),
        route(WRITE, "/v1/jobs", C::SubmitJob, MAX_BODY, REQUEST, |m| on(m, jobs::register)),
        route(WRITE, "/v1/jobs/parse", C::ParseJob, MAX_BODY, REQUEST, |m| on(m, jobs::parse)),
        route(GET, "/v1/job/{id}", C::ReadJob, NO_BODY, READ, |m| on(m, jobs::read)),
        route(WRITE, "/v1/job/{id}", C::SubmitJob, MAX_BODY, REQUEST, |m| on(m, jobs::register_at)),
        route(DELETE, "/v1/job/{id}", C::SubmitJob, NO_BODY, REQUEST, |m| on(m, jobs::deregister)),
        route(GET, "/v1/job/{id}/allocations", C::ReadJob, NO_BODY, READ, |m| on(m, jobs::allocations)),
        route(GET, "/v1/job/{id}/evaluations", C::ReadJob, NO_BODY, READ, |m| on(m, jobs::evaluations)),
        route(GET, "/v1/job/{id}/versions", C::ReadJob, NO_BODY, READ, |m| on(m, jobs::versions)),
        route(WRITE, "/v1/job/{id}/plan", C::SubmitJob, MAX_BODY, REQUEST, |m| on(m, jobs::plan)),
        // Allocations.
        route(GET, "/v1/allocations", C::ReadJob, NO_BODY, READ, |m| on(m, allocations::list)),
        route(GET, "/v1/allocation/{id}", C::ReadJob, NO_BODY, READ, |m| on(m, allocations::read)),
        route(WRITE, "/v1/allocation/{id}/stop", C::AllocLifecycle, MAX_SMALL_BODY, REQUEST, |m| on(m, allocations::stop)),
        route(WRITE, "/v1/client/allocation/{id}/restart", C::AllocLifecycle, MAX_SMALL_BODY, REQUEST, |m| on(m, allocations::restart)),
        route(WRITE, "/v1/client/allocation/{id}/signal", C::AllocLifecycle, MAX_SMALL_BODY, REQUEST, |m| on(m, allocations::signal)),
        // Evaluations.
        route(GET, "/v1/evaluations", C::ReadJob, NO_BODY, READ, |m| on(m, evaluations::list)),
        route(GET, "/v1/evaluation/{id}", C::ReadJob, NO_BODY, READ, |m| on(m, evaluations::read)),
        // Nodes.
        route(GET, "/v1/nodes", C::NodeRead, NO_BODY, READ, |m| on(m, nodes::list)),
        route(GET, "/v1/node/{id}", C::NodeRead, NO_BODY, READ, |m| on(m, nodes::read)),
        route(GET, "/v1/node/{id}/allocations", C::NodeRead, NO_BODY, READ, |m| on(m, nodes::allocations)),
        // Services (the catalog).
        route(GET, "/v1/services", C::ReadJob, NO_BODY, READ, |m| on(m, services::list)),
        route(GET, "/v1/service/{name}", C::ReadJob, NO_BODY, READ, |m| on(m, services::read)),
        route(DELETE, "/v1/service/{name}/{id}", C::SubmitJob, NO_BODY, REQUEST, |m| on(m, services::delete)),
        route(GET, "/v1/job/{id}/services", C::ReadJob, NO_BODY, READ, |m| on(m, services::of_job)),
        route(GET, "/v1/allocation/{id}/services", C::ReadJob, NO_BODY, READ, |m| on(m, services::of_alloc)),
        // Variables.
        route(GET, "/v1/vars", C::ListVariables, NO_BODY, READ, |m| on(m, variables::list)),
        route(GET, "/v1/var/{*path}", C::ReadVariables, NO_BODY, READ, |m| on(m, variables::read)),
        route(WRITE, "/v1/var/{*path}", C::WriteVariables, MAX_VARIABLE_BODY, REQUEST, |m| on(m, variables::put)),
        route(DELETE, "/v1/var/{*path}", C::DestroyVariables, NO_BODY, REQUEST, |m| on(m, variables::delete)),
        // Namespaces, node pools and the scheduler configuration (issue 25).
        route(GET, "/v1/namespaces", C::ListJobs, NO_BODY, READ, |m| on(m, namespaces::list)),
        route(WRITE, "/v1/namespace", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, request_body::create::<Namespace>)),
        route(GET, "/v1/namespace/{name}", C::ReadJob, NO_BODY, READ, |m| on(m, namespaces::read)),
        route(WRITE, "/v1/namespace/{name}", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, request_body::update::<Namespace>)),
        route(DELETE, "/v1/namespace/{name}", C::Management, NO_BODY, REQUEST, |m| on(m, request_body::delete::<Namespace>)),
        route(GET, "/v1/node/pools", C::NodeRead, NO_BODY, READ, |m| on(m, node_pools::list)),
        route(WRITE, "/v1/node/pools", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, request_body::create::<NodePool>)),
        route(GET, "/v1/node/pool/{name}", C::NodeRead, NO_BODY, READ, |m| on(m, node_pools::read)),
        route(WRITE, "/v1/node/pool/{name}", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, request_body::update::<NodePool>)),
        route(DELETE, "/v1/node/pool/{name}", C::Management, NO_BODY, REQUEST, |m| on(m, request_body::delete::<NodePool>)),
        route(GET, "/v1/node/pool/{name}/jobs", C::ListJobs, NO_BODY, READ, |m| on(m, node_pools::jobs)),
        route(GET, "/v1/node/pool/{name}/nodes", C::NodeRead, NO_BODY, READ, |m| on(m, node_pools::nodes)),
        route(GET, "/v1/operator/scheduler/configuration", C::OperatorRead, NO_BODY, READ, |m| on(m, scheduler_config::read)),
        route(WRITE, "/v1/operator/scheduler/configuration", C::OperatorWrite, MAX_SMALL_BODY, REQUEST, |m| on(m, scheduler_config::update)),
        // Operator: members, Raft, backups, garbage collection.
        route(GET, "/v1/agent/members", C::NodeRead, NO_BODY, REQUEST, |m| on(m, operator::members)),
        route(WRITE, "/v1/agent/force-leave", C::AgentWrite, NO_BODY, REQUEST, |m| on(m, operator::force_leave)),
        route(GET, "/v1/operator/raft/configuration", C::OperatorRead, NO_BODY, REQUEST, |m| on(m, operator::raft_configuration)),
        route(DELETE, "/v1/operator/raft/peer", C::OperatorWrite, NO_BODY, REQUEST, |m| on(m, operator::remove_peer)),
        route(GET, "/v1/operator/snapshot", C::Management, NO_BODY, Timeout::Open, |m| on(m, backup::save)),
        route(WRITE, "/v1/operator/snapshot", C::Management, MAX_BACKUP_BODY, Timeout::Open, |m| on(m, backup::restore)),
        route(GET, "/v1/operator/keyring/keys", C::Management, NO_BODY, READ, |m| on(m, keyring::list)),
        route(WRITE, "/v1/operator/keyring/rotate", C::Management, NO_BODY, REQUEST, |m| on(m, keyring::rotate)),
        route(DELETE, "/v1/operator/keyring/key/{id}", C::Management, NO_BODY, REQUEST, |m| on(m, keyring::remove)),
        route(GET, "/v1/operator/tls/rotate-ca", C::OperatorRead, NO_BODY, REQUEST, |m| on(m, tls_rotation::status)),
        route(WRITE, "/v1/operator/tls/rotate-ca", C::OperatorWrite, NO_BODY, REQUEST, |m| on(m, tls_rotation::advance)),
        route(WRITE, "/v1/system/gc", C::Management, NO_BODY, REQUEST, |m| on(m, operator::system_gc)),
        // The agent and the cluster's status.
        route(GET, "/v1/status/leader", C::Public, NO_BODY, REQUEST, |m| on(m, agent::status_leader)),
        route(GET, "/v1/status/peers", C::Public, NO_BODY, REQUEST, |m| on(m, agent::status_peers)),
        route(GET, "/v1/regions", C::Public, NO_BODY, REQUEST, |m| on(m, agent::regions)),
        // Workload identities' OIDC discovery: public, as Nomad's.
        route(GET, "/.well-known/jwks.json", C::Public, NO_BODY, REQUEST, |m| on(m, identity::jwks)),
        route(GET, "/.well-known/openid-configuration", C::Public, NO_BODY, REQUEST, |m| on(m, identity::openid_configuration)),
        route(GET, "/v1/agent/self", C::AgentRead, NO_BODY, REQUEST, |m| on(m, agent::agent_self)),
        route(GET, "/v1/agent/plugins", C::AgentRead, NO_BODY, REQUEST, |m| on(m, plugins::list)),
        // On the allocation's client: logs, files, statistics, exec.
        route(GET, "/v1/client/fs/logs/{alloc}", C::ReadLogs, NO_BODY, Timeout::Open, |m| on(m, logs::stream)),
        route(GET, "/v1/client/fs/{op}/{alloc}", C::ReadFs, NO_BODY, Timeout::Open, |m| on(m, logs::fs)),
        route(GET, "/v1/client/allocation/{alloc}/stats", C::ReadJob, NO_BODY, REQUEST, |m| on(m, exec::stats)),
        route(GET, "/v1/client/allocation/{alloc}/checks", C::ReadJob, NO_BODY, REQUEST, |m| on(m, services::alloc_checks)),
        route(GET, "/v1/client/allocation/{alloc}/exec", C::AllocExec, NO_BODY, Timeout::Open, |m| on(m, exec::exec)),
        // Search: ids by prefix, names by substring.
        route(WRITE, "/v1/search", C::Search, MAX_SMALL_BODY, READ, |m| on(m, search::prefix)),
        route(WRITE, "/v1/search/fuzzy", C::Search, MAX_SMALL_BODY, READ, |m| on(m, search::fuzzy)),
        // Events.
        route(GET, "/v1/event/stream", C::ReadEvents, NO_BODY, Timeout::Open, |m| on(m, events::stream)),
        // ACLs: the bootstrap, policies, tokens and roles.
        route(WRITE, "/v1/acl/bootstrap", C::AclBootstrap, MAX_SMALL_BODY, REQUEST, |m| on(m, acl_tokens::bootstrap)),
        route(GET, "/v1/acl/policies", C::AclSelf, NO_BODY, READ, |m| on(m, acl_policies::list)),
        route(GET, "/v1/acl/policy/{name}", C::AclSelf, NO_BODY, READ, |m| on(m, acl_policies::read)),
        route(WRITE, "/v1/acl/policy/{name}", C::Management, MAX_ACL_BODY, REQUEST, |m| on(m, acl_policies::upsert)),
        route(DELETE, "/v1/acl/policy/{name}", C::Management, NO_BODY, REQUEST, |m| on(m, acl_policies::delete)),
        route(GET, "/v1/acl/tokens", C::Management, NO_BODY, READ, |m| on(m, acl_tokens::list)),
        route(WRITE, "/v1/acl/token", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, acl_tokens::create)),
        route(GET, "/v1/acl/token/self", C::AclSelf, NO_BODY, READ, |m| on(m, acl_tokens::read_self)),
        route(GET, "/v1/acl/token/{accessor}", C::Management, NO_BODY, READ, |m| on(m, acl_tokens::read)),
        route(WRITE, "/v1/acl/token/{accessor}", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, acl_tokens::update)),
        route(DELETE, "/v1/acl/token/{accessor}", C::Management, NO_BODY, REQUEST, |m| on(m, acl_tokens::delete)),
        route(GET, "/v1/acl/roles", C::AclSelf, NO_BODY, READ, |m| on(m, acl_roles::list)),
        route(WRITE, "/v1/acl/role", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, acl_roles::create)),
        route(GET, "/v1/acl/role/{id}", C::AclSelf, NO_BODY, READ, |m| on(m, acl_roles::read)),
        route(WRITE, "/v1/acl/role/{id}", C::Management, MAX_SMALL_BODY, REQUEST, |m| on(m, acl_roles::update)),
        route(DELETE, "/v1/acl/role/{id}", C::Management, NO_BODY, REQUEST, |m| on(m, acl_roles::delete)),
        route(GET, "/v1/acl/role/name/{name}", C::AclSelf, NO_BODY, READ, |m| on(m, acl_roles::read_by_name)),
    ]
}

/// The router of [`table`]; `state` is what its ACL checks read.
pub(crate) fn build(state: &ApiState) -> Router<ApiState> {
    table().into_iter().fold(Router::new(), |router, r| {
        let methods = r
            .verbs
            .iter()
            .map(|v| v.filter())
            .reduce(MethodFilter::or)
            .expect("every route has a method");
        let guard = Guard {
            capability: r.capability,
            scope: acl::scope_of(r.path),
            timeout: r.timeout,
            node_bound: r.path.starts_with(NODE_BOUND),
            body_limit: r.body_limit,
        };
        let st = state.clone();
        let handler = (r.handler)(methods)
            .route_layer(axum::middleware::from_fn(
                move |req: Request, next: Next| admit(st.clone(), guard, req, next),
            ))
            .route_layer(DefaultBodyLimit::max(r.body_limit));
        router.route(r.path, handler)
    })
}

/// Where the routes answered by the allocation's client begin: a follower forwards them
/// to the leader ([`leader_proxy`]).
pub const NODE_BOUND: &str = "/v1/client/";

/// What `admit` checks for one route.
#[derive(Clone, Copy)]
struct Guard {
    capability: Capability,
    scope: acl::Scope,
    timeout: Timeout,
    /// Answered by the allocation's client, through the leader.
    node_bound: bool,
    body_limit: usize,
}

/// Runs a route's handler once the caller holds its capability, within its timeout (on a
/// follower, a node-bound route is forwarded to the leader once admitted here). The
/// handler finds the [`acl::Caller`] in the request's extensions. An exec WebSocket
/// without a token in its headers is let through to authenticate with its first frame
/// (Nomad's `{"version":1,"auth_token":...}`); its handler checks before running anything.
async fn admit(st: ApiState, guard: Guard, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let token = acl::token_of(&parts.headers);
    // Public routes look at no token (a stale one does not fail a health check), as Nomad's.
    let public = matches!(
        guard.capability,
        Capability::Public | Capability::AclBootstrap
    );
    let resolved = if public && st.acl.enabled() {
        Ok(acl::Caller::nobody())
    } else {
        st.acl.resolve(st.server.store(), token.as_deref())
    };
    let mut caller = match resolved {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let deferred = guard.capability == Capability::AllocExec
        && token.is_none()
        && st.acl.enabled()
        && crate::guard::is_websocket(&parts.headers);
    if !deferred
        && let Err(refused) = acl::permit(
            st.server.store(),
            &caller,
            guard.capability,
            guard.scope,
            &mut parts,
        )
        .await
    {
        return refused.into_response();
    }
    caller.first_frame = deferred;
    parts.extensions.insert(caller);
    let req = Request::from_parts(parts, body);
    let run = async {
        if guard.node_bound {
            leader_proxy::to_leader(&st, req, guard.body_limit, next).await
        } else {
            next.run(req).await
        }
    };
    match guard.timeout {
        Timeout::Open => run.await,
        Timeout::Within(limit) => match tokio::time::timeout(limit, run).await {
            Ok(resp) => resp,
            Err(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                format!("the request did not finish within {} s", limit.as_secs()),
            )
                .into_response(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::limits::MAX_BLOCKING_WAIT;

    #[test]
    fn each_method_and_path_is_declared_once() {
        let mut seen = BTreeSet::new();
        for r in table() {
            assert!(!r.verbs.is_empty(), "{} has no method", r.path);
            for v in r.verbs {
                assert!(
                    seen.insert((*v, r.path)),
                    "{v:?} {} is declared twice",
                    r.path
                );
            }
        }
        // And the router accepts them all (overlapping routes panic here).
        let _ = table().into_iter().fold(Router::<()>::new(), |router, r| {
            let methods = r
                .verbs
                .iter()
                .map(|v| v.filter())
                .reduce(MethodFilter::or)
                .unwrap();
            router.route(r.path, on(methods, || async {}))
        });
    }

    #[test]
    fn bodies_are_bounded_and_only_writes_read_one() {
        for r in table() {
            assert!(r.body_limit <= MAX_BACKUP_BODY, "{} reads too much", r.path);
            if r.verbs == GET {
                assert_eq!(r.body_limit, NO_BODY, "GET {} reads no body", r.path);
            }
            if r.path != "/v1/operator/snapshot" {
                assert!(
                    r.body_limit <= MAX_BODY,
                    "{} reads more than MAX_BODY",
                    r.path
                );
            }
        }
    }

    #[test]
    fn reads_outlast_the_longest_blocking_query_and_only_streams_are_open() {
        let streams = [
            "/v1/client/fs/logs/{alloc}",
            "/v1/client/fs/{op}/{alloc}",
            "/v1/client/allocation/{alloc}/exec",
            "/v1/event/stream",
            "/v1/operator/snapshot",
        ];
        for r in table() {
            match r.timeout {
                Timeout::Open => assert!(streams.contains(&r.path), "{} has no timeout", r.path),
                Timeout::Within(t) => {
                    assert!(t > Duration::ZERO, "{}", r.path);
                    if r.timeout == READ {
                        assert!(t > MAX_BLOCKING_WAIT, "{}", r.path);
                    }
                }
            }
        }
    }

    #[test]
    fn writes_need_more_than_public_access() {
        for r in table() {
            if r.verbs != GET {
                assert_ne!(r.capability, Capability::Public, "{}", r.path);
            }
        }
    }

    #[test]
    fn every_route_is_given_a_capability() {
        for r in table() {
            assert_ne!(
                r.capability,
                Capability::Unassigned,
                "{} has no ACL capability: give it the one Nomad's endpoint checks",
                r.path
            );
        }
    }
}
