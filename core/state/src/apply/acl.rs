//! ACL policies, tokens and roles, and the bootstrap. Each command is checked whole before
//! anything changes: a refused one changes nothing and says why.

use std::sync::Arc;

use drover_model::{AclPolicy, AclRole, AclToken, AclTokenType, Index};

use super::{Apply, touch};
use crate::Table;

pub(super) fn upsert_policies(cx: &mut Apply, policies: &[AclPolicy]) {
    let (s, index) = (&mut *cx.s, cx.index);
    for p in policies {
        let mut p = p.clone();
        p.create_index = s
            .acl_policies
            .get(&p.name)
            .map_or(index, |o| o.create_index);
        p.modify_index = index;
        s.acl_policies.insert(p.name.clone(), Arc::new(p));
    }
    touch(s, Table::AclPolicies, index);
}

pub(super) fn delete_policies(cx: &mut Apply, names: &[String]) {
    for n in names {
        if cx.s.acl_policies.remove(n).is_some() {
            touch(cx.s, Table::AclPolicies, cx.index);
        }
    }
}

/// Why `tokens` cannot be stored, if they cannot: a new token without a secret hash, or
/// with the hash of another token's secret.
fn token_conflict(s: &crate::StateSnapshot, tokens: &[AclToken]) -> Option<String> {
    let mut seen = std::collections::BTreeSet::new();
    for t in tokens {
        if t.accessor_id.is_empty() {
            return Some("an ACL token has no accessor id".into());
        }
        if s.acl_tokens.contains_key(&t.accessor_id) {
            continue; // an update keeps its secret
        }
        if t.secret_hash.is_empty() {
            return Some(format!("ACL token {} has no secret", t.accessor_id));
        }
        if s.acl_tokens_by_secret.contains_key(&t.secret_hash) || !seen.insert(&t.secret_hash) {
            return Some(format!(
                "ACL token {}: its secret is another token's",
                t.accessor_id
            ));
        }
    }
    None
}

fn insert_token(s: &mut crate::StateSnapshot, index: Index, t: &AclToken) {
    let mut t = t.clone();
    t.secret_id.clear();
    if let Some(old) = s.acl_tokens.get(&t.accessor_id) {
        t.secret_hash = old.secret_hash.clone();
        t.create_index = old.create_index;
        t.create_time = old.create_time;
    } else {
        t.create_index = index;
    }
    t.modify_index = index;
    s.acl_tokens_by_secret
        .insert(t.secret_hash.clone(), t.accessor_id.clone());
    s.acl_tokens.insert(t.accessor_id.clone(), Arc::new(t));
    touch(s, Table::AclTokens, index);
}

pub(super) fn upsert_tokens(cx: &mut Apply, tokens: &[AclToken]) {
    if let Some(why) = token_conflict(cx.s, tokens) {
        cx.resp.error = Some(why);
        return;
    }
    for t in tokens {
        insert_token(cx.s, cx.index, t);
    }
}

pub(super) fn delete_tokens(cx: &mut Apply, accessors: &[String]) {
    for a in accessors {
        if let Some(t) = cx.s.acl_tokens.remove(a) {
            cx.s.acl_tokens_by_secret.remove(&t.secret_hash);
            touch(cx.s, Table::AclTokens, cx.index);
        }
    }
}

/// The first management token, once (or again at the reset index).
pub(super) fn bootstrap(cx: &mut Apply, token: &AclToken, reset_index: Option<Index>) {
    if let Some(done) = cx.s.acl_bootstrap
        && reset_index != Some(done)
    {
        cx.resp.error = Some(format!("ACL bootstrap already done (reset index: {done})"));
        return;
    }
    if token.token_type != AclTokenType::Management {
        cx.resp.error = Some("the bootstrap token must be a management token".into());
        return;
    }
    if let Some(why) = token_conflict(cx.s, std::slice::from_ref(token)) {
        cx.resp.error = Some(why);
        return;
    }
    insert_token(cx.s, cx.index, token);
    cx.s.acl_bootstrap = Some(cx.index);
}

pub(super) fn upsert_roles(cx: &mut Apply, roles: &[AclRole]) {
    let s = &*cx.s;
    for r in roles {
        if let Some(other) = s.acl_roles_by_name.get(&r.name)
            && *other != r.id
        {
            cx.resp.error = Some(format!("an ACL role named {:?} already exists", r.name));
            return;
        }
    }
    let (s, index) = (&mut *cx.s, cx.index);
    for r in roles {
        let mut r = r.clone();
        if let Some(old) = s.acl_roles.get(&r.id) {
            r.create_index = old.create_index;
            s.acl_roles_by_name.remove(&old.name);
        } else {
            r.create_index = index;
        }
        r.modify_index = index;
        s.acl_roles_by_name.insert(r.name.clone(), r.id.clone());
        s.acl_roles.insert(r.id.clone(), Arc::new(r));
    }
    touch(s, Table::AclRoles, index);
}

pub(super) fn delete_roles(cx: &mut Apply, ids: &[String]) {
    for id in ids {
        if let Some(r) = cx.s.acl_roles.remove(id) {
            cx.s.acl_roles_by_name.remove(&r.name);
            touch(cx.s, Table::AclRoles, cx.index);
        }
    }
}
