//! Host and process figures from /proc.

use anyhow::Context;

/// A `key:   value kB` field of a /proc file, in bytes.
fn kb_field(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// `MemAvailable` of the host, in bytes.
pub fn mem_available() -> anyhow::Result<u64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    kb_field(&text, "MemAvailable").context("no MemAvailable in /proc/meminfo")
}

/// `Rss` of a process from `/proc/<pid>/smaps_rollup`, in bytes.
pub fn rss(pid: u32) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("process {pid} is gone"))?;
    kb_field(&text, "Rss").context("no Rss in smaps_rollup")
}

/// The resident bytes of the guest memory of a kiln-vmm, found in `/proc/<pid>/smaps` as the
/// anonymous mappings exactly `guest_bytes` long (the guest RAM region; a guest below 3 GiB is
/// one region). Returns (resident bytes, mappings found).
pub fn guest_mapping_rss(pid: u32, guest_bytes: u64) -> anyhow::Result<(u64, usize)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let mut total = 0;
    let mut found = 0;
    let mut in_guest = false;
    for line in text.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: `start-end perms offset dev inode [path]`.
            let mut parts = first.split('-');
            let start = u64::from_str_radix(parts.next().unwrap_or_default(), 16).unwrap_or(0);
            let end = u64::from_str_radix(parts.next().unwrap_or_default(), 16).unwrap_or(0);
            let anonymous = line.split_whitespace().nth(5).is_none();
            in_guest = anonymous && end.saturating_sub(start) == guest_bytes;
            found += usize::from(in_guest);
        } else if in_guest {
            if let Some(b) = kb_field(line, "Rss") {
                total += b;
            }
        }
    }
    Ok((total, found))
}

/// User + system CPU time of a process and all its threads, in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the `(comm)`: state is field 3; utime 14, stime 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Host CPU counters from the `cpu` line of /proc/stat: (busy, total) in clock ticks.
pub fn host_cpu() -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat")?;
    let line = text.lines().next().context("empty /proc/stat")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Ok((total - idle, total))
}

/// Clock ticks per second (USER_HZ; 100 on Linux for every architecture we run on).
pub const CLK_TCK: f64 = 100.0;

/// Number of CPUs the host has online.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
