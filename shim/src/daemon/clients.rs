//! The socket's clients: accepting, reading request lines (and the descriptors an `exec`
//! passes), answering them with the typed protocol, writing replies without blocking.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use super::event_loop::Shim;
use crate::procfs;
use crate::protocol::{Hello, Reply, Request, RequestError, ShimInspect};

/// Longest request line a client may send.
const MAX_LINE: usize = 64 * 1024;

/// A connected client.
pub(super) struct Client {
    pub(super) id: u64,
    /// Descriptors received with the client's messages (for `exec`).
    pub(super) fds: Vec<OwnedFd>,
    pub(super) stream: UnixStream,
    pub(super) rbuf: Vec<u8>,
    pub(super) wbuf: Vec<u8>,
    pub(super) waiting: bool,
    pub(super) closed: bool,
}

impl Shim {
    pub(super) fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.next_client += 1;
                    self.clients.push(Client {
                        id: self.next_client,
                        fds: Vec::new(),
                        stream,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        waiting: false,
                        closed: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    log!("accept failed: {e}");
                    return;
                }
            }
        }
    }

    pub(super) fn service_client(&mut self, i: usize) {
        let mut buf = [0u8; 4096];
        loop {
            let c = &mut self.clients[i];
            match recv_with_fds(&c.stream, &mut buf, &mut c.fds) {
                Ok(0) => {
                    // The client went away; nobody is left to answer.
                    c.closed = true;
                    return;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    if c.rbuf.len() > MAX_LINE {
                        c.closed = true;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
        while let Some(pos) = self.clients[i].rbuf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.clients[i].rbuf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim().to_string();
            if !line.is_empty() {
                self.handle(i, &line);
            }
        }
        self.flush_client(i);
    }

    pub(super) fn flush_client(&mut self, i: usize) {
        let c = &mut self.clients[i];
        while !c.wbuf.is_empty() {
            match c.stream.write(&c.wbuf) {
                Ok(0) => {
                    c.closed = true;
                    return;
                }
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    c.closed = true;
                    return;
                }
            }
        }
    }

    /// Answers one request line (an `exec`, and a `wait` while the task runs, answer later).
    fn handle(&mut self, i: usize, line: &str) {
        let reply = match Request::parse(line) {
            Ok(req) => match self.answer(i, &req) {
                Some(reply) => reply,
                None => return,
            },
            // An unreadable exec is refused only once the task could take one at all.
            Err(RequestError::BadExec(msg)) => Reply::Refused(self.exec_refusal().unwrap_or(msg)),
            Err(e) => Reply::Refused(e.to_string()),
        };
        self.clients[i].queue(&reply);
    }

    /// The reply to client `i`'s request, or `None` when it comes later.
    fn answer(&mut self, i: usize, req: &Request) -> Option<Reply> {
        Some(match req {
            Request::Hello => Reply::Hello(Hello {
                shim_id: self.id.clone(),
                task_pid: self.task_pid,
                task_start_time: self.task_start_time,
            }),
            Request::Wait => match &self.exit {
                Some(exit) => Reply::Exit(exit.clone()),
                None => {
                    self.clients[i].waiting = true;
                    return None;
                }
            },
            Request::Exec(exec) => match self.start_exec(i, exec) {
                Ok(()) => return None,
                Err(msg) => Reply::Refused(msg),
            },
            Request::Signal(_) if self.exit.is_some() => {
                Reply::Refused("the task has already exited".into())
            }
            Request::Signal(sig) => match self.kill_group(sig.number) {
                Ok(()) => Reply::Done,
                Err(e) => Reply::Refused(format!("cannot signal the task: {e}")),
            },
            Request::Stop { .. } if self.exit.is_some() => Reply::Done,
            Request::Stop { signal, timeout_ms } => {
                log!("stop: {}, SIGKILL after {timeout_ms} ms", signal.name);
                self.stop_requested = true;
                let _ = self.kill_group(signal.number);
                let deadline = Instant::now() + Duration::from_millis(*timeout_ms);
                self.kill_deadline = Some(self.kill_deadline.map_or(deadline, |d| d.min(deadline)));
                Reply::Done
            }
            Request::Inspect => Reply::Inspect(ShimInspect {
                state: if self.exit.is_some() {
                    "exited"
                } else {
                    "running"
                }
                .into(),
                task_pid: self.task_pid,
                task_start_time: self.task_start_time,
                started_at_unix_nanos: self.started_at,
                exit: self.exit.clone(),
            }),
            Request::Stats => match procfs::stats(self.task_pid) {
                Ok(mut s) if self.exit.is_none() => {
                    s.cgroup = self.isolated.as_ref().map(|i| i.cgroup.stats());
                    Reply::Stats(s)
                }
                Ok(_) => Reply::Refused("the task has exited".into()),
                Err(e) => Reply::Refused(format!("cannot read the task's statistics: {e}")),
            },
        })
    }
}

/// Reads what the client sent, keeping descriptors passed along with it.
fn recv_with_fds(stream: &UnixStream, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!([RawFd; 4]);
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(io::Error::from)?;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(received) = c {
            for fd in received {
                // SAFETY: the kernel just installed this descriptor for us.
                fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Ok(msg.bytes)
}

impl Client {
    /// Queues a reply line; the event loop writes it when the socket takes it.
    pub(super) fn queue(&mut self, reply: &Reply) {
        self.wbuf.extend_from_slice(reply.line().as_bytes());
        self.wbuf.push(b'\n');
    }
}
