//! The authentication layer: resolves the API token or the session of every request,
//! enforces the CSRF token on state-changing session requests, and hands the identity (with
//! the access snapshot it is judged by) to handlers and to the UI.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_api_types::SessionInfo;
use tower_sessions::Session;

use super::session::{self, CSRF_HEADER};
use crate::access::check::Caller;
use crate::access::setup::{self, PendingSetup};
use crate::access::{tokens, AccessControl};
use crate::api::error::ApiError;
use crate::db::unix_now;
use crate::state::AppState;
use kiln_api_types::SetupStep;

/// The authenticated caller, as handlers receive it. Extracting it from a request without a
/// valid session or API token answers 401.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// `name@realm`; for an API token, its owner.
    pub userid: String,
    /// The token name, when the caller authenticated with an API token.
    pub token: Option<String>,
    /// The access configuration this request is judged by (one snapshot per request).
    pub access: Arc<AccessControl>,
}

impl AuthUser {
    /// The caller, as [`crate::access::check::Check`]s see it.
    pub fn caller(&self) -> Caller<'_> {
        Caller {
            userid: &self.userid,
            token: self.token.as_deref(),
        }
    }

    /// The same caller judged by the current snapshot, or `None` if it may no longer act
    /// (its user was disabled, expired or removed, or its token revoked or expired, or its
    /// session now has a login step to take). Streams that outlive their request (events,
    /// consoles) call this periodically.
    pub fn refreshed(&self, app: &AppState) -> Option<AuthUser> {
        let access = app.access.current();
        let now = unix_now();
        if !access.user(&self.userid).is_some_and(|u| u.usable(now)) {
            return None;
        }
        if self.token.is_none() && pending_setup(&access, &self.userid).is_some() {
            return None;
        }
        if let Some(t) = &self.token {
            let info = access.token(&format!("{}!{t}", self.userid))?;
            if info.expire != 0 && info.expire <= now {
                return None;
            }
        }
        Some(AuthUser {
            userid: self.userid.clone(),
            token: self.token.clone(),
            access,
        })
    }

    /// Proxmox's "auth id": `name@kiln`, or `name@kiln!token` for an API token (recorded as
    /// the user of tasks).
    pub fn auth_id(&self) -> String {
        match &self.token {
            Some(t) => format!("{}!{t}", self.userid),
            None => self.userid.clone(),
        }
    }
}

/// Paths that take state-changing requests without a session (and so without CSRF token):
/// logging in, and a node joining with its token.
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/api2/json/access/ticket" | "/api2/kiln/join")
}

/// Middleware: resolve the API token or the session, check CSRF, insert [`AuthUser`] and
/// [`SessionInfo`].
pub async fn authenticate(
    State(app): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let access = app.access.current();
    let now = unix_now();
    let token_header = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(tokens::parse_header);
    if let Some(presented) = token_header {
        // API tokens: no session and no CSRF token (a token is never sent by a browser on
        // its own). Failures are throttled per token id and per client address, as logins.
        let ip = req
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip());
        let key = match &presented {
            Ok((id, _)) => format!("token {id}"),
            Err(_) => "token (malformed)".to_owned(),
        };
        if let Some(ip) = ip {
            if let Err(throttled) = app.login_limiter.check(&key, ip) {
                tracing::warn!(rhost = %ip, "refused an API token attempt: {key}: {throttled}");
                return ApiError::TooManyRequests {
                    retry_after: throttled.retry_after(),
                    message: format!(
                        "too many failed API token attempts ({key}); try again in {} s",
                        throttled.retry_after()
                    ),
                }
                .into_response();
            }
        }
        let verified =
            presented.and_then(|(id, secret)| tokens::verify(&access, &id, &secret, now));
        if verified.is_err() {
            if let Some(ip) = ip {
                app.login_limiter.record_failure(&key, ip);
            }
        }
        return match verified {
            Ok((userid, token)) => {
                req.extensions_mut().insert(SessionInfo {
                    username: Some(format!("{userid}!{token}")),
                    csrf_token: String::new(),
                    cluster_name: app.cluster_name.clone(),
                    setup: None,
                });
                req.extensions_mut().insert(AuthUser {
                    userid,
                    token: Some(token),
                    access,
                });
                next.run(req).await
            }
            Err(e) => {
                tracing::warn!(path = %req.uri().path(), "refused an API token: {e}");
                ApiError::BadCredentials(e.to_string()).into_response()
            }
        };
    }
    let mut auth = match session::current(&session, &app.session_policy).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
    if let Some(a) = &auth {
        if !access.user(&a.userid).is_some_and(|u| u.usable(now)) {
            // Disabled, expired or removed since login: the session ends now.
            tracing::info!(user = %a.userid, "ending the session of a disabled, expired or removed user");
            if let Err(e) = session::end(&session).await {
                return ApiError::from(e).into_response();
            }
            auth = None;
        }
    }
    if let Some(a) = &auth {
        let unsafe_method = !req.method().is_safe();
        if unsafe_method && !csrf_exempt(req.uri().path()) {
            let sent = req
                .headers()
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !session::tokens_match(sent, &a.csrf) {
                tracing::warn!(user = %a.userid, path = %req.uri().path(), "refused a request without a valid CSRF token");
                return ApiError::Csrf.into_response();
            }
        }
    }
    let setup = auth
        .as_ref()
        .and_then(|a| pending_setup(&access, &a.userid));
    let info = SessionInfo {
        username: auth.as_ref().map(|a| a.userid.clone()),
        csrf_token: auth.as_ref().map(|a| a.csrf.clone()).unwrap_or_default(),
        cluster_name: app.cluster_name.clone(),
        setup,
    };
    req.extensions_mut().insert(info);
    if let Some(step) = setup {
        req.extensions_mut().insert(PendingSetup(step));
    }
    if let Some(a) = auth {
        req.extensions_mut().insert(AuthUser {
            userid: a.userid,
            token: None,
            access,
        });
    }
    next.run(req).await
}

/// The step a session of `userid` must take before it is a normal one (API tokens have none:
/// they are made by a session that took its steps).
pub fn pending_setup(access: &AccessControl, userid: &str) -> Option<SetupStep> {
    access.user(userid).and_then(setup::pending)
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<AuthUser>()
            .cloned()
            .ok_or(ApiError::Unauthenticated)
    }
}
