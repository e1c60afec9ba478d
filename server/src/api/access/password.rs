//! `PUT /access/password`.

use axum::extract::State;
use kiln_api_types::access::PasswordChange;

use super::users::{check_password, hash};
use crate::access::ids::Userid;
use crate::access::ROOT;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::Body;
use crate::auth::password::verify_password;
use crate::auth::AuthUser;
use crate::state::AppState;

/// Change a password: one's own, or (with `User.Modify` over the user's groups) another
/// user's, who must then replace it at its next login. The caller confirms with its own current password, so a stolen session alone
/// cannot take an account over. Only root changes root's password.
pub async fn change(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<PasswordChange>,
) -> ApiResult<()> {
    let target = Userid::parse(&req.userid)?;
    if target.as_str() == ROOT && user.userid != ROOT {
        return Err(ApiError::NotPermitted(format!(
            "only {ROOT} may change the password of {ROOT}"
        )));
    }
    check_password(&req.password)?;
    let Some(caller) = app.db.user(&user.userid).await? else {
        return Err(ApiError::Unauthenticated);
    };
    let confirmation = req.confirmation_password;
    let matches =
        tokio::task::spawn_blocking(move || verify_password(&caller.password_hash, &confirmation))
            .await
            .map_err(|e| ApiError::Internal(format!("password check panicked: {e}")))?;
    if !matches {
        tokio::time::sleep(app.login_failure_delay).await;
        return Err(ApiError::param(
            "confirmation-password",
            format!("this is not the current password of {}", user.userid),
        ));
    }
    let new_hash = hash(req.password).await?;
    // A password someone else set is known to them: its owner must replace it at the next
    // login (see `access::setup`). Replacing one's own lifts that requirement.
    let must_change = target.as_str() != user.userid;
    let lock = app.access.lock().await;
    if !app
        .db
        .set_password_hash(target.as_str(), &new_hash, must_change)
        .await?
    {
        return Err(ApiError::NotFound(format!("user {target} does not exist")));
    }
    app.access.reload(&app.db, &lock).await?;
    tracing::info!(by = %user.userid, "changed the password of {target}");
    Ok(ok(()))
}
