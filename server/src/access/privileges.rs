//! Privileges with Proxmox VE's names, and sets of them.

use std::fmt;
use std::str::FromStr;

macro_rules! privileges {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A privilege, named as in Proxmox VE.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Privilege {
            $($(#[$doc])* $variant,)*
        }

        impl Privilege {
            /// Every privilege, in Proxmox's (alphabetical) order.
            pub const ALL: &'static [Privilege] = &[$(Privilege::$variant,)*];

            /// The Proxmox name, e.g. `VM.PowerMgmt`.
            pub fn name(self) -> &'static str {
                match self {
                    $(Privilege::$variant => $name,)*
                }
            }
        }
    };
}

privileges! {
    /// Create, change and remove storages.
    DatastoreAllocate => "Datastore.Allocate",
    /// Allocate space on a storage (disks of VMs).
    DatastoreAllocateSpace => "Datastore.AllocateSpace",
    /// Upload templates and ISO images.
    DatastoreAllocateTemplate => "Datastore.AllocateTemplate",
    /// See storages.
    DatastoreAudit => "Datastore.Audit",
    /// Create and remove groups.
    GroupAllocate => "Group.Allocate",
    /// See resource mappings.
    MappingAudit => "Mapping.Audit",
    /// Change resource mappings.
    MappingModify => "Mapping.Modify",
    /// Use resource mappings.
    MappingUse => "Mapping.Use",
    /// Change access permissions (ACL entries).
    PermissionsModify => "Permissions.Modify",
    /// Create and remove pools, change their members.
    PoolAllocate => "Pool.Allocate",
    /// See pools.
    PoolAudit => "Pool.Audit",
    /// Create and remove authentication realms.
    RealmAllocate => "Realm.Allocate",
    /// Assign users to a realm.
    RealmAllocateUser => "Realm.AllocateUser",
    /// Change software-defined networks.
    SdnAllocate => "SDN.Allocate",
    /// See software-defined networks.
    SdnAudit => "SDN.Audit",
    /// Use software-defined networks.
    SdnUse => "SDN.Use",
    /// Use the node's network for downloads.
    SysAccessNetwork => "Sys.AccessNetwork",
    /// Read node and cluster state.
    SysAudit => "Sys.Audit",
    /// Open a node's console.
    SysConsole => "Sys.Console",
    /// Accept incoming migrations from other clusters.
    SysIncoming => "Sys.Incoming",
    /// Change node and cluster settings (e.g. create join tokens).
    SysModify => "Sys.Modify",
    /// Shut down and reboot nodes.
    SysPowerMgmt => "Sys.PowerMgmt",
    /// Read the system log.
    SysSyslog => "Sys.Syslog",
    /// Create, change and remove users.
    UserModify => "User.Modify",
    /// Create and remove VMs.
    VmAllocate => "VM.Allocate",
    /// See a VM, its configuration and state.
    VmAudit => "VM.Audit",
    /// Back a VM up.
    VmBackup => "VM.Backup",
    /// Clone a VM.
    VmClone => "VM.Clone",
    /// Change a VM's CD-ROM.
    VmConfigCdrom => "VM.Config.CDROM",
    /// Change a VM's vCPUs.
    VmConfigCpu => "VM.Config.CPU",
    /// Change a VM's cloud-init settings.
    VmConfigCloudinit => "VM.Config.Cloudinit",
    /// Change a VM's disks (in Kiln: its boot image).
    VmConfigDisk => "VM.Config.Disk",
    /// Change a VM's emulated hardware type.
    VmConfigHwType => "VM.Config.HWType",
    /// Change a VM's memory.
    VmConfigMemory => "VM.Config.Memory",
    /// Change a VM's network devices.
    VmConfigNetwork => "VM.Config.Network",
    /// Change a VM's other options (name, description, boot, kernel arguments).
    VmConfigOptions => "VM.Config.Options",
    /// Open a VM's console.
    VmConsole => "VM.Console",
    /// Migrate a VM to another node.
    VmMigrate => "VM.Migrate",
    /// Use a VM's monitor.
    VmMonitor => "VM.Monitor",
    /// Start, stop, pause, resume and reboot a VM.
    VmPowerMgmt => "VM.PowerMgmt",
    /// Take snapshots of a VM.
    VmSnapshot => "VM.Snapshot",
    /// Roll a VM back to a snapshot.
    VmSnapshotRollback => "VM.Snapshot.Rollback",
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl serde::Serialize for Privilege {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A privilege name that Kiln (and Proxmox VE) does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown privilege '{0}'; privileges are named as in Proxmox VE, e.g. VM.Audit, VM.PowerMgmt, Sys.Audit (GET /api2/json/access/roles lists the roles and their privileges)")]
pub struct UnknownPrivilege(pub String);

impl FromStr for Privilege {
    type Err = UnknownPrivilege;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Privilege::ALL
            .iter()
            .copied()
            .find(|p| p.name() == s)
            .ok_or_else(|| UnknownPrivilege(s.to_owned()))
    }
}

/// A set of privileges (a bit per privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PrivSet(u64);

impl PrivSet {
    /// No privilege.
    pub const EMPTY: PrivSet = PrivSet(0);

    /// Every privilege.
    pub fn all() -> Self {
        Self::of(Privilege::ALL)
    }

    /// The set of `privs`.
    pub fn of(privs: &[Privilege]) -> Self {
        PrivSet(privs.iter().fold(0, |acc, p| acc | 1 << (*p as u8)))
    }

    /// Whether `p` is in the set.
    pub fn contains(self, p: Privilege) -> bool {
        self.0 & (1 << (p as u8)) != 0
    }

    /// Whether every privilege of `other` is in the set.
    pub fn contains_all(self, other: PrivSet) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub fn union(self, other: PrivSet) -> Self {
        PrivSet(self.0 | other.0)
    }

    /// Intersection.
    pub fn intersect(self, other: PrivSet) -> Self {
        PrivSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The privileges in the set, in Proxmox's order.
    pub fn iter(self) -> impl Iterator<Item = Privilege> {
        Privilege::ALL
            .iter()
            .copied()
            .filter(move |p| self.contains(*p))
    }

    /// Parse a list of privilege names separated by commas, semicolons or spaces (as
    /// Proxmox's `privs` parameter).
    pub fn parse_list(s: &str) -> Result<Self, UnknownPrivilege> {
        s.split([',', ';', ' '])
            .filter(|p| !p.is_empty())
            .map(str::parse::<Privilege>)
            .try_fold(PrivSet::EMPTY, |acc, p| Ok(acc.union(PrivSet::of(&[p?]))))
    }

    /// The names, comma-separated.
    pub fn to_list(self) -> String {
        self.iter()
            .map(Privilege::name)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_fit_the_bit_set() {
        assert!(Privilege::ALL.len() <= 64);
        for p in Privilege::ALL {
            assert_eq!(p.name().parse::<Privilege>(), Ok(*p));
        }
        assert_eq!(PrivSet::all().iter().count(), Privilege::ALL.len());
    }

    #[test]
    fn privilege_lists_parse_with_proxmox_separators() {
        let set = PrivSet::parse_list("VM.Audit,VM.Console VM.PowerMgmt;").unwrap();
        assert_eq!(set.to_list(), "VM.Audit,VM.Console,VM.PowerMgmt");
        let err = PrivSet::parse_list("VM.Audit,VM.Fly").unwrap_err();
        assert_eq!(err, UnknownPrivilege("VM.Fly".into()));
        assert!(err.to_string().contains("unknown privilege 'VM.Fly'"));
    }
}
