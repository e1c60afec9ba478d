//! `/api2/kiln/nodes/{node}/maintenance` (Kiln extension; Proxmox's
//! `ha-manager crm-command node-maintenance enable|disable`): HA moves the node's resources
//! away and places nothing there until it leaves maintenance.

use axum::extract::{Path, State};
use kiln_api_types::ha::NodeMaintenance;
use serde::Deserialize;

use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{pve_bool, Body};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::state::AppState;

/// Body of `POST /api2/kiln/nodes/{node}/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// 1: enter maintenance, 0: leave it.
    #[serde(default, deserialize_with = "pve_bool")]
    pub enable: Option<bool>,
}

async fn known_node(app: &AppState, node: &str) -> Result<(), ApiError> {
    match app.db.node(node).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!(
            "no node '{node}' in the cluster"
        ))),
    }
}

/// `POST /api2/kiln/nodes/{node}/maintenance` (`Sys.Modify` on `/nodes/{node}`).
pub async fn maintenance(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
    Body(req): Body<MaintenanceRequest>,
) -> ApiResult<()> {
    authorize(&user, &format!("/nodes/{node}"), Privilege::SysModify)?;
    known_node(&app, &node).await?;
    let enable = req
        .enable
        .ok_or_else(|| ApiError::param("enable", "property is missing and it is not optional"))?;
    app.db.set_ha_maintenance(&node, enable).await?;
    tracing::info!(
        node = %node,
        "node {} maintenance",
        if enable { "enters" } else { "leaves" }
    );
    app.changes.notify();
    Ok(ok(()))
}

/// `GET /api2/kiln/nodes/{node}/maintenance` (`Sys.Audit` on `/nodes/{node}`): whether the
/// node is in maintenance, and since when.
pub async fn maintenance_state(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
) -> ApiResult<NodeMaintenance> {
    authorize(&user, &format!("/nodes/{node}"), Privilege::SysAudit)?;
    known_node(&app, &node).await?;
    let since = app.db.ha_maintenance_since(&node).await?;
    Ok(ok(NodeMaintenance {
        node,
        enable: u8::from(since.is_some()),
        since,
    }))
}
