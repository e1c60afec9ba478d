//! `/access/tfa/{userid}`: a user's second factors (TOTP and recovery keys).

use axum::extract::{Path, State};
use kiln_api_types::access::{NoParams, TfaAdd, TfaAdded, TfaEntry};

use crate::access::ids::Userid;
use crate::access::tfa::{new_recovery_keys, parse_totp, verify_totp};
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::password::verify_password;
use crate::auth::AuthUser;
use crate::db::unix_now;
use crate::state::AppState;

fn known(user: &AuthUser, userid: &str) -> Result<(), ApiError> {
    Userid::parse(userid)?;
    if user.access.user(userid).is_none() {
        return Err(ApiError::NotFound(format!("user {userid} does not exist")));
    }
    Ok(())
}

/// `GET /api2/json/access/tfa/{userid}`.
pub async fn list(
    State(app): State<AppState>,
    user: AuthUser,
    Path(userid): Path<String>,
) -> ApiResult<Vec<TfaEntry>> {
    known(&user, &userid)?;
    Ok(ok(app
        .db
        .tfa(&userid)
        .await?
        .into_iter()
        .map(|f| TfaEntry {
            kind: f.id.clone(),
            remaining: (f.id == "recovery")
                .then(|| f.data.split(',').filter(|k| !k.is_empty()).count() as u32),
            id: f.id,
            created: f.created_at,
        })
        .collect()))
}

/// `POST /api2/json/access/tfa/{userid}`: the user adds a TOTP (proving it with the current
/// code) or gets new recovery keys (shown once), confirming with its password.
pub async fn add(
    State(app): State<AppState>,
    user: AuthUser,
    Path(userid): Path<String>,
    Body(req): Body<TfaAdd>,
) -> ApiResult<TfaAdded> {
    known(&user, &userid)?;
    let record = app
        .db
        .user(&userid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {userid} does not exist")))?;
    let password = req.password.clone();
    let confirmed =
        tokio::task::spawn_blocking(move || verify_password(&record.password_hash, &password))
            .await
            .map_err(|e| ApiError::Internal(format!("password check panicked: {e}")))?;
    if !confirmed {
        tokio::time::sleep(app.login_failure_delay).await;
        return Err(ApiError::param(
            "password",
            "this is not your current password",
        ));
    }
    match req.kind.as_str() {
        "totp" => {
            let url = req
                .totp
                .ok_or_else(|| ApiError::param("totp", "the otpauth:// URL of the new TOTP"))?;
            parse_totp(&url).map_err(|e| ApiError::param("totp", e.to_string()))?;
            let code = req
                .value
                .ok_or_else(|| ApiError::param("value", "the code your authenticator shows now"))?;
            let now = u64::try_from(unix_now()).unwrap_or(0);
            let step = verify_totp(&url, &code, 0, now).map_err(|_| {
                ApiError::param(
                    "value",
                    "this is not the current code of that TOTP; check the authenticator's clock",
                )
            })?;
            // The snapshot knows who has a TOTP (a required second factor is met by one).
            let lock = app.access.lock().await;
            app.db.set_tfa(&userid, "totp", &url, step).await?;
            app.access.reload(&app.db, &lock).await?;
            tracing::info!(user = %userid, "TOTP second factor added");
            Ok(ok(TfaAdded {
                id: "totp".into(),
                recovery: vec![],
            }))
        }
        "recovery" => {
            let (keys, stored) = new_recovery_keys();
            app.db.set_tfa(&userid, "recovery", &stored, 0).await?;
            tracing::info!(user = %userid, "new recovery keys issued");
            Ok(ok(TfaAdded {
                id: "recovery".into(),
                recovery: keys,
            }))
        }
        other => Err(ApiError::param(
            "type",
            format!("'{other}' is not a second factor Kiln knows; use totp or recovery"),
        )),
    }
}

/// `DELETE /api2/json/access/tfa/{userid}/{id}`: remove a second factor (the user itself, or
/// an administrator of its groups, e.g. after a lost phone).
pub async fn remove(
    State(app): State<AppState>,
    user: AuthUser,
    Path((userid, id)): Path<(String, String)>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    known(&user, &userid)?;
    if !matches!(id.as_str(), "totp" | "recovery") {
        return Err(ApiError::param("id", "totp or recovery"));
    }
    let lock = app.access.lock().await;
    if !app.db.delete_tfa(&userid, &id).await? {
        return Err(ApiError::NotFound(format!(
            "{userid} has no {id} second factor"
        )));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.auth_id(), "removed the {id} second factor of {userid}");
    Ok(ok(()))
}
