//! Host facts read from `/proc` for the heartbeat ([`NodeFacts`]).
//!
//! Parsing is separate from reading so it can be tested on sample text. Reading uses blocking
//! `std::fs`, so it runs in the sampler task (on the blocking pool), never on a request path:
//! handlers only clone the latest sample from a `watch` channel.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kiln_node_client::wire::{NodeFacts, API_VERSION};
use kiln_node_client::NodeName;
use tokio::sync::watch;

/// How often the sampler refreshes the facts (and the CPU usage window).
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);

/// Why host facts could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file did not have the expected format.
    #[error("cannot parse {}: unexpected format", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
    },
}

/// Cumulative CPU time counters from the `cpu` line of `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTimes {
    /// Ticks spent on anything but idle and iowait.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

/// CPU facts from `/proc/cpuinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfo {
    /// Logical CPUs.
    pub cpus: u32,
    /// Model name of the first CPU.
    pub model: String,
    /// Distinct physical packages.
    pub sockets: u32,
    /// Feature flags of the first CPU (`flags`, sorted): what a live-migrated guest may use.
    pub flags: Vec<String>,
}

/// Memory facts from `/proc/meminfo`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    /// `MemTotal`.
    pub total: u64,
    /// `MemAvailable` (estimated from free + buffers + cached on kernels without it).
    pub available: u64,
}

/// Parses the aggregate `cpu` line of `/proc/stat`.
pub fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if fields.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal; guest and guest_nice are already counted
    // in user and nice.
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// CPU usage between two samples, 0.0..=1.0 (0.0 if no time passed).
pub fn cpu_usage(earlier: CpuTimes, later: CpuTimes) -> f64 {
    let total = later.total.saturating_sub(earlier.total);
    if total == 0 {
        return 0.0;
    }
    let busy = later.busy.saturating_sub(earlier.busy);
    (busy as f64 / total as f64).clamp(0.0, 1.0)
}

/// Parses `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> CpuInfo {
    let mut cpus = 0u32;
    let mut model = None;
    let mut sockets = std::collections::BTreeSet::new();
    let mut flags: Option<Vec<String>> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => cpus += 1,
            "model name" if model.is_none() => model = Some(value.to_owned()),
            "physical id" => {
                sockets.insert(value.to_owned());
            }
            "flags" if flags.is_none() => {
                let mut list: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                list.sort();
                flags = Some(list);
            }
            _ => {}
        }
    }
    CpuInfo {
        cpus,
        model: model.unwrap_or_else(|| "unknown".to_owned()),
        sockets: u32::try_from(sockets.len()).unwrap_or(u32::MAX).max(1),
        flags: flags.unwrap_or_default(),
    }
}

/// Parses the three load averages of `/proc/loadavg`.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut fields = text.split_whitespace().map(str::parse::<f64>);
    Some([
        fields.next()?.ok()?,
        fields.next()?.ok()?,
        fields.next()?.ok()?,
    ])
}

/// Parses `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let field = |name: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix(':')?;
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable").or_else(|| {
        Some(field("MemFree")? + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0))
    })?;
    Some(MemInfo {
        total,
        available: available.min(total),
    })
}

/// Parses whole seconds of uptime from `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let secs: f64 = text.split_whitespace().next()?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then_some(secs as u64)
}

/// Reads the host's facts; keeps the previous CPU counters to compute usage between samples.
#[derive(Debug)]
pub struct FactsReader {
    proc_root: PathBuf,
    name: NodeName,
    cpu: CpuInfo,
    kernel: String,
    previous: Option<CpuTimes>,
    boot_id_file: PathBuf,
}

impl FactsReader {
    /// Reads what does not change while the host runs (CPU model, kernel) from `proc_root`
    /// (normally `/proc`).
    pub fn new(proc_root: &Path, name: NodeName) -> Result<Self, FactsError> {
        let mut cpu = parse_cpuinfo(&read(&proc_root.join("cpuinfo"))?);
        if cpu.cpus == 0 {
            // Some architectures format cpuinfo differently.
            cpu.cpus = std::thread::available_parallelism()
                .map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX));
        }
        let kernel_dir = proc_root.join("sys/kernel");
        let kernel = format!(
            "{} {}",
            read(&kernel_dir.join("osrelease"))?.trim(),
            read(&kernel_dir.join("version"))?.trim()
        );
        Ok(FactsReader {
            proc_root: proc_root.to_owned(),
            name,
            cpu,
            kernel,
            previous: None,
            boot_id_file: proc_root.join("sys/kernel/random/boot_id"),
        })
    }

    /// Read the host's boot id from `path` instead of `<proc_root>/sys/kernel/random/boot_id`.
    pub fn with_boot_id_file(mut self, path: PathBuf) -> Self {
        self.boot_id_file = path;
        self
    }

    /// Reads the current facts. CPU usage covers the time since the previous call (since boot
    /// on the first call).
    pub fn sample(&mut self) -> Result<NodeFacts, FactsError> {
        let times = read_parsed(&self.proc_root, "stat", parse_cpu_times)?;
        let loadavg = read_parsed(&self.proc_root, "loadavg", parse_loadavg)?;
        let mem = read_parsed(&self.proc_root, "meminfo", parse_meminfo)?;
        let uptime_secs = read_parsed(&self.proc_root, "uptime", parse_uptime)?;
        let earlier = self
            .previous
            .replace(times)
            .unwrap_or(CpuTimes { busy: 0, total: 0 });
        Ok(NodeFacts {
            name: self.name.to_string(),
            api_version: API_VERSION,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_secs,
            cpus: self.cpu.cpus,
            cpu_model: self.cpu.model.clone(),
            cpu_sockets: self.cpu.sockets,
            cpu_flags: self.cpu.flags.clone(),
            cpu_usage: cpu_usage(earlier, times),
            loadavg,
            mem_total: mem.total,
            mem_used: mem.total - mem.available,
            kvm: kvm_usable(),
            kernel: self.kernel.clone(),
            mem_available: mem.available,
            // Filled in per request by the status handler.
            vms: Vec::new(),
            boot_id: fs::read_to_string(&self.boot_id_file)
                .map(|id| id.trim().to_owned())
                .unwrap_or_default(),
        })
    }
}

/// Whether `/dev/kvm` opens for reading and writing (exists and we have the permission).
fn kvm_usable() -> bool {
    fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn read_parsed<T>(
    proc_root: &Path,
    file: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, FactsError> {
    let path = proc_root.join(file);
    parse(&read(&path)?).ok_or(FactsError::Parse { path })
}

fn read(path: &Path) -> Result<String, FactsError> {
    fs::read_to_string(path).map_err(|source| FactsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Takes a first sample, then refreshes it every [`SAMPLE_INTERVAL`] in a background task until
/// every receiver is gone. A failed refresh is logged and the previous sample kept.
pub async fn spawn_sampler(
    mut reader: FactsReader,
) -> Result<watch::Receiver<NodeFacts>, FactsError> {
    let (mut reader, first) = tokio::task::spawn_blocking(move || {
        let first = reader.sample();
        (reader, first)
    })
    .await
    .map_err(|e| FactsError::Read {
        path: PathBuf::from("/proc"),
        source: io::Error::other(e),
    })?;
    let (tx, rx) = watch::channel(first?);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate
        loop {
            tick.tick().await;
            if tx.is_closed() {
                return;
            }
            let joined = tokio::task::spawn_blocking(move || {
                let sample = reader.sample();
                (reader, sample)
            })
            .await;
            let Ok((returned, sample)) = joined else {
                tracing::error!("the facts sampler panicked; heartbeat facts stay frozen");
                return;
            };
            reader = returned;
            match sample {
                Ok(facts) => {
                    tx.send_replace(facts);
                }
                Err(e) => tracing::warn!("cannot refresh host facts: {e}"),
            }
        }
    });
    Ok(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
physical id\t: 0
core id\t\t: 0
flags\t\t: sse2 fpu avx2

processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
physical id\t: 0

processor\t: 2
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
physical id\t: 1

processor\t: 3
model name\t: Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz
physical id\t: 1
";

    #[test]
    fn cpuinfo_gives_logical_cpus_model_and_sockets() {
        assert_eq!(
            parse_cpuinfo(CPUINFO),
            CpuInfo {
                cpus: 4,
                model: "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz".into(),
                sockets: 2,
                flags: vec!["avx2".into(), "fpu".into(), "sse2".into()],
            }
        );
    }

    #[test]
    fn cpuinfo_without_model_or_physical_id_still_counts_one_socket() {
        let info = parse_cpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\n");
        assert_eq!(info.cpus, 2);
        assert_eq!(info.model, "unknown");
        assert_eq!(info.sockets, 1);
    }

    #[test]
    fn cpu_usage_is_busy_share_of_ticks_between_samples() {
        let before = "cpu  100 0 100 800 0 0 0 0 0 0\ncpu0 1 2 3 4\n";
        // +150 user, +50 system, +200 idle, +100 iowait: 200 busy of 500.
        let after = "cpu  250 0 150 1000 100 0 0 0 0 0\n";
        let (a, b) = (
            parse_cpu_times(before).expect("before"),
            parse_cpu_times(after).expect("after"),
        );
        assert_eq!(
            a,
            CpuTimes {
                busy: 200,
                total: 1000
            }
        );
        assert!((cpu_usage(a, b) - 0.4).abs() < 1e-9, "{}", cpu_usage(a, b));
        assert_eq!(cpu_usage(b, b), 0.0);
    }

    #[test]
    fn guest_time_is_not_counted_twice() {
        let t = parse_cpu_times("cpu  10 0 0 10 0 0 0 0 10 10\n").expect("parse");
        assert_eq!(
            t,
            CpuTimes {
                busy: 10,
                total: 20
            }
        );
    }

    #[test]
    fn malformed_stat_is_refused() {
        assert_eq!(parse_cpu_times("intr 1 2 3\n"), None);
        assert_eq!(parse_cpu_times("cpu  1 x 3 4\n"), None);
    }

    #[test]
    fn loadavg_and_uptime_parse() {
        assert_eq!(
            parse_loadavg("0.52 0.58 0.59 2/1234 56789\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_loadavg("0.52\n"), None);
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350735));
        assert_eq!(parse_uptime("nan 1\n"), None);
    }

    #[test]
    fn meminfo_gives_bytes_and_prefers_mem_available() {
        let text = "MemTotal:       16318976 kB\nMemFree:         1000000 kB\nMemAvailable:    8159488 kB\nBuffers:          100 kB\n";
        assert_eq!(
            parse_meminfo(text),
            Some(MemInfo {
                total: 16318976 * 1024,
                available: 8159488 * 1024
            })
        );
        let old_kernel = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 20 kB\nCached: 30 kB\n";
        assert_eq!(
            parse_meminfo(old_kernel).map(|m| m.available),
            Some(150 * 1024)
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn reader_reports_facts_of_a_fake_proc_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        std::fs::create_dir_all(p.join("sys/kernel")).expect("mkdir");
        for (file, text) in [
            ("cpuinfo", CPUINFO),
            ("sys/kernel/osrelease", "6.1.0-18-amd64\n"),
            (
                "sys/kernel/version",
                "#1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1\n",
            ),
            ("stat", "cpu  100 0 100 800 0 0 0 0 0 0\n"),
            ("loadavg", "1.00 2.00 3.00 1/1 1\n"),
            ("meminfo", "MemTotal: 1000 kB\nMemAvailable: 250 kB\n"),
            ("uptime", "42.9 1.0\n"),
        ] {
            std::fs::write(p.join(file), text).expect("write");
        }
        let mut reader = FactsReader::new(p, "n7".parse().expect("name")).expect("reader");
        let facts = reader.sample().expect("sample");
        assert_eq!(facts.name, "n7");
        assert_eq!(facts.api_version, API_VERSION);
        assert_eq!((facts.cpus, facts.cpu_sockets), (4, 2));
        assert_eq!(
            facts.kernel,
            "6.1.0-18-amd64 #1 SMP PREEMPT_DYNAMIC Debian 6.1.76-1"
        );
        assert_eq!(facts.loadavg, [1.0, 2.0, 3.0]);
        assert_eq!((facts.mem_total, facts.mem_used), (1000 * 1024, 750 * 1024));
        assert_eq!(facts.mem_available, 250 * 1024);
        assert_eq!(facts.uptime_secs, 42);
        assert!((facts.cpu_usage - 0.2).abs() < 1e-9);
        assert_eq!(facts.boot_id, "", "no boot_id file: empty");
        std::fs::create_dir_all(p.join("sys/kernel/random")).expect("mkdir");
        std::fs::write(p.join("sys/kernel/random/boot_id"), "b00t\n").expect("write");
        assert_eq!(reader.sample().expect("sample").boot_id, "b00t");
        std::fs::write(p.join("stat"), "cpu  100 0 100 800 0 0 0 0 0 0\n").expect("write");
        reader.sample().expect("reset the CPU baseline");

        std::fs::write(p.join("stat"), "cpu  200 0 100 900 0 0 0 0 0 0\n").expect("write");
        let facts = reader.sample().expect("second sample");
        assert!((facts.cpu_usage - 0.5).abs() < 1e-9, "{}", facts.cpu_usage);

        std::fs::write(p.join("loadavg"), "garbage").expect("write");
        assert!(matches!(reader.sample(), Err(FactsError::Parse { .. })));
    }
}
