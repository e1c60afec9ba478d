//! `GET /v1/status`: the node's facts; `POST /v1/status`: the heartbeat, which also renews the
//! node's HA lease (see [`crate::lease`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use kiln_node_client::wire::{HeartbeatAnswer, HeartbeatRequest, LeaseState, NodeFacts};

use super::{ApiError, AppState};

/// The latest sampled facts with the VMs as they are now; never touches `/proc` itself.
pub async fn status(State(state): State<AppState>) -> Json<NodeFacts> {
    let mut facts = state.facts.borrow().clone();
    facts.vms = state.vms.list();
    Json(facts)
}

/// The heartbeat: note the offered lease grant, extend the lease by the confirmed one, hand a
/// moved deadline to the HA-managed VMMs, and answer the facts with the lease.
pub async fn heartbeat(
    State(state): State<AppState>,
    body: Result<Json<HeartbeatRequest>, JsonRejection>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a heartbeat request: {}", e.body_text()),
        )
    })?;
    if let Some(grant) = request.lease {
        if state.vms.lease().on_grant(grant) {
            // In the background: a slow VMM must not delay the answer (and so the next grant).
            let vms = state.vms.clone();
            tokio::spawn(async move { vms.renew_leases().await });
        }
    }
    let Json(facts) = status(State(state.clone())).await;
    Ok(Json(HeartbeatAnswer {
        facts,
        lease: LeaseState {
            remaining_ms: state.vms.lease().remaining().map(|r| r.as_millis() as u64),
            guarded_vms: state.vms.guarded_vms(),
        },
    }))
}
