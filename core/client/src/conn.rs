//! The client's one stream to a server: register, heartbeat, receive allocation pushes and
//! session requests, send status updates until acknowledged. Reconnects with backoff to the
//! next known server.

use std::collections::BTreeMap;
use std::time::Duration;

use drover_model::{Allocation, Job};
use drover_proto::node::node_service_client::NodeServiceClient;
use drover_proto::node::{
    AllocUpdate, AllocUpdates, ClientMessage, Heartbeat, Register, client_message, server_message,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Client;

const MAX_MESSAGE: usize = 64 * 1024 * 1024;

pub async fn run(client: Client) {
    let servers = client.inner.config.servers.clone();
    let mut shutdown = client.inner.shutdown.subscribe();
    let mut backoff = Duration::from_millis(100);
    let mut i = 0usize;
    // A server that is not the leader names it; the next attempt goes there.
    let mut redirect: Option<String> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let addr = match redirect.take() {
            Some(a) => a,
            None => {
                i += 1;
                servers[(i - 1) % servers.len().max(1)].clone()
            }
        };
        let started = std::time::Instant::now();
        let result = session(&client, &addr).await;
        client.inner.server.send_replace(None);
        if started.elapsed() > Duration::from_secs(10) {
            // A session that lasted: the next failure starts the backoff afresh.
            backoff = Duration::from_millis(100);
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                if let Some((_, leader)) = e.split_once("the leader is at ") {
                    let leader = leader.split_whitespace().next().unwrap_or("").to_string();
                    if !leader.is_empty() && leader != addr {
                        tracing::info!(server = %addr, %leader, "redirected to the leader");
                        redirect = Some(leader);
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                }
                tracing::warn!(server = %addr, error = %e, "server stream ended; reconnecting")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

fn send(tx: &mpsc::Sender<ClientMessage>, m: client_message::Msg) -> Result<(), String> {
    tx.try_send(ClientMessage {
        msg: Some(m),
        encoding_version: drover_proto::node::ENCODING_VERSION,
    })
    .map_err(|e| format!("stream send failed: {e}"))
}

async fn session(client: &Client, addr: &str) -> Result<(), String> {
    let dialer = &client.inner.config.dialer;
    let ep = dialer
        .endpoint(addr)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    let channel = dialer
        .connect(ep)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let mut rpc = NodeServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let (tx, rx) = mpsc::channel(256);
    let node = client.node().await;
    let node_json = serde_json::to_vec(&node).map_err(|e| e.to_string())?;
    send(
        &tx,
        client_message::Msg::Register(Register {
            node_json,
            last_index: client.inner.state.last_index(),
        }),
    )?;
    let mut inbound = rpc
        .attach(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("attach refused: {}", e.message()))?
        .into_inner();
    let mut heartbeat = tokio::time::interval(Duration::from_secs(3));
    let mut outbox = client.inner.outbox_changed.subscribe();
    outbox.mark_changed();
    let mut shutdown = client.inner.shutdown.subscribe();
    let mut node_changed = client.inner.node_changed.subscribe();
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    tracing::info!(server = %addr, node_id = client.node_id(), "connected to server");
    loop {
        tokio::select! {
            m = inbound.message() => {
                let m = m.map_err(|e| format!("stream error: {}", e.message()))?.ok_or("server closed the stream")?;
                match m.msg {
                    Some(server_message::Msg::Registered(r)) => {
                        let st = client.inner.state.clone();
                        if !r.node_secret.is_empty() && st.node_secret() != r.node_secret {
                            let secret = r.node_secret.clone();
                            tokio::task::spawn_blocking(move || st.set_node_secret(&secret))
                                .await
                                .map_err(|e| e.to_string())?
                                .map_err(|e| format!("cannot persist the node secret: {e}"))?;
                        }
                        let every = Duration::from_millis(r.heartbeat_ttl_ms.max(300) / 3);
                        heartbeat = tokio::time::interval(every);
                        // Registered: reads on behalf of tasks may go to this server now.
                        let node_secret = r.node_secret;
                        client.inner.server.send_replace(Some(crate::ServerLink { rpc: rpc.clone(), node_secret }));
                    }
                    Some(server_message::Msg::AllocPush(p)) => {
                        let mut allocs = Vec::new();
                        for a in &p.allocs_json {
                            match serde_json::from_slice::<Allocation>(a) {
                                Ok(a) => allocs.push(a),
                                Err(e) => tracing::error!(error = %e, "server pushed a malformed allocation; skipped"),
                            }
                        }
                        let jobs: Vec<Job> = p.jobs_json.iter().filter_map(|j| serde_json::from_slice(j).ok()).collect();
                        let all: BTreeMap<String, u64> = p.alloc_index.into_iter().collect();
                        client.apply_push(p.index, &all, allocs, jobs).await;
                    }
                    Some(server_message::Msg::UpdatesAck(a)) => {
                        for s in a.acked {
                            client.acked(&s.alloc_id, s.seq);
                        }
                    }
                    Some(server_message::Msg::ServicesPush(p)) => {
                        crate::catalog_sync::apply(&client.inner.catalog, p);
                    }
                    Some(server_message::Msg::SessionOpen(open)) => {
                        tokio::spawn(crate::sessions::serve(client.clone(), rpc.clone(), open));
                    }
                    None => {}
                }
            }
            _ = node_changed.changed() => {
                let node = client.node().await;
                let node_json = serde_json::to_vec(&node).map_err(|e| e.to_string())?;
                send(&tx, client_message::Msg::Register(Register { node_json, last_index: 0 }))?;
            }
            _ = heartbeat.tick() => {
                send(&tx, client_message::Msg::Heartbeat(Heartbeat {}))?;
                sent.clear(); // resend whatever is still unacknowledged
                outbox.mark_changed();
            }
            _ = outbox.changed() => {
                let pending: Vec<_> = client.inner.outbox.lock().expect("outbox lock").values().cloned().collect();
                let mut updates = Vec::new();
                for u in pending {
                    if sent.insert(u.alloc_id.clone(), u.seq) != Some(u.seq) {
                        let update_json = serde_json::to_vec(&u).expect("update serializes");
                        updates.push(AllocUpdate { alloc_id: u.alloc_id, seq: u.seq, update_json });
                    }
                }
                if !updates.is_empty() {
                    send(&tx, client_message::Msg::AllocUpdates(AllocUpdates { updates }))?;
                }
            }
            _ = shutdown.changed() => return Ok(()),
        }
    }
}
