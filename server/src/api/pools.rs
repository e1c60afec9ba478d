//! `/pools`: pools of VMs, their members and (Kiln extension) their quotas.

use axum::extract::{Path, State};
use kiln_api_types::access::{
    NoParams, PoolCreate, PoolDetail, PoolEntry, PoolMember, PoolQuota, PoolUpdate,
};

use super::access::{flag, split_list, text};
use super::error::{ok, ApiError, ApiResult};
use super::params::{Body, Query};
use crate::access::ids::check_name;
use crate::access::pools::{
    check_adding_running, check_members, counts_as_running, members, usage,
};
use crate::access::{PoolInfo, Privilege, Quota};
use crate::auth::{authorize, AuthUser};
use crate::db::PoolRecord;
use crate::state::AppState;
use crate::vms::observe;

const MIB: u64 = 1024 * 1024;

fn quota_wire(q: &Quota) -> PoolQuota {
    PoolQuota {
        max_vms: q.max_vms,
        max_vcpus: q.max_vcpus,
        max_memory: q.max_memory_mib,
    }
}

/// 0 means "no limit", as Proxmox's limits.
fn limit<T: PartialEq + Default>(v: T) -> Option<T> {
    Some(v).filter(|v| *v != T::default())
}

/// Quotas are set by whoever holds `Pool.Allocate` on `/pool` (above the pool), so that an
/// instructor who administers a pool cannot raise its limits.
fn may_set_quota(user: &AuthUser) -> Result<(), ApiError> {
    authorize(user, "/pool", Privilege::PoolAllocate).map_err(|d| {
        ApiError::NotPermitted(format!(
            "changing a pool's quota needs Pool.Allocate on /pool (above the pool): {d}"
        ))
    })?;
    Ok(())
}

fn known(user: &AuthUser, poolid: &str) -> Result<PoolInfo, ApiError> {
    check_name("pool", poolid)?;
    user.access.pool(poolid).cloned().ok_or_else(|| {
        ApiError::NotFound(format!(
            "pool '{poolid}' does not exist; GET /api2/json/pools lists them"
        ))
    })
}

/// `GET /api2/json/pools`: the pools where the caller holds `Pool.Audit`.
pub async fn list(State(app): State<AppState>, user: AuthUser) -> ApiResult<Vec<PoolEntry>> {
    let mut out = Vec::new();
    for (id, p) in user.access.pools() {
        if authorize(&user, &format!("/pool/{id}"), Privilege::PoolAudit).is_err() {
            continue;
        }
        out.push(PoolEntry {
            poolid: id.clone(),
            comment: p.comment.clone(),
            parent: p.parent.clone(),
            quota: quota_wire(&p.quota),
            usage: usage(&app, id, None).await?,
        });
    }
    Ok(ok(out))
}

/// `POST /api2/json/pools`.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<PoolCreate>,
) -> ApiResult<()> {
    check_name("pool", &req.poolid)?;
    let record = PoolRecord {
        poolid: req.poolid.clone(),
        comment: text(req.comment, "comment", 1024)?.unwrap_or_default(),
        max_vms: req.max_vms.and_then(limit),
        max_vcpus: req.max_vcpus.and_then(limit),
        max_memory_mib: req.max_memory.and_then(limit),
        parent: None,
    };
    if record.max_vms.is_some() || record.max_vcpus.is_some() || record.max_memory_mib.is_some() {
        may_set_quota(&user)?;
    }
    let lock = app.access.lock().await;
    if !app.db.insert_pool(&record).await? {
        return Err(ApiError::Conflict(format!(
            "pool {} already exists",
            req.poolid
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "created pool {}", req.poolid);
    Ok(ok(()))
}

/// `GET /api2/json/pools/{poolid}`: its quota, use and the members the caller may see.
pub async fn read(
    State(app): State<AppState>,
    user: AuthUser,
    Path(poolid): Path<String>,
) -> ApiResult<PoolDetail> {
    let pool = known(&user, &poolid)?;
    let mut members = Vec::new();
    for vm in app.db.vms().await? {
        if !pool.vms.contains(&vm.vmid)
            || authorize(&user, &format!("/vms/{}", vm.vmid), Privilege::VmAudit).is_err()
        {
            continue;
        }
        members.push(PoolMember {
            id: format!("qemu/{}", vm.vmid),
            kind: "qemu".into(),
            vmid: vm.vmid,
            node: vm.node.clone(),
            name: vm.name.clone(),
            status: observe(&app, &vm).state_word().into(),
            maxcpu: vm.cores,
            maxmem: u64::from(vm.memory_mib) * MIB,
        });
    }
    Ok(ok(PoolDetail {
        comment: pool.comment.clone(),
        quota: quota_wire(&pool.quota),
        usage: usage(&app, &poolid, None).await?,
        members,
    }))
}

fn vmids_param(list: &str) -> Result<Vec<u32>, ApiError> {
    split_list(list)
        .iter()
        .map(|s| {
            s.parse::<u32>()
                .map_err(|_| ApiError::param("vms", format!("'{s}' is not a VM id")))
        })
        .collect()
}

/// `PUT /api2/json/pools/{poolid}`: comment, members (`vms`, with `delete=1` to remove;
/// `VM.Allocate` on each VM needed), and quotas (`Pool.Allocate` on `/pool` needed).
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Path(poolid): Path<String>,
    Body(req): Body<PoolUpdate>,
) -> ApiResult<()> {
    known(&user, &poolid)?;
    let delete = flag(req.delete, "delete", false)?;
    let allow_move = flag(req.allow_move, "allow-move", false)?;
    let comment = text(req.comment, "comment", 1024)?;
    let vmids = match &req.vms {
        Some(list) => vmids_param(list)?,
        None => vec![],
    };
    for vmid in &vmids {
        authorize(&user, &format!("/vms/{vmid}"), Privilege::VmAllocate)?;
        if app.db.vm(*vmid).await?.is_none() {
            return Err(ApiError::param("vms", format!("VM {vmid} does not exist")));
        }
    }
    let quota_change = req.max_vms.is_some() || req.max_vcpus.is_some() || req.max_memory.is_some();
    if quota_change {
        may_set_quota(&user)?;
    }
    let lock = app.access.lock().await;
    let ac = app.access.current();
    let pool = ac
        .pool(&poolid)
        .cloned()
        .ok_or_else(|| ApiError::NotFound(format!("pool '{poolid}' does not exist")))?;
    let mut record = PoolRecord {
        poolid: poolid.clone(),
        comment: comment.unwrap_or(pool.comment.clone()),
        max_vms: pool.quota.max_vms,
        max_vcpus: pool.quota.max_vcpus,
        max_memory_mib: pool.quota.max_memory_mib,
        parent: pool.parent.clone(),
    };
    if let Some(v) = req.max_vms {
        record.max_vms = limit(v);
    }
    if let Some(v) = req.max_vcpus {
        record.max_vcpus = limit(v);
    }
    if let Some(v) = req.max_memory {
        record.max_memory_mib = limit(v);
    }
    if delete {
        app.db.remove_pool_members(&poolid, &vmids).await?;
    } else if !vmids.is_empty() {
        let mut adding = 0;
        for vmid in &vmids {
            match ac.pool_of(*vmid) {
                Some(p) if p == poolid => {}
                Some(other) if !allow_move => {
                    return Err(ApiError::Conflict(format!(
                        "VM {vmid} is in pool {other}; set allow-move=1 to move it here"
                    )))
                }
                _ => adding += 1,
            }
        }
        let quota = Quota {
            max_vms: record.max_vms,
            max_vcpus: record.max_vcpus,
            max_memory_mib: record.max_memory_mib,
        };
        check_members(&poolid, &quota, members(&ac, &poolid), adding)?;
        let parent = pool
            .parent
            .as_deref()
            .and_then(|p| ac.pool(p).map(|info| (p, info.quota)));
        if let Some((parent, quota)) = parent {
            check_members(parent, &quota, members(&ac, parent), adding)?;
        }
        // Running VMs bring their use along: checked under the placement lock, so that no
        // start squeezes in between.
        let _placing = app.placement.lock().await;
        let (mut vcpus, mut memory) = (0, 0);
        for vm in app.db.vms().await? {
            let joining = vmids.contains(&vm.vmid) && ac.pool_of(vm.vmid) != Some(poolid.as_str());
            if joining && counts_as_running(&app, &vm) {
                vcpus += vm.cores;
                memory += u64::from(vm.memory_mib);
            }
        }
        let running = usage(&app, &poolid, None).await?;
        check_adding_running(&poolid, &quota, &running, vcpus, memory)?;
        if let Some((parent, quota)) = parent {
            let running = usage(&app, parent, None).await?;
            check_adding_running(parent, &quota, &running, vcpus, memory)?;
        }
        app.db.add_pool_members(&poolid, &vmids).await?;
    }
    app.db.update_pool(&record).await?;
    app.access.reload(&app.db, &lock).await?;
    app.changes.notify();
    tracing::info!(by = %user.auth_id(), "changed pool {poolid}");
    Ok(ok(()))
}

/// `DELETE /api2/json/pools/{poolid}`: an empty pool, with its ACL entries.
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path(poolid): Path<String>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    known(&user, &poolid)?;
    if app.db.lab(&poolid).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "pool {poolid} holds lab {poolid}; tear the lab down first (DELETE /api2/kiln/labs/{poolid})"
        )));
    }
    let lock = app.access.lock().await;
    let ac = app.access.current();
    let children: Vec<&String> = ac.children_of(&poolid).collect();
    if !children.is_empty() {
        return Err(ApiError::Conflict(format!(
            "pool {poolid} has child pools ({}); remove them first",
            children
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if let Some(p) = ac.pool(&poolid) {
        if !p.vms.is_empty() {
            return Err(ApiError::Conflict(format!(
                "pool {poolid} is not empty ({} VMs); remove its VMs from it first",
                p.vms.len()
            )));
        }
    }
    app.db.delete_pool(&poolid).await?;
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed pool {poolid}");
    Ok(ok(()))
}
