//! `/v1/vms…`: VM lifecycle on this node, and `/v1/images`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kiln_node_client::wire::{HaRequest, ImageInfo, ShutdownRequest, VmRuntime, VmSpec};

use super::{ApiError, AppState};
use crate::vms::spec::check_vmid;

/// Guest shutdown timeout when a shutdown or reboot comes without a body.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// A VM id from the path, checked.
pub(super) fn vmid(raw: &str) -> Result<u32, ApiError> {
    let vmid: u32 = raw.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("VM id {raw:?} is not a number"),
        )
    })?;
    check_vmid(vmid).map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, m))?;
    Ok(vmid)
}

/// A shutdown timeout from an optional [`ShutdownRequest`] body.
fn shutdown_timeout(body: &Bytes) -> Result<Duration, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(DEFAULT_SHUTDOWN_TIMEOUT);
    }
    let request: ShutdownRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a shutdown request ({e}); send {{\"timeout_secs\": N}}"),
        )
    })?;
    Ok(Duration::from_secs(request.timeout_secs.into()))
}

/// `GET /v1/vms`.
pub async fn list(State(state): State<AppState>) -> Json<Vec<VmRuntime>> {
    Json(state.vms.list())
}

/// `GET /v1/vms/{vmid}`.
pub async fn get(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<VmRuntime>, ApiError> {
    Ok(Json(state.vms.get(vmid(&raw)?)?))
}

/// `POST /v1/vms/{vmid}/start` with a [`VmSpec`].
pub async fn start(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    spec: Result<Json<VmSpec>, JsonRejection>,
) -> Result<Json<VmRuntime>, ApiError> {
    let vmid = vmid(&raw)?;
    let Json(spec) = spec.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not a VM spec: {}", e.body_text()),
        )
    })?;
    Ok(Json(state.vms.start(vmid, spec).await?))
}

/// `PUT /v1/vms/{vmid}/ha` with a [`HaRequest`]: (un)mark the VM as HA-managed.
pub async fn set_ha(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Result<Json<HaRequest>, JsonRejection>,
) -> Result<Json<VmRuntime>, ApiError> {
    let vmid = vmid(&raw)?;
    let Json(request) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not an HA request ({}); send {{\"ha\": true}} or {{\"ha\": false}}",
                e.body_text()
            ),
        )
    })?;
    Ok(Json(state.vms.set_ha(vmid, request.ha).await?))
}

/// `POST /v1/vms/{vmid}/stop`.
pub async fn stop(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<VmRuntime>, ApiError> {
    Ok(Json(state.vms.stop(vmid(&raw)?).await?))
}

/// `POST /v1/vms/{vmid}/shutdown` with a [`ShutdownRequest`].
pub async fn shutdown(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<VmRuntime>, ApiError> {
    let vmid = vmid(&raw)?;
    let timeout = shutdown_timeout(&body)?;
    Ok(Json(state.vms.shutdown(vmid, timeout).await?))
}

/// `POST /v1/vms/{vmid}/reboot` with an optional [`ShutdownRequest`].
pub async fn reboot(
    State(state): State<AppState>,
    Path(raw): Path<String>,
    body: Bytes,
) -> Result<Json<VmRuntime>, ApiError> {
    let vmid = vmid(&raw)?;
    let timeout = shutdown_timeout(&body)?;
    Ok(Json(state.vms.reboot(vmid, timeout).await?))
}

/// `POST /v1/vms/{vmid}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<VmRuntime>, ApiError> {
    Ok(Json(state.vms.set_paused(vmid(&raw)?, true).await?))
}

/// `POST /v1/vms/{vmid}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<Json<VmRuntime>, ApiError> {
    Ok(Json(state.vms.set_paused(vmid(&raw)?, false).await?))
}

/// `DELETE /v1/vms/{vmid}`.
pub async fn delete(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.vms.delete(vmid(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/images`.
pub async fn images(State(state): State<AppState>) -> Result<Json<Vec<ImageInfo>>, ApiError> {
    Ok(Json(state.vms.images().await?))
}
