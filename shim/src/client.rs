//! The drivers' side of the shim protocol (async, tokio), and recovery after a restart.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::procfs::{self, TaskStats};
use crate::protocol::{ExitRecord, Reply, Request, ShimInspect, SignalArg};
use crate::{EXIT_FILE, ShimError, ShimHandle, TaskExit};

/// How long connecting and the `hello` exchange may take before the shim counts as hung.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an ordinary request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection to one task's shim. Each request uses its own short connection, so the
/// client is cheap to clone and requests never queue behind a pending `wait`.
#[derive(Debug, Clone)]
pub struct ShimClient {
    handle: ShimHandle,
}

struct Conn {
    reader: BufReader<UnixStream>,
}

impl Conn {
    /// Sends `req` and reads its reply; a refusal is [`ShimError::Refused`].
    async fn request(&mut self, req: &Request) -> Result<Reply, ShimError> {
        let line = req.line()? + "\n";
        let stream = self.reader.get_mut();
        stream
            .write_all(line.as_bytes())
            .await
            .map_err(|e| ShimError::io("cannot write to the task shim", e))?;
        read_reply(&mut self.reader, req, "the connection").await
    }
}

impl ShimClient {
    /// Connects to the shim and checks that it is the one named by `handle`.
    pub async fn connect(handle: &ShimHandle) -> Result<Self, ShimError> {
        let client = Self {
            handle: handle.clone(),
        };
        client.open().await?;
        Ok(client)
    }

    /// A client for `handle` that has not contacted the shim yet (requests will).
    pub fn from_handle(handle: ShimHandle) -> Self {
        Self { handle }
    }

    /// The handle this client talks to.
    pub fn handle(&self) -> &ShimHandle {
        &self.handle
    }

    async fn open(&self) -> Result<Conn, ShimError> {
        let path = self.handle.socket_path();
        let fut = async {
            let stream = UnixStream::connect(&path)
                .await
                .map_err(|e| ShimError::io(format!("cannot connect to {}", path.display()), e))?;
            let mut conn = Conn {
                reader: BufReader::new(stream),
            };
            let got = match conn.request(&Request::Hello).await {
                Ok(Reply::Hello(hello)) => hello.shim_id,
                Ok(_) | Err(ShimError::Refused(_)) => String::new(),
                Err(e) => return Err(e),
            };
            if got != self.handle.shim_id {
                return Err(ShimError::WrongShim {
                    path: path.clone(),
                    expected: self.handle.shim_id.clone(),
                    got,
                });
            }
            Ok(conn)
        };
        tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
            .await
            .map_err(|_| {
                ShimError::io(
                    format!("the task shim at {} does not answer", path.display()),
                    std::io::ErrorKind::TimedOut.into(),
                )
            })?
    }

    async fn request(&self, req: Request) -> Result<Reply, ShimError> {
        let mut conn = self.open().await?;
        tokio::time::timeout(REQUEST_TIMEOUT, conn.request(&req))
            .await
            .map_err(|_| {
                ShimError::io(
                    format!(
                        "the task shim did not answer {:?}",
                        req.line().unwrap_or_default()
                    ),
                    std::io::ErrorKind::TimedOut.into(),
                )
            })?
    }

    /// Returns once the task has exited. If the shim goes away meanwhile, its exit file
    /// answers; without one the task is lost ([`ShimError::Lost`]).
    pub async fn wait(&self) -> Result<TaskExit, ShimError> {
        let attempt = async {
            let mut conn = self.open().await?;
            match conn.request(&Request::Wait).await? {
                Reply::Exit(exit) => Ok(exit),
                other => Err(unexpected(&other)),
            }
        };
        match attempt.await {
            Ok(exit) => Ok(exit),
            Err(e @ (ShimError::Refused(_) | ShimError::Protocol(_))) => Err(e),
            Err(e) => {
                // The shim may have exited right after the task; its exit file is the truth.
                // It is written before any `wait` is answered, so it exists if the task ended.
                for _ in 0..10 {
                    if let Some(exit) = read_exit_file(&self.handle.shim_dir)? {
                        return Ok(exit);
                    }
                    if !procfs::is_same_live_process(
                        self.handle.shim_pid,
                        self.handle.shim_start_time,
                    ) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if let Some(exit) = read_exit_file(&self.handle.shim_dir)? {
                    return Ok(exit);
                }
                Err(ShimError::Lost(format!(
                    "task shim is gone; task lost (lost the connection: {e})"
                )))
            }
        }
    }

    /// Sends a signal (`SIGHUP`, `HUP`, `1`) to the task's process group.
    pub async fn signal(&self, signal: &str) -> Result<(), ShimError> {
        let signal = SignalArg::parse(signal).map_err(|e| ShimError::Refused(e.to_string()))?;
        self.request(Request::Signal(signal)).await.map(|_| ())
    }

    /// Sends `signal` to the task's process group, then SIGKILL after `timeout` if the task
    /// still runs. Returns at once; [`ShimClient::wait`] tells when the task is gone.
    pub async fn stop(&self, signal: &str, timeout: Duration) -> Result<(), ShimError> {
        let signal = SignalArg::parse(signal).map_err(|e| ShimError::Refused(e.to_string()))?;
        let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.request(Request::Stop { signal, timeout_ms })
            .await
            .map(|_| ())
    }

    /// The task's state.
    pub async fn inspect(&self) -> Result<ShimInspect, ShimError> {
        match self.request(Request::Inspect).await? {
            Reply::Inspect(inspect) => Ok(inspect),
            other => Err(unexpected(&other)),
        }
    }

    /// CPU time and memory of the task's main process.
    pub async fn stats(&self) -> Result<TaskStats, ShimError> {
        match self.request(Request::Stats).await? {
            Reply::Stats(stats) => Ok(stats),
            other => Err(unexpected(&other)),
        }
    }
}

/// A reply that does not answer the request sent.
fn unexpected(reply: &Reply) -> ShimError {
    ShimError::Protocol(format!("unexpected reply {}", reply.line()))
}

/// Reads the shim's reply to `req`; `what` names the stream in the error when the shim closed
/// it. A refusal is [`ShimError::Refused`].
async fn read_reply(
    reader: &mut BufReader<UnixStream>,
    req: &Request,
    what: &str,
) -> Result<Reply, ShimError> {
    let mut buf = String::new();
    let n = reader
        .read_line(&mut buf)
        .await
        .map_err(|e| ShimError::io("cannot read from the task shim", e))?;
    if n == 0 {
        return Err(ShimError::io(
            format!("the task shim closed {what}"),
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    match Reply::parse(req, &buf)? {
        Reply::Refused(msg) => Err(ShimError::Refused(msg)),
        reply => Ok(reply),
    }
}

/// A command started by [`ShimClient::exec`] inside an isolated task.
pub struct ExecSession {
    reader: BufReader<UnixStream>,
    request: Request,
}

impl ExecSession {
    /// Returns once the command has exited.
    pub async fn wait(mut self) -> Result<TaskExit, ShimError> {
        match read_reply(&mut self.reader, &self.request, "the exec session").await? {
            Reply::Exit(exit) => Ok(exit),
            other => Err(unexpected(&other)),
        }
    }
}

impl ShimClient {
    /// Runs `argv` inside an isolated task: the shim forks a helper that joins the task's
    /// cgroups and namespaces. `stdio` (the command's stdin, stdout and stderr: pipe ends or
    /// a terminal) are passed to the shim with SCM_RIGHTS and closed here.
    pub async fn exec(
        &self,
        argv: &[String],
        tty: bool,
        stdio: [std::os::fd::OwnedFd; 3],
    ) -> Result<ExecSession, ShimError> {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use std::os::fd::AsRawFd;
        let conn = self.open().await?;
        let stream = conn.reader.into_inner();
        let request = Request::Exec(crate::isolate::enter::ExecRequest {
            argv: argv.to_vec(),
            tty,
        });
        let line = request.line()? + "\n";
        let raw = [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ];
        let sent = loop {
            stream
                .writable()
                .await
                .map_err(|e| ShimError::io("cannot write to the task shim", e))?;
            let r = stream.try_io(tokio::io::Interest::WRITABLE, || {
                sendmsg::<()>(
                    stream.as_raw_fd(),
                    &[std::io::IoSlice::new(line.as_bytes())],
                    &[ControlMessage::ScmRights(&raw)],
                    MsgFlags::empty(),
                    None,
                )
                .map_err(std::io::Error::from)
            });
            match r {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(ShimError::io("cannot send the exec request", e)),
            }
        };
        drop(stdio);
        let mut stream = stream;
        if sent < line.len() {
            stream
                .write_all(&line.as_bytes()[sent..])
                .await
                .map_err(|e| ShimError::io("cannot send the exec request", e))?;
        }
        Ok(ExecSession {
            reader: BufReader::new(stream),
            request,
        })
    }
}

/// The exit recorded in a shim's state directory, if the task has exited.
pub fn read_exit_file(shim_dir: &Path) -> Result<Option<TaskExit>, ShimError> {
    let path = shim_dir.join(EXIT_FILE);
    match std::fs::read(&path) {
        Ok(data) => ExitRecord::parse(&data)
            .map(|r| Some(r.exit))
            .map_err(|e| ShimError::Protocol(format!("{} is corrupt: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ShimError::io(format!("cannot read {}", path.display()), e)),
    }
}

/// What [`recover`] found.
#[derive(Debug)]
pub enum Recovered {
    /// The shim answers: the task is (or was until just now) running under it.
    Attached(ShimClient),
    /// The shim is gone, and recorded how the task ended.
    Exited(TaskExit),
    /// The shim is gone without a record (or was hung and has been killed, with its task).
    Lost(String),
}

/// Reattaches to the shim named by `handle` after a plugin or agent restart.
///
/// If the socket answers the handshake, the shim is attached. Otherwise its `exit.json`
/// tells how the task ended. Otherwise, if the shim process still lives (same pid, start
/// time and boot id) it is hung: it is killed through a pidfd, with its task, and the task is
/// reported lost — never left running untracked. Otherwise the task is lost.
pub async fn recover(handle: &ShimHandle) -> Recovered {
    let connect_err = match ShimClient::connect(handle).await {
        Ok(client) => return Recovered::Attached(client),
        Err(e) => e,
    };
    match read_exit_file(&handle.shim_dir) {
        Ok(Some(exit)) => return Recovered::Exited(exit),
        Ok(None) => {}
        Err(e) => tracing::warn!(shim = %handle.shim_id, error = %e, "unreadable exit file"),
    }
    let same_boot = procfs::boot_id().is_ok_and(|b| b == handle.boot_id);
    if !same_boot {
        return Recovered::Lost("task shim is gone; task lost (the node rebooted)".into());
    }
    if procfs::is_same_live_process(handle.shim_pid, handle.shim_start_time) {
        tracing::warn!(
            shim = %handle.shim_id,
            pid = handle.shim_pid,
            error = %connect_err,
            "the task shim lives but does not answer; killing it and its task"
        );
        kill_verified(handle.task_pid, handle.task_start_time, true);
        kill_verified(handle.shim_pid, handle.shim_start_time, false);
        // It may have finished after all, between our checks.
        if let Ok(Some(exit)) = read_exit_file(&handle.shim_dir) {
            return Recovered::Exited(exit);
        }
        return Recovered::Lost(format!(
            "task shim was hung and has been killed; task lost ({connect_err})"
        ));
    }
    // The shim died without a record; do not leave its task running untracked.
    if procfs::is_same_live_process(handle.task_pid, handle.task_start_time) {
        tracing::warn!(shim = %handle.shim_id, pid = handle.task_pid, "the task outlived its shim; killing it");
        kill_verified(handle.task_pid, handle.task_start_time, true);
    }
    Recovered::Lost("task shim is gone; task lost".into())
}

/// SIGKILLs `pid` through a pidfd after checking, with the pidfd held, that it is still the
/// process that started at `start_time`; `group` also kills its process group first.
fn kill_verified(pid: i32, start_time: u64, group: bool) {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return;
    }
    // SAFETY: fd is ours.
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    if !procfs::is_same_live_process(pid, start_time) {
        return;
    }
    if group {
        // SAFETY: the group id is the pid, held alive (not reusable) by the process we verified.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    // SAFETY: signalling through a pidfd cannot reach a recycled pid.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
}
