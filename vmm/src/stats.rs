//! Process figures from /proc: resident set size and per-thread CPU time.

/// Resident set size of this process in bytes (0 if /proc is unreadable).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    // SAFETY: sysconf has no memory-safety preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// CPU time of thread `tid` of this process in nanoseconds (from schedstat; 0 if unknown).
pub fn thread_cpu_ns(tid: i32) -> u64 {
    if tid <= 0 {
        return 0;
    }
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_resident_set() {
        assert!(rss_bytes() > 0);
    }
}
