//! The tasks of a lab: deploy (`labdeploy`), start or stop every VM (`labstart`,
//! `labstop`) and reset one student's VM (`labreset`).

use axum::extract::{Path, State};
use kiln_api_types::access::NoParams;
use kiln_api_types::labs::LabReset;

use super::taught;
use crate::access::ids::Userid;
use crate::access::Privilege;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::nodes::known_node;
use crate::api::params::Body;
use crate::api::qemu::check_image_on_node;
use crate::auth::{authorize, AuthUser};
use crate::labs::{self, deploy, is_instructor, Phase};
use crate::state::AppState;
use crate::vms::{observe, Observed};

fn busy(e: labs::LabBusy) -> ApiError {
    ApiError::Conflict(e.to_string())
}

/// `POST /api2/kiln/labs/{labid}/deploy`: one clone of the template for every student without
/// a VM (task `labdeploy`, with progress).
pub async fn deploy(
    State(app): State<AppState>,
    user: AuthUser,
    Path(labid): Path<String>,
    Body(_): Body<NoParams>,
) -> ApiResult<String> {
    // The route checked Pool.Allocate and VM.Allocate on /pool/{labid}.
    let lab = taught(&app, &labid).await?;
    let template = deploy::template_of(&app, &lab)
        .await
        .map_err(ApiError::Conflict)?;
    authorize(
        &user,
        &format!("/vms/{}", template.vmid),
        Privilege::VmClone,
    )?;
    let node = deploy::node_of(&lab, &template);
    let node_rec = known_node(&app, &node).await?;
    check_image_on_node(&app, &node_rec, &template.image, "node").await?;
    let guard = app.lab_locks.lock(&labid, "labdeploy").map_err(busy)?;
    let task_app = app.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "labdeploy",
            &labid,
            &user.auth_id(),
            guard,
            move |log| deploy::run(task_app, lab, log),
        )
        .await?;
    Ok(ok(upid))
}

/// `POST /api2/kiln/labs/{labid}/status/{action}`: start or stop every VM of the lab (task
/// `labstart` or `labstop`).
pub async fn power(
    State(app): State<AppState>,
    user: AuthUser,
    Path((labid, action)): Path<(String, String)>,
    Body(_): Body<NoParams>,
) -> ApiResult<String> {
    // The route checked VM.PowerMgmt on /pool/{labid}.
    let (kind, start) = match action.as_str() {
        "start" => ("labstart", true),
        "stop" => ("labstop", false),
        other => {
            return Err(ApiError::NotFound(format!(
                "no lab action '{other}'; use start or stop"
            )))
        }
    };
    let lab = taught(&app, &labid).await?;
    let guard = app.lab_locks.lock(&labid, kind).map_err(busy)?;
    let node = labs::task_node(&app, &lab).await;
    let (task_app, task_lab) = (app.clone(), labid.clone());
    let upid = app
        .tasks
        .spawn(&node, kind, &labid, &user.auth_id(), guard, move |log| {
            labs::power::run(task_app, task_lab, start, log)
        })
        .await?;
    Ok(ok(upid))
}

/// `POST /api2/kiln/labs/{labid}/reset`: make a student's VM a fresh clone of the template
/// again (task `labreset`). Students reset their own VM while the lab is open; instructors
/// any student's (`userid`) at any time.
pub async fn reset(
    State(app): State<AppState>,
    user: AuthUser,
    Path(labid): Path<String>,
    Body(req): Body<LabReset>,
) -> ApiResult<String> {
    // The route let through the student itself and the lab's instructors.
    let instructor = is_instructor(&user, &labid);
    let student = match &req.userid {
        Some(u) => Userid::parse(u)?.to_string(),
        None => user.userid.clone(),
    };
    if !instructor && (student != user.userid || user.token.is_some()) {
        return Err(ApiError::NotPermitted(
            "only the student itself or the lab's instructors may reset a lab VM".into(),
        ));
    }
    let not_yours = || {
        ApiError::NotFound(format!(
            "{student} has no VM in lab {labid} (yet); its instructor deploys the lab"
        ))
    };
    let lab = match taught(&app, &labid).await {
        Ok(lab) => lab,
        Err(_) if !instructor => return Err(not_yours()),
        Err(e) => return Err(e),
    };
    let vmid = app
        .db
        .lab_students(&labid)
        .await?
        .into_iter()
        .find(|r| r.userid == student)
        .and_then(|r| r.vmid)
        .ok_or_else(not_yours)?;
    let vm = app.db.vm(vmid).await?.ok_or_else(not_yours)?;
    if !instructor {
        match Phase::now(&lab) {
            Phase::Open => {}
            Phase::Scheduled => {
                return Err(ApiError::Conflict(format!(
                    "lab {labid} opens at {}; reset your VM then",
                    labs::when(lab.starts_at)
                )))
            }
            Phase::Ended => {
                return Err(ApiError::Conflict(format!(
                    "lab {labid} ended at {}",
                    labs::when(lab.ends_at)
                )))
            }
        }
    }
    let template = deploy::template_of(&app, &lab)
        .await
        .map_err(ApiError::Conflict)?;
    let vm_guard = app.vm_locks.lock(vm.vmid, "labreset")?;
    let template_guard = app.vm_locks.lock_shared(template.vmid, "clone")?;
    if observe(&app, &vm) == Observed::Unknown {
        return Err(ApiError::Unavailable(format!(
            "node {} is offline, so VM {} cannot be reset now",
            vm.node, vm.vmid
        )));
    }
    let task_app = app.clone();
    let node = vm.node.clone();
    let upid = app
        .tasks
        .spawn(
            &node,
            "labreset",
            &vm.vmid.to_string(),
            &user.auth_id(),
            (vm_guard, template_guard),
            move |log| labs::reset::run(task_app, vm, template, log),
        )
        .await?;
    Ok(ok(upid))
}
