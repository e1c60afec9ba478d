//! `/access/groups`.

use axum::extract::{Path, State};
use kiln_api_types::access::{GroupCreate, GroupDetail, GroupEntry, GroupUpdate, NoParams};

use super::text;
use crate::access::ids::check_name;
use crate::access::Privilege;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::{authorize, AuthUser};
use crate::state::AppState;

/// `GET /api2/json/access/groups`: groups where the caller holds `Sys.Audit`, `User.Modify`
/// or `Group.Allocate`.
pub async fn list(user: AuthUser) -> ApiResult<Vec<GroupEntry>> {
    let visible = |g: &str| {
        let path = format!("/access/groups/{g}");
        [
            Privilege::SysAudit,
            Privilege::UserModify,
            Privilege::GroupAllocate,
        ]
        .into_iter()
        .any(|p| authorize(&user, &path, p).is_ok())
    };
    Ok(ok(user
        .access
        .groups()
        .filter(|(id, _)| visible(id))
        .map(|(id, g)| GroupEntry {
            groupid: id.clone(),
            comment: g.comment.clone(),
            users: g.members.iter().cloned().collect::<Vec<_>>().join(","),
        })
        .collect()))
}

/// `POST /api2/json/access/groups`.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<GroupCreate>,
) -> ApiResult<()> {
    check_name("group", &req.groupid)?;
    let comment = text(req.comment, "comment", 1024)?.unwrap_or_default();
    let lock = app.access.lock().await;
    if !app.db.insert_group(&req.groupid, &comment).await? {
        return Err(ApiError::Conflict(format!(
            "group {} already exists",
            req.groupid
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "created group {}", req.groupid);
    Ok(ok(()))
}

fn known(user: &AuthUser, groupid: &str) -> Result<(), ApiError> {
    check_name("group", groupid)?;
    if user.access.group(groupid).is_none() {
        return Err(ApiError::NotFound(format!(
            "group '{groupid}' does not exist; GET /api2/json/access/groups lists them"
        )));
    }
    Ok(())
}

/// `GET /api2/json/access/groups/{groupid}`.
pub async fn read(user: AuthUser, Path(groupid): Path<String>) -> ApiResult<GroupDetail> {
    known(&user, &groupid)?;
    let g = user.access.group(&groupid).cloned().unwrap_or_default();
    Ok(ok(GroupDetail {
        comment: g.comment,
        members: g.members.into_iter().collect(),
    }))
}

/// `PUT /api2/json/access/groups/{groupid}`.
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Path(groupid): Path<String>,
    Body(req): Body<GroupUpdate>,
) -> ApiResult<()> {
    known(&user, &groupid)?;
    let Some(comment) = text(req.comment, "comment", 1024)? else {
        return Ok(ok(()));
    };
    let lock = app.access.lock().await;
    app.db.update_group(&groupid, &comment).await?;
    app.access.reload(&app.db, &lock).await?;
    Ok(ok(()))
}

/// `DELETE /api2/json/access/groups/{groupid}`: the group, its memberships and its ACL
/// entries.
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path(groupid): Path<String>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    known(&user, &groupid)?;
    let lock = app.access.lock().await;
    app.db.delete_group(&groupid).await?;
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed group {groupid}");
    Ok(ok(()))
}
