//! Pool quotas: how much of a pool's limits its VMs use, and the checks on create, adding
//! members and start. A pool's limits count the VMs of its child pools too (a lab's pool
//! bounds the whole lab; each student's pool bounds the student).
//!
//! Serialization points (so that two concurrent requests cannot both squeeze under a limit):
//! membership changes (create in a pool, adding VMs) hold the access store's write lock
//! ([`super::AccessStore::lock`]) from the count to the commit; starts hold the cluster's
//! placement lock (`AppState::placement`) from the check until the VM is recorded as
//! running, and a VM counts as running as soon as its start asked for it (`desired`).

use kiln_api_types::access::PoolUsage;

use super::acl::{AccessControl, Quota};
use crate::db::{DbError, VmRecord};
use crate::state::AppState;
use crate::vms::{observe, Observed};

/// A quota would be exceeded; the message says which and by how much.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuotaError {
    /// Too many VMs.
    #[error("pool {pool}: it holds {used} of at most {max} VMs, so {adding} more do not fit; remove a VM from the pool or raise its max-vms")]
    Vms {
        /// Pool id.
        pool: String,
        /// VMs in the pool now.
        used: u32,
        /// The limit.
        max: u32,
        /// VMs to add.
        adding: u32,
    },
    /// Running VMs added to the pool would exceed a running limit.
    #[error("pool {pool}: the running VMs to add use {need} {what} but only {free} of {max} are free; stop them first or raise the pool's {limit}")]
    AddingRunning {
        /// Pool id.
        pool: String,
        /// `vCPUs` or `MiB of memory`.
        what: &'static str,
        /// What the added VMs use.
        need: u64,
        /// What is free.
        free: u64,
        /// The limit.
        max: u64,
        /// The limit's parameter name.
        limit: &'static str,
    },
    /// Too many running vCPUs.
    #[error("pool {pool}: starting VM {vmid} needs {need} vCPUs but only {free} of {max} are free (short by {short}); stop another VM of the pool or raise its max-vcpus")]
    Vcpus {
        /// Pool id.
        pool: String,
        /// The VM to start.
        vmid: u32,
        /// Its vCPUs.
        need: u32,
        /// vCPUs not used by running VMs of the pool.
        free: u32,
        /// The limit.
        max: u32,
        /// `need - free`.
        short: u32,
    },
    /// Too much running memory.
    #[error("pool {pool}: starting VM {vmid} needs {need} MiB of memory but only {free} of {max} MiB are free (short by {short} MiB); stop another VM of the pool or raise its max-memory")]
    Memory {
        /// Pool id.
        pool: String,
        /// The VM to start.
        vmid: u32,
        /// Its memory (MiB).
        need: u64,
        /// MiB not used by running VMs of the pool.
        free: u64,
        /// The limit (MiB).
        max: u64,
        /// `need - free`.
        short: u64,
    },
}

/// May running VMs using `vcpus` and `memory_mib` join pool `pool`, whose running VMs use
/// `running`? (Stopped VMs add nothing until they start.)
pub fn check_adding_running(
    pool: &str,
    quota: &Quota,
    running: &PoolUsage,
    vcpus: u32,
    memory_mib: u64,
) -> Result<(), QuotaError> {
    if let Some(max) = quota.max_vcpus {
        let free = max.saturating_sub(running.running_vcpus);
        if vcpus > free {
            return Err(QuotaError::AddingRunning {
                pool: pool.to_owned(),
                what: "vCPUs",
                need: u64::from(vcpus),
                free: u64::from(free),
                max: u64::from(max),
                limit: "max-vcpus",
            });
        }
    }
    if let Some(max) = quota.max_memory_mib {
        let free = max.saturating_sub(running.running_memory_mib);
        if memory_mib > free {
            return Err(QuotaError::AddingRunning {
                pool: pool.to_owned(),
                what: "MiB of memory",
                need: memory_mib,
                free,
                max,
                limit: "max-memory",
            });
        }
    }
    Ok(())
}

/// May `adding` more VMs join pool `pool` that holds `used`?
pub fn check_members(pool: &str, quota: &Quota, used: u32, adding: u32) -> Result<(), QuotaError> {
    match quota.max_vms {
        Some(max) if used + adding > max => Err(QuotaError::Vms {
            pool: pool.to_owned(),
            used,
            max,
            adding,
        }),
        _ => Ok(()),
    }
}

/// May VM `vm` start, given what the pool's other running VMs use?
pub fn check_start(
    pool: &str,
    quota: &Quota,
    running: &PoolUsage,
    vm: &VmRecord,
) -> Result<(), QuotaError> {
    if let Some(max) = quota.max_vcpus {
        let free = max.saturating_sub(running.running_vcpus);
        if vm.cores > free {
            return Err(QuotaError::Vcpus {
                pool: pool.to_owned(),
                vmid: vm.vmid,
                need: vm.cores,
                free,
                max,
                short: vm.cores - free,
            });
        }
    }
    if let Some(max) = quota.max_memory_mib {
        let free = max.saturating_sub(running.running_memory_mib);
        let need = u64::from(vm.memory_mib);
        if need > free {
            return Err(QuotaError::Memory {
                pool: pool.to_owned(),
                vmid: vm.vmid,
                need,
                free,
                max,
                short: need - free,
            });
        }
    }
    Ok(())
}

/// Whether a VM counts against its pool's running limits: it runs (or is paused), its start
/// has been asked for, or its node is offline while it should run (it may still run there).
pub fn counts_as_running(app: &AppState, vm: &VmRecord) -> bool {
    match observe(app, vm) {
        Observed::Unknown => vm.desired == "running",
        seen => seen.is_active() || vm.desired == "running",
    }
}

/// The number of VMs pool `pool` holds, its children's included.
pub fn members(ac: &AccessControl, pool: &str) -> u32 {
    let own = ac.pool(pool).map_or(0, |p| p.vms.len());
    let children: usize = ac
        .children_of(pool)
        .filter_map(|c| ac.pool(c))
        .map(|p| p.vms.len())
        .sum();
    (own + children) as u32
}

/// The pool of a VM and that pool's parent: the pools whose limits it counts against.
pub fn pools_of(ac: &AccessControl, vmid: u32) -> Vec<String> {
    let Some(pool) = ac.pool_of(vmid) else {
        return vec![];
    };
    let mut out = vec![pool.to_owned()];
    if let Some(parent) = ac.pool(pool).and_then(|p| p.parent.clone()) {
        out.push(parent);
    }
    out
}

/// What the members of `pool` (and of its children) use, not counting VM `except`.
pub async fn usage(app: &AppState, pool: &str, except: Option<u32>) -> Result<PoolUsage, DbError> {
    let access = app.access.current();
    if access.pool(pool).is_none() {
        return Ok(PoolUsage::default());
    }
    let mut out = PoolUsage {
        vms: members(&access, pool),
        ..Default::default()
    };
    for vm in app.db.vms().await? {
        if !access.in_pool_tree(pool, vm.vmid) || Some(vm.vmid) == except {
            continue;
        }
        if counts_as_running(app, &vm) {
            out.running_vcpus += vm.cores;
            out.running_memory_mib += u64::from(vm.memory_mib);
        }
    }
    Ok(out)
}

/// Refuse to start `vm` if its pool's (or that pool's parent's) running limits would be
/// exceeded. Call it under the placement lock for the final word (a check before, without the
/// lock, only fails early).
pub async fn check_vm_start(app: &AppState, vm: &VmRecord) -> Result<(), StartRefused> {
    let access = app.access.current();
    for pool in pools_of(&access, vm.vmid) {
        let Some(info) = access.pool(&pool) else {
            continue;
        };
        if info.quota.max_vcpus.is_none() && info.quota.max_memory_mib.is_none() {
            continue;
        }
        let running = usage(app, &pool, Some(vm.vmid)).await?;
        check_start(&pool, &info.quota, &running, vm)?;
    }
    Ok(())
}

/// Why a new VM could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum InsertRefused {
    /// The pool named for it does not exist.
    #[error("pool '{0}' does not exist; GET /api2/json/pools lists them")]
    UnknownPool(String),
    /// The pool is full.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Store a new VM, in `pool` if given: the pool's VM limit is checked and the VM added
/// under the access write lock, so concurrent creations and clones cannot overfill it.
/// `Ok(false)`: the VM id is taken (nothing changed).
pub async fn insert_vm(
    app: &AppState,
    vm: &VmRecord,
    pool: Option<&str>,
) -> Result<bool, InsertRefused> {
    let Some(pool) = pool else {
        return Ok(app.db.insert_vm(vm).await?);
    };
    let lock = app.access.lock().await;
    let ac = app.access.current();
    let info = ac
        .pool(pool)
        .ok_or_else(|| InsertRefused::UnknownPool(pool.to_owned()))?;
    check_members(pool, &info.quota, members(&ac, pool), 1)?;
    if let Some(parent) = &info.parent {
        if let Some(p) = ac.pool(parent) {
            check_members(parent, &p.quota, members(&ac, parent), 1)?;
        }
    }
    let inserted = app.db.insert_vm_in_pool(vm, pool).await?;
    app.access.reload(&app.db, &lock).await?;
    Ok(inserted)
}

/// Remove a VM record that a failed operation created, with its ACL entries and pool
/// membership (the VM never ran).
pub async fn remove_vm(app: &AppState, vmid: u32) -> Result<(), DbError> {
    app.db.delete_vm(vmid).await?;
    let lock = app.access.lock().await;
    app.db.remove_vm_access(vmid).await?;
    app.access.reload(&app.db, &lock).await
}

/// Why a start was refused by its pool.
#[derive(Debug, thiserror::Error)]
pub enum StartRefused {
    /// A quota.
    #[error(transparent)]
    Quota(#[from] QuotaError),
    /// The database failed while counting.
    #[error(transparent)]
    Db(#[from] DbError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(cores: u32, memory_mib: u32) -> VmRecord {
        VmRecord {
            vmid: 105,
            name: "x".into(),
            node: "n1".into(),
            cores,
            memory_mib,
            image: "kiln-test-guest".into(),
            args: None,
            description: String::new(),
            onboot: false,
            desired: "stopped".into(),
            template: false,
        }
    }

    #[test]
    fn start_checks_say_which_quota_and_by_how_much() {
        let quota = Quota {
            max_vms: None,
            max_vcpus: Some(4),
            max_memory_mib: Some(512),
        };
        let running = PoolUsage {
            vms: 3,
            running_vcpus: 3,
            running_memory_mib: 256,
        };
        assert_eq!(check_start("lab1", &quota, &running, &vm(1, 256)), Ok(()));
        let err = check_start("lab1", &quota, &running, &vm(2, 64)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool lab1: starting VM 105 needs 2 vCPUs but only 1 of 4 are free (short by 1); stop another VM of the pool or raise its max-vcpus"
        );
        let err = check_start("lab1", &quota, &running, &vm(1, 300)).unwrap_err();
        assert!(
            matches!(
                err,
                QuotaError::Memory {
                    short: 44,
                    free: 256,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            check_start("lab1", &Quota::default(), &running, &vm(64, 1 << 20)),
            Ok(())
        );
    }

    #[test]
    fn running_vms_may_join_only_within_the_running_limits() {
        let quota = Quota {
            max_vms: None,
            max_vcpus: Some(4),
            max_memory_mib: Some(512),
        };
        let running = PoolUsage {
            vms: 2,
            running_vcpus: 3,
            running_memory_mib: 128,
        };
        assert_eq!(
            check_adding_running("lab", &quota, &running, 1, 384),
            Ok(())
        );
        let err = check_adding_running("lab", &quota, &running, 2, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool lab: the running VMs to add use 2 vCPUs but only 1 of 4 are free; stop them first or raise the pool's max-vcpus"
        );
        assert!(check_adding_running("lab", &quota, &running, 0, 385).is_err());
    }

    #[test]
    fn member_checks_count_what_is_added() {
        let quota = Quota {
            max_vms: Some(3),
            ..Default::default()
        };
        assert_eq!(check_members("lab1", &quota, 2, 1), Ok(()));
        let err = check_members("lab1", &quota, 2, 2).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("pool lab1: it holds 2 of at most 3 VMs, so 2 more do not fit"));
    }
}
