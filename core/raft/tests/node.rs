//! A whole `RaftNode` on disk: restores committed as bounded entries, the refusal of
//! oversized writes, and the modes of every file it creates.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use drover_raft::node::{MAX_ENTRY_BYTES, RESTORE_CHUNK_BYTES, RestoreError};
use drover_raft::{JoinConfig, RaftNode, RaftNodeConfig, WriteError};
use drover_state::{Command, StateSnapshot, StateStore};
use openraft::storage::RaftLogReader;

async fn open(data_dir: &Path) -> RaftNode {
    let node = RaftNode::open(RaftNodeConfig {
        data_dir: data_dir.to_path_buf(),
        advertise_rpc: "127.0.0.1:1".into(),
        name: "s1".into(),
        advertise_http: "127.0.0.1:2".into(),
        join: JoinConfig::default(),
        snapshot_threshold: 100_000,
        trailing_logs: 100_000,
    })
    .await
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !node.is_leader().await {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

fn job(i: usize, pad: usize) -> drover_model::Job {
    let mut j = drover_model::Job::new(format!("job-{i}"), drover_model::JobType::Batch);
    j.groups.push(drover_model::TaskGroup::new(
        "g",
        1,
        drover_model::JobType::Batch,
        vec![drover_model::Task::new("t", "raw_exec")],
    ));
    j.meta.insert("pad".into(), "x".repeat(pad));
    j
}

/// A backup of `jobs` jobs, each about `pad` bytes.
fn backup(jobs: usize, pad: usize) -> StateSnapshot {
    let st = StateStore::new();
    for i in 0..jobs {
        st.apply(
            i as u64 + 1,
            &drover_state::Entry {
                time: 1,
                command: Command::JobRegister {
                    job: Box::new(job(i, pad)),
                    eval: None,
                },
            },
        );
    }
    st.snapshot()
}

/// The tables, without the indexes a restore sets.
fn tables(s: &StateSnapshot) -> String {
    let mut v = serde_json::to_value(s).unwrap();
    for k in ["index", "table_index", "staged_restore"] {
        v.as_object_mut().unwrap().remove(k);
    }
    v.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_commits_bounded_chunks_and_a_swap_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    // About 3 MiB of state: several chunks.
    let state = backup(300, 10_000);
    let want = tables(&state);
    let before = node.store().index();
    let resp = node.restore(state).await.unwrap();
    assert!(resp.index > before);
    assert!(
        tables(&node.store().snapshot()) == want,
        "the restored state differs from the backup"
    );
    let snap = node.store().snapshot();
    for t in [drover_state::Table::Jobs, drover_state::Table::Allocs] {
        assert_eq!(snap.table_index(t), resp.index);
    }

    // What reached the log: bounded chunk entries, then the swap.
    let mut log = node.log().clone();
    let entries = log.try_get_log_entries(0..u64::MAX).await.unwrap();
    let mut chunks = 0;
    let mut swaps = 0;
    for e in &entries {
        let size = serde_json::to_vec(e).unwrap().len();
        assert!(size <= MAX_ENTRY_BYTES, "an entry of {size} bytes");
        if let openraft::EntryPayload::Normal(n) = &e.payload {
            match &n.command {
                Command::RestoreChunk { .. } => {
                    chunks += 1;
                    assert!(
                        size <= 2 * RESTORE_CHUNK_BYTES,
                        "a chunk entry of {size} bytes"
                    );
                }
                Command::RestoreSwap { .. } => swaps += 1,
                Command::Restore { .. } => panic!("a whole-state Restore entry was written"),
                _ => {}
            }
        }
    }
    assert!(chunks >= 3, "{chunks} chunks");
    assert_eq!(swaps, 1);

    // A restart replays the log: the same state.
    node.shutdown().await;
    drop(node);
    let again = open(dir.path()).await;
    assert!(
        tables(&again.store().snapshot()) == want,
        "the state after a restart differs"
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_write_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let before = node.store().index();
    let err = node
        .write(Command::JobRegister {
            job: Box::new(job(0, MAX_ENTRY_BYTES + 1)),
            eval: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, WriteError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("limit of one Raft entry"), "{err}");
    assert_eq!(node.store().index(), before);
    // A backup whose single row is larger than a chunk cannot be restored, and says why.
    let err = node
        .restore(backup(1, RESTORE_CHUNK_BYTES + 1))
        .await
        .unwrap_err();
    assert!(matches!(err, RestoreError::RowTooLarge(_)), "{err}");
    node.shutdown().await;
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_files_are_private_under_umask_000_and_repaired_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("server");
    // The mode comes from open(2)/mkdir(2) itself, not from the umask.
    // SAFETY: umask(2) only swaps the process mask; the old one is restored below.
    let old = unsafe { libc::umask(0) };
    let node = open(&data_dir).await;
    node.write(Command::JobRegister {
        job: Box::new(job(1, 10)),
        eval: None,
    })
    .await
    .unwrap();
    node.raft().trigger().snapshot().await.unwrap();
    let raft = data_dir.join("raft");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !raft.join("snapshot").exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no snapshot was built"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SAFETY: restores the mask saved above.
    unsafe { libc::umask(old) };
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&raft), 0o700);
    assert_eq!(mode(&raft.join("restore")), 0o700);
    assert_eq!(mode(&data_dir.join("server-id")), 0o600);
    for f in ["log", "vote", "snapshot"] {
        assert_eq!(mode(&raft.join(f)), 0o600, "{f}");
    }
    node.shutdown().await;
    drop(node);

    // Files an earlier version left open are repaired when the server starts.
    for f in ["log", "vote", "snapshot"] {
        std::fs::set_permissions(raft.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::set_permissions(&raft, std::fs::Permissions::from_mode(0o755)).unwrap();
    let again = open(&data_dir).await;
    assert_eq!(mode(&raft), 0o700);
    for f in ["log", "vote", "snapshot"] {
        assert_eq!(mode(&raft.join(f)), 0o600, "{f}");
    }
    again.shutdown().await;
}
