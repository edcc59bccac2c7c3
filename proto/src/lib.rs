//! Drover's wire contracts, generated from `proto/**/*.proto`.
//!
//! With the default `grpc` feature every contract comes with its tonic clients and servers.
//! Without it (plugins built for `wasm32-unknown-unknown`, native plugin libraries) only the
//! messages of the contracts a plugin can speak over the unary ABI are built: [`base`] and
//! [`secrets`], with no dependency on tonic.

/// The base contract every plugin speaks.
#[cfg(feature = "grpc")]
pub mod base {
    tonic::include_proto!("drover.plugin.base.v1");
}

/// Task driver plugins.
#[cfg(feature = "grpc")]
pub mod driver {
    tonic::include_proto!("drover.plugin.driver.v1");
}

/// Secret provider plugins.
#[cfg(feature = "grpc")]
pub mod secrets {
    tonic::include_proto!("drover.plugin.secrets.v1");
}

/// HashiCorp go-plugin's controller service (package `plugin`), for wire compatibility.
#[cfg(feature = "grpc")]
pub mod go_plugin {
    tonic::include_proto!("plugin");
}

/// Raft RPCs between servers.
#[cfg(feature = "grpc")]
pub mod raft {
    tonic::include_proto!("drover.cluster.raft.v1");
}

/// The client agent's stream to the servers.
#[cfg(feature = "grpc")]
pub mod node {
    tonic::include_proto!("drover.cluster.node.v1");

    /// The encoding version of the JSON a node-stream message carries (1: before versions,
    /// sent as 0). Unknown fields are ignored on read.
    pub const ENCODING_VERSION: u32 = 2;
}

/// Agents on the CA made for you: roots to trust, leaves renewed.
#[cfg(feature = "grpc")]
pub mod certificates {
    tonic::include_proto!("drover.cluster.certificates.v1");
}

/// The base contract every plugin speaks (messages only).
#[cfg(not(feature = "grpc"))]
pub mod base {
    include!(concat!(
        env!("OUT_DIR"),
        "/messages/drover.plugin.base.v1.rs"
    ));
}

/// Secret provider plugins (messages only).
#[cfg(not(feature = "grpc"))]
pub mod secrets {
    include!(concat!(
        env!("OUT_DIR"),
        "/messages/drover.plugin.secrets.v1.rs"
    ));
}
