//! Creating and updating evaluations.

use drover_model::Evaluation;

use super::{Apply, upsert_eval};

/// Creates or updates each evaluation, in order.
pub(super) fn upsert_all(cx: &mut Apply, evals: &[Evaluation]) {
    let (s, index, time) = (&mut *cx.s, cx.index, cx.time);
    for e in evals {
        cx.touched_jobs
            .push((e.namespace.clone(), e.job_id.clone()));
        upsert_eval(s, index, time, e.clone(), cx.events);
    }
}
