//! `/cluster/ha/status/...` and `hastate` in the cluster resources.

use axum::extract::State;
use kiln_api_types::ha::{
    HaManagerStatus, HaStatusEntry, LrmStatus, ManagerStatus, Quorum, ServiceStatus,
};
use kiln_api_types::{ClusterResource, NodeState};

use super::can_read;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::auth::AuthUser;
use crate::ha::state::HaState;
use crate::state::AppState;

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
) -> ApiResult<HaManagerStatus> {
    can_read(&user)?;
    let policy = app.nodes.lease_policy();
    let mut node_status = std::collections::BTreeMap::new();
    let mut lrm_status = std::collections::BTreeMap::new();
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
        node_status.insert(n.name.clone(), word.to_owned());
        let rt = app.nodes.get(&n.name);
        lrm_status.insert(
            n.name.clone(),
            LrmStatus {
                lease_remaining_ms: rt.lease.and_then(|l| l.remaining_ms),
                guarded_vms: rt.lease.map(|l| l.guarded_vms),
                last_answer_ms_ago: rt.last_seen.map(|t| t.elapsed().as_millis() as u64),
            },
        );
    }
    let service_status = app
        .db
        .ha_services()
        .await?
        .into_iter()
        .map(|s| {
            (
                s.sid,
                ServiceStatus {
                    state: s.state,
                    node: s.node,
                    target: s.target,
                    restarts: s.restarts,
                    relocates: s.relocates,
                    reason: s.reason,
                },
            )
        })
        .collect();
    Ok(ok(HaManagerStatus {
        manager_status: ManagerStatus {
            master_node: "kiln-server".into(),
            node_status,
            service_status,
            lease_ms: policy.lease.as_millis() as u64,
            lease_margin_ms: policy.margin.as_millis() as u64,
        },
        lrm_status,
        quorum: Quorum::default(),
    }))
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
