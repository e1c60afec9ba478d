//! `/nodes/{node}/qemu/{vmid}/migrate`: where a VM may go, and moving it there (task
//! `qmigrate`, stoppable with `DELETE /nodes/{node}/tasks/{upid}`).

use axum::extract::{Path, State};
use kiln_api_types::{MigrateNotAllowed, MigratePreconditions, MigrateRequest};

use super::error::{ok, ApiError, ApiResult};
use super::params::Body;
use super::qemu::find_vm;
use crate::auth::{authorize, AuthUser, Privilege};
use crate::state::AppState;
use crate::vms::migrate::{self, MigrationPlan, DEFAULT_DOWNTIME_MS};
use crate::vms::{observe, Observed};

/// Longest downtime budget accepted, ms.
const MAX_DOWNTIME_MS: u64 = 60_000;

async fn node_names(app: &AppState) -> Result<Vec<String>, ApiError> {
    Ok(app.db.nodes().await?.into_iter().map(|n| n.name).collect())
}

/// `GET /api2/json/nodes/{node}/qemu/{vmid}/migrate`.
pub async fn preconditions(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
) -> ApiResult<MigratePreconditions> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &format!("/vms/{}", vm.vmid), Privilege::VmAudit)?;
    let running = observe(&app, &vm).is_active();
    let (allowed, not_allowed) = migrate::candidates(&app, &vm, running, &node_names(&app).await?);
    Ok(ok(MigratePreconditions {
        running,
        allowed_nodes: allowed,
        not_allowed_nodes: not_allowed
            .into_iter()
            .map(|(n, reason)| (n, MigrateNotAllowed { reason }))
            .collect(),
    }))
}

/// `POST /api2/json/nodes/{node}/qemu/{vmid}/migrate`: returns the task's UPID.
pub async fn migrate(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
    Body(req): Body<MigrateRequest>,
) -> ApiResult<String> {
    let vm = find_vm(&app, &node, &vmid).await?;
    authorize(&user, &format!("/vms/{}", vm.vmid), Privilege::VmMigrate)?;
    let target = req.target.trim().to_string();
    if target.is_empty() {
        return Err(ApiError::param("target", "name the node to migrate to"));
    }
    if app.db.node(&target).await?.is_none() {
        return Err(ApiError::param(
            "target",
            format!("there is no node '{target}' in the cluster"),
        ));
    }
    let downtime_ms = req.migration_downtime.unwrap_or(DEFAULT_DOWNTIME_MS);
    if !(1..=MAX_DOWNTIME_MS).contains(&downtime_ms) {
        return Err(ApiError::param(
            "migration_downtime",
            format!("must be between 1 and {MAX_DOWNTIME_MS} ms"),
        ));
    }
    // Proxmox gives bwlimit in KiB/s; the transport caps whole MiB/s.
    let bwlimit_mib_s = match req.bwlimit {
        None | Some(0) => None,
        Some(kib) if kib < 1024 => {
            return Err(ApiError::param(
                "bwlimit",
                "at least 1024 KiB/s (1 MiB/s), or 0 for no cap",
            ))
        }
        Some(kib) => Some(kib / 1024),
    };
    let guard = app.vm_locks.lock(vm.vmid, "qmigrate")?;
    let running = match observe(&app, &vm) {
        Observed::Unknown => {
            return Err(ApiError::Unavailable(format!(
                "node {node} is offline, so the state of VM {} is unknown; start kiln-node there",
                vm.vmid
            )))
        }
        seen => seen.is_active(),
    };
    let online = match req.online {
        None => running,
        Some(1) => true,
        Some(0) => false,
        Some(_) => return Err(ApiError::param("online", "must be 0 or 1")),
    };
    if online && !running {
        return Err(ApiError::param(
            "online",
            format!(
                "VM {} is not running; migrate it offline (online=0)",
                vm.vmid
            ),
        ));
    }
    if !online && running {
        return Err(ApiError::Conflict(format!(
            "VM {} is running; migrate it online (online=1) or stop it first",
            vm.vmid
        )));
    }
    if let Some(reason) = migrate::target_problem(&app, &vm, running, &target) {
        return Err(ApiError::param("target", reason));
    }
    let plan = MigrationPlan {
        target,
        online,
        bwlimit_mib_s,
        downtime_ms,
    };
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "qmigrate",
            &vm.vmid.to_string(),
            &user.auth_id(),
            guard,
            move |log| migrate::run(task_app, vm, plan, log),
        )
        .await?;
    Ok(ok(upid))
}
