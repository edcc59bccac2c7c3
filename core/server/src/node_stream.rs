//! The client stream (node.proto): registration, heartbeats, allocation pushes down,
//! status updates up, and server-to-client sessions (`alloc logs`).

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::time::Duration;

use drover_model::{AllocClientUpdate, Node, NodeStatus};
use drover_proto::node::node_service_server::{NodeService, NodeServiceServer};
use drover_proto::node::{
    AllocPush, AllocSeq, ClientMessage, ExecInput, ExecOutput, LogsRequest, Registered,
    ServerMessage, ServicesUpdate, ServicesUpdateReply, SessionAck, SessionChunk, SessionOpen,
    SignIdentitiesReply, SignIdentitiesRequest, UpdatesAck, VariablesReply, VariablesRequest,
    client_message, exec_output, server_message, session_open,
};
use drover_state::Command;
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::{Server, ServerError, new_id};

/// The data of a server-to-client session: chunks, or the client's error.
pub type LogsSession = mpsc::Receiver<Result<Vec<u8>, String>>;

/// Where a session's data goes: to the HTTP handler waiting on it.
pub(crate) type SessionSink = mpsc::Sender<Result<Vec<u8>, String>>;

/// An exec session between the HTTP caller and the client: input goes down, output up.
pub struct ExecSession {
    pub input: mpsc::Sender<ExecInput>,
    pub output: mpsc::Receiver<exec_output::Msg>,
}

/// An exec session opened on a client that has not called ExecSession yet.
pub(crate) struct ExecPending {
    input: mpsc::Receiver<ExecInput>,
    output: mpsc::Sender<exec_output::Msg>,
}

/// A connected client: where to send it messages.
pub(crate) struct NodeLink {
    conn_id: String,
    tx: mpsc::Sender<Result<ServerMessage, Status>>,
}

#[derive(Clone)]
pub struct NodeStreamService {
    server: Server,
}

impl NodeStreamService {
    pub fn server(server: Server) -> NodeServiceServer<NodeStreamService> {
        NodeServiceServer::new(NodeStreamService { server })
            .max_decoding_message_size(MAX_CLIENT_MESSAGE)
            .max_encoding_message_size(64 * 1024 * 1024)
    }
}

/// The largest message a client may send (what a peer can make the server buffer before
/// it has registered, too).
pub const MAX_CLIENT_MESSAGE: usize = 16 * 1024 * 1024;
/// How long a new stream may take to send its Register.
pub const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest Register (the fingerprinted node as JSON).
pub const MAX_NODE_JSON: usize = 1024 * 1024;

/// What a client's allocation update may carry into Raft: bounded before it is committed.
pub mod report_limits {
    /// The largest update (as JSON) accepted at all; a larger one is dropped.
    pub const MAX_UPDATE_BYTES: usize = 1024 * 1024;
    /// Events kept per task: the newest (Nomad keeps 10).
    pub const MAX_EVENTS_PER_TASK: usize = 10;
    /// Bytes kept of a free-text field (event messages, descriptions).
    pub const MAX_TEXT: usize = 1024;
    /// Bytes kept of an event's type.
    pub const MAX_KIND: usize = 64;
    /// Entries kept of each list in an allocation's DNS configuration.
    pub const MAX_DNS_ENTRIES: usize = 16;
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
fn cap_text(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max.saturating_sub(3);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
}

/// Bounds what a client reports about an allocation before it enters Raft: only the tasks
/// of the allocation's group, the newest events of each, free text cut to size.
fn bound_update(up: &mut AllocClientUpdate, tasks: Option<&BTreeSet<String>>) {
    use report_limits::*;
    cap_text(&mut up.client_description, MAX_TEXT);
    if let Some(tasks) = tasks {
        up.task_states.retain(|name, _| tasks.contains(name));
    }
    for state in up.task_states.values_mut() {
        if state.events.len() > MAX_EVENTS_PER_TASK {
            let cut = state.events.len() - MAX_EVENTS_PER_TASK;
            state.events.drain(..cut);
        }
        for e in &mut state.events {
            cap_text(&mut e.kind, MAX_KIND);
            cap_text(&mut e.message, MAX_TEXT);
            cap_text(&mut e.display_message, MAX_TEXT);
            cap_text(&mut e.download_error, MAX_TEXT);
            cap_text(&mut e.driver_message, MAX_TEXT);
        }
    }
    if let Some(net) = &mut up.network_status {
        cap_text(&mut net.interface_name, MAX_KIND);
        cap_text(&mut net.address, MAX_KIND);
        cap_text(&mut net.address_ipv6, MAX_KIND);
        if let Some(dns) = &mut net.dns {
            for list in [&mut dns.servers, &mut dns.searches, &mut dns.options] {
                list.truncate(MAX_DNS_ENTRIES);
                for s in list.iter_mut() {
                    cap_text(s, MAX_KIND);
                }
            }
        }
    }
}

fn msg(m: server_message::Msg) -> Result<ServerMessage, Status> {
    Ok(ServerMessage {
        msg: Some(m),
        encoding_version: drover_proto::node::ENCODING_VERSION,
    })
}

fn write_status(e: impl std::fmt::Display) -> Status {
    Status::unavailable(e.to_string())
}

impl Server {
    /// Opens a log session on the client running `alloc_id`'s node.
    pub async fn open_logs(
        &self,
        node_id: &str,
        req: LogsRequest,
    ) -> Result<LogsSession, ServerError> {
        self.open_session(node_id, session_open::Kind::Logs(req))
            .await
    }

    /// Restarts or signals an allocation's task(s) on its client; returns when the client has.
    pub async fn alloc_action(
        &self,
        node_id: &str,
        action: drover_proto::node::AllocAction,
    ) -> Result<(), ServerError> {
        let mut rx = self
            .open_session(node_id, session_open::Kind::Action(action))
            .await?;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(120), async {
            while let Some(chunk) = rx.recv().await {
                chunk.map_err(ServerError::Invalid)?;
            }
            Ok(())
        });
        answer.await.map_err(|_| {
            ServerError::Invalid("the client did not answer within 2 minutes".into())
        })?
    }

    /// Reads from an allocation's directory on its client (`alloc fs`).
    pub async fn alloc_fs(
        &self,
        node_id: &str,
        req: drover_proto::node::FsRequest,
    ) -> Result<LogsSession, ServerError> {
        self.open_session(node_id, session_open::Kind::Fs(req))
            .await
    }

    /// Runs a command in an allocation's task on its client (`alloc exec`).
    pub async fn alloc_exec(
        &self,
        node_id: &str,
        req: drover_proto::node::ExecRequest,
    ) -> Result<ExecSession, ServerError> {
        let tx = self.node_link(node_id)?;
        let session_id = new_id();
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, out_rx) = mpsc::channel(16);
        self.inner
            .exec_sessions
            .lock()
            .expect("sessions lock")
            .insert(
                session_id.clone(),
                ExecPending {
                    input: in_rx,
                    output: out_tx,
                },
            );
        let open = SessionOpen {
            session_id: session_id.clone(),
            kind: Some(session_open::Kind::Exec(req)),
        };
        if tx
            .send(msg(server_message::Msg::SessionOpen(open)))
            .await
            .is_err()
        {
            self.inner
                .exec_sessions
                .lock()
                .expect("sessions lock")
                .remove(&session_id);
            return Err(ServerError::NodeNotConnected(node_id.to_string()));
        }
        Ok(ExecSession {
            input: in_tx,
            output: out_rx,
        })
    }

    /// The resource usage of an allocation's tasks, Nomad's AllocResourceUsage as JSON.
    pub async fn alloc_stats(
        &self,
        node_id: &str,
        req: drover_proto::node::StatsRequest,
    ) -> Result<Vec<u8>, ServerError> {
        self.one_answer(node_id, session_open::Kind::Stats(req))
            .await
    }

    /// An allocation's latest service check results on its client (Nomad's JSON: check id
    /// -> result).
    pub async fn alloc_checks(
        &self,
        node_id: &str,
        req: drover_proto::node::ChecksRequest,
    ) -> Result<Vec<u8>, ServerError> {
        self.one_answer(node_id, session_open::Kind::Checks(req))
            .await
    }

    /// A session the client answers at once, in chunks gathered here.
    async fn one_answer(
        &self,
        node_id: &str,
        kind: session_open::Kind,
    ) -> Result<Vec<u8>, ServerError> {
        let mut rx = self.open_session(node_id, kind).await?;
        let answer = tokio::time::timeout(std::time::Duration::from_secs(30), async {
            let mut data = Vec::new();
            while let Some(chunk) = rx.recv().await {
                data.extend(chunk.map_err(ServerError::Invalid)?);
            }
            Ok(data)
        });
        answer.await.map_err(|_| {
            ServerError::Invalid("the client did not answer within 30 seconds".into())
        })?
    }

    fn node_link(
        &self,
        node_id: &str,
    ) -> Result<mpsc::Sender<Result<ServerMessage, Status>>, ServerError> {
        let nodes = self.inner.nodes.lock().expect("nodes lock");
        nodes
            .get(node_id)
            .map(|l| l.tx.clone())
            .ok_or_else(|| ServerError::NodeNotConnected(node_id.to_string()))
    }

    async fn open_session(
        &self,
        node_id: &str,
        kind: session_open::Kind,
    ) -> Result<LogsSession, ServerError> {
        let tx = self.node_link(node_id)?;
        let session_id = new_id();
        let (data_tx, data_rx) = mpsc::channel(16);
        self.inner
            .sessions
            .lock()
            .expect("sessions lock")
            .insert(session_id.clone(), data_tx);
        let open = SessionOpen {
            session_id: session_id.clone(),
            kind: Some(kind),
        };
        if tx
            .send(msg(server_message::Msg::SessionOpen(open)))
            .await
            .is_err()
        {
            self.inner
                .sessions
                .lock()
                .expect("sessions lock")
                .remove(&session_id);
            return Err(ServerError::NodeNotConnected(node_id.to_string()));
        }
        Ok(data_rx)
    }

    /// Registers (or re-registers) a node; returns its secret.
    async fn register_node(&self, mut node: Node) -> Result<String, Status> {
        if node.node_pool.is_empty() {
            node.node_pool = drover_model::DEFAULT_NODE_POOL.into();
        }
        if node.node_pool == drover_model::ALL_NODE_POOL
            || !drover_model::valid_node_pool_name(&node.node_pool)
        {
            return Err(Status::invalid_argument(format!(
                "node {} names node pool {:?}: a node's pool must be a valid name other than the built-in \"all\"",
                node.id, node.node_pool
            )));
        }
        let snap = self.store().snapshot();
        match snap.node(&node.id) {
            Some(old)
                if !old.secret_id.is_empty() && !same_secret(&old.secret_id, &node.secret_id) =>
            {
                return Err(Status::permission_denied(format!(
                    "node {} is registered with another secret: a node id cannot be taken over (remove the client's data dir to join as a new node)",
                    node.id
                )));
            }
            Some(old) => node.secret_id = old.secret_id.clone(),
            None if node.secret_id.is_empty() => node.secret_id = new_id(),
            None => {}
        }
        let secret = node.secret_id.clone();
        node.status = NodeStatus::Ready;
        node.status_description = String::new();
        let unchanged = snap.node(&node.id).is_some_and(|old| {
            let mut o = old.clone();
            o.create_index = node.create_index;
            o.modify_index = node.modify_index;
            o.status_updated_at = node.status_updated_at;
            o == node
        });
        if !unchanged {
            self.raft()
                .write(Command::NodeRegister { node })
                .await
                .map_err(write_status)?;
        }
        Ok(secret)
    }
}

/// Serves an attached client's messages until its stream ends, then forgets its link
/// (unless a newer connection of the node replaced it).
async fn serve_node(
    server: Server,
    node_id: String,
    conn_id: String,
    mut inbound: Streaming<ClientMessage>,
    tx: mpsc::Sender<Result<ServerMessage, Status>>,
    pusher: tokio::task::JoinHandle<()>,
) {
    loop {
        match inbound.message().await {
            Ok(Some(m)) => {
                server.inner.heartbeats.beat(&node_id);
                handle_message(&server, &node_id, m, &tx).await;
            }
            Ok(None) => break,
            Err(e) => {
                tracing::info!(error = %e, "client stream failed");
                break;
            }
        }
    }
    pusher.abort();
    let mut nodes = server.inner.nodes.lock().expect("nodes lock");
    if nodes.get(&node_id).is_some_and(|l| l.conn_id == conn_id) {
        nodes.remove(&node_id);
    }
    tracing::info!("client detached");
}

/// One message from an attached client: a heartbeat, allocation updates, or a node update.
async fn handle_message(
    server: &Server,
    node_id: &str,
    m: ClientMessage,
    tx: &mpsc::Sender<Result<ServerMessage, Status>>,
) {
    match m.msg {
        Some(client_message::Msg::Heartbeat(_)) => {
            // A node marked down that still beats comes back ready.
            let down = server
                .store()
                .snapshot()
                .node(node_id)
                .is_some_and(|n| n.status != NodeStatus::Ready);
            if down
                && let Some(n) = server.store().snapshot().node(node_id).cloned()
                && let Err(e) = server.register_node(n).await
            {
                tracing::warn!(error = %e, "could not mark node ready again");
            }
        }
        Some(client_message::Msg::AllocUpdates(u)) => {
            if let Err(e) = handle_updates(server, node_id, u.updates, tx).await {
                tracing::warn!(error = %e, "allocation updates not committed; the client resends them");
            }
        }
        Some(client_message::Msg::Register(r)) => {
            // The node changed (a driver's health, its attributes).
            match serde_json::from_slice::<Node>(&r.node_json) {
                Ok(n) if n.id == node_id => {
                    if let Err(e) = server.register_node(n).await {
                        tracing::warn!(error = %e, "node update refused");
                    }
                }
                Ok(_) => tracing::warn!("a node update for another node id; ignored"),
                Err(e) => tracing::warn!(error = %e, "malformed node update; ignored"),
            }
        }
        None => {
            tracing::warn!("empty message on an attached stream; ignored");
        }
    }
}

#[tonic::async_trait]
impl NodeService for NodeStreamService {
    type AttachStream = Pin<Box<dyn Stream<Item = Result<ServerMessage, Status>> + Send>>;

    async fn attach(
        &self,
        req: Request<Streaming<ClientMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        // Clients attach to the leader: it holds the heartbeat timers. Another server says
        // where the leader is, and the client goes there.
        match self.server.raft().leader() {
            Some((id, _)) if id == self.server.raft().id() => {}
            Some((_, addr)) => {
                return Err(Status::failed_precondition(format!(
                    "this server is not the leader; the leader is at {addr}"
                )));
            }
            None => return Err(Status::unavailable("no cluster leader")),
        }
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no Register within {REGISTER_TIMEOUT:?} of attaching"
                ))
            })??
            .ok_or_else(|| Status::invalid_argument("stream closed before Register"))?;
        if first.encoding_version > drover_proto::node::ENCODING_VERSION {
            tracing::info!(
                version = first.encoding_version,
                reads = drover_proto::node::ENCODING_VERSION,
                "a newer client attached: fields this server does not know are ignored"
            );
        }
        let Some(client_message::Msg::Register(reg)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message on the stream must be Register",
            ));
        };
        if reg.node_json.len() > MAX_NODE_JSON {
            return Err(Status::invalid_argument(format!(
                "Register.node_json is {} bytes, above the limit of {MAX_NODE_JSON}",
                reg.node_json.len()
            )));
        }
        let node: Node = serde_json::from_slice(&reg.node_json).map_err(|e| {
            Status::invalid_argument(format!("Register.node_json is not a valid node: {e}"))
        })?;
        if node.id.is_empty() {
            return Err(Status::invalid_argument(
                "Register.node_json: node id is empty",
            ));
        }
        let node_id = node.id.clone();
        let server = self.server.clone();
        let node_secret = server.register_node(node).await?;
        server.inner.heartbeats.beat(&node_id);
        tracing::info!(node_id, last_index = reg.last_index, "client attached");

        let (tx, rx) = mpsc::channel(64);
        let conn_id = new_id();
        server.inner.nodes.lock().expect("nodes lock").insert(
            node_id.clone(),
            NodeLink {
                conn_id: conn_id.clone(),
                tx: tx.clone(),
            },
        );
        let ttl = server.config().heartbeat_ttl;
        let _ = tx
            .send(msg(server_message::Msg::Registered(Registered {
                node_id: node_id.clone(),
                heartbeat_ttl_ms: ttl.as_millis() as u64,
                node_secret,
            })))
            .await;

        let span = tracing::info_span!("node", node_id = %node_id);
        // Allocations and the service catalog go down the stream until either pusher
        // stops (the stream closed, or this server is no longer the leader).
        let allocs = push_allocs(server.clone(), node_id.clone(), reg.last_index, tx.clone());
        let catalog = crate::catalog_push::push(server.clone(), tx.clone());
        let pusher = tokio::spawn(
            async move {
                tokio::select! {
                    _ = allocs => {}
                    _ = catalog => {}
                }
            }
            .instrument(span.clone()),
        );
        tokio::spawn(serve_node(server, node_id, conn_id, inbound, tx, pusher).instrument(span));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_services(
        &self,
        req: Request<ServicesUpdate>,
    ) -> Result<Response<ServicesUpdateReply>, Status> {
        let req = req.into_inner();
        let snap = self.server.store().snapshot();
        snap.node(&req.node_id)
            .filter(|n| !n.secret_id.is_empty() && same_secret(&n.secret_id, &req.node_secret))
            .ok_or_else(|| {
                Status::permission_denied(format!(
                    "node {:?} is unknown or presented the wrong secret",
                    req.node_id
                ))
            })?;
        let command = crate::service_updates::command(
            &snap,
            &req.node_id,
            &req.upserts_json,
            &req.delete_ids,
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let index = match command {
            Some(c) => {
                self.server
                    .raft()
                    .write(c)
                    .await
                    .map_err(write_status)?
                    .index
            }
            None => 0,
        };
        Ok(Response::new(ServicesUpdateReply { index }))
    }

    async fn read_variables(
        &self,
        req: Request<VariablesRequest>,
    ) -> Result<Response<VariablesReply>, Status> {
        let req = req.into_inner();
        let store = self.server.store();
        let snap = store.snapshot();
        let alloc = node_alloc(&snap, &req.node_id, &req.node_secret, &req.alloc_id)?;
        let ns = alloc.namespace.clone();
        // The bare index (what a template watcher waits on) reveals no variable; every
        // other read is the task's, under its identity.
        let reader = if req.path.is_empty() && !req.list {
            None
        } else {
            let w =
                crate::identity::verify_workload(&snap, &req.identity, crate::identity::now_secs())
                    .map_err(|e| {
                        Status::permission_denied(format!(
                            "the task's workload identity is refused: {e}"
                        ))
                    })?;
            if w.claims.nomad_allocation_id != alloc.id {
                return Err(Status::permission_denied(format!(
                    "the workload identity is allocation {}'s, not {}'s",
                    w.claims.nomad_allocation_id, alloc.id
                )));
            }
            Some(w)
        };
        let readable = |path: &str| {
            reader
                .as_ref()
                .is_some_and(|w| variable_readable(w, &ns, path))
        };
        if !req.list && !req.path.is_empty() && !readable(&req.path) {
            return Err(Status::permission_denied(format!(
                "Permission denied: task {:?} of job {:?} may not read variable {:?} (variables under nomad/ are readable only by their own job, group and task: nomad/jobs/<job>[/<group>[/<task>]])",
                reader
                    .as_ref()
                    .map(|w| w.claims.nomad_task.as_str())
                    .unwrap_or(""),
                alloc.job_id,
                req.path
            )));
        }
        let snap = if req.wait_ms > 0 {
            let wait = Duration::from_millis(req.wait_ms).min(Duration::from_secs(300));
            store
                .wait_for(drover_state::Table::Variables, req.min_index, wait)
                .await
        } else {
            snap
        };
        let encode =
            |v: &drover_model::Variable| serde_json::to_vec(v).expect("a variable serializes");
        let variables_json = if req.list {
            snap.variables()
                .filter(|v| v.namespace == ns && v.path.starts_with(&req.path))
                .filter(|v| readable(&v.path))
                .map(|v| {
                    encode(&drover_model::Variable {
                        items: Default::default(),
                        encrypted: None,
                        ..v.clone()
                    })
                })
                .collect()
        } else {
            match snap.variable(&ns, &req.path) {
                // Decrypted here: the client never sees ciphertext or keys.
                Some(v) => vec![encode(
                    &self
                        .server
                        .open_variable(&snap, v)
                        .await
                        .map_err(|e| Status::unavailable(e.to_string()))?,
                )],
                None => Vec::new(),
            }
        };
        Ok(Response::new(VariablesReply {
            variables_json,
            index: snap.table_index(drover_state::Table::Variables),
        }))
    }

    async fn sign_identities(
        &self,
        req: Request<SignIdentitiesRequest>,
    ) -> Result<Response<SignIdentitiesReply>, Status> {
        let req = req.into_inner();
        let snap = self.server.store().snapshot();
        let alloc = node_alloc(&snap, &req.node_id, &req.node_secret, &req.alloc_id)?.clone();
        let signed = self
            .server
            .sign_identities(&alloc, &req.task, &req.names)
            .await
            .map_err(|e| match e {
                ServerError::Invalid(m) => Status::failed_precondition(m),
                ServerError::NotFound(m) => Status::not_found(m),
                e => Status::unavailable(e.to_string()),
            })?;
        Ok(Response::new(SignIdentitiesReply {
            identities: signed
                .into_iter()
                .map(|s| drover_proto::node::SignedIdentity {
                    name: s.name,
                    jwt: s.jwt,
                    expires_at_ms: s.expires_at.map_or(0, |e| e.saturating_mul(1000)),
                    issued_at_ms: s.issued_at.saturating_mul(1000),
                })
                .collect(),
        }))
    }

    async fn session_data(
        &self,
        req: Request<Streaming<SessionChunk>>,
    ) -> Result<Response<SessionAck>, Status> {
        let mut inbound = req.into_inner();
        let mut sink: Option<(String, SessionSink)> = None;
        let result = loop {
            let chunk = match inbound.message().await {
                Ok(Some(c)) => c,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            if sink.is_none() {
                let tx = self
                    .server
                    .inner
                    .sessions
                    .lock()
                    .expect("sessions lock")
                    .get(&chunk.session_id)
                    .cloned();
                let Some(tx) = tx else {
                    break Err(Status::not_found(format!(
                        "no open session {}",
                        chunk.session_id
                    )));
                };
                sink = Some((chunk.session_id.clone(), tx));
            }
            let (_, tx) = sink.as_ref().expect("sink set");
            if !chunk.error.is_empty() {
                let _ = tx.send(Err(chunk.error)).await;
                break Ok(());
            }
            if !chunk.data.is_empty() && tx.send(Ok(chunk.data)).await.is_err() {
                break Err(Status::cancelled("the reader went away"));
            }
            if chunk.eof {
                break Ok(());
            }
        };
        if let Some((id, _)) = sink {
            self.server
                .inner
                .sessions
                .lock()
                .expect("sessions lock")
                .remove(&id);
        }
        result.map(|_| Response::new(SessionAck {}))
    }

    type ExecSessionStream = Pin<Box<dyn Stream<Item = Result<ExecInput, Status>> + Send>>;

    async fn exec_session(
        &self,
        req: Request<Streaming<ExecOutput>>,
    ) -> Result<Response<Self::ExecSessionStream>, Status> {
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("ExecSession needs its session id first"))?;
        let pending = self
            .server
            .inner
            .exec_sessions
            .lock()
            .expect("sessions lock")
            .remove(&first.session_id)
            .ok_or_else(|| {
                Status::not_found(format!("no open exec session {}", first.session_id))
            })?;
        let output = pending.output;
        tokio::spawn(async move {
            let mut next = first.msg;
            loop {
                if let Some(m) = next.take() {
                    let done = matches!(
                        m,
                        exec_output::Msg::ExitCode(_) | exec_output::Msg::Error(_)
                    );
                    if output.send(m).await.is_err() || done {
                        return;
                    }
                }
                match inbound.message().await {
                    Ok(Some(o)) => next = o.msg,
                    Ok(None) => return,
                    Err(e) => {
                        let _ = output
                            .send(exec_output::Msg::Error(format!(
                                "the client's exec stream failed: {e}"
                            )))
                            .await;
                        return;
                    }
                }
            }
        });
        let input = tokio_stream::StreamExt::map(ReceiverStream::new(pending.input), Ok);
        Ok(Response::new(Box::pin(input)))
    }
}

async fn handle_updates(
    server: &Server,
    node_id: &str,
    updates: Vec<drover_proto::node::AllocUpdate>,
    tx: &mpsc::Sender<Result<ServerMessage, Status>>,
) -> Result<(), ServerError> {
    let snap = server.store().snapshot();
    let mut parsed = Vec::new();
    let mut acked = Vec::new();
    for u in updates {
        if u.update_json.len() > report_limits::MAX_UPDATE_BYTES {
            tracing::warn!(alloc_id = %u.alloc_id, bytes = u.update_json.len(), "allocation update above the size limit; dropped");
            acked.push(AllocSeq {
                alloc_id: u.alloc_id,
                seq: u.seq,
            });
            continue;
        }
        match serde_json::from_slice::<AllocClientUpdate>(&u.update_json) {
            Ok(mut up)
                if snap
                    .alloc(&up.alloc_id)
                    .is_some_and(|a| a.node_id == node_id) =>
            {
                acked.push(AllocSeq {
                    alloc_id: u.alloc_id.clone(),
                    seq: u.seq,
                });
                let tasks: Option<BTreeSet<String>> = snap.alloc(&up.alloc_id).and_then(|a| {
                    let job = snap.job_version(&a.namespace, &a.job_id, a.job_version)?;
                    let group = job.group(&a.task_group)?;
                    Some(group.tasks.iter().map(|t| t.name.clone()).collect())
                });
                bound_update(&mut up, tasks.as_ref());
                parsed.push(up);
            }
            Ok(up) => {
                tracing::warn!(alloc_id = %up.alloc_id, "update for an allocation not on this node; dropped");
                acked.push(AllocSeq {
                    alloc_id: u.alloc_id,
                    seq: u.seq,
                });
            }
            Err(e) => {
                tracing::warn!(alloc_id = %u.alloc_id, error = %e, "malformed allocation update; dropped");
                acked.push(AllocSeq {
                    alloc_id: u.alloc_id,
                    seq: u.seq,
                });
            }
        }
    }
    if !parsed.is_empty() {
        server
            .raft()
            .write(Command::AllocClientUpdate {
                updates: parsed,
                evals: vec![],
            })
            .await?;
    }
    let _ = tx
        .send(msg(server_message::Msg::UpdatesAck(UpdatesAck { acked })))
        .await;
    Ok(())
}

/// Pushes the node's allocations whenever the servers change them.
async fn push_allocs(
    server: Server,
    node_id: String,
    last_index: u64,
    tx: mpsc::Sender<Result<ServerMessage, Status>>,
) {
    let store = server.store().clone();
    let mut changed = store.subscribe();
    let mut metrics = server.raft().raft().metrics();
    let mut sent: Option<BTreeMap<String, u64>> = None;
    let mut sent_jobs: BTreeSet<(String, String, u64)> = BTreeSet::new();
    loop {
        let snap = store.snapshot();
        let current: BTreeMap<String, u64> = snap
            .allocs_by_node(&node_id)
            .map(|a| (a.id.clone(), a.alloc_modify_index))
            .collect();
        if sent.as_ref() != Some(&current) {
            let mut allocs_json = Vec::new();
            let mut jobs_json = Vec::new();
            for a in snap.allocs_by_node(&node_id) {
                let new = match &sent {
                    None => a.alloc_modify_index > last_index,
                    Some(s) => s.get(&a.id) != Some(&a.alloc_modify_index),
                };
                if !new {
                    continue;
                }
                allocs_json.push(serde_json::to_vec(a).expect("alloc serializes"));
                let key = (a.namespace.clone(), a.job_id.clone(), a.job_version);
                if !sent_jobs.contains(&key) {
                    if let Some(j) = snap.job_version(&a.namespace, &a.job_id, a.job_version) {
                        jobs_json.push(serde_json::to_vec(j).expect("job serializes"));
                    }
                    sent_jobs.insert(key);
                }
            }
            let push = AllocPush {
                index: snap.index(),
                alloc_index: current.clone().into_iter().collect(),
                allocs_json,
                jobs_json,
            };
            if tx
                .send(msg(server_message::Msg::AllocPush(push)))
                .await
                .is_err()
            {
                return;
            }
            sent = Some(current);
        }
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(30), changed.changed()) => {
                if r.is_ok_and(|r| r.is_err()) {
                    return;
                }
            }
            r = metrics.changed() => {
                let leading = metrics.borrow().state == openraft::ServerState::Leader;
                if r.is_err() || !leading {
                    // The client reconnects to the new leader.
                    let _ = tx
                        .send(Err(Status::unavailable(
                            "this server is no longer the leader; reconnect",
                        )))
                        .await;
                    return;
                }
            }
        }
    }
}

/// The allocation `alloc_id`, if the node presenting `node_secret` is known and the
/// allocation is placed on it.
fn node_alloc<'a>(
    snap: &'a drover_state::StateSnapshot,
    node_id: &str,
    node_secret: &str,
    alloc_id: &str,
) -> Result<&'a drover_model::Allocation, Status> {
    let node = snap
        .node(node_id)
        .filter(|n| !n.secret_id.is_empty() && same_secret(&n.secret_id, node_secret))
        .ok_or_else(|| {
            Status::permission_denied(format!(
                "node {node_id:?} is unknown or presented the wrong secret"
            ))
        })?;
    snap.alloc(alloc_id)
        .filter(|a| a.node_id == node.id)
        .ok_or_else(|| {
            Status::permission_denied(format!(
                "allocation {alloc_id:?} is not placed on node {}",
                node.id
            ))
        })
}

/// Whether the task with workload identity `w` may read variable `path` of its
/// allocation's namespace `ns` from a template: under `nomad/` (Nomad's reserved prefix)
/// only its own `nomad/jobs/<job>[/<group>[/<task>]]`; elsewhere, any (the namespace is
/// the allocation's; ACL policies attached to jobs are not applied here yet).
fn variable_readable(w: &crate::identity::Workload, ns: &str, path: &str) -> bool {
    if path == "nomad" || path.starts_with("nomad/") {
        w.may_read_variable(ns, path)
    } else {
        w.claims.nomad_namespace == ns
    }
}

/// Compares node secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
