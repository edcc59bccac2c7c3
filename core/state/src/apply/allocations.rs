//! What clients report about their allocations, and the plans the scheduler commits.

use std::sync::Arc;

use drover_model::{AllocClientUpdate, ClientStatus, DesiredStatus, Evaluation, TaskLifecycle};

use super::{Apply, touch, upsert_alloc, upsert_eval};
use crate::{Event, PlanResult, Table};

/// Applies the clients' reports on their allocations, and the evaluations they cause.
pub(super) fn client_update(cx: &mut Apply, updates: &[AllocClientUpdate], evals: &[Evaluation]) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    for u in updates {
        let Some(old) = s.allocs.get(&u.alloc_id) else {
            continue;
        };
        if u.seq <= old.client_seq {
            continue; // an older report never overwrites a newer one
        }
        // A lost allocation stays lost: its replacement may already run elsewhere.
        if old.client_status == ClientStatus::Lost {
            continue;
        }
        let mut a = (**old).clone();
        a.client_status = u.client_status;
        a.client_description = u.client_description.clone();
        a.task_states = u.task_states.clone();
        if u.network_status.is_some() {
            a.network_status = u.network_status.clone();
        }
        a.client_seq = u.seq;
        if a.client_status.is_terminal() {
            super::services::remove_for_alloc(s, index, &a.id, cx.events);
        }
        a.modify_index = index;
        a.modify_time = time;
        cx.touched_jobs
            .push((a.namespace.clone(), a.job_id.clone()));
        let a = Arc::new(a);
        cx.events.push(Event::alloc(index, "AllocationUpdated", &a));
        s.allocs.insert(a.id.clone(), a);
        touch(s, Table::Allocs, index);
    }
    for e in evals {
        upsert_eval(s, index, time, e.clone(), cx.events);
        cx.touched_jobs
            .push((e.namespace.clone(), e.job_id.clone()));
    }
}

/// Commits a scheduler's plan: its stops first, then its placements, then its evaluations.
pub(super) fn apply_plan(cx: &mut Apply, plan: &PlanResult) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    for stop in &plan.stops {
        let Some(old) = s.allocs.get(&stop.alloc_id) else {
            continue;
        };
        let mut a = (**old).clone();
        a.desired_status = DesiredStatus::Stop;
        a.desired_description = stop.description.clone();
        if let Some(cs) = stop.client_status {
            a.client_status = cs;
            if cs.is_terminal() {
                super::services::remove_for_alloc(s, index, &a.id, cx.events);
            }
            if cs == ClientStatus::Lost {
                for ts in a.task_states.values_mut() {
                    ts.state = TaskLifecycle::Dead;
                }
            }
        }
        a.modify_index = index;
        a.alloc_modify_index = index;
        a.modify_time = time;
        cx.touched_jobs
            .push((a.namespace.clone(), a.job_id.clone()));
        let a = Arc::new(a);
        cx.events.push(Event::alloc(index, "PlanResult", &a));
        s.allocs.insert(a.id.clone(), a);
        touch(s, Table::Allocs, index);
    }
    for a in &plan.allocs {
        // The allocation this one replaces learns its successor.
        if !a.previous_allocation.is_empty()
            && let Some(prev) = s.allocs.get(&a.previous_allocation)
            && prev.next_allocation.is_empty()
        {
            let mut prev = (**prev).clone();
            prev.next_allocation = a.id.clone();
            prev.modify_index = index;
            s.allocs.insert(prev.id.clone(), Arc::new(prev));
        }
        cx.touched_jobs
            .push((a.namespace.clone(), a.job_id.clone()));
        upsert_alloc(s, index, time, a.clone(), cx.events);
    }
    for e in plan.eval.iter().chain(plan.new_evals.iter()) {
        cx.touched_jobs
            .push((e.namespace.clone(), e.job_id.clone()));
        upsert_eval(s, index, time, e.clone(), cx.events);
    }
}
