//! `/access/users`: the users of realm `kiln`.

use axum::extract::{Path, State};
use kiln_api_types::access::{NoParams, TokenEntry, UserCreate, UserDetail, UserEntry, UserUpdate};

use super::{flag, split_list, text};
use crate::access::check::Check;
use crate::access::ids::{check_name, Userid};
use crate::access::{AccessControl, Privilege, UserInfo, ROOT};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::password::hash_password;
use crate::auth::{authorize, AuthUser};
use crate::db::UserRecord;
use crate::state::AppState;

/// Shortest password accepted.
pub const MIN_PASSWORD: usize = 8;

/// Check a new password's length.
pub fn check_password(pw: &str) -> Result<(), ApiError> {
    if (MIN_PASSWORD..=1024).contains(&pw.chars().count()) {
        Ok(())
    } else {
        Err(ApiError::param(
            "password",
            format!("use {MIN_PASSWORD} to 1024 characters"),
        ))
    }
}

/// Hash a password off the async threads.
pub async fn hash(pw: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&pw))
        .await
        .map_err(|e| ApiError::Internal(format!("password hashing panicked: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Whether the caller may see `target` (itself, or `User.Modify`/`Sys.Audit` on
/// `/access/groups` or on one of the target's groups).
pub fn visible(user: &AuthUser, target: &str) -> bool {
    const READ: Check = Check::Or {
        any_of: &[
            Check::IsUser { param: "userid" },
            Check::UserGroup {
                param: "userid",
                privs: &[Privilege::UserModify, Privilege::SysAudit],
            },
        ],
    };
    READ.evaluate(&user.access, Some(user.caller()), &|_| {
        Some(target.to_owned())
    })
    .is_ok()
}

fn tokens(ac: &AccessControl, userid: &str) -> Vec<TokenEntry> {
    ac.tokens_of(userid)
        .map(|t| TokenEntry {
            tokenid: t.name.clone(),
            comment: t.comment.clone(),
            expire: t.expire,
            privsep: u8::from(t.privsep),
        })
        .collect()
}

fn entry(ac: &AccessControl, u: &UserInfo) -> UserEntry {
    UserEntry {
        userid: u.userid.clone(),
        enable: u8::from(u.enabled),
        expire: u.expire,
        firstname: u.firstname.clone(),
        lastname: u.lastname.clone(),
        email: u.email.clone(),
        comment: u.comment.clone(),
        groups: u.groups.iter().cloned().collect::<Vec<_>>().join(","),
        tokens: tokens(ac, &u.userid),
        tfa_required: u8::from(u.tfa_required),
    }
}

/// `GET /api2/json/access/users`: the users the caller may see (always itself).
pub async fn list(user: AuthUser) -> ApiResult<Vec<UserEntry>> {
    let ac = &user.access;
    Ok(ok(ac
        .users()
        .filter(|u| visible(&user, &u.userid))
        .map(|u| entry(ac, u))
        .collect()))
}

/// Parse a `groups` list: every group must exist and the caller must hold `User.Modify` on
/// it (to put users into a group is to give them the group's rights).
fn groups_param(user: &AuthUser, list: &str) -> Result<Vec<String>, ApiError> {
    let groups = split_list(list);
    for g in &groups {
        check_name("group", g)?;
        if user.access.group(g).is_none() {
            return Err(ApiError::param(
                "groups",
                format!("group '{g}' does not exist; create it with POST /api2/json/access/groups"),
            ));
        }
        authorize(user, &format!("/access/groups/{g}"), Privilege::UserModify)?;
    }
    Ok(groups)
}

fn expire_param(v: Option<i64>) -> Result<Option<i64>, ApiError> {
    match v {
        Some(e) if e < 0 => Err(ApiError::param(
            "expire",
            "Unix seconds of the account's end, or 0 for never",
        )),
        other => Ok(other),
    }
}

fn email_param(v: Option<String>) -> Result<Option<String>, ApiError> {
    let v = text(v, "email", 254)?;
    match &v {
        Some(e) if !e.is_empty() && (!e.contains('@') || e.contains(char::is_whitespace)) => {
            Err(ApiError::param(
                "email",
                "expected an e-mail address such as ada@example.org",
            ))
        }
        _ => Ok(v),
    }
}

/// `POST /api2/json/access/users`.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<UserCreate>,
) -> ApiResult<()> {
    let userid = Userid::parse(&req.userid)?;
    let groups = match &req.groups {
        Some(list) => groups_param(&user, list)?,
        None => vec![],
    };
    let password_hash = match req.password {
        Some(pw) => {
            check_password(&pw)?;
            hash(pw).await?
        }
        None => String::new(),
    };
    let record = UserRecord {
        userid: userid.to_string(),
        password_hash,
        enabled: flag(req.enable, "enable", true)?,
        expire: expire_param(req.expire)?.unwrap_or(0),
        firstname: text(req.firstname, "firstname", 128)?.unwrap_or_default(),
        lastname: text(req.lastname, "lastname", 128)?.unwrap_or_default(),
        email: email_param(req.email)?.unwrap_or_default(),
        comment: text(req.comment, "comment", 1024)?.unwrap_or_default(),
        tfa_required: flag(req.tfa_required, "tfa-required", false)?,
        must_change_password: false,
    };
    let lock = app.access.lock().await;
    if !app.db.insert_user(&record, &groups).await? {
        return Err(ApiError::Conflict(format!("user {userid} already exists")));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "created user {userid}");
    Ok(ok(()))
}

fn known(user: &AuthUser, userid: &str) -> Result<UserInfo, ApiError> {
    Userid::parse(userid)?;
    user.access.user(userid).cloned().ok_or_else(|| {
        ApiError::NotFound(format!(
            "user {userid} does not exist; GET /api2/json/access/users lists them"
        ))
    })
}

/// `GET /api2/json/access/users/{userid}`.
pub async fn read(user: AuthUser, Path(userid): Path<String>) -> ApiResult<UserDetail> {
    let u = known(&user, &userid)?;
    Ok(ok(UserDetail {
        enable: u8::from(u.enabled),
        expire: u.expire,
        firstname: u.firstname.clone(),
        lastname: u.lastname.clone(),
        email: u.email.clone(),
        comment: u.comment.clone(),
        groups: u.groups.iter().cloned().collect(),
        tokens: tokens(&user.access, &userid)
            .into_iter()
            .map(|t| (t.tokenid.clone(), t))
            .collect(),
        tfa_required: u8::from(u.tfa_required),
    }))
}

fn guard_root(user: &AuthUser, target: &str, what: &str) -> Result<(), ApiError> {
    if target == ROOT && user.userid != ROOT {
        return Err(ApiError::NotPermitted(format!(
            "only {ROOT} may {what} {ROOT}"
        )));
    }
    Ok(())
}

/// `PUT /api2/json/access/users/{userid}`.
pub async fn update(
    State(app): State<AppState>,
    user: AuthUser,
    Path(userid): Path<String>,
    Body(req): Body<UserUpdate>,
) -> ApiResult<()> {
    known(&user, &userid)?;
    guard_root(&user, &userid, "change")?;
    let append = flag(req.append, "append", false)?;
    let new_groups = match &req.groups {
        Some(list) => Some(groups_param(&user, list)?),
        None => None,
    };
    let enable = req
        .enable
        .map(|_| flag(req.enable, "enable", true))
        .transpose()?;
    if userid == ROOT && enable == Some(false) {
        return Err(ApiError::param(
            "enable",
            format!("{ROOT} cannot be disabled"),
        ));
    }
    let expire = expire_param(req.expire)?;
    let (firstname, lastname) = (
        text(req.firstname, "firstname", 128)?,
        text(req.lastname, "lastname", 128)?,
    );
    let email = email_param(req.email)?;
    let comment = text(req.comment, "comment", 1024)?;
    let tfa_required = req
        .tfa_required
        .map(|_| flag(req.tfa_required, "tfa-required", false))
        .transpose()?;
    let lock = app.access.lock().await;
    let mut record = app
        .db
        .user(&userid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {userid} does not exist")))?;
    let current_groups = app
        .access
        .current()
        .user(&userid)
        .map(|u| u.groups.clone())
        .unwrap_or_default();
    record.enabled = enable.unwrap_or(record.enabled);
    record.expire = expire.unwrap_or(record.expire);
    record.firstname = firstname.unwrap_or(record.firstname);
    record.lastname = lastname.unwrap_or(record.lastname);
    record.email = email.unwrap_or(record.email);
    record.comment = comment.unwrap_or(record.comment);
    record.tfa_required = tfa_required.unwrap_or(record.tfa_required);
    let groups = new_groups.map(|g| {
        if append {
            current_groups.into_iter().chain(g).collect::<Vec<_>>()
        } else {
            g
        }
    });
    app.db.update_user(&record, groups.as_deref()).await?;
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "changed user {userid}");
    Ok(ok(()))
}

/// `DELETE /api2/json/access/users/{userid}`: the user, its tokens and its ACL entries.
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path(userid): Path<String>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    known(&user, &userid)?;
    if userid == ROOT {
        return Err(ApiError::param(
            "userid",
            format!("{ROOT} cannot be removed"),
        ));
    }
    let lock = app.access.lock().await;
    if !app.db.delete_user(&userid).await? {
        return Err(ApiError::NotFound(format!("user {userid} does not exist")));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed user {userid}");
    Ok(ok(()))
}
