//! `alloc fs` on the client: `ls`, `stat`, `cat`, `readat` and `stream` of paths inside an
//! allocation directory, all through [`AllocDir`]: no link is followed, only regular files
//! are read (a planted FIFO or device node is refused without being opened), and files in a
//! task's `secrets/` are never read (as Nomad refuses them).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use drover_proto::node::{FsRequest, SessionChunk};
use tokio::sync::mpsc;

use crate::Client;
use crate::alloc_dir::AllocDir;

/// Bytes read and sent at a time.
const CHUNK: usize = 64 * 1024;
/// How often a followed file is checked for growth.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Most entries `ls` lists.
const MAX_LIST: usize = 10_000;

/// `path` (as the API gives it, `/` being the allocation directory) as a relative path,
/// refusing `..` (nothing here climbs).
fn relative(path: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => {
                return Err(format!(
                    "{path}: \"..\" is refused: it could lead outside the allocation directory"
                ));
            }
        }
    }
    Ok(out)
}

/// Whether `rel` is inside a task's `secrets/` (`<task>/secrets/...`).
fn in_secrets(rel: &Path) -> bool {
    let mut c = rel.components();
    matches!(
        (c.next(), c.next()),
        (Some(Component::Normal(task)), Some(Component::Normal(d))) if task != "alloc" && d == "secrets"
    )
}

fn info(name: &str, st: &nix::sys::stat::FileStat) -> serde_json::Value {
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mtime = st.st_mtime.saturating_mul(1_000_000_000) + st.st_mtime_nsec;
    serde_json::json!({
        "Name": name,
        "IsDir": is_dir,
        "Size": st.st_size,
        "FileMode": format!("{:o}", st.st_mode & 0o7777),
        "ModTime": drover_model::serde_fmt::format(mtime),
    })
}

fn ls_or_stat(dir: &AllocDir, op: &str, path: &str) -> Result<Vec<u8>, String> {
    let rel = relative(path)?;
    let st = dir.stat(&rel).map_err(|e| e.to_string())?;
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "/".into());
    let v = if op == "stat" {
        info(&name, &st)
    } else {
        let d = dir.dir(&rel, false).map_err(|e| e.to_string())?;
        let entries = d.entries().map_err(|e| format!("{path}: {e}"))?;
        let mut out = Vec::new();
        for e in entries.into_iter().take(MAX_LIST) {
            let Ok(st) = d.stat(Path::new(&e.name), drover_beneath::Links::Never) else {
                continue;
            };
            out.push(info(&e.name.to_string_lossy(), &st));
        }
        serde_json::Value::Array(out)
    };
    serde_json::to_vec(&v).map_err(|e| e.to_string())
}

/// Opens a file for `cat`, `readat` or `stream`.
fn open_for_reading(dir: &AllocDir, path: &str) -> Result<std::fs::File, String> {
    let rel = relative(path)?;
    if in_secrets(&rel) {
        return Err(format!(
            "{path}: reading files in a task's secrets/ is not allowed"
        ));
    }
    dir.open_regular(&rel).map_err(|e| e.to_string())
}

pub(crate) async fn serve_fs(
    client: &Client,
    req: &FsRequest,
    id: &str,
    tx: &mpsc::Sender<SessionChunk>,
) -> Result<(), String> {
    let dir = client.alloc_dir(&req.alloc_id).map_err(|e| e.to_string())?;
    if !dir.exists() {
        return Err(format!(
            "allocation {} has no files on this node",
            req.alloc_id
        ));
    }
    let chunk = |data: Vec<u8>| SessionChunk {
        session_id: id.to_string(),
        data,
        error: String::new(),
        eof: false,
    };
    let (op, path) = (req.op.clone(), req.path.clone());
    match op.as_str() {
        "ls" | "stat" => {
            let json = tokio::task::spawn_blocking(move || ls_or_stat(&dir, &op, &path))
                .await
                .map_err(|e| e.to_string())??;
            let _ = tx.send(chunk(json)).await;
            Ok(())
        }
        "cat" | "readat" | "stream" => {
            let (p, origin) = (path.clone(), req.origin.clone());
            let (offset, limit) = (req.offset.max(0) as u64, req.limit.max(0) as u64);
            let file = tokio::task::spawn_blocking(move || -> Result<_, String> {
                let mut f = open_for_reading(&dir, &p)?;
                let len = f.metadata().map_err(|e| format!("{p}: {e}"))?.len();
                let start = match (op.as_str(), origin.as_str()) {
                    ("cat", _) => 0,
                    ("stream", "end") => len.saturating_sub(offset),
                    _ => offset.min(len),
                };
                f.seek(SeekFrom::Start(start))
                    .map_err(|e| format!("{p}: {e}"))?;
                Ok(f)
            })
            .await
            .map_err(|e| e.to_string())??;
            let budget = (req.op == "readat" && limit > 0).then_some(limit);
            let follow = req.op == "stream" && req.follow;
            send_file(file, budget, follow, tx, &chunk).await
        }
        other => Err(format!(
            "unknown fs operation {other:?}: use ls, stat, cat, readat or stream"
        )),
    }
}

/// Sends the file from where it stands, in chunks, never holding more than one; stops after
/// `budget` bytes, at the end, or (`follow`) when the server goes away.
async fn send_file(
    file: std::fs::File,
    mut budget: Option<u64>,
    follow: bool,
    tx: &mpsc::Sender<SessionChunk>,
    chunk: &impl Fn(Vec<u8>) -> SessionChunk,
) -> Result<(), String> {
    let mut file = Some(file);
    loop {
        let want = budget.map_or(CHUNK, |b| (b as usize).min(CHUNK));
        if want == 0 {
            return Ok(());
        }
        let mut f = file.take().expect("file");
        let (f, data) = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; want];
            let n = f.read(&mut buf);
            (
                f,
                n.map(|n| {
                    buf.truncate(n);
                    buf
                }),
            )
        })
        .await
        .map_err(|e| e.to_string())?;
        file = Some(f);
        let data = data.map_err(|e| e.to_string())?;
        if data.is_empty() {
            if !follow || tx.is_closed() {
                return Ok(());
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            continue;
        }
        if let Some(b) = budget.as_mut() {
            *b -= data.len() as u64;
        }
        if tx.send(chunk(data)).await.is_err() {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_and_dot_dot_refused() {
        assert!(in_secrets(&relative("/web/secrets/token").unwrap()));
        assert!(in_secrets(&relative("web/secrets").unwrap()));
        assert!(!in_secrets(&relative("/alloc/secrets/x").unwrap()));
        assert!(!in_secrets(&relative("/web/local/secrets").unwrap()));
        assert!(relative("/web/../web/secrets/token").is_err());
    }
}
