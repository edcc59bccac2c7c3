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

/// A file that loses, on a simulated crash, everything not synced. It can also fail a
/// sync with EIO the way Linux does: the dirty pages are dropped (lost even though later
/// syncs succeed) and the error is reported once.
#[derive(Clone, Default)]
struct CrashFile {
    inner: Arc<Mutex<Crash>>,
}

#[derive(Clone, Default)]
struct Crash {
    data: Vec<u8>,
    synced: usize,
    /// Byte ranges whose pages a failed sync dropped.
    lost: Vec<(usize, usize)>,
    /// Which sync (counting from 1) fails; 0: none.
    fail_sync: usize,
    syncs: usize,
    /// Syncs asked for after the failed one.
    syncs_after_failure: usize,
}

impl CrashFile {
    fn failing_sync(n: usize) -> CrashFile {
        let f = CrashFile::default();
        f.inner.lock().unwrap().fail_sync = n;
        f
    }

    fn after_crash(&self) -> CrashFile {
        let g = self.inner.lock().unwrap();
        let mut data = g.data[..g.synced].to_vec();
        for (a, b) in &g.lost {
            let b = (*b).min(data.len());
            if *a < b {
                data[*a..b].fill(0);
            }
        }
        CrashFile {
            inner: Arc::new(Mutex::new(Crash {
                synced: data.len(),
                data,
                ..Crash::default()
            })),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        self.inner.lock().unwrap().data.clone()
    }
}

impl LogFile for CrashFile {
    fn read_all(&mut self) -> io::Result<Vec<u8>> {
        Ok(self.inner.lock().unwrap().data.clone())
    }
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.inner.lock().unwrap().data.extend_from_slice(data);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.syncs += 1;
        if g.fail_sync != 0 && g.syncs > g.fail_sync {
            g.syncs_after_failure += 1;
        }
        if g.syncs == g.fail_sync {
            let range = (g.synced, g.data.len());
            g.lost.push(range);
            g.synced = g.data.len();
            return Err(io::Error::from_raw_os_error(5));
        }
        g.synced = g.data.len();
        Ok(())
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.data.truncate(len as usize);
        g.synced = g.data.len();
        Ok(())
    }
    fn replace(&mut self, data: &[u8]) -> io::Result<()> {
        let mut g = self.inner.lock().unwrap();
        g.data = data.to_vec();
        g.synced = data.len();
        g.lost.clear();
        Ok(())
    }
    fn len(&self) -> u64 {
        self.inner.lock().unwrap().data.len() as u64
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
    let raft = Raft::new(1, config, drover_raft::network::Network::default(), log, sm)
        .await
        .unwrap();
    let mut members = BTreeMap::new();
    members.insert(1u64, drover_raft::ServerNode::new("127.0.0.1:1", ""));
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
        // A record of the earlier format (no magic), torn.
        let mut g = file.inner.lock().unwrap();
        g.data.extend_from_slice(&[7, 0, 0, 0, 1, 2, 3, 4, b'{']);
        g.synced = g.data.len();
    }
    let mut log = LogStore::with_file(dir.path(), Box::new(file.clone())).unwrap();
    assert!(
        log.try_get_log_entries(0..u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        file.bytes(),
        drover_raft::log_store::MAGIC,
        "the torn record was not cut off"
    );
}

/// A single-server Raft over `file`, elected leader.
async fn leader_on(file: CrashFile) -> (tempfile::TempDir, Raft) {
    let dir = tempfile::tempdir().unwrap();
    let log = LogStore::with_file(dir.path(), Box::new(file)).unwrap();
    let sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    let config = Arc::new(
        drover_raft::node::raft_config(10_000, 1000)
            .validate()
            .unwrap(),
    );
    let raft = Raft::new(1, config, drover_raft::network::Network::default(), log, sm)
        .await
        .unwrap();
    let mut members = BTreeMap::new();
    members.insert(1u64, drover_raft::ServerNode::new("127.0.0.1:1", ""));
    raft.initialize(members).await.unwrap();
    raft.wait(None)
        .state(openraft::ServerState::Leader, "leader")
        .await
        .unwrap();
    (dir, raft)
}

/// `n` concurrent job registrations; the indexes of those acknowledged.
async fn write_jobs(raft: &Raft, from: usize, n: usize) -> Vec<u64> {
    let mut tasks = Vec::new();
    for i in from..from + n {
        let r = raft.clone();
        tasks.push(tokio::spawn(async move {
            let w = r.client_write(Entry {
                time: 1,
                command: Command::JobRegister {
                    job: Box::new(job(i)),
                    eval: None,
                },
            });
            match tokio::time::timeout(std::time::Duration::from_secs(3), w).await {
                Ok(Ok(w)) => Some(w.log_id.index),
                _ => None,
            }
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(i) = t.await.unwrap() {
            acked.push(i);
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fsync_stops_the_log_and_loses_no_acknowledged_write() {
    // The 4th sync fails (EIO): its pages are dropped; a retry would "succeed".
    let file = CrashFile::failing_sync(4);
    let (_dir, raft) = leader_on(file.clone()).await;
    let mut acked = Vec::new();
    for round in 0..6 {
        acked.extend(write_jobs(&raft, round * 10, 10).await);
    }
    assert!(
        file.inner.lock().unwrap().syncs >= 4,
        "the failing sync was never reached"
    );
    assert_eq!(
        file.inner.lock().unwrap().syncs_after_failure,
        0,
        "fsync was retried after EIO"
    );
    let survivor = file.after_crash();
    std::mem::forget(raft);

    let dir2 = tempfile::tempdir().unwrap();
    let mut reopened = LogStore::with_file(dir2.path(), Box::new(survivor)).unwrap();
    let present: std::collections::BTreeSet<u64> = reopened
        .try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    for i in &acked {
        assert!(
            present.contains(i),
            "entry {i} was acknowledged but is not durable"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_flipped_length_byte_mid_file_stops_the_server_naming_file_and_offset() {
    let file = CrashFile::default();
    let (_dir, raft) = leader_on(file.clone()).await;
    for round in 0..3 {
        assert_eq!(write_jobs(&raft, round * 5, 5).await.len(), 5);
    }
    let survivor = file.after_crash();
    std::mem::forget(raft);

    // Find a record in the middle of the file and flip one bit of its length.
    let mut bytes = survivor.bytes();
    let magic = drover_raft::log_store::MAGIC.len();
    let mut offsets = Vec::new();
    let mut pos = magic;
    while pos < bytes.len() {
        offsets.push(pos);
        let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        pos += 12 + len;
    }
    assert!(offsets.len() > 4, "too few records: {}", offsets.len());
    let victim = offsets[offsets.len() / 2];
    bytes[victim + 1] ^= 0x01;
    survivor.inner.lock().unwrap().data = bytes.clone();

    let dir2 = tempfile::tempdir().unwrap();
    let err = match LogStore::with_file(dir2.path(), Box::new(survivor.clone())) {
        Ok(_) => panic!("a corrupt log opened (entries after the damage silently dropped)"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        msg.contains(&dir2.path().join("log").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(&format!("offset {victim}")), "{msg}");
    let corrupt = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<drover_raft::log_store::CorruptLog>())
        .expect("a CorruptLog error");
    assert_eq!(corrupt.offset, victim as u64);
    // Nothing was cut: the file is left as it was for the operator to inspect.
    assert_eq!(survivor.bytes(), bytes);
}

// ---- Snapshots are a frozen view ----

fn entry(index: u64) -> openraft::Entry<TypeConfig> {
    let i = index as usize;
    let mut j = job(i % 7);
    j.meta.insert("n".into(), index.to_string());
    let eval = drover_model::Evaluation::new(format!("eval-{index}"), &j, "job-register");
    openraft::Entry {
        log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
        payload: openraft::EntryPayload::Normal(Entry {
            time: index as i64,
            command: Command::JobRegister {
                job: Box::new(j),
                eval: Some(eval),
            },
        }),
    }
}

/// The state after applying exactly entries 1..=upto to an empty store.
fn replay(upto: u64) -> Vec<u8> {
    let store = StateStore::new();
    for i in 1..=upto {
        if let openraft::EntryPayload::Normal(e) = entry(i).payload {
            store.apply(i, &e);
        }
    }
    store.snapshot().to_bytes()
}

const TABLES: [drover_state::Table; 5] = [
    drover_state::Table::Jobs,
    drover_state::Table::Allocs,
    drover_state::Table::Evals,
    drover_state::Table::Nodes,
    drover_state::Table::Variables,
];

fn indexes(store: &StateStore) -> Vec<u64> {
    let s = store.snapshot();
    std::iter::once(s.index())
        .chain(TABLES.iter().map(|t| s.table_index(*t)))
        .collect()
}

/// Applies `from..=to` one by one, checking the store's index and every table index never
/// go backwards.
async fn apply_monotonic(sm: &mut StateMachine, from: u64, to: u64) {
    use openraft::storage::RaftStateMachine;
    let mut before = indexes(sm.store());
    for i in from..=to {
        sm.apply(vec![entry(i)]).await.unwrap();
        let after = indexes(sm.store());
        for (k, (b, a)) in before.iter().zip(&after).enumerate() {
            assert!(
                a >= b,
                "applying entry {i}: index #{k} went backwards from {b} to {a}"
            );
        }
        before = after;
    }
}

#[tokio::test]
async fn a_snapshot_is_the_state_at_its_index_even_while_writes_stream_in() {
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    apply_monotonic(&mut sm, 1, 10).await;
    // openraft asks for a builder, then applies more while the snapshot is built.
    let mut first = sm.get_snapshot_builder().await;
    apply_monotonic(&mut sm, 11, 17).await;
    let mut second = sm.get_snapshot_builder().await;
    apply_monotonic(&mut sm, 18, 25).await;
    // Built out of order: the newer finishes first; the older must not replace it.
    let snap2 = second.build_snapshot().await.unwrap();
    let snap1 = first.build_snapshot().await.unwrap();
    assert_eq!(snap1.meta.last_log_id.unwrap().index, 10);
    assert_eq!(snap2.meta.last_log_id.unwrap().index, 17);

    // A fresh follower installing the first snapshot holds exactly 1..=10.
    for (snap, at) in [(&snap1, 10), (&snap2, 17)] {
        let fdir = tempfile::tempdir().unwrap();
        let mut follower = StateMachine::open(fdir.path(), StateStore::new()).unwrap();
        follower
            .install_snapshot(&snap.meta, Box::new((*snap.snapshot).clone()))
            .await
            .unwrap();
        assert_eq!(follower.store().index(), at);
        assert!(
            follower.store().snapshot().to_bytes() == replay(at),
            "the installed state differs from a replay to index {at}"
        );
        apply_monotonic(&mut follower, at + 1, 25).await;
        assert!(follower.store().snapshot().to_bytes() == replay(25));
    }

    // A restart loads the snapshot on disk: the newer one, holding exactly 1..=17.
    let mut restarted = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    let (applied, _) = restarted.applied_state().await.unwrap();
    assert_eq!(applied.unwrap().index, 17);
    assert_eq!(restarted.store().index(), 17);
    assert!(
        restarted.store().snapshot().to_bytes() == replay(17),
        "the restarted state differs from a replay to index 17"
    );
    // openraft replays the log from 18: nothing is applied twice, no index goes back.
    apply_monotonic(&mut restarted, 18, 25).await;
    assert!(restarted.store().snapshot().to_bytes() == replay(25));
}

#[tokio::test]
async fn a_damaged_snapshot_is_refused_on_install_and_on_open() {
    use openraft::RaftSnapshotBuilder;
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().unwrap();
    let mut sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    apply_monotonic(&mut sm, 1, 5).await;
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let mut bytes = snap.snapshot.into_inner();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;

    let fdir = tempfile::tempdir().unwrap();
    let mut follower = StateMachine::open(fdir.path(), StateStore::new()).unwrap();
    assert!(
        follower
            .install_snapshot(&snap.meta, Box::new(std::io::Cursor::new(bytes.clone())))
            .await
            .is_err()
    );
    assert_eq!(
        follower.store().index(),
        0,
        "a damaged snapshot was installed"
    );

    std::fs::write(dir.path().join("snapshot"), &bytes).unwrap();
    let err = match StateMachine::open(dir.path(), StateStore::new()) {
        Ok(_) => panic!("a damaged snapshot file loaded"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("checksum"), "{err}");
    assert!(
        err.contains(&dir.path().join("snapshot").display().to_string()),
        "{err}"
    );
}

/// The state after applying the log's entries up to `upto` to an empty store.
fn replay_log(entries: &[openraft::Entry<TypeConfig>], upto: u64) -> Vec<u8> {
    let store = StateStore::new();
    for e in entries.iter().filter(|e| e.log_id.index <= upto) {
        match &e.payload {
            openraft::EntryPayload::Normal(n) => {
                store.apply(e.log_id.index, n);
            }
            _ => store.apply_noop(e.log_id.index),
        }
    }
    store.snapshot().to_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_by_openraft_under_streaming_writes_hold_exactly_their_index() {
    use openraft::storage::RaftStateMachine;
    let dir = tempfile::tempdir().unwrap();
    {
        let log = LogStore::open(dir.path()).unwrap();
        let sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
        // A snapshot every 15 entries, built while the writes keep coming; the log keeps
        // everything so the test can replay it.
        let config = Arc::new(
            drover_raft::node::raft_config(15, 10_000)
                .validate()
                .unwrap(),
        );
        let raft = Raft::new(1, config, drover_raft::network::Network::default(), log, sm)
            .await
            .unwrap();
        let mut members = BTreeMap::new();
        members.insert(1u64, drover_raft::ServerNode::new("127.0.0.1:1", ""));
        raft.initialize(members).await.unwrap();
        raft.wait(None)
            .state(openraft::ServerState::Leader, "leader")
            .await
            .unwrap();
        // Four writers that never pause: entries are applied while snapshots are built.
        let mut writers = Vec::new();
        for w in 0..4 {
            let raft = raft.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..40 {
                    let j = w * 1000 + i;
                    raft.client_write(Entry {
                        time: j as i64,
                        command: Command::JobRegister {
                            job: Box::new(job(j)),
                            eval: None,
                        },
                    })
                    .await
                    .expect("write acknowledged");
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        let m = raft.metrics().borrow().clone();
        assert!(m.snapshot.is_some(), "openraft built no snapshot");
        raft.shutdown().await.unwrap();
    }
    // A restart: the snapshot on disk, then the log.
    let mut log = LogStore::open(dir.path()).unwrap();
    let entries = log.try_get_log_entries(0..u64::MAX).await.unwrap();
    let last = entries.last().unwrap().log_id.index;
    let mut sm = StateMachine::open(dir.path(), StateStore::new()).unwrap();
    let (applied, _) = sm.applied_state().await.unwrap();
    let at = applied.expect("a snapshot was loaded").index;
    assert!(at > 0 && at < last, "snapshot at {at}, log up to {last}");
    assert_eq!(sm.store().index(), at);
    assert!(
        sm.store().snapshot().to_bytes() == replay_log(&entries, at),
        "the snapshot's state differs from a replay of the log to its index {at}"
    );
    // openraft replays what follows the snapshot: no index goes back, nothing twice.
    let mut before = indexes(sm.store());
    for e in entries.into_iter().filter(|e| e.log_id.index > at) {
        sm.apply(vec![e]).await.unwrap();
        let after = indexes(sm.store());
        assert!(
            before.iter().zip(&after).all(|(b, a)| a >= b),
            "{before:?} -> {after:?}"
        );
        before = after;
    }
    let all = log.try_get_log_entries(0..u64::MAX).await.unwrap();
    assert!(sm.store().snapshot().to_bytes() == replay_log(&all, last));
}
