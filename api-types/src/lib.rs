//! Wire types of Kiln's Proxmox-VE-compatible REST API (`/api2/json/...`).
//!
//! The server serialises these and the web UI deserialises them, so both sides always agree.
//! Field names follow Proxmox VE's API (including its odd casing, e.g. `CSRFPreventionToken`),
//! so that existing Proxmox clients work against Kiln.

use serde::{Deserialize, Serialize};

pub mod ha;
pub mod labs;
pub mod roster;

/// The `{"data": ...}` envelope every `/api2/json` response is wrapped in.
///
/// On errors `data` is `null`, `errors` maps parameter names to messages (for parameter
/// errors, as Proxmox does) and `message` says what went wrong in words a person can act on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Envelope<T> {
    /// The payload; `None` (JSON `null`) on errors.
    pub data: Option<T>,
    /// Per-parameter error messages (only on 400 parameter errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<std::collections::BTreeMap<String, String>>,
    /// A human-readable error message (Kiln extension; Proxmox puts it in the status line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Body of `POST /api2/json/access/ticket` (accepted as JSON or as a form).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TicketRequest {
    /// User id with realm, e.g. `root@kiln`.
    pub username: String,
    /// The password; in the second step of a login with a second factor, `totp:<code>` or
    /// `recovery:<key>`.
    pub password: String,
    /// The `ticket` of a `NeedTFA` answer, in the second step of a login.
    #[serde(
        rename = "tfa-challenge",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tfa_challenge: Option<String>,
}

pub mod access;

/// Answer of a successful login (`POST /api2/json/access/ticket`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Ticket {
    /// Session ticket; send it back as cookie `PVEAuthCookie`.
    pub ticket: String,
    /// Token to send as header `CSRFPreventionToken` on every state-changing request.
    #[serde(rename = "CSRFPreventionToken")]
    pub csrf_prevention_token: String,
    /// The authenticated user id.
    pub username: String,
    /// Capabilities of the user, Proxmox-style (`{"nodes": {"Sys.Audit": 1}, ...}`).
    pub cap: serde_json::Value,
    /// 1 when the password was right and a second factor is needed: `ticket` is then only a
    /// challenge, to be sent back as `tfa-challenge` with `password` = `totp:<code>` or
    /// `recovery:<key>` (Proxmox's flow).
    #[serde(rename = "NeedTFA", default, skip_serializing_if = "Option::is_none")]
    pub need_tfa: Option<u8>,
    /// What the user must do before the session may do anything else (Kiln extension): until
    /// then every other API call answers 403.
    #[serde(
        rename = "kiln-setup",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub setup: Option<SetupStep>,
}

/// A step a user must take after the password before its session is a normal one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum SetupStep {
    /// Replace a one-time or administrator-set password (`PUT /access/password`).
    ChangePassword,
    /// Add a TOTP second factor, which the account requires (`POST /access/tfa/{userid}`).
    EnrolTfa,
}

/// The identity behind the current browser session, as the UI needs it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct SessionInfo {
    /// The logged-in user, or `None` for an anonymous visitor.
    pub username: Option<String>,
    /// The session's CSRF token (empty when anonymous).
    pub csrf_token: String,
    /// The cluster's name, for the top bar.
    pub cluster_name: String,
    /// What the user must do before the session is a normal one, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<SetupStep>,
}

/// `GET /api2/json/version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionInfo {
    /// Product version, e.g. `0.1.0`.
    pub version: String,
    /// Release series, e.g. `0.1`.
    pub release: String,
    /// Source revision the server was built from.
    pub repoid: String,
}

/// Node state as the cluster sees it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Heartbeats arrive.
    Online,
    /// No heartbeat within the configured timeout.
    Offline,
    /// Joined, but not heard from since the server started.
    Unknown,
}

impl NodeState {
    /// The lowercase word Proxmox uses (`online`, `offline`, `unknown`).
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Online => "online",
            NodeState::Offline => "offline",
            NodeState::Unknown => "unknown",
        }
    }
}

/// One entry of `GET /api2/json/nodes`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeListEntry {
    /// Node name.
    pub node: String,
    /// `online`, `offline` or `unknown`.
    pub status: NodeState,
    /// CPU usage, 0.0..=1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Number of logical CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxcpu: Option<u32>,
    /// Used memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    /// Total memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    /// Node uptime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// SHA-256 fingerprint of the node's certificate (colon-separated hex).
    pub ssl_fingerprint: String,
    /// Support level (always empty for Kiln).
    pub level: String,
    /// `node/<name>`.
    pub id: String,
    /// Always `node`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// `GET /api2/json/nodes/{node}/status` (the subset of Proxmox's fields Kiln knows).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeStatus {
    /// CPU usage, 0.0..=1.0.
    pub cpu: f64,
    /// CPU description.
    pub cpuinfo: CpuInfo,
    /// Memory figures.
    pub memory: MemoryInfo,
    /// Load averages over 1, 5 and 15 minutes, as strings (as Proxmox sends them).
    pub loadavg: [String; 3],
    /// Node uptime in seconds.
    pub uptime: u64,
    /// Kernel version string.
    pub kversion: String,
    /// Kiln node agent version (Proxmox calls this `pveversion`).
    pub pveversion: String,
    /// Whether `/dev/kvm` is usable on the node (Kiln extension).
    pub kvm: bool,
    /// Cluster view of the node: `online`, `offline` or `unknown` (Kiln extension).
    pub status: NodeState,
    /// Seconds since the last heartbeat, if any was received (Kiln extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_secs: Option<u64>,
}

/// CPU description of a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CpuInfo {
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU model name.
    pub model: String,
    /// Sockets.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
}

/// Memory figures of a node, in bytes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemoryInfo {
    /// Total memory.
    pub total: u64,
    /// Used memory (total minus available).
    pub used: u64,
    /// Free (available) memory.
    pub free: u64,
}

/// One entry of `GET /api2/json/cluster/status`: either the cluster or a node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterStatusEntry {
    /// `cluster` or `node`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `cluster` or `node/<name>`.
    pub id: String,
    /// Cluster or node name.
    pub name: String,
    /// Nodes: 1 when online.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<u8>,
    /// Nodes: address of the node agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Nodes: always 0 (the server is not a node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<u8>,
    /// Nodes: numeric id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodeid: Option<i64>,
    /// Nodes: support level (empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Cluster: number of nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<u32>,
    /// Cluster: 1 (the server decides; there is no vote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorate: Option<u8>,
    /// Cluster: configuration version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
}

/// One entry of `GET /api2/json/cluster/resources`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterResource {
    /// `node/<name>` or `qemu/<vmid>`.
    pub id: String,
    /// `node` or `qemu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node the resource is on.
    pub node: String,
    /// Nodes: `online` / `offline` / `unknown`; VMs: `running` / `paused` / `stopped`.
    pub status: String,
    /// VMs: the VM id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// VMs: the VM name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// VMs: an operation holding the VM (e.g. `migrate`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<String>,
    /// CPU usage, 0.0..=1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Logical CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxcpu: Option<u32>,
    /// Used memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    /// Total memory in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maxmem: Option<u64>,
    /// Uptime in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime: Option<u64>,
    /// VMs managed by HA: the HA manager's state (`started`, `fence`, `recovery`, `error`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hastate: Option<String>,
    /// VMs: 1 for a template (cloned, never started), as Proxmox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
}

/// Task state: running, or stopped with an exit status.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskSummary {
    /// The task's UPID.
    pub upid: String,
    /// Node the task concerns.
    pub node: String,
    /// Process id in the UPID.
    pub pid: u32,
    /// Process start counter in the UPID.
    pub pstart: u64,
    /// Start time, Unix seconds.
    pub starttime: i64,
    /// Task type, e.g. `nodejoin`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Object the task acts on (may be empty).
    pub id: String,
    /// User who started the task.
    pub user: String,
    /// `running` or `stopped`.
    pub status: String,
    /// `OK` or the error, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exitstatus: Option<String>,
    /// End time, Unix seconds, once stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endtime: Option<i64>,
    /// Progress of a running task that reports one, 0.0..=1.0 (Kiln extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<f64>,
}

/// One line of `GET /api2/json/nodes/{node}/tasks/{upid}/log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskLogLine {
    /// Line number, starting at 1.
    pub n: u64,
    /// Text of the line.
    pub t: String,
}

/// A freshly created join token (Kiln extension: `POST /api2/json/cluster/join-tokens`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinTokenCreated {
    /// The token to pass to `kiln-node join <server-url> <token>`; shown once.
    pub token: String,
    /// Expiry, Unix seconds.
    pub expires: i64,
}

/// What the server pushes to the UI on `GET /api2/kiln/events` (server-sent events), each time
/// the cluster changes: the whole picture, small enough for the clusters Kiln targets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterEvent {
    /// All cluster resources (as `GET /cluster/resources`).
    pub resources: Vec<ClusterResource>,
    /// The most recent tasks, newest first.
    pub tasks: Vec<TaskSummary>,
}

/// One entry of `GET /api2/json/nodes/{node}/qemu`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmListEntry {
    /// VM id.
    pub vmid: u32,
    /// VM name.
    pub name: String,
    /// `running` or `stopped` (a paused VM is `running`; see `qmpstatus`).
    pub status: String,
    /// vCPUs.
    pub cpus: u32,
    /// Configured memory in bytes.
    pub maxmem: u64,
    /// Memory in use (resident) in bytes.
    pub mem: u64,
    /// CPU usage, 0.0..=1.0 of its vCPUs.
    pub cpu: f64,
    /// Uptime in seconds.
    pub uptime: u64,
    /// Process id of its `kiln-vmm`, when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// 1 for a template, as Proxmox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/status/current`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmStatus {
    /// VM id.
    pub vmid: u32,
    /// VM name.
    pub name: String,
    /// Node the VM is placed on.
    pub node: String,
    /// `running` or `stopped`.
    pub status: String,
    /// `running`, `paused` or `stopped`.
    pub qmpstatus: String,
    /// vCPUs.
    pub cpus: u32,
    /// Configured memory in bytes.
    pub maxmem: u64,
    /// Resident memory in bytes.
    pub mem: u64,
    /// CPU usage, 0.0..=1.0.
    pub cpu: f64,
    /// Uptime in seconds.
    pub uptime: u64,
    /// Process id of its `kiln-vmm`, when running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Why it stopped, when it stopped on its own (Kiln extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/config`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VmConfig {
    /// VM name.
    pub name: String,
    /// vCPUs.
    pub cores: u32,
    /// Memory in MiB.
    pub memory: u32,
    /// Boot image from the node's image store.
    pub image: String,
    /// Extra kernel command line (Linux guests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Start when the cluster starts (0/1).
    pub onboot: u8,
    /// 1 for a template (cloned, never started), as Proxmox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<u8>,
    /// Hash of the configuration, for optimistic locking on `PUT`.
    pub digest: String,
}

/// `POST /api2/json/nodes/{node}/qemu`: create a VM.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct VmCreateRequest {
    /// VM id (from `/cluster/nextid`).
    pub vmid: u32,
    /// VM name (a DNS name).
    pub name: Option<String>,
    /// vCPUs (default 1).
    pub cores: Option<u32>,
    /// Memory in MiB (default 128).
    pub memory: Option<u32>,
    /// Boot image (default `kiln-test-guest`).
    pub image: Option<String>,
    /// Extra kernel command line.
    pub args: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Start on cluster start (0/1).
    pub onboot: Option<u8>,
    /// Start right after creation (0/1).
    pub start: Option<u8>,
    /// Put the VM into this pool (its quota applies; `VM.Allocate` on `/pool/{pool}`
    /// suffices to create it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// `POST /api2/json/nodes/{node}/qemu/{vmid}/clone`: copy a VM (usually a template) into a
/// new one (task `qmclone`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct VmCloneRequest {
    /// Id of the new VM (from `/cluster/nextid`).
    pub newid: u32,
    /// Name of the new VM (default `Copy-of-VM-<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Node of the new VM (default: the source's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Put the new VM into this pool (its quota applies; `VM.Allocate` on `/pool/{pool}`
    /// suffices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Description of the new VM (default: the source's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Proxmox's full (1) or linked (0) clone; Kiln VMs have no disks yet, so both copy the
    /// configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<u8>,
}

/// An image in a node's image store (`GET /api2/json/nodes/{node}/images`, Kiln extension).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ImageEntry {
    /// Image name, used in a VM's `image`.
    pub name: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// `pvh-elf` or `linux`.
    pub kind: String,
    /// Free text.
    pub description: String,
}

/// `PUT /api2/json/nodes/{node}/qemu/{vmid}/config`: change a VM's configuration (only the
/// fields given).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct VmConfigUpdate {
    /// VM name.
    pub name: Option<String>,
    /// vCPUs (only while stopped).
    pub cores: Option<u32>,
    /// Memory in MiB (only while stopped).
    pub memory: Option<u32>,
    /// Boot image (only while stopped).
    pub image: Option<String>,
    /// Extra kernel command line.
    pub args: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// Start on cluster start (0/1).
    pub onboot: Option<u8>,
    /// The digest of the configuration this change is based on; refused if it changed since.
    pub digest: Option<String>,
}

/// Why a node cannot take a VM (`not_allowed_nodes` of `GET …/qemu/{vmid}/migrate`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MigrateNotAllowed {
    /// The reason, worded for the person choosing a target.
    pub reason: String,
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/migrate`: where the VM may go now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MigratePreconditions {
    /// Whether the VM runs (then the migration is live).
    pub running: bool,
    /// Nodes that can take it.
    pub allowed_nodes: Vec<String>,
    /// Nodes that cannot, with the reason.
    pub not_allowed_nodes: std::collections::BTreeMap<String, MigrateNotAllowed>,
}

/// Body of `POST /api2/json/nodes/{node}/qemu/{vmid}/migrate`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MigrateRequest {
    /// Target node.
    pub target: String,
    /// 1: live-migrate a running VM (the default for a running VM); 0: only a stopped VM
    /// moves (its configuration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub online: Option<u8>,
    /// Bandwidth cap in KiB/s, as Proxmox (0 or none: no cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bwlimit: Option<u64>,
    /// Downtime budget of the stop-and-copy in milliseconds (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_downtime: Option<u64>,
}
