//! The client's local state under `<data_dir>/client/`: the node id, the last index the
//! client applied, and per allocation a file with the allocation, its job version, the
//! sequence number of its status updates and its tasks' handles and states. Files are
//! replaced atomically (temp file, fsync, rename, fsync dir).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
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

#[derive(Clone)]
pub struct LocalState {
    dir: Arc<PathBuf>,
    node_id: Arc<str>,
}

impl LocalState {
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("allocs"))?;
        let id_path = dir.join("node-id");
        let node_id = match std::fs::read_to_string(&id_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            Ok(_) | Err(_) => {
                let id = drover_model::format_uuid(*uuid::Uuid::new_v4().as_bytes());
                write_atomic(&id_path, id.as_bytes())?;
                id
            }
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
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
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
        let data = serde_json::to_vec(a).map_err(io::Error::other)?;
        write_atomic(&self.alloc_path(&a.alloc.id), &data)
    }

    pub fn remove(&self, id: &str) {
        let _ = std::fs::remove_file(self.alloc_path(id));
    }
}

pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(d) = path.parent() {
        File::open(d)?.sync_all()?;
    }
    Ok(())
}
