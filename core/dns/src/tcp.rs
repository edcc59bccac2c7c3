//! DNS over TCP (RFC 7766), served by our own accept loop rather than hickory-server's,
//! which bounds neither the number of connections nor how long one may take to send a
//! query: at most [`MAX_TCP_CONNECTIONS`](crate::limits::MAX_TCP_CONNECTIONS) at once (a
//! connection beyond is closed at once), each closed after
//! [`TCP_IDLE`](crate::limits::TCP_IDLE) without a complete query, and queries answered one
//! at a time per connection, so a peer holds at most one answer in memory per connection.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore};

use crate::handler::Handler;
use crate::limits::{MAX_TCP_CONNECTIONS, TCP_IDLE};

/// Accepts connections until `stop` fires.
pub(crate) async fn serve(
    listener: TcpListener,
    handler: Arc<Handler>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "DNS TCP accept failed");
                    // EMFILE and friends: give the system a moment rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        while connections.try_join_next().is_some() {}
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max = MAX_TCP_CONNECTIONS, "DNS TCP connection refused: too many open");
            drop(stream);
            continue;
        };
        let handler = handler.clone();
        connections.spawn(async move {
            let _slot = slot;
            connection(stream, peer, &handler).await;
        });
    }
    connections.shutdown().await;
}

/// Answers the queries of one connection until it closes, idles or misbehaves.
async fn connection(mut stream: TcpStream, peer: SocketAddr, handler: &Handler) {
    loop {
        let query = match tokio::time::timeout(TCP_IDLE, read_message(&mut stream)).await {
            Ok(Ok(Some(q))) => q,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "DNS TCP read failed");
                return;
            }
            Err(_) => return,
        };
        let Ok(request) = Request::from_bytes(query, peer, Protocol::Tcp) else {
            // Not even a header and a question: nothing to answer.
            return;
        };
        let capture = Capture::default();
        handler
            .handle_request::<_, TokioTime>(&request, capture.clone())
            .await;
        let Some(answer) = capture.0.lock().await.take() else {
            return;
        };
        let Ok(len) = u16::try_from(answer.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(answer.len() + 2);
        out.extend(len.to_be_bytes());
        out.extend(answer);
        match tokio::time::timeout(TCP_IDLE, stream.write_all(&out)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
    }
}

/// One length-prefixed message; None at a clean end of stream.
async fn read_message(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 2];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Keeps the encoded answer the handler sends.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_server::proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::MAX);
        let info = response
            .destructive_emit(&mut encoder)
            .map_err(hickory_server::net::NetError::from)?;
        *self.0.lock().await = Some(bytes);
        Ok(info)
    }
}
