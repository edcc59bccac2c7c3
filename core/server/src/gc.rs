//! The leader's garbage collection of finished evaluations (Nomad's eval GC): an evaluation
//! that is complete, failed or canceled, last changed longer than `eval_gc_threshold` ago,
//! and that no allocation still names, is deleted through Raft. Without it the evaluations
//! table (and every snapshot) grows with each registration, forever.

use std::time::Duration;

use drover_state::{Command, StateSnapshot};

use crate::Server;

/// Most evaluations one delete entry carries.
const BATCH: usize = 1024;

/// The finished evaluations older than `threshold` (at `now`, Unix nanoseconds) that no
/// allocation refers to.
pub(crate) fn collectable(snap: &StateSnapshot, now: i64, threshold: Duration) -> Vec<String> {
    let cutoff = now.saturating_sub(threshold.as_nanos().min(i64::MAX as u128) as i64);
    snap.evals()
        .filter(|e| e.status.is_terminal() && e.modify_time < cutoff)
        .filter(|e| {
            !snap
                .allocs_by_job(&e.namespace, &e.job_id)
                .any(|a| a.eval_id == e.id)
        })
        .map(|e| e.id.clone())
        .collect()
}

/// Runs while this server leads: a pass every `threshold / 2` (at most every 5 minutes).
pub(crate) async fn run(server: Server) {
    let threshold = server.config().eval_gc_threshold;
    let every = (threshold / 2).clamp(Duration::from_millis(500), Duration::from_secs(300));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ids = collectable(&server.store().snapshot(), crate::now_nanos(), threshold);
        for chunk in ids.chunks(BATCH) {
            let eval_ids = chunk.to_vec();
            match server.raft().write(Command::EvalDelete { eval_ids }).await {
                Ok(_) => tracing::debug!(count = chunk.len(), "deleted finished evaluations"),
                Err(e) => {
                    tracing::warn!(error = %e, "evaluation garbage collection failed");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{Allocation, EvalStatus, Evaluation, Job, JobType, Task, TaskGroup};
    use drover_state::{Entry, PlanResult, StateStore};

    fn eval(id: &str, job: &Job, status: EvalStatus) -> Evaluation {
        let mut e = Evaluation::new(id.into(), job, "job-register");
        e.status = status;
        e
    }

    #[test]
    fn only_old_finished_unreferenced_evaluations_are_collected() {
        let mut job = Job::new("web", JobType::Service);
        job.groups.push(TaskGroup::new(
            "g",
            1,
            JobType::Service,
            vec![Task::new("t", "raw_exec")],
        ));
        let store = StateStore::new();
        let evals = vec![
            eval("old-done", &job, EvalStatus::Complete),
            eval("old-failed", &job, EvalStatus::Failed),
            eval("old-pending", &job, EvalStatus::Pending),
            eval("old-blocked", &job, EvalStatus::Blocked),
            eval("old-placed", &job, EvalStatus::Complete),
        ];
        store.apply(
            1,
            &Entry {
                time: 1_000,
                command: Command::EvalUpsert { evals },
            },
        );
        let alloc = Allocation {
            id: "a1".into(),
            namespace: job.namespace.clone(),
            job_id: job.id.clone(),
            eval_id: "old-placed".into(),
            ..Default::default()
        };
        let plan = PlanResult {
            allocs: vec![alloc],
            ..Default::default()
        };
        store.apply(
            2,
            &Entry {
                time: 1_000,
                command: Command::PlanApply(plan),
            },
        );
        let young = vec![eval("young-done", &job, EvalStatus::Complete)];
        store.apply(
            3,
            &Entry {
                time: 9_000,
                command: Command::EvalUpsert { evals: young },
            },
        );

        let mut ids = collectable(&store.snapshot(), 10_000, Duration::from_nanos(5_000));
        ids.sort();
        assert_eq!(ids, vec!["old-done".to_string(), "old-failed".to_string()]);
    }
}
