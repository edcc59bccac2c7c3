//! Writing and deleting variables, with check-and-set.

use std::sync::Arc;

use drover_model::{Index, Variable};

use super::{Apply, touch};
use crate::{Response, Table};

/// Writes a variable unless its check-and-set conflicts; the response carries it.
pub(super) fn upsert(cx: &mut Apply, var: &Variable, cas: Option<Index>) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    let key = (var.namespace.clone(), var.path.clone());
    let current = s.vars.get(&key).cloned();
    if cas_conflict(&mut cx.resp, &current, cas) {
        return;
    }
    let mut var = var.clone();
    match &current {
        Some(old) => {
            var.create_index = old.create_index;
            var.create_time = old.create_time;
        }
        None => {
            var.create_index = index;
            var.create_time = time;
        }
    }
    var.modify_index = index;
    var.modify_time = time;
    super::namespaces::ensure(s, index, &var.namespace);
    if var.encrypted.is_none() {
        // Written in plaintext (by a server without the keyring): this entry holds it.
        s.plaintext_index = index;
    }
    let var = Arc::new(var);
    s.vars.insert(key, var.clone());
    cx.resp.variable = Some(var);
    touch(s, Table::Variables, index);
}

/// Deletes a variable unless its check-and-set conflicts.
pub(super) fn delete(cx: &mut Apply, namespace: &str, path: &str, cas: Option<Index>) {
    let (s, index) = (&mut *cx.s, cx.index);
    let key = (namespace.to_string(), path.to_string());
    let current = s.vars.get(&key).cloned();
    if cas_conflict(&mut cx.resp, &current, cas) {
        return;
    }
    if s.vars.remove(&key).is_some() {
        touch(s, Table::Variables, index);
    }
}

/// A check-and-set that does not match the variable's modify index (0: absent) is a
/// conflict: the response says so and carries the current variable.
fn cas_conflict(resp: &mut Response, current: &Option<Arc<Variable>>, cas: Option<Index>) -> bool {
    let at = current.as_ref().map_or(0, |v| v.modify_index);
    if cas.is_none_or(|c| c == at) {
        return false;
    }
    resp.conflict = true;
    resp.variable = current.clone();
    true
}
