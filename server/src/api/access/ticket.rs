//! `/access/ticket`: login (Proxmox ticket flow) and logout.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use kiln_api_types::access::LoginRequest;
use kiln_api_types::Ticket;
use tower_sessions::Session;

use kiln_api_types::access::NoParams;

use crate::access::tfa;
use crate::api::error::{ok, ApiError, ApiResult};
use crate::api::params::{Body, Query};
use crate::auth::middleware::pending_setup;
use crate::auth::password::{dummy_hash, verify_password};
use crate::auth::{session, AuthUser};
use crate::db::unix_now;
use crate::state::AppState;

/// Default realm, appended when a user name has none.
const REALM: &str = "kiln";

fn validate(req: &LoginRequest) -> Result<String, ApiError> {
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
    if req.realm.as_deref().is_some_and(|r| r != REALM) {
        return Err(ApiError::param(
            "realm",
            format!("the only realm is {REALM}"),
        ));
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
    Body(req): Body<LoginRequest>,
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
    let second_step = req.tfa_challenge.is_some();
    let matches = match &req.tfa_challenge {
        None => {
            let password = req.password.clone();
            tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                .await
                .map_err(|e| ApiError::Internal(format!("password check panicked: {e}")))?
        }
        Some(challenge) => {
            user.is_some() && second_factor(&app, &userid, challenge, &req.password).await?
        }
    };
    if !(matches && usable) {
        app.login_limiter.record_failure(&userid, ip);
        let why = match (&user, usable, second_step) {
            (None, _, _) => "no such user",
            (Some(_), false, _) => "account disabled or expired",
            (_, _, true) => "wrong or expired second factor",
            _ => "wrong password",
        };
        tracing::warn!(user = %userid, rhost = %ip, "authentication failure: {why}");
        tokio::time::sleep(app.login_failure_delay).await;
        return Err(ApiError::AuthFailed);
    }
    if !second_step && has_second_factor(&app, &userid).await? {
        // The password was right; the session starts only after the second factor.
        let challenge = app.tfa_challenges.issue(&userid);
        tracing::info!(user = %userid, rhost = %ip, "password accepted, second factor needed");
        return Ok(ok(Ticket {
            ticket: format!("PVE:{userid}:!tfa!{challenge}"),
            csrf_prevention_token: String::new(),
            cap: serde_json::json!({}),
            username: userid,
            need_tfa: Some(1),
            setup: None,
        }));
    }
    app.login_limiter.record_success(&userid);
    let (ticket, auth) = session::establish(&session, &userid, &app.session_policy).await?;
    let access = app.access.current();
    let setup = pending_setup(&access, &userid);
    match setup {
        Some(step) => {
            tracing::info!(user = %userid, rhost = %ip, "successful login, restricted until {step:?}")
        }
        None => tracing::info!(user = %userid, rhost = %ip, "successful login"),
    }
    Ok(ok(Ticket {
        ticket,
        csrf_prevention_token: auth.csrf,
        cap: super::permissions::capabilities(&access, &userid, None),
        username: userid,
        need_tfa: None,
        setup,
    }))
}

/// Whether `userid` has a second factor it must present.
async fn has_second_factor(app: &AppState, userid: &str) -> Result<bool, ApiError> {
    Ok(app.db.tfa(userid).await?.iter().any(|f| !f.data.is_empty()))
}

/// The second step of a login: `answer` is `totp:<code>` or `recovery:<key>` for the challenge
/// issued after the password. The challenge is used up either way.
async fn second_factor(
    app: &AppState,
    userid: &str,
    challenge: &str,
    answer: &str,
) -> Result<bool, ApiError> {
    if !app
        .tfa_challenges
        .take(tfa::challenge_of(challenge), userid)
    {
        return Ok(false);
    }
    let factors = app.db.tfa(userid).await?;
    let find = |id: &str| factors.iter().find(|f| f.id == id);
    if let Some(code) = answer.strip_prefix("totp:") {
        let Some(totp) = find("totp") else {
            return Ok(false);
        };
        let now = u64::try_from(unix_now()).unwrap_or(0);
        return match tfa::verify_totp(&totp.data, code, totp.last_step, now) {
            // Recorded only if no login used this step (or a later one) meanwhile.
            Ok(step) => Ok(app.db.advance_totp_step(userid, step).await?),
            Err(_) => Ok(false),
        };
    }
    if let Some(key) = answer.strip_prefix("recovery:") {
        let Some(recovery) = find("recovery") else {
            return Ok(false);
        };
        return match tfa::use_recovery_key(&recovery.data, key) {
            Some(left) => Ok(app
                .db
                .consume_recovery_key(userid, &recovery.data, &left)
                .await?),
            None => Ok(false),
        };
    }
    Ok(false)
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

    fn req(u: &str, p: &str) -> LoginRequest {
        LoginRequest {
            username: u.into(),
            password: p.into(),
            ..Default::default()
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
