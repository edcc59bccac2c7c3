//! openraft glue: the durable log store, the state machine over `drover-state`, snapshots
//! on disk and the gRPC network between servers.
//!
//! Storage lives under `<data_dir>/raft/`:
//! - `log`: an append-only file of checksummed records (entries, truncations, purges),
//!   written and `fdatasync`ed by one I/O thread that groups concurrent appends into one
//!   sync (see [`log_store`]);
//! - `vote`, `committed`: small files replaced atomically;
//! - `snapshot`: the last state-machine snapshot (checksummed), replaced atomically;
//! - `restore/`: uploaded backups staged while a restore commits.
//!
//! Every file is created 0600 and the directories 0700 (repaired at start).
#![deny(clippy::disallowed_types)]

pub mod cluster;
pub mod io;
pub mod log_store;
pub mod network;
pub mod node;
pub mod state_machine;

use std::io::Cursor;

pub use cluster::{ClusterReply, ClusterRequest, JoinConfig, PeerError, Peers, ServerStatus};
pub use node::{RaftNode, RaftNodeConfig, WriteError};

/// A server as the membership records it: where it is reachable now, its name and its
/// version. (The JSON of openraft's `BasicNode`, `{"addr": ...}`, reads as a node without a
/// name; a node recorded without a version is version 1, a server from before versions.)
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerNode {
    pub addr: String,
    #[serde(default)]
    pub name: String,
    /// The newest command the server applies (`drover_state::SERVER_VERSION`); the leader
    /// writes a command only once every member reports its `Command::min_version`.
    #[serde(default = "unversioned_server")]
    pub version: u32,
}

fn unversioned_server() -> u32 {
    drover_state::UNVERSIONED
}

impl ServerNode {
    /// A server of this build.
    pub fn new(addr: impl Into<String>, name: impl Into<String>) -> Self {
        ServerNode {
            addr: addr.into(),
            name: name.into(),
            version: drover_state::SERVER_VERSION,
        }
    }
}

impl Default for ServerNode {
    fn default() -> Self {
        ServerNode::new("", "")
    }
}

impl std::fmt::Display for ServerNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

openraft::declare_raft_types!(
    /// Drover's Raft types: entries carry `drover_state::Entry`, answers are
    /// `drover_state::Response`.
    pub TypeConfig:
        D = drover_state::Entry,
        R = drover_state::Response,
        NodeId = u64,
        Node = ServerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type NodeId = u64;
pub type LogId = openraft::LogId<NodeId>;
pub type StorageError = openraft::StorageError<NodeId>;
