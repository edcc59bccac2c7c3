//! Running a command for `ExecTask`: with pipes, or on a pseudo-terminal when the caller
//! asked for a TTY, streaming its output and feeding it the caller's input.
//!
//! A driver whose tasks run in the host's namespaces (raw_exec) prepares a
//! [`std::process::Command`] with the task's environment and hands it to [`run`]; an
//! isolating driver prepares one that enters the task's namespaces first.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use drover_proto::driver::{ExitResult, TerminalSize, exec_task_request, exec_task_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::DriverError;

/// Output is forwarded in chunks of at most this many bytes.
const CHUNK: usize = 32 * 1024;

/// A command that runs `argv` in `cwd` with exactly `env`, as `user` when given (a name or a
/// numeric uid). The first element of `argv` is looked up in `env`'s `PATH`.
pub fn command(
    argv: &[String],
    env: &[(String, String)],
    cwd: &std::path::Path,
    user: Option<&str>,
) -> Result<Command, DriverError> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| DriverError::InvalidArgument("exec needs a command".into()))?;
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let program = resolve(program, path).ok_or_else(|| {
        DriverError::InvalidArgument(format!(
            "executable not found: {program} (searched PATH={path})"
        ))
    })?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(env.iter().cloned())
        .current_dir(cwd);
    if let Some(user) = user.filter(|u| !u.is_empty()) {
        let found = match user.parse::<u32>() {
            Ok(uid) => nix::unistd::User::from_uid(uid.into()),
            Err(_) => nix::unistd::User::from_name(user),
        }
        .map_err(|e| DriverError::Internal(format!("cannot look up user {user:?}: {e}")))?
        .ok_or_else(|| DriverError::InvalidArgument(format!("no user named {user:?}")))?;
        cmd.uid(found.uid.as_raw()).gid(found.gid.as_raw());
    }
    Ok(cmd)
}

/// Makes `cmd` join the allocation's network namespace between fork and exec, so an
/// `alloc exec` into an unisolated task (raw_exec in a bridge or CNI group) runs where the
/// task runs. `cmd` keeps the opened namespace (close-on-exec) until it is dropped.
pub fn join_network(cmd: &mut Command, ns: drover_shim::isolate::netns::NetworkNamespace) {
    use drover_shim::isolate::{netns, syscalls::Host};
    // SAFETY: the closure runs in the forked child and makes one system call (setns) on a
    // descriptor the command owns.
    unsafe {
        cmd.pre_exec(move || netns::enter(&mut Host, ns.fd()));
    }
}

fn resolve(program: &str, path: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return is_exe(&p).then_some(p);
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(program))
        .find(|p| is_exe(p))
}

/// Runs `cmd` to its end: with a pseudo-terminal when `tty` (stdout and stderr are then one
/// stream, sent as stdout), with pipes otherwise. Input messages feed its stdin, resize the
/// terminal, or close stdin; output goes to `output`. Returns how it exited.
pub async fn run(
    mut cmd: Command,
    tty: bool,
    size: Option<TerminalSize>,
    mut input: mpsc::Receiver<exec_task_request::Msg>,
    output: mpsc::Sender<exec_task_response::Msg>,
) -> Result<ExitResult, DriverError> {
    if tty {
        return run_tty(cmd, size, input, output).await;
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::InvalidArgument(format!("cannot start the command: {e}")))?;
    let group = GroupKill::new(&child);
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let out = tokio::spawn(forward(
        stdout,
        output.clone(),
        exec_task_response::Msg::Stdout,
    ));
    let err = tokio::spawn(forward(stderr, output, exec_task_response::Msg::Stderr));
    let feeder = tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                exec_task_request::Msg::Stdin(data) => {
                    let Some(w) = stdin.as_mut() else { continue };
                    if w.write_all(&data).await.is_err() {
                        stdin = None;
                    }
                }
                exec_task_request::Msg::StdinClose(_) => stdin = None,
                exec_task_request::Msg::Resize(_) | exec_task_request::Msg::Setup(_) => {}
            }
        }
    });
    let status = child
        .wait()
        .await
        .map_err(|e| DriverError::Internal(format!("waiting for the command: {e}")))?;
    group.disarm();
    feeder.abort();
    let _ = out.await;
    let _ = err.await;
    Ok(exit_of(status))
}

/// Kills the command's whole process group if the run is dropped before the command
/// exited (its caller went away, or gave up at a timeout): `kill_on_drop` alone reaches the
/// command but not what it started (`sh -c "sleep 100; ..."` leaves the sleep behind).
/// The command leads its own group (`process_group(0)`, or `setsid` with a terminal).
struct GroupKill(Option<i32>);

impl GroupKill {
    fn new(child: &tokio::process::Child) -> GroupKill {
        GroupKill(child.id().and_then(|p| i32::try_from(p).ok()))
    }

    /// The command exited: its group is left alone.
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // The leader is not reaped yet (the run was dropped before its wait returned),
            // so its pid still names this group.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pgid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

async fn forward(
    mut r: impl tokio::io::AsyncRead + Unpin,
    output: mpsc::Sender<exec_task_response::Msg>,
    wrap: fn(Vec<u8>) -> exec_task_response::Msg,
) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn exit_of(status: std::process::ExitStatus) -> ExitResult {
    crate::exit_result(status.code().unwrap_or(0), status.signal().unwrap_or(0))
}

fn set_size(master: &OwnedFd, size: &TerminalSize) {
    let ws = libc::winsize {
        ws_row: size.rows.min(u16::MAX as u32) as u16,
        ws_col: size.cols.min(u16::MAX as u32) as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

async fn run_tty(
    mut cmd: Command,
    size: Option<TerminalSize>,
    mut input: mpsc::Receiver<exec_task_request::Msg>,
    output: mpsc::Sender<exec_task_response::Msg>,
) -> Result<ExitResult, DriverError> {
    let pty = nix::pty::openpty(None, None)
        .map_err(|e| DriverError::Internal(format!("cannot open a pseudo-terminal: {e}")))?;
    if let Some(size) = &size {
        set_size(&pty.master, size);
    }
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| DriverError::Internal(format!("cannot duplicate the terminal: {e}")))
    };
    cmd.stdin(Stdio::from(dup(&pty.slave)?))
        .stdout(Stdio::from(dup(&pty.slave)?))
        .stderr(Stdio::from(dup(&pty.slave)?));
    // SAFETY: between fork and exec the closure only makes async-signal-safe calls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = tokio::process::Command::from(cmd)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| DriverError::InvalidArgument(format!("cannot start the command: {e}")))?;
    let group = GroupKill::new(&child);
    drop(pty.slave);
    let master = pty.master;
    let reader = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let mut writer = tokio::fs::File::from_std(std::fs::File::from(dup(&master)?));
    let out = tokio::spawn(forward(reader, output, exec_task_response::Msg::Stdout));
    let feeder = tokio::spawn(async move {
        while let Some(msg) = input.recv().await {
            match msg {
                exec_task_request::Msg::Stdin(data) => {
                    if writer.write_all(&data).await.is_err() {
                        return;
                    }
                    let _ = writer.flush().await;
                }
                // End of input on a terminal is ^D.
                exec_task_request::Msg::StdinClose(_) => {
                    let _ = writer.write_all(&[4]).await;
                    let _ = writer.flush().await;
                }
                exec_task_request::Msg::Resize(size) => set_size(&master, &size),
                exec_task_request::Msg::Setup(_) => {}
            }
        }
    });
    let status = child
        .wait()
        .await
        .map_err(|e| DriverError::Internal(format!("waiting for the command: {e}")))?;
    group.disarm();
    feeder.abort();
    // The reader sees EIO once the last slave descriptor (the child's) is gone.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), out).await;
    Ok(exit_of(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn collect(cmd: Command, tty: bool, stdin: &[u8]) -> (ExitResult, Vec<u8>, Vec<u8>) {
        let (in_tx, in_rx) = mpsc::channel(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        in_tx
            .send(exec_task_request::Msg::Stdin(stdin.to_vec()))
            .await
            .unwrap();
        in_tx
            .send(exec_task_request::Msg::StdinClose(true))
            .await
            .unwrap();
        let run = tokio::spawn(run(cmd, tty, None, in_rx, out_tx));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(m) = out_rx.recv().await {
            match m {
                exec_task_response::Msg::Stdout(b) => out.extend(b),
                exec_task_response::Msg::Stderr(b) => err.extend(b),
                exec_task_response::Msg::Exited(_) => {}
            }
        }
        (run.await.unwrap().unwrap(), out, err)
    }

    fn env() -> Vec<(String, String)> {
        vec![("PATH".into(), "/usr/bin:/bin".into())]
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
        let argv: Vec<String> = ["sh", "-c", "cat; echo oops >&2; exit 3"]
            .map(String::from)
            .to_vec();
        let cmd = command(&argv, &env(), std::path::Path::new("/"), None).unwrap();
        let (exit, out, err) = collect(cmd, false, b"hello\n").await;
        assert_eq!(exit.exit_code, 3);
        assert_eq!(out, b"hello\n");
        assert_eq!(err, b"oops\n");
    }

    #[tokio::test]
    async fn a_tty_is_a_terminal() {
        let argv: Vec<String> = ["sh", "-c", "test -t 0 && test -t 1 && echo tty"]
            .map(String::from)
            .to_vec();
        let cmd = command(&argv, &env(), std::path::Path::new("/"), None).unwrap();
        let (exit, out, _) = collect(cmd, true, b"").await;
        assert_eq!(exit.exit_code, 0, "{}", String::from_utf8_lossy(&out));
        assert!(String::from_utf8_lossy(&out).contains("tty"));
    }

    /// Whether `pid` is alive (a zombie is not).
    fn alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
            .is_some_and(|r| !r.starts_with('Z'))
    }

    #[tokio::test]
    async fn a_dropped_run_kills_what_the_command_started() {
        for tty in [false, true] {
            let argv: Vec<String> = ["sh", "-c", "sleep 300 & echo $!; wait"]
                .map(String::from)
                .to_vec();
            let cmd = command(&argv, &env(), std::path::Path::new("/"), None).unwrap();
            let (_in_tx, in_rx) = mpsc::channel(4);
            let (out_tx, mut out_rx) = mpsc::channel(4);
            let running = tokio::spawn(run(cmd, tty, None, in_rx, out_tx));
            let mut text = String::new();
            let pid: i32 = loop {
                match out_rx.recv().await {
                    Some(exec_task_response::Msg::Stdout(b)) => {
                        text.push_str(&String::from_utf8_lossy(&b))
                    }
                    Some(_) => {}
                    None => panic!("no pid printed: {text:?}"),
                }
                if let Some(line) = text.lines().next().filter(|_| text.contains('\n')) {
                    break line.trim().parse().unwrap();
                }
            };
            assert!(alive(pid), "tty={tty}: the background sleep runs");
            // The caller gives up (a check's timeout): the run is dropped.
            running.abort();
            let _ = running.await;
            let mut gone = false;
            for _ in 0..50 {
                if !alive(pid) {
                    gone = true;
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            assert!(
                gone,
                "tty={tty}: the command's child {pid} outlived the run"
            );
        }
    }

    #[test]
    fn unknown_programs_and_users_are_named() {
        let argv = vec!["no-such-program-xyz".to_string()];
        let e = command(&argv, &env(), std::path::Path::new("/"), None).unwrap_err();
        assert!(e.to_string().contains("no-such-program-xyz"), "{e}");
        let argv = vec!["true".to_string()];
        let e = command(
            &argv,
            &env(),
            std::path::Path::new("/"),
            Some("no-such-user-xyz"),
        )
        .unwrap_err();
        assert!(e.to_string().contains("no-such-user-xyz"), "{e}");
    }
}
