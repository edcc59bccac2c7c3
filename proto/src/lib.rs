//! Drover's wire contracts, generated from `proto/**/*.proto`.

/// The base contract every plugin speaks.
pub mod base {
    tonic::include_proto!("drover.plugin.base.v1");
}

/// Task driver plugins.
pub mod driver {
    tonic::include_proto!("drover.plugin.driver.v1");
}

/// HashiCorp go-plugin's controller service (package `plugin`), for wire compatibility.
pub mod go_plugin {
    tonic::include_proto!("plugin");
}

/// Raft RPCs between servers.
pub mod raft {
    tonic::include_proto!("drover.cluster.raft.v1");
}

/// The client agent's stream to the servers.
pub mod node {
    tonic::include_proto!("drover.cluster.node.v1");
}
