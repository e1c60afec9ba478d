//! The authentication layer: resolves the session of every request, enforces the CSRF token
//! on state-changing requests, and hands the identity to handlers and to the UI.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use kiln_api_types::SessionInfo;
use tower_sessions::Session;

use super::session::{self, CSRF_HEADER};
use crate::api::error::ApiError;
use crate::state::AppState;

/// The authenticated caller, as handlers receive it. Extracting it from a request without a
/// valid session answers 401.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthUser {
    /// `name@realm`.
    pub userid: String,
}

/// Paths that take state-changing requests without a session (and so without CSRF token):
/// logging in, and a node joining with its token.
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/api2/json/access/ticket" | "/api2/kiln/join")
}

/// Middleware: resolve the session, check CSRF, insert [`AuthUser`] and [`SessionInfo`].
pub async fn authenticate(
    State(app): State<AppState>,
    session: Session,
    mut req: Request,
    next: Next,
) -> Response {
    let auth = match session::current(&session, &app.session_policy).await {
        Ok(a) => a,
        Err(e) => return ApiError::from(e).into_response(),
    };
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
    let info = SessionInfo {
        username: auth.as_ref().map(|a| a.userid.clone()),
        csrf_token: auth.as_ref().map(|a| a.csrf.clone()).unwrap_or_default(),
        cluster_name: app.cluster_name.clone(),
    };
    req.extensions_mut().insert(info);
    if let Some(a) = auth {
        req.extensions_mut().insert(AuthUser { userid: a.userid });
    }
    next.run(req).await
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
