//! `task-shim launch <dir>`: the double fork that re-parents the shim away from the plugin,
//! the shim's own stdio, and the launch report on the pipe the launcher handed over.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::{cvt, last_err, start};
use crate::{LOG_FILE, LaunchReport};

/// The descriptor the launcher hands the shim for its report.
pub(crate) const REPORT_FD: RawFd = 3;

/// Sends the launch report and closes the pipe.
pub(super) fn send_report(report: &LaunchReport) {
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.push(b'\n');
    // SAFETY: REPORT_FD was handed to us by the launcher; we own it from here on.
    let mut f = unsafe { std::fs::File::from_raw_fd(REPORT_FD) };
    let _ = f.write_all(&line);
}

fn report_error(msg: String) {
    send_report(&LaunchReport {
        ok: false,
        error: Some(msg),
        shim_pid: 0,
        shim_start_time: 0,
        task_pid: 0,
        task_start_time: 0,
        task_started_at_unix_nanos: 0,
    });
}

/// `task-shim launch <dir>`: fork, let the intermediate exit, become the shim.
pub(crate) fn launch_main(dir: &Path) -> i32 {
    // SAFETY: fcntl on a descriptor number; fails cleanly when it is not open.
    let flags = unsafe { libc::fcntl(REPORT_FD, libc::F_GETFD) };
    if flags < 0 {
        eprintln!(
            "task-shim: no report pipe on fd {REPORT_FD}; the shim is started by task drivers"
        );
        return 2;
    }
    // SAFETY: as above.
    unsafe { libc::fcntl(REPORT_FD, libc::F_SETFD, flags | libc::FD_CLOEXEC) };

    // SAFETY: this process is single-threaded (the shim is dispatched before any thread starts).
    match unsafe { libc::fork() } {
        -1 => {
            report_error(format!("the task shim cannot fork: {}", last_err()));
            1
        }
        // The intermediate: exit at once so the shim is re-parented away from the plugin.
        // SAFETY: _exit is always safe.
        pid if pid > 0 => unsafe { libc::_exit(0) },
        _ => {
            // SAFETY: plain syscall.
            unsafe { libc::setsid() };
            match start::shim_main(dir) {
                Ok(code) => code,
                Err(msg) => {
                    log!("{msg}");
                    report_error(msg);
                    1
                }
            }
        }
    }
}

/// Points 0 at /dev/null and 1, 2 at shim.log; closes every other descriptor but the report pipe.
pub(super) fn setup_own_stdio(dir: &Path) -> Result<(), String> {
    let devnull =
        std::fs::File::open("/dev/null").map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(LOG_FILE))
        .map_err(|e| format!("cannot open {}: {e}", dir.join(LOG_FILE).display()))?;
    // SAFETY: dup2 onto the standard descriptors.
    unsafe {
        cvt(libc::dup2(devnull.as_raw_fd(), 0)).map_err(|e| e.to_string())?;
        cvt(libc::dup2(log.as_raw_fd(), 1)).map_err(|e| e.to_string())?;
        cvt(libc::dup2(log.as_raw_fd(), 2)).map_err(|e| e.to_string())?;
    }
    drop(devnull);
    drop(log);
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| format!("cannot list open descriptors: {e}"))?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd > REPORT_FD {
            // SAFETY: closing inherited descriptors nobody in this process uses; the one
            // read_dir used is already closed (EBADF is harmless).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}
