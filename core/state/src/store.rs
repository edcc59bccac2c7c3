use std::sync::{Arc, RwLock};
use std::time::Duration;

use drover_model::{Evaluation, Index, NodeStatus};
use tokio::sync::watch;

use crate::{Entry, Event, EventBuffer, Response, StateSnapshot, Table};
// The tests below take these names from here; applying commands lives in `crate::apply`.
#[cfg(test)]
use crate::Command;
#[cfg(test)]
use drover_model::{Allocation, ClientStatus, EvalStatus};

/// The live state store: applied to by the Raft state machine, read through snapshots.
#[derive(Clone)]
pub struct StateStore {
    inner: Arc<RwLock<StateSnapshot>>,
    /// The latest applied index; every apply wakes the watchers.
    changed: watch::Sender<Index>,
    /// The event stream: live subscribers, and recent events for resuming readers.
    events: tokio::sync::broadcast::Sender<Event>,
    recent: Arc<std::sync::Mutex<EventBuffer>>,
    /// Why applying stopped (an entry this server cannot decode), once it has.
    halted: Arc<std::sync::Mutex<Option<String>>>,
}

impl Default for StateStore {
    fn default() -> Self {
        Self::new()
    }
}

impl StateStore {
    pub fn new() -> Self {
        StateStore {
            inner: Arc::default(),
            changed: watch::channel(0).0,
            events: tokio::sync::broadcast::channel(4096).0,
            recent: Arc::new(std::sync::Mutex::new(EventBuffer::new(4096))),
            halted: Arc::default(),
        }
    }

    /// Records that applying stopped at an entry this server cannot apply (written by a
    /// newer server): the server is unhealthy until it is upgraded.
    pub fn halt(&self, reason: String) {
        *self.halted.lock().expect("halt lock") = Some(reason);
    }

    /// Why applying stopped, if it has.
    pub fn halted(&self) -> Option<String> {
        self.halted.lock().expect("halt lock").clone()
    }

    /// A store starting from `snap`, detached from the cluster: for dry runs (`job plan`).
    pub fn from_snapshot(snap: StateSnapshot) -> Self {
        let s = StateStore::new();
        s.restore(snap);
        s
    }

    /// An O(1) consistent view of the state.
    pub fn snapshot(&self) -> StateSnapshot {
        self.inner.read().expect("state lock").clone()
    }

    pub fn index(&self) -> Index {
        self.inner.read().expect("state lock").index
    }

    /// The modify index of `table`, without taking a snapshot (the cheap check of whether
    /// something derived from the table is still current).
    pub fn table_index(&self, table: Table) -> Index {
        self.inner.read().expect("state lock").table_index(table)
    }

    /// Replaces the whole state (installing a Raft snapshot).
    pub fn restore(&self, snap: StateSnapshot) {
        let index = snap.index;
        *self.inner.write().expect("state lock") = snap;
        self.changed.send_replace(index);
    }

    /// Waits until `table`'s modify index exceeds `min_index`, or `wait` elapses.
    /// Returns the snapshot to answer from.
    pub async fn wait_for(&self, table: Table, min_index: Index, wait: Duration) -> StateSnapshot {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let snap = self.snapshot();
            if snap.table_index(table) > min_index {
                return snap;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                _ => return self.snapshot(),
            }
        }
    }

    /// A receiver that changes on every apply.
    pub fn subscribe(&self) -> watch::Receiver<Index> {
        self.changed.subscribe()
    }

    /// Applies one committed entry at `index`. Deterministic: reads no clock, no randomness.
    pub fn apply(&self, index: Index, entry: &Entry) -> Response {
        let mut s = self.inner.write().expect("state lock");
        let mut events = Vec::new();
        let resp = apply(&mut s, index, entry, &mut events);
        s.index = index;
        drop(s);
        {
            let mut recent = self.recent.lock().expect("events lock");
            for e in events {
                recent.push(e.clone());
                let _ = self.events.send(e);
            }
        }
        self.changed.send_replace(index);
        resp
    }

    /// Subscribes to events after `index`: the buffered ones first, then live ones.
    /// Subscribing under the buffer's lock means no event falls between the two.
    pub fn subscribe_events(
        &self,
        index: Index,
    ) -> (Vec<Event>, tokio::sync::broadcast::Receiver<Event>) {
        let recent = self.recent.lock().expect("events lock");
        let rx = self.events.subscribe();
        (recent.since(index), rx)
    }

    /// Records `index` as applied without a state change (membership and blank entries).
    pub fn apply_noop(&self, index: Index) {
        self.inner.write().expect("state lock").index = index;
        self.changed.send_replace(index);
    }
}

/// How many versions of a job are kept (Nomad's `JobTrackedVersions`), besides the versions
/// allocations still run.
pub const JOB_TRACKED_VERSIONS: usize = 6;

fn apply(s: &mut StateSnapshot, index: Index, entry: &Entry, events: &mut Vec<Event>) -> Response {
    crate::apply::apply_command(s, index, entry.time, &entry.command, events)
}

impl StateSnapshot {
    /// Evaluations waiting for a scheduler: highest priority first, then oldest.
    pub fn pending_evals(&self) -> impl Iterator<Item = &Evaluation> {
        self.evals_pending
            .keys()
            .filter_map(|(_, _, id)| self.eval(id))
    }

    /// Nodes that are down: their allocations need replacing.
    pub fn down_nodes(&self) -> impl Iterator<Item = &drover_model::Node> {
        self.nodes().filter(|n| n.status == NodeStatus::Down)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drover_model::{Job, JobType, Task, TaskGroup};

    fn job() -> Job {
        let mut j = Job::new("web", JobType::Service);
        j.groups.push(TaskGroup::new(
            "g",
            1,
            JobType::Service,
            vec![Task::new("t", "raw_exec")],
        ));
        j
    }

    #[test]
    fn register_bumps_version_only_on_change() {
        let st = StateStore::new();
        let e = |c| Entry {
            time: 1,
            command: c,
        };
        let r = st.apply(
            1,
            &e(Command::JobRegister {
                job: Box::new(job()),
                eval: None,
            }),
        );
        assert_eq!(r.job_version, Some(0));
        let r = st.apply(
            2,
            &e(Command::JobRegister {
                job: Box::new(job()),
                eval: None,
            }),
        );
        assert_eq!(r.job_version, Some(0));
        let mut j2 = job();
        j2.groups[0].count = 3;
        let r = st.apply(
            3,
            &e(Command::JobRegister {
                job: Box::new(j2),
                eval: None,
            }),
        );
        assert_eq!(r.job_version, Some(1));
        let snap = st.snapshot();
        assert_eq!(snap.job_versions("default", "web").len(), 2);
        assert_eq!(snap.job("default", "web").unwrap().job_modify_index, 3);
        assert_eq!(snap.table_index(Table::Jobs), 3);
    }

    #[test]
    fn snapshot_round_trips_with_indexes() {
        let st = StateStore::new();
        st.apply(
            1,
            &Entry {
                time: 1,
                command: Command::JobRegister {
                    job: Box::new(job()),
                    eval: None,
                },
            },
        );
        let bytes = st.snapshot().to_bytes();
        let back = StateSnapshot::from_bytes(&bytes).unwrap();
        assert_eq!(back.index(), 1);
        assert!(back.job("default", "web").is_some());
    }

    fn var(path: &str, value: &str) -> drover_model::Variable {
        drover_model::Variable {
            namespace: "default".into(),
            path: path.into(),
            items: [("k".to_string(), value.to_string())].into(),
            ..Default::default()
        }
    }

    fn write(store: &StateStore, index: Index, command: Command) -> Response {
        store.apply(index, &Entry { time: 7, command })
    }

    fn put(store: &StateStore, index: Index, value: &str, cas: Option<Index>) -> Response {
        let var = var("a/b", value);
        write(store, index, Command::VarUpsert { var, cas })
    }

    fn delete(store: &StateStore, index: Index, cas: Option<Index>) -> Response {
        let (namespace, path) = ("default".into(), "a/b".into());
        write(
            store,
            index,
            Command::VarDelete {
                namespace,
                path,
                cas,
            },
        )
    }

    #[test]
    fn variables_check_and_set() {
        let store = StateStore::new();
        // cas 0: only when absent.
        let r = put(&store, 1, "1", Some(0));
        assert!(!r.conflict);
        assert_eq!(r.variable.as_ref().unwrap().modify_index, 1);
        let r = put(&store, 2, "2", Some(0));
        assert!(r.conflict, "a second create with cas=0 conflicts");
        assert_eq!(r.variable.as_ref().unwrap().items["k"], "1");
        // The right index wins; the stale one conflicts and changes nothing.
        assert!(!put(&store, 3, "3", Some(1)).conflict);
        assert!(put(&store, 4, "4", Some(1)).conflict);
        let snap = store.snapshot();
        let v = snap.variable("default", "a/b").unwrap();
        assert_eq!(
            (v.items["k"].as_str(), v.create_index, v.modify_index),
            ("3", 1, 3)
        );
        assert_eq!(snap.table_index(Table::Variables), 3);
        // Delete with a stale index conflicts; without cas it goes.
        assert!(delete(&store, 5, Some(1)).conflict);
        delete(&store, 6, None);
        assert!(store.snapshot().variable("default", "a/b").is_none());
    }

    #[test]
    fn variables_survive_a_snapshot_round_trip() {
        let store = StateStore::new();
        put(&store, 1, "secret", None);
        let bytes = store.snapshot().to_bytes();
        let back = StateSnapshot::from_bytes(&bytes).unwrap();
        assert_eq!(
            back.variable("default", "a/b").unwrap().items["k"],
            "secret"
        );
    }

    #[test]
    fn collect_deletes_only_what_is_still_collectable() {
        let store = StateStore::new();
        write(
            &store,
            1,
            Command::JobRegister {
                job: Box::new(job()),
                eval: None,
            },
        );
        let eval = |id: &str, status| {
            let mut e = drover_model::Evaluation::new(id.into(), &job(), "job-register");
            e.status = status;
            e
        };
        let evals = vec![
            eval("e1", EvalStatus::Pending),
            eval("e2", EvalStatus::Complete),
        ];
        write(&store, 2, Command::EvalUpsert { evals });
        let alloc = |id: &str, client_status| Allocation {
            id: id.into(),
            namespace: "default".into(),
            job_id: "web".into(),
            node_id: "n1".into(),
            eval_id: "e2".into(),
            client_status,
            ..Default::default()
        };
        let plan = crate::PlanResult {
            allocs: vec![
                alloc("a1", ClientStatus::Running),
                alloc("a2", ClientStatus::Complete),
            ],
            ..Default::default()
        };
        write(&store, 3, Command::PlanApply(plan));
        let node = drover_model::Node {
            id: "n1".into(),
            ..Default::default()
        };
        write(&store, 4, Command::NodeRegister { node });
        let job_at = |modify_index| crate::JobAt {
            namespace: "default".into(),
            job_id: "web".into(),
            modify_index,
        };
        let stale_job = job_at(1);
        assert_ne!(
            store.snapshot().job("default", "web").unwrap().modify_index,
            1
        );

        // What changed since the collector looked is left alone: a pending evaluation, a
        // running allocation, a job at another modify index, a node at another one.
        write(
            &store,
            5,
            Command::Collect {
                evals: vec!["e1".into(), "e2".into(), "missing".into()],
                allocs: vec!["a1".into(), "a2".into()],
                jobs: vec![stale_job],
                nodes: vec![crate::NodeAt {
                    node_id: "n1".into(),
                    modify_index: 3,
                }],
            },
        );
        let snap = store.snapshot();
        assert!(snap.eval("e1").is_some() && snap.eval("e2").is_none());
        assert_eq!(snap.pending_evals().count(), 1);
        assert_eq!(snap.evals_by_job("default", "web").count(), 1);
        assert!(snap.alloc("a1").is_some() && snap.alloc("a2").is_none());
        assert_eq!(snap.allocs_by_job("default", "web").count(), 1);
        assert_eq!(snap.allocs_by_node("n1").count(), 1);
        assert!(snap.job("default", "web").is_some() && snap.node("n1").is_some());
        assert_eq!(snap.table_index(Table::Evals), 5);
        assert_eq!(snap.table_index(Table::Allocs), 5);

        // At the indexes it saw, the job (with its versions) and the node go.
        let job_now = job_at(snap.job("default", "web").unwrap().modify_index);
        let nodes = vec![crate::NodeAt {
            node_id: "n1".into(),
            modify_index: 4,
        }];
        let (_, mut events) = store.subscribe_events(u64::MAX);
        write(
            &store,
            6,
            Command::Collect {
                evals: vec![],
                allocs: vec![],
                jobs: vec![job_now],
                nodes,
            },
        );
        let snap = store.snapshot();
        assert!(snap.job("default", "web").is_none() && snap.node("n1").is_none());
        assert!(snap.job_versions("default", "web").is_empty());
        assert_eq!(snap.table_index(Table::Jobs), 6);
        assert_eq!(snap.table_index(Table::Nodes), 6);
        let kinds: Vec<&str> = std::iter::from_fn(|| events.try_recv().ok())
            .map(|e| e.kind)
            .collect();
        assert_eq!(kinds, vec!["JobDeregistered", "NodeDeregistration"]);
    }

    #[test]
    fn entries_written_as_eval_delete_still_read() {
        let old = r#"{"time":1,"command":{"EvalDelete":{"eval_ids":["e1"]}}}"#;
        let entry: Entry = serde_json::from_str(old).unwrap();
        assert_eq!(
            entry.command,
            Command::Collect {
                evals: vec!["e1".into()],
                allocs: vec![],
                jobs: vec![],
                nodes: vec![],
            }
        );
    }

    #[test]
    fn old_job_versions_are_pruned_unless_an_allocation_uses_them() {
        let store = StateStore::new();
        let register = |index: Index, count: u32| {
            let mut j = job();
            j.groups[0].count = count;
            let job = Box::new(j);
            write(&store, index, Command::JobRegister { job, eval: None });
        };
        register(1, 1); // version 0
        let alloc = drover_model::Allocation {
            id: "a0".into(),
            namespace: "default".into(),
            job_id: "web".into(),
            job_version: 0,
            ..Default::default()
        };
        let plan = crate::PlanResult {
            allocs: vec![alloc],
            ..Default::default()
        };
        write(&store, 2, Command::PlanApply(plan));
        for v in 1..10u32 {
            register(2 + v as Index, 1 + v); // versions 1..=9
        }
        let snap = store.snapshot();
        let kept: Vec<u64> = snap
            .job_versions("default", "web")
            .iter()
            .map(|j| j.version)
            .collect();
        // The newest six, and version 0, which allocation a0 still runs.
        assert_eq!(kept, vec![9, 8, 7, 6, 5, 4, 0]);
    }

    /// A state with `n` jobs (and a variable), applied at indexes 1..=n+1.
    fn populated(n: usize) -> StateStore {
        let st = StateStore::new();
        for i in 0..n {
            let mut j = job();
            j.id = format!("job-{i}");
            j.meta.insert("pad".into(), "x".repeat(200));
            write(
                &st,
                i as Index + 1,
                Command::JobRegister {
                    job: Box::new(j),
                    eval: None,
                },
            );
        }
        write(
            &st,
            n as Index + 1,
            Command::VarUpsert {
                var: var("a/b", "1"),
                cas: None,
            },
        );
        st
    }

    fn tables(s: &StateSnapshot) -> String {
        let mut v = serde_json::to_value(s).unwrap();
        v.as_object_mut().unwrap().remove("index");
        v.as_object_mut().unwrap().remove("table_index");
        v.as_object_mut().unwrap().remove("staged_restore");
        // Where the log may hold plaintext: the restore's own entries, not a table.
        v.as_object_mut().unwrap().remove("plaintext_index");
        v.to_string()
    }

    #[test]
    fn a_restore_in_bounded_chunks_swaps_in_the_whole_state_at_once() {
        let backup = populated(40).snapshot();
        let chunks = backup.restore_chunks(2048).unwrap();
        assert!(chunks.len() > 3, "{} chunks", chunks.len());
        for c in &chunks {
            assert!(
                crate::json_size(c) <= 2048 + 200,
                "a chunk of {} bytes",
                crate::json_size(c)
            );
        }
        let st = populated(3);
        let mut index = 10;
        for (seq, rows) in chunks.iter().enumerate() {
            let r = write(
                &st,
                index,
                Command::RestoreChunk {
                    id: "r1".into(),
                    seq: seq as u32,
                    rows: rows.clone(),
                },
            );
            assert_eq!(r.error, None);
            index += 1;
            // Staged rows are invisible until the swap.
            assert_eq!(st.snapshot().jobs().count(), 3);
            // Staging survives a snapshot (a restart or a follower installing one).
            let back = StateSnapshot::from_bytes(&st.snapshot().to_bytes()).unwrap();
            st.restore(back);
        }
        let r = write(
            &st,
            index,
            Command::RestoreSwap {
                id: "r1".into(),
                chunks: chunks.len() as u32,
            },
        );
        assert_eq!(r.error, None);
        let now = st.snapshot();
        assert!(
            tables(&now) == tables(&backup),
            "the swapped-in state differs from the backup"
        );
        assert_eq!(now.index(), index);
        for t in [
            Table::Jobs,
            Table::Allocs,
            Table::Evals,
            Table::Nodes,
            Table::Variables,
        ] {
            assert_eq!(now.table_index(t), index);
        }
    }

    #[test]
    fn a_restore_with_a_missing_or_foreign_chunk_changes_nothing() {
        let backup = populated(20).snapshot();
        let chunks = backup.restore_chunks(2048).unwrap();
        let st = populated(2);
        let before = tables(&st.snapshot());
        let chunk = |id: &str, seq: u32| Command::RestoreChunk {
            id: id.into(),
            seq,
            rows: chunks[seq as usize].clone(),
        };
        assert_eq!(write(&st, 10, chunk("r1", 0)).error, None);
        // Chunk 2 before chunk 1: refused.
        assert!(write(&st, 11, chunk("r1", 2)).error.is_some());
        // A swap with chunks missing: refused, nothing changes.
        let r = write(
            &st,
            12,
            Command::RestoreSwap {
                id: "r1".into(),
                chunks: chunks.len() as u32,
            },
        );
        assert!(r.error.unwrap().contains("1 of its"));
        assert!(
            tables(&st.snapshot()) == before,
            "a refused swap changed the state"
        );
        // Another restore starting drops this one; its swap is refused.
        assert_eq!(write(&st, 13, chunk("r2", 0)).error, None);
        assert!(write(&st, 14, chunk("r1", 1)).error.is_some());
        // Aborting another restore leaves r2 staged; aborting r2 drops it.
        write(&st, 14, Command::RestoreAbort { id: "r1".into() });
        assert!(st.snapshot().staged.is_some());
        write(&st, 14, Command::RestoreAbort { id: "r2".into() });
        assert!(
            st.snapshot().staged.is_none(),
            "an aborted restore stayed staged"
        );
        let r = write(
            &st,
            15,
            Command::RestoreSwap {
                id: "r1".into(),
                chunks: 1,
            },
        );
        assert!(r.error.is_some());
        assert_eq!(st.snapshot().jobs().count(), 2);
    }

    #[test]
    fn a_row_larger_than_a_chunk_is_refused_clearly() {
        let backup = populated(1).snapshot();
        let e = backup.restore_chunks(100).unwrap_err();
        assert_eq!(e.table, "jobs");
        assert!(e.to_string().contains("exceeds the 100-byte limit"), "{e}");
    }
}
