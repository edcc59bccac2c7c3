//! What the HTTP API and the agent ask of this server's Raft member, through [`Server`]: the
//! leader and the peers, consistent-read indexes, member statuses and removals, restores,
//! leaving and shutting down. Callers see these methods and the types re-exported from the
//! crate root, never the Raft member itself.

use std::path::PathBuf;
use std::time::Duration;

use drover_raft::node::{RaftStats, RestoreError};
use drover_raft::{NodeId, PeerError, ServerStatus, WriteError};
use drover_state::StateSnapshot;

use crate::{Server, ServerError};

impl Server {
    /// This server's Raft id.
    pub fn server_id(&self) -> NodeId {
        self.raft().id()
    }

    /// The leader's id and RPC address, if one is known.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        self.raft().leader()
    }

    /// The leader's HTTP API address when another server leads (None when this one does, or
    /// no leader answers).
    pub async fn leader_http(&self) -> Option<String> {
        self.raft().leader_http().await
    }

    /// How long ago this server last heard from a leader (0 on the leader).
    pub fn last_contact_ms(&self) -> Option<u64> {
        self.raft().last_contact_ms()
    }

    /// Every voter's (id, RPC address).
    pub fn peers(&self) -> Vec<(NodeId, String)> {
        self.raft().peers()
    }

    /// This member's Raft role, term and indexes.
    pub fn raft_stats(&self) -> RaftStats {
        self.raft().raft_stats()
    }

    /// The index a consistent read must have applied (the leader's, confirmed by a quorum).
    pub async fn read_index(&self) -> Result<u64, WriteError> {
        self.raft().read_index().await
    }

    /// This server's own status (membership, leader, applied index).
    pub async fn status(&self) -> ServerStatus {
        self.raft().status().await
    }

    /// Another server's status, asked at its RPC address.
    pub async fn peer_status(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<ServerStatus, PeerError> {
        self.raft().peer_status(addr, timeout).await
    }

    /// A server's name as last seen (its id when never seen).
    pub fn known_name(&self, id: NodeId) -> String {
        self.raft().known_name(id)
    }

    /// Removes a server from the cluster's membership (on the leader, or passed to it).
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ServerError> {
        self.raft()
            .remove_member(id)
            .await
            .map_err(ServerError::Membership)
    }

    /// A fresh private path where an uploaded backup is staged before it is restored.
    pub fn restore_staging_path(&self) -> PathBuf {
        self.raft().restore_staging_path()
    }

    /// Replaces the cluster's state with `state` through Raft; the index it committed at.
    pub async fn restore(&self, state: StateSnapshot) -> Result<u64, RestoreError> {
        Ok(self.raft().restore(state).await?.index)
    }

    /// Leaves the cluster for good (`leave_on_terminate`/`leave_on_interrupt`).
    pub async fn leave(&self) {
        self.raft().leave().await;
    }

    /// Hands leadership to another voter, when this server leads others.
    pub async fn hand_over_leadership(&self) {
        self.raft().hand_over_leadership().await;
    }

    /// Stops this server's Raft member.
    pub async fn shutdown(&self) {
        self.raft().shutdown().await;
    }
}
