//! Server-to-client sessions: each arrives as a `SessionOpen` on the client's stream and is
//! served on its own RPC. This module dispatches them by kind — log streams
//! ([`crate::log_stream`]), file system reads ([`crate::alloc_fs`]), resource usage
//! ([`crate::alloc_stats`]), service check results, allocation actions (restart, signal), and exec sessions
//! ([`crate::exec`], which have their own bidirectional RPC).

use drover_proto::node::node_service_client::NodeServiceClient;
use drover_proto::node::{SessionChunk, SessionOpen, session_open};
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
        session_open::Kind::Logs(req) => {
            crate::log_stream::stream_logs(&client, &req, &id, &tx).await
        }
        session_open::Kind::Fs(req) => crate::alloc_fs::serve_fs(&client, &req, &id, &tx).await,
        session_open::Kind::Stats(req) => {
            match crate::alloc_stats::alloc_stats(&client, &req).await {
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
            }
        }
        session_open::Kind::Checks(req) => tx
            .send(SessionChunk {
                session_id: id.clone(),
                data: client.check_results().json(&req.alloc_id),
                error: String::new(),
                eof: false,
            })
            .await
            .map_err(|_| "the server went away".to_string()),
        session_open::Kind::Exec(_) => unreachable!("exec sessions are served above"),
        session_open::Kind::Action(a) => match client.runner(&a.alloc_id) {
            Ok(r) => r.act(&a.task, &a.action, &a.signal).await,
            Err(e) => Err(e),
        },
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
