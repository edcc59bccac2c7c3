//! Restoring the whole state: at once, or staged in bounded chunks and swapped in.

use std::sync::Arc;

use drover_model::Index;

use super::Apply;
use crate::snapshot::StagedRestore;
use crate::{RestoreRows, StateSnapshot, Table};

/// Replaces the state with the one in `state`, if it is valid.
pub(super) fn restore(cx: &mut Apply, state: &serde_json::Value) {
    match StateSnapshot::from_value(state.clone()) {
        Ok(restored) => swap_in(cx.s, restored, cx.index),
        Err(e) => cx.resp.error = Some(format!("the restored state is not valid: {e}")),
    }
}

/// Stages chunk `seq` of restore `id`: chunk 0 starts it (dropping any other staged
/// restore); the others must follow in order.
pub(super) fn stage_chunk(cx: &mut Apply, id: &str, seq: u32, rows: &RestoreRows) {
    let s = &mut *cx.s;
    let rows = Arc::new(rows.clone());
    match &mut s.staged {
        _ if seq == 0 => {
            s.staged = Some(StagedRestore {
                id: id.to_string(),
                chunks: im::Vector::unit(rows),
            });
        }
        Some(st) if st.id == id && st.chunks.len() == seq as usize => {
            st.chunks.push_back(rows);
        }
        Some(st) if st.id == id => {
            cx.resp.error = Some(format!(
                "restore {id}: chunk {seq} arrived after {} chunks; the restore must start again",
                st.chunks.len()
            ));
        }
        _ => {
            cx.resp.error = Some(format!(
                "restore {id} is not being staged (another restore started, or it never began); it must start again"
            ));
        }
    }
}

/// Drops the staged restore `id`, if it is the one staged.
pub(super) fn abort(cx: &mut Apply, id: &str) {
    if cx.s.staged.as_ref().is_some_and(|st| st.id == id) {
        cx.s.staged = None;
    }
}

/// Swaps in the staged restore `id` if all its `chunks` are staged; otherwise nothing
/// changes and the response says why.
pub(super) fn swap(cx: &mut Apply, id: &str, chunks: u32) {
    let s = &mut *cx.s;
    match s.staged.take() {
        Some(st) if st.id == id && st.chunks.len() == chunks as usize => {
            let restored = StateSnapshot::from_rows(st.chunks.iter().map(Arc::as_ref));
            swap_in(s, restored, cx.index);
        }
        other => {
            cx.resp.error = Some(match &other {
                Some(st) if st.id == id => format!(
                    "restore {id}: {} of its {chunks} chunks are staged; nothing was restored",
                    st.chunks.len()
                ),
                _ => format!("restore {id} is not being staged; nothing was restored"),
            });
            s.staged = other;
        }
    }
}

/// Replaces the state with a restored one at `index`.
fn swap_in(s: &mut StateSnapshot, mut restored: StateSnapshot, index: Index) {
    // Every table changes at this index, so blocking queries wake.
    for t in [
        Table::Jobs,
        Table::Allocs,
        Table::Evals,
        Table::Nodes,
        Table::Variables,
        Table::Services,
        Table::Keyring,
        Table::AclPolicies,
        Table::AclTokens,
        Table::AclRoles,
        Table::Namespaces,
        Table::NodePools,
        Table::SchedulerConfig,
    ] {
        restored.table_index.insert(t, index);
    }
    if restored.plaintext_variables().next().is_some() {
        // The restore's entries hold these variables in plaintext.
        restored.plaintext_index = index;
    }
    // A cluster once bootstrapped stays so, and a restored state holding tokens counts as
    // bootstrapped: a restore never reopens `acl bootstrap` to whoever asks first.
    restored.acl_bootstrap = s
        .acl_bootstrap
        .or(restored.acl_bootstrap)
        .or((!restored.acl_tokens.is_empty()).then_some(index));
    restored.index = index;
    restored.staged = None;
    *s = restored;
}
