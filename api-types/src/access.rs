//! Wire types of the access API: users, groups, roles, ACL, permissions, API tokens and pools
//! (`/api2/json/access/...`, `/api2/json/pools...`). Field names follow Proxmox VE; booleans
//! are 0/1 as Proxmox sends them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// An entry of `GET /access/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct UserEntry {
    /// `name@kiln`.
    pub userid: String,
    /// 1 if the user may log in.
    pub enable: u8,
    /// Account expiry (Unix seconds); 0 = never.
    pub expire: i64,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// E-mail address.
    pub email: String,
    /// Free text.
    pub comment: String,
    /// Groups, comma-separated (as Proxmox's listing).
    pub groups: String,
    /// The user's API tokens.
    pub tokens: Vec<TokenEntry>,
    /// 1: the user must have a TOTP second factor (Kiln extension).
    #[serde(rename = "tfa-required", default)]
    pub tfa_required: u8,
}

/// `GET /access/users/{userid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct UserDetail {
    /// 1 if the user may log in.
    pub enable: u8,
    /// Account expiry (Unix seconds); 0 = never.
    pub expire: i64,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// E-mail address.
    pub email: String,
    /// Free text.
    pub comment: String,
    /// Groups.
    pub groups: Vec<String>,
    /// API tokens by name.
    pub tokens: BTreeMap<String, TokenEntry>,
    /// 1: the user must have a TOTP second factor (Kiln extension).
    #[serde(rename = "tfa-required", default)]
    pub tfa_required: u8,
}

/// `POST /access/users`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    /// `name@kiln`.
    pub userid: String,
    /// Initial password (8 to 1024 characters); without one the user cannot log in.
    pub password: Option<String>,
    /// 0 to create the user disabled (default 1).
    pub enable: Option<u8>,
    /// Account expiry (Unix seconds); 0 = never.
    pub expire: Option<i64>,
    /// First name.
    pub firstname: Option<String>,
    /// Last name.
    pub lastname: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Groups, comma-separated.
    pub groups: Option<String>,
    /// 1: the user must add a TOTP second factor before its session may do anything else
    /// (Kiln extension; default 0).
    #[serde(
        rename = "tfa-required",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tfa_required: Option<u8>,
}

/// `PUT /access/users/{userid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    /// 0 disables the user: it cannot log in and its sessions and tokens stop working.
    pub enable: Option<u8>,
    /// Account expiry (Unix seconds); 0 = never.
    pub expire: Option<i64>,
    /// First name.
    pub firstname: Option<String>,
    /// Last name.
    pub lastname: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Free text.
    pub comment: Option<String>,
    /// Groups, comma-separated: replaces the user's groups (or adds to them with `append`).
    pub groups: Option<String>,
    /// 1: add `groups` instead of replacing them.
    pub append: Option<u8>,
    /// 1: the user must add a TOTP second factor before its session may do anything else
    /// (Kiln extension).
    #[serde(
        rename = "tfa-required",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tfa_required: Option<u8>,
}

/// An entry of `GET /access/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct GroupEntry {
    /// Group id.
    pub groupid: String,
    /// Free text.
    pub comment: String,
    /// Members, comma-separated.
    pub users: String,
}

/// `GET /access/groups/{groupid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct GroupDetail {
    /// Free text.
    pub comment: String,
    /// Members.
    pub members: Vec<String>,
}

/// `POST /access/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupCreate {
    /// Group id.
    pub groupid: String,
    /// Free text.
    pub comment: Option<String>,
}

/// `PUT /access/groups/{groupid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    /// Free text.
    pub comment: Option<String>,
}

/// An entry of `GET /access/roles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct RoleEntry {
    /// Role id.
    pub roleid: String,
    /// Privileges, comma-separated.
    pub privs: String,
    /// 1 for a built-in role (read-only).
    pub special: u8,
}

/// `POST /access/roles`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleCreate {
    /// Role id.
    pub roleid: String,
    /// Privileges, separated by commas or spaces.
    pub privs: Option<String>,
}

/// `PUT /access/roles/{roleid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleUpdate {
    /// Privileges, separated by commas or spaces.
    pub privs: Option<String>,
    /// 1: add `privs` instead of replacing them.
    pub append: Option<u8>,
}

/// An entry of `GET /access/acl`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AclEntryWire {
    /// ACL path.
    pub path: String,
    /// `user`, `group` or `token`.
    #[serde(rename = "type")]
    pub kind: String,
    /// User id, group id or full token id.
    pub ugid: String,
    /// Role.
    pub roleid: String,
    /// 1 if the entry applies below `path` too.
    pub propagate: u8,
}

/// `PUT /access/acl`: grant (or with `delete=1` revoke) roles on a path.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AclUpdate {
    /// ACL path, e.g. `/vms/100` or `/pool/lab1`.
    pub path: String,
    /// Roles, comma-separated.
    pub roles: String,
    /// Users, comma-separated.
    pub users: Option<String>,
    /// Groups, comma-separated.
    pub groups: Option<String>,
    /// API tokens (`name@kiln!token`), comma-separated.
    pub tokens: Option<String>,
    /// 0: the entries apply to the path itself only (default 1).
    pub propagate: Option<u8>,
    /// 1: remove the entries instead.
    pub delete: Option<u8>,
}

/// Query of `GET /access/permissions`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PermissionsQuery {
    /// Whose permissions (a user id or full token id; default: the caller).
    pub userid: Option<String>,
    /// Only this path.
    pub path: Option<String>,
}

/// `GET /access/permissions`: path → privilege → 1 if it propagates, else 0.
pub type Permissions = BTreeMap<String, BTreeMap<String, u8>>;

/// `PUT /access/password`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    /// Whose password.
    pub userid: String,
    /// The new password (8 to 1024 characters).
    pub password: String,
    /// The current password of the caller (as Proxmox VE 8 asks).
    #[serde(rename = "confirmation-password")]
    pub confirmation_password: String,
}

/// An API token (without its secret).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TokenEntry {
    /// Token name.
    pub tokenid: String,
    /// Free text.
    pub comment: String,
    /// Expiry (Unix seconds); 0 = never.
    pub expire: i64,
    /// 1: the token holds only what its own ACL entries grant, within its user's privileges.
    pub privsep: u8,
}

/// `POST /access/users/{userid}/token/{tokenid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    /// Free text.
    pub comment: Option<String>,
    /// Expiry (Unix seconds); 0 = never (default: the user's expiry).
    pub expire: Option<i64>,
    /// Privilege separation (default 1).
    pub privsep: Option<u8>,
}

/// Answer of `POST /access/users/{userid}/token/{tokenid}`: the secret, shown only now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TokenCreated {
    /// `name@kiln!token`.
    #[serde(rename = "full-tokenid")]
    pub full_tokenid: String,
    /// The token.
    pub info: TokenEntry,
    /// The secret: send `Authorization: PVEAPIToken=<full-tokenid>=<value>`.
    pub value: String,
}

/// What a pool's VMs use (Kiln extension).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
pub struct PoolUsage {
    /// VMs in the pool.
    pub vms: u32,
    /// vCPUs of its running VMs.
    pub running_vcpus: u32,
    /// Memory (MiB) of its running VMs.
    pub running_memory_mib: u64,
}

/// A pool's limits (Kiln extension); absent = no limit.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash, Default)]
pub struct PoolQuota {
    /// Most VMs.
    #[serde(rename = "max-vms", default, skip_serializing_if = "Option::is_none")]
    pub max_vms: Option<u32>,
    /// Most vCPUs of running VMs.
    #[serde(rename = "max-vcpus", default, skip_serializing_if = "Option::is_none")]
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) of running VMs.
    #[serde(
        rename = "max-memory",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_memory: Option<u64>,
}

/// An entry of `GET /pools`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PoolEntry {
    /// Pool id.
    pub poolid: String,
    /// Free text.
    pub comment: String,
    /// The parent pool (a lab's student pools are children of the lab's pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Limits.
    #[serde(flatten)]
    pub quota: PoolQuota,
    /// Use.
    pub usage: PoolUsage,
}

/// A member of a pool, as Proxmox lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PoolMember {
    /// `qemu/<vmid>`.
    pub id: String,
    /// Always `qemu`.
    #[serde(rename = "type")]
    pub kind: String,
    /// VM id.
    pub vmid: u32,
    /// Node.
    pub node: String,
    /// Name.
    pub name: String,
    /// `running`, `paused`, `stopped` or `unknown`.
    pub status: String,
    /// vCPUs.
    pub maxcpu: u32,
    /// Memory in bytes.
    pub maxmem: u64,
}

/// `GET /pools/{poolid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct PoolDetail {
    /// Free text.
    pub comment: String,
    /// Limits.
    #[serde(flatten)]
    pub quota: PoolQuota,
    /// Use.
    pub usage: PoolUsage,
    /// The member VMs the caller may see.
    pub members: Vec<PoolMember>,
}

/// `POST /pools`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PoolCreate {
    /// Pool id.
    pub poolid: String,
    /// Free text.
    pub comment: Option<String>,
    /// Most VMs (0 = no limit).
    #[serde(rename = "max-vms")]
    pub max_vms: Option<u32>,
    /// Most vCPUs of running VMs (0 = no limit).
    #[serde(rename = "max-vcpus")]
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) of running VMs (0 = no limit).
    #[serde(rename = "max-memory")]
    pub max_memory: Option<u64>,
}

/// `PUT /pools/{poolid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PoolUpdate {
    /// Free text.
    pub comment: Option<String>,
    /// VM ids, comma-separated, to add (or with `delete=1` remove).
    pub vms: Option<String>,
    /// 1: remove `vms` from the pool.
    pub delete: Option<u8>,
    /// 1: VMs may be moved here from another pool.
    #[serde(rename = "allow-move")]
    pub allow_move: Option<u8>,
    /// Most VMs (0 = no limit).
    #[serde(rename = "max-vms")]
    pub max_vms: Option<u32>,
    /// Most vCPUs of running VMs (0 = no limit).
    #[serde(rename = "max-vcpus")]
    pub max_vcpus: Option<u32>,
    /// Most memory (MiB) of running VMs (0 = no limit).
    #[serde(rename = "max-memory")]
    pub max_memory: Option<u64>,
}

/// A query or body that takes no parameters (refuses unknown ones).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// An entry of the audit log (`GET /api2/kiln/audit`, Kiln extension).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct AuditEntry {
    /// Sequence number (newest first in listings).
    pub id: i64,
    /// Unix seconds.
    pub time: i64,
    /// `user@kiln` or `user@kiln!token`; empty when the caller was not authenticated.
    pub user: String,
    /// HTTP method.
    pub method: String,
    /// Request path (the target, e.g. `/api2/json/nodes/n1/qemu/100/status/start`).
    pub path: String,
    /// HTTP status of the answer (2xx done, 4xx refused).
    pub status: u16,
    /// Client address.
    pub client: String,
}

/// Query of `GET /api2/kiln/audit`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Skip this many (newest first).
    pub start: Option<u32>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Only this caller (exact auth id).
    pub userfilter: Option<String>,
}

/// Everything `POST /access/ticket` accepts (Proxmox's parameters; the web UI sends the
/// [`crate::TicketRequest`] subset).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct LoginRequest {
    /// User id (`name@kiln`, or `name` with `realm`).
    pub username: String,
    /// The password; in the second step of a login with a second factor, `totp:<code>` or
    /// `recovery:<key>`.
    pub password: String,
    /// Realm, when `username` has none (only `kiln`).
    pub realm: Option<String>,
    /// The `ticket` of a `NeedTFA` answer.
    #[serde(rename = "tfa-challenge")]
    pub tfa_challenge: Option<String>,
    /// Accepted for Proxmox clients (Kiln always uses the new format).
    #[serde(rename = "new-format")]
    pub new_format: Option<u8>,
}

/// A second factor of a user (`GET /access/tfa/{userid}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TfaEntry {
    /// `totp` or `recovery`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id (the same word).
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// Recovery keys not used yet (recovery only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u32>,
}

/// `POST /access/tfa/{userid}`: add a TOTP (`type=totp`, `totp` = otpauth URL, `value` = its
/// current code) or new recovery keys (`type=recovery`), confirmed with the current password.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct TfaAdd {
    /// `totp` or `recovery`.
    #[serde(rename = "type")]
    pub kind: String,
    /// otpauth URL (TOTP).
    pub totp: Option<String>,
    /// The authenticator's current code (TOTP).
    pub value: Option<String>,
    /// The user's current password.
    pub password: String,
}

/// Answer of `POST /access/tfa/{userid}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct TfaAdded {
    /// `totp` or `recovery`.
    pub id: String,
    /// The recovery keys, shown only now (recovery only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery: Vec<String>,
}
