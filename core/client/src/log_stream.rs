//! Streaming a task's logs (`alloc logs`): its rotated log files
//! (`<alloc dir>/alloc/logs/<task>.<stdout|stderr>.<n>`, opened through the allocation
//! directory without following links, regular files only) sent to the server as session
//! chunks, followed as they grow and rotate.

use std::io::{Read, Seek};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_beneath::{Dir, Links};
use drover_proto::node::{LogsRequest, SessionChunk};
use tokio::sync::mpsc;

use crate::Client;

/// The log files of a task's stream in `alloc/logs` (opened without following links), oldest
/// first, by their index.
fn log_files(dir: &Dir, task: &str, stream: &str) -> Vec<u64> {
    let prefix = format!("{task}.{stream}.");
    let mut v: Vec<u64> = dir
        .entries()
        .into_iter()
        .flatten()
        .filter_map(|e| e.name.to_str()?.strip_prefix(&prefix)?.parse().ok())
        .collect();
    v.sort_unstable();
    v
}

fn log_name(req: &LogsRequest, idx: u64) -> PathBuf {
    PathBuf::from(format!("{}.{}.{}", req.task, req.stream, idx))
}

pub(crate) async fn stream_logs(
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
    drover_model::check_name(&req.task).map_err(|e| format!("task {:?}: {e}", req.task))?;
    let alloc = client.alloc_dir(&req.alloc_id).map_err(|e| e.to_string())?;
    if !alloc.exists() {
        return Err(format!(
            "allocation {} has no files on this node",
            req.alloc_id
        ));
    }
    let dir = {
        let alloc = alloc.clone();
        tokio::task::spawn_blocking(move || alloc.dir(Path::new("alloc/logs"), false))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?
    };
    let dir = std::sync::Arc::new(dir);
    let (d, r) = (dir.clone(), req.clone());
    let files = tokio::task::spawn_blocking(move || log_files(&d, &r.task, &r.stream))
        .await
        .map_err(|e| e.to_string())?;
    if files.is_empty() && !req.follow {
        let known = client
            .runner(&req.alloc_id)
            .is_ok_and(|r| r.has_task(&req.task));
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
    let (mut idx, mut pos) = match (files.first(), files.last()) {
        (Some(_), Some(last)) if req.origin == "end" => {
            let (d, name) = (dir.clone(), log_name(req, *last));
            let len = tokio::task::spawn_blocking(move || {
                d.open_regular(&name, Links::Never)
                    .ok()
                    .and_then(|f| f.metadata().ok())
                    .map_or(0, |m| m.len())
            })
            .await
            .map_err(|e| e.to_string())?;
            (*last, len.saturating_sub(req.offset.max(0) as u64))
        }
        (Some(first), _) => (*first, req.offset.max(0) as u64),
        _ => (0, 0),
    };
    loop {
        let (d, r) = (dir.clone(), req.clone());
        let (data, rotated) = tokio::task::spawn_blocking(move || read_log(&d, &r, idx, pos))
            .await
            .map_err(|e| e.to_string())??;
        if !data.is_empty() {
            pos += data.len() as u64;
            let chunk = SessionChunk {
                session_id: id.to_string(),
                data,
                error: String::new(),
                eof: false,
            };
            if tx.send(chunk).await.is_err() {
                return Ok(());
            }
            continue;
        }
        if rotated {
            idx += 1;
            pos = 0;
            continue;
        }
        if !req.follow || tx.is_closed() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The next chunk of log file `idx` from `pos`; when there is none, whether a newer file
/// exists (the log rotated).
fn read_log(dir: &Dir, req: &LogsRequest, idx: u64, pos: u64) -> Result<(Vec<u8>, bool), String> {
    if let Ok(mut f) = dir.open_regular(&log_name(req, idx), Links::Never) {
        f.seek(std::io::SeekFrom::Start(pos))
            .map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let n = f.read(&mut buf).map_err(|e| e.to_string())?;
        if n > 0 {
            buf.truncate(n);
            return Ok((buf, false));
        }
    }
    let rotated = log_files(dir, &req.task, &req.stream)
        .iter()
        .any(|n| *n > idx);
    Ok((Vec::new(), rotated))
}
