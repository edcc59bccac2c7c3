//! The durable Raft log.
//!
//! Records are `[len: u32 LE][crc32: u32 LE][JSON]`. A record is an entry, a truncation
//! ("drop entries from index N") or a purge ("entries up to log id L are in a snapshot").
//! Replaying the file on open rebuilds the in-memory log; a torn or corrupt tail (a crash
//! mid-append) is cut off. One I/O thread owns the file: it takes every pending request,
//! writes them, calls `fdatasync` once, and only then reports the appends durable to openraft
//! (`LogFlushed::log_io_completed`) — group commit.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend, RaftLogId, Vote};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::io::{DiskFile, LogFile, write_atomic};
use crate::{LogId, NodeId, StorageError, TypeConfig};

type Entry = openraft::Entry<TypeConfig>;

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Box<Entry>),
    Truncate(u64),
    Purge(LogId),
}

fn encode(rec: &Record, out: &mut Vec<u8>) {
    let body = serde_json::to_vec(rec).expect("log record serializes");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
}

/// Decodes records until the end or the first torn/corrupt one; returns them and the length
/// of the valid prefix.
fn decode_all(buf: &[u8]) -> (Vec<Record>, usize) {
    let mut recs = Vec::new();
    let mut pos = 0;
    while pos + 8 <= buf.len() {
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap()) as usize;
        let crc = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        let Some(body) = buf.get(pos + 8..pos + 8 + len) else {
            break;
        };
        if crc32fast::hash(body) != crc {
            break;
        }
        let Ok(rec) = serde_json::from_slice(body) else {
            break;
        };
        recs.push(rec);
        pos += 8 + len;
    }
    (recs, pos)
}

#[derive(Default)]
struct Log {
    entries: BTreeMap<u64, Entry>,
    last_purged: Option<LogId>,
}

impl Log {
    fn apply(&mut self, rec: Record) {
        match rec {
            Record::Entry(e) => {
                self.entries.insert(e.get_log_id().index, *e);
            }
            Record::Truncate(from) => {
                self.entries.split_off(&from);
            }
            Record::Purge(upto) => {
                self.entries = self.entries.split_off(&(upto.index + 1));
                self.last_purged = Some(upto);
            }
        }
    }
}

enum Request {
    Append(Vec<u8>, Box<dyn FnOnce(io::Result<()>) + Send>),
    /// Written and synced before the reply.
    Write(Vec<u8>, oneshot::Sender<io::Result<()>>),
    Compact(Vec<u8>),
    SaveFile(PathBuf, Vec<u8>, oneshot::Sender<io::Result<()>>),
}

/// How many fsyncs the log has issued and how many appends they covered (for benchmarks).
#[derive(Default, Debug)]
pub struct SyncCounters {
    pub syncs: std::sync::atomic::AtomicU64,
    pub appends: std::sync::atomic::AtomicU64,
}

/// The openraft log storage.
#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
    log: Arc<Mutex<Log>>,
    tx: mpsc::Sender<Request>,
    pub counters: Arc<SyncCounters>,
}

impl LogStore {
    /// Opens (or creates) the log under `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = DiskFile::open(&dir.join("log"))?;
        Self::with_file(dir, Box::new(file))
    }

    /// Opens the log over any [`LogFile`] (tests use a crash double).
    pub fn with_file(dir: &Path, mut file: Box<dyn LogFile>) -> io::Result<Self> {
        let buf = file.read_all()?;
        let (recs, valid) = decode_all(&buf);
        if valid < buf.len() {
            tracing::warn!(
                dropped = buf.len() - valid,
                "raft log had a torn tail (crash mid-append); cutting it off"
            );
            file.truncate(valid as u64)?;
        }
        let mut log = Log::default();
        for r in recs {
            log.apply(r);
        }
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(SyncCounters::default());
        let c2 = counters.clone();
        std::thread::Builder::new()
            .name("raft-log-io".into())
            .spawn(move || io_thread(file, rx, c2))?;
        Ok(LogStore {
            dir: dir.to_path_buf(),
            log: Arc::new(Mutex::new(log)),
            tx,
            counters,
        })
    }

    async fn write(&self, data: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::Write(data, tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    async fn save_file(&self, name: &str, data: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Request::SaveFile(self.dir.join(name), data, tx))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    fn read_file<T: for<'de> Deserialize<'de>>(&self, name: &str) -> io::Result<Option<T>> {
        match std::fs::read(self.dir.join(name)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn closed() -> io::Error {
    io::Error::other("raft log I/O thread has stopped")
}

fn io_thread(mut file: Box<dyn LogFile>, rx: mpsc::Receiver<Request>, counters: Arc<SyncCounters>) {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut callbacks = Vec::new();
        let mut replies = Vec::new();
        let mut result: io::Result<()> = Ok(());
        for req in batch {
            match req {
                Request::Append(data, cb) => {
                    if result.is_ok() {
                        result = file.append(&data);
                    }
                    callbacks.push(cb);
                }
                Request::Write(data, reply) => {
                    if result.is_ok() {
                        result = file.append(&data);
                    }
                    replies.push(reply);
                }
                Request::Compact(data) => {
                    // Everything before is in the rewritten content: flush what came first.
                    if result.is_ok() {
                        result = file.sync().and_then(|_| file.replace(&data));
                    }
                }
                Request::SaveFile(path, data, reply) => {
                    let _ = reply.send(write_atomic(&path, &data));
                }
            }
        }
        if !callbacks.is_empty() || !replies.is_empty() {
            if result.is_ok() {
                result = file.sync();
                counters.syncs.fetch_add(1, Relaxed);
                counters.appends.fetch_add(callbacks.len() as u64, Relaxed);
            }
            for cb in callbacks {
                cb(clone_result(&result));
            }
            for r in replies {
                let _ = r.send(clone_result(&result));
            }
        }
        if let Err(e) = result {
            tracing::error!(error = %e, "raft log I/O failed");
        }
    }
}

fn clone_result(r: &io::Result<()>) -> io::Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
    }
}

fn log_err(verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Logs, verb, e)
}

fn vote_err(verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(ErrorSubject::Vote, verb, e)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let log = self.log.lock().expect("log lock");
        Ok(log.entries.range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let log = self.log.lock().expect("log lock");
        let last = log
            .entries
            .values()
            .next_back()
            .map(|e| *e.get_log_id())
            .or(log.last_purged);
        Ok(LogState {
            last_purged_log_id: log.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let data = serde_json::to_vec(vote).expect("vote serializes");
        self.save_file("vote", data)
            .await
            .map_err(|e| vote_err(ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_file("vote")
            .map_err(|e| vote_err(ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let data = serde_json::to_vec(&committed).expect("log id serializes");
        self.save_file("committed", data)
            .await
            .map_err(|e| log_err(ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self
            .read_file::<Option<LogId>>("committed")
            .map_err(|e| log_err(ErrorVerb::Read, e))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut buf = Vec::new();
        {
            let mut log = self.log.lock().expect("log lock");
            for e in entries {
                let rec = Record::Entry(Box::new(e));
                encode(&rec, &mut buf);
                log.apply(rec);
            }
        }
        let cb = Box::new(move |r: io::Result<()>| callback.log_io_completed(r));
        self.tx
            .send(Request::Append(buf, cb))
            .map_err(|_| log_err(ErrorVerb::Write, closed()))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let mut buf = Vec::new();
        encode(&Record::Truncate(log_id.index), &mut buf);
        self.log
            .lock()
            .expect("log lock")
            .apply(Record::Truncate(log_id.index));
        self.write(buf)
            .await
            .map_err(|e| log_err(ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let compact = {
            let mut log = self.log.lock().expect("log lock");
            log.apply(Record::Purge(log_id));
            // Purged records are dead weight: the purge marker plus the live entries
            // replace the whole file (snapshots are rare, so this stays cheap).
            let mut all = Vec::new();
            encode(&Record::Purge(log_id), &mut all);
            for e in log.entries.values() {
                encode(&Record::Entry(Box::new(e.clone())), &mut all);
            }
            all
        };
        self.tx
            .send(Request::Compact(compact))
            .map_err(|_| log_err(ErrorVerb::Delete, closed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tail_is_cut() {
        let mut buf = Vec::new();
        encode(&Record::Truncate(5), &mut buf);
        let good = buf.len();
        encode(&Record::Truncate(7), &mut buf);
        buf.truncate(buf.len() - 3);
        let (recs, valid) = decode_all(&buf);
        assert_eq!(recs.len(), 1);
        assert_eq!(valid, good);
    }
}
