//! TLS handshakes for accepted connections, each on a task of its own bounded in time, so a
//! peer that connects and stays silent holds up no one else's connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::server::TlsStream;

/// How long a handshake may take (Nomad's `rpc_handshake_timeout` default is 5 s).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Handshakes in progress at most; the accept loop waits above it.
pub const MAX_HANDSHAKES: usize = 256;

/// Established TLS connections and their peers' addresses.
pub type Handshakes<S> = mpsc::Receiver<(TlsStream<S>, SocketAddr)>;

/// Handshakes the connections `conns` yields, at most [`MAX_HANDSHAKES`] at once, each
/// within [`HANDSHAKE_TIMEOUT`]; a failed one is logged and dropped.
pub fn handshakes<S>(
    mut conns: mpsc::Receiver<(S, SocketAddr)>,
    config: Arc<ServerConfig>,
) -> Handshakes<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        while let Some((io, peer)) = conns.recv().await {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send((tls, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            });
        }
    });
    rx
}

/// An established TLS connection on the RPC port. tonic puts its [`PeerInfo`] in every
/// request's extensions ([`RoleCheck`](crate::RoleCheck) reads the certificate there).
pub struct RpcConn(TlsStream<TcpStream>);

/// Who is at the other end of an RPC connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote_addr: Option<SocketAddr>,
    /// The client certificate chain, verified against the CA, when one was sent.
    pub certs: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

impl tonic::transport::server::Connected for RpcConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        let (tcp, session) = self.0.get_ref();
        PeerInfo {
            remote_addr: tcp.peer_addr().ok(),
            certs: session
                .peer_certificates()
                .map(|c| Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())),
        }
    }
}

impl AsyncRead for RpcConn {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RpcConn {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// The TLS connections of a TCP listener (no Nagle delay), as the stream tonic's
/// `serve_with_incoming` takes.
pub fn tcp(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl tokio_stream::Stream<Item = Result<RpcConn, std::io::Error>> {
    use tokio_stream::StreamExt;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, peer)) => {
                    let _ = s.set_nodelay(true);
                    if tx.send((s, peer)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an RPC connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(handshakes(rx, config)).map(|(s, _)| Ok(RpcConn(s)))
}
