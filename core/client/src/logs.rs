//! Serving `alloc logs` sessions: the task's rotated log files
//! (`<alloc dir>/alloc/logs/<task>.<stdout|stderr>.<n>`) streamed to the server on their own
//! RPC, followed as they grow and rotate.

use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_proto::node::node_service_client::NodeServiceClient;
use drover_proto::node::{LogsRequest, SessionChunk, SessionOpen, session_open};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::Client;

/// Serves one server-to-client session on its own RPC: a log stream, or an allocation
/// action (restart, signal) answered with an empty chunk or an error.
pub async fn serve(client: Client, mut rpc: NodeServiceClient<Channel>, open: SessionOpen) {
    let Some(kind) = open.kind else { return };
    let (tx, rx) = mpsc::channel::<SessionChunk>(8);
    let call = tokio::spawn(async move { rpc.session_data(ReceiverStream::new(rx)).await });
    let id = open.session_id.clone();
    let result = match kind {
        session_open::Kind::Logs(req) => stream_logs(&client, &req, &id, &tx).await,
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
