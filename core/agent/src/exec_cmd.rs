//! `drover alloc exec [-i] [-t] [-task T] ALLOC CMD ARGS...`: runs a command inside a task
//! through the API's exec WebSocket (Nomad's frames), with the local terminal in raw mode
//! when a TTY is used, and exits with the command's exit code.

use std::io::Write;
use std::os::fd::AsFd;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::ApiClient;
use drover_api_types as api;

pub struct ExecArgs<'a> {
    pub alloc: &'a str,
    pub task: Option<&'a str>,
    pub command: Vec<String>,
    pub interactive: bool,
    /// None: a terminal when stdin is one.
    pub tty: Option<bool>,
}

/// Puts the terminal into raw mode for as long as it lives.
struct RawMode {
    saved: nix::sys::termios::Termios,
}

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).context("reading the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).context("setting raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    // SAFETY: winsize is plain integers, for which all zeroes is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(libc::STDIN_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (r == 0 && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

fn size_frame(rows: u16, cols: u16) -> Message {
    Message::Text(
        json!({ "tty_size": { "height": rows, "width": cols } })
            .to_string()
            .into(),
    )
}

type ExecSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn alloc_exec(c: &ApiClient, args: ExecArgs<'_>) -> anyhow::Result<i32> {
    let id = crate::ids::resolve(c, crate::ids::Kind::Alloc, args.alloc).await?;
    let a: api::Allocation = c.get(&format!("/v1/allocation/{id}")).await?;
    if a.client_status != drover_model::ClientStatus::Running {
        bail!(
            "allocation {} is {}, not running: nothing to exec into",
            a.id,
            a.client_status
        );
    }
    let stdin_is_tty = nix::unistd::isatty(std::io::stdin().as_fd()).unwrap_or(false);
    let tty = args.tty.unwrap_or(stdin_is_tty);
    let ws = connect(c, &a.id, &args, tty).await?;
    let (mut sink, stream) = ws.split();
    let raw = if tty && stdin_is_tty {
        Some(RawMode::enter()?)
    } else {
        None
    };
    if tty && let Some((rows, cols)) = terminal_size() {
        sink.send(size_frame(rows, cols)).await?;
    }
    let (to_ws, from_local) = tokio::sync::mpsc::channel::<Message>(16);
    if args.interactive {
        tokio::spawn(forward_stdin(to_ws.clone()));
    } else {
        let _ = to_ws
            .send(Message::Text(
                json!({ "stdin": { "close": true } }).to_string().into(),
            ))
            .await;
    }
    if tty {
        tokio::spawn(forward_resizes(to_ws.clone()));
    }
    drop(to_ws);
    relay(sink, stream, from_local, raw).await
}

/// Opens the exec WebSocket for `alloc`.
async fn connect(
    c: &ApiClient,
    alloc: &str,
    args: &ExecArgs<'_>,
    tty: bool,
) -> anyhow::Result<ExecSocket> {
    let command = serde_json::to_string(&args.command)?;
    let mut url = c.url(&format!("/v1/client/allocation/{alloc}/exec"))?;
    url.query_pairs_mut()
        .append_pair("command", &command)
        .append_pair("tty", &tty.to_string());
    if let Some(t) = args.task {
        url.query_pairs_mut().append_pair("task", t);
    }
    let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
    url.set_scheme(scheme)
        .map_err(|_| anyhow::anyhow!("cannot use a WebSocket on {url}"))?;
    // A follower forwards the session to the leader itself.
    Ok(
        tokio_tungstenite::connect_async(ws_request(c, url.as_str())?)
            .await
            .with_context(|| format!("opening the exec session at {url}"))?
            .0,
    )
}

/// The WebSocket handshake request to `url`, with the CLI's token.
fn ws_request(
    c: &ApiClient,
    url: &str,
) -> anyhow::Result<tokio_tungstenite::tungstenite::handshake::client::Request> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = url
        .into_client_request()
        .with_context(|| format!("{url} is not a WebSocket URL"))?;
    if let Some(t) = &c.settings.token {
        req.headers_mut().insert(
            "X-Nomad-Token",
            t.parse().context("the token cannot be a header")?,
        );
    }
    Ok(req)
}

/// Sends the local stdin as `stdin` frames, then a close frame at its end.
async fn forward_stdin(tx: tokio::sync::mpsc::Sender<Message>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let frame = match stdin.read(&mut buf).await {
            Ok(0) | Err(_) => json!({ "stdin": { "close": true } }),
            Ok(n) => json!({ "stdin": { "data": B64.encode(&buf[..n]) } }),
        };
        let last = frame["stdin"].get("close").is_some();
        if tx
            .send(Message::Text(frame.to_string().into()))
            .await
            .is_err()
            || last
        {
            return;
        }
    }
}

/// Sends a `tty_size` frame whenever the local terminal is resized.
async fn forward_resizes(tx: tokio::sync::mpsc::Sender<Message>) {
    let Ok(mut winch) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
    else {
        return;
    };
    while winch.recv().await.is_some() {
        if let Some((rows, cols)) = terminal_size()
            && tx.send(size_frame(rows, cols)).await.is_err()
        {
            return;
        }
    }
}

/// Moves frames both ways until the command exits: local frames to the session, its
/// stdout/stderr to ours. The command's exit code, or its error (after leaving raw mode).
async fn relay(
    mut sink: futures::stream::SplitSink<ExecSocket, Message>,
    mut stream: futures::stream::SplitStream<ExecSocket>,
    mut from_local: tokio::sync::mpsc::Receiver<Message>,
    raw: Option<RawMode>,
) -> anyhow::Result<i32> {
    let mut stdout = std::io::stdout();
    let mut stderr = std::io::stderr();
    loop {
        tokio::select! {
            Some(m) = from_local.recv() => {
                sink.send(m).await.context("the exec session closed")?;
            }
            frame = stream.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(Message::Close(_))) | None => bail!("the exec session ended without an exit code"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => bail!("the exec session broke: {e}"),
                };
                let v: Value = serde_json::from_str(&text)
                    .with_context(|| format!("the server sent a frame that is not JSON: {text}"))?;
                let data = |k: &str| {
                    v.get(k)
                        .and_then(|o| o.get("data"))
                        .and_then(Value::as_str)
                        .map(|d| B64.decode(d))
                };
                if let Some(d) = data("stdout") {
                    stdout.write_all(&d.context("stdout data is not base64")?)?;
                    stdout.flush()?;
                } else if let Some(d) = data("stderr") {
                    stderr.write_all(&d.context("stderr data is not base64")?)?;
                    stderr.flush()?;
                } else if v.get("exited").and_then(Value::as_bool) == Some(true) {
                    let result = &v["result"];
                    if let Some(e) = result.get("error").and_then(Value::as_str) {
                        drop(raw);
                        bail!("{e}");
                    }
                    return Ok(result["exit_code"].as_i64().unwrap_or(0) as i32);
                }
            }
        }
    }
}
