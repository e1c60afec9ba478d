//! Built-in roles with Proxmox VE's privilege sets, and the rules for custom roles.

use super::privileges::{PrivSet, Privilege};
use Privilege::*;

/// VM privileges Proxmox groups as "admin".
const VM_ADMIN: &[Privilege] = &[
    VmConfigDisk,
    VmConfigCpu,
    VmConfigMemory,
    VmConfigNetwork,
    VmConfigHwType,
    VmConfigOptions,
    VmAllocate,
    VmClone,
    VmMigrate,
    VmMonitor,
    VmSnapshot,
    VmSnapshotRollback,
];
/// VM privileges Proxmox groups as "user".
const VM_USER: &[Privilege] = &[
    VmConfigCdrom,
    VmConfigCloudinit,
    VmConsole,
    VmBackup,
    VmPowerMgmt,
];
const SYS_ADMIN: &[Privilege] = &[SysConsole, SysSyslog];
const DATASTORE_ADMIN: &[Privilege] = &[DatastoreAllocate, DatastoreAllocateTemplate];
const DATASTORE_USER: &[Privilege] = &[DatastoreAllocateSpace];
const SDN_ADMIN: &[Privilege] = &[SdnAllocate];
const SDN_USER: &[Privilege] = &[SdnUse];
const USER_ADMIN: &[Privilege] = &[UserModify, GroupAllocate, RealmAllocateUser];
const POOL_ADMIN: &[Privilege] = &[PoolAllocate];
const MAPPING_ADMIN: &[Privilege] = &[MappingModify];
const MAPPING_USER: &[Privilege] = &[MappingUse];
/// Every "audit" privilege.
const AUDIT: &[Privilege] = &[
    VmAudit,
    SysAudit,
    DatastoreAudit,
    SdnAudit,
    PoolAudit,
    MappingAudit,
];

fn set(groups: &[&[Privilege]]) -> PrivSet {
    groups
        .iter()
        .fold(PrivSet::EMPTY, |acc, g| acc.union(PrivSet::of(g)))
}

/// The role that cancels every other role on its path.
pub const NO_ACCESS: &str = "NoAccess";
/// The role with every privilege.
pub const ADMINISTRATOR: &str = "Administrator";

/// Kiln's role for a lab's instructor, on the lab's pool (see `crate::labs`).
pub const LAB_INSTRUCTOR: &str = "KilnLabInstructor";
/// Kiln's role for a lab's student, on the student's own VM.
pub const LAB_STUDENT: &str = "KilnLabStudent";

/// The built-in roles, as Proxmox VE 8 defines them (name, privileges), and Kiln's two lab
/// roles.
pub fn builtin() -> Vec<(&'static str, PrivSet)> {
    vec![
        (ADMINISTRATOR, PrivSet::all()),
        (NO_ACCESS, PrivSet::EMPTY),
        // Everything but the "root" privileges (Sys.PowerMgmt, Sys.Modify, Sys.Incoming,
        // Sys.AccessNetwork, Realm.Allocate) and Permissions.Modify.
        (
            "PVEAdmin",
            set(&[
                VM_ADMIN,
                VM_USER,
                SYS_ADMIN,
                DATASTORE_ADMIN,
                DATASTORE_USER,
                SDN_ADMIN,
                SDN_USER,
                USER_ADMIN,
                POOL_ADMIN,
                MAPPING_ADMIN,
                MAPPING_USER,
                AUDIT,
            ]),
        ),
        ("PVEAuditor", set(&[AUDIT])),
        ("PVEVMAdmin", set(&[VM_ADMIN, VM_USER, &[VmAudit]])),
        ("PVEVMUser", set(&[VM_USER, &[VmAudit]])),
        ("PVESysAdmin", set(&[SYS_ADMIN, &[SysAudit]])),
        (
            "PVEDatastoreAdmin",
            set(&[DATASTORE_ADMIN, DATASTORE_USER, &[DatastoreAudit]]),
        ),
        (
            "PVEDatastoreUser",
            set(&[DATASTORE_USER, &[DatastoreAudit]]),
        ),
        ("PVESDNAdmin", set(&[SDN_ADMIN, SDN_USER, &[SdnAudit]])),
        ("PVESDNUser", set(&[SDN_USER, &[SdnAudit]])),
        ("PVEUserAdmin", set(&[USER_ADMIN])),
        ("PVEPoolAdmin", set(&[POOL_ADMIN, &[PoolAudit]])),
        ("PVEPoolUser", set(&[&[PoolAudit]])),
        (
            "PVEMappingAdmin",
            set(&[MAPPING_ADMIN, MAPPING_USER, &[MappingAudit]]),
        ),
        ("PVEMappingUser", set(&[MAPPING_USER, &[MappingAudit]])),
        ("PVETemplateUser", set(&[&[VmClone, VmAudit]])),
        // Kiln: a lab's instructor runs the lab's VMs (PVEVMAdmin) and its pools (PVEPoolAdmin).
        (
            LAB_INSTRUCTOR,
            set(&[VM_ADMIN, VM_USER, &[VmAudit], POOL_ADMIN, &[PoolAudit]]),
        ),
        // Kiln: a student sees, powers and types into their own lab VM, nothing more.
        (LAB_STUDENT, set(&[&[VmAudit, VmConsole, VmPowerMgmt]])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str) -> PrivSet {
        builtin()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p)
            .unwrap()
    }

    #[test]
    fn builtin_roles_match_proxmox() {
        assert_eq!(
            role("PVEVMUser").to_list(),
            "VM.Audit,VM.Backup,VM.Config.CDROM,VM.Config.Cloudinit,VM.Console,VM.PowerMgmt"
        );
        assert_eq!(
            role("PVEAuditor").to_list(),
            "Datastore.Audit,Mapping.Audit,Pool.Audit,SDN.Audit,Sys.Audit,VM.Audit"
        );
        assert_eq!(role("PVEPoolAdmin").to_list(), "Pool.Allocate,Pool.Audit");
        assert_eq!(
            role("PVEUserAdmin").to_list(),
            "Group.Allocate,Realm.AllocateUser,User.Modify"
        );
        let admin = role("PVEAdmin");
        for root_only in [
            PermissionsModify,
            SysModify,
            SysPowerMgmt,
            RealmAllocate,
            SysIncoming,
            SysAccessNetwork,
        ] {
            assert!(!admin.contains(root_only), "PVEAdmin has {root_only}");
        }
        assert!(admin.contains(VmAllocate) && admin.contains(UserModify));
        assert_eq!(role(ADMINISTRATOR), PrivSet::all());
        assert!(role(NO_ACCESS).is_empty());
        assert!(role("PVEVMAdmin").contains_all(role("PVEVMUser")));
        assert_eq!(
            role(LAB_STUDENT).to_list(),
            "VM.Audit,VM.Console,VM.PowerMgmt"
        );
        let instructor = role(LAB_INSTRUCTOR);
        assert!(instructor.contains_all(role("PVEVMAdmin").union(role("PVEPoolAdmin"))));
        assert!(!instructor.contains(PermissionsModify) && !instructor.contains(UserModify));
    }
}
