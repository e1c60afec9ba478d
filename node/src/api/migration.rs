//! `/v1/vms/{vmid}/migrate/…`: live migration between node agents.
//!
//! - `POST …/migrate/receive` (target) with a [`VmSpec`] and `Upgrade: kiln-migration`: the
//!   agent starts an incoming kiln-vmm for the spec, answers `101 Switching Protocols` and
//!   pipes the upgraded mutual-TLS connection to kiln-vmm's migration socket. Refusals (bad
//!   spec 400, VM id exists 409, not enough memory 503) come before anything is started.
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

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use axum::Json;
use hyper_util::rt::TokioIo;
use kiln_node_client::wire::{MigrateSendRequest, MigrationStatus, VmSpec, MIGRATION_UPGRADE};

use super::vms::vmid;
use super::{ApiError, AppState};

/// Largest accepted spec body.
const MAX_SPEC_BYTES: usize = 64 * 1024;

/// `POST /v1/vms/{vmid}/migrate/receive`, upgraded to the migration stream.
pub async fn receive(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let vmid = vmid(&raw)?;
    let wants_upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(MIGRATION_UPGRADE));
    let on_upgrade = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>();
    let Some(on_upgrade) = on_upgrade.filter(|_| wants_upgrade) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("send this request over HTTP/1.1 with `Connection: Upgrade` and `Upgrade: {MIGRATION_UPGRADE}`"),
        ));
    };
    let body = axum::body::to_bytes(request.into_body(), MAX_SPEC_BYTES)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}"),
            )
        })?;
    let spec: VmSpec = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a VM spec: {e}"),
        )
    })?;
    let mem_available = state.facts.borrow().mem_available;
    let mut local = state
        .vms
        .receive_incoming(vmid, spec, mem_available)
        .await?;
    let vms = state.vms.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let mut remote = TokioIo::new(upgraded);
                // Large buffers: memory arrives in 1 MiB frames (tokio's default is 8 KiB).
                let copied = tokio::io::copy_bidirectional_with_sizes(
                    &mut remote,
                    &mut local,
                    crate::vms::MIGRATION_BUFFER,
                    crate::vms::MIGRATION_BUFFER,
                )
                .await;
                match copied {
                    Ok((inbound, outbound)) => tracing::debug!(
                        "VM {vmid}: incoming migration stream done ({inbound} bytes in, {outbound} back)"
                    ),
                    Err(e) => tracing::debug!("VM {vmid}: incoming migration stream ended: {e}"),
                }
            }
            // Dropping `local` makes kiln-vmm give up; the VM is then forgotten here.
            Err(e) => tracing::warn!("VM {vmid}: the migration upgrade failed: {e}"),
        }
        drop(local);
        vms.incoming_ended(vmid).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, MIGRATION_UPGRADE)
        .body(Body::empty())
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
