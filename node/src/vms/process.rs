//! The kiln-vmm process of one VM: how it is spawned, how its end is told, whether it lives.
//!
//! kiln-vmm runs in its own process group with its output in `vmm.log`, so it outlives the node
//! agent (a Ctrl-C at the agent's terminal or the agent's death does not reach it). Its exit
//! status says how it ended (0 orderly, 1 start failure, 2 guest reset, 3 crash), and its last
//! log line (`kiln-vmm: VM stopped: <reason>`) says why, also for VMs that are not our children.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use kiln_node_client::wire::VmSpec;

use super::cgroup::VmCgroup;
use super::images::BootImage;

/// Line kiln-vmm writes to its stderr when its VM has stopped.
const STOPPED_PREFIX: &str = "kiln-vmm: VM stopped: ";
/// Start of the stop reason of a VM whose kiln-vmm stopped it because the HA lease expired.
pub const FENCED_PREFIX: &str = "fenced: ";
/// Line the agent writes to `vmm.log` before each spawn; what precedes it is history.
const START_MARKER: &str = "kiln-node: starting kiln-vmm";
/// How much of the end of `vmm.log` is read for the reason.
const LOG_TAIL_BYTES: u64 = 16 * 1024;

/// The files of one VM: `<data-dir>/vms/<vmid>/`.
#[derive(Debug, Clone)]
pub struct VmDir {
    /// The directory.
    pub path: PathBuf,
}

impl VmDir {
    /// `spec.json`: the spec it was last started with.
    pub fn spec(&self) -> PathBuf {
        self.path.join("spec.json")
    }
    /// `control.sock`: kiln-vmm's control socket.
    pub fn socket(&self) -> PathBuf {
        self.path.join("control.sock")
    }
    /// `vmm.log`: kiln-vmm's stdout and stderr.
    pub fn log(&self) -> PathBuf {
        self.path.join("vmm.log")
    }
    /// `stopped.json`: why it stopped, written when the agent saw it stop.
    pub fn stopped(&self) -> PathBuf {
        self.path.join("stopped.json")
    }
    /// `migrate.token`: an incoming migration's one-time token, read by kiln-vmm at its
    /// start (then removed).
    pub fn migrate_token(&self) -> PathBuf {
        self.path.join("migrate.token")
    }
}

/// Spawns kiln-vmm for `spec` in its own process group, its output appended to `vmm.log`.
/// Blocking file work is small (open and append one line); the caller is on the runtime but
/// this is as cheap as the fork itself.
pub fn spawn(
    vmm_bin: &Path,
    dir: &VmDir,
    spec: &VmSpec,
    image: &BootImage,
    lease_deadline_ns: Option<u64>,
    cgroup: Option<VmCgroup>,
) -> io::Result<tokio::process::Child> {
    let what = format!("with {}", image.kernel().display());
    let mut args = vmm_args(dir, spec, image);
    if let Some(deadline) = lease_deadline_ns {
        args.extend(["--lease-deadline-ns".into(), deadline.to_string().into()]);
    }
    spawn_with(vmm_bin, dir, spec, &what, args, cgroup)
}

/// A range of TCP ports, `low-high` (`0-0`: any port the kernel picks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port.
    pub low: u16,
    /// Last port (inclusive).
    pub high: u16,
}

impl std::str::FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not a port range such as 60000-60050");
        let (low, high) = s.split_once('-').ok_or_else(bad)?;
        let (low, high) = (
            low.trim().parse().map_err(|_| bad())?,
            high.trim().parse().map_err(|_| bad())?,
        );
        if low > high || (low == 0) != (high == 0) {
            return Err(bad());
        }
        Ok(PortRange { low, high })
    }
}

/// Where and how incoming migrations listen: the node API's address, a port range and the
/// node's certificate files.
#[derive(Debug, Clone)]
pub struct MigrationNet {
    /// The address an incoming kiln-vmm binds.
    pub bind: std::net::IpAddr,
    /// The ports it may take (the first free one).
    pub ports: PortRange,
    /// This node's TLS identity files.
    pub tls: kiln_vmm::protocol::TlsFiles,
}

impl MigrationNet {
    /// kiln-vmm's `--migrate-receive`: `host:port` or `host:low-high`.
    fn listen_arg(&self) -> String {
        let host = std::net::SocketAddr::new(self.bind, 0).to_string();
        let host = host.strip_suffix(":0").unwrap_or(&host);
        let PortRange { low, high } = self.ports;
        if low == high {
            format!("{host}:{low}")
        } else {
            format!("{host}:{low}-{high}")
        }
    }
}

/// Spawns `kiln-vmm --migrate-receive <bind>:<ports>` for `spec`: a paused VM without a guest
/// image that waits for the source's kiln-vmm over mutual TLS, with this node's certificate
/// and the token in `<dir>/migrate.token`.
pub fn spawn_receive(
    vmm_bin: &Path,
    dir: &VmDir,
    spec: &VmSpec,
    net: &MigrationNet,
    cgroup: Option<VmCgroup>,
) -> io::Result<tokio::process::Child> {
    let args: Vec<OsString> = vec![
        "--migrate-receive".into(),
        net.listen_arg().into(),
        "--tls-ca".into(),
        net.tls.ca.clone().into(),
        "--tls-cert".into(),
        net.tls.cert.clone().into(),
        "--tls-key".into(),
        net.tls.key.clone().into(),
        "--migrate-token-file".into(),
        dir.migrate_token().into(),
        "--control-socket".into(),
        dir.socket().into(),
        "--memory-mib".into(),
        spec.memory_mib.to_string().into(),
        "--vcpus".into(),
        spec.vcpus.to_string().into(),
    ];
    spawn_with(vmm_bin, dir, spec, "as a migration target", args, cgroup)
}

fn spawn_with(
    vmm_bin: &Path,
    dir: &VmDir,
    spec: &VmSpec,
    what: &str,
    args: Vec<OsString>,
    cgroup: Option<VmCgroup>,
) -> io::Result<tokio::process::Child> {
    use std::io::Write;
    let mut log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.log())?;
    writeln!(
        log,
        "{START_MARKER} for VM {} ({}) {what}",
        spec.vmid, spec.name,
    )?;
    let mut command = tokio::process::Command::new(vmm_bin);
    command.args(args);
    command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .current_dir(&dir.path)
        // Its own process group: signals for the agent's group (Ctrl-C) do not reach the VM.
        .process_group(0)
        // The VM outlives the agent: never kill it because a handle was dropped.
        .kill_on_drop(false);
    if let Some(cgroup) = cgroup {
        command.args(cgroup.vmm_args());
    }
    command.spawn()
}

/// kiln-vmm's arguments for `spec` booting `image`. A Linux image boots with
/// `--boot linux --kernel --initrd` and the VM's own command line, else the image's.
fn vmm_args(dir: &VmDir, spec: &VmSpec, image: &BootImage) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let cmdline = match image {
        BootImage::Pvh(kernel) => {
            args.extend(["--kernel".into(), kernel.into()]);
            spec.cmdline.as_ref()
        }
        BootImage::Linux {
            kernel,
            initrd,
            cmdline,
            ..
        } => {
            args.extend([
                "--boot".into(),
                "linux".into(),
                "--kernel".into(),
                kernel.into(),
                "--initrd".into(),
                initrd.into(),
            ]);
            spec.cmdline.as_ref().or(cmdline.as_ref())
        }
    };
    args.extend([
        "--control-socket".into(),
        dir.socket().into(),
        "--memory-mib".into(),
        spec.memory_mib.to_string().into(),
        "--vcpus".into(),
        spec.vcpus.to_string().into(),
    ]);
    if let Some(cmdline) = cmdline {
        args.extend(["--cmdline".into(), cmdline.into()]);
    }
    args
}

/// What the agent had asked of a VM when its kiln-vmm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requested {
    /// `stop` (or a kill after a stop the VMM did not answer).
    Stop,
    /// `shutdown` (also as the first half of a reboot).
    Shutdown,
}

/// How a kiln-vmm ended, as far as the agent could see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Our child: its exit status.
    Status(ExitStatus),
    /// Not our child (adopted after an agent restart): it is gone, its status unknown.
    Vanished,
}

/// What to do about an ended kiln-vmm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest asked for a reset: start it again with the same spec.
    Restart,
    /// It is stopped.
    Stopped {
        /// Why, for a human.
        reason: String,
        /// Whether nobody asked for it.
        crashed: bool,
    },
}

fn stopped(reason: impl Into<String>, crashed: bool) -> Outcome {
    Outcome::Stopped {
        reason: reason.into(),
        crashed,
    }
}

/// Turns the end of a kiln-vmm into an [`Outcome`], from what was asked, its exit and the
/// reason it logged last (the text after `kiln-vmm: VM stopped: `, if any).
pub fn outcome(exit: Exit, requested: Option<Requested>, logged: Option<&str>) -> Outcome {
    if let Exit::Status(status) = exit {
        if let Some(signal) = status.signal() {
            return match requested {
                // We killed it after it ignored a stop.
                Some(Requested::Stop) => stopped("stopped by request", false),
                _ => stopped(format!("kiln-vmm was killed (signal {signal})"), true),
            };
        }
    }
    if let Some(text) = logged {
        return from_logged(text, requested);
    }
    match exit {
        Exit::Status(status) => match status.code() {
            Some(0) => match requested {
                Some(Requested::Stop) => stopped("stopped by request", false),
                Some(Requested::Shutdown) => stopped("guest shut down on request", false),
                None => stopped("guest powered off", false),
            },
            Some(2) if requested.is_none() => Outcome::Restart,
            Some(2) => stopped("stopped by request", false),
            Some(3) => stopped("kiln-vmm failed (exit status 3); see vmm.log", true),
            Some(kiln_vmm::state::LEASE_EXPIRED_EXIT_CODE) => stopped(
                format!("{FENCED_PREFIX}{}", kiln_vmm::state::LEASE_EXPIRED_TEXT),
                true,
            ),
            Some(code) => stopped(format!("kiln-vmm exited with status {code}"), true),
            None => stopped("kiln-vmm ended", true),
        },
        Exit::Vanished => match requested {
            Some(Requested::Stop) => stopped("stopped by request", false),
            _ => stopped(
                "kiln-vmm ended without saying why (killed?); it was adopted after an agent restart, so its exit status is unknown",
                true,
            ),
        },
    }
}

/// Maps kiln-vmm's `StopReason` display text (see `kiln_vmm::state::StopReason`) to ours.
fn from_logged(text: &str, requested: Option<Requested>) -> Outcome {
    let text = text.trim();
    if text == "the guest powered off" {
        return match requested {
            Some(Requested::Shutdown) => stopped("guest shut down on request", false),
            _ => stopped("guest powered off", false),
        };
    }
    if text == "stopped on request" {
        return stopped("stopped by request", false);
    }
    if text == "the guest requested a reset" {
        return match requested {
            None => Outcome::Restart,
            Some(_) => stopped("stopped by request", false),
        };
    }
    if let Some(rest) = text.strip_prefix("the guest did not shut down within ") {
        let ms = rest.split_whitespace().next().unwrap_or("?");
        return stopped(
            format!("guest did not shut down within {ms} ms and was stopped"),
            false,
        );
    }
    if let Some(signal) = text.strip_prefix("kiln-vmm received signal ") {
        return match requested {
            Some(Requested::Stop) => stopped("stopped by request", false),
            _ => stopped(format!("kiln-vmm was stopped by signal {signal}"), false),
        };
    }
    if let Some(to) = text.strip_prefix("the VM was migrated to ") {
        return stopped(format!("migrated to {to}"), false);
    }
    if let Some(detail) = text.strip_prefix("the incoming migration failed: ") {
        return stopped(format!("incoming migration failed: {detail}"), true);
    }
    if text.starts_with(kiln_vmm::state::LEASE_EXPIRED_TEXT) {
        return stopped(format!("{FENCED_PREFIX}{text}"), true);
    }
    if let Some(detail) = text.strip_prefix("the guest crashed: ") {
        return stopped(format!("guest crashed: {detail}"), true);
    }
    if let Some(detail) = text.strip_prefix("VMM error: ") {
        return stopped(format!("kiln-vmm failed: {detail}"), true);
    }
    stopped(format!("kiln-vmm stopped: {text}"), true)
}

/// The reason kiln-vmm logged for its last run (`None` if that run logged none, e.g. it was
/// killed). Blocking.
pub fn logged_stop_reason(log: &Path) -> Option<String> {
    let tail = read_tail(log).ok()?;
    let run = tail.rsplit(START_MARKER).next().unwrap_or(&tail);
    run.lines()
        .rev()
        .find_map(|line| line.strip_prefix(STOPPED_PREFIX))
        .map(str::to_owned)
}

/// The last lines of the log of the current run, for error messages. Blocking.
pub fn last_log_lines(log: &Path, lines: usize) -> String {
    let Ok(tail) = read_tail(log) else {
        return String::new();
    };
    let run = tail.rsplit(START_MARKER).next().unwrap_or(&tail);
    let all: Vec<&str> = run
        .lines()
        .skip(1) // the rest of the marker line
        .filter(|l| !l.trim().is_empty())
        .collect();
    all[all.len().saturating_sub(lines)..].join("; ")
}

fn read_tail(path: &Path) -> io::Result<String> {
    let mut file = fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Identity of a live process: its pid and start time (clock ticks after boot), so that a
/// reused pid is not mistaken for the VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    /// Process id.
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat`.
    pub start_ticks: u64,
}

impl ProcessId {
    /// The process `pid` if it exists and is not a zombie. Blocking (reads `/proc`).
    pub fn of(pid: u32) -> Option<ProcessId> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let state = *fields.first()?;
        if state == "Z" || state == "X" {
            return None;
        }
        // Field 22 overall is the 20th after the command name.
        let start_ticks = fields.get(19)?.parse().ok()?;
        Some(ProcessId { pid, start_ticks })
    }

    /// Whether this very process still runs. Blocking.
    pub fn is_alive(&self) -> bool {
        ProcessId::of(self.pid) == Some(*self)
    }

    /// Sends SIGKILL (no-op if it has ended).
    pub fn kill(&self) {
        if !self.is_alive() {
            return;
        }
        let Some(pid) = i32::try_from(self.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        else {
            return;
        };
        if let Err(e) = rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
            tracing::warn!("cannot kill kiln-vmm pid {}: {e}", self.pid);
        }
    }
}

/// Whether `pid` is a kiln-vmm serving `socket` (so a pid from a control socket is trusted
/// only for its own VM). Blocking.
pub fn serves_socket(pid: u32, socket: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let socket = socket.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_ports_and_the_listen_argument() {
        let range: PortRange = "60000-60050".parse().expect("range");
        assert_eq!((range.low, range.high), (60000, 60050));
        assert!("0-0".parse::<PortRange>().is_ok());
        for bad in ["60050-60000", "x-1", "60000", "0-9", ""] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        let tls = kiln_vmm::protocol::TlsFiles {
            ca: "/ca".into(),
            cert: "/c".into(),
            key: "/k".into(),
        };
        let net = |bind: &str, ports: &str| MigrationNet {
            bind: bind.parse().expect("ip"),
            ports: ports.parse().expect("ports"),
            tls: tls.clone(),
        };
        assert_eq!(
            net("10.0.0.5", "60000-60050").listen_arg(),
            "10.0.0.5:60000-60050"
        );
        assert_eq!(net("::1", "60000-60050").listen_arg(), "[::1]:60000-60050");
        assert_eq!(net("127.0.0.1", "0-0").listen_arg(), "127.0.0.1:0");
    }

    fn code(code: i32) -> Exit {
        Exit::Status(ExitStatus::from_raw(code << 8))
    }

    fn signal(signal: i32) -> Exit {
        Exit::Status(ExitStatus::from_raw(signal))
    }

    fn s(reason: &str, crashed: bool) -> Outcome {
        stopped(reason, crashed)
    }

    #[test]
    fn exits_map_to_reasons_table_style() {
        use Requested::{Shutdown, Stop};
        let cases: Vec<(Exit, Option<Requested>, Option<&str>, Outcome)> = vec![
            (
                code(0),
                None,
                Some("the guest powered off"),
                s("guest powered off", false),
            ),
            (
                code(0),
                Some(Stop),
                Some("stopped on request"),
                s("stopped by request", false),
            ),
            (
                code(0),
                Some(Shutdown),
                Some("the guest powered off"),
                s("guest shut down on request", false),
            ),
            (
                code(0),
                Some(Shutdown),
                Some("the guest did not shut down within 500 ms and was stopped"),
                s(
                    "guest did not shut down within 500 ms and was stopped",
                    false,
                ),
            ),
            (
                code(0),
                None,
                Some("kiln-vmm received signal 15"),
                s("kiln-vmm was stopped by signal 15", false),
            ),
            (
                code(2),
                None,
                Some("the guest requested a reset"),
                Outcome::Restart,
            ),
            (
                code(2),
                Some(Stop),
                Some("the guest requested a reset"),
                s("stopped by request", false),
            ),
            (
                code(3),
                None,
                Some("the guest crashed: triple fault"),
                s("guest crashed: triple fault", true),
            ),
            (
                code(3),
                None,
                Some("VMM error: KVM_RUN failed"),
                s("kiln-vmm failed: KVM_RUN failed", true),
            ),
            (
                code(0),
                None,
                Some("the VM was migrated to /run/kiln/target.sock"),
                s("migrated to /run/kiln/target.sock", false),
            ),
            (
                code(1),
                None,
                Some("the incoming migration failed: checksum mismatch"),
                s("incoming migration failed: checksum mismatch", true),
            ),
            (
                signal(9),
                None,
                None,
                s("kiln-vmm was killed (signal 9)", true),
            ),
            (signal(9), Some(Stop), None, s("stopped by request", false)),
            (code(0), None, None, s("guest powered off", false)),
            (code(2), None, None, Outcome::Restart),
            (
                code(7),
                None,
                None,
                s("kiln-vmm exited with status 7", true),
            ),
            (
                Exit::Vanished,
                None,
                Some("the guest powered off"),
                s("guest powered off", false),
            ),
            (
                Exit::Vanished,
                Some(Stop),
                None,
                s("stopped by request", false),
            ),
        ];
        for (exit, requested, logged, want) in cases {
            assert_eq!(
                outcome(exit, requested, logged),
                want,
                "{exit:?} {requested:?} {logged:?}"
            );
        }
        let Outcome::Stopped { crashed, reason } = outcome(Exit::Vanished, None, None) else {
            panic!("vanished VMs are stopped");
        };
        assert!(
            crashed && reason.contains("exit status is unknown"),
            "{reason}"
        );
    }

    #[test]
    fn only_the_last_run_of_the_log_counts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("vmm.log");
        std::fs::write(
            &log,
            format!(
                "{START_MARKER} for VM 101\n{STOPPED_PREFIX}the guest powered off\n\
                 {START_MARKER} for VM 101\nkiln-vmm: error: cannot start a VM: no PVH note\n"
            ),
        )
        .expect("write");
        assert_eq!(logged_stop_reason(&log), None);
        assert_eq!(
            last_log_lines(&log, 3),
            "kiln-vmm: error: cannot start a VM: no PVH note"
        );
        std::fs::write(
            &log,
            format!("{START_MARKER} x\n{STOPPED_PREFIX}the guest crashed: boom\n"),
        )
        .expect("write");
        assert_eq!(
            logged_stop_reason(&log).as_deref(),
            Some("the guest crashed: boom")
        );
    }

    #[test]
    fn this_process_is_alive_and_identified_by_its_start_time() {
        let me = ProcessId::of(std::process::id()).expect("own /proc entry");
        assert!(me.is_alive());
        let other = ProcessId {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!other.is_alive());
    }

    #[test]
    fn linux_images_boot_with_their_initrd_and_the_vms_cmdline_first() {
        let dir = VmDir {
            path: PathBuf::from("/d/vms/101"),
        };
        let mut spec = VmSpec {
            vmid: 101,
            name: "linux".into(),
            memory_mib: 256,
            vcpus: 2,
            image: "kiln-linux".into(),
            cmdline: None,
            ha: false,
        };
        let image = BootImage::Linux {
            kernel: "/d/images/kiln-linux/kernel".into(),
            initrd: "/d/images/kiln-linux/initrd".into(),
            cmdline: Some("console=ttyS0".into()),
            min_memory_mib: Some(256),
        };
        let text = |args: Vec<OsString>| {
            args.iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(
            text(vmm_args(&dir, &spec, &image)),
            "--boot linux --kernel /d/images/kiln-linux/kernel --initrd /d/images/kiln-linux/initrd \
             --control-socket /d/vms/101/control.sock --memory-mib 256 --vcpus 2 \
             --cmdline console=ttyS0"
        );
        spec.cmdline = Some("console=ttyS0 quiet".into());
        assert!(text(vmm_args(&dir, &spec, &image)).ends_with("--cmdline console=ttyS0 quiet"));
        let pvh = BootImage::Pvh("/d/images/kiln-test-guest".into());
        spec.cmdline = None;
        assert_eq!(
            text(vmm_args(&dir, &spec, &pvh)),
            "--kernel /d/images/kiln-test-guest --control-socket /d/vms/101/control.sock \
             --memory-mib 256 --vcpus 2"
        );
    }
}
