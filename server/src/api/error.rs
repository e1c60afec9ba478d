//! [`ApiError`]: every way an API call can fail, with its HTTP status and a message a person
//! can act on, rendered in Proxmox's `{"data": null, ...}` shape.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use kiln_api_types::Envelope;

use crate::access::check::CheckError;
use crate::access::ids::InvalidId;
use crate::access::pools::{InsertRefused, QuotaError};
use crate::auth::privilege::Denied;
use crate::db::DbError;

/// An API failure.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid session or token.
    #[error("authentication required: log in with POST /api2/json/access/ticket")]
    Unauthenticated,
    /// Wrong user name or password.
    #[error("authentication failure")]
    AuthFailed,
    /// A presented credential other than a password (an API token) is not valid.
    #[error("{0}")]
    BadCredentials(String),
    /// State-changing request without the session's CSRF token.
    #[error("permission denied - invalid CSRF token: send the CSRFPreventionToken header you got at login")]
    Csrf,
    /// The caller lacks a privilege.
    #[error(transparent)]
    Forbidden(#[from] Denied),
    /// The caller may not do this for another reason (e.g. it is not the user concerned).
    #[error("{0}")]
    NotPermitted(String),
    /// Parameters failed validation: name → message.
    #[error("parameter verification failed")]
    Params(BTreeMap<String, String>),
    /// The object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// A credential other than a session (e.g. a join token) was refused.
    #[error("{0}")]
    Refused(String),
    /// The request body is larger than the API accepts.
    #[error("request body too large: the API accepts at most {0} KiB")]
    TooLarge(usize),
    /// The body is not JSON or a form.
    #[error(
        "unsupported content type: send application/json or application/x-www-form-urlencoded"
    )]
    UnsupportedMediaType,
    /// Too many failed logins.
    #[error("{message}")]
    TooManyRequests {
        /// What to do.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// A node needed for the answer is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// A server-side failure; the detail goes to the log, not to the caller.
    #[error("internal error; see the kiln-server log")]
    Internal(String),
}

impl ApiError {
    /// A single parameter error.
    pub fn param(name: &str, message: impl Into<String>) -> Self {
        ApiError::Params(BTreeMap::from([(name.to_owned(), message.into())]))
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthenticated | ApiError::AuthFailed | ApiError::BadCredentials(_) => {
                StatusCode::UNAUTHORIZED
            }
            ApiError::Csrf
            | ApiError::Forbidden(_)
            | ApiError::NotPermitted(_)
            | ApiError::Refused(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Params(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<CheckError> for ApiError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::Unauthenticated => ApiError::Unauthenticated,
            CheckError::Denied { path, privilege } => {
                ApiError::Forbidden(Denied { path, privilege })
            }
            e @ CheckError::NotAllowed(_) => ApiError::NotPermitted(e.to_string()),
            CheckError::BadParam { name, message } => ApiError::param(&name, message),
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> Self {
        ApiError::Conflict(e.to_string())
    }
}

impl From<InsertRefused> for ApiError {
    fn from(e: InsertRefused) -> Self {
        match e {
            InsertRefused::UnknownPool(_) => ApiError::param("pool", e.to_string()),
            InsertRefused::Quota(q) => q.into(),
            InsertRefused::Db(d) => d.into(),
        }
    }
}

impl From<InvalidId> for ApiError {
    fn from(e: InvalidId) -> Self {
        let name = match &e {
            InvalidId::User(_) => "userid",
            InvalidId::Token(_) => "tokenid",
            InvalidId::Name { kind: "group", .. } => "groupid",
            InvalidId::Name { kind: "role", .. } => "roleid",
            InvalidId::Name { kind: "pool", .. } => "poolid",
            InvalidId::Name { .. } => "id",
            InvalidId::Path(_) => "path",
        };
        ApiError::param(name, e.to_string())
    }
}

impl From<crate::auth::session::SessionError> for ApiError {
    fn from(e: crate::auth::session::SessionError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%detail, "internal error answering an API call");
        }
        let errors = match &self {
            ApiError::Params(map) => Some(map.clone()),
            _ => None,
        };
        let body = Envelope::<()> {
            data: None,
            errors,
            message: Some(self.to_string()),
        };
        let mut res = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after, .. } = self {
            if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

/// Wrap `data` in the `{"data": ...}` envelope.
pub fn ok<T: serde::Serialize>(data: T) -> Json<Envelope<T>> {
    Json(Envelope {
        data: Some(data),
        errors: None,
        message: None,
    })
}

/// Result type of API handlers.
pub type ApiResult<T> = Result<Json<Envelope<T>>, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(res: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn parameter_errors_use_proxmox_shape() {
        let res = ApiError::param("node", "unknown node 'x'").into_response();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let v = body_json(res).await;
        assert_eq!(v["data"], serde_json::Value::Null);
        assert_eq!(v["errors"]["node"], "unknown node 'x'");
        assert_eq!(v["message"], "parameter verification failed");
    }

    #[tokio::test]
    async fn internal_errors_hide_the_detail() {
        let res = ApiError::Internal("secret path /x".into()).into_response();
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let v = body_json(res).await;
        assert!(!v.to_string().contains("secret path"));
    }

    #[tokio::test]
    async fn success_is_wrapped_in_data() {
        let res = ok(vec![1, 2]).into_response();
        assert_eq!(body_json(res).await, serde_json::json!({"data": [1, 2]}));
    }

    #[tokio::test]
    async fn throttling_sets_retry_after() {
        let res = ApiError::TooManyRequests {
            message: "wait".into(),
            retry_after: 7,
        }
        .into_response();
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(res.headers()[header::RETRY_AFTER], "7");
    }
}
