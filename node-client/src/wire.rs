//! Wire types of the node API (version [`API_VERSION`]) and of the join protocol.
//!
//! The server and every node agent use these same structs, so a field changed here changes on
//! both sides at once.

use serde::{Deserialize, Serialize};

/// Version of the node API; sent by nodes in [`NodeFacts::api_version`].
pub const API_VERSION: u32 = 1;

/// Facts a node reports with every heartbeat (`GET /v1/status` on the node API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeFacts {
    /// The node's name (the CN and DNS SAN of its certificate).
    pub name: String,
    /// Node API version the agent speaks.
    pub api_version: u32,
    /// Version of the `kiln-node` binary.
    pub agent_version: String,
    /// Host uptime in seconds.
    pub uptime_secs: u64,
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU model name.
    pub cpu_model: String,
    /// CPU sockets.
    pub cpu_sockets: u32,
    /// CPU usage since the previous sample, 0.0..=1.0.
    pub cpu_usage: f64,
    /// Load averages over 1, 5 and 15 minutes.
    pub loadavg: [f64; 3],
    /// Total memory in bytes.
    pub mem_total: u64,
    /// Memory in use (total minus available), in bytes.
    pub mem_used: u64,
    /// Whether `/dev/kvm` can be opened for reading and writing.
    pub kvm: bool,
    /// Kernel release and version (`uname -rv`).
    pub kernel: String,
    /// Memory available for new processes (`MemAvailable`), in bytes.
    #[serde(default)]
    pub mem_available: u64,
    /// CPU feature flags (`/proc/cpuinfo`, sorted): a running VM may only move to a node
    /// that has every flag of its current node.
    #[serde(default)]
    pub cpu_flags: Vec<String>,
    /// Every VM the node knows (running, paused or stopped), so each heartbeat carries the
    /// state changes since the previous one.
    #[serde(default)]
    pub vms: Vec<VmRuntime>,
    /// The host's boot id (`/proc/sys/kernel/random/boot_id`; empty if unreadable): a new
    /// one tells the server the host booted, so it starts the node's on-boot VMs.
    #[serde(default)]
    pub boot_id: String,
}

/// Body of `POST /v1/status`: the heartbeat, which also renews the node's HA lease.
///
/// The lease protocol never compares clocks across hosts. Each heartbeat offers a new grant
/// (`grant`) and confirms the newest grant whose answer reached the server (`confirmed`). The
/// node remembers when each offered grant arrived (its own monotonic clock) and extends its
/// lease only by a *confirmed* grant: deadline = arrival of that grant + its lease. Since the
/// server received the answer to that grant after the node received the grant, the server
/// knows the node's deadline is before (answer arrival + lease) on the server's clock, even
/// if a request was delayed in the network or in a frozen agent.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    /// The lease part; `None` asks for the facts only.
    #[serde(default)]
    pub lease: Option<LeaseGrant>,
}

/// One lease grant offered with a heartbeat.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Id of this grant (unique per server process).
    pub id: u64,
    /// Lease length the grant carries, in milliseconds.
    pub lease_ms: u64,
    /// Id of the newest earlier grant whose answer the server received.
    pub confirmed: Option<u64>,
}

/// Answer of `POST /v1/status`: the facts plus the node's lease as it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HeartbeatAnswer {
    /// The same facts as `GET /v1/status`.
    #[serde(flatten)]
    pub facts: NodeFacts,
    /// The node's lease after this heartbeat.
    pub lease: LeaseState,
}

/// A node's HA lease as the node sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LeaseState {
    /// Milliseconds until the lease runs out on the node's clock (`None`: it holds none; 0:
    /// it has run out).
    pub remaining_ms: Option<u64>,
    /// HA-managed VMs whose kiln-vmm guards this lease.
    pub guarded_vms: u32,
}

/// Body of `PUT /v1/vms/{vmid}/ha`: (un)mark a VM as HA-managed. An HA-managed VM's kiln-vmm
/// stops its guest when the node's lease runs out; the node starts it only while it holds a
/// valid lease.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct HaRequest {
    /// HA-managed or not.
    pub ha: bool,
}

/// Smallest VM id (as in Proxmox VE).
pub const VMID_MIN: u32 = 100;
/// Largest VM id (as in Proxmox VE).
pub const VMID_MAX: u32 = 999_999_999;
/// Longest VM name, in characters.
pub const VM_NAME_MAX: usize = 64;
/// Smallest guest memory, in MiB.
pub const VM_MEMORY_MIN_MIB: u32 = 16;
/// Name under which every node registers the Kiln test guest in its image store.
pub const TEST_GUEST_IMAGE: &str = "kiln-test-guest";

/// What to run: body of `POST /v1/vms/{vmid}/start`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VmSpec {
    /// VM id, [`VMID_MIN`]..=[`VMID_MAX`]; must match the path.
    pub vmid: u32,
    /// Display name, at most [`VM_NAME_MAX`] characters.
    pub name: String,
    /// Guest memory in MiB, [`VM_MEMORY_MIN_MIB`]..=host RAM.
    pub memory_mib: u32,
    /// Virtual CPUs, 1..=4 × host CPUs.
    pub vcpus: u32,
    /// Image name in the node's image store (see `GET /v1/images`).
    pub image: String,
    /// Kernel command line handed to the guest.
    #[serde(default)]
    pub cmdline: Option<String>,
    /// Managed by high availability: runs only while the node holds a lease, and its
    /// kiln-vmm stops the guest when the lease runs out.
    #[serde(default)]
    pub ha: bool,
}

/// Power state of a VM.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum VmPowerState {
    /// Its vCPUs run.
    Running,
    /// Its vCPUs are held; memory stays allocated.
    Paused,
    /// No kiln-vmm process runs for it.
    Stopped,
}

impl VmPowerState {
    /// The lowercase word used on the wire (`running`, `paused`, `stopped`).
    pub fn as_str(self) -> &'static str {
        match self {
            VmPowerState::Running => "running",
            VmPowerState::Paused => "paused",
            VmPowerState::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for VmPowerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a node knows about one of its VMs right now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmRuntime {
    /// VM id.
    pub vmid: u32,
    /// Display name (from its [`VmSpec`]).
    pub name: String,
    /// Power state.
    pub state: VmPowerState,
    /// Process id of its kiln-vmm while one runs.
    pub pid: Option<u32>,
    /// Seconds since the guest started (0 when stopped).
    pub uptime_secs: u64,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// CPU usage over the last second as a share of its vCPUs, 0.0..=1.0 (Proxmox' `cpu`).
    pub cpu_usage: f64,
    /// Configured guest memory, in bytes.
    pub memory_bytes: u64,
    /// Resident memory of its kiln-vmm process, in bytes (0 when stopped).
    pub rss_bytes: u64,
    /// Why it stopped, for a human (set when stopped), e.g. "guest powered off",
    /// "kiln-vmm was killed (signal 9)", "guest crashed: triple fault", "stopped by request".
    pub stop_reason: Option<String>,
    /// Whether it stopped for a reason nobody asked for (a crash, a kill).
    pub crashed: bool,
    /// Whether it is HA-managed (guarded by the node's lease).
    #[serde(default)]
    pub ha: bool,
    /// Whether it stopped because its HA lease ran out (fenced): the cluster recovers it
    /// elsewhere, so the node never starts it again by itself.
    #[serde(default)]
    pub fenced: bool,
    /// Where this copy stands in a live migration's handover, if it waits at one: what the
    /// server needs to settle a handover it could not finish.
    #[serde(default)]
    pub handover: Option<Handover>,
}

/// A VM copy waiting at a handover point of a live migration (see [`VmRuntime::handover`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Handover {
    /// Source, paused: the target has all state; waiting for `migrate/handover` (resumes
    /// here by itself after its commit timeout).
    AwaitingHandover,
    /// Source, paused, handed over: waits for `migrate/finish` or `migrate/takeback`.
    HandedOver,
    /// Target, paused, with the whole VM: waits for `migrate/commit` or `migrate/cancel`.
    AwaitingCommit,
}

/// An image in a node's image store (`GET /v1/images`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageInfo {
    /// Name to use in [`VmSpec::image`].
    pub name: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Image format: `pvh-elf` (an ELF kernel with a PVH entry note), `linux` (a kernel and
    /// initramfs directory, booted with the Linux boot protocol) or `unknown`.
    pub kind: String,
    /// What it is, for a human.
    pub description: String,
}

/// Body of `POST /v1/vms/{vmid}/shutdown` and `/reboot`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ShutdownRequest {
    /// How long the guest gets to power off after the power button before it is stopped.
    pub timeout_secs: u32,
}

/// `POST /v1/vms/{vmid}/migrate/send`: live-migrate a running VM to another node of the
/// cluster. The source agent connects to the target with its own node certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MigrateSendRequest {
    /// The target node's name (its certificate must be issued for it).
    pub target_node: String,
    /// The target node's API URL, `https://<host>:<port>`.
    pub target_api_url: String,
    /// Downtime budget of the stop-and-copy, in milliseconds.
    #[serde(default = "default_downtime_ms")]
    pub downtime_ms: u64,
    /// Bandwidth cap in MiB/s (none: as fast as the stream goes).
    #[serde(default)]
    pub bwlimit_mib_s: Option<u64>,
    /// Stop once the target has the whole VM (phase `awaiting_commit`, the VM paused here)
    /// and answer then; `POST …/migrate/commit` finishes the migration, `…/migrate/cancel`
    /// (or `commit_timeout_ms` without either) resumes the VM here. Without it the source
    /// commits by itself.
    #[serde(default)]
    pub await_commit: bool,
    /// With `await_commit`: how long the paused VM waits for the commit.
    #[serde(default = "default_commit_timeout_ms")]
    pub commit_timeout_ms: u64,
}

/// How long a source waits for `migrate/commit` when the request names no time.
pub const DEFAULT_COMMIT_TIMEOUT_MS: u64 = 10_000;

fn default_commit_timeout_ms() -> u64 {
    DEFAULT_COMMIT_TIMEOUT_MS
}

/// Downtime budget when a [`MigrateSendRequest`] names none (kiln-vmm's default).
pub const DEFAULT_MIGRATION_DOWNTIME_MS: u64 = 50;

fn default_downtime_ms() -> u64 {
    DEFAULT_MIGRATION_DOWNTIME_MS
}

/// Answer of `POST /v1/vms/{vmid}/migrate/receive`: where the target's kiln-vmm waits for
/// the source's (mutual TLS on the target node's API host), and the one-time token the source
/// must present there. The token is never shown in `Debug` output.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrateReceiveAnswer {
    /// TCP port on the target node's API host.
    pub port: u16,
    /// One-time token of this migration.
    pub token: String,
}

impl std::fmt::Debug for MigrateReceiveAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MigrateReceiveAnswer")
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Which side of a migration a VM is (mirrors kiln-vmm's control protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationRole {
    /// Sending the VM away.
    Outgoing,
    /// Receiving it.
    Incoming,
}

/// Where a migration is (mirrors kiln-vmm's control protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Connecting, exchanging the header and config.
    Connecting,
    /// The first pass over all of guest memory.
    FullPass,
    /// Resending pages dirtied since the previous round.
    DirtyRounds,
    /// vCPUs paused: last pages and machine state.
    StopAndCopy,
    /// Source: the target has all state and the VM is paused here, waiting for
    /// `migrate/handover` (it resumes here by itself after its commit timeout). Target: it
    /// has the whole VM, paused, waiting for `migrate/commit`.
    AwaitingCommit,
    /// Source: handed over to the cluster's decision; paused until `migrate/finish` or
    /// `migrate/takeback`, never resumed by itself.
    HandedOver,
    /// Target has all state; sending the commit.
    Committing,
    /// The VM runs on the target.
    Completed,
    /// Failed before the commit: the VM runs on the source.
    Failed,
    /// Cancelled: the VM runs on the source.
    Cancelled,
}

impl MigrationPhase {
    /// The migration has ended one way or another.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MigrationPhase::Completed | MigrationPhase::Failed | MigrationPhase::Cancelled
        )
    }
}

/// One pre-copy round (round 0 is the full pass; the last is the stop-and-copy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRound {
    /// Round number.
    pub round: u32,
    /// Pages sent with their contents.
    pub pages_sent: u64,
    /// Pages sent as zero markers.
    pub zero_pages: u64,
    /// Bytes put on the stream (frames included).
    pub bytes_sent: u64,
    /// How long the round took, in microseconds.
    pub duration_us: u64,
    /// Pages the guest dirtied during the round.
    pub dirtied_pages: u64,
    /// Guest dirty rate during the round, bytes/s.
    pub dirty_rate_bytes_s: u64,
    /// Stream throughput during the round, bytes/s.
    pub throughput_bytes_s: u64,
    /// Downtime expected if the stop-and-copy started after this round, microseconds.
    pub expected_downtime_us: u64,
    /// Share of each interval the vCPUs were held (auto-converge), percent.
    pub throttle_percent: u8,
}

/// Progress and result of a migration, as kiln-vmm reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// Sending or receiving.
    pub role: MigrationRole,
    /// Where it is.
    pub phase: MigrationPhase,
    /// The other side.
    pub peer: String,
    /// Downtime budget, ms.
    pub downtime_budget_ms: u64,
    /// Bandwidth cap, MiB/s.
    pub bwlimit_mib_s: Option<u64>,
    /// Guest memory size, bytes.
    pub guest_memory_bytes: u64,
    /// Rounds so far.
    pub rounds: Vec<MigrationRound>,
    /// Bytes sent (source) or received (target) so far.
    pub bytes_transferred: u64,
    /// Current auto-converge throttle, percent.
    pub throttle_percent: u8,
    /// Since the migration started, ms.
    pub elapsed_ms: u64,
    /// Total time of a completed migration, ms.
    pub total_ms: Option<u64>,
    /// Final downtime: vCPUs paused on the source → running on the target, microseconds.
    pub downtime_us: Option<u64>,
    /// Machine-state restore on the target, microseconds.
    pub restore_us: Option<u64>,
    /// Why it failed or was cancelled (or a warning of a completed one).
    pub error: Option<String>,
}

/// Body of `POST /api2/kiln/join` on the server: a node asks to join with a one-time token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinRequest {
    /// The join token exactly as the administrator got it (its secret part is checked).
    pub token: String,
    /// The name the node wants (validated as a [`crate::NodeName`]).
    pub node_name: String,
    /// Where the server reaches the node agent, e.g. `https://10.0.0.5:8007`.
    pub api_url: String,
    /// PEM certificate signing request for the node's key; the CN must be the node name.
    pub csr_pem: String,
}

/// Answer of a successful join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinResponse {
    /// The node's certificate, signed by the cluster CA (PEM).
    pub cert_pem: String,
    /// The cluster CA certificate (PEM); the node trusts only certificates it signed.
    pub ca_pem: String,
    /// UPID of the server's `nodejoin` task, for the log.
    pub upid: String,
}

/// Body of every error answer of the node API (any non-2xx status).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub message: String,
}

impl ErrorBody {
    /// The message of an error answer: the `message` field if the body is an [`ErrorBody`],
    /// otherwise the body itself as text (shortened), or the word "no details".
    pub fn message_from(body: &[u8]) -> String {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return parsed.message;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            return "no details".to_owned();
        }
        match text.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_state_is_lowercase_on_the_wire() {
        assert_eq!(
            serde_json::to_string(&VmPowerState::Paused).expect("json"),
            r#""paused""#
        );
        assert_eq!(VmPowerState::Stopped.to_string(), "stopped");
    }

    #[test]
    fn facts_of_an_older_agent_without_vms_still_parse() {
        let json = r#"{"name":"n1","api_version":1,"agent_version":"0.1.0","uptime_secs":1,
            "cpus":2,"cpu_model":"x","cpu_sockets":1,"cpu_usage":0.0,"loadavg":[0,0,0],
            "mem_total":10,"mem_used":5,"kvm":true,"kernel":"6.1"}"#;
        let facts: NodeFacts = serde_json::from_str(json).expect("facts");
        assert!(facts.vms.is_empty());
        assert_eq!(facts.mem_available, 0);
    }

    #[test]
    fn spec_without_cmdline_parses() {
        let spec: VmSpec = serde_json::from_str(
            r#"{"vmid":101,"name":"a","memory_mib":64,"vcpus":1,"image":"kiln-test-guest"}"#,
        )
        .expect("spec");
        assert_eq!(spec.cmdline, None);
    }

    #[test]
    fn error_message_comes_from_the_json_body_or_the_raw_text() {
        assert_eq!(
            ErrorBody::message_from(br#"{"message":"no such VM"}"#),
            "no such VM"
        );
        assert_eq!(ErrorBody::message_from(b"  plain text \n"), "plain text");
        assert_eq!(ErrorBody::message_from(b""), "no details");
        let long = "x".repeat(1000);
        assert_eq!(
            ErrorBody::message_from(long.as_bytes()).chars().count(),
            301
        );
    }
}
