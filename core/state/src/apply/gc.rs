//! Collecting what the garbage collector found: finished jobs, evaluations, allocations and
//! down nodes, each deleted only if it is still collectable now.

use super::jobs::purge_job;
use super::{Apply, touch};
use crate::{Event, JobAt, NodeAt, Table};

/// Deletes what is still collectable of what the collector found.
pub(super) fn collect(
    cx: &mut Apply,
    jobs: &[JobAt],
    evals: &[String],
    allocs: &[String],
    nodes: &[NodeAt],
) {
    let (s, index) = (&mut *cx.s, cx.index);
    // Jobs first: an allocation is then checked against the job as it now is (gone,
    // or registered again since the collector looked, and needing it).
    for at in jobs {
        let key = (at.namespace.clone(), at.job_id.clone());
        if let Some(job) = s.jobs.get(&key).cloned()
            && job.modify_index == at.modify_index
        {
            purge_job(s, index, &job, cx.events);
            touch(s, Table::Jobs, index);
        }
    }
    // Deleting finished records leaves the status of a job that stays as it was.
    for id in evals {
        if !s.evals.get(id).is_some_and(|e| e.status.is_terminal()) {
            continue;
        }
        let Some(e) = s.evals.remove(id) else {
            continue;
        };
        s.evals_by_job
            .remove(&(e.namespace.clone(), e.job_id.clone(), e.id.clone()));
        s.evals_pending.remove(&crate::snapshot::pending_key(&e));
        touch(s, Table::Evals, index);
    }
    for id in allocs {
        let Some(a) = s.allocs.get(id) else { continue };
        let job = s.jobs.get(&(a.namespace.clone(), a.job_id.clone()));
        if !a.client_status.is_terminal() || a.still_needed_by(job.map(|j| &**j)) {
            continue;
        }
        super::services::remove_for_alloc(s, index, id, cx.events);
        let Some(a) = s.allocs.remove(id) else {
            continue;
        };
        s.allocs_by_node.remove(&(a.node_id.clone(), a.id.clone()));
        s.allocs_by_job
            .remove(&(a.namespace.clone(), a.job_id.clone(), a.id.clone()));
        touch(s, Table::Allocs, index);
    }
    for at in nodes {
        if let Some(node) = s.nodes.get(&at.node_id).cloned()
            && node.modify_index == at.modify_index
        {
            s.nodes.remove(&at.node_id);
            cx.events
                .push(Event::node(index, "NodeDeregistration", &node));
            touch(s, Table::Nodes, index);
        }
    }
}
