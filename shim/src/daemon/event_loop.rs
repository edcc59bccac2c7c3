//! The shim's one poll() loop: SIGCHLD (reaping the task and exec helpers), the task's output,
//! the socket's clients, the stop deadline and the linger after the task's exit.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::clients::Client;
use super::isolated::Isolated;
use super::output::Output;
use super::{cvt, last_err};
use crate::protocol::{ExitRecord, Reply};
use crate::{EXIT_FILE, LaunchSpec, TaskExit, now_nanos, write_atomic};

/// How long the shim stays after the task exited, at most.
const LINGER_MAX: Duration = Duration::from_secs(5);
/// How long it stays at least, so a client that just connected gets its answer.
const LINGER_MIN: Duration = Duration::from_millis(200);

/// Blocks SIGCHLD and returns a signalfd for it.
pub(super) fn sigchld_fd() -> io::Result<OwnedFd> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new descriptor.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        cvt(libc::sigprocmask(
            libc::SIG_BLOCK,
            &set,
            std::ptr::null_mut(),
        ))?;
        let fd = cvt(libc::signalfd(
            -1,
            &set,
            libc::SFD_CLOEXEC | libc::SFD_NONBLOCK,
        ))?;
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The running shim's state.
pub(super) struct Shim {
    pub(super) id: String,
    pub(super) dir: PathBuf,
    pub(super) task_pid: i32,
    pub(super) task_start_time: u64,
    pub(super) started_at: i64,
    pub(super) outputs: [Output; 2],
    pub(super) sigfd: OwnedFd,
    pub(super) listener: UnixListener,
    pub(super) clients: Vec<Client>,
    pub(super) next_client: u64,
    /// Running `exec` helpers: (pid, the client waiting for its exit).
    pub(super) exec_sessions: Vec<(i32, u64)>,
    pub(super) isolated: Option<Isolated>,
    pub(super) spec: LaunchSpec,
    pub(super) exit: Option<TaskExit>,
    pub(super) exited_at: Option<Instant>,
    pub(super) stop_requested: bool,
    pub(super) kill_deadline: Option<Instant>,
}

impl Shim {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        id: String,
        dir: &std::path::Path,
        report: &crate::LaunchReport,
        outputs: [Output; 2],
        sigfd: OwnedFd,
        listener: UnixListener,
        isolated: Option<Isolated>,
        spec: LaunchSpec,
    ) -> Self {
        Self {
            id,
            dir: dir.to_path_buf(),
            task_pid: report.task_pid,
            task_start_time: report.task_start_time,
            started_at: report.task_started_at_unix_nanos,
            outputs,
            sigfd,
            listener,
            clients: Vec::new(),
            next_client: 0,
            exec_sessions: Vec::new(),
            isolated,
            spec,
            exit: None,
            exited_at: None,
            stop_requested: false,
            kill_deadline: None,
        }
    }

    pub(super) fn serve(&mut self) {
        loop {
            let now = Instant::now();
            if let Some(at) = self.exited_at {
                let idle = self.clients.iter().all(|c| c.wbuf.is_empty() && !c.waiting);
                let no_clients = self.clients.is_empty();
                if now >= at + LINGER_MAX || (now >= at + LINGER_MIN && idle && no_clients) {
                    return;
                }
            }
            if let Some(deadline) = self.kill_deadline
                && now >= deadline
            {
                self.kill_deadline = None;
                if self.exit.is_none() {
                    log!("the task outlived its stop timeout: SIGKILL");
                    let _ = self.kill_group(libc::SIGKILL);
                }
            }
            let mut timeout: Option<Duration> = None;
            let mut consider = |t: Instant| {
                let d = t.saturating_duration_since(now);
                timeout = Some(timeout.map_or(d, |cur| cur.min(d)));
            };
            if let Some(d) = self.kill_deadline {
                consider(d);
            }
            if let Some(at) = self.exited_at {
                consider(at + LINGER_MIN);
                consider(at + LINGER_MAX);
            }

            let mut pfds = vec![
                libc::pollfd {
                    fd: self.sigfd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.listener.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            for o in &self.outputs {
                pfds.push(libc::pollfd {
                    fd: o.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            for c in &self.clients {
                let mut events = libc::POLLIN;
                if !c.wbuf.is_empty() {
                    events |= libc::POLLOUT;
                }
                pfds.push(libc::pollfd {
                    fd: c.stream.as_raw_fd(),
                    events,
                    revents: 0,
                });
            }
            let ms = timeout.map_or(-1, |d| d.as_millis().min(60_000) as i32 + 1);
            // SAFETY: pfds is a valid array of pollfd.
            let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
            if n < 0 {
                let e = last_err();
                if e.kind() != io::ErrorKind::Interrupted {
                    log!("poll failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
                continue;
            }
            let ready = |i: usize| pfds[i].revents != 0;
            for (i, o) in self.outputs.iter_mut().enumerate() {
                if ready(2 + i) {
                    o.pump();
                }
            }
            if ready(0) {
                self.drain_sigfd();
                self.reap();
            }
            if ready(1) {
                self.accept();
            }
            let base = 4;
            for i in 0..self.clients.len() {
                if pfds.get(base + i).is_some_and(|p| p.revents != 0) {
                    self.service_client(i);
                }
            }
            self.end_abandoned_execs();
            self.clients.retain(|c| !c.closed);
        }
    }

    fn drain_sigfd(&mut self) {
        let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
        // SAFETY: reading siginfo records into a buffer of their size.
        while unsafe { libc::read(self.sigfd.as_raw_fd(), info.as_mut_ptr().cast(), info.len()) }
            > 0
        {}
    }

    /// Reaps every exited child; the task's status is recorded, orphans are just collected.
    fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if let Some(at) = self.exec_sessions.iter().position(|(p, _)| *p == pid) {
                let (_, client) = self.exec_sessions.remove(at);
                let reply = Reply::Exit(exit_of(status));
                if let Some(i) = self.clients.iter().position(|c| c.id == client) {
                    self.clients[i].queue(&reply);
                    self.flush_client(i);
                }
                continue;
            }
            if pid != self.task_pid {
                continue;
            }
            let mut exit = exit_of(status);
            if let Some(iso) = &mut self.isolated {
                // init hands over the task's own status; without it, init's tells.
                if let Some(task_status) = iso.take_result() {
                    exit = exit_of(task_status);
                }
                exit.oom_killed = iso.cgroup.oom_kills() > 0;
            }
            self.on_task_exit(exit);
        }
    }

    fn on_task_exit(&mut self, exit: TaskExit) {
        log!(
            "task exited: code {} signal {}",
            exit.exit_code,
            exit.signal
        );
        // Whatever the task wrote before it exited is in the pipes now.
        for o in &mut self.outputs {
            o.pump();
        }
        if let Some(iso) = &self.isolated {
            // init is gone, so is its pid namespace; the cgroup catches whatever joined it.
            iso.cleanup();
        } else if self.stop_requested {
            // A stop covers the whole process group, stragglers included.
            let _ = self.kill_group(libc::SIGKILL);
        }
        let record = ExitRecord {
            shim_id: self.id.clone(),
            exit: exit.clone(),
            exited_at_unix_nanos: now_nanos(),
        };
        let path = self.dir.join(EXIT_FILE);
        if let Err(e) = write_atomic(&path, &record.bytes()) {
            log!("cannot write {}: {e}", path.display());
        }
        self.exit = Some(exit.clone());
        self.exited_at = Some(Instant::now());
        self.kill_deadline = None;
        let reply = Reply::Exit(exit);
        for c in self.clients.iter_mut().filter(|c| c.waiting) {
            c.waiting = false;
            c.queue(&reply);
        }
        for i in 0..self.clients.len() {
            self.flush_client(i);
        }
    }

    pub(super) fn kill_group(&self, sig: i32) -> io::Result<()> {
        if let Some(iso) = &self.isolated {
            // init forwards the signal to the task's process group; SIGKILL of init takes
            // down its whole pid namespace, and the cgroup anything that joined it.
            // SAFETY: kill(2) of our own unreaped child.
            let r = cvt(unsafe { libc::kill(self.task_pid, sig) }).map(|_| ());
            if sig == libc::SIGKILL {
                iso.cgroup.kill_all();
            }
            return r;
        }
        // SAFETY: kill with a negative pid signals the task's process group. The group id is
        // the task's pid, which cannot be reused while the group has members (or while the
        // task is an unreaped zombie).
        cvt(unsafe { libc::kill(-self.task_pid, sig) }).map(|_| ())
    }
}

/// How a process ended, from its wait status.
pub(super) fn exit_of(status: i32) -> TaskExit {
    if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        TaskExit {
            exit_code: 128 + sig,
            signal: sig,
            oom_killed: false,
            err: None,
        }
    } else {
        TaskExit {
            exit_code: libc::WEXITSTATUS(status),
            signal: 0,
            oom_killed: false,
            err: None,
        }
    }
}
