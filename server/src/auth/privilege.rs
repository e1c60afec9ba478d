//! Privileges and the one authorization check every handler calls.
//!
//! Today the cluster has one account, the superuser `root@kiln`, which holds every privilege;
//! any other user holds none. Users, roles and ACLs with Proxmox's semantics replace the body
//! of [`authorize`] without changing its callers.

use std::fmt;

/// A privilege with Proxmox's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Read node and cluster state (`Sys.Audit`).
    SysAudit,
    /// Change cluster configuration, e.g. create join tokens (`Sys.Modify`).
    SysModify,
    /// See a VM and its state (`VM.Audit`).
    VmAudit,
    /// Open a VM's console (`VM.Console`).
    VmConsole,
    /// Start, stop, pause a VM (`VM.PowerMgmt`).
    VmPowerMgmt,
    /// Create or remove VMs (`VM.Allocate`).
    VmAllocate,
    /// Change a VM's CPU, memory and boot options (`VM.Config.Options`).
    VmConfig,
    /// Move a VM to another node (`VM.Migrate`).
    VmMigrate,
}

impl fmt::Display for Privilege {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Privilege::SysAudit => "Sys.Audit",
            Privilege::SysModify => "Sys.Modify",
            Privilege::VmAudit => "VM.Audit",
            Privilege::VmConsole => "VM.Console",
            Privilege::VmPowerMgmt => "VM.PowerMgmt",
            Privilege::VmAllocate => "VM.Allocate",
            Privilege::VmConfig => "VM.Config.Options",
            Privilege::VmMigrate => "VM.Migrate",
        })
    }
}

/// The superuser.
pub const ROOT: &str = "root@kiln";

/// Does `userid` hold `privilege` on ACL path `path`?
pub fn authorize(userid: &str, path: &str, privilege: Privilege) -> Result<(), Denied> {
    if userid == ROOT {
        Ok(())
    } else {
        Err(Denied {
            path: path.to_owned(),
            privilege,
        })
    }
}

/// A failed permission check, worded as Proxmox words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission check failed ({path}, {privilege})")]
pub struct Denied {
    /// The ACL path.
    pub path: String,
    /// The missing privilege.
    pub privilege: Privilege,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_every_privilege_and_others_none() {
        assert_eq!(authorize(ROOT, "/", Privilege::SysModify), Ok(()));
        let denied = authorize("alice@kiln", "/nodes/n1", Privilege::SysAudit).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "permission check failed (/nodes/n1, Sys.Audit)"
        );
    }
}
