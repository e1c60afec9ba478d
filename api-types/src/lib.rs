//! Wire types of Kiln's Proxmox-VE-compatible REST API (`/api2/json/...`).
//!
//! The server serialises these and the web UI deserialises them, so both sides always agree.
//! Field names follow Proxmox VE's API (including its odd casing, e.g. `CSRFPreventionToken`),
//! so that existing Proxmox clients work against Kiln.

use serde::{Deserialize, Serialize};

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
    /// The password.
    pub password: String,
}

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
    /// `node/<name>` (later `qemu/<vmid>`).
    pub id: String,
    /// `node` (later `qemu`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The node the resource is on.
    pub node: String,
    /// `online` / `offline` / `unknown` for nodes.
    pub status: String,
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
