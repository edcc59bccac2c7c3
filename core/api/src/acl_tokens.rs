//! Nomad's ACL token API: `POST /v1/acl/bootstrap`, `GET /v1/acl/tokens`,
//! `POST /v1/acl/token` (create), `GET /v1/acl/token/self`, and
//! `GET|POST|DELETE /v1/acl/token/:accessor`.
//!
//! A token's secret is shown once, in the answer that creates it: the servers keep only its
//! SHA-256, so reads answer `SecretID: ""` (Nomad shows the secret on every read; Drover
//! deliberately cannot).

use std::time::Duration;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use drover_model::{AclToken, AclTokenRoleLink, AclTokenType, MAX_ACL_LINKS, MAX_ACL_NAME};
use drover_state::{StateSnapshot, Table};
use serde::Deserialize;

use crate::acl::{Caller, require_enabled, secret_hash};
use crate::acl_objects::AclKind;
use crate::query::{Params, query, with_index};
use crate::request_body::{agrees_with_path, decode};
use crate::{ApiError, ApiState};

/// A token as the API shows it: without the stored hash; with its secret only when given.
fn view(t: &AclToken, secret: Option<&str>) -> AclToken {
    let mut t = t.clone();
    t.secret_hash.clear();
    t.secret_id = secret.unwrap_or_default().to_string();
    t
}

/// A new token's secret: a random UUID (the operator may choose the bootstrap token's).
fn new_secret() -> String {
    drover_server::new_id()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct BootstrapRequest {
    bootstrap_secret: String,
}

/// The index in the `acl-bootstrap-reset` file, if there is one.
async fn reset_index(file: std::path::PathBuf) -> Result<Option<u64>, ApiError> {
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let f = match std::fs::File::open(&file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        let mut text = String::new();
        f.take(64)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        text.trim().parse::<u64>().map(Some).map_err(|_| {
            format!(
                "{} holds {:?}, not a reset index (the number the bootstrap refusal names)",
                file.display(),
                text.trim()
            )
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    read.map_err(ApiError::bad_request)
}

/// `POST /v1/acl/bootstrap`: the first management token, once. To bootstrap again, write
/// the index the refusal names to `<data_dir>/server/acl-bootstrap-reset` on the server
/// that answers.
pub(crate) async fn bootstrap(
    State(st): State<ApiState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: BootstrapRequest = decode(&body, "bootstrap request")?;
    let secret = if req.bootstrap_secret.is_empty() {
        new_secret()
    } else {
        let s = req.bootstrap_secret.trim().to_string();
        if s.len() < 16 || s.len() > 128 {
            return Err(ApiError::bad_request(
                "BootstrapSecret must be 16 to 128 characters (a UUID)",
            ));
        }
        s
    };
    let reset = reset_index(st.acl.config().bootstrap_reset_file.clone()).await?;
    let token = AclToken {
        accessor_id: drover_server::new_id(),
        name: "Bootstrap Token".into(),
        token_type: AclTokenType::Management,
        global: true,
        create_time: drover_model::now_nanos(),
        secret_hash: secret_hash(&secret),
        ..Default::default()
    };
    let index = st.server.bootstrap_acl(token.clone(), reset).await?;
    let stored = st
        .server
        .store()
        .snapshot()
        .acl_token(&token.accessor_id)
        .cloned()
        .unwrap_or(token);
    Ok(with_index(index, &view(&stored, Some(&secret))))
}

pub(crate) async fn list(
    State(st): State<ApiState>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let snap = query(&st, &q, Table::AclTokens).await?;
    let prefix = q.get("prefix").map(String::as_str).unwrap_or("");
    let v: Vec<AclToken> = snap
        .acl_tokens()
        .filter(|t| t.accessor_id.starts_with(prefix))
        .map(|t| view(t, None))
        .collect();
    Ok(with_index(snap.table_index(Table::AclTokens), &v))
}

/// A token request's body (Nomad's `ACLToken`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct TokenRequest {
    #[serde(rename = "AccessorID")]
    accessor_id: String,
    name: String,
    #[serde(rename = "Type")]
    token_type: String,
    policies: Vec<String>,
    roles: Vec<AclTokenRoleLink>,
    global: bool,
    /// Nanoseconds, or a duration like "1h".
    #[serde(rename = "ExpirationTTL")]
    expiration_ttl: Option<serde_json::Value>,
}

fn ttl_of(v: &Option<serde_json::Value>) -> Result<Option<Duration>, ApiError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => match n.as_u64() {
            Some(0) => Ok(None),
            Some(ns) => Ok(Some(Duration::from_nanos(ns))),
            None => Err(ApiError::bad_request(
                "ExpirationTTL must be a positive duration",
            )),
        },
        Some(serde_json::Value::String(s)) if s.is_empty() || s == "0" => Ok(None),
        Some(serde_json::Value::String(s)) => drover_model::serde_fmt::parse_duration(s)
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request(format!("ExpirationTTL {s:?} is not a duration like \"1h\""))
            }),
        Some(_) => Err(ApiError::bad_request("ExpirationTTL must be a duration")),
    }
}

/// Checks a token request's name, type, policies and roles; the role links come back
/// resolved (id and name).
fn checked_links(
    snap: &StateSnapshot,
    req: &TokenRequest,
    token_type: AclTokenType,
) -> Result<Vec<AclTokenRoleLink>, ApiError> {
    if req.name.len() > MAX_ACL_NAME * 2 {
        return Err(ApiError::bad_request(format!(
            "token name is longer than {} characters",
            MAX_ACL_NAME * 2
        )));
    }
    if req.policies.len() > MAX_ACL_LINKS || req.roles.len() > MAX_ACL_LINKS {
        return Err(ApiError::bad_request(format!(
            "a token lists at most {MAX_ACL_LINKS} policies and {MAX_ACL_LINKS} roles"
        )));
    }
    match token_type {
        AclTokenType::Client if req.policies.is_empty() && req.roles.is_empty() => {
            return Err(ApiError::bad_request(
                "client token missing policies or roles",
            ));
        }
        AclTokenType::Management if !req.policies.is_empty() || !req.roles.is_empty() => {
            return Err(ApiError::bad_request(
                "management token cannot be associated with policies or roles",
            ));
        }
        _ => {}
    }
    for p in &req.policies {
        drover_model::validate_acl_name("policy", p).map_err(ApiError::bad_request)?;
    }
    let mut links = Vec::new();
    for l in &req.roles {
        let role = if l.id.is_empty() {
            snap.acl_role_by_name(&l.name)
        } else {
            snap.acl_role(&l.id)
        }
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "cannot find role {}",
                if l.id.is_empty() { &l.name } else { &l.id }
            ))
        })?;
        links.push(AclTokenRoleLink {
            id: role.id.clone(),
            name: role.name.clone(),
        });
    }
    links.sort();
    links.dedup();
    Ok(links)
}

fn type_of(word: &str) -> Result<AclTokenType, ApiError> {
    match word {
        "" | "client" => Ok(AclTokenType::Client),
        "management" => Ok(AclTokenType::Management),
        other => Err(ApiError::bad_request(format!(
            "token type {other:?} is not client or management"
        ))),
    }
}

/// `POST /v1/acl/token`: a new token; the answer is the only time its secret is shown.
pub(crate) async fn create(State(st): State<ApiState>, body: Bytes) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: TokenRequest = decode(&body, "token")?;
    if !req.accessor_id.is_empty() {
        return Err(ApiError::bad_request(
            "AccessorID is chosen by the servers; update a token with POST /v1/acl/token/<accessor>",
        ));
    }
    let token_type = type_of(&req.token_type)?;
    let roles = checked_links(&st.server.store().snapshot(), &req, token_type)?;
    let now = drover_model::now_nanos();
    let ttl = ttl_of(&req.expiration_ttl)?;
    let cfg = st.acl.config();
    if let Some(t) = ttl
        && (t < cfg.token_min_ttl || t > cfg.token_max_ttl)
    {
        return Err(ApiError::bad_request(format!(
            "ExpirationTTL must be between {} s and {} s (acl.token_min_expiration_ttl, acl.token_max_expiration_ttl)",
            cfg.token_min_ttl.as_secs(),
            cfg.token_max_ttl.as_secs()
        )));
    }
    let secret = new_secret();
    let mut policies = req.policies.clone();
    policies.sort();
    policies.dedup();
    let token = AclToken {
        accessor_id: drover_server::new_id(),
        name: req.name.clone(),
        token_type,
        policies,
        roles,
        global: req.global,
        create_time: now,
        expiration_ttl: ttl.map_or(0, |t| t.as_nanos() as i64),
        expiration_time: ttl.map(|t| now + t.as_nanos() as i64),
        secret_hash: secret_hash(&secret),
        ..Default::default()
    };
    let index = st.server.upsert_acl_tokens(vec![token.clone()]).await?;
    let mut shown = view(&token, Some(&secret));
    shown.create_index = index;
    shown.modify_index = index;
    Ok(with_index(index, &shown))
}

/// `POST /v1/acl/token/:accessor`: a token's name, policies and roles change; its type,
/// secret and expiration do not.
pub(crate) async fn update(
    State(st): State<ApiState>,
    Path(accessor): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let req: TokenRequest = decode(&body, "token")?;
    agrees_with_path("AccessorID", &req.accessor_id, &accessor)?;
    let snap = st.server.store().snapshot();
    let old = snap
        .acl_token(&accessor)
        .ok_or_else(|| AclKind::Token.not_found(&accessor))?;
    let token_type = if req.token_type.is_empty() {
        old.token_type
    } else {
        type_of(&req.token_type)?
    };
    if token_type != old.token_type {
        return Err(ApiError::bad_request("a token's type cannot change"));
    }
    let roles = checked_links(&snap, &req, token_type)?;
    let mut token = old.clone();
    token.name = req.name.clone();
    token.policies = req.policies.clone();
    token.policies.sort();
    token.policies.dedup();
    token.roles = roles;
    let index = st.server.upsert_acl_tokens(vec![token]).await?;
    let snap = st.server.store().snapshot();
    let t = snap
        .acl_token(&accessor)
        .ok_or_else(|| AclKind::Token.not_found(&accessor))?;
    Ok(with_index(index, &view(t, None)))
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(accessor): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let snap = query(&st, &q, Table::AclTokens).await?;
    let t = snap
        .acl_token(&accessor)
        .ok_or_else(|| AclKind::Token.not_found(&accessor))?;
    Ok(with_index(t.modify_index, &view(t, None)))
}

/// `GET /v1/acl/token/self`: the caller's own token.
pub(crate) async fn read_self(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    require_enabled(&st.acl)?;
    let Some(token) = caller.token else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "ACL token not found".into(),
        ));
    };
    Ok(with_index(token.modify_index, &view(&token, None)))
}

pub(crate) async fn delete(
    State(st): State<ApiState>,
    Path(accessor): Path<String>,
) -> Result<Response, ApiError> {
    crate::acl_objects::delete(&st, AclKind::Token, accessor).await
}
