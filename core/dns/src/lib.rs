//! The agent's DNS server (Drover's extension: Nomad's native service discovery has no DNS,
//! hashicorp/nomad#12588). It answers from the service catalog — a client's local copy or a
//! server's state store, through [`drover_catalog::ServiceLookup`] — with no server round
//! trip per query and no recursion:
//!
//! - `<service>.service.<domain>` and `<tag>.<service>.service.<domain>`: A, AAAA, SRV of the
//!   healthy instances of the service in the `default` namespace;
//! - `<service>.service.<namespace>.ns.<domain>` (and with a tag): another namespace (Consul
//!   Enterprise's form);
//! - `_<service>._<tag>.service.<domain>` (RFC 2782; `_tcp`/`_udp` mean no tag);
//! - `<hex address>.addr.<domain>`: the address an SRV target names.
//!
//! A name with no healthy instance is NXDOMAIN; a name outside the domain is REFUSED. Over
//! UDP an answer that does not fit the requester's payload (512 bytes without EDNS, at most
//! 4,096 with it) is cut with TC set; over TCP it is complete (up to DNS's 64 KiB).
//!
//! Names are compared ignoring ASCII case (DNS's rule), service names, namespaces and tags
//! included: `backend.service.drover` finds a service registered as `Backend`.

#![deny(clippy::disallowed_types)]

mod answer;
mod handler;
mod names;
mod tcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use drover_catalog::ServiceLookup;

pub use names::{Question, parse_labels};

/// Bounds on what a query can cost.
pub mod limits {
    /// The largest query accepted (one question, an OPT record): larger ones are FORMERR.
    pub const MAX_QUERY_BYTES: usize = 512;
    /// The largest UDP payload answered, whatever the requester advertises.
    pub const MAX_UDP_PAYLOAD: u16 = 4096;
    /// How long a TCP connection may stay idle between queries (or take to send one).
    pub const TCP_IDLE: std::time::Duration = std::time::Duration::from_secs(5);
    /// TCP connections open at once; one beyond is closed as soon as it is accepted.
    pub const MAX_TCP_CONNECTIONS: usize = 128;
}

/// Where and how the DNS server answers (`dns { ... }` in the agent's configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// UDP and TCP on this address (port 0: any free port, the same for both).
    pub addr: SocketAddr,
    /// The domain answered for (`drover`): names outside it are refused.
    pub domain: String,
    /// The TTL of the records (0 by default, as Consul's service TTL: instances move).
    pub ttl: Duration,
}

/// Why the DNS server did not start.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("dns.domain {0:?} is not a domain name: {1}")]
    Domain(String, String),
    #[error("cannot listen for DNS on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: std::io::Error,
    },
}

/// A running DNS server; it stops when dropped.
pub struct DnsServer {
    addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

impl DnsServer {
    /// The address it answers on (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops answering.
    pub fn stop(self) {
        let _ = self.shutdown.send(());
    }
}

/// Binds UDP and TCP on `config.addr` and answers from `lookup` until the returned server is
/// stopped or dropped.
pub async fn serve(
    config: &DnsConfig,
    lookup: Arc<dyn ServiceLookup>,
) -> Result<DnsServer, DnsError> {
    let handler = Arc::new(handler::Handler::new(config, lookup)?);
    let (udp, tcp) = bind(config.addr).await?;
    let addr = udp.local_addr().map_err(|source| DnsError::Bind {
        addr: config.addr,
        proto: "udp",
        source,
    })?;
    // UDP through hickory-server; TCP through our own loop, which bounds connections.
    let mut server = hickory_server::Server::new(handler::Shared(handler.clone()));
    server.register_socket(udp);
    let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
    let (stop_tcp, tcp_stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(tcp::serve(tcp, handler, tcp_stopped));
    tokio::spawn(async move {
        tokio::select! {
            r = server.block_until_done() => {
                if let Err(e) = r {
                    tracing::error!(error = %e, "the DNS server stopped");
                }
            }
            _ = stopped => {
                let _ = server.shutdown_gracefully().await;
            }
        }
        let _ = stop_tcp.send(true);
    });
    Ok(DnsServer { addr, shutdown })
}

/// UDP and TCP on one port: with port 0 the UDP socket's port is taken for TCP too (tried a
/// few times, in case another process holds it on TCP).
async fn bind(
    addr: SocketAddr,
) -> Result<(tokio::net::UdpSocket, tokio::net::TcpListener), DnsError> {
    let err = |proto, source| DnsError::Bind {
        addr,
        proto,
        source,
    };
    let attempts = if addr.port() == 0 { 8 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = tokio::net::UdpSocket::bind(addr)
            .await
            .map_err(|e| err("udp", e))?;
        let port = udp.local_addr().map_err(|e| err("udp", e))?.port();
        match tokio::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(err(
        "tcp",
        last.unwrap_or_else(|| std::io::Error::other("no port")),
    ))
}
