//! `/access/acl`: the access control list.

use axum::extract::State;
use kiln_api_types::access::{AclEntryWire, AclUpdate};

use super::{flag, split_list};
use crate::access::ids::{check_name, normalize_acl_path, parse_full_tokenid, Userid};
use crate::access::{Privilege, Ugid};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::Body;
use crate::auth::{authorize, AuthUser};
use crate::state::AppState;

/// `GET /api2/json/access/acl`: every entry for callers with `Sys.Audit` on `/access`,
/// otherwise the entries on paths where the caller holds `Permissions.Modify`.
pub async fn list(user: AuthUser) -> ApiResult<Vec<AclEntryWire>> {
    let all = authorize(&user, "/access", Privilege::SysAudit).is_ok();
    Ok(ok(user
        .access
        .acl()
        .filter(|e| all || authorize(&user, &e.path, Privilege::PermissionsModify).is_ok())
        .map(|e| AclEntryWire {
            path: e.path.clone(),
            kind: e.ugid.kind().into(),
            ugid: e.ugid.id().into(),
            roleid: e.roleid.clone(),
            propagate: u8::from(e.propagate),
        })
        .collect()))
}

/// `PUT /api2/json/access/acl`: grant (or with `delete=1` revoke) `roles` on `path` to
/// `users`, `groups` and `tokens`. The route requires `Permissions.Modify` on the path; in
/// addition, whoever is not `root@kiln` can grant only privileges it holds on the path itself.
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<AclUpdate>,
) -> ApiResult<()> {
    let path = normalize_acl_path(&req.path)?;
    let propagate = flag(req.propagate, "propagate", true)?;
    let delete = flag(req.delete, "delete", false)?;
    let ac = user.access.clone();
    let roles = split_list(&req.roles);
    if roles.is_empty() {
        return Err(ApiError::param("roles", "name at least one role"));
    }
    let held = ac
        .privileges(&user.userid, user.token.as_deref(), &path)
        .set;
    for r in &roles {
        let role = ac.role(r).ok_or_else(|| {
            ApiError::param(
                "roles",
                format!("role '{r}' does not exist; GET /api2/json/access/roles lists them"),
            )
        })?;
        if !delete && !held.contains_all(role.privs) {
            let missing: Vec<_> = role
                .privs
                .iter()
                .filter(|p| !held.contains(*p))
                .map(Privilege::name)
                .collect();
            return Err(ApiError::NotPermitted(format!(
                "you cannot grant role {r} on {path}: you do not hold {} there yourself",
                missing.join(", ")
            )));
        }
    }
    let mut ugids = Vec::new();
    for u in split_list(req.users.as_deref().unwrap_or("")) {
        Userid::parse(&u)?;
        if ac.user(&u).is_none() {
            return Err(ApiError::param("users", format!("user {u} does not exist")));
        }
        ugids.push(Ugid::User(u));
    }
    for g in split_list(req.groups.as_deref().unwrap_or("")) {
        check_name("group", &g)?;
        if ac.group(&g).is_none() {
            return Err(ApiError::param(
                "groups",
                format!("group '{g}' does not exist"),
            ));
        }
        ugids.push(Ugid::Group(g));
    }
    for t in split_list(req.tokens.as_deref().unwrap_or("")) {
        parse_full_tokenid(&t).map_err(|e| ApiError::param("tokens", e.to_string()))?;
        if ac.token(&t).is_none() {
            return Err(ApiError::param(
                "tokens",
                format!("API token {t} does not exist"),
            ));
        }
        ugids.push(Ugid::Token(t));
    }
    if ugids.is_empty() {
        return Err(ApiError::param(
            "users",
            "name at least one user, group (groups) or API token (tokens)",
        ));
    }
    let lock = app.access.lock().await;
    for ugid in &ugids {
        for r in &roles {
            if delete {
                app.db.delete_acl(&path, ugid.kind(), ugid.id(), r).await?;
            } else {
                app.db
                    .set_acl(&path, ugid.kind(), ugid.id(), r, propagate)
                    .await?;
            }
        }
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(
        by = %user.auth_id(),
        "{} {} on {path} for {}",
        if delete { "revoked" } else { "granted" },
        roles.join(","),
        ugids.iter().map(|u| u.id()).collect::<Vec<_>>().join(",")
    );
    Ok(ok(()))
}
