//! Creating, updating and deleting namespaces. Each command is all or nothing: one
//! namespace refused refuses them all, and the response names it and why.

use std::sync::Arc;

use drover_model::{Index, Namespace};

use super::{Apply, touch};
use crate::{StateSnapshot, Table};

/// Creates namespace `name` if it is missing. The servers refuse a job or variable in a
/// namespace that does not exist before writing it, so this only acts on entries written
/// before namespaces were objects (replayed from an older log) or on a namespace deleted
/// between that check and the write: no job or variable is left without its namespace.
pub(super) fn ensure(s: &mut StateSnapshot, index: Index, name: &str) {
    if s.namespaces.contains_key(name) {
        return;
    }
    let ns = Namespace::adopted(name, index);
    if ns.validate().is_ok() {
        s.namespaces.insert(ns.name.clone(), Arc::new(ns));
        touch(s, Table::Namespaces, index);
    }
}

/// Creates or updates namespaces (an update keeps its create index).
pub(super) fn upsert(cx: &mut Apply, namespaces: &[Namespace]) {
    if let Some(e) = namespaces.iter().find_map(|ns| ns.validate().err()) {
        cx.resp.error = Some(e.to_string());
        return;
    }
    let (s, index) = (&mut *cx.s, cx.index);
    for ns in namespaces {
        let mut ns = ns.clone();
        match s.namespaces.get(&ns.name) {
            Some(old) => ns.create_index = old.create_index,
            None => ns.create_index = index,
        }
        ns.modify_index = index;
        s.namespaces.insert(ns.name.clone(), Arc::new(ns));
    }
    if !namespaces.is_empty() {
        touch(s, Table::Namespaces, index);
    }
}

/// Deletes namespaces: none if any is unknown, `default`, or holds jobs or variables.
pub(super) fn delete(cx: &mut Apply, names: &[String]) {
    let s = &mut *cx.s;
    for name in names {
        if s.namespace(name).is_none() {
            cx.resp.error = Some(format!("namespace {name:?} does not exist"));
            return;
        }
        if let Some(why) = s.namespace_in_use(name) {
            cx.resp.error = Some(why);
            return;
        }
    }
    for name in names {
        s.namespaces.remove(name);
    }
    if !names.is_empty() {
        touch(s, Table::Namespaces, cx.index);
    }
}
