//! Wire types of teaching labs (`/api2/kiln/labs...`, a Kiln extension): a lab gives every
//! student of a roster a clone of a template VM in a pool of their own, for a scheduled time.
//! Quota fields follow the pools' names (`max-vms`, `max-vcpus`, `max-memory`).

use serde::{Deserialize, Serialize};

use crate::access::PoolQuota;

/// `POST /api2/kiln/labs`: create a lab (in the pool of the same id).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct LabCreate {
    /// Lab id; also the id of its pool (created if missing).
    pub labid: String,
    /// The template VM every student gets a clone of.
    pub template: u32,
    /// Node of the students' VMs (default: the template's node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The roster as an existing group (give this or `csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The roster as CSV (see `roster`): the accounts are created with one-time passwords,
    /// in a new group `lab-<labid>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<String>,
    /// Each student's pool: most VMs (0 or absent: no limit).
    #[serde(rename = "max-vms", default, skip_serializing_if = "Option::is_none")]
    pub max_vms: Option<u32>,
    /// Each student's pool: most vCPUs of running VMs (0 or absent: no limit).
    #[serde(rename = "max-vcpus", default, skip_serializing_if = "Option::is_none")]
    pub max_vcpus: Option<u32>,
    /// Each student's pool: most memory (MiB) of running VMs (0 or absent: no limit).
    #[serde(
        rename = "max-memory",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_memory: Option<u64>,
    /// Students may use their VMs from (Unix seconds; default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// Until (Unix seconds); the VMs are stopped then.
    pub end: i64,
    /// Tear the lab down this many days after its end (absent: keep it).
    #[serde(
        rename = "delete-after",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_after: Option<u32>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An account a roster created, with its one-time password (answered once, never again).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LabAccount {
    /// `name@kiln`.
    pub userid: String,
    /// The password to hand out.
    pub password: String,
    /// E-mail address.
    pub email: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
}

/// Answer of `POST /api2/kiln/labs` and `POST /api2/kiln/labs/{labid}/students`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LabAccounts {
    /// The lab.
    pub labid: String,
    /// Accounts created from the CSV (empty for a group roster).
    pub accounts: Vec<LabAccount>,
}

/// `POST /api2/kiln/labs/{labid}/students` as JSON (a `text/csv` body works too).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LabImport {
    /// The roster CSV.
    pub csv: String,
}

/// `PUT /api2/kiln/labs/{labid}`: change the schedule or the comment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LabUpdate {
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// New start (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<i64>,
    /// New end (Unix seconds); a later end lets an ended lab's students start again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<i64>,
    /// Tear down this many days after the end; 0: keep the lab.
    #[serde(
        rename = "delete-after",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_after: Option<u32>,
}

/// `POST /api2/kiln/labs/{labid}/reset`: re-clone a student's VM from the template.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields)]
pub struct LabReset {
    /// The student (default: the caller).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userid: Option<String>,
}

/// An entry of `GET /api2/kiln/labs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LabEntry {
    /// Lab id (= its pool).
    pub labid: String,
    /// Free text.
    pub comment: String,
    /// The template VM.
    pub template: u32,
    /// Node of the students' VMs.
    pub node: String,
    /// The roster group.
    pub group: String,
    /// Students may use their VMs from (Unix seconds).
    pub start: i64,
    /// Until (Unix seconds).
    pub end: i64,
    /// Torn down this many days after the end.
    #[serde(
        rename = "delete-after",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub delete_after: Option<u32>,
    /// `scheduled`, `open` or `ended`.
    pub state: String,
    /// The caller's part: `instructor` (may change it), `auditor` (may look) or `student`.
    pub role: String,
    /// Students on the roster.
    pub students: u32,
    /// Students with a VM.
    pub deployed: u32,
    /// Each student's pool quota.
    #[serde(flatten)]
    pub quota: PoolQuota,
    /// An operation in progress (`labdeploy`, `labstop`, …), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<String>,
}

/// A student of a lab, as its dashboard shows them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct LabStudent {
    /// `name@kiln`.
    pub userid: String,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// E-mail address.
    pub email: String,
    /// The student's pool, once deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The student's VM, once deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmid: Option<u32>,
    /// Its node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `running`, `paused`, `stopped`, `unknown`, or `missing` (no VM yet).
    pub status: String,
    /// Why the last deployment failed for this student.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the student is still on the roster.
    pub enrolled: bool,
}

/// `GET /api2/kiln/labs/{labid}`: the lab and its students (a student sees only itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LabDetail {
    /// The lab.
    #[serde(flatten)]
    pub lab: LabEntry,
    /// Its students.
    pub members: Vec<LabStudent>,
}
