//! `/access/roles`: built-in roles (read-only) and custom roles.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use kiln_api_types::access::{NoParams, RoleCreate, RoleEntry, RoleUpdate};

use super::flag;
use crate::access::ids::check_name;
use crate::access::PrivSet;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::AuthUser;
use crate::state::AppState;

/// `GET /api2/json/access/roles`.
pub async fn list(user: AuthUser) -> ApiResult<Vec<RoleEntry>> {
    Ok(ok(user
        .access
        .roles()
        .map(|(id, r)| RoleEntry {
            roleid: id.clone(),
            privs: r.privs.to_list(),
            special: u8::from(r.builtin),
        })
        .collect()))
}

fn privs_param(s: Option<&str>) -> Result<PrivSet, ApiError> {
    PrivSet::parse_list(s.unwrap_or("")).map_err(|e| ApiError::param("privs", e.to_string()))
}

/// `POST /api2/json/access/roles`.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<RoleCreate>,
) -> ApiResult<()> {
    check_name("role", &req.roleid)?;
    let privs = privs_param(req.privs.as_deref())?;
    let lock = app.access.lock().await;
    if app.access.current().role(&req.roleid).is_some()
        || !app.db.insert_role(&req.roleid, &privs.to_list()).await?
    {
        return Err(ApiError::Conflict(format!(
            "role {} already exists",
            req.roleid
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "created role {}: {}", req.roleid, privs.to_list());
    Ok(ok(()))
}

fn custom(user: &AuthUser, roleid: &str) -> Result<PrivSet, ApiError> {
    check_name("role", roleid)?;
    match user.access.role(roleid) {
        None => Err(ApiError::NotFound(format!(
            "role '{roleid}' does not exist; GET /api2/json/access/roles lists them"
        ))),
        Some(r) if r.builtin => Err(ApiError::param(
            "roleid",
            format!(
                "{roleid} is a built-in role and cannot be changed; create a custom role instead"
            ),
        )),
        Some(r) => Ok(r.privs),
    }
}

/// `GET /api2/json/access/roles/{roleid}`: privilege → 1, as Proxmox.
pub async fn read(user: AuthUser, Path(roleid): Path<String>) -> ApiResult<BTreeMap<String, u8>> {
    check_name("role", &roleid)?;
    let role = user.access.role(&roleid).ok_or_else(|| {
        ApiError::NotFound(format!(
            "role '{roleid}' does not exist; GET /api2/json/access/roles lists them"
        ))
    })?;
    Ok(ok(role
        .privs
        .iter()
        .map(|p| (p.name().to_owned(), 1))
        .collect()))
}

/// `PUT /api2/json/access/roles/{roleid}`.
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Path(roleid): Path<String>,
    Body(req): Body<RoleUpdate>,
) -> ApiResult<()> {
    let current = custom(&user, &roleid)?;
    let given = privs_param(req.privs.as_deref())?;
    let privs = if flag(req.append, "append", false)? {
        current.union(given)
    } else {
        given
    };
    let lock = app.access.lock().await;
    app.db.update_role(&roleid, &privs.to_list()).await?;
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "changed role {roleid}: {}", privs.to_list());
    Ok(ok(()))
}

/// `DELETE /api2/json/access/roles/{roleid}`: the role and the ACL entries granting it.
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path(roleid): Path<String>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    custom(&user, &roleid)?;
    let lock = app.access.lock().await;
    app.db.delete_role(&roleid).await?;
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed role {roleid}");
    Ok(ok(()))
}
