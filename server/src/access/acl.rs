//! [`AccessControl`]: one immutable snapshot of users, groups, roles, ACL entries, API tokens
//! and pools, and the resolution of a principal's privileges on a path with Proxmox VE's
//! rules:
//!
//! - the path is walked from `/` down; at each level the entries that apply (those on the
//!   path itself, and those above it with `propagate`) **replace** what was inherited;
//! - on one level a user's (or token's) own entries beat those of its groups;
//! - `NoAccess` among the resulting roles cancels all others;
//! - a VM in a pool also gets the roles its principal has on `/pool/{pool}`, unless the
//!   VM's own resolution gave `NoAccess` (a pool `NoAccess` cancels the VM's roles);
//! - a pool with a parent (one level, as Proxmox VE 8.1's nested pools `parent/child`) is
//!   resolved as the path `/pool/{parent}/{pool}`: propagating entries on the parent reach the
//!   child and, through it, the child's VMs (a lab's instructor reaches every student's VM);
//! - `root@kiln` holds every privilege everywhere;
//! - an API token with privilege separation holds the intersection of its own and its
//!   owner's privileges; without, exactly its owner's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::privileges::{PrivSet, Privilege};
use super::roles::{self, NO_ACCESS};

/// The superuser, who holds every privilege.
pub const ROOT: &str = "root@kiln";

/// A user as the access model knows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserInfo {
    /// `name@kiln`.
    pub userid: String,
    /// Whether the user may log in.
    pub enabled: bool,
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
    /// Groups the user belongs to.
    pub groups: BTreeSet<String>,
    /// The user must have a TOTP second factor (see [`crate::access::setup`]).
    pub tfa_required: bool,
    /// The user must replace its password first (see [`crate::access::setup`]).
    pub must_change_password: bool,
    /// The user has a TOTP second factor.
    pub has_totp: bool,
}

impl UserInfo {
    /// Enabled and not expired at `now` (Unix seconds).
    pub fn usable(&self, now: i64) -> bool {
        self.enabled && (self.expire == 0 || self.expire > now)
    }
}

/// A group.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupInfo {
    /// Free text.
    pub comment: String,
    /// Member user ids.
    pub members: BTreeSet<String>,
}

/// A role: a named set of privileges.
#[derive(Debug, Clone, PartialEq)]
pub struct RoleInfo {
    /// Its privileges.
    pub privs: PrivSet,
    /// Built-in roles cannot be changed or removed.
    pub builtin: bool,
}

/// An API token.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// Owner.
    pub userid: String,
    /// Token name (after the `!`).
    pub name: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Privilege separation: the token holds only what its own ACL entries grant (within its
    /// owner's privileges).
    pub privsep: bool,
    /// Expiry (Unix seconds); 0 = never.
    pub expire: i64,
    /// Free text.
    pub comment: String,
}

impl TokenInfo {
    /// `name@kiln!token`.
    pub fn full_id(&self) -> String {
        format!("{}!{}", self.userid, self.name)
    }
}

/// Limits of a pool (Kiln extension); `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Quota {
    /// VMs in the pool.
    pub max_vms: Option<u32>,
    /// vCPUs of the pool's running VMs.
    pub max_vcpus: Option<u32>,
    /// Memory (MiB) of the pool's running VMs.
    pub max_memory_mib: Option<u64>,
}

/// A pool of VMs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolInfo {
    /// Free text.
    pub comment: String,
    /// Limits.
    pub quota: Quota,
    /// Member VMs.
    pub vms: BTreeSet<u32>,
    /// The parent pool, if any (one level).
    pub parent: Option<String>,
}

/// Who an ACL entry is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ugid {
    /// A user, `name@kiln`.
    User(String),
    /// A group.
    Group(String),
    /// An API token, `name@kiln!token`.
    Token(String),
}

impl Ugid {
    /// Proxmox's `type` word: `user`, `group` or `token`.
    pub fn kind(&self) -> &'static str {
        match self {
            Ugid::User(_) => "user",
            Ugid::Group(_) => "group",
            Ugid::Token(_) => "token",
        }
    }

    /// The id.
    pub fn id(&self) -> &str {
        match self {
            Ugid::User(s) | Ugid::Group(s) | Ugid::Token(s) => s,
        }
    }
}

/// One ACL entry: `role` for `ugid` on `path`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AclEntry {
    /// The path (normalized, see [`super::ids::normalize_acl_path`]).
    pub path: String,
    /// Who.
    pub ugid: Ugid,
    /// The role.
    pub roleid: String,
    /// Whether the entry also applies below `path`.
    pub propagate: bool,
}

/// A principal's privileges on one path, and which of them propagate (Proxmox's
/// `/access/permissions` shows that as 1/0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Privs {
    /// The privileges held.
    pub set: PrivSet,
    /// Those granted by propagating entries.
    pub propagating: PrivSet,
}

impl Privs {
    fn all() -> Self {
        Privs {
            set: PrivSet::all(),
            propagating: PrivSet::all(),
        }
    }
}

/// An immutable snapshot of the access configuration. Changes build a new snapshot from the
/// database and swap it in ([`super::AccessStore`]), so a check is a few map lookups.
#[derive(Debug, Clone)]
pub struct AccessControl {
    users: BTreeMap<String, UserInfo>,
    groups: BTreeMap<String, GroupInfo>,
    roles: BTreeMap<String, RoleInfo>,
    /// Entries by path.
    acl: BTreeMap<String, Vec<AclEntry>>,
    /// Tokens by full id.
    tokens: BTreeMap<String, TokenInfo>,
    pools: BTreeMap<String, PoolInfo>,
    vm_pool: HashMap<u32, String>,
}

impl Default for AccessControl {
    fn default() -> Self {
        let roles = roles::builtin()
            .into_iter()
            .map(|(name, privs)| {
                (
                    name.to_owned(),
                    RoleInfo {
                        privs,
                        builtin: true,
                    },
                )
            })
            .collect();
        AccessControl {
            users: BTreeMap::new(),
            groups: BTreeMap::new(),
            roles,
            acl: BTreeMap::new(),
            tokens: BTreeMap::new(),
            pools: BTreeMap::new(),
            vm_pool: HashMap::new(),
        }
    }
}

/// Roles that apply at a path, with their propagate flag.
type RoleSet = BTreeMap<String, bool>;

impl AccessControl {
    // --- building (from the database, or in tests) ---

    /// Add a user (its `groups` are filled by [`Self::add_member`]).
    pub fn add_user(&mut self, user: UserInfo) {
        self.users.insert(user.userid.clone(), user);
    }

    /// Add a group.
    pub fn add_group(&mut self, groupid: &str, comment: &str) {
        self.groups.insert(
            groupid.to_owned(),
            GroupInfo {
                comment: comment.to_owned(),
                members: BTreeSet::new(),
            },
        );
    }

    /// Make `userid` a member of `groupid` (both must have been added).
    pub fn add_member(&mut self, groupid: &str, userid: &str) {
        if let (Some(g), Some(u)) = (self.groups.get_mut(groupid), self.users.get_mut(userid)) {
            g.members.insert(userid.to_owned());
            u.groups.insert(groupid.to_owned());
        }
    }

    /// Add a custom role.
    pub fn add_role(&mut self, roleid: &str, privs: PrivSet) {
        self.roles.insert(
            roleid.to_owned(),
            RoleInfo {
                privs,
                builtin: false,
            },
        );
    }

    /// Add an ACL entry.
    pub fn add_acl(&mut self, entry: AclEntry) {
        self.acl.entry(entry.path.clone()).or_default().push(entry);
    }

    /// Add an API token.
    pub fn add_token(&mut self, token: TokenInfo) {
        self.tokens.insert(token.full_id(), token);
    }

    /// Add a pool.
    pub fn add_pool(&mut self, poolid: &str, pool: PoolInfo) {
        for vmid in &pool.vms {
            self.vm_pool.insert(*vmid, poolid.to_owned());
        }
        self.pools.insert(poolid.to_owned(), pool);
    }

    // --- reading ---

    /// A user.
    pub fn user(&self, userid: &str) -> Option<&UserInfo> {
        self.users.get(userid)
    }

    /// All users, by id.
    pub fn users(&self) -> impl Iterator<Item = &UserInfo> {
        self.users.values()
    }

    /// A group.
    pub fn group(&self, groupid: &str) -> Option<&GroupInfo> {
        self.groups.get(groupid)
    }

    /// All groups, by id.
    pub fn groups(&self) -> impl Iterator<Item = (&String, &GroupInfo)> {
        self.groups.iter()
    }

    /// A role.
    pub fn role(&self, roleid: &str) -> Option<&RoleInfo> {
        self.roles.get(roleid)
    }

    /// All roles, by id.
    pub fn roles(&self) -> impl Iterator<Item = (&String, &RoleInfo)> {
        self.roles.iter()
    }

    /// All ACL entries, by path.
    pub fn acl(&self) -> impl Iterator<Item = &AclEntry> {
        self.acl.values().flatten()
    }

    /// A token by full id `name@kiln!token`.
    pub fn token(&self, full_id: &str) -> Option<&TokenInfo> {
        self.tokens.get(full_id)
    }

    /// The tokens of a user.
    pub fn tokens_of<'a>(&'a self, userid: &'a str) -> impl Iterator<Item = &'a TokenInfo> {
        self.tokens.values().filter(move |t| t.userid == userid)
    }

    /// A pool.
    pub fn pool(&self, poolid: &str) -> Option<&PoolInfo> {
        self.pools.get(poolid)
    }

    /// All pools, by id.
    pub fn pools(&self) -> impl Iterator<Item = (&String, &PoolInfo)> {
        self.pools.iter()
    }

    /// The pool a VM belongs to.
    pub fn pool_of(&self, vmid: u32) -> Option<&str> {
        self.vm_pool.get(&vmid).map(String::as_str)
    }

    /// The pools whose parent is `poolid`.
    pub fn children_of<'a>(&'a self, poolid: &'a str) -> impl Iterator<Item = &'a String> {
        self.pools
            .iter()
            .filter(move |(_, p)| p.parent.as_deref() == Some(poolid))
            .map(|(id, _)| id)
    }

    /// Whether VM `vmid` counts in pool `poolid`: it is a member, or a member of one of
    /// `poolid`'s children.
    pub fn in_pool_tree(&self, poolid: &str, vmid: u32) -> bool {
        match self.pool_of(vmid) {
            Some(p) if p == poolid => true,
            Some(p) => self
                .pools
                .get(p)
                .is_some_and(|info| info.parent.as_deref() == Some(poolid)),
            None => false,
        }
    }

    /// The ACL keys walked to resolve `path`, from `/` down: its prefixes, with a child
    /// pool's parent inserted (`/pool/{child}` resolves as `/pool/{parent}/{child}`).
    fn levels(&self, path: &str) -> Vec<String> {
        if path == "/" {
            return vec!["/".into()];
        }
        let mut keys = vec!["/".to_owned()];
        let mut prefix = String::new();
        for part in path.split('/').skip(1) {
            prefix.push('/');
            prefix.push_str(part);
            if let Some(parent) = prefix
                .strip_prefix("/pool/")
                .and_then(|p| self.pools.get(p))
                .and_then(|p| p.parent.as_deref())
            {
                keys.push(format!("/pool/{parent}"));
            }
            keys.push(prefix.clone());
        }
        keys
    }

    // --- resolution ---

    /// The roles `who` (a user id, or a full token id when `token`) gets on `path` from the
    /// ACL alone (Proxmox's `roles()`).
    fn roles_at(&self, who: &str, token: bool, path: &str) -> RoleSet {
        let user_groups = if token {
            None
        } else {
            self.users.get(who).map(|u| &u.groups)
        };
        let levels = self.levels(path);
        let mut current = RoleSet::new();
        for (i, key) in levels.iter().enumerate() {
            let last = i + 1 == levels.len();
            let Some(entries) = self.acl.get(key.as_str()) else {
                continue;
            };
            let applies = |e: &&AclEntry| last || e.propagate;
            let own: RoleSet = entries
                .iter()
                .filter(applies)
                .filter(|e| match &e.ugid {
                    Ugid::User(u) => !token && u == who,
                    Ugid::Token(t) => token && t == who,
                    Ugid::Group(_) => false,
                })
                .map(|e| (e.roleid.clone(), e.propagate))
                .collect();
            if !own.is_empty() {
                current = own; // the principal's own entries beat its groups'
                continue;
            }
            let from_groups: RoleSet = entries
                .iter()
                .filter(applies)
                .filter(|e| matches!(&e.ugid, Ugid::Group(g) if user_groups.is_some_and(|gs| gs.contains(g))))
                .map(|e| (e.roleid.clone(), e.propagate))
                .collect();
            if !from_groups.is_empty() {
                current = from_groups;
            }
        }
        match current.get(NO_ACCESS) {
            Some(p) => RoleSet::from([(NO_ACCESS.to_owned(), *p)]),
            None => current,
        }
    }

    /// Roles on `path` including those inherited from the pool of a VM path.
    fn roles_with_pool(&self, who: &str, token: bool, path: &str) -> RoleSet {
        let mut roles = self.roles_at(who, token, path);
        let pool = path
            .strip_prefix("/vms/")
            .and_then(|id| id.parse::<u32>().ok())
            .and_then(|vmid| self.vm_pool.get(&vmid));
        if let Some(pool) = pool {
            let from_pool = self.roles_at(who, token, &format!("/pool/{pool}"));
            if !from_pool.is_empty() && !roles.contains_key(NO_ACCESS) {
                if from_pool.contains_key(NO_ACCESS) {
                    roles = RoleSet::from([(NO_ACCESS.to_owned(), false)]);
                } else {
                    for role in from_pool.into_keys() {
                        // Pool-derived roles never propagate below the VM.
                        roles.entry(role).or_insert(false);
                    }
                }
            }
        }
        roles
    }

    fn privs_of(&self, roles: &RoleSet) -> Privs {
        let mut out = Privs::default();
        for (roleid, propagate) in roles {
            if let Some(role) = self.roles.get(roleid) {
                out.set = out.set.union(role.privs);
                if *propagate {
                    out.propagating = out.propagating.union(role.privs);
                }
            }
        }
        out
    }

    /// The privileges of `userid`, or of its API token `token`, on `path`.
    pub fn privileges(&self, userid: &str, token: Option<&str>, path: &str) -> Privs {
        let user_privs = if userid == ROOT {
            Privs::all()
        } else {
            self.privs_of(&self.roles_with_pool(userid, false, path))
        };
        let Some(token) = token else {
            return user_privs;
        };
        let full = format!("{userid}!{token}");
        let Some(info) = self.tokens.get(&full) else {
            return Privs::default();
        };
        if !info.privsep {
            return user_privs;
        }
        let own = self.privs_of(&self.roles_with_pool(&full, true, path));
        Privs {
            set: own.set.intersect(user_privs.set),
            propagating: own.propagating.intersect(user_privs.propagating),
        }
    }

    /// Whether `userid` (or its token) holds `privilege` on `path`.
    pub fn allows(
        &self,
        userid: &str,
        token: Option<&str>,
        path: &str,
        privilege: Privilege,
    ) -> bool {
        self.privileges(userid, token, path).set.contains(privilege)
    }

    /// Paths worth reporting in `/access/permissions`: every ACL path, the top-level paths,
    /// and every pooled VM (which inherits from its pool).
    pub fn report_paths(&self) -> BTreeSet<String> {
        let mut paths: BTreeSet<String> = [
            "/",
            "/access",
            "/access/groups",
            "/nodes",
            "/pool",
            "/vms",
            "/storage",
            "/sdn",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        paths.extend(self.acl.keys().cloned());
        paths.extend(self.vm_pool.keys().map(|v| format!("/vms/{v}")));
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Privilege::*;

    fn user(id: &str) -> UserInfo {
        UserInfo {
            userid: id.into(),
            enabled: true,
            ..Default::default()
        }
    }

    fn entry(path: &str, ugid: Ugid, role: &str, propagate: bool) -> AclEntry {
        AclEntry {
            path: path.into(),
            ugid,
            roleid: role.into(),
            propagate,
        }
    }

    fn u(id: &str) -> Ugid {
        Ugid::User(id.into())
    }

    fn g(id: &str) -> Ugid {
        Ugid::Group(id.into())
    }

    /// alice and bob (group students), carol (no groups); pool lab1 holds VMs 200 and 201.
    fn base() -> AccessControl {
        let mut ac = AccessControl::default();
        for id in ["alice@kiln", "bob@kiln", "carol@kiln"] {
            ac.add_user(user(id));
        }
        ac.add_group("students", "");
        ac.add_member("students", "alice@kiln");
        ac.add_member("students", "bob@kiln");
        ac.add_pool(
            "lab1",
            PoolInfo {
                vms: BTreeSet::from([200, 201]),
                ..Default::default()
            },
        );
        ac
    }

    /// One resolution case: ACL entries, then (user, path, privilege, expected).
    struct Case {
        name: &'static str,
        acl: Vec<AclEntry>,
        checks: Vec<(&'static str, &'static str, Privilege, bool)>,
    }

    #[test]
    fn acl_resolution_follows_proxmox() {
        let cases = vec![
            Case {
                name: "no entries: nothing, except root",
                acl: vec![],
                checks: vec![
                    ("alice@kiln", "/", SysAudit, false),
                    ("alice@kiln", "/vms/100", VmAudit, false),
                    (ROOT, "/vms/100", VmAllocate, true),
                    (ROOT, "/", PermissionsModify, true),
                ],
            },
            Case {
                name: "propagating entry on / reaches every path",
                acl: vec![entry("/", u("alice@kiln"), "PVEAuditor", true)],
                checks: vec![
                    ("alice@kiln", "/", SysAudit, true),
                    ("alice@kiln", "/vms/100", VmAudit, true),
                    ("alice@kiln", "/nodes/n1", SysAudit, true),
                    ("alice@kiln", "/vms/100", VmPowerMgmt, false),
                    ("bob@kiln", "/vms/100", VmAudit, false),
                ],
            },
            Case {
                name: "propagate=0 applies to the path itself only",
                acl: vec![entry("/vms", u("alice@kiln"), "PVEVMUser", false)],
                checks: vec![
                    ("alice@kiln", "/vms", VmAudit, true),
                    ("alice@kiln", "/vms/100", VmAudit, false),
                ],
            },
            Case {
                name: "a deeper entry replaces the inherited roles",
                acl: vec![
                    entry("/", u("alice@kiln"), "PVEVMAdmin", true),
                    entry("/vms/100", u("alice@kiln"), "PVEAuditor", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/101", VmAllocate, true),
                    ("alice@kiln", "/vms/100", VmAllocate, false),
                    ("alice@kiln", "/vms/100", VmAudit, true),
                ],
            },
            Case {
                name: "the user's own entry beats its group's on the same path",
                acl: vec![
                    entry("/vms/100", g("students"), "PVEVMAdmin", true),
                    entry("/vms/100", u("alice@kiln"), "PVEAuditor", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/100", VmPowerMgmt, false),
                    ("alice@kiln", "/vms/100", VmAudit, true),
                    ("bob@kiln", "/vms/100", VmPowerMgmt, true),
                    ("carol@kiln", "/vms/100", VmAudit, false),
                ],
            },
            Case {
                name: "a group entry deeper down beats the user's entry above",
                acl: vec![
                    entry("/", u("alice@kiln"), "PVEVMAdmin", true),
                    entry("/vms/100", g("students"), "PVEAuditor", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/100", VmPowerMgmt, false),
                    ("alice@kiln", "/vms/100", VmAudit, true),
                    ("alice@kiln", "/vms/101", VmPowerMgmt, true),
                ],
            },
            Case {
                name: "NoAccess cancels every other role on the same level",
                acl: vec![
                    entry("/vms/100", g("students"), "PVEVMAdmin", true),
                    entry("/vms/100", g("students"), "NoAccess", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/100", VmAudit, false),
                    ("bob@kiln", "/vms/100", VmPowerMgmt, false),
                ],
            },
            Case {
                name: "NoAccess deeper down cancels an inherited Administrator",
                acl: vec![
                    entry("/", u("alice@kiln"), "Administrator", true),
                    entry("/vms/100", u("alice@kiln"), "NoAccess", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/100", VmAudit, false),
                    ("alice@kiln", "/vms/101", VmAudit, true),
                ],
            },
            Case {
                name: "a pool's roles apply to its member VMs only",
                acl: vec![entry("/pool/lab1", g("students"), "PVEVMUser", true)],
                checks: vec![
                    ("alice@kiln", "/vms/200", VmPowerMgmt, true),
                    ("alice@kiln", "/vms/201", VmConsole, true),
                    ("alice@kiln", "/vms/202", VmAudit, false),
                    ("alice@kiln", "/pool/lab1", VmAudit, true),
                    ("carol@kiln", "/vms/200", VmAudit, false),
                ],
            },
            Case {
                name: "pool roles add to the VM's own roles",
                acl: vec![
                    entry("/pool/lab1", u("alice@kiln"), "PVEVMUser", true),
                    entry("/vms/200", u("alice@kiln"), "PVETemplateUser", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/200", VmClone, true),
                    ("alice@kiln", "/vms/200", VmPowerMgmt, true),
                ],
            },
            Case {
                name: "NoAccess on the VM beats the pool; NoAccess on the pool beats the VM",
                acl: vec![
                    entry("/pool/lab1", u("alice@kiln"), "PVEVMUser", true),
                    entry("/vms/200", u("alice@kiln"), "NoAccess", true),
                    entry("/pool/lab1", u("bob@kiln"), "NoAccess", true),
                    entry("/vms/201", u("bob@kiln"), "PVEVMUser", true),
                ],
                checks: vec![
                    ("alice@kiln", "/vms/200", VmAudit, false),
                    ("alice@kiln", "/vms/201", VmAudit, true),
                    ("bob@kiln", "/vms/201", VmAudit, false),
                ],
            },
            Case {
                name: "custom roles grant exactly their privileges",
                acl: vec![entry("/vms/100", u("carol@kiln"), "Watcher", true)],
                checks: vec![
                    ("carol@kiln", "/vms/100", VmAudit, true),
                    ("carol@kiln", "/vms/100", VmConsole, true),
                    ("carol@kiln", "/vms/100", VmPowerMgmt, false),
                ],
            },
        ];
        for case in cases {
            let mut ac = base();
            ac.add_role("Watcher", PrivSet::of(&[VmAudit, VmConsole]));
            for e in case.acl {
                ac.add_acl(e);
            }
            for (who, path, privilege, want) in case.checks {
                assert_eq!(
                    ac.allows(who, None, path, privilege),
                    want,
                    "{}: {who} {privilege} on {path}",
                    case.name
                );
            }
        }
    }

    fn token(user: &str, name: &str, privsep: bool) -> TokenInfo {
        TokenInfo {
            userid: user.into(),
            name: name.into(),
            secret_sha256: String::new(),
            privsep,
            expire: 0,
            comment: String::new(),
        }
    }

    #[test]
    fn tokens_hold_the_owner_privileges_or_the_intersection() {
        let mut ac = base();
        ac.add_acl(entry("/", u("alice@kiln"), "PVEVMAdmin", true));
        ac.add_token(token("alice@kiln", "full", false));
        ac.add_token(token("alice@kiln", "sep", true));
        ac.add_token(token("bob@kiln", "sep", true));
        // The privsep token is granted more than its owner holds on /vms/100 and something
        // on /nodes, where the owner holds nothing.
        ac.add_acl(entry(
            "/vms/100",
            Ugid::Token("alice@kiln!sep".into()),
            "Administrator",
            true,
        ));
        ac.add_acl(entry(
            "/nodes",
            Ugid::Token("alice@kiln!sep".into()),
            "PVEAuditor",
            true,
        ));
        ac.add_acl(entry(
            "/",
            Ugid::Token("bob@kiln!sep".into()),
            "Administrator",
            true,
        ));
        let full = Some("full");
        let sep = Some("sep");
        assert!(ac.allows("alice@kiln", full, "/vms/101", VmAllocate));
        assert!(ac.allows("alice@kiln", sep, "/vms/100", VmAllocate));
        assert!(
            !ac.allows("alice@kiln", sep, "/vms/100", SysModify),
            "owner lacks it"
        );
        assert!(
            !ac.allows("alice@kiln", sep, "/vms/101", VmAudit),
            "token has no entry"
        );
        assert!(
            !ac.allows("alice@kiln", sep, "/nodes/n1", SysAudit),
            "owner lacks it"
        );
        assert!(
            !ac.allows("bob@kiln", sep, "/vms/100", VmAudit),
            "bob holds nothing"
        );
        assert!(!ac.allows("alice@kiln", Some("gone"), "/vms/101", VmAudit));
        // Root's privsep token is limited by its own entries too.
        ac.add_token(token(ROOT, "sep", true));
        assert!(!ac.allows(ROOT, sep, "/", SysAudit));
        ac.add_acl(entry(
            "/",
            Ugid::Token(format!("{ROOT}!sep")),
            "PVEAuditor",
            true,
        ));
        assert!(ac.allows(ROOT, sep, "/nodes/n1", SysAudit));
        assert!(!ac.allows(ROOT, sep, "/nodes/n1", SysModify));
    }

    #[test]
    fn propagate_flags_are_reported() {
        let mut ac = base();
        ac.add_acl(entry("/vms", u("alice@kiln"), "PVEAuditor", false));
        ac.add_acl(entry("/vms", u("alice@kiln"), "PVEVMUser", true));
        let p = ac.privileges("alice@kiln", None, "/vms");
        assert!(p.set.contains(SysAudit) && !p.propagating.contains(SysAudit));
        assert!(p.propagating.contains(VmPowerMgmt));
        assert!(ac.report_paths().contains("/vms/200"));
    }

    #[test]
    fn a_child_pool_inherits_its_parents_propagating_entries() {
        let mut ac = base();
        ac.add_pool(
            "lab1-ada",
            PoolInfo {
                vms: BTreeSet::from([300]),
                parent: Some("lab1".into()),
                ..Default::default()
            },
        );
        ac.add_pool(
            "lab1-bob",
            PoolInfo {
                vms: BTreeSet::from([301]),
                parent: Some("lab1".into()),
                ..Default::default()
            },
        );
        ac.add_role(
            "KilnLabStudent",
            PrivSet::of(&[VmAudit, VmConsole, VmPowerMgmt]),
        );
        ac.add_acl(entry("/pool/lab1", u("carol@kiln"), "PVEVMAdmin", true));
        ac.add_acl(entry("/pool/lab1", u("bob@kiln"), "PVEAuditor", false));
        ac.add_acl(entry("/vms/300", u("alice@kiln"), "KilnLabStudent", true));
        // The instructor reaches every student VM and pool; the students only their own VM.
        assert!(ac.allows("carol@kiln", None, "/vms/300", VmConsole));
        assert!(ac.allows("carol@kiln", None, "/vms/301", VmAllocate));
        assert!(ac.allows("carol@kiln", None, "/pool/lab1-bob", VmAllocate));
        assert!(
            !ac.allows("carol@kiln", None, "/vms/250", VmAudit),
            "outside the lab"
        );
        assert!(ac.allows("alice@kiln", None, "/vms/300", VmPowerMgmt));
        assert!(!ac.allows("alice@kiln", None, "/vms/301", VmAudit));
        assert!(!ac.allows("alice@kiln", None, "/pool/lab1-ada", PoolAudit));
        // A non-propagating entry on the parent stays there.
        assert!(ac.allows("bob@kiln", None, "/pool/lab1", PoolAudit));
        assert!(!ac.allows("bob@kiln", None, "/vms/301", VmAudit));
        // NoAccess on the child pool beats the parent's roles.
        ac.add_acl(entry("/pool/lab1-bob", u("carol@kiln"), "NoAccess", true));
        assert!(!ac.allows("carol@kiln", None, "/vms/301", VmAudit));
        assert!(ac.allows("carol@kiln", None, "/vms/300", VmAudit));
        assert!(ac.in_pool_tree("lab1", 300) && !ac.in_pool_tree("lab1-ada", 301));
        assert_eq!(ac.children_of("lab1").count(), 2);
    }

    #[test]
    fn usable_means_enabled_and_not_expired() {
        let mut info = user("a@kiln");
        assert!(info.usable(1000));
        info.expire = 1000;
        assert!(!info.usable(1000));
        assert!(info.usable(999));
        info.expire = 0;
        info.enabled = false;
        assert!(!info.usable(0));
    }
}
