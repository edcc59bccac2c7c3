//! The Raft state machine: applies committed entries to the [`StateStore`] and builds
//! snapshots of it, kept in `<data_dir>/raft/snapshot`.
//!
//! A snapshot is a frozen view: [`RaftStateMachine::get_snapshot_builder`] takes the store's
//! O(1) snapshot together with the log id it was applied up to, so entries applied while the
//! snapshot is serialized are neither in it nor claimed by it.
//!
//! The file is `DRVSNAP2`, the body's length (u64 LE), its CRC-32 (u32 LE), then the body
//! (JSON: openraft's metadata and every table). The checksum is verified whenever a snapshot
//! is loaded, installed or served. Files written before the header existed (bare JSON) are
//! still read. Every write goes to a temporary file of its own; the rename over `snapshot`
//! happens under a lock and only if the snapshot is not older than the one already there,
//! so a slow build can never replace a newer installed snapshot.

use std::io::{self, Cursor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use drover_state::{Response, StateSnapshot, StateStore};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StoredMembership,
};
use serde::{Deserialize, Serialize};

use crate::io::{commit_temp, remove_stale_temps, write_temp};
use crate::{LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;
type Membership = StoredMembership<NodeId, crate::ServerNode>;
type Meta = SnapshotMeta<NodeId, crate::ServerNode>;

const MAGIC: &[u8; 8] = b"DRVSNAP2";
const HEADER_LEN: usize = 8 + 8 + 4;

/// What a snapshot file holds: openraft's metadata and the whole state.
#[derive(Serialize)]
struct SnapshotFileRef<'a> {
    meta: &'a Meta,
    state: &'a StateSnapshot,
}

#[derive(Deserialize)]
struct SnapshotFile {
    meta: Meta,
    state: StateSnapshot,
}

/// Why a snapshot could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot is truncated: {have} bytes, the header promises {want}")]
    Truncated { have: usize, want: u64 },
    #[error("snapshot checksum mismatch: stored {stored:08x}, computed {computed:08x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("snapshot is not valid: {0}")]
    Decode(#[from] serde_json::Error),
    #[error("snapshot {path}: {source}")]
    File {
        path: PathBuf,
        #[source]
        source: Box<SnapshotError>,
    },
}

/// Serializes a snapshot with its header and checksum.
fn encode_snapshot(meta: &Meta, state: &StateSnapshot) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, &SnapshotFileRef { meta, state })?;
    let body = &out[HEADER_LEN..];
    let len = body.len() as u64;
    let crc = crc32fast::hash(body);
    out[..8].copy_from_slice(MAGIC);
    out[8..16].copy_from_slice(&len.to_le_bytes());
    out[16..20].copy_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Verifies and decodes a snapshot (or a headerless one written by an earlier version).
fn decode_snapshot(bytes: &[u8]) -> Result<SnapshotFile, SnapshotError> {
    let body = if bytes.starts_with(MAGIC) {
        if bytes.len() < HEADER_LEN {
            return Err(SnapshotError::Truncated {
                have: bytes.len(),
                want: HEADER_LEN as u64,
            });
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let stored = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes"));
        let body = &bytes[HEADER_LEN..];
        if body.len() as u64 != len {
            return Err(SnapshotError::Truncated {
                have: bytes.len(),
                want: len.saturating_add(HEADER_LEN as u64),
            });
        }
        let computed = crc32fast::hash(body);
        if computed != stored {
            return Err(SnapshotError::Checksum { stored, computed });
        }
        body
    } else {
        bytes
    };
    Ok(serde_json::from_slice(body)?)
}

/// The snapshot file and which snapshot it holds; shared by the state machine and its
/// builders so that writes to it are ordered.
struct SnapshotSlot {
    path: PathBuf,
    /// The last log id of the snapshot in the file (None: no file, or one covering nothing).
    on_disk: Mutex<Option<LogId>>,
    seq: AtomicU64,
}

impl SnapshotSlot {
    /// Writes `bytes` (a snapshot up to `last`) unless the file already holds a newer one.
    /// Blocking. Returns whether the file was replaced.
    fn store(&self, last: Option<LogId>, bytes: &[u8]) -> io::Result<bool> {
        let tmp = write_temp(&self.path, bytes)?;
        let mut on_disk = self.on_disk.lock().expect("snapshot lock");
        if *on_disk > last {
            drop(on_disk);
            let _ = std::fs::remove_file(&tmp);
            tracing::info!(
                built = ?last,
                kept = ?*self.on_disk.lock().expect("snapshot lock"),
                "a newer snapshot is already on disk; the older one is discarded"
            );
            return Ok(false);
        }
        if let Err(e) = commit_temp(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        *on_disk = last;
        Ok(true)
    }

    fn read(&self) -> io::Result<Option<(Vec<u8>, SnapshotFile)>> {
        match std::fs::read(&self.path) {
            Ok(bytes) => {
                let file = decode_snapshot(&bytes).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        SnapshotError::File {
                            path: self.path.clone(),
                            source: Box::new(e),
                        },
                    )
                })?;
                Ok(Some((bytes, file)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

pub struct StateMachine {
    store: StateStore,
    slot: Arc<SnapshotSlot>,
    last_applied: Option<LogId>,
    membership: Membership,
}

/// A snapshot being built: the state as it was when openraft asked for it, and the log id
/// that state was applied up to.
pub struct SnapshotBuilder {
    state: StateSnapshot,
    meta: Meta,
    slot: Arc<SnapshotSlot>,
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error) -> StorageError {
    StorageError::from_io_error(
        ErrorSubject::StateMachine,
        verb,
        io::Error::other(e.to_string()),
    )
}

fn snapshot_err(meta: Option<&Meta>, verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Snapshot(meta.map(|m| m.signature())), verb, e)
}

impl StateMachine {
    /// Opens the state machine, restoring the store from the snapshot in `dir` if any.
    /// A snapshot that fails its checksum stops the server (an error naming the file).
    /// Blocking.
    pub fn open(dir: &Path, store: StateStore) -> io::Result<Self> {
        let path = dir.join("snapshot");
        remove_stale_temps(&path);
        let mut sm = StateMachine {
            store,
            slot: Arc::new(SnapshotSlot {
                path,
                on_disk: Mutex::new(None),
                seq: AtomicU64::new(0),
            }),
            last_applied: None,
            membership: Membership::default(),
        };
        if let Some((_, file)) = sm.slot.read()? {
            if let Ok(f) = std::fs::File::open(&sm.slot.path) {
                crate::io::ensure_mode(&f, crate::io::FILE_MODE)?;
            }
            *sm.slot.on_disk.lock().expect("snapshot lock") = file.meta.last_log_id;
            sm.install(file);
        }
        Ok(sm)
    }

    pub fn store(&self) -> &StateStore {
        &self.store
    }

    /// Stops applying at an entry this server cannot decode (a newer server wrote it): the
    /// entry stays in the log, nothing after it is applied, the store reports why, and the
    /// error stops Raft on this server (openraft's storage errors are fatal) — no panic.
    fn halt(&self, at: LogId, u: &drover_state::UnknownCommand) -> StorageError {
        let reason = format!(
            "cannot apply raft entry {}: {u}; this server stops applying (upgrade it to the version the leader runs)",
            at.index
        );
        tracing::error!(index = at.index, command = %u.name, version = u.version, "{reason}");
        self.store.halt(reason.clone());
        StorageError::from_io_error(
            ErrorSubject::Apply(at),
            ErrorVerb::Write,
            io::Error::new(io::ErrorKind::InvalidData, reason),
        )
    }

    fn install(&mut self, file: SnapshotFile) {
        let at = file.meta.last_log_id.map(|l| l.index).unwrap_or(0);
        if file.state.index() != at {
            // Snapshots built by earlier versions could hold entries beyond their label.
            tracing::warn!(
                snapshot_index = at,
                state_index = file.state.index(),
                "the snapshot's state was not taken at its log id (written by an earlier version)"
            );
        }
        self.store.restore(file.state);
        self.last_applied = file.meta.last_log_id;
        self.membership = file.meta.last_membership.clone();
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let state = self.state.clone();
        let meta = self.meta.clone();
        let slot = self.slot.clone();
        let bytes = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            let bytes = encode_snapshot(&meta, &state).map_err(io::Error::other)?;
            slot.store(meta.last_log_id, &bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| snapshot_err(Some(&self.meta), ErrorVerb::Write, e))?;
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

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
            if let EntryPayload::Normal(req) = &e.payload
                && let drover_state::Command::Unknown(u) = &req.command
            {
                return Err(self.halt(e.log_id, u));
            }
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

    /// Freezes the state now: the builder serializes exactly what was applied up to
    /// `last_applied`, however many entries are applied meanwhile.
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        let state = self.store.snapshot();
        let seq = self.slot.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let meta = Meta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.last_applied.map(|l| l.index).unwrap_or(0),
                seq
            ),
        };
        SnapshotBuilder {
            state,
            meta,
            slot: self.slot.clone(),
        }
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
        let slot = self.slot.clone();
        let last = meta.last_log_id;
        // Verified and durable before the live state changes.
        let file = tokio::task::spawn_blocking(move || -> io::Result<SnapshotFile> {
            let file = decode_snapshot(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            if file.meta.last_log_id != last {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the snapshot's data is at {:?}, its metadata says {last:?}",
                        file.meta.last_log_id
                    ),
                ));
            }
            slot.store(last, &bytes)?;
            Ok(file)
        })
        .await
        .map_err(|e| sm_err(ErrorVerb::Write, e))?
        .map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, e))?;
        self.install(file);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let slot = self.slot.clone();
        let read = tokio::task::spawn_blocking(move || slot.read())
            .await
            .map_err(|e| sm_err(ErrorVerb::Read, e))?
            .map_err(|e| snapshot_err(None, ErrorVerb::Read, e))?;
        Ok(read.map(|(bytes, file)| Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(index: u64) -> Meta {
        Meta {
            last_log_id: Some(openraft::LogId::new(
                openraft::CommittedLeaderId::new(1, 1),
                index,
            )),
            last_membership: Membership::default(),
            snapshot_id: format!("{index}"),
        }
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let bytes = encode_snapshot(&meta(0), &StateSnapshot::default()).unwrap();
        assert!(decode_snapshot(&bytes).is_ok());
        for i in HEADER_LEN..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(
                decode_snapshot(&bad).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
        let short = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode_snapshot(short),
            Err(SnapshotError::Truncated { .. })
        ));
    }

    #[test]
    fn a_headerless_snapshot_of_an_earlier_version_still_reads() {
        let old = serde_json::json!({
            "meta": serde_json::to_value(meta(0)).unwrap(),
            "state": serde_json::to_value(StateSnapshot::default()).unwrap(),
        });
        let file = decode_snapshot(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(file.meta.snapshot_id, "0");
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let slot = SnapshotSlot {
            path: dir.path().join("snapshot"),
            on_disk: Mutex::new(None),
            seq: AtomicU64::new(0),
        };
        let newer = encode_snapshot(&meta(20), &StateSnapshot::default()).unwrap();
        let older = encode_snapshot(&meta(10), &StateSnapshot::default()).unwrap();
        assert!(slot.store(meta(20).last_log_id, &newer).unwrap());
        assert!(!slot.store(meta(10).last_log_id, &older).unwrap());
        let (_, file) = slot.read().unwrap().unwrap();
        assert_eq!(file.meta.last_log_id.unwrap().index, 20);
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("snapshot")]);
    }
}
