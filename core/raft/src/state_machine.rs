//! The Raft state machine: applies committed entries to the [`StateStore`] and builds
//! snapshots of it, kept in `<data_dir>/raft/snapshot`.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};

use drover_state::{Response, StateSnapshot, StateStore};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::io::write_atomic;
use crate::{LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<NodeId, crate::ServerNode>;
type Meta = SnapshotMeta<NodeId, crate::ServerNode>;

/// What a snapshot file holds: openraft's metadata and the whole state.
#[derive(Serialize, Deserialize)]
struct SnapshotFile {
    meta: Meta,
    state: serde_json::Value,
}

#[derive(Clone)]
pub struct StateMachine {
    store: StateStore,
    path: PathBuf,
    last_applied: Option<LogId>,
    membership: Membership,
    snapshot_seq: u64,
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        io::Error::other(e.to_string()),
    )
}

impl StateMachine {
    /// Opens the state machine, restoring the store from the snapshot in `dir` if any.
    pub fn open(dir: &Path, store: StateStore) -> io::Result<Self> {
        let path = dir.join("snapshot");
        let mut sm = StateMachine {
            store,
            path,
            last_applied: None,
            membership: Membership::default(),
            snapshot_seq: 0,
        };
        match std::fs::read(&sm.path) {
            Ok(bytes) => {
                sm.install(&bytes).map_err(io::Error::other)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(sm)
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    fn install(&mut self, bytes: &[u8]) -> Result<Meta, String> {
        let file: SnapshotFile =
            serde_json::from_slice(bytes).map_err(|e| format!("snapshot is not valid: {e}"))?;
        let state = StateSnapshot::from_value(file.state)
            .map_err(|e| format!("snapshot state is not valid: {e}"))?;
        self.store.restore(state);
        self.last_applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
        Ok(file.meta)
    }

    fn current_snapshot_bytes(&self) -> Option<Vec<u8>> {
        std::fs::read(&self.path).ok()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.store.snapshot();
        self.snapshot_seq += 1;
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.last_applied.map(|l| l.index).unwrap_or(0),
                self.snapshot_seq
            ),
        };
        let path = self.path.clone();
        let meta2 = meta.clone();
        let bytes = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let file = SnapshotFile {
                meta: meta2,
                state: serde_json::to_value(&state).map_err(io::Error::other)?,
            };
            let bytes = serde_json::to_vec(&file).map_err(io::Error::other)?;
            write_atomic(&path, &bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| {
            StorageError::from_io_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, e)
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for e in entries {
            let index = e.log_id.index;
            self.last_applied = Some(e.log_id);
            match e.payload {
                EntryPayload::Blank => {
                    self.store.apply_noop(index);
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
                EntryPayload::Normal(req) => {
                    let resp = self.store.apply(index, &req);
                    tracing::debug!(index, command = req.command.name(), "applied");
                    out.push(resp);
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(e.log_id), m);
                    self.store.apply_noop(index);
                    out.push(Response {
                        index,
                        ..Default::default()
                    });
                }
            }
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        self.install(&bytes).map_err(|e| {
            StorageError::from_io_error(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Read,
                io::Error::other(e),
            )
        })?;
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
            .await
            .map_err(|e| sm_err(ErrorVerb::Write, e))?
            .map_err(|e| {
                StorageError::from_io_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    e,
                )
            })?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let Some(bytes) = self.current_snapshot_bytes() else {
            return Ok(None);
        };
        let file: SnapshotFile =
            serde_json::from_slice(&bytes).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
