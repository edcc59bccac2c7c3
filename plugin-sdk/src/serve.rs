//! Serving a plugin: the go-plugin handshake, server side.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_proto::base::base_plugin_server::BasePluginServer;
use drover_proto::driver::driver_server::DriverServer;
use drover_proto::go_plugin::Empty;
use drover_proto::go_plugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};

use crate::driver::{DriverService, TaskDriver};
use crate::handshake::{
    ENV_PROTOCOL_VERSIONS, ENV_STDIN_LIFELINE, ENV_UNIX_SOCKET_DIR, MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE, MAX_UNIX_SOCKET_PATH, format_handshake_line, negotiate_version,
};

/// How long a plugin waits for in-flight RPCs (a host's pending WaitTask, say) after it was
/// asked to stop, before it exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Why serving a plugin failed.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on the plugin socket {path}: {source}")]
    Listen {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the plugin socket path {path} is {len} bytes, longer than a Unix socket allows \
         ({MAX_UNIX_SOCKET_PATH}); set {ENV_UNIX_SOCKET_DIR} to a shorter directory"
    )]
    PathTooLong { path: PathBuf, len: usize },
    #[error("cannot print the handshake line: {0}")]
    Handshake(std::io::Error),
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Exits the process with an explanation unless a Drover (or go-plugin) host started it:
/// the magic cookie must be in the environment. Synchronous: call it first thing in `main`.
pub fn check_cookie_or_exit() {
    if std::env::var(MAGIC_COOKIE_KEY).as_deref() != Ok(MAGIC_COOKIE_VALUE) {
        eprintln!(
            "This binary is a Drover plugin; it is started by the drover agent, not by hand.\n\
             Put it in the agent's plugin_dir and configure it with a plugin \"NAME\" {{ ... }} block;\n\
             the agent launches it and talks to it over gRPC.\n\
             ({MAGIC_COOKIE_KEY} is missing or wrong in the environment.)"
        );
        std::process::exit(1);
    }
}

/// Negotiates the protocol version from the environment, or exits with an explanation.
fn negotiate_or_exit(supported: &[u32]) -> u32 {
    let offered = std::env::var(ENV_PROTOCOL_VERSIONS).ok();
    match negotiate_version(offered.as_deref(), supported) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("This Drover plugin cannot talk to its host: {e}");
            std::process::exit(1);
        }
    }
}

/// Where the plugin's socket goes: `$PLUGIN_UNIX_SOCKET_DIR`, else `$TMPDIR`, else `/tmp`.
fn socket_dir() -> PathBuf {
    for var in [ENV_UNIX_SOCKET_DIR, "TMPDIR"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
    }
    PathBuf::from("/tmp")
}

/// A short random hex string (rand's thread generator, seeded by the OS).
pub(crate) fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

struct Controller {
    shutdown: mpsc::Sender<&'static str>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _req: Request<Empty>) -> Result<Response<Empty>, Status> {
        let tx = self.shutdown.clone();
        // Answer first; stop right after.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let _ = tx.send("the host asked the plugin to shut down").await;
        });
        Ok(Response::new(Empty {}))
    }
}

/// Removes the socket file when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Serves `driver` as a go-plugin-compatible gRPC plugin until the host stops it.
///
/// Checks the magic cookie (exits 1 with an explanation when it is missing), negotiates the
/// protocol version from `PLUGIN_PROTOCOL_VERSIONS`, listens on a fresh Unix socket in
/// `$PLUGIN_UNIX_SOCKET_DIR` (else `$TMPDIR`, else `/tmp`), serves `grpc.health.v1.Health`
/// ("plugin" is SERVING), `plugin.GRPCController`, `BasePlugin` and `Driver`, then prints the
/// handshake line on stdout. Returns after GRPCController.Shutdown, SIGTERM, or (when
/// `DROVER_PLUGIN_STDIN_LIFELINE=1`) the end of stdin; the socket is removed.
///
/// Must run inside a tokio runtime. The process should exit once it returns.
pub async fn serve_driver<D: TaskDriver>(driver: D) -> Result<(), ServeError> {
    check_cookie_or_exit();
    let info = driver.plugin_info();
    let service = DriverService::new(driver);
    serve_plugin(
        &info.name,
        &info.version,
        &info.protocol_versions,
        move |router| {
            router
                .add_service(BasePluginServer::new(service.clone()))
                .add_service(DriverServer::new(service))
        },
    )
    .await
}

/// The go-plugin server shared by every kind of plugin: negotiates the protocol version,
/// listens, serves health ("plugin" SERVING), the controller and the services `add` puts on
/// the router, prints the handshake line, and returns once the host stops the plugin.
pub(crate) async fn serve_plugin(
    name: &str,
    plugin_version: &str,
    protocol_versions: &[u32],
    add: impl FnOnce(tonic::transport::server::Router) -> tonic::transport::server::Router,
) -> Result<(), ServeError> {
    check_cookie_or_exit();
    let version = negotiate_or_exit(protocol_versions);

    let dir = socket_dir();
    let path = dir.join(format!(
        "plugin-{}-{}.sock",
        std::process::id(),
        random_hex(4)
    ));
    let len = path.as_os_str().len();
    if len > MAX_UNIX_SOCKET_PATH {
        return Err(ServeError::PathTooLong { path, len });
    }
    let listener = UnixListener::bind(&path).map_err(|source| ServeError::Listen {
        path: path.clone(),
        source,
    })?;
    let socket = SocketFile(path.clone());

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_service_status("plugin", tonic_health::ServingStatus::Serving)
        .await;

    let (stop_tx, mut stop_rx) = mpsc::channel::<&'static str>(4);

    let server = add(tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(GrpcControllerServer::new(Controller {
            shutdown: stop_tx.clone(),
        })));

    let (graceful_tx, graceful_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve_with_incoming_shutdown(
        UnixListenerStream::new(listener),
        async {
            let _ = graceful_rx.await;
        },
    ));

    print_handshake(version, &path).map_err(ServeError::Handshake)?;
    // After the handshake line: the host dials and checks health while the signal handlers
    // and the stdin watcher (a thread) are set up. Nothing here can fail.
    spawn_stop_sources(stop_tx.clone());
    tracing::info!(
        plugin = %name,
        version = %plugin_version,
        protocol_version = version,
        socket = %path.display(),
        "plugin serving"
    );

    let mut serving = serving;
    let result = tokio::select! {
        r = &mut serving => r,
        reason = stop_rx.recv() => {
            tracing::info!(reason = reason.unwrap_or("stop requested"), "plugin stopping");
            let _ = graceful_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut serving).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!("in-flight RPCs outlived the grace period; exiting anyway");
                    serving.abort();
                    Ok(Ok(()))
                }
            }
        }
    };
    drop(socket);
    match result {
        Ok(r) => r.map_err(ServeError::from),
        Err(join) => {
            tracing::error!(error = %join, "the gRPC server task failed");
            Ok(())
        }
    }
}

fn print_handshake(version: u32, path: &Path) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", format_handshake_line(version, path))?;
    out.flush()
}

/// SIGTERM, and the end of stdin when the host asked for the lifeline, stop the plugin.
/// SIGINT is ignored, as go-plugin plugins do: a Ctrl-C in the host's terminal reaches the
/// whole process group, and the host decides when its plugins stop.
fn spawn_stop_sources(tx: mpsc::Sender<&'static str>) {
    use tokio::signal::unix::{SignalKind, signal};
    if let Ok(mut term) = signal(SignalKind::terminate()) {
        let tx = tx.clone();
        tokio::spawn(async move {
            term.recv().await;
            let _ = tx.send("SIGTERM").await;
        });
    }
    if let Ok(mut int) = signal(SignalKind::interrupt()) {
        tokio::spawn(async move {
            while int.recv().await.is_some() {
                tracing::debug!("ignoring SIGINT; the host stops this plugin");
            }
        });
    }
    if std::env::var(ENV_STDIN_LIFELINE).as_deref() == Ok("1") {
        // A plain thread: a blocking read must not hold up the runtime's shutdown.
        let spawned = std::thread::Builder::new()
            .name("stdin-lifeline".into())
            .spawn(move || {
                let mut stdin = std::io::stdin().lock();
                let mut buf = [0u8; 256];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) => break,
                        Ok(_) => continue,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                let _ = tx.blocking_send("the host closed the plugin's stdin");
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot watch stdin; the plugin will not notice its host dying");
        }
    }
}

/// The async runtime a plugin process serves on: one worker thread (a plugin's work is
/// answering RPCs and talking to shims; a second worker only costs memory — every plugin
/// process counts against the agent's idle footprint), plus tokio's blocking pool for
/// launches.
pub fn plugin_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs a plugin's server on [`plugin_runtime`] until it stops, then exits the process: 0
/// when it stopped cleanly, 1 (with the error logged and on stderr) otherwise.
pub(crate) fn serve_to_exit<E: std::fmt::Display>(
    server: impl std::future::Future<Output = Result<(), E>>,
) -> ! {
    let runtime = match plugin_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(server);
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            tracing::error!(error = %e, "plugin failed");
            eprintln!("plugin failed: {e}");
            std::process::exit(1);
        }
    }
}
