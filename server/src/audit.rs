//! The audit log: every state-changing API call that reaches the API (after authentication
//! and the CSRF check) is recorded with who made it, what it targeted (method and path),
//! its result (HTTP status) and the client address. Bodies and query strings are never
//! recorded, so passwords and token secrets cannot end up in it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::AuthUser;
use crate::db::{unix_now, AuditRecord};
use crate::state::AppState;

/// Middleware: run the request, then record it if it could change state.
pub async fn record(State(app): State<AppState>, req: Request, next: Next) -> Response {
    if req.method().is_safe() || !req.uri().path().starts_with("/api2/") {
        return next.run(req).await;
    }
    let userid = req
        .extensions()
        .get::<AuthUser>()
        .map(AuthUser::auth_id)
        .unwrap_or_default();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let res = next.run(req).await;
    let entry = AuditRecord {
        id: 0,
        time: unix_now(),
        userid,
        method,
        path,
        status: res.status().as_u16(),
        client,
    };
    // Written before the answer goes out, so that the log is never behind what a caller saw.
    if let Err(e) = app.db.append_audit(&entry).await {
        tracing::error!("cannot write the audit log: {e}");
    }
    res
}
