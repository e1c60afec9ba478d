//! Virtual machines: validation, per-VM operation locks, the observed state of a VM, placement,
//! the lifecycle operations (as tasks), clones and the reconcile loop.

pub mod clone;
pub mod handover;
pub mod lifecycle;
pub mod migrate;
pub mod onboot;
pub mod placement;
pub mod reconcile;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kiln_api_types::NodeState;
use kiln_node_client::wire::{VmPowerState, VmRuntime};

use crate::api::error::ApiError;
use crate::db::VmRecord;
use crate::state::AppState;

/// Lowest VM id (as Proxmox).
pub const MIN_VMID: u32 = 100;
/// Highest VM id (as Proxmox).
pub const MAX_VMID: u32 = 999_999_999;

/// Check a VM id.
pub fn check_vmid(vmid: u32) -> Result<u32, ApiError> {
    if (MIN_VMID..=MAX_VMID).contains(&vmid) {
        Ok(vmid)
    } else {
        Err(ApiError::param(
            "vmid",
            format!("VM ids range from {MIN_VMID} to {MAX_VMID}"),
        ))
    }
}

/// Check a VM name: a DNS name of labels (letters, digits, '-'), at most 64 characters.
pub fn check_name(name: &str) -> Result<(), ApiError> {
    let ok_label = |l: &str| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() <= 64 && name.split('.').all(ok_label) {
        Ok(())
    } else {
        Err(ApiError::param(
            "name",
            "use a DNS name: letters, digits and '-' (not at the ends), dots between labels, at most 64 characters",
        ))
    }
}

/// Operations in progress on each VM: one exclusive operation, or any number of shared ones
/// of the same kind (clones of one template run side by side, as Proxmox's shared lock).
#[derive(Debug, Default, Clone)]
pub struct VmLocks(Arc<Mutex<HashMap<u32, Held>>>);

/// Who holds a VM's lock.
#[derive(Debug, Clone, Copy)]
struct Held {
    op: &'static str,
    /// Holders of a shared lock; 0 for an exclusive one.
    shared: u32,
}

/// Holds a VM's lock until dropped.
#[derive(Debug)]
pub struct VmLockGuard {
    locks: VmLocks,
    vmid: u32,
}

impl VmLocks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Held>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn busy(vmid: u32, holder: &str) -> ApiError {
        ApiError::Conflict(format!(
            "VM {vmid} is locked ({holder} in progress); wait for that task to finish"
        ))
    }

    /// Take VM `vmid`'s lock for operation `op`, or say who holds it.
    pub fn lock(&self, vmid: u32, op: &'static str) -> Result<VmLockGuard, ApiError> {
        let mut map = self.map();
        if let Some(held) = map.get(&vmid) {
            return Err(Self::busy(vmid, held.op));
        }
        map.insert(vmid, Held { op, shared: 0 });
        Ok(VmLockGuard {
            locks: self.clone(),
            vmid,
        })
    }

    /// Take VM `vmid`'s lock for operation `op` together with other holders of the same
    /// shared operation (e.g. several clones of one template); refused while an exclusive
    /// operation or another shared one holds it.
    pub fn lock_shared(&self, vmid: u32, op: &'static str) -> Result<VmLockGuard, ApiError> {
        let mut map = self.map();
        match map.get_mut(&vmid) {
            Some(held) if held.shared > 0 && held.op == op => held.shared += 1,
            Some(held) => return Err(Self::busy(vmid, held.op)),
            None => {
                map.insert(vmid, Held { op, shared: 1 });
            }
        }
        Ok(VmLockGuard {
            locks: self.clone(),
            vmid,
        })
    }

    /// The operation holding `vmid`, if any.
    pub fn holder(&self, vmid: u32) -> Option<&'static str> {
        self.map().get(&vmid).map(|h| h.op)
    }
}

impl Drop for VmLockGuard {
    fn drop(&mut self) {
        let mut map = self.locks.map();
        if let Some(held) = map.get_mut(&self.vmid) {
            if held.shared > 1 {
                held.shared -= 1;
                return;
            }
        }
        map.remove(&self.vmid);
    }
}

/// What the cluster observes of a VM right now.
#[derive(Debug, Clone, PartialEq)]
pub enum Observed {
    /// Its node is offline: nobody knows.
    Unknown,
    /// Its node does not run it (never started, or forgotten).
    Absent,
    /// Its node reports it.
    Reported(VmRuntime),
}

impl Observed {
    /// `running`, `paused`, `stopped` or `unknown`.
    pub fn state_word(&self) -> &'static str {
        match self {
            Observed::Unknown => "unknown",
            Observed::Absent => "stopped",
            Observed::Reported(rt) => match rt.state {
                VmPowerState::Running => "running",
                VmPowerState::Paused => "paused",
                VmPowerState::Stopped => "stopped",
            },
        }
    }

    /// Whether a `kiln-vmm` runs for it (running or paused).
    pub fn is_active(&self) -> bool {
        matches!(self, Observed::Reported(rt) if rt.state != VmPowerState::Stopped)
    }

    /// The runtime, when reported.
    pub fn runtime(&self) -> Option<&VmRuntime> {
        match self {
            Observed::Reported(rt) => Some(rt),
            _ => None,
        }
    }
}

/// Observe VM `vm` on its node from the latest heartbeat.
pub fn observe(app: &AppState, vm: &VmRecord) -> Observed {
    let rt = app.nodes.get(&vm.node);
    if rt.state(app.nodes.timeout()) != NodeState::Online {
        return Observed::Unknown;
    }
    rt.facts
        .as_ref()
        .and_then(|f| f.vms.iter().find(|v| v.vmid == vm.vmid))
        .map_or(Observed::Absent, |v| Observed::Reported(v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_names() {
        for good in ["web1", "db-2", "a.b.c", "X"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a-", "a..b", "a b", "ä", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn vm_ids_follow_proxmox_range() {
        assert!(check_vmid(99).is_err());
        assert_eq!(check_vmid(100).unwrap(), 100);
        assert!(check_vmid(1_000_000_000).is_err());
    }

    #[test]
    fn a_vm_lock_is_exclusive_until_dropped() {
        let locks = VmLocks::default();
        let g = locks.lock(101, "qmstart").unwrap();
        let err = locks.lock(101, "qmstop").unwrap_err();
        assert!(err.to_string().contains("qmstart in progress"), "{err}");
        assert!(locks.lock(102, "qmstop").is_ok());
        drop(g);
        assert!(locks.lock(101, "qmstop").is_ok());
    }

    #[test]
    fn shared_locks_of_one_kind_coexist_and_keep_exclusive_ones_out() {
        let locks = VmLocks::default();
        let a = locks.lock_shared(900, "clone").unwrap();
        let b = locks.lock_shared(900, "clone").unwrap();
        assert!(locks.lock(900, "qmdestroy").is_err());
        assert!(locks.lock_shared(900, "other").is_err());
        drop(a);
        assert_eq!(locks.holder(900), Some("clone"));
        assert!(locks.lock(900, "qmdestroy").is_err());
        drop(b);
        assert_eq!(locks.holder(900), None);
        let x = locks.lock(900, "qmstart").unwrap();
        assert!(locks.lock_shared(900, "clone").is_err());
        drop(x);
    }
}
