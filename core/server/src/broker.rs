//! The evaluation broker: pending evaluations from the state, handed to workers by priority,
//! at most one in flight per job, with ack/nack and redelivery.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use drover_model::{EvalStatus, Evaluation};
use drover_state::StateSnapshot;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Broker {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    /// (negated priority, create index, id) -> eval: the ready queue.
    queue: BTreeMap<(i64, u64, String), Evaluation>,
    /// Evaluation ids queued or in flight.
    known: BTreeSet<String>,
    /// Jobs with an evaluation in flight: (namespace, job id).
    busy: BTreeSet<(String, String)>,
}

impl Broker {
    /// Adds every pending evaluation of the snapshot the broker does not know yet.
    pub fn enqueue_pending(&self, snap: &StateSnapshot) {
        self.enqueue_all(snap.pending_evals());
    }

    /// Adds the evaluations that are pending and due, unless the broker knows them already.
    pub fn enqueue_all<'a>(&self, evals: impl IntoIterator<Item = &'a Evaluation>) {
        let mut st = self.state.lock().expect("broker lock");
        let mut added = false;
        let now = crate::now_nanos();
        for e in evals {
            if e.status != EvalStatus::Pending || e.wait_until > now {
                continue; // a delayed one comes with the feeder's periodic rescan when due
            }
            if !st.known.contains(&e.id) {
                st.known.insert(e.id.clone());
                st.queue.insert(
                    (-(e.priority as i64), e.create_index, e.id.clone()),
                    e.clone(),
                );
                added = true;
            }
        }
        drop(st);
        if added {
            self.ready.notify_waiters();
            self.ready.notify_one();
        }
    }

    /// The next evaluation whose job has none in flight; waits until there is one.
    pub async fn dequeue(&self) -> Evaluation {
        loop {
            // Registered before the queue is checked, so no wake-up in between is lost.
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut st = self.state.lock().expect("broker lock");
                let key = st
                    .queue
                    .iter()
                    .find(|(_, e)| !st.busy.contains(&(e.namespace.clone(), e.job_id.clone())))
                    .map(|(k, _)| k.clone());
                if let Some(k) = key {
                    let e = st.queue.remove(&k).expect("key present");
                    st.busy.insert((e.namespace.clone(), e.job_id.clone()));
                    return e;
                }
            }
            notified.await;
        }
    }

    /// The evaluation is done (its result committed).
    pub fn ack(&self, e: &Evaluation) {
        let mut st = self.state.lock().expect("broker lock");
        st.busy.remove(&(e.namespace.clone(), e.job_id.clone()));
        st.known.remove(&e.id);
        drop(st);
        self.ready.notify_one();
    }

    /// The evaluation failed to process: forget it, so the next scan redelivers it while it
    /// is still pending in the state.
    pub fn nack(&self, e: &Evaluation) {
        self.ack(e);
    }
}
