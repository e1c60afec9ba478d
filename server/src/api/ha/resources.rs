//! `/cluster/ha/resources...`: VMs under HA.

use axum::extract::{Path, State};
use kiln_api_types::ha::HaResource;
use kiln_api_types::NodeState;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{can_change, can_read, check_comment, sid_param};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{pve_bool, Body};
use crate::auth::AuthUser;
use crate::db::HaResourceRecord;
use crate::ha::state::Requested;
use crate::state::AppState;

const MAX_COUNT: u32 = 10;

fn digest_of(r: &HaResourceRecord) -> String {
    let text = format!(
        "{}\n{}\n{}\n{}\n{}",
        r.state, r.max_restart, r.max_relocate, r.failback, r.comment
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..20])
}

fn resource_of(r: &HaResourceRecord) -> HaResource {
    HaResource {
        sid: r.sid.clone(),
        kind: "vm".into(),
        state: r.state.clone(),
        max_restart: r.max_restart,
        max_relocate: r.max_relocate,
        failback: u8::from(r.failback),
        comment: r.comment.clone(),
        digest: digest_of(r),
    }
}

fn check_count(name: &str, v: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match v {
        None => Ok(default),
        Some(n) if n <= MAX_COUNT => Ok(n),
        Some(n) => Err(ApiError::param(
            name,
            format!("{n} is above the maximum of {MAX_COUNT}"),
        )),
    }
}

fn check_state(s: Option<&str>) -> Result<Option<Requested>, ApiError> {
    s.map(|s| {
        s.parse::<Requested>()
            .map_err(|m| ApiError::param("state", m))
    })
    .transpose()
}

async fn find_resource(app: &AppState, raw: &str) -> Result<HaResourceRecord, ApiError> {
    let (sid, _) = sid_param(raw)?;
    app.db.ha_resource(&sid).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "{sid} is not an HA resource; add it with POST /cluster/ha/resources"
        ))
    })
}

/// `GET /cluster/ha/resources`.
pub async fn list_resources(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<HaResource>> {
    can_read(&user)?;
    Ok(ok(app
        .db
        .ha_resources()
        .await?
        .iter()
        .map(resource_of)
        .collect()))
}

/// `GET /cluster/ha/resources/{sid}`.
pub async fn get_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
) -> ApiResult<HaResource> {
    can_read(&user)?;
    Ok(ok(resource_of(&find_resource(&app, &sid).await?)))
}

/// Body of `POST /cluster/ha/resources`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateResource {
    /// `vm:<vmid>` (or the bare id).
    pub sid: String,
    /// Requested state (default `started`).
    pub state: Option<String>,
    /// Default 1.
    pub max_restart: Option<u32>,
    /// Default 1.
    pub max_relocate: Option<u32>,
    /// Default 1.
    #[serde(default, deserialize_with = "pve_bool")]
    pub failback: Option<bool>,
    /// Free text.
    pub comment: Option<String>,
    /// `vm` (the only type).
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// `POST /cluster/ha/resources`: put a VM under HA.
pub async fn create_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<CreateResource>,
) -> ApiResult<()> {
    can_change(&user)?;
    if req.kind.as_deref().is_some_and(|k| k != "vm") {
        return Err(ApiError::param("type", "only 'vm' resources exist in Kiln"));
    }
    let (sid, vmid) = sid_param(&req.sid)?;
    match app.db.vm(vmid).await? {
        None => {
            return Err(ApiError::param(
                "sid",
                format!("VM {vmid} does not exist; create it first"),
            ))
        }
        Some(vm) if vm.template => {
            return Err(ApiError::param(
                "sid",
                format!(
                "VM {vmid} is a template, which never runs; clone it and put the clone under HA"
            ),
            ))
        }
        Some(_) => {}
    }
    let record = HaResourceRecord {
        sid: sid.clone(),
        vmid,
        state: check_state(req.state.as_deref())?
            .unwrap_or(Requested::Started)
            .as_str()
            .into(),
        max_restart: check_count("max_restart", req.max_restart, 1)?,
        max_relocate: check_count("max_relocate", req.max_relocate, 1)?,
        failback: req.failback.unwrap_or(true),
        comment: check_comment(req.comment)?.unwrap_or_default(),
    };
    if !app.db.insert_ha_resource(&record).await? {
        return Err(ApiError::Conflict(format!(
            "{sid} is already an HA resource; change it with PUT /cluster/ha/resources/{sid}"
        )));
    }
    app.changes.notify();
    Ok(ok(()))
}

/// Body of `PUT /cluster/ha/resources/{sid}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateResource {
    /// Requested state.
    pub state: Option<String>,
    /// Restarts.
    pub max_restart: Option<u32>,
    /// Relocations.
    pub max_relocate: Option<u32>,
    /// Failback.
    #[serde(default, deserialize_with = "pve_bool")]
    pub failback: Option<bool>,
    /// Free text.
    pub comment: Option<String>,
    /// Settings to reset to their defaults (comma-separated).
    pub delete: Option<String>,
    /// Refuse the change if the resource changed since this digest was read.
    pub digest: Option<String>,
}

/// `PUT /cluster/ha/resources/{sid}`.
pub async fn update_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<UpdateResource>,
) -> ApiResult<()> {
    can_change(&user)?;
    let mut r = find_resource(&app, &sid).await?;
    if let Some(d) = &req.digest {
        if *d != digest_of(&r) {
            return Err(ApiError::Conflict(format!(
                "{} was changed by someone else since you read it; read it again",
                r.sid
            )));
        }
    }
    for field in req
        .delete
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
    {
        match field {
            "max_restart" => r.max_restart = 1,
            "max_relocate" => r.max_relocate = 1,
            "failback" => r.failback = true,
            "comment" => r.comment.clear(),
            other => {
                return Err(ApiError::param(
                    "delete",
                    format!(
                    "'{other}' cannot be reset; use max_restart, max_relocate, failback or comment"
                ),
                ))
            }
        }
    }
    if let Some(s) = check_state(req.state.as_deref())? {
        r.state = s.as_str().into();
    }
    r.max_restart = check_count("max_restart", req.max_restart, r.max_restart)?;
    r.max_relocate = check_count("max_relocate", req.max_relocate, r.max_relocate)?;
    if let Some(f) = req.failback {
        r.failback = f;
    }
    if let Some(c) = check_comment(req.comment)? {
        r.comment = c;
    }
    app.db.update_ha_resource(&r).await?;
    app.changes.notify();
    Ok(ok(()))
}

/// `DELETE /cluster/ha/resources/{sid}`: the VM leaves HA (it keeps running, unguarded).
pub async fn delete_resource(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
) -> ApiResult<()> {
    can_change(&user)?;
    let r = find_resource(&app, &sid).await?;
    app.db.delete_ha_resource(&r.sid).await?;
    if let Some(vm) = app.db.vm(r.vmid).await? {
        if crate::vms::observe(&app, &vm).is_active() {
            crate::ha::actions::unguard(&app, vm.vmid, &vm.node).await;
        }
    }
    app.changes.notify();
    Ok(ok(()))
}

/// Body of `POST /cluster/ha/resources/{sid}/migrate` and `/relocate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    /// Target node.
    pub node: String,
}

async fn move_resource(
    app: AppState,
    user: AuthUser,
    sid: String,
    req: MoveRequest,
    live: bool,
) -> ApiResult<()> {
    can_change(&user)?;
    let r = find_resource(&app, &sid).await?;
    if app.db.node(&req.node).await?.is_none() {
        return Err(ApiError::param(
            "node",
            format!("no node '{}' in the cluster", req.node),
        ));
    }
    if app.nodes.get(&req.node).state(app.nodes.timeout()) != NodeState::Online {
        return Err(ApiError::Unavailable(format!(
            "node {} is offline; choose an online node",
            req.node
        )));
    }
    crate::ha::moves::request_move(&app, &r.sid, &req.node, live)
        .await
        .map_err(ApiError::Conflict)?;
    Ok(ok(()))
}

/// `POST /cluster/ha/resources/{sid}/migrate`.
pub async fn migrate(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<()> {
    move_resource(app, user, sid, req, true).await
}

/// `POST /cluster/ha/resources/{sid}/relocate`.
pub async fn relocate(
    State(app): State<AppState>,
    user: AuthUser,
    Path(sid): Path<String>,
    Body(req): Body<MoveRequest>,
) -> ApiResult<()> {
    move_resource(app, user, sid, req, false).await
}
