//! The client's local state under `<data_dir>/client/`: the node id, the last index the
//! client applied, and per allocation a file with the allocation, its job version, the
//! sequence number of its status updates and its tasks' handles and states. Files are
//! replaced atomically (temp file, fsync, rename, fsync dir). They hold job env, templates
//! and the node secret: every file is created 0600 at open (never chmodded afterwards),
//! `client/` and `client/allocs/` are 0700, and modes an earlier version or a loose umask
//! left are repaired when the state is opened.
//!
//! An allocation file is `{"v": <version>, ...the LocalAlloc}` ([`STATE_VERSION`]; files
//! written before versions have no `v` and are version 1). Unknown fields are ignored on
//! read; a file that does not decode is reported (naming its version) and skipped.
//!
//! The node id is the client's identity: a `node-id` that exists but cannot be read (or is
//! empty) stops the client with an error naming the file; a new id is minted only when the
//! file does not exist.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use drover_model::{Allocation, Job, TaskState};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalTask {
    /// The driver's task handle (driver.proto TaskHandle, protobuf-encoded).
    pub handle: Option<Vec<u8>>,
    pub state: TaskState,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalAlloc {
    pub alloc: Allocation,
    pub job: Job,
    /// The sequence number of the last status update sent.
    pub seq: u64,
    pub tasks: BTreeMap<String, LocalTask>,
}

impl LocalAlloc {
    pub fn new(alloc: Allocation, job: Job) -> Self {
        LocalAlloc {
            alloc,
            job,
            seq: 0,
            tasks: BTreeMap::new(),
        }
    }
}

/// The version of the allocation files this build writes (1: before versions).
pub const STATE_VERSION: u32 = 2;

/// An allocation file as written: the version, then the allocation's state.
#[derive(Serialize)]
struct AllocFileRef<'a> {
    v: u32,
    #[serde(flatten)]
    alloc: &'a LocalAlloc,
}

#[derive(Deserialize)]
struct AllocFile {
    #[serde(default = "unversioned")]
    v: u32,
    #[serde(flatten)]
    alloc: LocalAlloc,
}

fn unversioned() -> u32 {
    1
}

/// Decodes an allocation file; the error names the version that wrote it.
fn decode_alloc(bytes: &[u8]) -> Result<LocalAlloc, String> {
    match serde_json::from_slice::<AllocFile>(bytes) {
        Ok(f) => {
            if f.v > STATE_VERSION {
                tracing::warn!(alloc_id = %f.alloc.alloc.id, version = f.v, "allocation state written by a newer client: its unknown fields are ignored");
            }
            Ok(f.alloc)
        }
        Err(e) => {
            #[derive(Deserialize)]
            struct Version {
                #[serde(default = "unversioned")]
                v: u32,
            }
            let v = serde_json::from_slice::<Version>(bytes).map_or(0, |x| x.v);
            Err(format!(
                "{e} (written at state version {v}; this client reads up to {STATE_VERSION})"
            ))
        }
    }
}

#[derive(Clone)]
pub struct LocalState {
    dir: Arc<PathBuf>,
    node_id: Arc<str>,
}

/// The mode of every client state file.
pub const FILE_MODE: u32 = 0o600;
/// The mode of `client/` and `client/allocs/`.
pub const DIR_MODE: u32 = 0o700;

impl LocalState {
    /// Opens the state (blocking), creating it if new; repairs the modes of what exists.
    pub fn open(dir: &Path) -> io::Result<Self> {
        ensure_private_dir(dir)?;
        ensure_private_dir(&dir.join("allocs"))?;
        repair_files(dir)?;
        repair_files(&dir.join("allocs"))?;
        let id_path = dir.join("node-id");
        let unreadable = |why: String| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the node id in {} {why}; refusing to start as a new node (restore the file, or remove it to register this machine as a new node)",
                    id_path.display()
                ),
            )
        };
        let node_id = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) => return Err(unreadable("is empty".into())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = drover_model::format_uuid(*uuid::Uuid::new_v4().as_bytes());
                write_atomic(&id_path, id.as_bytes())?;
                id
            }
            Err(e) => return Err(unreadable(format!("cannot be read ({e})"))),
        };
        Ok(LocalState {
            dir: Arc::new(dir.to_path_buf()),
            node_id: node_id.into(),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node secret the servers issued, if any yet.
    pub fn node_secret(&self) -> String {
        std::fs::read_to_string(self.dir.join("node-secret"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    }

    pub fn set_node_secret(&self, secret: &str) -> io::Result<()> {
        write_atomic(&self.dir.join("node-secret"), secret.as_bytes())
    }

    pub fn last_index(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("last-index"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn set_last_index(&self, index: u64) {
        if let Err(e) = write_atomic(&self.dir.join("last-index"), index.to_string().as_bytes()) {
            tracing::error!(error = %e, "cannot persist the client's last index");
        }
    }

    fn alloc_path(&self, id: &str) -> PathBuf {
        self.dir.join("allocs").join(format!("{id}.json"))
    }

    pub fn load_allocs(&self) -> Vec<LocalAlloc> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(self.dir.join("allocs")) else {
            return out;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| decode_alloc(&b))
            {
                Ok(a) => out.push(a),
                Err(e) => {
                    tracing::error!(path = %p.display(), error = %e, "unreadable allocation state; skipped")
                }
            }
        }
        out
    }

    /// Persists an allocation's state durably (blocking: call from spawn_blocking).
    pub fn save(&self, a: &LocalAlloc) -> io::Result<()> {
        let file = AllocFileRef {
            v: STATE_VERSION,
            alloc: a,
        };
        let data = serde_json::to_vec(&file).map_err(io::Error::other)?;
        write_atomic(&self.alloc_path(&a.alloc.id), &data)
    }

    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.alloc_path(id));
    }
}

pub use drover_durable::write_atomic;

/// Creates `dir` 0700 (whatever the umask) or repairs its mode.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Makes the regular files directly in `dir` 0600 (state written by earlier versions), and
/// removes temporary files a crash left.
fn repair_files(dir: &Path) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = std::fs::symlink_metadata(e.path())?;
        if !meta.file_type().is_file() {
            continue;
        }
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
        } else if meta.permissions().mode() & 0o7777 != FILE_MODE {
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(FILE_MODE))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_unreadable_node_id_stops_the_client_instead_of_minting_a_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = LocalState::open(dir.path()).unwrap().node_id().to_string();
        assert_eq!(LocalState::open(dir.path()).unwrap().node_id(), first);
        let id_path = dir.path().join("node-id");
        // A read error (here: a directory where the file should be).
        std::fs::remove_file(&id_path).unwrap();
        std::fs::create_dir(&id_path).unwrap();
        let err = LocalState::open(dir.path())
            .err()
            .expect("opened without its node id");
        assert!(
            err.to_string().contains(&id_path.display().to_string()),
            "{err}"
        );
        assert!(id_path.is_dir(), "the unreadable node id was replaced");
        // An empty file is no id either.
        std::fs::remove_dir(&id_path).unwrap();
        std::fs::write(&id_path, "").unwrap();
        let err = LocalState::open(dir.path())
            .err()
            .expect("opened with an empty node id");
        assert!(err.to_string().contains("is empty"), "{err}");
        assert_eq!(std::fs::read_to_string(&id_path).unwrap(), "");
    }

    #[test]
    fn alloc_files_are_versioned_and_those_of_580767e_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let st = LocalState::open(dir.path()).unwrap();
        // Composed from rows 580767e wrote (LocalAlloc's form has not changed since).
        let old = include_bytes!("../testdata/580767e/alloc.json");
        std::fs::write(dir.path().join("allocs/alloc-1.json"), old).unwrap();
        let loaded = st.load_allocs();
        assert_eq!(loaded.len(), 1);
        let a = &loaded[0];
        assert_eq!(
            (a.alloc.id.as_str(), a.job.id.as_str(), a.seq),
            ("alloc-1", "fixture-job", 4)
        );
        assert_eq!(a.tasks["server"].handle.as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(a.tasks["server"].state.restarts, 1);
        // Saved again, it carries the version and reads back the same.
        st.save(a).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("allocs/alloc-1.json")).unwrap())
                .unwrap();
        assert_eq!(raw["v"], STATE_VERSION);
        assert_eq!(st.load_allocs()[0].alloc, a.alloc);
        // A newer client's file: unknown fields are ignored; one that does not decode is
        // reported with its version.
        let mut newer = raw.clone();
        newer["v"] = 9.into();
        newer["future"] = true.into();
        assert!(decode_alloc(newer.to_string().as_bytes()).is_ok());
        newer["seq"] = "not a number".into();
        let err = decode_alloc(newer.to_string().as_bytes()).unwrap_err();
        assert!(err.contains("state version 9"), "{err}");
    }

    #[test]
    fn state_files_are_private_from_creation_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let client = dir.path().join("client");
        // Under umask 000 (restored afterwards; the mode comes from open(2), not the umask).
        // SAFETY: umask(2) only swaps the process mask; the old one is restored below.
        let old = unsafe { libc::umask(0) };
        let opened = LocalState::open(&client);
        let st = opened.unwrap();
        st.set_node_secret("s3cret").unwrap();
        st.set_last_index(7);
        let alloc = drover_model::Allocation {
            id: "a1".into(),
            ..Default::default()
        };
        let saved = st.save(&LocalAlloc::new(alloc, drover_model::Job::default()));
        // SAFETY: restores the mask saved above.
        unsafe { libc::umask(old) };
        saved.unwrap();
        assert_eq!(mode(&client), DIR_MODE);
        assert_eq!(mode(&client.join("allocs")), DIR_MODE);
        for f in ["node-id", "node-secret", "last-index", "allocs/a1.json"] {
            assert_eq!(mode(&client.join(f)), FILE_MODE, "{f}");
        }
        // State an earlier version left world-readable is repaired on open.
        std::fs::set_permissions(&client, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(
            client.join("allocs/a1.json"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        LocalState::open(&client).unwrap();
        assert_eq!(mode(&client), DIR_MODE);
        assert_eq!(mode(&client.join("allocs/a1.json")), FILE_MODE);
    }
}
