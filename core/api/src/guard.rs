//! What the API refuses before any handler runs, until ACLs exist: requests a web page
//! could make on a visitor's behalf (cross-site writes, DNS rebinding, cross-site WebSocket
//! hijacking of `alloc exec`).
//!
//! - A write (any method but GET/HEAD/OPTIONS) or a WebSocket upgrade with an `Origin` that
//!   is `null` or not this agent's own origin (`http://<Host>`) is refused: browsers always
//!   send `Origin` on such requests; the CLI, Nomad's Go API client and python-nomad do not.
//! - On an agent whose HTTP listener is bound to a loopback address, a `Host` that is not a
//!   loopback name (`localhost`, `127.x.y.z`, `[::1]`) is refused: a DNS-rebinding page
//!   reaches 127.0.0.1 under its own host name.
//! - A write with a body must carry `Content-Type: application/json` (or a `+json` type, or
//!   `application/octet-stream`), or none at all (HashiCorp's Go API client sends none): the
//!   content types a page may send cross-site without a CORS preflight (`text/plain`, forms)
//!   are refused.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::ApiState;

/// How the HTTP listener is exposed, for the Host check.
#[derive(Debug, Clone, Copy, Default)]
pub struct Exposure {
    /// The listener is bound to a loopback address.
    pub loopback: bool,
}

fn refuse(status: StatusCode, why: String) -> Response {
    tracing::warn!(%why, "refused an HTTP request");
    (status, why).into_response()
}

/// The host part of a `Host` header or origin authority (`h`, `h:port`, `[v6]:port`).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_write(m: &Method) -> bool {
    !matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

pub(crate) fn is_websocket(h: &HeaderMap) -> bool {
    h.get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Why a request must be refused, if it must.
pub fn check(exposure: Exposure, method: &Method, headers: &HeaderMap) -> Option<Response> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if exposure.loopback
        && let Some(h) = host
        && !is_loopback_host(host_of(h))
    {
        return Some(refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {h:?} is not a loopback name: this agent listens on a loopback address only (a request for another host name is how DNS rebinding reaches it)"
            ),
        ));
    }
    let upgrade = is_websocket(headers);
    if (is_write(method) || upgrade)
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let origin = origin.to_str().unwrap_or("null").trim();
        let same = host.is_some_and(|h| {
            origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"))
                .is_some_and(|o| o.eq_ignore_ascii_case(h))
        });
        if !same {
            return Some(refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin {} refused: Origin {origin:?} is not this agent's own",
                    if upgrade { "WebSocket" } else { "write" }
                ),
            ));
        }
    }
    if is_write(method)
        && let Some(ct) = headers.get(header::CONTENT_TYPE)
    {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim();
        let ok = essence == "application/json"
            || essence == "application/octet-stream"
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !ok {
            return Some(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {essence:?} refused: send application/json"),
            ));
        }
    }
    None
}

/// The middleware: [`check`] every request.
pub async fn guard(State(st): State<ApiState>, req: Request, next: Next) -> Response {
    if let Some(refused) = check(st.exposure, req.method(), req.headers()) {
        return refused;
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hosts_and_origins() {
        let lo = Exposure { loopback: true };
        let ok = |m: Method, h: &[(header::HeaderName, &str)]| check(lo, &m, &headers(h)).is_none();
        assert!(ok(Method::GET, &[(header::HOST, "127.0.0.1:4646")]));
        assert!(ok(Method::GET, &[(header::HOST, "localhost:4646")]));
        assert!(ok(Method::GET, &[(header::HOST, "[::1]:4646")]));
        assert!(!ok(Method::GET, &[(header::HOST, "evil.example:4646")]));
        assert!(ok(
            Method::POST,
            &[
                (header::HOST, "127.0.0.1:4646"),
                (header::ORIGIN, "http://127.0.0.1:4646")
            ]
        ));
        assert!(!ok(
            Method::POST,
            &[(header::HOST, "127.0.0.1:4646"), (header::ORIGIN, "null")]
        ));
        assert!(!ok(
            Method::GET,
            &[
                (header::HOST, "127.0.0.1:4646"),
                (header::UPGRADE, "websocket"),
                (header::ORIGIN, "http://evil.example")
            ]
        ));
        assert!(!ok(
            Method::PUT,
            &[
                (header::HOST, "127.0.0.1:4646"),
                (header::CONTENT_TYPE, "text/plain")
            ]
        ));
        assert!(ok(
            Method::PUT,
            &[
                (header::HOST, "127.0.0.1:4646"),
                (header::CONTENT_TYPE, "application/json; charset=utf-8")
            ]
        ));
        let open = Exposure { loopback: false };
        assert!(
            check(
                open,
                &Method::GET,
                &headers(&[(header::HOST, "nomad.internal")])
            )
            .is_none()
        );
    }
}
