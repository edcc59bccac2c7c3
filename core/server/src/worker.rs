//! The scheduler worker: dequeue an evaluation, compute a plan on a fresh snapshot, submit it
//! to the plan applier, retry on a refused plan after refreshing to the index it names.

use std::time::Duration;

use drover_model::EvalStatus;
use drover_scheduler::{finished_eval, schedule};
use drover_state::{Command, Table};
use tracing::Instrument;

use crate::Server;
use crate::broker::Broker;
use crate::plan_apply::{PlanOutcome, apply_plan};

const MAX_PLAN_ATTEMPTS: u32 = 5;

pub async fn run(server: Server, broker: std::sync::Arc<Broker>) {
    loop {
        let eval = broker.dequeue().await;
        wait_while_paused(&server).await;
        let span = tracing::info_span!("eval", eval_id = %eval.id, job_id = %eval.job_id);
        let ok = process(&server, &eval).instrument(span).await;
        if ok {
            broker.ack(&eval);
        } else {
            broker.nack(&eval);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// Holds the evaluation while the scheduler configuration pauses the broker
/// (`PauseEvalBroker`): nothing is scheduled until it is unset.
async fn wait_while_paused(server: &Server) {
    let store = server.store();
    let mut changed = store.subscribe();
    let mut logged = false;
    while server.scheduler_config(&store.snapshot()).pause_eval_broker {
        if !logged {
            tracing::info!("the eval broker is paused by the scheduler configuration");
            logged = true;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), changed.changed()).await;
    }
}

async fn process(server: &Server, eval: &drover_model::Evaluation) -> bool {
    let store = server.store();
    let mut min_index = eval.modify_index;
    for attempt in 1..=MAX_PLAN_ATTEMPTS {
        let snap = store
            .wait_for(
                Table::Evals,
                min_index.saturating_sub(1),
                Duration::from_secs(5),
            )
            .await;
        let Some(current) = snap.eval(&eval.id).cloned() else {
            return true;
        };
        if current.status != EvalStatus::Pending {
            return true;
        }
        let opts = server.scheduler_options(&snap);
        // The scheduler is CPU work: it runs on the blocking pool, never on the runtime.
        let scheduled = {
            let (snap, current) = (snap.clone(), current.clone());
            tokio::task::spawn_blocking(move || schedule(&snap, &current, &opts)).await
        };
        let scheduled = match scheduled {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "the scheduler panicked");
                return false;
            }
        };
        let plan = match scheduled {
            Ok(p) => p,
            Err(e) => {
                let mut failed = current.clone();
                failed.status = EvalStatus::Failed;
                failed.status_description = e.to_string();
                return server
                    .raft()
                    .write(Command::EvalUpsert {
                        evals: vec![failed],
                    })
                    .await
                    .is_ok();
            }
        };
        tracing::debug!(
            attempt,
            placements = plan.allocs.len(),
            stops = plan.stops.len(),
            "plan computed"
        );
        let done = finished_eval(&current, &plan);
        match apply_plan(server, plan, done).await {
            PlanOutcome::Committed => return true,
            PlanOutcome::Refused { refresh_index } => {
                tracing::info!(
                    attempt,
                    refresh_index,
                    "plan refused: refreshing and retrying"
                );
                min_index = refresh_index;
            }
            PlanOutcome::Error(e) => {
                tracing::warn!(error = %e, "committing plan failed");
                return false;
            }
        }
    }
    // The plan kept losing races: fail this evaluation and follow it up a little later.
    let mut failed = eval.clone();
    failed.status = EvalStatus::Failed;
    failed.status_description =
        format!("plan refused {MAX_PLAN_ATTEMPTS} times: the cluster changed under it");
    let mut follow = drover_model::Evaluation {
        id: crate::new_id(),
        previous_eval: eval.id.clone(),
        triggered_by: "failed-follow-up".into(),
        ..eval.clone()
    };
    follow.status = EvalStatus::Pending;
    follow.wait_until = crate::now_nanos() + FOLLOW_UP_DELAY.as_nanos() as i64;
    server
        .raft()
        .write(Command::EvalUpsert {
            evals: vec![failed, follow],
        })
        .await
        .is_ok()
}

/// How long a failed evaluation's follow-up waits.
const FOLLOW_UP_DELAY: Duration = Duration::from_secs(5);
