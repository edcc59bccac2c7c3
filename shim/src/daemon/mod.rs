//! The shim process itself: single-threaded, no async runtime, one poll() loop.
//!
//! - [`launch`]: `task-shim launch`, the double fork, the launch report;
//! - [`start`]: reading the spec and starting the task (unisolated: [`child`]; isolated:
//!   [`isolated`]), with its [`user`] and [`command`] resolved first;
//! - [`event_loop`]: the poll() loop; [`output`]: the task's output; [`clients`]: the
//!   socket's clients and their requests; [`exec_sessions`]: commands run inside the task.

use std::io;
use std::os::fd::RawFd;

/// A line in shim.log (its stderr).
macro_rules! log {
    ($($arg:tt)*) => {{
        eprintln!("{} task-shim[{}]: {}",
            drover_plugin_abi::hclog::format_timestamp(std::time::SystemTime::now()),
            std::process::id(),
            format_args!($($arg)*));
    }};
}

fn last_err() -> io::Error {
    io::Error::last_os_error()
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 { Err(last_err()) } else { Ok(r) }
}

mod child;
mod clients;
mod command;
mod event_loop;
mod exec_sessions;
mod isolated;
mod launch;
mod output;
mod start;
mod user;

pub(crate) use child::{STAGE_CHDIR, STAGE_CREDENTIALS, STAGE_EXEC, STAGE_STDIO};
pub(crate) use command::{DEFAULT_PATH, resolve_in_path};
pub(crate) use launch::{REPORT_FD, launch_main};
pub(crate) use user::{Credentials, resolve_user};

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    unsafe {
        let flags = cvt(libc::fcntl(fd, libc::F_GETFL))?;
        cvt(libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK))?;
    }
    Ok(())
}
