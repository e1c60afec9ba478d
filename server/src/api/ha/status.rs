//! `/cluster/ha/status/...`, node maintenance, and `hastate` in the cluster resources.

use axum::extract::{Path, State};
use kiln_api_types::ha::HaStatusEntry;
use kiln_api_types::{ClusterResource, NodeState};
use serde::Deserialize;

use super::can_read;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{pve_bool, Body};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::ha::state::HaState;
use crate::state::AppState;

/// Body of `POST /api2/kiln/nodes/{node}/maintenance`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// 1: enter maintenance, 0: leave it.
    #[serde(default, deserialize_with = "pve_bool")]
    pub enable: Option<bool>,
}

/// `POST /api2/kiln/nodes/{node}/maintenance` (Kiln extension; Proxmox's
/// `ha-manager crm-command node-maintenance enable|disable`): HA moves the node's resources
/// away and places nothing there until it leaves maintenance.
pub async fn maintenance(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
    Body(req): Body<MaintenanceRequest>,
) -> ApiResult<()> {
    authorize(&user, &format!("/nodes/{node}"), Privilege::SysModify)?;
    if app.db.node(&node).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "no node '{node}' in the cluster"
        )));
    }
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

fn lease_left(app: &AppState, node: &str) -> Option<u64> {
    app.nodes.get(node).lease.and_then(|l| l.remaining_ms)
}

/// `GET /cluster/ha/status/current`: quorum, manager, every node's lease and every
/// resource's state, as Proxmox's list.
pub async fn status_current(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<HaStatusEntry>> {
    can_read(&user)?;
    let blank = |id: String, kind: &str, status: String| HaStatusEntry {
        id,
        kind: kind.into(),
        node: None,
        status,
        sid: None,
        state: None,
        request_state: None,
        reason: None,
        max_restart: None,
        max_relocate: None,
        lease_remaining_ms: None,
        quorate: None,
    };
    let mut out = vec![
        HaStatusEntry {
            quorate: Some(1),
            ..blank("quorum".into(), "quorum", "OK".into())
        },
        blank(
            "master".into(),
            "master",
            "kiln-server (the HA manager runs in the console server)".into(),
        ),
    ];
    let maintenance = app.db.ha_maintenance_nodes().await?;
    for n in app.db.nodes().await? {
        let state = app.nodes.get(&n.name).state(app.nodes.timeout());
        let left = lease_left(&app, &n.name);
        let status = match (state, left) {
            (NodeState::Online, _) if maintenance.contains(&n.name) => "maintenance mode".into(),
            (NodeState::Online, Some(ms)) if ms > 0 => format!("active (lease {} ms left)", ms),
            (NodeState::Online, _) => "waiting for a lease".into(),
            _ if app.nodes.lease_surely_expired(&n.name) => {
                "offline, lease expired (fenced)".into()
            }
            _ => "offline, lease may still run (fencing)".into(),
        };
        out.push(HaStatusEntry {
            node: Some(n.name.clone()),
            lease_remaining_ms: left,
            ..blank(format!("lrm:{}", n.name), "lrm", status)
        });
    }
    let services = app.db.ha_services().await?;
    let vms = app.db.vms().await?;
    for r in app.db.ha_resources().await? {
        let svc = services.iter().find(|s| s.sid == r.sid);
        let node = vms
            .iter()
            .find(|v| v.vmid == r.vmid)
            .map(|v| v.node.clone());
        let state = svc.map_or("queued".to_owned(), |s| s.state.clone());
        out.push(HaStatusEntry {
            node,
            sid: Some(r.sid.clone()),
            state: Some(state.clone()),
            request_state: Some(r.state.clone()),
            reason: svc.and_then(|s| s.reason.clone()),
            max_restart: Some(r.max_restart),
            max_relocate: Some(r.max_relocate),
            ..blank(format!("service:{}", r.sid), "service", state)
        });
    }
    Ok(ok(out))
}

/// `GET /cluster/ha/status/manager_status`: the manager's full state.
pub async fn manager_status(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<serde_json::Value> {
    can_read(&user)?;
    let policy = app.nodes.lease_policy();
    let mut node_status = serde_json::Map::new();
    let mut lrm_status = serde_json::Map::new();
    let maintenance = app.db.ha_maintenance_nodes().await?;
    for n in app.db.nodes().await? {
        let online = app.nodes.get(&n.name).state(app.nodes.timeout()) == NodeState::Online;
        let word = if online && maintenance.contains(&n.name) {
            "maintenance"
        } else if online {
            "online"
        } else if app.nodes.lease_surely_expired(&n.name) {
            "fenced"
        } else {
            "fence"
        };
        node_status.insert(n.name.clone(), word.into());
        let rt = app.nodes.get(&n.name);
        lrm_status.insert(
            n.name.clone(),
            serde_json::json!({
                "lease_remaining_ms": rt.lease.and_then(|l| l.remaining_ms),
                "guarded_vms": rt.lease.map(|l| l.guarded_vms),
                "last_answer_ms_ago": rt.last_seen.map(|t| t.elapsed().as_millis() as u64),
            }),
        );
    }
    let mut service_status = serde_json::Map::new();
    for s in app.db.ha_services().await? {
        service_status.insert(
            s.sid.clone(),
            serde_json::json!({
                "state": s.state,
                "node": s.node,
                "target": s.target,
                "restarts": s.restarts,
                "relocates": s.relocates,
                "reason": s.reason,
            }),
        );
    }
    Ok(ok(serde_json::json!({
        "manager_status": {
            "master_node": "kiln-server",
            "node_status": node_status,
            "service_status": service_status,
            "lease_ms": policy.lease.as_millis() as u64,
            "lease_margin_ms": policy.margin.as_millis() as u64,
        },
        "lrm_status": lrm_status,
        "quorum": { "quorate": "1" },
    })))
}

/// Set `hastate` on the VMs of `resources` that are HA resources.
pub async fn annotate(app: &AppState, resources: &mut [ClusterResource]) -> Result<(), ApiError> {
    let ha = app.db.ha_resources().await?;
    if ha.is_empty() {
        return Ok(());
    }
    let services = app.db.ha_services().await?;
    for r in resources.iter_mut().filter(|r| r.kind == "qemu") {
        let Some(vmid) = r.vmid else { continue };
        if let Some(res) = ha.iter().find(|h| h.vmid == vmid) {
            let state = services
                .iter()
                .find(|s| s.sid == res.sid)
                .and_then(|s| s.state.parse::<HaState>().ok())
                .map_or("queued", HaState::as_str);
            r.hastate = Some(state.into());
        }
    }
    Ok(())
}
