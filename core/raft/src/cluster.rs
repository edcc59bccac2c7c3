//! Server-to-server requests beside openraft's own RPCs: writes a follower forwards to the
//! leader, joins and address announcements, status probes, the leader's read index and
//! membership changes — and the loop that bootstraps or joins a cluster.
//!
//! Servers find each other through `retry_join` (RPC addresses); there is no gossip ring.
//! A server's id is random and persisted (`<data_dir>/server-id`); addresses are only where a
//! server is reachable now, so a server restarted on a new address announces it (`Join`) and
//! the leader commits the new address to the membership.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_proto::raft::RaftMessage;
use drover_proto::raft::raft_client::RaftClient;
use drover_state::{Command, Response};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};
use serde::{Deserialize, Serialize};
use tonic::transport::Channel;

use crate::network::MAX_MESSAGE_BYTES;
use crate::node::{RaftNode, WriteError};
use crate::{NodeId, ServerNode};

/// A request from one server to another.
#[derive(Debug, Serialize, Deserialize)]
pub enum ClusterRequest {
    /// A write a follower received, for the leader to commit.
    Write(Box<Command>),
    /// A server asks to be a member (a new learner, promoted to voter once caught up), or
    /// announces the address it is reachable at now.
    Join {
        id: NodeId,
        addr: String,
        #[serde(default)]
        name: String,
        /// The joining server's version (absent from servers before versions: 1).
        #[serde(default = "unversioned")]
        version: u32,
    },
    /// What the receiving server is and knows.
    Status,
    /// The leader's last applied index, after confirming it still leads: a follower serving
    /// a consistent read waits until it has applied as much.
    ReadIndex,
    /// Remove a server from the membership.
    RemovePeer { id: NodeId },
    /// The leader is leaving: start an election after `after_ms` (when the other servers'
    /// leader lease has run out), so the most up-to-date server takes over at once.
    TakeLeadership { after_ms: u64 },
}

fn unversioned() -> u32 {
    drover_state::UNVERSIONED
}

#[derive(Debug, Serialize, Deserialize)]
pub enum ClusterReply {
    Write(Result<Response, WriteError>),
    Join(Result<(), String>),
    Status(Box<ServerStatus>),
    ReadIndex(Result<u64, String>),
    RemovePeer(Result<(), String>),
    TakeLeadership,
}

/// A server's view of itself and of the cluster (the answer to a status probe).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerStatus {
    pub id: NodeId,
    pub name: String,
    pub addr: String,
    /// Whether it has Raft state (is or was a member of a cluster).
    pub initialized: bool,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: String,
    pub term: u64,
    pub leader: Option<(NodeId, String)>,
    pub last_applied: u64,
    pub voters: Vec<(NodeId, String)>,
    pub learners: Vec<(NodeId, String)>,
    /// Members' names as the membership records them.
    #[serde(default)]
    pub names: BTreeMap<NodeId, String>,
    /// This server's HTTP API address.
    #[serde(default)]
    pub http_addr: String,
    /// This server's version (`drover_state::SERVER_VERSION`; 1 from servers before it).
    #[serde(default = "unversioned")]
    pub version: u32,
    /// Members' versions as the membership records them.
    #[serde(default)]
    pub versions: BTreeMap<NodeId, u32>,
    /// Set when this server stopped applying entries (one it cannot decode): it is
    /// unhealthy until upgraded.
    #[serde(default)]
    pub halted: Option<String>,
}

/// How a server finds the others and forms or joins a cluster.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    /// Servers expected before the first bootstrap (Nomad's `bootstrap_expect`); 0 means
    /// never bootstrap, only join.
    pub bootstrap_expect: u32,
    /// Other servers' RPC addresses (`host:port`).
    pub retry_join: Vec<String>,
    pub retry_interval: Duration,
    /// Attempts before giving up; 0 means forever.
    pub retry_max: u32,
}

impl Default for JoinConfig {
    fn default() -> Self {
        JoinConfig {
            bootstrap_expect: 1,
            retry_join: Vec::new(),
            retry_interval: Duration::from_secs(1),
            retry_max: 0,
        }
    }
}

/// gRPC clients to other servers, by address, connected lazily.
#[derive(Clone, Default)]
pub struct Peers {
    clients: Arc<Mutex<BTreeMap<String, RaftClient<Channel>>>>,
    /// Plaintext, or TLS with this server's certificate.
    dialer: drover_tls::Dialer,
    /// Server names seen in status answers, so a server that is down is still shown by name.
    names: Arc<Mutex<BTreeMap<NodeId, String>>>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    #[error("cannot reach server {addr}: {reason}")]
    Unreachable { addr: String, reason: String },
    #[error("server {addr} did not answer within {secs} s")]
    Timeout { addr: String, secs: u64 },
    #[error("server {addr} answered with an error: {reason}")]
    Remote { addr: String, reason: String },
}

impl Peers {
    /// Peers dialled through `dialer`.
    pub fn new(dialer: drover_tls::Dialer) -> Peers {
        Peers {
            dialer,
            ..Peers::default()
        }
    }

    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, PeerError> {
        let mut clients = self.clients.lock().expect("peers lock");
        if let Some(c) = clients.get(addr) {
            return Ok(c.clone());
        }
        let ep = self
            .dialer
            .endpoint(addr)
            .map_err(|e| PeerError::Unreachable {
                addr: addr.into(),
                reason: e.to_string(),
            })?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            // A peer cut off mid-request is noticed within ~3 s, not at the request timeout.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true);
        let ch = self.dialer.connect_lazy(ep);
        let c = RaftClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Sends one request to the server at `addr`, waiting at most `timeout`.
    pub async fn call(
        &self,
        addr: &str,
        req: &ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterReply, PeerError> {
        let json = serde_json::to_vec(req).expect("cluster requests serialize");
        let mut c = self.client(addr)?;
        let call = c.cluster(RaftMessage {
            json,
            error: String::new(),
            encoding_version: drover_state::ENCODING_VERSION,
        });
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                return Err(PeerError::Timeout {
                    addr: addr.into(),
                    secs: timeout.as_secs().max(1),
                });
            }
            Ok(Err(status)) => {
                return Err(PeerError::Unreachable {
                    addr: addr.into(),
                    reason: status.message().to_string(),
                });
            }
            Ok(Ok(r)) => r.into_inner(),
        };
        if !reply.error.is_empty() {
            return Err(PeerError::Remote {
                addr: addr.into(),
                reason: reply.error,
            });
        }
        serde_json::from_slice(&reply.json).map_err(|e| PeerError::Remote {
            addr: addr.into(),
            reason: format!("malformed reply: {e}"),
        })
    }

    /// A server's status, or why it could not be had.
    pub async fn status(&self, addr: &str, timeout: Duration) -> Result<ServerStatus, PeerError> {
        match self.call(addr, &ClusterRequest::Status, timeout).await? {
            ClusterReply::Status(s) => {
                self.names
                    .lock()
                    .expect("names lock")
                    .insert(s.id, s.name.clone());
                Ok(*s)
            }
            other => Err(PeerError::Remote {
                addr: addr.into(),
                reason: format!("unexpected reply {other:?}"),
            }),
        }
    }
}

fn state_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl RaftNode {
    /// Another server's status.
    pub async fn peer_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<ServerStatus, PeerError> {
        self.peers.status(addr, timeout).await
    }

    /// A server's name as last seen (its id when never seen).
    pub fn known_name(&self, id: NodeId) -> String {
        if id == self.id {
            return self.name.to_string();
        }
        let recorded = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.name.clone())
            .filter(|n| !n.is_empty());
        if let Some(n) = recorded {
            return n;
        }
        self.peers
            .names
            .lock()
            .expect("names lock")
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("server-{id}"))
    }

    /// This server's status (what a `Status` probe answers).
    pub async fn status(&self) -> ServerStatus {
        let initialized = self.raft.is_initialized().await.unwrap_or(false);
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voter_ids: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut voters = Vec::new();
        let mut learners = Vec::new();
        let mut names = BTreeMap::new();
        let mut versions = BTreeMap::new();
        for (id, n) in membership.nodes() {
            versions.insert(*id, n.version);
            if !n.name.is_empty() {
                names.insert(*id, n.name.clone());
            }
            if voter_ids.contains(id) {
                voters.push((*id, n.addr.clone()));
            } else {
                learners.push((*id, n.addr.clone()));
            }
        }
        let leader = m.current_leader.and_then(|l| {
            membership
                .get_node(&l)
                .map(|n| (l, n.addr.clone()))
                .or_else(|| (l == self.id).then(|| (l, self.advertise_rpc.to_string())))
        });
        ServerStatus {
            id: self.id,
            name: self.name.to_string(),
            addr: self.advertise_rpc.to_string(),
            initialized,
            state: state_name(m.state).into(),
            term: m.current_term,
            leader,
            last_applied: m.last_applied.map(|l| l.index).unwrap_or(0),
            voters,
            learners,
            names,
            http_addr: self.advertise_http.to_string(),
            version: drover_state::SERVER_VERSION,
            versions,
            halted: self.store.halted(),
        }
    }

    /// Answers a request from another server.
    pub async fn handle_cluster(&self, req: ClusterRequest) -> ClusterReply {
        match req {
            ClusterRequest::Write(c) => ClusterReply::Write(self.write_here(*c).await),
            ClusterRequest::Join {
                id,
                addr,
                name,
                version,
            } => ClusterReply::Join(
                self.join_member(
                    id,
                    ServerNode {
                        addr,
                        name,
                        version,
                    },
                )
                .await,
            ),
            ClusterRequest::Status => ClusterReply::Status(Box::new(self.status().await)),
            ClusterRequest::ReadIndex => ClusterReply::ReadIndex(self.leader_read_index().await),
            ClusterRequest::RemovePeer { id } => {
                ClusterReply::RemovePeer(self.remove_member(id).await)
            }
            ClusterRequest::TakeLeadership { after_ms } => {
                let raft = self.raft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(after_ms)).await;
                    tracing::info!("the leader handed over leadership: starting an election");
                    let _ = raft.trigger().elect().await;
                });
                ClusterReply::TakeLeadership
            }
        }
    }

    /// On the leader: confirms leadership with a quorum and returns the applied index.
    async fn leader_read_index(&self) -> Result<u64, String> {
        if !self.is_leader().await {
            return Err(format!("server {} is not the leader", self.id));
        }
        match tokio::time::timeout(Duration::from_secs(3), self.raft.ensure_linearizable()).await {
            Ok(Ok(Some(log_id))) => {
                // Wait until this (leader) server has applied it too.
                let mut rx = self.store.subscribe();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
                while self.store.index() < log_id.index {
                    if tokio::time::timeout_at(deadline, rx.changed())
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(self.store.index().max(log_id.index))
            }
            Ok(Ok(None)) => Ok(self.store.index()),
            Ok(Err(e)) => Err(format!("leadership not confirmed: {e}")),
            Err(_) => Err(format!(
                "server {} could not confirm its leadership with a quorum within 3 s",
                self.id
            )),
        }
    }

    /// The index a consistent read must have applied: this server's own if it leads, the
    /// leader's otherwise. Fails with "no cluster leader" and the reason.
    pub async fn read_index(&self) -> Result<u64, WriteError> {
        match self.route()? {
            Route::Local => Ok(self.store.index()),
            Route::Forward(_, addr) => {
                match self
                    .peers
                    .call(&addr, &ClusterRequest::ReadIndex, Duration::from_secs(5))
                    .await
                {
                    Ok(ClusterReply::ReadIndex(Ok(i))) => Ok(i),
                    Ok(ClusterReply::ReadIndex(Err(e))) => Err(WriteError::NoLeader(e)),
                    Ok(other) => Err(WriteError::Raft(format!("unexpected reply {other:?}"))),
                    Err(e) => Err(WriteError::NoLeader(format!(
                        "the last known leader is unreachable: {e}"
                    ))),
                }
            }
        }
    }

    /// Passes a membership change (join, removal) to the leader at `leader`; its answer.
    async fn ask_leader(
        &self,
        leader: &str,
        req: ClusterRequest,
        timeout: Duration,
    ) -> Result<(), String> {
        match self.peers.call(leader, &req, timeout).await {
            Ok(ClusterReply::Join(r) | ClusterReply::RemovePeer(r)) => r,
            Ok(other) => Err(format!("unexpected reply {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// On the leader: adds a server (as a learner, then a voter once it has caught up), or
    /// records its new address, name or version. Elsewhere: passes the request to the leader.
    pub async fn join_member(&self, id: NodeId, node: ServerNode) -> Result<(), String> {
        if let Route::Forward(_, leader) = self.route().map_err(|e| e.to_string())? {
            let req = join_request(id, node);
            return self
                .ask_leader(&leader, req, Duration::from_secs(120))
                .await;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let is_voter = membership.voter_ids().any(|v| v == id);
        let addr = node.addr.clone();
        match membership.get_node(&id) {
            Some(n) if *n == node && is_voter => return Ok(()),
            Some(n) if *n != node => {
                tracing::info!(server_id = id, old = %n.addr, new = %addr, old_version = n.version, version = node.version, "server announced a new address or version: committing it to the membership");
                self.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                    .await
                    .map_err(|e| format!("cannot record the new address of server {id}: {e}"))?;
                if is_voter {
                    return Ok(());
                }
            }
            Some(_) => {}
            None => {
                tracing::info!(server_id = id, %addr, "server joining: adding it as a learner");
                self.raft
                    .add_learner(id, node, true)
                    .await
                    .map_err(|e| format!("cannot add server {id} at {addr} as a learner: {e}"))?;
            }
        }
        tracing::info!(server_id = id, %addr, "learner caught up: promoting it to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map_err(|e| format!("cannot promote server {id} to voter: {e}"))?;
        Ok(())
    }

    /// On the leader: removes a server from the membership. Elsewhere: asks the leader.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), String> {
        if let Route::Forward(_, leader) = self.route().map_err(|e| e.to_string())? {
            let req = ClusterRequest::RemovePeer { id };
            return self.ask_leader(&leader, req, Duration::from_secs(30)).await;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.get_node(&id).is_none() {
            return Err(format!("server {id} is not a member of the cluster"));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let r = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(format!(
                    "server {id} is the only voter: removing it would leave no cluster"
                ));
            }
            self.raft
                .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                .await
        } else {
            self.raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
        };
        match r {
            Ok(_) => {
                tracing::info!(server_id = id, "removed server from the membership");
                Ok(())
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(p),
            ))) => Err(format!(
                "another membership change is in progress ({p}); try again"
            )),
            Err(e) => Err(format!("cannot remove server {id}: {e}")),
        }
    }
}

impl RaftNode {
    /// Leaves the cluster for good (Nomad's `leave_on_terminate`): a leader first hands
    /// leadership over and waits for the successor, then the leader removes this server
    /// from the membership, so the others' quorum no longer counts it.
    pub async fn leave(&self) {
        let voters: Vec<NodeId> = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if voters == [self.id] {
            tracing::warn!("leaving: this server is the only voter; it stays in the membership");
            return;
        }
        if self.hand_over_leadership().await.is_some() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut metrics = self.raft.metrics();
            while metrics.borrow().current_leader.is_none_or(|l| l == self.id) {
                // Out of time, or Raft stopped: go on with the removal either way.
                if !matches!(
                    tokio::time::timeout_at(deadline, metrics.changed()).await,
                    Ok(Ok(()))
                ) {
                    break;
                }
            }
        }
        for attempt in 1..=10 {
            match self.remove_member(self.id).await {
                Ok(()) => {
                    tracing::info!("left the cluster: removed from the membership");
                    return;
                }
                Err(e) => {
                    tracing::warn!(attempt, error = %e, "leaving: could not remove this server from the membership yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// A graceful leave: when this server leads others, it stops sending heartbeats and asks
    /// the most caught-up voter to start an election as soon as the others' leader lease has
    /// run out, instead of everyone waiting for an election timeout. Returns the successor.
    /// (openraft 0.9 has no leadership-transfer message; this is the handoff it allows.)
    pub async fn hand_over_leadership(&self) -> Option<NodeId> {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return None;
        }
        let membership = m.membership_config.membership().clone();
        let replication = m.replication.clone().unwrap_or_default();
        let successor = membership
            .voter_ids()
            .filter(|v| *v != self.id)
            .max_by_key(|v| replication.get(v).cloned().flatten().map(|l| l.index))?;
        let addr = membership.get_node(&successor)?.addr.clone();
        self.raft.runtime_config().heartbeat(false);
        let after_ms = crate::node::ELECTION_TIMEOUT_MAX_MS + 100;
        match self
            .peers
            .call(
                &addr,
                &ClusterRequest::TakeLeadership { after_ms },
                Duration::from_secs(2),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(successor, %addr, "leaving: handing leadership to the most up-to-date server");
                Some(successor)
            }
            Err(e) => {
                tracing::warn!(successor, error = %e, "leaving: could not hand over leadership; the others will elect a leader");
                None
            }
        }
    }
}

impl RaftNode {
    /// On the leader, before a command is written: every member of the cluster must apply
    /// it, so a command newer than some server's version is refused (Nomad's minimum server
    /// version check). A member recorded without a version is version 1.
    pub(crate) fn check_versions(&self, command: &Command) -> Result<(), WriteError> {
        let needs = command.min_version();
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        let lacking: Vec<String> = m
            .membership_config
            .membership()
            .nodes()
            .filter(|(_, n)| n.version < needs)
            .map(|(id, n)| format!("server {id} ({}) is at version {}", n.name, n.version))
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        Err(WriteError::Unsupported {
            command: command.name().to_string(),
            needs,
            lacking: lacking.join(", "),
        })
    }
}

/// Where a write (or a consistent read) goes.
pub(crate) enum Route {
    Local,
    Forward(NodeId, String),
}

impl RaftNode {
    /// Local when this server leads and has heard from a quorum recently; the leader's
    /// address when another server leads; otherwise "no cluster leader" and why.
    pub(crate) fn route(&self) -> Result<Route, WriteError> {
        let m = self.raft.metrics().borrow().clone();
        match m.current_leader {
            Some(l) if l == self.id => {
                if let Some(ms) = self.quorum_silence_ms() {
                    return Err(WriteError::NoLeader(format!(
                        "this server (id {}) was elected leader in term {} but has not heard from a quorum of servers for {} ms",
                        self.id, m.current_term, ms
                    )));
                }
                Ok(Route::Local)
            }
            Some(l) => match m.membership_config.membership().get_node(&l) {
                Some(n) => Ok(Route::Forward(l, n.addr.clone())),
                None => Err(WriteError::NoLeader(format!(
                    "the leader is server {l}, whose address is not in this server's membership yet"
                ))),
            },
            None => {
                let reason = match m.state {
                    ServerState::Candidate => format!(
                        "an election is under way (this server is a candidate in term {}); a majority of the {} voters must be reachable",
                        m.current_term,
                        m.membership_config.membership().voter_ids().count()
                    ),
                    ServerState::Learner
                        if m.membership_config.membership().nodes().next().is_none() =>
                    {
                        "this server has not joined a cluster yet (waiting for bootstrap_expect servers through server_join.retry_join)".to_string()
                    }
                    ServerState::Shutdown => "this server is shutting down".to_string(),
                    _ => format!(
                        "no leader has been elected in term {} (a majority of the {} voters must be reachable)",
                        m.current_term,
                        m.membership_config.membership().voter_ids().count()
                    ),
                };
                Err(WriteError::NoLeader(reason))
            }
        }
    }

    /// Forwards a write to the leader at `addr`.
    pub(crate) async fn forward(
        &self,
        addr: &str,
        command: Command,
    ) -> Result<Response, WriteError> {
        match self
            .peers
            .call(
                addr,
                &ClusterRequest::Write(Box::new(command)),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(ClusterReply::Write(r)) => r,
            Ok(other) => Err(WriteError::Raft(format!("unexpected reply {other:?}"))),
            Err(PeerError::Timeout { addr, secs }) => Err(WriteError::NoLeader(format!(
                "the leader at {addr} did not answer within {secs} s; the write's outcome is unknown"
            ))),
            Err(e) => Err(WriteError::NoLeader(format!(
                "the last known leader is unreachable: {e}"
            ))),
        }
    }
}

/// Forms or joins the cluster, then makes sure the membership has this server's current
/// address. Runs until done (or `retry_max` attempts).
pub async fn converge(node: RaftNode, cfg: JoinConfig) {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        match converge_once(&node, &cfg).await {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => tracing::warn!(attempt, "cluster join: {e}"),
        }
        if cfg.retry_max > 0 && attempt >= cfg.retry_max {
            tracing::error!(
                attempts = attempt,
                "cluster join: giving up after server_join.retry_max attempts"
            );
            return;
        }
        tokio::time::sleep(cfg.retry_interval).await;
    }
}

/// One round; `Ok(true)` when there is nothing left to do.
async fn converge_once(node: &RaftNode, cfg: &JoinConfig) -> Result<bool, String> {
    let me = node.status().await;
    if me.initialized {
        return announce_self(node, cfg, &me).await;
    }
    // Not a member yet: look at the other servers.
    let seen = probe_others(node, cfg).await;
    if let Some(member) = seen.statuses.values().find(|s| s.initialized) {
        // A cluster exists: join it rather than bootstrap another.
        return join_via(node, &member.addr).await;
    }
    bootstrap(node, cfg, seen).await
}

/// This server as the membership should record it.
fn own_record(node: &RaftNode) -> ServerNode {
    ServerNode::new(node.advertise_rpc.to_string(), node.name.to_string())
}

fn join_request(id: NodeId, n: ServerNode) -> ClusterRequest {
    ClusterRequest::Join {
        id,
        addr: n.addr,
        name: n.name,
        version: n.version,
    }
}

/// A member already: makes sure the membership has this server's current address, name
/// and version (a server restarted elsewhere, or upgraded, announces itself).
async fn announce_self(
    node: &RaftNode,
    cfg: &JoinConfig,
    me: &ServerStatus,
) -> Result<bool, String> {
    let own = own_record(node);
    let recorded = me
        .voters
        .iter()
        .chain(&me.learners)
        .find(|(id, _)| *id == node.id)
        .map(|(_, a)| a.clone());
    let recorded_name = me.names.get(&node.id).cloned().unwrap_or_default();
    let recorded_version = me.versions.get(&node.id).copied();
    if recorded.as_deref() == Some(own.addr.as_str())
        && recorded_name == own.name
        && recorded_version == Some(own.version)
    {
        return Ok(true);
    }
    if recorded.is_none() && me.voters.is_empty() {
        // Initialized through a snapshot or log that has not reached membership yet.
        return Ok(false);
    }
    tracing::info!(recorded = ?recorded, now = %own.addr, ?recorded_version, version = own.version, "this server's address or version changed: announcing it");
    if me.leader.as_ref().is_some_and(|(l, _)| *l == node.id) {
        return node.join_member(node.id, own).await.map(|_| true);
    }
    // Ask the other members (their addresses are in our membership) and retry_join.
    let mut targets: Vec<String> = me
        .voters
        .iter()
        .chain(&me.learners)
        .filter(|(id, _)| *id != node.id)
        .map(|(_, a)| a.clone())
        .collect();
    targets.extend(cfg.retry_join.iter().cloned());
    targets.retain(|a| *a != own.addr);
    targets.dedup();
    let mut last = String::from("no other server known");
    for t in targets {
        let req = join_request(node.id, own.clone());
        match node.peers.call(&t, &req, Duration::from_secs(30)).await {
            Ok(ClusterReply::Join(Ok(()))) => {
                // The next round checks that the membership has it (a leader from before
                // versions answers Ok without recording the version).
                tracing::info!(via = %t, "new address or version announced to the leader");
                return Ok(false);
            }
            Ok(ClusterReply::Join(Err(e))) => last = format!("{t}: {e}"),
            Ok(other) => last = format!("{t}: unexpected reply {other:?}"),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!(
        "cannot announce the new address {}: {last}",
        own.addr
    ))
}

/// What probing the `retry_join` servers found.
struct Probed {
    statuses: BTreeMap<NodeId, ServerStatus>,
    unreachable: Vec<String>,
}

async fn probe_others(node: &RaftNode, cfg: &JoinConfig) -> Probed {
    let own: &str = &node.advertise_rpc;
    let others: Vec<&String> = cfg
        .retry_join
        .iter()
        .filter(|a| a.as_str() != own)
        .collect();
    let probes = futures::future::join_all(
        others
            .iter()
            .map(|a| node.peers.status(a, Duration::from_secs(2))),
    )
    .await;
    let mut seen = Probed {
        statuses: BTreeMap::new(),
        unreachable: Vec::new(),
    };
    for (addr, p) in others.iter().zip(probes) {
        match p {
            Ok(s) if s.id != node.id => {
                seen.statuses.insert(s.id, s);
            }
            Ok(_) => {}
            Err(e) => seen.unreachable.push(format!("{addr} ({e})")),
        }
    }
    seen
}

async fn join_via(node: &RaftNode, via: &str) -> Result<bool, String> {
    tracing::info!(via = %via, "a cluster exists: asking to join it");
    let req = join_request(node.id, own_record(node));
    match node.peers.call(via, &req, Duration::from_secs(120)).await {
        Ok(ClusterReply::Join(Ok(()))) => {
            tracing::info!("joined the cluster");
            Ok(true)
        }
        Ok(ClusterReply::Join(Err(e))) => Err(format!("joining through {via}: {e}")),
        Ok(other) => Err(format!("joining through {via}: unexpected reply {other:?}")),
        Err(e) => Err(format!("joining through {via}: {e}")),
    }
}

/// Bootstraps the cluster once `bootstrap_expect` servers see each other.
async fn bootstrap(node: &RaftNode, cfg: &JoinConfig, seen: Probed) -> Result<bool, String> {
    let expect = cfg.bootstrap_expect as usize;
    if expect == 0 {
        return Err(format!(
            "no server with cluster state found yet (unreachable: {})",
            seen.unreachable.join(", ")
        ));
    }
    let total = seen.statuses.len() + 1;
    if total > expect {
        return Err(format!(
            "refusing to bootstrap: {total} servers see each other but bootstrap_expect = {expect}; every server must have the same bootstrap_expect"
        ));
    }
    if total < expect {
        tracing::info!(
            seen = total,
            expect,
            unreachable = %seen.unreachable.join(", "),
            "waiting for bootstrap_expect servers before bootstrapping"
        );
        return Ok(false);
    }
    // Every server computes the same sorted set and initializes with it.
    let mut members: BTreeMap<NodeId, ServerNode> = seen
        .statuses
        .values()
        .map(|s| {
            let n = ServerNode {
                addr: s.addr.clone(),
                name: s.name.clone(),
                version: s.version,
            };
            (s.id, n)
        })
        .collect();
    members.insert(node.id, own_record(node));
    tracing::info!(members = ?members.keys().collect::<Vec<_>>(), "bootstrapping the cluster");
    match node.raft.initialize(members).await {
        Ok(()) => Ok(true),
        // Another path (a peer's replication) initialized it first: fine.
        Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(true),
        Err(e) => Err(format!("bootstrap failed: {e}")),
    }
}

/// Autopilot's dead-server cleanup, run by the leader: a member that has not answered a status
/// probe for `after` is removed, as long as the servers that do answer remain a majority of
/// what is left.
pub async fn cleanup_dead_servers(node: RaftNode, after: Duration) {
    let mut last_seen: BTreeMap<NodeId, tokio::time::Instant> = BTreeMap::new();
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tick.tick().await;
        let me = node.status().await;
        if me.state != "leader" {
            continue;
        }
        let now = tokio::time::Instant::now();
        let members: Vec<(NodeId, String)> =
            me.voters.iter().chain(&me.learners).cloned().collect();
        let probes = futures::future::join_all(members.iter().map(|(id, addr)| {
            let node = node.clone();
            let id = *id;
            async move {
                id == node.id
                    || node
                        .peers
                        .status(addr, Duration::from_secs(1))
                        .await
                        .is_ok()
            }
        }))
        .await;
        last_seen.retain(|id, _| members.iter().any(|(m, _)| m == id));
        let mut alive = BTreeSet::new();
        for ((id, _), ok) in members.iter().zip(probes) {
            let seen = last_seen.entry(*id).or_insert(now);
            if ok {
                *seen = now;
                alive.insert(*id);
            }
        }
        for (id, addr) in &members {
            if alive.contains(id) || now.duration_since(last_seen[id]) < after {
                continue;
            }
            let voters_left = me.voters.iter().filter(|(v, _)| v != id).count();
            let alive_voters = me.voters.iter().filter(|(v, _)| alive.contains(v)).count();
            if alive_voters * 2 <= voters_left {
                tracing::warn!(
                    server_id = id,
                    "dead server not removed: the live servers would not be a majority"
                );
                continue;
            }
            tracing::warn!(server_id = id, %addr, after_secs = after.as_secs(), "removing a server that has been unreachable (dead-server cleanup)");
            if let Err(e) = node.remove_member(*id).await {
                tracing::warn!(server_id = id, error = %e, "dead-server cleanup failed");
            }
            break; // one membership change at a time
        }
    }
}
