//! The check every route passes before its handler: whether the caller holds the route's
//! [`Capability`], by Nomad's ACL rules.
//!
//! The caller's token comes from `X-Nomad-Token` or `Authorization: Bearer` (no token: the
//! `anonymous` policy, if one exists). The [`Resolver`] compiles a token's policies (its own
//! and its roles') into one [`Acl`], cached by the SHA-256 of the secret and recompiled
//! when a policy, token or role changes (or after `acl.token_ttl`), so a request costs a
//! hash and a map lookup. A namespace capability is checked in the request's namespace
//! (`?namespace=`, default `default`), or for a route naming an allocation or evaluation
//! by id, in that object's namespace. Handlers get the [`Caller`] to filter lists, and to
//! check namespaces a body names (a job's, a variable's).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use drover_acl::{Acl, NsCap, VarCap};
use drover_model::{ANONYMOUS_POLICY, AclToken};
use drover_state::{StateSnapshot, StateStore, Table};
use sha2::{Digest, Sha256};

use crate::ApiError;

/// What a route needs its caller to be allowed: Nomad's ACL capabilities (namespace
/// capabilities, variable operations, and the node/agent/operator policies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// No token needed (Nomad's `/v1/status/*`, `/v1/regions`).
    Public,
    ListJobs,
    ReadJob,
    SubmitJob,
    ParseJob,
    /// Stop, restart or signal an allocation.
    AllocLifecycle,
    /// `alloc exec` (into a raw_exec task: `alloc-node-exec` too).
    AllocExec,
    ReadLogs,
    ReadFs,
    ListVariables,
    ReadVariables,
    WriteVariables,
    DestroyVariables,
    NodeRead,
    AgentRead,
    AgentWrite,
    OperatorRead,
    OperatorWrite,
    /// The event stream: each event filtered by the read capability it needs.
    ReadEvents,
    /// The search API: each context's matches filtered by the read capability it needs.
    Search,
    /// Management tokens only (snapshots, forced garbage collection, ACL writes).
    Management,
    /// `POST /v1/acl/bootstrap`: anyone, once.
    AclBootstrap,
    /// Any token (not anonymous): its own token, and the policies and roles it holds.
    AclSelf,
    /// A route not given a capability yet: refused to everyone, management included (the
    /// route table's tests fail on it).
    Unassigned,
}

/// The ACL settings of the agent's `acl` block.
#[derive(Debug, Clone)]
pub struct AclConfig {
    pub enabled: bool,
    /// How long a compiled token is reused without looking again (`acl.token_ttl`); a
    /// change to policies, tokens or roles drops it at once anyway.
    pub token_ttl: Duration,
    /// Bounds of a token's `ExpirationTTL` (`acl.token_min_expiration_ttl`,
    /// `acl.token_max_expiration_ttl`).
    pub token_min_ttl: Duration,
    pub token_max_ttl: Duration,
    /// Nomad's `acl-bootstrap-reset` file: an index written there allows bootstrapping
    /// again.
    pub bootstrap_reset_file: std::path::PathBuf,
}

impl Default for AclConfig {
    /// Nomad's defaults, ACLs off.
    fn default() -> Self {
        AclConfig {
            enabled: false,
            token_ttl: Duration::from_secs(30),
            token_min_ttl: Duration::from_secs(60),
            token_max_ttl: Duration::from_secs(24 * 3600),
            bootstrap_reset_file: "acl-bootstrap-reset".into(),
        }
    }
}

/// Who is calling: the compiled ACL, and the token (None: anonymous, or ACLs disabled).
#[derive(Clone)]
pub(crate) struct Caller {
    pub(crate) acl: Arc<Acl>,
    pub(crate) token: Option<Arc<AclToken>>,
    /// An exec WebSocket whose token comes in its first frame: not checked yet.
    pub(crate) first_frame: bool,
    /// A task's workload identity (its default identity as a token): no policies, Nomad's
    /// implicit access to its own job's variables.
    pub(crate) workload: Option<Arc<drover_server::identity::Workload>>,
}

impl Caller {
    /// ACLs disabled: everything is allowed.
    pub(crate) fn unrestricted() -> Caller {
        static ALL: OnceLock<Arc<Acl>> = OnceLock::new();
        Caller {
            acl: ALL.get_or_init(|| Arc::new(Acl::management())).clone(),
            token: None,
            first_frame: false,
            workload: None,
        }
    }

    /// A caller allowed nothing (public routes, which check no token).
    pub(crate) fn nobody() -> Caller {
        static NONE: OnceLock<Arc<Acl>> = OnceLock::new();
        Caller {
            acl: NONE.get_or_init(|| Arc::new(Acl::default())).clone(),
            token: None,
            first_frame: false,
            workload: None,
        }
    }

    pub(crate) fn can(&self, ns: &str, op: NsCap) -> bool {
        self.acl.allow_ns_op(ns, op)
    }

    /// `op` in namespace `ns`, or 403.
    pub(crate) fn require(&self, ns: &str, op: NsCap) -> Result<(), ApiError> {
        if self.can(ns, op) {
            Ok(())
        } else {
            Err(denied())
        }
    }

    pub(crate) fn can_variable(&self, ns: &str, path: &str, op: VarCap) -> bool {
        self.acl.allow_variable_op(ns, path, op) || self.workload_reads(ns, path, op)
    }

    /// Whether the caller's workload identity grants `op` (read or list) on the variable.
    fn workload_reads(&self, ns: &str, path: &str, op: VarCap) -> bool {
        matches!(op, VarCap::Read | VarCap::List)
            && self
                .workload
                .as_ref()
                .is_some_and(|w| w.may_read_variable(ns, path))
    }
}

/// The ACL endpoints answer this while ACLs are disabled (Nomad's `ErrACLDisabled`).
pub(crate) fn require_enabled(resolver: &Resolver) -> Result<(), ApiError> {
    if resolver.enabled() {
        Ok(())
    } else {
        Err(ApiError::bad_request("ACL support disabled"))
    }
}

/// Nomad's answer to a caller without the capability.
pub(crate) fn denied() -> ApiError {
    ApiError(StatusCode::FORBIDDEN, "Permission denied".into())
}

fn forbidden(why: &str) -> ApiError {
    ApiError(StatusCode::FORBIDDEN, why.into())
}

/// The longest token secret looked at: anything longer is not a token.
const MAX_SECRET: usize = 128;
/// The most compiled tokens kept; the cache is emptied when it is full.
const MAX_CACHED: usize = 4096;

struct Cached {
    generation: (u64, u64, u64),
    at: Instant,
    expires: Option<i64>,
    caller: Caller,
}

/// Resolves a request's token into its [`Caller`].
pub struct Resolver {
    config: AclConfig,
    cache: Mutex<BTreeMap<[u8; 32], Cached>>,
    anonymous: Mutex<Option<Cached>>,
}

impl Resolver {
    pub fn new(config: AclConfig) -> Resolver {
        Resolver {
            config,
            cache: Mutex::default(),
            anonymous: Mutex::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    pub(crate) fn config(&self) -> &AclConfig {
        &self.config
    }

    /// The caller a request with this secret (None: no token) is.
    pub(crate) fn resolve(
        &self,
        store: &StateStore,
        secret: Option<&str>,
    ) -> Result<Caller, ApiError> {
        if !self.config.enabled {
            return Ok(Caller::unrestricted());
        }
        let generation = (
            store.table_index(Table::AclPolicies),
            store.table_index(Table::AclTokens),
            store.table_index(Table::AclRoles),
        );
        let fresh = |c: &Cached, now: i64| {
            c.generation == generation
                && c.at.elapsed() < self.config.token_ttl
                && c.expires.is_none_or(|t| t > now)
        };
        let now = drover_model::now_nanos();
        let Some(secret) = secret else {
            let mut anon = self.anonymous.lock().expect("acl cache lock");
            if let Some(c) = anon.as_ref().filter(|c| fresh(c, now)) {
                return Ok(c.caller.clone());
            }
            let snap = store.snapshot();
            let acl = compile(&snap, [ANONYMOUS_POLICY].into_iter());
            let caller = Caller {
                acl: Arc::new(acl),
                token: None,
                first_frame: false,
                workload: None,
            };
            *anon = Some(Cached {
                generation,
                at: Instant::now(),
                expires: None,
                caller: caller.clone(),
            });
            return Ok(caller);
        };
        if drover_keyring::identity::looks_like_jwt(secret) {
            return resolve_workload(store, secret);
        }
        if secret.len() > MAX_SECRET {
            return Err(forbidden("ACL token not found"));
        }
        let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        if let Some(c) = self
            .cache
            .lock()
            .expect("acl cache lock")
            .get(&hash)
            .filter(|c| fresh(c, now))
        {
            return Ok(c.caller.clone());
        }
        let snap = store.snapshot();
        let token = snap
            .acl_token_by_secret_hash(&hex(&hash))
            .ok_or_else(|| forbidden("ACL token not found"))?;
        if token.expired(now) {
            return Err(forbidden("ACL token expired"));
        }
        let acl = if token.is_management() {
            Acl::management()
        } else {
            compile(
                &snap,
                token_policies(&snap, token).iter().map(String::as_str),
            )
        };
        let caller = Caller {
            acl: Arc::new(acl),
            token: Some(Arc::new(token.clone())),
            first_frame: false,
            workload: None,
        };
        let mut cache = self.cache.lock().expect("acl cache lock");
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(
            hash,
            Cached {
                generation,
                at: Instant::now(),
                expires: token.expiration_time,
                caller: caller.clone(),
            },
        );
        Ok(caller)
    }
}

/// A workload identity presented as a token: verified on every request (its allocation
/// must still run), never cached.
fn resolve_workload(store: &StateStore, jwt: &str) -> Result<Caller, ApiError> {
    static NONE: OnceLock<Arc<Acl>> = OnceLock::new();
    let snap = store.snapshot();
    let workload =
        drover_server::identity::verify_workload(&snap, jwt, drover_server::identity::now_secs())
            .map_err(|e| forbidden(&format!("workload identity refused: {e}")))?;
    Ok(Caller {
        acl: NONE.get_or_init(|| Arc::new(Acl::default())).clone(),
        token: None,
        first_frame: false,
        workload: Some(Arc::new(workload)),
    })
}

/// The hex SHA-256 of a token secret: how it is stored.
pub(crate) fn secret_hash(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()).into())
}

fn hex(b: &[u8; 32]) -> String {
    use std::fmt::Write;
    b.iter().fold(String::with_capacity(64), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A token's policies: its own and its roles' (roles by id, else by name), sorted.
pub(crate) fn token_policies(snap: &StateSnapshot, token: &AclToken) -> Vec<String> {
    let mut names: Vec<String> = token.policies.clone();
    for link in &token.roles {
        let role = snap
            .acl_role(&link.id)
            .or_else(|| snap.acl_role_by_name(&link.name));
        if let Some(r) = role {
            names.extend(r.policies.iter().map(|p| p.name.clone()));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The policies named, compiled (a missing policy grants nothing; a stored policy always
/// parses, as it was checked when written).
fn compile<'a>(snap: &StateSnapshot, names: impl Iterator<Item = &'a str>) -> Acl {
    let parsed: Vec<drover_acl::Policy> = names
        .filter_map(|n| snap.acl_policy(n))
        .filter_map(|p| match drover_acl::parse(&p.rules) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                tracing::warn!(policy = %p.name, error = %e, "a stored ACL policy does not parse: it grants nothing");
                None
            }
        })
        .collect();
    Acl::compile(&parsed)
}

/// The token a request carries: `X-Nomad-Token`, else `Authorization: Bearer`.
pub(crate) fn token_of(headers: &HeaderMap) -> Option<String> {
    if let Some(t) = headers
        .get("X-Nomad-Token")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_string());
    }
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

/// Where a route's namespace capability is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The request's `?namespace=` (default `default`).
    Request,
    /// The namespace of the allocation the path names (`{id}` or `{alloc}`).
    Allocation,
    /// The namespace of the evaluation the path names.
    Evaluation,
}

/// The scope of a route, from its path: routes naming an allocation or an evaluation by id
/// are checked in that object's namespace.
pub(crate) fn scope_of(path: &str) -> Scope {
    if path.starts_with("/v1/allocation/")
        || path.starts_with("/v1/client/allocation/")
        || path.starts_with("/v1/client/fs/")
    {
        Scope::Allocation
    } else if path.starts_with("/v1/evaluation/") {
        Scope::Evaluation
    } else {
        Scope::Request
    }
}

/// The namespace capability a route's capability is, if it is one.
fn namespace_capability(c: Capability) -> Option<NsCap> {
    Some(match c {
        Capability::ListJobs => NsCap::ListJobs,
        Capability::ReadJob => NsCap::ReadJob,
        Capability::SubmitJob => NsCap::SubmitJob,
        Capability::ParseJob => NsCap::ParseJob,
        Capability::AllocLifecycle => NsCap::AllocLifecycle,
        Capability::AllocExec => NsCap::AllocExec,
        Capability::ReadLogs => NsCap::ReadLogs,
        Capability::ReadFs => NsCap::ReadFs,
        _ => return None,
    })
}

/// Whether `caller` may use a route needing `capability` (with scope `scope`) for this
/// request.
pub(crate) async fn permit(
    store: &StateStore,
    caller: &Caller,
    capability: Capability,
    scope: Scope,
    parts: &mut Parts,
) -> Result<(), ApiError> {
    use Capability as C;
    let acl = &caller.acl;
    if capability == C::Unassigned {
        return Err(forbidden(
            "Permission denied: this route has no ACL capability assigned",
        ));
    }
    if acl.is_management() {
        return Ok(());
    }
    let ok = match capability {
        C::Public | C::AclBootstrap | C::ReadEvents | C::Search => true,
        C::Unassigned | C::Management => false,
        C::AclSelf => caller.token.is_some(),
        C::NodeRead => acl.allow_node_read(),
        C::AgentRead => acl.allow_agent_read(),
        C::AgentWrite => acl.allow_agent_write(),
        C::OperatorRead => acl.allow_operator_read(),
        C::OperatorWrite => acl.allow_operator_write(),
        C::ListVariables | C::ReadVariables | C::WriteVariables | C::DestroyVariables => {
            let ns = request_namespace(parts);
            let op = match capability {
                C::ReadVariables => VarCap::Read,
                C::WriteVariables => VarCap::Write,
                C::DestroyVariables => VarCap::Destroy,
                _ => VarCap::List,
            };
            if op == VarCap::List {
                acl.allow_variable_search(&ns)
                    || caller
                        .workload
                        .as_ref()
                        .is_some_and(|w| w.claims.nomad_namespace == ns)
            } else {
                let params = path_params(parts).await;
                let path = params.get("path").map(String::as_str).unwrap_or("");
                caller.can_variable(&ns, path, op)
            }
        }
        _ => {
            let op = namespace_capability(capability).ok_or_else(denied)?;
            let ns = match scope {
                Scope::Request => request_namespace(parts),
                Scope::Allocation | Scope::Evaluation => {
                    let params = path_params(parts).await;
                    let id = params
                        .get("id")
                        .or_else(|| params.get("alloc"))
                        .cloned()
                        .unwrap_or_default();
                    let snap = store.snapshot();
                    object_namespace(&snap, scope, &id).unwrap_or_else(|| "*".into())
                }
            };
            acl.allow_ns_op(&ns, op)
        }
    };
    if ok { Ok(()) } else { Err(denied()) }
}

/// The namespace of the allocation or evaluation `id` (or its unique prefix).
fn object_namespace(snap: &StateSnapshot, scope: Scope, id: &str) -> Option<String> {
    match scope {
        Scope::Allocation => crate::allocations::find_alloc(snap, id)
            .ok()
            .map(|a| a.namespace.clone()),
        Scope::Evaluation => {
            crate::query::by_id_or_prefix(snap.eval(id), snap.evals(), |e| &e.id, id, "evaluation")
                .ok()
                .map(|e| e.namespace.clone())
        }
        Scope::Request => None,
    }
}

fn request_namespace(parts: &Parts) -> String {
    let q: BTreeMap<String, String> =
        axum::extract::Query::try_from_uri(&parts.uri).map_or_else(|_| BTreeMap::new(), |q| q.0);
    crate::query::namespace(&q)
}

async fn path_params(parts: &mut Parts) -> BTreeMap<String, String> {
    Path::<BTreeMap<String, String>>::from_request_parts(parts, &())
        .await
        .map(|p| p.0)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn tokens_come_from_nomads_header_or_a_bearer() {
        let mut h = HeaderMap::new();
        assert_eq!(token_of(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(token_of(&h).as_deref(), Some("abc"));
        h.insert("X-Nomad-Token", HeaderValue::from_static("xyz"));
        assert_eq!(token_of(&h).as_deref(), Some("xyz"));
    }

    fn write(store: &StateStore, index: u64, command: drover_state::Command) {
        let r = store.apply(index, &drover_state::Entry { time: 1, command });
        assert_eq!(r.error, None);
    }

    fn resolver() -> Resolver {
        Resolver::new(AclConfig {
            enabled: true,
            token_ttl: Duration::from_secs(3600),
            ..Default::default()
        })
    }

    #[test]
    fn tokens_resolve_to_their_policies_and_changes_apply_at_once() {
        use drover_model::{AclPolicy, AclRole, AclRolePolicyLink, AclTokenRoleLink};
        use drover_state::Command;
        let store = StateStore::new();
        let policy = |name: &str, rules: &str| AclPolicy {
            name: name.into(),
            rules: rules.into(),
            ..Default::default()
        };
        write(
            &store,
            1,
            Command::AclPolicyUpsert {
                policies: vec![policy("read", r#"namespace "default" { policy = "read" }"#)],
            },
        );
        let role = AclRole {
            id: "r".into(),
            name: "writers".into(),
            policies: vec![AclRolePolicyLink {
                name: "write".into(),
            }],
            ..Default::default()
        };
        write(&store, 2, Command::AclRoleUpsert { roles: vec![role] });
        let token = AclToken {
            accessor_id: "a".into(),
            policies: vec!["read".into()],
            roles: vec![AclTokenRoleLink {
                id: "r".into(),
                name: String::new(),
            }],
            secret_hash: secret_hash("s3cret"),
            ..Default::default()
        };
        write(
            &store,
            3,
            Command::AclTokenUpsert {
                tokens: vec![token.clone()],
            },
        );
        let r = resolver();
        let c = r.resolve(&store, Some("s3cret")).ok().unwrap();
        assert!(c.can("default", NsCap::ReadJob) && !c.can("default", NsCap::SubmitJob));
        // The role's policy appears: the cached entry is recompiled.
        write(
            &store,
            4,
            Command::AclPolicyUpsert {
                policies: vec![policy(
                    "write",
                    r#"namespace "default" { policy = "write" }"#,
                )],
            },
        );
        let c = r.resolve(&store, Some("s3cret")).ok().unwrap();
        assert!(c.can("default", NsCap::SubmitJob));
        // No token: nothing, until an anonymous policy exists.
        let anon = r.resolve(&store, None).ok().unwrap();
        assert!(!anon.can("default", NsCap::ListJobs) && anon.token.is_none());
        write(
            &store,
            5,
            Command::AclPolicyUpsert {
                policies: vec![policy("anonymous", r#"namespace "*" { policy = "read" }"#)],
            },
        );
        assert!(
            r.resolve(&store, None)
                .ok()
                .unwrap()
                .can("x", NsCap::ListJobs)
        );
        // Unknown, deleted and expired tokens are refused.
        let e = |secret: &str| r.resolve(&store, Some(secret)).err().unwrap().1;
        assert_eq!(e("nope"), "ACL token not found");
        write(
            &store,
            6,
            Command::AclTokenDelete {
                accessors: vec!["a".into()],
            },
        );
        assert_eq!(e("s3cret"), "ACL token not found");
        let expired = AclToken {
            accessor_id: "b".into(),
            policies: vec!["read".into()],
            secret_hash: secret_hash("old"),
            expiration_time: Some(1),
            ..Default::default()
        };
        write(
            &store,
            7,
            Command::AclTokenUpsert {
                tokens: vec![expired],
            },
        );
        assert_eq!(e("old"), "ACL token expired");
        // ACLs disabled: everything.
        let off = Resolver::new(AclConfig::default());
        assert!(off.resolve(&store, None).ok().unwrap().acl.is_management());
    }

    #[test]
    fn routes_naming_objects_are_checked_in_their_namespace() {
        assert_eq!(scope_of("/v1/allocation/{id}"), Scope::Allocation);
        assert_eq!(scope_of("/v1/client/fs/logs/{alloc}"), Scope::Allocation);
        assert_eq!(scope_of("/v1/evaluation/{id}"), Scope::Evaluation);
        assert_eq!(scope_of("/v1/job/{id}"), Scope::Request);
        assert_eq!(secret_hash("a").len(), 64);
    }
}
