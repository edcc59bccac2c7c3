//! The durable Raft log.
//!
//! The file starts with the magic `DRVLOG02`; each record is
//! `[len: u32 LE][body crc32: u32 LE][header crc32: u32 LE][JSON body]`, the header checksum
//! covering the first eight bytes. A record is an entry, a truncation ("drop entries from
//! index N") or a purge ("entries up to log id L are in a snapshot"). Replaying the file on
//! open rebuilds the in-memory log. Only a torn *final* record (a crash mid-append: a short
//! header, a body running past the end of the file, or a last body failing its checksum) is
//! cut off; any other damage — a flipped bit in a length field, a bad checksum with records
//! after it, a checksummed body that does not decode — stops the server with an error naming
//! the file and the offset ([`CorruptLog`]), rather than silently dropping every entry after
//! it. Files written before the header existed (`[len][crc][JSON]` records, no magic) are
//! read — scanning ahead past a bad record to tell a torn tail from corruption — and
//! rewritten in the current format.
//!
//! One I/O thread owns the file: it takes every pending request, writes them, calls
//! `fdatasync` once, and only then reports the appends durable to openraft
//! (`LogFlushed::log_io_completed`) — group commit. After a failed write or sync the thread
//! stops: that request and every later one fail, nothing is acknowledged past the failure,
//! and fsync is never retried (after EIO the kernel may have dropped the dirty pages and a
//! second fsync would report success for data that is gone).

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

/// The first bytes of a log file in the current format.
pub const MAGIC: &[u8; 8] = b"DRVLOG02";
const HEADER: usize = 12;
const LEGACY_HEADER: usize = 8;

/// The largest record the log writes or reads. Writes are refused well below it
/// (`node::MAX_ENTRY_BYTES`); a header announcing more is corruption.
pub const MAX_RECORD_BYTES: usize = 64 << 20;

#[derive(Serialize, Deserialize)]
enum Record {
    Entry(Box<Entry>),
    Truncate(u64),
    Purge(LogId),
}

/// The log file is damaged somewhere other than its final record.
#[derive(Debug, thiserror::Error)]
#[error(
    "raft log {} is corrupt at byte offset {offset}: {reason}; the server stops rather than drop the entries after it (restore the data dir from a backup, or remove this server from the cluster and let it join again with an empty data dir)",
    path.display()
)]
pub struct CorruptLog {
    pub path: PathBuf,
    pub offset: u64,
    pub reason: String,
}

fn encode(rec: &Record, out: &mut Vec<u8>) -> io::Result<()> {
    let body = serde_json::to_vec(rec).map_err(io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l as usize <= MAX_RECORD_BYTES)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a raft log record of {} bytes exceeds the {MAX_RECORD_BYTES}-byte limit",
                    body.len()
                ),
            )
        })?;
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..8].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let hcrc = crc32fast::hash(&header[..8]);
    header[8..].copy_from_slice(&hcrc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
    Ok(())
}

fn u32_at(buf: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes(buf[pos..pos + 4].try_into().expect("4 bytes"))
}

/// What decoding found: the records, and where the valid part ends (a torn final record
/// starts there).
struct Decoded {
    records: Vec<Record>,
    valid: usize,
}

struct Damage {
    offset: usize,
    reason: String,
}

/// A complete current-format record with intact checksums starts at `pos`.
fn record_at(buf: &[u8], pos: usize) -> bool {
    let Some(h) = buf.get(pos..pos + HEADER) else {
        return false;
    };
    if crc32fast::hash(&h[..8]) != u32_at(h, 8) {
        return false;
    }
    let len = u32_at(h, 0) as usize;
    len <= MAX_RECORD_BYTES
        && buf
            .get(pos + HEADER..pos + HEADER + len)
            .is_some_and(|b| crc32fast::hash(b) == u32_at(h, 4))
}

/// Decodes current-format records from `start` (just after the magic).
fn decode_all(buf: &[u8], start: usize) -> Result<Decoded, Damage> {
    let mut records = Vec::new();
    let mut pos = start;
    while pos < buf.len() {
        let torn = Ok(Decoded {
            records: Vec::new(),
            valid: pos,
        });
        let Some(h) = buf.get(pos..pos + HEADER) else {
            // A short header can only be the last thing written.
            return torn.map(|d| Decoded { records, ..d });
        };
        if crc32fast::hash(&h[..8]) != u32_at(h, 8) {
            // A header torn by a crash is the last thing in the file; a damaged one with
            // intact records after it is corruption (a flipped length byte lands here).
            if let Some(next) = (pos + 1..buf.len()).find(|q| record_at(buf, *q)) {
                return Err(Damage {
                    offset: pos,
                    reason: format!(
                        "record header checksum mismatch, with an intact record at offset {next} after it"
                    ),
                });
            }
            return torn.map(|d| Decoded { records, ..d });
        }
        let len = u32_at(h, 0) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(Damage {
                offset: pos,
                reason: format!("record length {len} exceeds the {MAX_RECORD_BYTES}-byte limit"),
            });
        }
        let end = pos + HEADER + len;
        let Some(body) = buf.get(pos + HEADER..end) else {
            // The body runs past the end of the file: the final append was torn.
            return torn.map(|d| Decoded { records, ..d });
        };
        if crc32fast::hash(body) != u32_at(h, 4) {
            if end == buf.len() {
                return torn.map(|d| Decoded { records, ..d });
            }
            return Err(Damage {
                offset: pos,
                reason: format!(
                    "record body checksum mismatch ({} bytes follow it)",
                    buf.len() - end
                ),
            });
        }
        match serde_json::from_slice(body) {
            Ok(r) => records.push(r),
            Err(e) => {
                return Err(Damage {
                    offset: pos,
                    reason: format!("a record with a valid checksum does not decode: {e}"),
                });
            }
        }
        pos = end;
    }
    Ok(Decoded {
        records,
        valid: pos,
    })
}

/// A complete legacy record that decodes starts at `pos`.
fn legacy_record_at(buf: &[u8], pos: usize) -> bool {
    let Some(h) = buf.get(pos..pos + LEGACY_HEADER) else {
        return false;
    };
    let len = u32_at(h, 0) as usize;
    buf.get(pos + LEGACY_HEADER..pos + LEGACY_HEADER + len)
        .is_some_and(|b| {
            crc32fast::hash(b) == u32_at(h, 4) && serde_json::from_slice::<Record>(b).is_ok()
        })
}

/// Decodes a file written before the magic and header checksums (`[len][crc][JSON]`).
/// Without a header checksum a damaged length looks like a torn tail, so past a bad record
/// the rest of the file is searched for an intact one: found, it is corruption.
fn decode_legacy(buf: &[u8]) -> Result<Decoded, Damage> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let bad = |reason: &str| -> Result<Decoded, Damage> {
            match (pos + 1..buf.len()).find(|q| legacy_record_at(buf, *q)) {
                Some(next) => Err(Damage {
                    offset: pos,
                    reason: format!("{reason}, with an intact record at offset {next} after it"),
                }),
                None => Ok(Decoded {
                    records: Vec::new(),
                    valid: pos,
                }),
            }
        };
        let Some(h) = buf.get(pos..pos + LEGACY_HEADER) else {
            return bad("short record header").map(|d| Decoded { records, ..d });
        };
        let len = u32_at(h, 0) as usize;
        let Some(body) = buf.get(pos + LEGACY_HEADER..pos + LEGACY_HEADER + len) else {
            return bad("record runs past the end of the file").map(|d| Decoded { records, ..d });
        };
        if crc32fast::hash(body) != u32_at(h, 4) {
            return bad("record checksum mismatch").map(|d| Decoded { records, ..d });
        }
        match serde_json::from_slice(body) {
            Ok(r) => records.push(r),
            Err(e) => {
                return bad(&format!("record does not decode ({e})"))
                    .map(|d| Decoded { records, ..d });
            }
        }
        pos += LEGACY_HEADER + len;
    }
    Ok(Decoded {
        records,
        valid: pos,
    })
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

    /// The whole file for this log: the magic, the purge marker and the live entries.
    fn compacted(&self) -> io::Result<Vec<u8>> {
        let mut all = MAGIC.to_vec();
        if let Some(p) = self.last_purged {
            encode(&Record::Purge(p), &mut all)?;
        }
        for e in self.entries.values() {
            encode(&Record::Entry(Box::new(e.clone())), &mut all)?;
        }
        Ok(all)
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
    /// Opens (or creates) the log under `dir` (blocking).
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = DiskFile::open(&dir.join("log"))?;
        Self::with_file(dir, Box::new(file))
    }

    /// Opens the log over any [`LogFile`] (tests use a crash double); `dir/log` is the name
    /// errors give it.
    pub fn with_file(dir: &Path, mut file: Box<dyn LogFile>) -> io::Result<Self> {
        let path = dir.join("log");
        let buf = file.read_all()?;
        let corrupt = |d: Damage| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                CorruptLog {
                    path: path.clone(),
                    offset: d.offset as u64,
                    reason: d.reason,
                },
            )
        };
        let warn_torn = |valid: usize| {
            tracing::warn!(
                path = %path.display(),
                offset = valid,
                dropped = buf.len() - valid,
                "raft log had a torn final record (crash mid-append); cutting it off"
            );
        };
        let mut log = Log::default();
        if buf.starts_with(MAGIC) {
            let d = decode_all(&buf, MAGIC.len()).map_err(corrupt)?;
            if d.valid < buf.len() {
                warn_torn(d.valid);
                file.truncate(d.valid as u64)?;
            }
            for r in d.records {
                log.apply(r);
            }
        } else if MAGIC.starts_with(&buf) {
            // New, or a crash while its magic was written.
            file.replace(MAGIC)?;
        } else {
            let d = decode_legacy(&buf).map_err(corrupt)?;
            if d.valid < buf.len() {
                warn_torn(d.valid);
            }
            for r in d.records {
                log.apply(r);
            }
            // Rewritten atomically in the current format (with header checksums).
            file.replace(&log.compacted()?)?;
            tracing::info!(path = %path.display(), "raft log converted to the current format");
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

    async fn read_file<T: for<'de> Deserialize<'de> + Send + 'static>(
        &self,
        name: &str,
    ) -> io::Result<Option<T>> {
        let path = self.dir.join(name);
        tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not valid: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(io::Error::other)?
    }
}

fn closed() -> io::Error {
    io::Error::other("raft log I/O thread has stopped")
}

/// The error every request gets once the log has failed.
fn stopped(first: &str) -> io::Error {
    io::Error::other(format!(
        "the raft log stopped after an I/O error ({first}); nothing more is written or acknowledged"
    ))
}

fn io_thread(mut file: Box<dyn LogFile>, rx: mpsc::Receiver<Request>, counters: Arc<SyncCounters>) {
    use std::sync::atomic::Ordering::Relaxed;
    // The first failure, once there was one: from then on nothing touches the file.
    let mut failed: Option<String> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
        }
        let mut callbacks = Vec::new();
        let mut replies = Vec::new();
        let mut result: io::Result<()> = match &failed {
            Some(f) => Err(stopped(f)),
            None => Ok(()),
        };
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
                    let r = match &failed {
                        Some(f) => Err(stopped(f)),
                        None => write_atomic(&path, &data),
                    };
                    let _ = reply.send(r);
                }
            }
        }
        if result.is_ok() && (!callbacks.is_empty() || !replies.is_empty()) {
            result = file.sync();
            counters.syncs.fetch_add(1, Relaxed);
            counters.appends.fetch_add(callbacks.len() as u64, Relaxed);
        }
        if let Err(e) = &result
            && failed.is_none()
        {
            tracing::error!(error = %e, "raft log I/O failed: the log stops; this server acknowledges nothing more");
            failed = Some(e.to_string());
        }
        for cb in callbacks {
            cb(clone_result(&result));
        }
        for r in replies {
            let _ = r.send(clone_result(&result));
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
            .await
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
            .await
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
            let mut recs = Vec::new();
            for e in entries {
                let rec = Record::Entry(Box::new(e));
                // An oversized entry is refused before anything of the batch is kept.
                encode(&rec, &mut buf).map_err(|e| log_err(ErrorVerb::Write, e))?;
                recs.push(rec);
            }
            for rec in recs {
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
        encode(&Record::Truncate(log_id.index), &mut buf)
            .map_err(|e| log_err(ErrorVerb::Delete, e))?;
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
            log.compacted().map_err(|e| log_err(ErrorVerb::Delete, e))?
        };
        self.tx
            .send(Request::Compact(compact))
            .map_err(|_| log_err(ErrorVerb::Delete, closed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn file(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = MAGIC.to_vec();
        let mut offsets = Vec::new();
        for r in records {
            offsets.push(buf.len());
            encode(r, &mut buf).unwrap();
        }
        (buf, offsets)
    }

    fn legacy(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut offsets = Vec::new();
        for r in records {
            offsets.push(buf.len());
            let body = serde_json::to_vec(r).unwrap();
            buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            buf.extend_from_slice(&body);
        }
        (buf, offsets)
    }

    fn three() -> Vec<Record> {
        vec![
            Record::Truncate(5),
            Record::Truncate(7),
            Record::Truncate(9),
        ]
    }

    #[test]
    fn torn_final_record_is_cut() {
        let (mut buf, offsets) = file(&three());
        // Every proper prefix of the last record is a torn tail.
        let full = buf.len();
        for cut in offsets[2] + 1..full {
            buf.truncate(cut);
            let d = decode_all(&buf, MAGIC.len()).unwrap_or_else(|d| {
                panic!("prefix {cut} called corrupt at {}: {}", d.offset, d.reason)
            });
            assert_eq!(d.records.len(), 2);
            assert_eq!(d.valid, offsets[2]);
        }
    }

    #[test]
    fn a_flipped_length_byte_mid_file_is_corruption_not_a_torn_tail() {
        let (buf, offsets) = file(&three());
        for bit in 0..8 {
            let mut bad = buf.clone();
            bad[offsets[1]] ^= 1 << bit;
            let Err(d) = decode_all(&bad, MAGIC.len()) else {
                panic!("a flipped length bit {bit} went unnoticed");
            };
            assert_eq!(d.offset, offsets[1]);
        }
    }

    #[test]
    fn a_bad_body_checksum_mid_file_is_corruption() {
        let (buf, offsets) = file(&three());
        let mut bad = buf.clone();
        bad[offsets[1] + HEADER + 2] ^= 0x20;
        let Err(d) = decode_all(&bad, MAGIC.len()) else {
            panic!("a damaged body went unnoticed");
        };
        assert_eq!(d.offset, offsets[1]);
        // The same damage in the final record is a torn append.
        let mut last = buf.clone();
        last[offsets[2] + HEADER + 2] ^= 0x20;
        assert_eq!(
            decode_all(&last, MAGIC.len()).ok().unwrap().valid,
            offsets[2]
        );
    }

    #[test]
    fn legacy_files_tell_corruption_from_a_torn_tail() {
        let (buf, offsets) = legacy(&three());
        let d = decode_legacy(&buf).ok().unwrap();
        assert_eq!((d.records.len(), d.valid), (3, buf.len()));
        let mut torn = buf.clone();
        torn.truncate(buf.len() - 3);
        assert_eq!(decode_legacy(&torn).ok().unwrap().valid, offsets[2]);
        // A length byte flipped in the middle record: earlier versions cut the file there.
        let mut bad = buf.clone();
        bad[offsets[1]] ^= 0x04;
        let Err(d) = decode_legacy(&bad) else {
            panic!("a flipped length in a legacy log went unnoticed");
        };
        assert_eq!(d.offset, offsets[1]);
    }

    #[test]
    fn a_legacy_log_is_read_and_rewritten_in_the_current_format() {
        let (buf, _) = legacy(&three());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("log"), &buf).unwrap();
        drop(LogStore::open(dir.path()).unwrap());
        let now = std::fs::read(dir.path().join("log")).unwrap();
        assert!(now.starts_with(MAGIC));
        assert!(decode_all(&now, MAGIC.len()).is_ok());
    }

    #[test]
    fn an_oversized_record_is_refused_not_cast() {
        let big = "x".repeat(MAX_RECORD_BYTES + 1);
        let e = openraft::Entry::<TypeConfig> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: openraft::EntryPayload::Normal(drover_state::Entry {
                time: 0,
                command: drover_state::Command::VarDelete {
                    namespace: big,
                    path: String::new(),
                    cas: None,
                },
            }),
        };
        let mut out = Vec::new();
        let err = encode(&Record::Entry(Box::new(e)), &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(out.is_empty());
    }

    /// A file whose first sync fails with EIO; it counts what is asked of it afterwards.
    struct FailingFile {
        syncs: Arc<AtomicU64>,
        appends: Arc<AtomicU64>,
    }

    impl LogFile for FailingFile {
        fn read_all(&mut self) -> io::Result<Vec<u8>> {
            Ok(Vec::new())
        }
        fn append(&mut self, _: &[u8]) -> io::Result<()> {
            self.appends.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            // The first fails; a retry would "succeed" (as Linux reports after EIO).
            if self.syncs.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(io::Error::from_raw_os_error(5))
            } else {
                Ok(())
            }
        }
        fn truncate(&mut self, _: u64) -> io::Result<()> {
            Ok(())
        }
        fn replace(&mut self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            0
        }
    }

    #[tokio::test]
    async fn after_a_failed_fsync_nothing_is_acknowledged_and_fsync_is_not_retried() {
        let dir = tempfile::tempdir().unwrap();
        let syncs = Arc::new(AtomicU64::new(0));
        let appends = Arc::new(AtomicU64::new(0));
        let store = LogStore::with_file(
            dir.path(),
            Box::new(FailingFile {
                syncs: syncs.clone(),
                appends: appends.clone(),
            }),
        )
        .unwrap();
        assert!(store.write(b"first".to_vec()).await.is_err());
        let (s, a) = (syncs.load(Ordering::SeqCst), appends.load(Ordering::SeqCst));
        for _ in 0..3 {
            let r = store.write(b"later".to_vec()).await;
            assert!(r.is_err(), "a write after a failed fsync was acknowledged");
        }
        let (tx, rx) = oneshot::channel();
        store
            .tx
            .send(Request::Append(
                b"entry".to_vec(),
                Box::new(move |r| {
                    let _ = tx.send(r);
                }),
            ))
            .unwrap();
        assert!(rx.await.unwrap().is_err());
        assert!(store.save_file("vote", b"{}".to_vec()).await.is_err());
        assert_eq!(
            syncs.load(Ordering::SeqCst),
            s,
            "fsync was retried after EIO"
        );
        assert_eq!(appends.load(Ordering::SeqCst), a, "the log kept writing");
        assert!(!dir.path().join("vote").exists());
    }
}
