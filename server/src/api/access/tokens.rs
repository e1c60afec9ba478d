//! `/access/users/{userid}/token/{tokenid}`: API tokens.

use axum::extract::{Path, State};
use kiln_api_types::access::{NoParams, TokenCreate, TokenCreated, TokenEntry};

use super::{flag, text};
use crate::access::ids::{check_token_name, Userid};
use crate::access::tokens::{hash_secret, new_secret};
use crate::access::TokenInfo;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::AuthUser;
use crate::db::TokenRecord;
use crate::state::AppState;

fn entry(t: &TokenInfo) -> TokenEntry {
    TokenEntry {
        tokenid: t.name.clone(),
        comment: t.comment.clone(),
        expire: t.expire,
        privsep: u8::from(t.privsep),
    }
}

fn known_user(user: &AuthUser, userid: &str) -> Result<i64, ApiError> {
    Userid::parse(userid)?;
    user.access
        .user(userid)
        .map(|u| u.expire)
        .ok_or_else(|| ApiError::NotFound(format!("user {userid} does not exist")))
}

/// `GET /api2/json/access/users/{userid}/token`.
pub async fn list(user: AuthUser, Path(userid): Path<String>) -> ApiResult<Vec<TokenEntry>> {
    known_user(&user, &userid)?;
    Ok(ok(user.access.tokens_of(&userid).map(entry).collect()))
}

/// `GET /api2/json/access/users/{userid}/token/{tokenid}`.
pub async fn read(
    user: AuthUser,
    Path((userid, tokenid)): Path<(String, String)>,
) -> ApiResult<TokenEntry> {
    known_user(&user, &userid)?;
    check_token_name(&tokenid)?;
    let full = format!("{userid}!{tokenid}");
    user.access
        .token(&full)
        .map(|t| ok(entry(t)))
        .ok_or_else(|| ApiError::NotFound(format!("API token {full} does not exist")))
}

/// `POST /api2/json/access/users/{userid}/token/{tokenid}`: the secret is in the answer and
/// nowhere else.
pub async fn create(
    State(app): State<AppState>,
    user: AuthUser,
    Path((userid, tokenid)): Path<(String, String)>,
    Body(req): Body<TokenCreate>,
) -> ApiResult<TokenCreated> {
    let user_expire = known_user(&user, &userid)?;
    check_token_name(&tokenid)?;
    let expire = req.expire.unwrap_or(user_expire);
    if expire < 0 {
        return Err(ApiError::param("expire", "Unix seconds, or 0 for never"));
    }
    if user_expire != 0 && (expire == 0 || expire > user_expire) {
        return Err(ApiError::param(
            "expire",
            format!("the user expires at {user_expire}; a token cannot outlive its user"),
        ));
    }
    let secret = new_secret();
    let record = TokenRecord {
        userid: userid.clone(),
        tokenid: tokenid.clone(),
        secret_sha256: hash_secret(&secret),
        privsep: flag(req.privsep, "privsep", true)?,
        expire,
        comment: text(req.comment, "comment", 1024)?.unwrap_or_default(),
    };
    let lock = app.access.lock().await;
    if !app.db.insert_token(&record).await? {
        return Err(ApiError::Conflict(format!(
            "API token {userid}!{tokenid} already exists; remove it first to get a new secret"
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "created API token {userid}!{tokenid}");
    Ok(ok(TokenCreated {
        full_tokenid: format!("{userid}!{tokenid}"),
        info: TokenEntry {
            tokenid,
            comment: record.comment,
            expire: record.expire,
            privsep: u8::from(record.privsep),
        },
        value: secret,
    }))
}

/// `DELETE /api2/json/access/users/{userid}/token/{tokenid}`: the token stops working with
/// the next request.
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path((userid, tokenid)): Path<(String, String)>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    known_user(&user, &userid)?;
    check_token_name(&tokenid)?;
    let lock = app.access.lock().await;
    if !app.db.delete_token(&userid, &tokenid).await? {
        return Err(ApiError::NotFound(format!(
            "API token {userid}!{tokenid} does not exist"
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed API token {userid}!{tokenid}");
    Ok(ok(()))
}
