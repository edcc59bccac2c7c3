//! The HTTP API: Nomad's paths and JSON shapes, blocking queries (`?index=&wait=`), and log
//! streaming from the clients through the server.
//!
//! Every route is declared once in [`routes`]' table (methods, path, capability, body limit,
//! timeout); the handlers live in one module per resource and talk to the cluster only
//! through [`drover_server::Server`].

pub mod acl;
mod acl_objects;
mod acl_policies;
mod acl_roles;
mod acl_tokens;
mod agent;
mod allocations;
pub mod backup;
mod error;
mod evaluations;
mod events;
mod exec;
pub mod guard;
mod identity;
mod jobs;
mod keyring;
mod leader;
pub mod leader_proxy;
pub mod limits;
mod logs;
mod namespaces;
mod node_pools;
mod nodes;
mod operator;
mod plugins;
mod query;
mod request_body;
pub mod routes;
mod scheduler_config;
mod search;
mod services;
pub mod tls_rotation;
mod variables;

use axum::Router;
use drover_server::Server;
use serde::Serialize;

pub use allocations::MIN_ACTION_PREFIX;
pub use error::ApiError;

/// What the agent says about itself (`/v1/agent/self`).
#[derive(Clone, Debug, Serialize)]
pub struct AgentInfo {
    pub name: String,
    pub region: String,
    pub datacenter: String,
    pub http_addr: String,
    pub rpc_addr: String,
    pub version: String,
}

#[derive(Clone)]
pub struct ApiState {
    pub server: Server,
    pub agent: AgentInfo,
    /// The client's plugin host, when this agent runs a client.
    pub plugins: Option<std::sync::Arc<drover_plugin_host::PluginHost>>,
    /// How the HTTP listener is exposed (for the Host check of [`guard`]).
    pub exposure: guard::Exposure,
    /// ACL enforcement: the agent's `acl` settings and the compiled tokens.
    pub acl: std::sync::Arc<acl::Resolver>,
    /// How a follower forwards node-bound requests to the leader.
    pub leader_proxy: leader_proxy::LeaderProxy,
    /// The CA made for you, on the server holding it (`/v1/operator/tls/rotate-ca`).
    pub ca_rotation: Option<std::sync::Arc<dyn tls_rotation::CaRotation>>,
}

/// The API: the routes of [`routes::table`], behind the request guard and the leader
/// middleware.
pub fn router(state: ApiState) -> Router {
    routes::build(&state)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            leader::known_leader,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}
