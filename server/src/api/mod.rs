//! The REST API: Proxmox-compatible under `/api2/json`, Kiln's own under `/api2/kiln`.

mod access;
mod cluster;
mod console;
pub mod error;
mod events;
mod ha;
pub mod join;
mod migrate;
mod nodes;
pub mod params;
mod qemu;
mod tasks;
mod version;

use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;
use error::ApiError;

/// Every API route. Each handler checks authentication (the [`crate::auth::AuthUser`]
/// extractor) and privileges itself; the CSRF token is enforced by the auth middleware.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api2/json/version", get(version::get))
        .route(
            "/api2/json/access/ticket",
            post(access::login).delete(access::logout),
        )
        .route("/api2/json/nodes", get(nodes::list))
        .route("/api2/json/nodes/{node}/status", get(nodes::status))
        .route("/api2/json/nodes/{node}/tasks", get(tasks::list_node))
        .route(
            "/api2/json/nodes/{node}/tasks/{upid}",
            axum::routing::delete(tasks::stop),
        )
        .route(
            "/api2/json/nodes/{node}/tasks/{upid}/status",
            get(tasks::status),
        )
        .route("/api2/json/nodes/{node}/tasks/{upid}/log", get(tasks::log))
        .route("/api2/json/nodes/{node}/images", get(qemu::images))
        .route(
            "/api2/json/nodes/{node}/qemu",
            get(qemu::list).post(qemu::create),
        )
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}",
            axum::routing::delete(qemu::destroy),
        )
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}/config",
            get(qemu::get_config)
                .put(qemu::set_config)
                .post(qemu::set_config),
        )
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}/migrate",
            get(migrate::preconditions).post(migrate::migrate),
        )
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}/status/current",
            get(qemu::status),
        )
        .route(
            "/api2/json/nodes/{node}/qemu/{vmid}/status/{action}",
            post(qemu::action),
        )
        .route("/api2/json/cluster/nextid", get(qemu::next_id))
        .route("/api2/json/cluster/status", get(cluster::status))
        .route("/api2/json/cluster/resources", get(cluster::resources))
        .route("/api2/json/cluster/tasks", get(tasks::list_cluster))
        .route(
            "/api2/json/cluster/ha/resources",
            get(ha::list_resources).post(ha::create_resource),
        )
        .route(
            "/api2/json/cluster/ha/resources/{sid}",
            get(ha::get_resource)
                .put(ha::update_resource)
                .delete(ha::delete_resource),
        )
        .route(
            "/api2/json/cluster/ha/resources/{sid}/migrate",
            post(ha::migrate),
        )
        .route(
            "/api2/json/cluster/ha/resources/{sid}/relocate",
            post(ha::relocate),
        )
        .route(
            "/api2/json/cluster/ha/rules",
            get(ha::list_rules).post(ha::create_rule),
        )
        .route(
            "/api2/json/cluster/ha/rules/{rule}",
            get(ha::get_rule)
                .put(ha::update_rule)
                .delete(ha::delete_rule),
        )
        .route(
            "/api2/json/cluster/ha/status/current",
            get(ha::status_current),
        )
        .route(
            "/api2/json/cluster/ha/status/manager_status",
            get(ha::manager_status),
        )
        .route("/api2/json/cluster/join-tokens", post(join::create_token))
        .route("/api2/kiln/nodes/{node}/maintenance", post(ha::maintenance))
        .route("/api2/kiln/ca", get(join::ca))
        .route("/api2/kiln/join", post(join::join))
        .route("/api2/kiln/events", get(events::stream))
        .route(
            "/api2/kiln/nodes/{node}/qemu/{vmid}/console",
            get(console::console),
        )
        .route("/api2/{*rest}", axum::routing::any(unknown_path))
        .layer(DefaultBodyLimit::max(params::MAX_BODY))
}

async fn unknown_path(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no API method at {}", uri.path()))
}
