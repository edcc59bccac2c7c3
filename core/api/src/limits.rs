//! Limits on what HTTP clients can hold on the agent: connections, blocking queries, event
//! streams, and how long a new connection may stay silent.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ApiError;

/// Open HTTP connections at most; more wait in the kernel's accept queue.
pub const MAX_CONNECTIONS: usize = 1024;
/// How long a new connection may take to send its first byte.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request body in general (jobs, plans, parses).
pub const MAX_BODY: usize = 2 * 1024 * 1024;
/// The largest variable write (a variable holds at most 64 KiB of items; this leaves room
/// for JSON's escapes).
pub const MAX_VARIABLE_BODY: usize = 256 * 1024;
/// The largest body of an allocation action (stop, restart, signal).
pub const MAX_SMALL_BODY: usize = 16 * 1024;
/// An ACL policy: its rules (64 KiB at most) and their JSON escaping.
pub const MAX_ACL_BODY: usize = 160 * 1024;
/// The largest backup a restore accepts (`PUT /v1/operator/snapshot`, streamed to disk).
pub const MAX_BACKUP_BODY: usize = 4 << 30;
/// What a route that takes no body declares: a body sent with it is never read.
pub const NO_BODY: usize = 0;
/// How long a blocking query waits without `?wait=`.
pub const DEFAULT_BLOCKING_WAIT: Duration = Duration::from_secs(300);
/// The longest `?wait=` a blocking query honours.
pub const MAX_BLOCKING_WAIT: Duration = Duration::from_secs(600);
/// How long a consistent read waits for this server to catch up with the leader's index.
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(10);
/// How long a read route may take to answer: the longest blocking query, the catch-up
/// wait, and a minute of slack.
pub const READ_TIMEOUT: Duration =
    Duration::from_secs(MAX_BLOCKING_WAIT.as_secs() + CATCH_UP_WAIT.as_secs() + 60);
/// How long any other route may take to answer: a write, a plan, an allocation action, a
/// status (a Raft commit waits 10 s at most; a follower forwards it once or twice; a plan
/// runs the scheduler).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a client may take to send a request's headers (HTTP/1).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocking queries (`?index=`) waiting at once; more are answered 429.
pub const MAX_BLOCKING_QUERIES: usize = 512;
/// Event streams (`/v1/event/stream`) open at once; more are answered 429.
pub const MAX_EVENT_STREAMS: usize = 128;

static BLOCKING_QUERIES: Semaphore = Semaphore::const_new(MAX_BLOCKING_QUERIES);
static EVENT_STREAMS: Semaphore = Semaphore::const_new(MAX_EVENT_STREAMS);

fn too_many(what: &str, max: usize) -> ApiError {
    ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many {what} at once (the limit is {max}); retry later"),
    )
}

/// A slot for one blocking query, held while it waits.
pub(crate) fn blocking_query() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    BLOCKING_QUERIES
        .try_acquire()
        .map_err(|_| too_many("blocking queries", MAX_BLOCKING_QUERIES))
}

/// A slot for one event stream, held as long as the stream.
pub(crate) fn event_stream() -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    EVENT_STREAMS
        .try_acquire()
        .map_err(|_| too_many("event streams", MAX_EVENT_STREAMS))
}

/// A TCP listener that holds at most [`MAX_CONNECTIONS`] connections open (it stops
/// accepting until one closes) and drops a connection that sends nothing for
/// [`FIRST_BYTE_TIMEOUT`] after it was accepted.
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl LimitedListener {
    pub fn new(inner: TcpListener) -> Self {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed");
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => {
                    // No Nagle delay on API replies.
                    let _ = io.set_nodelay(true);
                    let conn = LimitedConn {
                        io,
                        _permit: permit,
                        first_byte: Some(Box::pin(tokio::time::sleep(FIRST_BYTE_TIMEOUT))),
                    };
                    return (conn, addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection: its slot is given back when it is dropped.
pub struct LimitedConn {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    /// Until the first byte arrives: when the connection is dropped if it stays silent.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for LimitedConn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    this.first_byte = None;
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if let Some(deadline) = this.first_byte.as_mut()
                    && deadline.as_mut().poll(cx).is_ready()
                {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the connection sent nothing",
                    )));
                }
                Poll::Pending
            }
        }
    }
}

impl AsyncWrite for LimitedConn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Serves `router` on `listener` (HTTP/1 and HTTP/2, WebSocket upgrades), with
/// [`HEADER_READ_TIMEOUT`] for each request's headers: a client that trickles them cannot
/// hold a connection open.
pub async fn serve<L: axum::serve::Listener>(mut listener: L, router: axum::Router) {
    loop {
        let (io, _addr) = listener.accept().await;
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            let conn =
                builder.serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}
