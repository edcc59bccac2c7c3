//! Serving `alloc logs` sessions: the task's rotated log files
//! (`<alloc dir>/alloc/logs/<task>.<stdout|stderr>.<n>`) streamed to the server on their own
//! RPC, followed as they grow and rotate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_proto::node::node_service_client::NodeServiceClient;
use drover_proto::node::{FsRequest, LogsRequest, SessionChunk, SessionOpen, session_open};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::Client;

/// Serves one server-to-client session on its own RPC: a log stream, or an allocation
/// action (restart, signal) answered with an empty chunk or an error.
pub async fn serve(client: Client, mut rpc: NodeServiceClient<Channel>, open: SessionOpen) {
    let Some(kind) = open.kind else { return };
    let kind = match kind {
        session_open::Kind::Exec(req) => {
            return crate::exec::serve_exec(client, rpc, open.session_id, req).await;
        }
        other => other,
    };
    let (tx, rx) = mpsc::channel::<SessionChunk>(8);
    let call = tokio::spawn(async move { rpc.session_data(ReceiverStream::new(rx)).await });
    let id = open.session_id.clone();
    let result = match kind {
        session_open::Kind::Logs(req) => stream_logs(&client, &req, &id, &tx).await,
        session_open::Kind::Fs(req) => serve_fs(&client, &req, &id, &tx).await,
        session_open::Kind::Stats(req) => match crate::exec::alloc_stats(&client, &req).await {
            Ok(data) => tx
                .send(SessionChunk {
                    session_id: id.clone(),
                    data,
                    error: String::new(),
                    eof: false,
                })
                .await
                .map_err(|_| "the server went away".to_string()),
            Err(e) => Err(e),
        },
        session_open::Kind::Exec(_) => unreachable!("exec sessions are served above"),
        session_open::Kind::Action(a) => {
            let runner = client
                .inner
                .runners
                .lock()
                .expect("runners lock")
                .get(&a.alloc_id)
                .cloned();
            match runner {
                Some(r) => r.act(&a.task, &a.action, &a.signal).await,
                None => Err(format!(
                    "allocation {} is not running on this node",
                    a.alloc_id
                )),
            }
        }
    };
    let last = match result {
        Ok(()) => SessionChunk {
            session_id: id,
            data: vec![],
            error: String::new(),
            eof: true,
        },
        Err(e) => SessionChunk {
            session_id: id,
            data: vec![],
            error: e,
            eof: true,
        },
    };
    let _ = tx.send(last).await;
    drop(tx);
    let _ = call.await;
}

pub fn alloc_root(client: &Client, alloc_id: &str) -> PathBuf {
    client.inner.config.data_dir.join("alloc").join(alloc_id)
}

/// The log files of a task's stream, oldest first.
fn log_files(dir: &Path, task: &str, stream: &str) -> Vec<(u64, PathBuf)> {
    let prefix = format!("{task}.{stream}.");
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let n: u64 = name.strip_prefix(&prefix)?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    v.sort();
    v
}

async fn stream_logs(
    client: &Client,
    req: &LogsRequest,
    id: &str,
    tx: &mpsc::Sender<SessionChunk>,
) -> Result<(), String> {
    if req.stream != "stdout" && req.stream != "stderr" {
        return Err(format!(
            "unknown log type {:?}: use stdout or stderr",
            req.stream
        ));
    }
    let root = alloc_root(client, &req.alloc_id);
    if !root.exists() {
        return Err(format!(
            "allocation {} has no files on this node",
            req.alloc_id
        ));
    }
    let dir = root.join("alloc").join("logs");
    let files = log_files(&dir, &req.task, &req.stream);
    if files.is_empty() && !req.follow {
        let known = client
            .inner
            .runners
            .lock()
            .expect("runners lock")
            .get(&req.alloc_id)
            .is_some_and(|r| r.has_task(&req.task));
        return if known {
            Ok(())
        } else {
            Err(format!(
                "task {:?} not found in allocation {}",
                req.task, req.alloc_id
            ))
        };
    }
    // Where to start: (file index, offset in it).
    let (mut idx, mut pos) = match files.first() {
        None => (0, 0),
        Some(_) if req.origin == "end" => {
            let (n, p) = files.last().expect("non-empty");
            let len = tokio::fs::metadata(p).await.map(|m| m.len()).unwrap_or(0);
            (*n, len.saturating_sub(req.offset.max(0) as u64))
        }
        Some((n, _)) => (*n, req.offset.max(0) as u64),
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let path = dir.join(format!("{}.{}.{}", req.task, req.stream, idx));
        let mut got = 0;
        if let Ok(mut f) = tokio::fs::File::open(&path).await {
            f.seek(std::io::SeekFrom::Start(pos))
                .await
                .map_err(|e| e.to_string())?;
            got = f.read(&mut buf).await.map_err(|e| e.to_string())?;
        }
        if got > 0 {
            pos += got as u64;
            let chunk = SessionChunk {
                session_id: id.to_string(),
                data: buf[..got].to_vec(),
                error: String::new(),
                eof: false,
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
            continue;
        }
        // Nothing more in this file: go on to the next one if the file rotated.
        if log_files(&dir, &req.task, &req.stream)
            .iter()
            .any(|(n, _)| *n > idx)
        {
            idx += 1;
            pos = 0;
            continue;
        }
        if !req.follow {
            return Ok(());
        }
        if tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Resolves `path` inside the allocation directory, refusing anything that leaves it.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, String> {
    let root = std::fs::canonicalize(root).map_err(|e| format!("allocation directory: {e}"))?;
    let p = root.join(path.trim_start_matches('/'));
    let p = std::fs::canonicalize(&p).map_err(|e| format!("{path}: {e}"))?;
    if !p.starts_with(&root) {
        return Err(format!("{path}: outside the allocation directory"));
    }
    Ok(p)
}

fn file_info(p: &Path) -> std::io::Result<serde_json::Value> {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(p)?;
    let mtime = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    Ok(serde_json::json!({
        "Name": p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        "IsDir": m.is_dir(),
        "Size": m.len(),
        "FileMode": format!("{:o}", m.permissions().mode() & 0o7777),
        "ModTime": drover_model::serde_fmt::format(mtime),
    }))
}

async fn serve_fs(
    client: &Client,
    req: &FsRequest,
    id: &str,
    tx: &mpsc::Sender<SessionChunk>,
) -> Result<(), String> {
    let root = alloc_root(client, &req.alloc_id);
    let (op, path) = (req.op.clone(), req.path.clone());
    let chunk = |data: Vec<u8>| SessionChunk {
        session_id: id.to_string(),
        data,
        error: String::new(),
        eof: false,
    };
    match op.as_str() {
        "ls" | "stat" => {
            let json = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
                let p = resolve(&root, &path)?;
                let v = if op == "stat" {
                    file_info(&p).map_err(|e| e.to_string())?
                } else {
                    let mut entries: Vec<serde_json::Value> = std::fs::read_dir(&p)
                        .map_err(|e| format!("{path}: {e}"))?
                        .flatten()
                        .filter_map(|e| file_info(&e.path()).ok())
                        .collect();
                    entries.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
                    serde_json::Value::Array(entries)
                };
                serde_json::to_vec(&v).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())??;
            let _ = tx.send(chunk(json)).await;
            Ok(())
        }
        "cat" => {
            let p = tokio::task::spawn_blocking(move || resolve(&root, &path))
                .await
                .map_err(|e| e.to_string())??;
            let mut f = tokio::fs::File::open(&p)
                .await
                .map_err(|e| format!("{}: {e}", req.path))?;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = f.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(());
                }
                if tx.send(chunk(buf[..n].to_vec())).await.is_err() {
                    return Ok(());
                }
            }
        }
        other => Err(format!("unknown fs operation {other:?}")),
    }
}
