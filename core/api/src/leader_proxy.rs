//! Node-bound requests (`/v1/client/...`: logs, files, stats, checks, exec, restart,
//! signal) need the server that holds the client's node stream, which is the leader
//! (clients attach to it). A follower does not redirect the caller there — a redirect
//! makes the caller resend its token to wherever it points — it forwards the request itself,
//! after its own ACL check (the route's `admit` runs first: a bad token is refused here),
//! and relays the answer: a streamed body as it comes, a WebSocket upgrade (`alloc exec`)
//! byte for byte. The leader checks the token again.
//!
//! Forwarded over HTTP (HTTPS with this agent's certificate under `tls { http = true }`):
//! the node-bound routes already speak HTTP streams and WebSockets end to end, which the
//! servers' gRPC cluster requests (one request, one reply) do not.
//!
//! One hop at most: a forwarded request carries [`FORWARDED`]; a server that is not the
//! leader when one arrives answers 503 rather than forwarding it again (leadership moved
//! while it travelled; the caller retries).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::rustls::ClientConfig;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::{ApiError, ApiState};

/// Marks a request a follower forwarded (a Drover header; it proves nothing, it only
/// stops a second hop).
pub const FORWARDED: &str = "X-Drover-Forwarded";

/// How long connecting to the leader (TCP and TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Headers that belong to one connection, never forwarded either way (RFC 9110 7.6.1),
/// and the ones the leader must see as its own (`Host`) or the follower already checked
/// (`Origin`, by [`crate::guard`]). `Location` is dropped from answers: no redirect is ever
/// relayed.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::CONTENT_LENGTH,
    header::HOST,
    header::ORIGIN,
    header::LOCATION,
];

/// How this server reaches the leader's HTTP API.
#[derive(Clone, Default)]
pub struct LeaderProxy {
    /// HTTPS with this configuration (the agent's certificate; the leader must prove the
    /// server role), or plain HTTP.
    tls: Option<Arc<ClientConfig>>,
}

impl std::fmt::Debug for LeaderProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaderProxy")
            .field("https", &self.tls.is_some())
            .finish()
    }
}

impl LeaderProxy {
    /// Plain HTTP (`tls { http = false }`).
    pub fn http() -> LeaderProxy {
        LeaderProxy { tls: None }
    }

    /// HTTPS with the agent's client configuration (its ALPN is set to HTTP/1.1, what the
    /// HTTP listener speaks).
    pub fn https(config: &ClientConfig) -> LeaderProxy {
        let mut c = config.clone();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        LeaderProxy {
            tls: Some(Arc::new(c)),
        }
    }

    async fn connect(&self, addr: &str) -> Result<Box<dyn Conn>, String> {
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(|e| format!("cannot connect to the leader at {addr}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let Some(config) = &self.tls else {
                return Ok(Box::new(tcp) as Box<dyn Conn>);
            };
            let host = addr
                .rsplit_once(':')
                .map_or(addr, |(h, _)| h)
                .trim_matches(['[', ']']);
            let name = ServerName::try_from(host.to_string())
                .map_err(|_| format!("the leader's address {addr:?} has no valid host"))?;
            let tls = tokio_rustls::TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with the leader at {addr} failed: {e}"))?;
            Ok(Box::new(tls) as Box<dyn Conn>)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .map_err(|_| {
                format!(
                    "the leader at {addr} did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )
            })?
    }
}

/// A connection to the leader: TCP, or TLS over it.
trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

fn unavailable(why: impl Into<String>) -> Response {
    ApiError(StatusCode::SERVICE_UNAVAILABLE, why.into()).into_response()
}

/// Runs a node-bound request here when this server leads, or forwards it to the leader.
/// `body_limit` is the route's: a larger body is refused (413) before anything is sent.
pub(crate) async fn to_leader(
    st: &ApiState,
    req: Request,
    body_limit: usize,
    here: Next,
) -> Response {
    let Some((leader, _)) = st.server.leader() else {
        return unavailable(
            "no leader is known: node-bound requests go to the server holding the node's stream",
        );
    };
    if leader == st.server.server_id() {
        return here.run(req).await;
    }
    if req.headers().contains_key(FORWARDED) {
        return unavailable(
            "a forwarded request reached a server that does not lead (leadership moved); retry",
        );
    }
    let Some(addr) = st.server.leader_http().await else {
        return unavailable(format!(
            "the leader (server {leader}) does not answer with its HTTP address"
        ));
    };
    let span = tracing::debug_span!("forward", leader = %addr, path = %req.uri().path());
    tracing::Instrument::instrument(forward(&st.leader_proxy, &addr, req, body_limit), span)
        .await
        .unwrap_or_else(|e| e)
}

async fn forward(
    proxy: &LeaderProxy,
    addr: &str,
    req: Request,
    body_limit: usize,
) -> Result<Response, Response> {
    let (mut parts, body) = req.into_parts();
    let upgrade = crate::guard::is_websocket(&parts.headers);
    // A route that reads no body forwards none.
    let body = if body_limit == 0 {
        Body::empty()
    } else {
        let bytes = axum::body::to_bytes(body, body_limit).await.map_err(|_| {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {body_limit} bytes"),
            )
            .into_response()
        })?;
        Body::from(bytes)
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = axum::http::Request::builder()
        .method(parts.method.clone())
        .uri(path)
        .body(body)
        .map_err(|e| unavailable(format!("cannot forward the request: {e}")))?;
    *out.headers_mut() = end_to_end(&parts.headers);
    let h = out.headers_mut();
    h.insert(
        header::HOST,
        HeaderValue::from_str(addr).map_err(|_| unavailable("the leader's address is bad"))?,
    );
    h.insert(FORWARDED, HeaderValue::from_static("1"));
    let caller_upgrade = if upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };

    tracing::debug!("forwarding a node-bound request to the leader");
    let conn = proxy.connect(addr).await.map_err(unavailable)?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(conn))
        .await
        .map_err(|e| unavailable(format!("HTTP with the leader at {addr} failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "the connection to the leader ended with an error");
        }
    });
    let mut resp = sender
        .send_request(out)
        .await
        .map_err(|e| unavailable(format!("the leader at {addr} did not answer: {e}")))?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(caller) = caller_upgrade else {
            return Err(unavailable(
                "the leader upgraded a request that asked for none",
            ));
        };
        let leader = hyper::upgrade::on(&mut resp);
        tokio::spawn(relay(caller, leader));
        let mut answer = Response::new(Body::empty());
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        *answer.headers_mut() = end_to_end(resp.headers());
        let h = answer.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return Ok(answer);
    }
    let (head, incoming) = resp.into_parts();
    let mut answer = Response::new(Body::new(incoming));
    *answer.status_mut() = head.status;
    *answer.headers_mut() = end_to_end(&head.headers);
    Ok(answer)
}

/// The headers of `from` that travel end to end.
fn end_to_end(from: &HeaderMap) -> HeaderMap {
    let mut to = from.clone();
    // Headers a `Connection` header names are hop-by-hop too.
    if let Some(named) = from.get(header::CONNECTION).and_then(|v| v.to_str().ok()) {
        for n in named.split(',') {
            if let Ok(n) = HeaderName::from_bytes(n.trim().as_bytes()) {
                to.remove(n);
            }
        }
    }
    for h in HOP_BY_HOP {
        to.remove(h);
    }
    to.remove("keep-alive");
    to
}

/// Relays an upgraded connection (the exec WebSocket) between the caller and the leader
/// until either side closes.
async fn relay(caller: hyper::upgrade::OnUpgrade, leader: hyper::upgrade::OnUpgrade) {
    let (caller, leader) = match tokio::try_join!(caller, leader) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(error = %e, "a forwarded upgrade did not complete");
            return;
        }
    };
    let (mut a, mut b) = (TokioIo::new(caller), TokioIo::new(leader));
    if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
        tracing::debug!(error = %e, "a forwarded WebSocket ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_end_to_end_headers_travel() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("follower:4646"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://follower:4646"),
        );
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::LOCATION,
            HeaderValue::from_static("http://elsewhere/"),
        );
        h.insert("X-Nomad-Token", HeaderValue::from_static("secret"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        h.insert("Sec-WebSocket-Key", HeaderValue::from_static("k"));
        let out = end_to_end(&h);
        let names: Vec<&str> = out.keys().map(|k| k.as_str()).collect();
        assert_eq!(
            names.len(),
            3,
            "only the tokens and the WebSocket key travel: {names:?}"
        );
        assert_eq!(out["x-nomad-token"], "secret");
        assert_eq!(out[header::AUTHORIZATION], "Bearer secret");
        assert_eq!(out["sec-websocket-key"], "k");
    }
}
