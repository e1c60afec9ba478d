//! The REST API: Proxmox-compatible under `/api2/json`, Kiln's own under `/api2/kiln`.

pub mod access;
mod audit;
mod cluster;
mod console;
pub mod error;
mod events;
mod guard;
mod ha;
pub mod join;
mod labs;
mod migrate;
mod nodes;
pub mod params;
mod pools;
mod qemu;
pub mod routes;
mod tasks;
mod templates;
mod version;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::Router;

use crate::state::AppState;
use error::ApiError;

/// Every API route (see [`routes::routes`]). Each route's declared privilege check runs
/// before its handler; handlers add finer checks and filter listings; the CSRF token is
/// enforced by the auth middleware.
pub fn router() -> Router<AppState> {
    routes::build()
        .route("/api2/{*rest}", axum::routing::any(unknown_path))
        .layer(DefaultBodyLimit::max(params::MAX_BODY))
}

async fn unknown_path(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no API method at {}", uri.path()))
}
