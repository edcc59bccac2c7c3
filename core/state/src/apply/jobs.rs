//! Registering, stopping and purging jobs, and pruning their old versions.

use std::sync::Arc;

use drover_model::{Evaluation, Index, Job, JobStatus};

use super::{Apply, touch, upsert_eval};
use crate::store::JOB_TRACKED_VERSIONS;
use crate::{Event, StateSnapshot, Table};

/// Registers a job: a new version if its specification changed, and its evaluation.
pub(super) fn register(cx: &mut Apply, job: &Job, eval: Option<&Evaluation>) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    let key = (job.namespace.clone(), job.id.clone());
    let mut job = job.clone();
    match s.jobs.get(&key) {
        Some(old) if !old.spec_differs(&job) => {
            // Same specification: keep the version, but a stopped job runs again.
            job.version = old.version;
            job.create_index = old.create_index;
            job.job_modify_index = old.job_modify_index;
            job.submit_time = old.submit_time;
        }
        Some(old) => {
            job.version = old.version + 1;
            job.create_index = old.create_index;
            job.job_modify_index = index;
            job.submit_time = time;
        }
        None => {
            job.version = 0;
            job.create_index = index;
            job.job_modify_index = index;
            job.submit_time = time;
        }
    }
    job.modify_index = index;
    job.status = JobStatus::Pending;
    cx.resp.job_version = Some(job.version);
    let job = Arc::new(job);
    s.job_versions.insert(
        (job.namespace.clone(), job.id.clone(), job.version),
        job.clone(),
    );
    prune_job_versions(s, &job.namespace, &job.id);
    if let Some(eval) = eval {
        let mut eval = eval.clone();
        eval.job_modify_index = job.job_modify_index;
        upsert_eval(s, index, time, eval, cx.events);
    }
    cx.events.push(Event::job(index, "JobRegistered", &job));
    super::namespaces::ensure(s, index, &job.namespace);
    s.jobs.insert(key.clone(), job);
    touch(s, Table::Jobs, index);
    cx.touched_jobs.push(key);
}

/// Stops a job, or with `purge` removes it and its versions; a job not in state is an error.
pub(super) fn deregister(
    cx: &mut Apply,
    namespace: &str,
    job_id: &str,
    purge: bool,
    eval: Option<&Evaluation>,
) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    let key = (namespace.to_string(), job_id.to_string());
    let Some(job) = s.jobs.get(&key).cloned() else {
        cx.resp.error = Some(format!(
            "job {job_id:?} not found in namespace {namespace:?}"
        ));
        return;
    };
    if purge {
        purge_job(s, index, &job, cx.events);
    } else {
        let mut job = (*job).clone();
        job.stop = true;
        job.modify_index = index;
        let job = Arc::new(job);
        cx.events.push(Event::job(index, "JobDeregistered", &job));
        s.jobs.insert(key.clone(), job);
    }
    if let Some(eval) = eval {
        upsert_eval(s, index, time, eval.clone(), cx.events);
    }
    touch(s, Table::Jobs, index);
    cx.touched_jobs.push(key);
}

/// Drops a job's oldest versions beyond [`JOB_TRACKED_VERSIONS`], except those an allocation
/// refers to (clients and the scheduler read an allocation's job at its version).
fn prune_job_versions(s: &mut StateSnapshot, namespace: &str, job_id: &str) {
    let versions: Vec<u64> = s
        .job_versions(namespace, job_id)
        .iter()
        .map(|j| j.version)
        .collect(); // newest first
    if versions.len() <= JOB_TRACKED_VERSIONS {
        return;
    }
    let in_use: std::collections::BTreeSet<u64> = s
        .allocs_by_job(namespace, job_id)
        .map(|a| a.job_version)
        .collect();
    for v in &versions[JOB_TRACKED_VERSIONS..] {
        if !in_use.contains(v) {
            s.job_versions
                .remove(&(namespace.to_string(), job_id.to_string(), *v));
        }
    }
}

/// Removes a job and all its versions from state (its allocations and evaluations stay
/// until they are stopped and collected).
pub(super) fn purge_job(
    s: &mut StateSnapshot,
    index: Index,
    job: &Arc<Job>,
    events: &mut Vec<Event>,
) {
    events.push(Event::job(index, "JobDeregistered", job));
    s.jobs.remove(&(job.namespace.clone(), job.id.clone()));
    let versions: Vec<_> = s
        .job_versions
        .keys()
        .filter(|(ns, id, _)| *ns == job.namespace && *id == job.id)
        .cloned()
        .collect();
    for v in versions {
        s.job_versions.remove(&v);
    }
}
