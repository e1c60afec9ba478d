//! Wire types of the high-availability API (`/api2/json/cluster/ha/...`), as Proxmox VE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An HA resource (`GET /cluster/ha/resources`, `GET /cluster/ha/resources/{sid}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HaResource {
    /// `vm:<vmid>`.
    pub sid: String,
    /// Always `vm` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// Requested state: `started`, `stopped`, `disabled` or `ignored`.
    pub state: String,
    /// Restarts on the same node after a crash before it is relocated.
    pub max_restart: u32,
    /// Relocations after the restarts are used up before it goes to `error`.
    pub max_relocate: u32,
    /// 1: move back to a higher-priority node when it returns.
    pub failback: u8,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Digest of the settings (for optimistic concurrency, as Proxmox).
    pub digest: String,
}

/// An HA rule (`GET /cluster/ha/rules`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HaRule {
    /// Rule id.
    pub rule: String,
    /// `node-affinity` or `resource-affinity`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Comma-separated sids.
    pub resources: String,
    /// Node affinity: `node[:priority],...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// Node affinity: 1 = only these nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<u8>,
    /// Resource affinity: `positive` (keep together) or `negative` (keep apart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// 1 = switched off.
    pub disable: u8,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    /// Conflicts with other rules; a rule with conflicts does not apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

/// One line of `GET /cluster/ha/status/current`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HaStatusEntry {
    /// `quorum`, `master`, `lrm:<node>` or `service:<sid>`.
    pub id: String,
    /// `quorum`, `master`, `lrm` or `service`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The node (master, lrm, service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A human-readable status line.
    pub status: String,
    /// Services: the sid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Services: the manager's state (`started`, `fence`, `recovery`, `error`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Services: the requested state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_state: Option<String>,
    /// Services: why it is in its state (error, waiting for a node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Services: max_restart; nodes: milliseconds left on the node's lease.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart: Option<u32>,
    /// Services: max_relocate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relocate: Option<u32>,
    /// Nodes: milliseconds left on the node's lease as it last reported (Kiln extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_remaining_ms: Option<u64>,
    /// Quorum: 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorate: Option<u8>,
}

/// Body of `POST /cluster/ha/resources`: put a VM under HA.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HaResourceCreate {
    /// `vm:<vmid>`.
    pub sid: String,
    /// Requested state (default `started`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Restarts on the same node after a crash (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart: Option<u32>,
    /// Relocations after the restarts are used up (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relocate: Option<u32>,
    /// 1: move back to a higher-priority node (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<u8>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// Body of `PUT /cluster/ha/resources/{sid}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HaResourceUpdate {
    /// Requested state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restart: Option<u32>,
    /// Relocations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_relocate: Option<u32>,
    /// Failback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<u8>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Settings to reset to their defaults, comma-separated (e.g. `comment`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete: Option<String>,
    /// The digest read with the resource: the change is refused if it changed since.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// Body of `POST /cluster/ha/rules` and `PUT /cluster/ha/rules/{rule}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HaRuleRequest {
    /// Rule id (create only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// `node-affinity` or `resource-affinity` (create only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Comma-separated sids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<String>,
    /// Node affinity: `node[:priority],...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<String>,
    /// Node affinity: 1 = only these nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<u8>,
    /// Resource affinity: `positive` or `negative`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// 1 = switched off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<u8>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// `GET /cluster/ha/status/manager_status`: the HA manager's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct HaManagerStatus {
    /// The manager's view of nodes and resources.
    pub manager_status: ManagerStatus,
    /// Each node's lease as the server last saw it.
    #[serde(default)]
    pub lrm_status: BTreeMap<String, LrmStatus>,
    /// Always quorate (one manager, in the server).
    #[serde(default)]
    pub quorum: Quorum,
}

/// The manager part of [`HaManagerStatus`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ManagerStatus {
    /// Where the manager runs (`kiln-server`).
    pub master_node: String,
    /// Node → `online`, `maintenance`, `fence` (lease may still run) or `fenced`.
    #[serde(default)]
    pub node_status: BTreeMap<String, String>,
    /// Resource → the manager's record of it.
    #[serde(default)]
    pub service_status: BTreeMap<String, ServiceStatus>,
    /// Lease granted with each heartbeat, ms.
    pub lease_ms: u64,
    /// Added before a silent node's lease counts as expired, ms.
    pub lease_margin_ms: u64,
}

/// One resource in [`ManagerStatus::service_status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceStatus {
    /// The manager's state (`started`, `fence`, `recovery`, …).
    pub state: String,
    /// The node it is on (or was last on).
    pub node: String,
    /// Where a move or recovery is taking it.
    pub target: Option<String>,
    /// Restarts used since it last ran well.
    pub restarts: u32,
    /// Relocations used.
    pub relocates: u32,
    /// Why it is in its state.
    pub reason: Option<String>,
}

/// One node in [`HaManagerStatus::lrm_status`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LrmStatus {
    /// Milliseconds left on the node's lease as it last reported.
    pub lease_remaining_ms: Option<u64>,
    /// HA VMs the node's lease guards.
    pub guarded_vms: Option<u32>,
    /// Milliseconds since the node last answered a heartbeat.
    pub last_answer_ms_ago: Option<u64>,
}

/// Quorum in [`HaManagerStatus`] (Proxmox's shape).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Quorum {
    /// `"1"`.
    pub quorate: String,
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            quorate: "1".into(),
        }
    }
}

/// `GET /api2/kiln/nodes/{node}/maintenance` (Kiln extension): whether HA keeps the node
/// empty.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct NodeMaintenance {
    /// The node.
    pub node: String,
    /// 1: in maintenance.
    pub enable: u8,
    /// Since when (Unix seconds), while in maintenance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<i64>,
}

/// Body of `POST /api2/kiln/nodes/{node}/maintenance`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MaintenanceRequest {
    /// 1: enter maintenance, 0: leave it.
    pub enable: u8,
}
