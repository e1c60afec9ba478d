//! `GET /api2/kiln/audit` (Kiln extension): the audit log, for auditors.

use axum::extract::State;
use kiln_api_types::access::{AuditEntry, AuditQuery};

use super::error::{ok, ApiError, ApiResult};
use super::params::Query;
use crate::auth::AuthUser;
use crate::state::AppState;

/// The newest records first (`start`, `limit` ≤ 1000, `userfilter`). The route requires
/// `Sys.Audit` on `/`.
pub async fn list(
    State(app): State<AppState>,
    _user: AuthUser,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Vec<AuditEntry>> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit", "must be between 1 and 1000"));
    }
    let records = app
        .db
        .audit_log(q.userfilter.as_deref(), q.start.unwrap_or(0), limit)
        .await?;
    Ok(ok(records
        .into_iter()
        .map(|r| AuditEntry {
            id: r.id,
            time: r.time,
            user: r.userid,
            method: r.method,
            path: r.path,
            status: r.status,
            client: r.client,
        })
        .collect()))
}
