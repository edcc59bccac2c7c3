//! Versions across servers: a Raft directory written at commit 580767e opens with today's
//! code, a command some member is too old for is refused, and an entry this server cannot
//! decode stops applying without a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use drover_raft::{JoinConfig, RaftNode, RaftNodeConfig, ServerNode, WriteError};
use drover_state::{Command, Entry, SERVER_VERSION};
use openraft::ChangeMembers;

fn config(data_dir: &Path, rpc: &str) -> RaftNodeConfig {
    RaftNodeConfig {
        data_dir: data_dir.to_path_buf(),
        advertise_rpc: rpc.into(),
        name: "s1".into(),
        advertise_http: "127.0.0.1:2".into(),
        join: JoinConfig::default(),
        snapshot_threshold: 100_000,
        trailing_logs: 100_000,
    }
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn open(data_dir: &Path, rpc: &str) -> RaftNode {
    let node = RaftNode::open(config(data_dir, rpc)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !node.is_leader().await {
        assert!(tokio::time::Instant::now() < deadline, "no leader");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raft_directory_written_at_580767e_opens_with_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/580767e/raft");
    copy_dir(&fixture, &dir.path().join("raft"));
    // The fixture's membership has server 1 at 127.0.0.1:4647.
    std::fs::write(dir.path().join("server-id"), "1").unwrap();
    let node = open(dir.path(), "127.0.0.1:4647").await;
    wait_until("the old log applied", || node.store().index() >= 17).await;
    let s = node.store().snapshot();
    // From the headerless snapshot (index 13) ...
    assert!(s.job("default", "fixture-job").is_some());
    assert!(s.alloc("alloc-1").is_some());
    assert!(s.node("node-1").is_some());
    assert!(s.variable("default", "nomad/jobs/fixture-job").is_some());
    // ... and from the legacy log's entries after it.
    assert!(s.eval("eval-8").is_some());
    assert!(s.variable("default", "a/b").is_some());
    // The log was rewritten in the current format.
    let log = std::fs::read(dir.path().join("raft/log")).unwrap();
    assert!(log.starts_with(drover_raft::log_store::MAGIC));
    // The old membership (no versions) is brought up to this server's version.
    let st = node.status().await;
    assert_eq!(st.voters.len(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while node.status().await.versions.get(&1) != Some(&SERVER_VERSION) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "version not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_a_member_is_too_old_for_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "127.0.0.1:1").await;
    assert_eq!(node.status().await.version, SERVER_VERSION);
    // A server from before versions joins (as a learner: it is not needed for a quorum).
    let old = ServerNode {
        addr: "127.0.0.1:9".into(),
        name: "old".into(),
        version: 1,
    };
    node.raft().add_learner(99, old, false).await.unwrap();
    assert_eq!(node.status().await.versions.get(&99), Some(&1));
    let before = node.store().index();
    let err = node
        .write(Command::RestoreAbort { id: "r".into() })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WriteError::Unsupported { needs: 2, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("RestoreAbort") && msg.contains("server 99 (old) is at version 1"),
        "{msg}"
    );
    // A batch that holds such a command is refused as well; older commands are not.
    let batch = Command::Batch(vec![
        Command::EvalUpsert { evals: vec![] },
        Command::RestoreSwap {
            id: "r".into(),
            chunks: 1,
        },
    ]);
    assert!(matches!(
        node.write(batch).await,
        Err(WriteError::Unsupported { .. })
    ));
    assert_eq!(
        node.store().index(),
        before,
        "a refused command was committed"
    );
    node.write(Command::EvalUpsert { evals: vec![] })
        .await
        .unwrap();
    // Once the old server is gone, the command is accepted.
    node.raft()
        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([99])), false)
        .await
        .unwrap();
    let r = node.write(Command::RestoreAbort { id: "r".into() }).await;
    assert!(!matches!(r, Err(WriteError::Unsupported { .. })), "{r:?}");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_this_server_cannot_decode_stops_applying_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path(), "127.0.0.1:1").await;
    node.write(Command::EvalUpsert { evals: vec![] })
        .await
        .unwrap();
    let applied = node.store().index();
    // As a newer leader would replicate it: a command this version does not know.
    let raw = r#"{"v":9,"time":1,"command":{"JobScale":{"job_id":"x","count":3}}}"#;
    let entry: Entry = serde_json::from_str(raw).unwrap();
    assert!(matches!(entry.command, Command::Unknown(_)));
    let raft = node.raft().clone();
    let write = tokio::spawn(async move { raft.client_write(entry).await });
    wait_until("applying halted", || node.store().halted().is_some()).await;
    let why = node.store().halted().unwrap();
    assert!(
        why.contains("JobScale") && why.contains("encoding version 9"),
        "{why}"
    );
    assert_eq!(
        node.store().index(),
        applied,
        "something past it was applied"
    );
    // The write fails (Raft stopped on this server); nothing panicked.
    let r = tokio::time::timeout(Duration::from_secs(10), write).await;
    assert!(matches!(r, Ok(Ok(Err(_)))), "{r:?}");
    assert!(node.status().await.halted.is_some());
    // The entry is in the log as written (the same JSON value; keys come out sorted).
    let log = std::fs::read(dir.path().join("raft/log")).unwrap();
    let needle = br#"{"JobScale":{"count":3,"job_id":"x"}}"#;
    assert!(log.windows(needle.len()).any(|w| w == needle));
    let _ = node.raft().shutdown().await;
    drop(node);

    // Restarted with the same version, it refuses to start at the same entry: an error
    // naming it, no panic.
    let err = match RaftNode::open(config(dir.path(), "127.0.0.1:1")).await {
        Ok(_) => panic!("a server opened past an entry it cannot apply"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("JobScale") && err.contains("stops applying"),
        "{err}"
    );
}

#[test]
fn members_recorded_without_a_version_are_version_1() {
    let n: ServerNode = serde_json::from_str(r#"{"addr":"a:1","name":"s"}"#).unwrap();
    assert_eq!(n.version, 1);
    let m: BTreeMap<u64, ServerNode> = serde_json::from_str(r#"{"1":{"addr":"a:1"}}"#).unwrap();
    assert_eq!(m[&1].version, 1);
    assert_eq!(ServerNode::new("a:1", "s").version, SERVER_VERSION);
}
