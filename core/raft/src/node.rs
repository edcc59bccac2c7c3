//! One server's Raft: storage opened from the data dir, the openraft instance, and writes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drover_state::{Command, Entry, Response, StateStore};
use openraft::ServerState;
use openraft::error::{ClientWriteError, RaftError};

use crate::ServerNode;
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::cluster::{JoinConfig, Peers, Route};
use crate::log_store::LogStore;
use crate::network::Network;
use crate::state_machine::StateMachine;
use crate::{NodeId, Raft};

#[derive(Debug, Clone)]
pub struct RaftNodeConfig {
    /// The agent's data dir; Raft keeps its files in `<data_dir>/raft`.
    pub data_dir: PathBuf,
    /// The address other servers reach this one's RPC port at.
    pub advertise_rpc: String,
    /// The server's name (shown by `server members`).
    pub name: String,
    /// The server's HTTP API address (`host:port`): followers send node-bound requests
    /// (`alloc logs`, `exec`, ...) to the leader's, which holds the clients' streams.
    pub advertise_http: String,
    /// How the server forms or joins a cluster (`bootstrap_expect`, `retry_join`).
    pub join: JoinConfig,
    /// Entries between snapshots (Nomad's `raft_snapshot_threshold`).
    pub snapshot_threshold: u64,
    /// Entries kept in the log behind a snapshot (Nomad's `raft_trailing_logs`).
    pub trailing_logs: u64,
}

impl RaftNodeConfig {
    pub const DEFAULT_SNAPSHOT_THRESHOLD: u64 = 8192;
    pub const DEFAULT_TRAILING_LOGS: u64 = 10_240;
}

#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
pub enum WriteError {
    #[error("this server is not the leader; the leader is server {id} at {addr}")]
    NotLeader { id: NodeId, addr: String },
    #[error("no cluster leader: {0}")]
    NoLeader(String),
    #[error("raft: {0}")]
    Raft(String),
    /// The state machine refused the command.
    #[error("{0}")]
    Rejected(String),
    /// The command is larger than one Raft entry may be.
    #[error(
        "the write is {bytes} bytes, above the {max}-byte limit of one Raft entry; it was not committed"
    )]
    TooLarge { bytes: usize, max: usize },
    /// A server of the cluster is too old to apply the command (`Command::min_version`).
    #[error(
        "{command} needs every server at version {needs} or later, but {lacking}; upgrade those servers first (it was not committed)"
    )]
    Unsupported {
        command: String,
        needs: u32,
        lacking: String,
    },
}

/// The largest command one Raft entry carries (serialized). Entries above it could not be
/// replicated in one message, so they are refused before they reach the log.
pub const MAX_ENTRY_BYTES: usize = 16 << 20;

/// The command's serialized size, or `TooLarge`.
fn entry_size(command: &Command) -> Result<usize, WriteError> {
    let bytes = drover_state::json_size(command);
    if bytes > MAX_ENTRY_BYTES {
        return Err(WriteError::TooLarge {
            bytes,
            max: MAX_ENTRY_BYTES,
        });
    }
    Ok(bytes)
}

/// The size of the rows one restore chunk carries.
pub const RESTORE_CHUNK_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open raft storage in {path}: {source}")]
    Storage {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start raft: {0}")]
    Raft(String),
}

/// A running Raft member.
#[derive(Clone)]
pub struct RaftNode {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft,
    writes: mpsc::Sender<Pending>,
    pub(crate) store: StateStore,
    pub(crate) log: LogStore,
    pub(crate) advertise_rpc: Arc<str>,
    pub(crate) advertise_http: Arc<str>,
    pub(crate) name: Arc<str>,
    pub(crate) peers: Peers,
    /// When this server, as leader, last heard from a quorum: (term, time).
    quorum_contact: Arc<Mutex<Option<(u64, Instant)>>>,
    /// `<raft dir>/restore`: where uploaded backups are staged (0700, emptied at start).
    staging_dir: Arc<std::path::Path>,
    /// When this server last accepted an AppendEntries (a leader's heartbeat or entries).
    pub(crate) leader_contact: Arc<Mutex<Option<Instant>>>,
}

/// A Raft member's role and progress as its metrics show them (`/v1/agent/self`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftStats {
    /// Raft runs (it has not stopped on a fatal error).
    pub running: bool,
    /// Leader, Follower, Candidate, Learner or Shutdown.
    pub state: String,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
}

/// Why a restore was not committed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the backup cannot be restored: {0}")]
    RowTooLarge(#[from] drover_state::RowTooLarge),
    #[error(
        "restore {id}: committing chunk {seq} of {chunks} failed (the state is unchanged): {source}"
    )]
    Chunk {
        id: String,
        seq: u32,
        chunks: u32,
        source: WriteError,
    },
    #[error("restore {id}: the final swap failed: {source}")]
    Swap { id: String, source: WriteError },
    #[error("restore: {0}")]
    Internal(String),
}

impl RestoreError {
    /// The write error behind it, if any.
    pub fn write_error(&self) -> Option<&WriteError> {
        match self {
            RestoreError::Chunk { source, .. } | RestoreError::Swap { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A leader that has not heard from a quorum for this long answers writes with
/// "no cluster leader" instead of letting them hang.
const QUORUM_SILENCE: Duration = Duration::from_secs(3);

/// Drover's Raft timings. The leader sends heartbeats every 250 ms. A follower that knew a
/// leader starts an election only after the leader lease (`election_timeout_max`, 900 ms)
/// plus a random election timeout (450–900 ms) without hearing from it: 1.35–1.8 s of
/// silence, i.e. at least 5 lost heartbeats, so a loaded 2-core machine does not see
/// spurious elections, while a dead leader is replaced in under 2 s.
pub const HEARTBEAT_MS: u64 = 250;
pub const ELECTION_TIMEOUT_MIN_MS: u64 = 450;
pub const ELECTION_TIMEOUT_MAX_MS: u64 = 900;

pub fn raft_config(snapshot_threshold: u64, trailing_logs: u64) -> openraft::Config {
    openraft::Config {
        cluster_name: "drover".into(),
        heartbeat_interval: HEARTBEAT_MS,
        election_timeout_min: ELECTION_TIMEOUT_MIN_MS,
        election_timeout_max: ELECTION_TIMEOUT_MAX_MS,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(snapshot_threshold),
        max_in_snapshot_log_to_keep: trailing_logs,
        ..Default::default()
    }
}

/// The server's stable id: generated once, kept in `<data_dir>/server-id`, never derived from
/// an address.
fn server_id(data_dir: &std::path::Path) -> std::io::Result<NodeId> {
    let path = data_dir.join("server-id");
    match std::fs::read_to_string(&path) {
        Ok(s) => s
            .trim()
            .parse()
            .map_err(|e| std::io::Error::other(format!("{} is corrupt: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: NodeId = rand_id();
            crate::io::write_atomic(&path, id.to_string().as_bytes())?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// The server's directories are private (0700) and every file in them 0600: created so,
/// and repaired when an earlier version (or a loose umask) left them open.
fn prepare_dirs(data_dir: &std::path::Path, raft_dir: &std::path::Path) -> std::io::Result<()> {
    use crate::io::{DIR_MODE, ensure_dir, repair_files};
    ensure_dir(data_dir, DIR_MODE)?;
    ensure_dir(raft_dir, DIR_MODE)?;
    repair_files(data_dir)?;
    repair_files(raft_dir)?;
    let staging = raft_dir.join("restore");
    if staging.exists() {
        // Uploads a crash interrupted.
        std::fs::remove_dir_all(&staging)?;
    }
    ensure_dir(&staging, DIR_MODE)
}

fn rand_id() -> NodeId {
    // Keep ids positive and readable; 0 is avoided.
    (rand::random::<u64>() >> 12).max(1)
}

impl RaftNode {
    /// Opens the member; it dials other servers in plaintext.
    pub async fn open(cfg: RaftNodeConfig) -> Result<Self, OpenError> {
        Self::open_with_dialer(cfg, drover_tls::Dialer::plaintext()).await
    }

    /// Opens the member; it dials other servers through `dialer` (TLS with this server's
    /// certificate when `tls { rpc = true }`).
    pub async fn open_with_dialer(
        cfg: RaftNodeConfig,
        dialer: drover_tls::Dialer,
    ) -> Result<Self, OpenError> {
        let dir = cfg.data_dir.join("raft");
        let storage = |source| OpenError::Storage {
            path: dir.clone(),
            source,
        };
        let store = StateStore::new();
        let (id, log, sm) = {
            let (data_dir, dir, store) = (cfg.data_dir.clone(), dir.clone(), store.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<_> {
                prepare_dirs(&data_dir, &dir)?;
                let id = server_id(&data_dir)?;
                let log = LogStore::open(&dir)?;
                let sm = StateMachine::open(&dir, store)?;
                Ok((id, log, sm))
            })
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?
            .map_err(storage)?
        };
        let config = Arc::new(
            raft_config(cfg.snapshot_threshold, cfg.trailing_logs)
                .validate()
                .map_err(|e| OpenError::Raft(e.to_string()))?,
        );
        let network = Network {
            dialer: dialer.clone(),
        };
        let raft = Raft::new(id, config, network, log.clone(), sm)
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| OpenError::Raft(e.to_string()))?;
        if !initialized && cfg.join.bootstrap_expect == 1 && cfg.join.retry_join.is_empty() {
            let mut members = BTreeMap::new();
            members.insert(
                id,
                ServerNode::new(cfg.advertise_rpc.clone(), cfg.name.clone()),
            );
            raft.initialize(members)
                .await
                .map_err(|e| OpenError::Raft(e.to_string()))?;
            tracing::info!(server_id = id, "bootstrapped a new single-server cluster");
        }
        let writes = batcher(raft.clone());
        let node = RaftNode {
            id,
            raft,
            writes,
            store,
            log,
            advertise_rpc: cfg.advertise_rpc.into(),
            advertise_http: cfg.advertise_http.into(),
            name: cfg.name.into(),
            peers: Peers::new(dialer),
            quorum_contact: Arc::default(),
            staging_dir: dir.join("restore").into(),
            leader_contact: Arc::default(),
        };
        tokio::spawn(crate::cluster::converge(node.clone(), cfg.join));
        tokio::spawn(watch_quorum(node.clone()));
        Ok(node)
    }

    /// This server's stable id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The openraft handle (metrics, triggers, membership changes).
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state store the committed entries are applied to.
    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// The Raft log on disk (its counters, for benchmarks and tests).
    pub fn log(&self) -> &LogStore {
        &self.log
    }

    /// This server's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RPC address other servers and clients reach this one at.
    pub fn advertise_rpc(&self) -> &str {
        &self.advertise_rpc
    }

    /// The HTTP API address this server advertises.
    pub fn advertise_http(&self) -> &str {
        &self.advertise_http
    }

    /// What the Raft metrics say now: role, term, log and applied indexes.
    pub fn raft_stats(&self) -> RaftStats {
        let m = self.raft.metrics().borrow().clone();
        RaftStats {
            running: m.running_state.is_ok(),
            state: format!("{:?}", m.state),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
        }
    }

    /// How long ago this server last heard from a leader (Nomad's `X-Nomad-LastContact`): 0
    /// on the leader itself, None on a server that never heard from one.
    pub fn last_contact_ms(&self) -> Option<u64> {
        if self.raft.metrics().borrow().state == ServerState::Leader {
            return Some(0);
        }
        let at = *self.leader_contact.lock().expect("contact lock");
        at.map(|t| t.elapsed().as_millis() as u64)
    }

    /// How long this leader has gone without hearing from a quorum, when that is longer than
    /// [`QUORUM_SILENCE`].
    pub(crate) fn quorum_silence_ms(&self) -> Option<u64> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader
            || m.membership_config.membership().voter_ids().count() < 2
        {
            return None;
        }
        let contact = *self.quorum_contact.lock().expect("quorum lock");
        match contact {
            Some((term, at)) if term == m.current_term && at.elapsed() > QUORUM_SILENCE => {
                Some(at.elapsed().as_millis() as u64)
            }
            _ => None,
        }
    }

    /// Commits `command` here; this server must be the leader.
    pub(crate) async fn write_here(&self, command: Command) -> Result<Response, WriteError> {
        if let Route::Forward(l, addr) = self.route()? {
            return Err(WriteError::NotLeader { id: l, addr });
        }
        self.write_local(command).await
    }

    async fn write_local(&self, command: Command) -> Result<Response, WriteError> {
        let size = entry_size(&command)?;
        self.check_versions(&command)?;
        let (reply, rx) = oneshot::channel();
        self.writes
            .send(Pending {
                command,
                size,
                reply,
            })
            .await
            .map_err(|_| WriteError::Raft("raft is shut down".into()))?;
        match tokio::time::timeout(WRITE_TIMEOUT, rx).await {
            Ok(r) => r.map_err(|_| WriteError::Raft("raft is shut down".into()))?,
            Err(_) => Err(WriteError::NoLeader(format!(
                "the write was not committed within {} s: this server may have lost contact with a quorum; its outcome is unknown",
                WRITE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Commits `command` through Raft, stamped with this (leader) server's clock. Concurrent
    /// writes are batched into one entry (see [`batcher`]).
    /// A follower forwards the write to the leader.
    pub async fn write(&self, command: Command) -> Result<Response, WriteError> {
        // Refused here too, so a follower never forwards what the leader must refuse.
        entry_size(&command)?;
        let resp = match self.route()? {
            Route::Local => match self.write_local(command.clone()).await {
                // Leadership moved while the write waited.
                Err(WriteError::NotLeader { addr, .. }) => self.forward(&addr, command).await,
                r => r,
            },
            Route::Forward(_, addr) => match self.forward(&addr, command.clone()).await {
                // The leader changed between our look and its answer: one more hop.
                Err(WriteError::NotLeader { addr, .. }) => self.forward(&addr, command).await,
                r => r,
            },
        }?;
        match resp.error {
            Some(e) => Err(WriteError::Rejected(e)),
            None => Ok(resp),
        }
    }

    /// A fresh path in the restore staging directory (0700) for an uploaded backup.
    pub fn restore_staging_path(&self) -> PathBuf {
        self.staging_dir
            .join(format!("upload-{:016x}.json", rand_id()))
    }

    /// Replaces the cluster's state with `state` through Raft: its rows as bounded
    /// `RestoreChunk` entries (each well under the entry and message limits, so they
    /// replicate like any write), then one `RestoreSwap` entry that swaps them in at once on
    /// every server. Until the swap commits nothing visible changes; a failed chunk leaves
    /// the state as it was.
    pub async fn restore(
        &self,
        state: drover_state::StateSnapshot,
    ) -> Result<Response, RestoreError> {
        let chunks = tokio::task::spawn_blocking(move || state.restore_chunks(RESTORE_CHUNK_BYTES))
            .await
            .map_err(|e| RestoreError::Internal(e.to_string()))??;
        let id = format!("{:016x}", rand_id());
        let n = u32::try_from(chunks.len())
            .map_err(|_| RestoreError::Internal(format!("{} chunks", chunks.len())))?;
        tracing::info!(restore = %id, chunks = n, "restoring a backup: committing its chunks");
        for (seq, rows) in (0u32..).zip(chunks) {
            let written = self
                .write(Command::RestoreChunk {
                    id: id.clone(),
                    seq,
                    rows,
                })
                .await;
            if let Err(source) = written {
                // Best effort: the staged rows would otherwise stay (in memory and in
                // snapshots) until the next restore.
                if let Err(e) = self.write(Command::RestoreAbort { id: id.clone() }).await {
                    tracing::warn!(restore = %id, error = %e, "could not drop a failed restore's staged chunks");
                }
                return Err(RestoreError::Chunk {
                    id,
                    seq,
                    chunks: n,
                    source,
                });
            }
        }
        self.write(Command::RestoreSwap {
            id: id.clone(),
            chunks: n,
        })
        .await
        .map_err(|source| RestoreError::Swap { id, source })
    }

    pub async fn is_leader(&self) -> bool {
        self.raft.current_leader().await == Some(self.id)
    }

    /// The leader's id and RPC address, if one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m.membership_config.membership().get_node(&id)?.addr.clone();
        Some((id, addr))
    }

    /// The leader's HTTP API address when another server leads (None when this one does,
    /// or no leader answers): followers send node-bound API requests there, since clients
    /// attach to the leader.
    pub async fn leader_http(&self) -> Option<String> {
        let (id, addr) = self.leader()?;
        if id == self.id {
            return None;
        }
        let status = self
            .peers
            .status(&addr, std::time::Duration::from_secs(2))
            .await
            .ok()?;
        Some(status.http_addr).filter(|a| !a.is_empty())
    }

    /// Every voter's (id, address).
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect()
    }

    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// The longest a write waits for its commit before failing with an unknown outcome.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps track of whether this server, while it leads, still hears from a quorum.
async fn watch_quorum(node: RaftNode) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let m = node.raft.metrics().borrow().clone();
        if m.state == ServerState::Shutdown {
            return;
        }
        if m.state != ServerState::Leader {
            continue;
        }
        let term = m.current_term;
        {
            let mut c = node.quorum_contact.lock().expect("quorum lock");
            if c.is_none_or(|(t, _)| t != term) {
                // Winning the election was hearing from a quorum.
                *c = Some((term, Instant::now()));
            }
        }
        let asked = Instant::now();
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_secs(2), node.raft.get_read_log_id()).await
        {
            *node.quorum_contact.lock().expect("quorum lock") = Some((term, asked));
        }
    }
}

struct Pending {
    command: Command,
    /// The command's serialized size.
    size: usize,
    reply: oneshot::Sender<Result<Response, WriteError>>,
}

/// Most commands one entry carries.
const MAX_BATCH: usize = 512;
/// Entries in flight at once; while they commit, new writes queue up and form the next batch.
const MAX_IN_FLIGHT: usize = 2;

/// Writes arriving while earlier ones commit are grouped into one `Command::Batch` entry:
/// one Raft round and one fsync for all of them.
fn batcher(raft: Raft) -> mpsc::Sender<Pending> {
    let (tx, mut rx) = mpsc::channel::<Pending>(4096);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    tokio::spawn(async move {
        let mut carried: Option<Pending> = None;
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            if carried.is_none() {
                carried = rx.recv().await;
            }
            let Some(first) = carried.take() else {
                return;
            };
            let mut size = first.size;
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    // One entry stays within MAX_ENTRY_BYTES: a command that would push it
                    // over starts the next batch.
                    Ok(p) if size + p.size + 1 > MAX_ENTRY_BYTES => {
                        carried = Some(p);
                        break;
                    }
                    Ok(p) => {
                        size += p.size + 1;
                        batch.push(p);
                    }
                    Err(_) => break,
                }
            }
            let raft = raft.clone();
            tokio::spawn(async move {
                commit(&raft, batch).await;
                drop(permit);
            });
        }
    });
    tx
}

async fn commit(raft: &Raft, mut batch: Vec<Pending>) {
    let time = drover_model::now_nanos();
    let single = batch.len() == 1;
    let command = if single {
        batch[0].command.clone()
    } else {
        Command::Batch(batch.iter().map(|p| p.command.clone()).collect())
    };
    match raft.client_write(Entry { time, command }).await {
        Ok(r) if single => {
            let p = batch.pop().expect("one pending write");
            let _ = p.reply.send(Ok(r.data));
        }
        Ok(r) => {
            for (p, resp) in batch.into_iter().zip(r.data.batch) {
                let _ = p.reply.send(Ok(resp));
            }
        }
        Err(e) => {
            let err = match e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(id), Some(n)) => WriteError::NotLeader { id, addr: n.addr },
                        _ => WriteError::NoLeader("no leader has been elected".into()),
                    }
                }
                e => WriteError::Raft(e.to_string()),
            };
            for p in batch {
                let _ = p.reply.send(Err(err.clone()));
            }
        }
    }
}
