//! The durable log and state machine: openraft's own storage test suite, and a crash test
//! whose file double forgets every byte not covered by a completed fdatasync.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use drover_raft::io::LogFile;
use drover_raft::log_store::LogStore;
use drover_raft::state_machine::StateMachine;
use drover_raft::{Raft, TypeConfig};
use drover_state::{Command, Entry, StateStore};
use openraft::storage::RaftLogReader;
use openraft::testing::{StoreBuilder, Suite};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

/// A file that loses, on a simulated crash, everything not synced.
#[derive(Clone, Default)]
struct CrashFile {
    inner: Arc<Mutex<(Vec<u8>, usize)>>,
}

impl CrashFile {
    fn after_crash(&self) -> CrashFile {
        let (data, synced) = self.inner.lock().unwrap().clone();
        CrashFile {
            inner: Arc::new(Mutex::new((data[..synced].to_vec(), synced))),
        }
    }
}

impl LogFile for CrashFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.inner.lock().unwrap().0.clone())
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.lock().unwrap().0.extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.1 = g.0.len();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.0.truncate(len as usize);
        g.1 = g.0.len();
        Ok(())
    }
    fn replace(&mut self, data: &[u8]) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.0 = data.to_vec();
        g.1 = data.len();
        Ok(())
    }
    fn len(&self) -> u64 {
        self.inner.lock().unwrap().0.len() as u64
    }
}

fn job(i: usize) -> drover_model::Job {
    let mut j = drover_model::Job::new(format!("job-{i}"), drover_model::JobType::Batch);
    j.groups.push(drover_model::TaskGroup::new(
        "g",
        1,
        drover_model::JobType::Batch,
        vec![drover_model::Task::new("t", "raw_exec")],
    ));
    j
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let file = CrashFile::default();
    let log = LogStore::with_file(dir.path(), Box::new(file.clone())).unwrap();
    let sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    let config = Arc::new(
        drover_raft::node::raft_config(10_000, 1000)
            .validate()
            .unwrap(),
    );
    let raft = Raft::new(1, config, drover_raft::network::Network, log, sm)
        .await
        .unwrap();
    let mut members = BTreeMap::new();
    members.insert(
        1u64,
        drover_raft::ServerNode {
            name: String::new(),
            addr: "127.0.0.1:1".into(),
        },
    );
    raft.initialize(members).await.unwrap();
    raft.wait(None)
        .state(openraft::ServerState::Leader, "leader")
        .await
        .unwrap();

    // Concurrent writes, so the I/O thread groups them.
    let mut acked = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let r = raft.clone();
        tasks.push(tokio::spawn(async move {
            r.client_write(Entry {
                time: 1,
                command: Command::JobRegister {
                    job: Box::new(job(i)),
                    eval: None,
                },
            })
            .await
            .map(|w| w.log_id.index)
        }));
    }
    for t in tasks {
        acked.push(t.await.unwrap().expect("write acknowledged"));
    }
    // Crash: nothing but synced bytes survives; the process never shuts Raft down.
    let survivor = file.after_crash();
    std::mem::forget(raft);

    let dir2 = tempfile::tempdir().unwrap();
    let mut reopened = LogStore::with_file(dir2.path(), Box::new(survivor)).unwrap();
    let entries = reopened.try_get_log_entries(0..u64::MAX).await.unwrap();
    let present: std::collections::BTreeSet<u64> = entries.iter().map(|e| e.log_id.index).collect();
    for i in &acked {
        assert!(
            present.contains(i),
            "acknowledged entry {i} was lost in the crash"
        );
    }
    let jobs = entries
        .iter()
        .filter(|e| {
            matches!(
                &e.payload,
                openraft::EntryPayload::Normal(Entry {
                    command: Command::JobRegister { .. },
                    ..
                })
            )
        })
        .count();
    assert_eq!(jobs, 40);
}

#[tokio::test]
async fn torn_tail_is_dropped_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let file = CrashFile::default();
    {
        let mut g = file.inner.lock().unwrap();
        g.0.extend_from_slice(&[7, 0, 0, 0, 1, 2, 3, 4, b'{']);
        g.1 = g.0.len();
    }
    let mut log = LogStore::with_file(dir.path(), Box::new(file.clone())).unwrap();
    assert!(
        log.try_get_log_entries(0..u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        file.inner.lock().unwrap().0.len(),
        0,
        "the torn record was not cut off"
    );
}
