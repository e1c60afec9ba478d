//! `/v1/vms/{vmid}/migrate/…`: live migration between node agents.
//!
//! - `POST …/migrate/receive` (target) with a [`VmSpec`]: the agent starts an incoming
//!   kiln-vmm for the spec, listening on a port of its own for the source's kiln-vmm over
//!   mutual TLS, and answers that port and a one-time token ([`MigrateReceiveAnswer`]); the
//!   source's kiln-vmm connects there directly. Refusals (bad spec 400, VM id exists 409, not
//!   enough memory 503) come before anything is started.
//! - `POST …/migrate/send` (source) with a [`MigrateSendRequest`]: migrates the VM to the
//!   target node and answers the final [`MigrationStatus`].
//!   With `await_commit` it answers as soon as the target has the whole VM (phase
//!   `awaiting_commit`, the VM paused here), so the server can record the new owner first.
//!   The handover then goes (the server drives it, see the server's `vms::migrate`):
//! - `POST …/migrate/handover` (source): the paused VM is handed over; kiln-vmm no longer
//!   resumes it by itself (`handed_over`). The server records the new owner after this.
//! - `POST …/migrate/commit` (target): runs the VM waiting here; answers once it runs.
//! - `POST …/migrate/finish` (source): the copy here ends; answers the final status.
//! - `POST …/migrate/takeback` (source): the target lost the VM before running it; it
//!   resumes here.
//! - `POST …/migrate/cancel`: cancels an outgoing migration before its handover, or
//!   discards an incoming VM waiting for its commit.
//! - `GET …/migrate`: the current or last migration's status (rounds, bytes, phase).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kiln_node_client::wire::{MigrateReceiveAnswer, MigrateSendRequest, MigrationStatus, VmSpec};

use super::vms::vmid;
use super::{ApiError, AppState};

/// `POST /v1/vms/{vmid}/migrate/receive` with a [`VmSpec`].
pub async fn receive(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Json<VmSpec>, JsonRejection>,
) -> Result<Json<MigrateReceiveAnswer>, ApiError> {
    let vmid = vmid(&raw)?;
    let Json(spec) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a VM spec: {}", e.body_text()),
        )
    })?;
    let mem_available = state.facts.borrow().mem_available;
    Ok(Json(
        state
            .vms
            .receive_incoming(vmid, spec, mem_available)
            .await?,
    ))
}

/// `POST /v1/vms/{vmid}/migrate/send` with a [`MigrateSendRequest`].
pub async fn send(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Json<MigrateSendRequest>, JsonRejection>,
) -> Result<Json<MigrationStatus>, ApiError> {
    let vmid = vmid(&raw)?;
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not a migration request: {}; send {{\"target_node\", \"target_api_url\", \"downtime_ms\", \"bwlimit_mib_s\"}}",
                e.body_text()
            ),
        )
    })?;
    Ok(Json(
        state
            .vms
            .migrate_send(vmid, request, &state.identity)
            .await?,
    ))
}

/// `POST /v1/vms/{vmid}/migrate/cancel`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_cancel(vmid(&raw)?).await?))
}

/// `POST /v1/vms/{vmid}/migrate/handover` (source).
pub async fn handover(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_handover(vmid(&raw)?).await?))
}

/// `POST /v1/vms/{vmid}/migrate/commit` (target).
pub async fn commit(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_commit(vmid(&raw)?).await?))
}

/// `POST /v1/vms/{vmid}/migrate/finish` (source).
pub async fn finish(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_finish(vmid(&raw)?).await?))
}

/// `POST /v1/vms/{vmid}/migrate/takeback` (source).
pub async fn takeback(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_takeback(vmid(&raw)?).await?))
}

/// `GET /v1/vms/{vmid}/migrate`.
pub async fn status(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<MigrationStatus>, ApiError> {
    Ok(Json(state.vms.migrate_status(vmid(&raw)?).await?))
}
