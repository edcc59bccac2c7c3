//! openraft's RPCs over tonic. Requests and replies are openraft's own types as JSON inside
//! `RaftMessage`; a reply carries `Result<Reply, RaftError>` so remote errors keep their type.

use drover_proto::raft::RaftMessage;
use drover_proto::raft::raft_client::RaftClient;
use drover_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use crate::{NodeId, Raft, RaftNode, ServerNode, TypeConfig};

/// Raft messages can be large (plans, snapshots chunks): far above tonic's 4 MiB default.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Makes connections to other servers (over TLS when the dialer has it).
#[derive(Clone, Default)]
pub struct Network {
    pub(crate) dialer: drover_tls::Dialer,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &ServerNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            client: None,
            dialer: self.dialer.clone(),
        }
    }
}

/// A connection to one server, dialled lazily and re-dialled after errors.
pub struct Connection {
    target: NodeId,
    addr: String,
    client: Option<RaftClient<Channel>>,
    dialer: drover_tls::Dialer,
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, ServerNode, RaftError<NodeId, E>>;

impl Connection {
    async fn client(&mut self) -> Result<RaftClient<Channel>, Unreachable> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let ep = self
            .dialer
            .endpoint(&self.addr)
            .map_err(|e| Unreachable::new(&e))?
            .connect_timeout(std::time::Duration::from_secs(2));
        let ch = self
            .dialer
            .connect(ep)
            .await
            .map_err(|e| Unreachable::new(&e))?;
        let c = RaftClient::new(ch)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        self.client = Some(c.clone());
        Ok(c)
    }

    async fn call<Req, Resp, E>(&mut self, rpc: &str, req: &Req) -> Result<Resp, RpcErr<E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let json = serde_json::to_vec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.call_json(rpc, json).await
    }

    async fn call_json<Resp, E>(&mut self, rpc: &str, json: Vec<u8>) -> Result<Resp, RpcErr<E>>
    where
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let mut c = self.client().await.map_err(RPCError::Unreachable)?;
        let msg = RaftMessage {
            json,
            error: String::new(),
            encoding_version: drover_state::ENCODING_VERSION,
        };
        let reply = match rpc {
            "append" => c.append_entries(msg).await,
            "snapshot" => c.install_snapshot(msg).await,
            _ => c.vote(msg).await,
        };
        let reply = match reply {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.client = None;
                return Err(RPCError::Unreachable(Unreachable::new(&status)));
            }
        };
        if !reply.error.is_empty() {
            let e = std::io::Error::other(reply.error);
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let res: Result<Resp, RaftError<NodeId, E>> = serde_json::from_slice(&reply.json)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        res.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                ServerNode::new(self.addr.clone(), ""),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        let json =
            serde_json::to_vec(&rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let n = rpc.entries.len();
        if json.len() > MAX_MESSAGE_BYTES && n > 1 {
            // Too many entries for one message: openraft retries with fewer.
            let fit = (n as u128 * MAX_MESSAGE_BYTES as u128 / json.len() as u128) as u64;
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fit.clamp(1, n as u64 - 1)),
            ));
        }
        self.call_json("append", json).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.call("snapshot", &rpc).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        self.call("vote", &rpc).await
    }
}

/// The receiving side, served on the server's RPC port.
pub struct RaftService {
    raft: Raft,
    node: RaftNode,
}

impl RaftService {
    pub fn server(node: RaftNode) -> RaftServer<RaftService> {
        RaftServer::new(RaftService {
            raft: node.raft.clone(),
            node,
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn decode<T: DeserializeOwned>(m: &RaftMessage) -> Result<T, tonic::Status> {
    serde_json::from_slice(&m.json)
        .map_err(|e| tonic::Status::invalid_argument(format!("malformed raft message: {e}")))
}

fn encode<T: Serialize>(v: &T) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
    let json = serde_json::to_vec(v).map_err(|e| tonic::Status::internal(e.to_string()))?;
    Ok(tonic::Response::new(RaftMessage {
        json,
        error: String::new(),
        encoding_version: drover_state::ENCODING_VERSION,
    }))
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(req.get_ref())?;
        let resp = self.raft.append_entries(rpc).await;
        if resp.is_ok() {
            *self.node.leader_contact.lock().expect("contact lock") =
                Some(std::time::Instant::now());
        }
        encode(&resp)
    }

    async fn install_snapshot(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(req.get_ref())?;
        encode(&self.raft.install_snapshot(rpc).await)
    }

    async fn vote(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: VoteRequest<NodeId> = decode(req.get_ref())?;
        encode(&self.raft.vote(rpc).await)
    }

    async fn cluster(
        &self,
        req: tonic::Request<RaftMessage>,
    ) -> Result<tonic::Response<RaftMessage>, tonic::Status> {
        let rpc: crate::cluster::ClusterRequest = decode(req.get_ref())?;
        encode(&self.node.handle_cluster(rpc).await)
    }
}
