//! `/access/ticket`: login (Proxmox ticket flow) and logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use kiln_api_types::{Ticket, TicketRequest};
use tower_sessions::Session;

use kiln_api_types::access::NoParams;

use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::password::{dummy_hash, verify_password};
use crate::auth::{session, AuthUser};
use crate::db::unix_now;
use crate::state::AppState;

/// Default realm, appended when a user name has none.
const REALM: &str = "kiln";

fn validate(req: &TicketRequest) -> Result<String, ApiError> {
    let user = req.username.trim();
    if user.is_empty() || user.len() > 128 || user.chars().any(|c| c.is_control() || c == ':') {
        return Err(ApiError::param(
            "username",
            "expected a user name such as root@kiln (at most 128 characters)",
        ));
    }
    if req.password.is_empty() || req.password.len() > 1024 {
        return Err(ApiError::param("password", "expected 1 to 1024 characters"));
    }
    Ok(if user.contains('@') {
        user.to_owned()
    } else {
        format!("{user}@{REALM}")
    })
}

/// `POST /api2/json/access/ticket`: check the password, start a session, return the ticket.
pub async fn login(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    session: Session,
    Body(req): Body<TicketRequest>,
) -> ApiResult<Ticket> {
    let userid = validate(&req)?;
    let ip = peer.ip();
    if let Err(throttled) = app.login_limiter.check(&userid, ip) {
        tracing::warn!(user = %userid, rhost = %ip, "login refused: {throttled}");
        return Err(ApiError::TooManyRequests {
            retry_after: throttled.retry_after(),
            message: throttled.to_string(),
        });
    }
    let user = app.db.user(&userid).await?;
    let now = unix_now();
    let usable = user
        .as_ref()
        .is_some_and(|u| u.enabled && (u.expire == 0 || u.expire > now));
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| dummy_hash().to_owned());
    let password = req.password;
    let matches = tokio::task::spawn_blocking(move || verify_password(&hash, &password))
        .await
        .map_err(|e| ApiError::Internal(format!("password check panicked: {e}")))?;
    if !(matches && usable) {
        app.login_limiter.record_failure(&userid, ip);
        let why = match (&user, usable) {
            (None, _) => "no such user",
            (Some(_), false) => "account disabled or expired",
            _ => "wrong password",
        };
        tracing::warn!(user = %userid, rhost = %ip, "authentication failure: {why}");
        tokio::time::sleep(app.login_failure_delay).await;
        return Err(ApiError::AuthFailed);
    }
    app.login_limiter.record_success(&userid);
    let (ticket, auth) = session::establish(&session, &userid, &app.session_policy).await?;
    tracing::info!(user = %userid, rhost = %ip, "successful login");
    Ok(ok(Ticket {
        ticket,
        csrf_prevention_token: auth.csrf,
        cap: super::permissions::capabilities(&app.access.current(), &userid, None),
        username: userid,
    }))
}

/// `DELETE /api2/json/access/ticket`: end the session (Kiln extension; Proxmox tickets simply
/// expire). The CSRF layer has checked the token already.
pub async fn logout(user: AuthUser, session: Session, Query(_): Query<NoParams>) -> ApiResult<()> {
    session::end(&session).await?;
    tracing::info!(user = %user.userid, "logout");
    Ok(ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(u: &str, p: &str) -> TicketRequest {
        TicketRequest {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn user_names_get_the_default_realm() {
        assert_eq!(validate(&req("root", "x")).unwrap(), "root@kiln");
        assert_eq!(validate(&req("root@kiln", "x")).unwrap(), "root@kiln");
    }

    #[test]
    fn bad_credentials_shapes_are_parameter_errors() {
        for (u, p, field) in [
            ("", "x", "username"),
            ("a:b", "x", "username"),
            ("root", "", "password"),
        ] {
            let Err(ApiError::Params(m)) = validate(&req(u, p)) else {
                panic!("{u:?}/{p:?} accepted")
            };
            assert!(m.contains_key(field));
        }
        assert!(validate(&req("root", &"x".repeat(1025))).is_err());
    }
}
