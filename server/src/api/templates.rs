//! `/nodes/{node}/qemu/{vmid}/template` and `/clone`: templates and clones, as Proxmox.

use axum::extract::{Path, State};
use kiln_api_types::access::NoParams;
use kiln_api_types::VmCloneRequest;

use super::access::{flag, text};
use super::error::{ok, ApiError, ApiResult};
use super::nodes::known_node;
use super::params::Body;
use super::qemu::ensure_stopped;
use super::qemu::{check_image_on_node, check_size, find_vm, known_pool};
use crate::auth::AuthUser;
use crate::state::AppState;
use crate::vms::clone::{self, CloneError};
use crate::vms::{check_name, check_vmid};

impl From<CloneError> for ApiError {
    fn from(e: CloneError) -> Self {
        match e {
            CloneError::Locked(m) => ApiError::Conflict(m),
            e @ CloneError::Taken(_) => ApiError::param("newid", e.to_string()),
            CloneError::Insert(i) => i.into(),
        }
    }
}

/// `POST /api2/json/nodes/{node}/qemu/{vmid}/template`: make a stopped VM a template (task
/// `qmtemplate`). A template is cloned, never started; there is no way back.
pub async fn template(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
    Body(_): Body<NoParams>,
) -> ApiResult<String> {
    // The route checked VM.Allocate on /vms/{vmid}.
    let vm = find_vm(&app, &node, &vmid).await?;
    if vm.template {
        return Err(ApiError::Conflict(format!(
            "VM {} is already a template",
            vm.vmid
        )));
    }
    if app
        .db
        .ha_resource(&format!("vm:{}", vm.vmid))
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "VM {id} is an HA resource; remove it from HA first (DELETE /api2/json/cluster/ha/resources/vm:{id})",
            id = vm.vmid
        )));
    }
    let guard = app.vm_locks.lock(vm.vmid, "qmtemplate")?;
    ensure_stopped(&app, &vm, &node)?;
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "qmtemplate",
            &vm.vmid.to_string(),
            &user.auth_id(),
            guard,
            move |log| async move {
                task_app
                    .db
                    .set_vm_template(vm.vmid)
                    .await
                    .map_err(|e| e.to_string())?;
                task_app.changes.notify();
                log.log(format!(
                    "VM {} ({}) is a template now: clone it with POST /api2/json/nodes/{}/qemu/{}/clone",
                    vm.vmid, vm.name, vm.node, vm.vmid
                ))
                .await;
                Ok(())
            },
        )
        .await?;
    Ok(ok(upid))
}

/// `POST /api2/json/nodes/{node}/qemu/{vmid}/clone`: a new VM `newid` with the source's
/// configuration (task `qmclone`), on `target` (default: the source's node), in `pool` if
/// given (its quota applies).
pub async fn clone(
    State(app): State<AppState>,
    user: AuthUser,
    Path((node, vmid)): Path<(String, String)>,
    Body(req): Body<VmCloneRequest>,
) -> ApiResult<String> {
    // The route checked VM.Clone on /vms/{vmid}, and VM.Allocate on /vms/{newid} or on
    // /pool/{pool}.
    let source = find_vm(&app, &node, &vmid).await?;
    let newid = check_vmid(req.newid).map_err(|_| {
        ApiError::param(
            "newid",
            format!(
                "VM ids range from {} to {}",
                crate::vms::MIN_VMID,
                crate::vms::MAX_VMID
            ),
        )
    })?;
    if newid == source.vmid {
        return Err(ApiError::param(
            "newid",
            "the new VM needs an id of its own; GET /api2/json/cluster/nextid gives a free one",
        ));
    }
    let pool = req.pool.as_deref().map(known_pool).transpose()?;
    let target = req.target.clone().unwrap_or_else(|| node.clone());
    let target_rec = known_node(&app, &target).await.map_err(|e| match e {
        ApiError::NotFound(m) => ApiError::param("target", m),
        ApiError::Params(m) => {
            ApiError::param("target", m.into_values().collect::<Vec<_>>().join("; "))
        }
        other => other,
    })?;
    let name = match req.name.clone() {
        Some(n) => {
            check_name(&n)?;
            n
        }
        None => clone::default_name(&source.name),
    };
    let description = text(req.description.clone(), "description", 8192)?;
    flag(req.full, "full", false)?;
    check_size(&app, &target, source.cores, source.memory_mib).map_err(|e| match e {
        ApiError::Params(map) => ApiError::param(
            "target",
            format!(
                "node {target} cannot hold VM {}: {}",
                source.vmid,
                map.into_values().collect::<Vec<_>>().join("; ")
            ),
        ),
        other => other,
    })?;
    check_image_on_node(&app, &target_rec, &source.image, "target").await?;
    let vm = clone::config_of(&source, newid, name, target, description);
    let source_id = source.vmid.to_string();
    let reserved = clone::reserve(&app, source, vm, pool.as_deref()).await?;
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "qmclone",
            &source_id,
            &user.auth_id(),
            (),
            move |log| async move { reserved.complete(&task_app, &log).await.map(|_| ()) },
        )
        .await?;
    Ok(ok(upid))
}
