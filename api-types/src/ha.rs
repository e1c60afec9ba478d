//! Wire types of the high-availability API (`/api2/json/cluster/ha/...`), as Proxmox VE.

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
