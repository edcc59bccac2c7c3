//! Applying a Raft [`Command`] to the state: [`apply_command`] dispatches each command to the
//! function that applies it, grouped here by the resource it changes.
//!
//! Deterministic: nothing here reads a clock or randomness (the entry's `time` is the only
//! time), and nothing iterates a std hash map.

mod acl;
mod allocations;
mod evaluations;
mod gc;
mod jobs;
mod keyring;
mod namespaces;
mod node_pools;
mod nodes;
mod restore;
mod scheduler_config;
mod services;
mod variables;

use std::sync::Arc;

use drover_model::{Allocation, EvalStatus, Evaluation, Index};

use crate::{Command, Event, Response, StateSnapshot, Table};

/// A job's key: (namespace, job id).
type JobKey = (String, String);

/// What applying one command works on: the state, the entry's index and time, the events
/// it emits, the response it builds, and the jobs whose status may have changed.
struct Apply<'a> {
    s: &'a mut StateSnapshot,
    index: Index,
    time: i64,
    events: &'a mut Vec<Event>,
    resp: Response,
    touched_jobs: Vec<JobKey>,
}

/// Applies `command` at `index`, the entry's `time`; the events it causes go to `events`.
pub(crate) fn apply_command(
    s: &mut StateSnapshot,
    index: Index,
    time: i64,
    command: &Command,
    events: &mut Vec<Event>,
) -> Response {
    let mut cx = Apply {
        s,
        index,
        time,
        events,
        resp: Response {
            index,
            ..Default::default()
        },
        touched_jobs: Vec::new(),
    };
    match command {
        Command::Restore { state } => restore::restore(&mut cx, state),
        Command::RestoreChunk { id, seq, rows } => restore::stage_chunk(&mut cx, id, *seq, rows),
        Command::RestoreAbort { id } => restore::abort(&mut cx, id),
        Command::RestoreSwap { id, chunks } => restore::swap(&mut cx, id, *chunks),
        Command::Batch(commands) => apply_batch(&mut cx, commands),
        Command::JobRegister { job, eval } => jobs::register(&mut cx, job, eval.as_ref()),
        Command::JobDeregister {
            namespace,
            job_id,
            purge,
            eval,
        } => jobs::deregister(&mut cx, namespace, job_id, *purge, eval.as_ref()),
        Command::NodeRegister { node } => nodes::register(&mut cx, node),
        Command::NodeStatus {
            node_id,
            status,
            description,
            evals,
        } => nodes::update_status(&mut cx, node_id, *status, description, evals),
        Command::AllocClientUpdate { updates, evals } => {
            allocations::client_update(&mut cx, updates, evals)
        }
        Command::PlanApply(plan) => allocations::apply_plan(&mut cx, plan),
        Command::VarUpsert { var, cas } => variables::upsert(&mut cx, var, *cas),
        Command::VarDelete {
            namespace,
            path,
            cas,
        } => variables::delete(&mut cx, namespace, path, *cas),
        Command::Collect {
            evals,
            allocs,
            jobs,
            nodes,
        } => gc::collect(&mut cx, jobs, evals, allocs, nodes),
        Command::EvalUpsert { evals } => evaluations::upsert_all(&mut cx, evals),
        Command::ServiceRegUpsert { services: regs } => services::upsert(&mut cx, regs),
        Command::ServiceRegDelete { ids } => services::delete(&mut cx, ids),
        Command::RootKeyUpsert { key } => keyring::upsert(&mut cx, key),
        Command::RootKeyDelete { key_id } => keyring::delete(&mut cx, key_id),
        Command::AclPolicyUpsert { policies } => acl::upsert_policies(&mut cx, policies),
        Command::AclPolicyDelete { names } => acl::delete_policies(&mut cx, names),
        Command::AclTokenUpsert { tokens } => acl::upsert_tokens(&mut cx, tokens),
        Command::AclTokenDelete { accessors } => acl::delete_tokens(&mut cx, accessors),
        Command::AclBootstrap { token, reset_index } => {
            acl::bootstrap(&mut cx, token, *reset_index)
        }
        Command::AclRoleUpsert { roles } => acl::upsert_roles(&mut cx, roles),
        Command::AclRoleDelete { ids } => acl::delete_roles(&mut cx, ids),
        Command::NamespaceUpsert { namespaces: ns } => namespaces::upsert(&mut cx, ns),
        Command::NamespaceDelete { names } => namespaces::delete(&mut cx, names),
        Command::NodePoolUpsert { pools } => node_pools::upsert(&mut cx, pools),
        Command::NodePoolDelete { names } => node_pools::delete(&mut cx, names),
        Command::SchedulerConfigSet { config, cas } => scheduler_config::set(&mut cx, config, *cas),
        // The state machine stops before it; never applied.
        Command::Unknown(u) => cx.resp.error = Some(u.to_string()),
    }
    // A command that fails early has touched no job, so this changes nothing for it.
    let Apply {
        s,
        index,
        resp,
        mut touched_jobs,
        ..
    } = cx;
    touched_jobs.sort();
    touched_jobs.dedup();
    refresh_job_status(s, index, &touched_jobs);
    resp
}

/// Applies each command of a batch in order; each gets its own response.
fn apply_batch(cx: &mut Apply, commands: &[Command]) {
    cx.resp.batch = commands
        .iter()
        .map(|c| apply_command(cx.s, cx.index, cx.time, c, cx.events))
        .collect();
}

fn touch(s: &mut StateSnapshot, t: Table, index: Index) {
    s.table_index.insert(t, index);
}

/// Creates or updates an evaluation (an update keeps its creation), with its indexes.
fn upsert_eval(
    s: &mut StateSnapshot,
    index: Index,
    time: i64,
    mut eval: Evaluation,
    events: &mut Vec<Event>,
) {
    match s.evals.get(&eval.id) {
        Some(old) => {
            eval.create_index = old.create_index;
            eval.create_time = old.create_time;
            if old.status == EvalStatus::Pending {
                s.evals_pending.remove(&crate::snapshot::pending_key(old));
            }
        }
        None => {
            eval.create_index = index;
            eval.create_time = time;
        }
    }
    eval.modify_index = index;
    eval.modify_time = time;
    s.evals_by_job.insert(
        (eval.namespace.clone(), eval.job_id.clone(), eval.id.clone()),
        (),
    );
    if eval.status == EvalStatus::Pending {
        s.evals_pending
            .insert(crate::snapshot::pending_key(&eval), ());
    }
    let eval = Arc::new(eval);
    events.push(Event::eval(index, &eval));
    s.evals.insert(eval.id.clone(), eval);
    touch(s, Table::Evals, index);
}

/// Creates or updates an allocation a plan placed (an update keeps what the client owns).
fn upsert_alloc(
    s: &mut StateSnapshot,
    index: Index,
    time: i64,
    mut alloc: Allocation,
    events: &mut Vec<Event>,
) {
    if let Some(old) = s.allocs.get(&alloc.id) {
        alloc.create_index = old.create_index;
        alloc.create_time = old.create_time;
        // The client owns its status; a plan never rolls it back.
        alloc.client_status = old.client_status;
        alloc.client_description = old.client_description.clone();
        alloc.task_states = old.task_states.clone();
        alloc.client_seq = old.client_seq;
    } else {
        alloc.create_index = index;
        alloc.create_time = time;
    }
    alloc.modify_index = index;
    alloc.alloc_modify_index = index;
    alloc.modify_time = time;
    s.allocs_by_node
        .insert((alloc.node_id.clone(), alloc.id.clone()), ());
    s.allocs_by_job.insert(
        (
            alloc.namespace.clone(),
            alloc.job_id.clone(),
            alloc.id.clone(),
        ),
        (),
    );
    let alloc = Arc::new(alloc);
    events.push(Event::alloc(index, "PlanResult", &alloc));
    s.allocs.insert(alloc.id.clone(), alloc);
    touch(s, Table::Allocs, index);
}

/// Re-derives the status of the jobs whose allocations or evaluations changed.
fn refresh_job_status(s: &mut StateSnapshot, index: Index, jobs: &[(String, String)]) {
    for key in jobs {
        let Some(job) = s.jobs.get(key) else { continue };
        let status = s.derive_job_status(job);
        if status != job.status {
            let mut job = (**job).clone();
            job.status = status;
            job.modify_index = index;
            s.jobs.insert(key.clone(), Arc::new(job));
            touch(s, Table::Jobs, index);
        }
    }
}
