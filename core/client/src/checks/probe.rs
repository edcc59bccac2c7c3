//! One run of a check: what it sends, how long it may take, what it keeps of the answer.
//! Every run is bounded by the check's `timeout` and keeps at most [`MAX_OUTPUT`] bytes of
//! output (an HTTP body is read no further than that).
//!
//! - `http` (Nomad's): `method` (GET) to `protocol://address:port/path` with `header` and
//!   `body`; any 2xx passes, 429 is a warning (Consul's), anything else fails. `https` may
//!   skip verification (`tls_skip_verify`) and name the server (`tls_server_name`).
//! - `tcp` (Nomad's): the connection is made.
//! - `grpc` (Drover's extension): `grpc.health.v1.Health/Check` for `grpc_service` answers
//!   SERVING; over TLS with `grpc_use_tls` (`tls_skip_verify`, `tls_server_name` as for
//!   https).
//! - `script` (Drover's extension): `command` and `args` run inside the task through its
//!   driver's exec, as `alloc exec` does: exit 0 passes, 1 is a warning, anything else fails.

use std::net::SocketAddr;
use std::time::Duration;

use drover_model::ServiceCheck;
use drover_proto::driver::{ExecTaskRequest, ExecTaskSetup, exec_task_request, exec_task_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::health::Verdict;
use crate::Client;

/// The most output a run keeps (Nomad keeps a few KB).
pub(crate) const MAX_OUTPUT: usize = 4 * 1024;

/// What one run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub verdict: Verdict,
    pub output: String,
    /// The HTTP status, for http checks that got an answer.
    pub status_code: Option<u16>,
}

impl Outcome {
    pub(crate) fn failure(output: impl Into<String>) -> Self {
        Outcome {
            verdict: Verdict::Failure,
            output: cut(output.into()),
            status_code: None,
        }
    }
}

fn cut(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A network check's run against `addr` (http, tcp, grpc); run it on the runtime whose
/// sockets are in the right network namespace.
pub(crate) async fn network(check: ServiceCheck, addr: SocketAddr, path: String) -> Outcome {
    let timeout = check.timeout;
    let run = async {
        match check.check_type.as_str() {
            "http" => http(&check, addr, &path).await,
            "tcp" => tcp(addr).await,
            "grpc" => grpc(&check, addr).await,
            other => Outcome::failure(format!("{other:?} is not a network check")),
        }
    };
    match tokio::time::timeout(timeout, run).await {
        Ok(o) => o,
        Err(_) => Outcome::failure(format!("timed out after {timeout:?}")),
    }
}

async fn tcp(addr: SocketAddr) -> Outcome {
    match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => Outcome {
            verdict: Verdict::Success,
            output: format!("TCP connect {addr}: Success"),
            status_code: None,
        },
        Err(e) => Outcome::failure(format!("TCP connect {addr}: {e}")),
    }
}

/// The verdict on an HTTP status, as Consul's: 2xx passes, 429 warns.
pub(crate) fn http_verdict(status: u16) -> Verdict {
    match status {
        200..=299 => Verdict::Success,
        429 => Verdict::Warning,
        _ => Verdict::Failure,
    }
}

async fn http(check: &ServiceCheck, addr: SocketAddr, path: &str) -> Outcome {
    let scheme = if check.protocol == "https" {
        "https"
    } else {
        "http"
    };
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(check.timeout);
    // The URL names the server (TLS's name and verification), the socket goes to `addr`.
    let host = if scheme == "https" && !check.tls_server_name.is_empty() {
        builder = builder.resolve(&check.tls_server_name, addr);
        format!("{}:{}", check.tls_server_name, addr.port())
    } else {
        addr.to_string()
    };
    if scheme == "http" || check.tls_skip_verify {
        builder = builder.tls_built_in_root_certs(false);
    }
    if check.tls_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => return Outcome::failure(format!("cannot build the HTTP client: {e}")),
    };
    let url = format!("{scheme}://{host}{path}");
    let method_word = if check.method.is_empty() {
        "GET".to_string()
    } else {
        check.method.to_ascii_uppercase()
    };
    let method = match reqwest::Method::from_bytes(method_word.as_bytes()) {
        Ok(m) => m,
        Err(_) => return Outcome::failure(format!("method {method_word:?} is not an HTTP method")),
    };
    let mut req = client.request(method, &url);
    for (name, values) in &check.header {
        for v in values {
            req = req.header(name.as_str(), v.as_str());
        }
    }
    if !check.body.is_empty() {
        req = req.body(check.body.clone());
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::failure(format!("HTTP {method_word} {url}: {e}")),
    };
    let status = resp.status();
    // At most MAX_OUTPUT bytes of the body are read; the rest is never fetched.
    let mut body = Vec::new();
    while body.len() < MAX_OUTPUT {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c[..c.len().min(MAX_OUTPUT - body.len())]),
            Ok(None) | Err(_) => break,
        }
    }
    Outcome {
        verdict: http_verdict(status.as_u16()),
        output: cut(format!(
            "HTTP {method_word} {url}: {status} Output: {}",
            String::from_utf8_lossy(&body)
        )),
        status_code: Some(status.as_u16()),
    }
}

async fn grpc(check: &ServiceCheck, addr: SocketAddr) -> Outcome {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let dialer = match grpc_dialer(check) {
        Ok(d) => d,
        Err(e) => return Outcome::failure(format!("gRPC {addr}: {e}")),
    };
    let endpoint = match dialer.endpoint(&addr.to_string()) {
        Ok(e) => e.connect_timeout(check.timeout).timeout(check.timeout),
        Err(e) => return Outcome::failure(format!("gRPC {addr}: {e}")),
    };
    let channel = match dialer.connect(endpoint).await {
        Ok(c) => c,
        Err(e) => return Outcome::failure(format!("gRPC {addr}: cannot connect: {e}")),
    };
    let service = check.grpc_service.clone();
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.clone(),
        })
        .await;
    match answer {
        Ok(r) => {
            let status = r.into_inner().status;
            let name = ServingStatus::try_from(status)
                .map(|s| s.as_str_name().to_string())
                .unwrap_or_else(|_| status.to_string());
            let verdict = if status == ServingStatus::Serving as i32 {
                Verdict::Success
            } else {
                Verdict::Failure
            };
            Outcome {
                verdict,
                output: format!("gRPC check {addr} service {service:?}: {name}"),
                status_code: None,
            }
        }
        Err(e) => Outcome::failure(format!(
            "gRPC check {addr} service {service:?}: {}",
            e.message()
        )),
    }
}

/// Plaintext HTTP/2, or TLS (`grpc_use_tls`) verified against the system's roots unless
/// `tls_skip_verify`, asking for `tls_server_name` when set (else the address).
fn grpc_dialer(check: &ServiceCheck) -> Result<drover_tls::Dialer, String> {
    if !check.grpc_use_tls {
        return Ok(drover_tls::Dialer::plaintext());
    }
    let config = drover_tls::workload::client_config(check.tls_skip_verify, &[b"h2"])
        .map_err(|e| e.to_string())?;
    let dialer = drover_tls::Dialer::tls(config);
    if check.tls_server_name.is_empty() {
        Ok(dialer)
    } else {
        dialer
            .with_server_name(&check.tls_server_name)
            .map_err(|e| format!("tls_server_name: {e}"))
    }
}

/// The verdict on a script's exit code, as Consul's.
pub(crate) fn script_verdict(code: i32) -> Verdict {
    match code {
        0 => Verdict::Success,
        1 => Verdict::Warning,
        _ => Verdict::Failure,
    }
}

/// Runs `command args...` inside task `task` of allocation `alloc_id` through its driver.
pub(crate) async fn script(
    client: &Client,
    alloc_id: &str,
    task: &str,
    argv: Vec<String>,
    timeout: Duration,
) -> Outcome {
    match tokio::time::timeout(timeout, exec(client, alloc_id, task, argv)).await {
        Ok(Ok((code, output))) => Outcome {
            verdict: script_verdict(code),
            output: cut(output),
            status_code: None,
        },
        Ok(Err(e)) => Outcome::failure(e),
        Err(_) => Outcome::failure(format!("timed out after {timeout:?}")),
    }
}

async fn exec(
    client: &Client,
    alloc_id: &str,
    task: &str,
    argv: Vec<String>,
) -> Result<(i32, String), String> {
    let tasks = client.runner(alloc_id)?.running_tasks(task)?;
    let Some((_, driver_name, task_id)) = tasks.into_iter().next() else {
        return Err(format!("task {task:?} is not running"));
    };
    let mut driver = client
        .host()
        .driver(&driver_name)
        .await
        .map_err(|e| e.to_string())?;
    let (tx, rx) = mpsc::channel(2);
    let setup = exec_task_request::Msg::Setup(ExecTaskSetup {
        task_id,
        command: argv,
        tty: false,
        size: None,
    });
    for m in [setup, exec_task_request::Msg::StdinClose(true)] {
        let _ = tx.send(ExecTaskRequest { msg: Some(m) }).await;
    }
    // `tx` stays open until the command is done: a closed request stream ends the session.
    let mut out = driver
        .exec_task(ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("exec: {}", e.message()))?
        .into_inner();
    let mut output = Vec::new();
    loop {
        let m = out
            .message()
            .await
            .map_err(|e| format!("exec: {}", e.message()))?;
        match m.and_then(|m| m.msg) {
            Some(exec_task_response::Msg::Stdout(b) | exec_task_response::Msg::Stderr(b)) => {
                let room = MAX_OUTPUT.saturating_sub(output.len());
                output.extend_from_slice(&b[..b.len().min(room)]);
            }
            Some(exec_task_response::Msg::Exited(e)) => {
                drop(tx);
                let code = if e.signal > 0 {
                    128 + e.signal
                } else {
                    e.exit_code
                };
                return Ok((code, String::from_utf8_lossy(&output).into_owned()));
            }
            None => {
                return Err("the driver ended the exec stream without an exit".into());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_consuls() {
        assert_eq!(http_verdict(204), Verdict::Success);
        assert_eq!(http_verdict(429), Verdict::Warning);
        assert_eq!(http_verdict(301), Verdict::Failure);
        assert_eq!(http_verdict(503), Verdict::Failure);
        assert_eq!(script_verdict(0), Verdict::Success);
        assert_eq!(script_verdict(1), Verdict::Warning);
        assert_eq!(script_verdict(2), Verdict::Failure);
    }

    #[test]
    fn output_is_cut_on_a_character_boundary() {
        let o = Outcome::failure("é".repeat(MAX_OUTPUT));
        assert!(o.output.len() <= MAX_OUTPUT);
        assert!(o.output.chars().all(|c| c == 'é'));
    }

    fn check(kind: &str) -> ServiceCheck {
        ServiceCheck {
            check_type: kind.into(),
            timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn tcp_passes_on_a_listener_and_fails_without() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let o = network(check("tcp"), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Success, "{o:?}");
        drop(l);
        let o = network(check("tcp"), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Failure, "{o:?}");
    }

    /// Serves one HTTP answer per connection: `status` and a body of `body_len` bytes.
    async fn http_server(status: &'static str, body_len: usize) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {body_len}\r\nconnection: close\r\n\r\n"
                );
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(&vec![b'x'; body_len]).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_judges_the_status_and_reads_a_bounded_body() {
        let mut c = check("http");
        let ok = http_server("200 OK", 10 * 1024 * 1024).await;
        let o = network(c.clone(), ok, "/health".into()).await;
        assert_eq!(
            (o.verdict, o.status_code),
            (Verdict::Success, Some(200)),
            "{}",
            o.output
        );
        assert!(o.output.len() <= MAX_OUTPUT);
        assert!(o.output.contains("/health"), "{}", o.output);
        let bad = http_server("500 Internal Server Error", 5).await;
        let o = network(c.clone(), bad, "/".into()).await;
        assert_eq!((o.verdict, o.status_code), (Verdict::Failure, Some(500)));
        let busy = http_server("429 Too Many Requests", 0).await;
        c.method = "post".into();
        c.body = "{}".into();
        let o = network(c, busy, "/".into()).await;
        assert_eq!(o.verdict, Verdict::Warning, "{}", o.output);
        assert!(o.output.starts_with("HTTP POST"), "{}", o.output);
    }

    #[tokio::test]
    async fn a_check_that_hangs_fails_at_its_timeout() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        // Accepts (the kernel does) but never answers.
        let mut c = check("http");
        c.timeout = Duration::from_secs(1);
        let started = std::time::Instant::now();
        let o = network(c, addr, "/".into()).await;
        assert_eq!(o.verdict, Verdict::Failure);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(l);
    }

    #[tokio::test]
    async fn grpc_over_tls_verifies_unless_told_to_skip() {
        use drover_tls::authority::LeafSpec;
        use tonic_health::ServingStatus;
        let ca = drover_tls::Authority::create("check test CA", 1).unwrap();
        let mut spec = LeafSpec::new(drover_tls::Role::Server, "global");
        spec.dns_names.push("grpc.example".into());
        let leaf = ca.issue(&spec).unwrap();
        let identity =
            drover_tls::Identity::from_pem(ca.cert_pem(), &leaf.cert_pem, &leaf.key_pem, "global")
                .unwrap();
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("db", ServingStatus::Serving)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let incoming = drover_tls::accept::tcp(l, identity.rpc_server_config().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        let mut c = check("grpc");
        c.grpc_service = "db".into();
        c.grpc_use_tls = true;
        c.tls_skip_verify = true;
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.output);
        c.tls_server_name = "grpc.example".into();
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.output);
        // Verified: the test CA is not among the system's roots.
        c.tls_skip_verify = false;
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Failure, "{}", o.output);
        // Plaintext to a TLS port fails; a bad name is named.
        c.grpc_use_tls = false;
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Failure, "{}", o.output);
        c.grpc_use_tls = true;
        c.tls_server_name = "not a name".into();
        let o = network(c, addr, String::new()).await;
        assert!(o.output.contains("tls_server_name"), "{}", o.output);
    }

    #[tokio::test]
    async fn grpc_asks_the_health_service_for_its_service() {
        use tonic_health::ServingStatus;
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("db", ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("cache", ServingStatus::NotServing)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        let mut c = check("grpc");
        c.grpc_service = "db".into();
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Success, "{}", o.output);
        assert!(o.output.contains("SERVING"), "{}", o.output);
        c.grpc_service = "cache".into();
        let o = network(c.clone(), addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Failure, "{}", o.output);
        c.grpc_service = "unknown".into();
        let o = network(c, addr, String::new()).await;
        assert_eq!(o.verdict, Verdict::Failure, "{}", o.output);
    }
}
