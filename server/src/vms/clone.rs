//! Clones: a new VM from an existing one, usually a template (Proxmox's `qmclone`).
//!
//! A clone happens in two steps. [`reserve`] takes the locks (the source's shared `clone`
//! lock, so that many clones of one template run side by side; the new id's exclusive one)
//! and stores the new VM's configuration, in its pool under the pool's quota, so that the id
//! and the quota are taken at once and refusals reach the caller before any task starts.
//! [`Reserved::complete`] then copies what a VM owns beyond its configuration. Kiln VMs have
//! no disks yet (a VM boots from an image of its node's image store), so there is nothing to
//! copy today; disk copies go into [`copy_disks`], and whatever fails there removes the new VM
//! again, so a failed clone leaves everything as it was.

use crate::access::pools::{self, InsertRefused};
use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::VmLockGuard;

/// Longest VM name (see [`crate::vms::check_name`]).
const MAX_NAME: usize = 64;

/// Why a clone could not be reserved.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// The source or the new id is locked by another operation.
    #[error("{0}")]
    Locked(String),
    /// The new id is taken.
    #[error("VM {0} already exists; GET /api2/json/cluster/nextid gives a free id")]
    Taken(u32),
    /// The pool refused the new VM (unknown pool, quota) or the database failed.
    #[error(transparent)]
    Insert(#[from] InsertRefused),
}

/// Proxmox's default name of a clone, `Copy-of-VM-<name>`, cut to a valid VM name.
pub fn default_name(source: &str) -> String {
    let mut name = format!("Copy-of-VM-{source}");
    name.truncate(MAX_NAME);
    name.trim_end_matches(['-', '.']).to_owned()
}

/// The configuration of a clone of `src`: the same hardware, image, arguments and options,
/// stopped, never a template.
pub fn config_of(
    src: &VmRecord,
    newid: u32,
    name: String,
    node: String,
    description: Option<String>,
) -> VmRecord {
    VmRecord {
        vmid: newid,
        name,
        node,
        cores: src.cores,
        memory_mib: src.memory_mib,
        image: src.image.clone(),
        args: src.args.clone(),
        description: description.unwrap_or_else(|| src.description.clone()),
        onboot: src.onboot,
        desired: "stopped".into(),
        template: false,
    }
}

/// A clone whose configuration is stored and whose locks are held.
#[derive(Debug)]
pub struct Reserved {
    /// The source.
    pub source: VmRecord,
    /// The new VM.
    pub vm: VmRecord,
    _source_lock: VmLockGuard,
    _new_lock: VmLockGuard,
}

/// Lock `source` (shared) and `vm.vmid` (exclusive) and store `vm` in `pool`.
pub async fn reserve(
    app: &AppState,
    source: VmRecord,
    vm: VmRecord,
    pool: Option<&str>,
) -> Result<Reserved, CloneError> {
    let source_lock = app
        .vm_locks
        .lock_shared(source.vmid, "clone")
        .map_err(|e| CloneError::Locked(e.to_string()))?;
    let new_lock = app
        .vm_locks
        .lock(vm.vmid, "clone")
        .map_err(|e| CloneError::Locked(e.to_string()))?;
    if !pools::insert_vm(app, &vm, pool).await? {
        return Err(CloneError::Taken(vm.vmid));
    }
    app.changes.notify();
    Ok(Reserved {
        source,
        vm,
        _source_lock: source_lock,
        _new_lock: new_lock,
    })
}

impl Reserved {
    /// Copy what the source owns beyond its configuration, then release the locks. On failure
    /// the new VM is removed again and the reason returned.
    pub async fn complete(self, app: &AppState, log: &TaskLogger) -> Result<VmRecord, String> {
        let (src, vm) = (&self.source, &self.vm);
        log.log(format!(
            "cloning VM {} ({}) to VM {} ({}) on node {}: {} vCPU(s), {} MiB, image {}",
            src.vmid, src.name, vm.vmid, vm.name, vm.node, vm.cores, vm.memory_mib, vm.image
        ))
        .await;
        match copy_disks(src, vm, log).await {
            Ok(()) => {
                log.log(format!("VM {} created from VM {}", vm.vmid, src.vmid))
                    .await;
                Ok(self.vm)
            }
            Err(reason) => {
                let undo = match pools::remove_vm(app, vm.vmid).await {
                    Ok(()) => format!("VM {} was removed again", vm.vmid),
                    Err(e) => format!("removing VM {} failed too: {e}", vm.vmid),
                };
                app.changes.notify();
                Err(format!(
                    "cloning VM {} to VM {} failed: {reason}; {undo}",
                    src.vmid, vm.vmid
                ))
            }
        }
    }
}

/// Copy the source's disks to the new VM (a clone, or a lab VM being reset). Kiln VMs have
/// none yet: the image they boot from belongs to the node's image store and is shared, not
/// copied.
pub async fn copy_disks(_src: &VmRecord, _new: &VmRecord, log: &TaskLogger) -> Result<(), String> {
    log.log("no disks to copy: the VM boots from its node's image store")
        .await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vms::check_name;

    #[test]
    fn default_names_follow_proxmox_and_stay_valid() {
        assert_eq!(default_name("web"), "Copy-of-VM-web");
        let long = default_name(&format!("{}-x", "a".repeat(52)));
        assert!(
            long.len() <= MAX_NAME && check_name(&long).is_ok(),
            "{long}"
        );
        let cut_at_dash = default_name(&format!("{}-b", "a".repeat(52)));
        assert!(check_name(&cut_at_dash).is_ok(), "{cut_at_dash}");
    }

    #[test]
    fn a_clone_copies_the_hardware_and_is_never_a_template() {
        let src = VmRecord {
            vmid: 900,
            name: "tpl".into(),
            node: "n1".into(),
            cores: 2,
            memory_mib: 96,
            image: "kiln-test-guest".into(),
            args: Some("quiet".into()),
            description: "base".into(),
            onboot: true,
            desired: "stopped".into(),
            template: true,
        };
        let vm = config_of(&src, 101, "s1".into(), "n2".into(), None);
        assert_eq!((vm.cores, vm.memory_mib, vm.node.as_str()), (2, 96, "n2"));
        assert_eq!(
            (vm.args.as_deref(), vm.description.as_str()),
            (Some("quiet"), "base")
        );
        assert!(!vm.template && vm.desired == "stopped");
    }
}
