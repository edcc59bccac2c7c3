//! Writing service registrations the way a client does, for tests and benchmarks that need
//! more instances than a job would make: `NodeService.UpdateServices` with the node's id and
//! secret, read from a `-dev` agent's data dir.

use drover_model::ServiceRegistration;

use crate::Agent;

/// Registers `regs` (at most 1,024, each of an allocation running on the agent's node, its id
/// starting `_nomad-task-<alloc id>-`) through the agent's RPC address; panics on refusal.
pub fn update_services(agent: &Agent, regs: &[ServiceRegistration]) {
    let data = std::env::temp_dir().join(format!("drover-dev-{}", agent.pid()));
    let node_id = std::fs::read_to_string(data.join("client/node-id")).unwrap();
    let node_secret = std::fs::read_to_string(data.join("client/node-secret")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use drover_proto::node::node_service_client::NodeServiceClient;
        let mut c = NodeServiceClient::connect(format!("http://{}", agent.rpc_addr()))
            .await
            .unwrap();
        c.update_services(drover_proto::node::ServicesUpdate {
            node_id: node_id.trim().to_string(),
            node_secret: node_secret.trim().to_string(),
            upserts_json: regs
                .iter()
                .map(|r| serde_json::to_vec(r).unwrap())
                .collect(),
            delete_ids: vec![],
        })
        .await
        .unwrap();
    });
}

/// `n` instances of service `name` for allocation `alloc_id`, on 127.0.0.1 from port
/// `first_port` up.
pub fn instances(alloc_id: &str, name: &str, n: u16, first_port: u16) -> Vec<ServiceRegistration> {
    (0..n)
        .map(|i| ServiceRegistration {
            id: format!("_nomad-task-{alloc_id}-probe-{name}-{i}"),
            service_name: name.into(),
            alloc_id: alloc_id.into(),
            address: "127.0.0.1".into(),
            port: first_port + i,
            ..Default::default()
        })
        .collect()
}
