//! The wall clock as Unix nanoseconds, defined once: the leader's time stamped on Raft
//! entries, the scheduler's `now`, task event times, and the task shim's start and exit
//! times. A crate of its own (with no dependencies) because the shim ships inside every
//! driver plugin and links neither the model nor the servers.

/// Wall-clock time as Unix nanoseconds.
pub type UnixNanos = i64;

/// The wall clock now, as Unix nanoseconds; 0 before 1970, `i64::MAX` after 2262.
pub fn now_nanos() -> UnixNanos {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_2026_and_moves_forward() {
        let a = super::now_nanos();
        let b = super::now_nanos();
        assert!(a > 1_767_225_600_000_000_000, "{a}"); // 2026-01-01
        assert!(b >= a);
    }
}
