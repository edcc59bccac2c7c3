//! `exec` sessions: a helper forked per request that enters the task's namespaces, and its
//! exit sent to the client that asked; helpers whose client went away are killed.

use std::os::fd::AsRawFd;

use super::event_loop::Shim;
use super::last_err;
use crate::isolate::enter::{self, ExecRequest};

impl Shim {
    /// Why this task cannot take an exec now, if it cannot.
    pub(super) fn exec_refusal(&self) -> Option<String> {
        if self.isolated.is_none() {
            return Some("this task is not isolated; exec runs commands on the host".into());
        }
        self.exit.is_some().then(|| "the task has exited".into())
    }

    /// `exec <json>`: forks the single-threaded helper that enters the task's namespaces.
    /// The client's stdin, stdout and stderr came with the request (SCM_RIGHTS); the reply
    /// is the command's exit, sent when the helper is reaped.
    pub(super) fn start_exec(&mut self, i: usize, req: &ExecRequest) -> Result<(), String> {
        if let Some(refusal) = self.exec_refusal() {
            return Err(refusal);
        }
        let Some(iso) = &self.isolated else {
            return Err("this task is not isolated; exec runs commands on the host".into());
        };
        let fds = std::mem::take(&mut self.clients[i].fds);
        if fds.len() != 3 {
            return Err(format!(
                "exec needs the caller's stdin, stdout and stderr as descriptors, got {}",
                fds.len()
            ));
        }
        let raw = [fds[0].as_raw_fd(), fds[1].as_raw_fd(), fds[2].as_raw_fd()];
        let procs = iso.cgroup.procs_files();
        // SAFETY: the shim is single-threaded; the child runs the helper and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(format!("cannot fork the exec helper: {}", last_err()));
        }
        if pid == 0 {
            // SAFETY: freshly forked child of this single-threaded process.
            unsafe { enter::helper(self.task_pid, &procs, &self.spec, req, raw) }
        }
        drop(fds);
        log!("exec {:?}: helper {pid}", req.argv);
        self.exec_sessions.push((pid, self.clients[i].id));
        Ok(())
    }
}

impl Shim {
    /// Kills the exec helpers of clients that went away: their callers are gone, and the
    /// command dies with its helper (PR_SET_PDEATHSIG).
    pub(super) fn end_abandoned_execs(&mut self) {
        let gone: Vec<u64> = self
            .clients
            .iter()
            .filter(|c| c.closed)
            .map(|c| c.id)
            .collect();
        for (pid, client) in &self.exec_sessions {
            if gone.contains(client) {
                log!("exec helper {pid}: its caller is gone; killing it");
                // SAFETY: kill(2) of our own child, not yet reaped (it is still listed).
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
        }
    }
}
