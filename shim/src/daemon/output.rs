//! The task's stdout and stderr pipes, pumped into their rotating logs.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{last_err, set_nonblocking};
use crate::rotate::RotatingLog;

/// One of the task's output pipes and where it goes.
pub(super) struct Output {
    pub(super) fd: Option<OwnedFd>,
    pub(super) log: Option<RotatingLog>,
}

impl Output {
    pub(super) fn new(fd: OwnedFd, log: Option<RotatingLog>) -> Self {
        if let Err(e) = set_nonblocking(fd.as_raw_fd()) {
            log!("cannot make an output pipe non-blocking: {e}");
        }
        Self { fd: Some(fd), log }
    }

    /// Reads what is available; closes the pipe at end of file.
    pub(super) fn pump(&mut self) {
        let Some(fd) = self.fd.as_ref() else { return };
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reading into a local buffer.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n > 0 {
                if let Some(log) = self.log.as_mut()
                    && let Err(e) = log.write_all(&buf[..n as usize])
                {
                    log!("cannot write the task's output: {e}");
                }
                continue;
            }
            if n == 0 {
                self.fd = None;
                return;
            }
            let e = last_err();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return,
                _ => {
                    log!("cannot read the task's output: {e}");
                    self.fd = None;
                    return;
                }
            }
        }
    }
}
