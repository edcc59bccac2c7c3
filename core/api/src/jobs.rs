//! Jobs: list, register, parse, plan, read, deregister, and a job's allocations,
//! evaluations and versions.

use std::collections::{BTreeMap, BTreeSet};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use drover_acl::NsCap;
use drover_api_types as api;
use drover_server::JobPlan;
use drover_state::Table;
use serde::Serialize;

use crate::acl::Caller;
use crate::allocations::alloc_view;
use crate::query::{Params, flag, namespace, ns_matches, prefix_ok, query, with_index};
use crate::{ApiError, ApiState};

pub(crate) async fn list(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let jobs: Vec<api::JobListStub> = snap
        .jobs()
        .filter(|j| ns_matches(&q, &j.namespace) && prefix_ok(&q, &j.id))
        .filter(|j| caller.can(&j.namespace, NsCap::ListJobs))
        .map(api::JobListStub::from_model)
        .collect();
    Ok(with_index(snap.table_index(Table::Jobs), &jobs))
}

fn decode_job(body: &[u8]) -> Result<drover_model::Job, ApiError> {
    api::decode_job(body, false).map_err(|e| ApiError::bad_request(format!("invalid job: {e}")))
}

/// A job from the body whose id must be the one in the path.
fn decode_job_at(body: &[u8], id: &str) -> Result<drover_model::Job, ApiError> {
    let job = decode_job(body)?;
    if job.id != id {
        return Err(ApiError::bad_request(format!(
            "job ID {:?} in the body does not match {id:?} in the path",
            job.id
        )));
    }
    Ok(job)
}

async fn submit(
    st: &ApiState,
    caller: &Caller,
    job: drover_model::Job,
) -> Result<Response, ApiError> {
    // The job's own namespace, which its body may name.
    caller.require(&job.namespace, NsCap::SubmitJob)?;
    // What the HCL path prints for blocks not acted on yet, for API JSON too.
    let warnings = drover_jobspec::model_warnings(&job).join("\n");
    let done = st.server.register_job(job).await?;
    let resp = api::JobRegisterResponse {
        eval_id: done.eval_id,
        eval_create_index: done.eval_create_index,
        job_modify_index: done.job_modify_index,
        warnings,
        index: done.eval_create_index,
    };
    Ok(with_index(resp.index, &resp))
}

pub(crate) async fn register(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    submit(&st, &caller, decode_job(&body)?).await
}

pub(crate) async fn register_at(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    submit(&st, &caller, decode_job_at(&body, &id)?).await
}

pub(crate) async fn parse(body: Bytes) -> Result<Response, ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct ParseReq {
        #[serde(rename = "JobHCL")]
        job_hcl: String,
    }
    let req: ParseReq = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("request body must be {{\"JobHCL\": \"...\"}}: {e}"))
    })?;
    // Parsed here, on the server: no server files (`file()`), no server environment.
    let vars = drover_jobspec::Variables {
        on_server: true,
        ..Default::default()
    };
    let parsed = drover_jobspec::parse_with(&req.job_hcl, "<JobHCL>", &vars)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(axum::Json(&parsed.job).into_response())
}

pub(crate) async fn plan(
    State(st): State<ApiState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let job = decode_job_at(&body, &id)?;
    caller.require(&job.namespace, NsCap::SubmitJob)?;
    let diff = api::job_diff(
        st.server.store().snapshot().job(&job.namespace, &job.id),
        &job,
    );
    let jp = st.server.plan_job(job.clone()).await?;
    let resp = api::JobPlanResponse {
        job_modify_index: jp
            .previous
            .as_ref()
            .map(|j| j.job_modify_index)
            .unwrap_or(0),
        diff: Some(diff),
        annotations: api::PlanAnnotations {
            desired_tg_updates: desired_updates(&job, &jp),
        },
        failed_tg_allocs: jp.plan.failed.clone(),
        warnings: String::new(),
    };
    Ok(with_index(jp.before.index(), &resp))
}

/// What a plan would do to each task group: places, in-place and destructive updates,
/// stops, and allocations it leaves alone.
fn desired_updates(job: &drover_model::Job, jp: &JobPlan) -> BTreeMap<String, api::DesiredUpdates> {
    let mut updates: BTreeMap<String, api::DesiredUpdates> = BTreeMap::new();
    for g in &job.groups {
        updates.insert(g.name.clone(), api::DesiredUpdates::default());
    }
    let replaced: BTreeSet<&str> = jp
        .plan
        .allocs
        .iter()
        .map(|a| a.previous_allocation.as_str())
        .filter(|p| !p.is_empty())
        .collect();
    let touched: BTreeSet<&str> = jp
        .plan
        .allocs
        .iter()
        .map(|a| a.id.as_str())
        .chain(jp.plan.stops.iter().map(|s| s.alloc_id.as_str()))
        .collect();
    for a in &jp.plan.allocs {
        let u = updates.entry(a.task_group.clone()).or_default();
        if jp.before.alloc(&a.id).is_some() {
            u.in_place_update += 1;
        } else if !a.previous_allocation.is_empty() {
            u.destructive_update += 1;
        } else {
            u.place += 1;
        }
    }
    for s in &jp.plan.stops {
        if let Some(a) = jp.before.alloc(&s.alloc_id)
            && !replaced.contains(a.id.as_str())
        {
            updates.entry(a.task_group.clone()).or_default().stop += 1;
        }
    }
    for a in jp
        .before
        .allocs_by_job(&job.namespace, &job.id)
        .filter(|a| a.is_active() && !touched.contains(a.id.as_str()))
    {
        updates.entry(a.task_group.clone()).or_default().ignore += 1;
    }
    updates
}

pub(crate) async fn read(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let job = snap
        .job(&namespace(&q), &id)
        .ok_or_else(|| ApiError::not_found("job not found"))?;
    Ok(with_index(job.modify_index, &job))
}

pub(crate) async fn deregister(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let purge = q
        .get("purge")
        .is_some_and(|p| p.eq_ignore_ascii_case("true") || p == "1");
    let (eval_id, index) = st.server.deregister_job(&namespace(&q), &id, purge).await?;
    let resp = api::JobDeregisterResponse {
        eval_id,
        eval_create_index: index,
        job_modify_index: index,
        index,
    };
    Ok(with_index(index, &resp))
}

pub(crate) async fn allocations(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Allocs).await?;
    let v: Vec<api::Allocation> = snap
        .allocs_by_job(&namespace(&q), &id)
        .map(|a| alloc_view(&snap, a, false))
        .collect();
    Ok(with_index(snap.table_index(Table::Allocs), &v))
}

pub(crate) async fn evaluations(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Evals).await?;
    let v: Vec<api::Evaluation> = snap.evals_by_job(&namespace(&q), &id).cloned().collect();
    Ok(with_index(snap.table_index(Table::Evals), &v))
}

pub(crate) async fn versions(
    State(st): State<ApiState>,
    Path(id): Path<String>,
    Query(q): Params,
) -> Result<Response, ApiError> {
    let snap = query(&st, &q, Table::Jobs).await?;
    let versions: Vec<api::Job> = snap
        .job_versions(&namespace(&q), &id)
        .into_iter()
        .cloned()
        .collect();
    if versions.is_empty() {
        return Err(ApiError::not_found("job not found"));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Versions {
        versions: Vec<api::Job>,
        diffs: Option<Vec<api::JobDiff>>,
    }
    // `?diffs=true`: each version against the one before it (Nomad's shape: newest first,
    // one diff fewer than versions).
    let diffs = flag(&q, "diffs").then(|| {
        let mut sorted: Vec<&api::Job> = versions.iter().collect();
        sorted.sort_by_key(|j| std::cmp::Reverse(j.version));
        sorted
            .windows(2)
            .map(|w| api::job_diff(Some(w[1]), w[0]))
            .collect()
    });
    Ok(with_index(
        snap.table_index(Table::Jobs),
        &Versions { versions, diffs },
    ))
}
