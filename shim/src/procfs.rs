//! What the shim and its clients read from /proc.

use std::io;
use std::path::Path;

/// The fields after `(comm)` in `/proc/<pid>/stat`; index 0 is field 3 (state).
fn stat_fields(pid: i32) -> io::Result<Vec<String>> {
    let raw = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = raw
        .rfind(')')
        .map(|i| &raw[i + 1..])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed /proc/<pid>/stat"))?;
    Ok(after.split_whitespace().map(str::to_string).collect())
}

fn field(fields: &[String], number: usize) -> io::Result<u64> {
    fields
        .get(number - 3)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("/proc stat field {number} missing"),
            )
        })
}

/// The process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
/// With the pid and the boot id it names one process for the life of the machine.
pub fn start_time(pid: i32) -> io::Result<u64> {
    field(&stat_fields(pid)?, 22)
}

/// The process's state letter (field 3): `R`, `S`, `Z` ...
pub fn state(pid: i32) -> io::Result<char> {
    stat_fields(pid)?
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no state in /proc stat"))
}

/// The parent pid (field 4).
pub fn parent_pid(pid: i32) -> io::Result<i32> {
    Ok(field(&stat_fields(pid)?, 4)? as i32)
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`).
pub fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Whether `pid` is alive (not a zombie) and is the same process as when `start_time` was read.
pub fn is_same_live_process(pid: i32, start: u64) -> bool {
    pid > 0
        && start_time(pid).is_ok_and(|s| s == start)
        && state(pid).is_ok_and(|s| s != 'Z' && s != 'X')
}

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TaskStats {
    pub cpu_user_ticks: u64,
    pub cpu_system_ticks: u64,
    pub ticks_per_second: u64,
    pub rss_bytes: u64,
    /// The whole task's usage from its cgroup (isolated tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<super::isolate::cgroup::CgroupStats>,
}

/// Reads `pid`'s CPU ticks (fields 14, 15) and resident set size (field 24, in pages).
pub fn stats(pid: i32) -> io::Result<TaskStats> {
    let f = stat_fields(pid)?;
    // SAFETY: sysconf has no preconditions.
    let (tps, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    Ok(TaskStats {
        cpu_user_ticks: field(&f, 14)?,
        cpu_system_ticks: field(&f, 15)?,
        ticks_per_second: tps.max(1) as u64,
        rss_bytes: field(&f, 24)?.saturating_mul(page.max(1) as u64),
        cgroup: None,
    })
}

/// The command line of `pid`, arguments joined by spaces.
pub fn cmdline(pid: i32) -> io::Result<String> {
    let raw = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline"))?;
    Ok(raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect::<Vec<_>>()
        .join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let me = std::process::id() as i32;
        let s = start_time(me).unwrap();
        assert!(is_same_live_process(me, s));
        assert!(!is_same_live_process(me, s + 1));
        assert!(stats(me).unwrap().rss_bytes > 0);
        assert_eq!(boot_id().unwrap().len(), 36);
        assert!(parent_pid(me).unwrap() > 0);
    }
}
