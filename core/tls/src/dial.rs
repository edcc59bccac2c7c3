//! gRPC channels to other agents: plaintext, or TLS with this agent's certificate where the
//! peer must prove the server role (`Identity::client_config`). Raft, the servers' cluster
//! requests and the clients' node streams all dial through one [`Dialer`].

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long the TCP connection and the TLS handshake may take together, when the endpoint
/// sets no connect timeout of its own.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Dials other agents' RPC ports.
#[derive(Clone, Default)]
pub struct Dialer {
    tls: Option<Arc<ClientConfig>>,
    /// The name TLS asks for and verifies, when not the dialled host.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Dialer {
    /// Plaintext gRPC (`tls { rpc = false }`).
    pub fn plaintext() -> Dialer {
        Dialer::default()
    }

    /// gRPC over TLS with this configuration.
    pub fn tls(config: Arc<ClientConfig>) -> Dialer {
        Dialer {
            tls: Some(config),
            server_name: None,
        }
    }

    /// TLS asks for and verifies `name` rather than the dialled host (a check's
    /// `tls_server_name`); an error when `name` is neither a host name nor an address.
    pub fn with_server_name(mut self, name: &str) -> Result<Dialer, std::io::Error> {
        let name = ServerName::try_from(name.to_string()).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{name:?} is not a host name or an address"),
            )
        })?;
        self.server_name = Some(name);
        Ok(self)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The endpoint of `addr` (`host:port`); tune it, then [`Dialer::connect`].
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, tonic::transport::Error> {
        Endpoint::from_shared(format!("http://{addr}"))
    }

    /// Connects now.
    pub async fn connect(&self, ep: Endpoint) -> Result<Channel, tonic::transport::Error> {
        match &self.tls {
            None => ep.connect().await,
            Some(c) => {
                ep.connect_with_connector(connector(c.clone(), self.server_name.clone()))
                    .await
            }
        }
    }

    /// Connects at the first request (and again after a failure).
    pub fn connect_lazy(&self, ep: Endpoint) -> Channel {
        match &self.tls {
            None => ep.connect_lazy(),
            Some(c) => {
                ep.connect_with_connector_lazy(connector(c.clone(), self.server_name.clone()))
            }
        }
    }
}

type Connecting = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
                    std::io::Error,
                >,
            > + Send,
    >,
>;

fn connector(
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
) -> impl tower::Service<
    Uri,
    Response = TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    Error = std::io::Error,
    Future = Connecting,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: Uri| -> Connecting {
        let config = config.clone();
        let server_name = server_name.clone();
        Box::pin(async move {
            let bad = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, why);
            let host = uri
                .host()
                .ok_or_else(|| bad(format!("{uri} has no host")))?
                .trim_matches(['[', ']'])
                .to_string();
            let port = uri.port_u16().unwrap_or(4647);
            let name = match server_name {
                Some(n) => n,
                None => ServerName::try_from(host.clone())
                    .map_err(|_| bad(format!("{host:?} is not a host name or an address")))?,
            };
            let dial = async {
                let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
                // Raft rounds and forwarded writes must not wait for a delayed ACK.
                tcp.set_nodelay(true)?;
                tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
            };
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, dial)
                .await
                .map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("TLS handshake with {host}:{port} timed out"),
                    )
                })??;
            Ok(TokioIo::new(tls))
        })
    })
}
