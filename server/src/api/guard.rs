//! Enforcement of each route's declared [`Check`] before its handler runs.
//!
//! The check's parameters come from the URL path, then from the query string (GET, DELETE)
//! or the body (POST, PUT; JSON or form, read only when the check needs a parameter that is
//! not in the path, and handed on unchanged).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::{FromRequestParts, RawPathParams, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::params::MAX_BODY;
use crate::access::check::{Caller, Check};
use crate::access::setup::{self, DuringSetup, PendingSetup};
use crate::auth::AuthUser;

/// Evaluate `check` (and, for a session with a login step still to take, `during_setup`) for
/// the request, then run the handler.
pub async fn enforce(
    check: &'static Check,
    during_setup: DuringSetup,
    req: Request,
    next: Next,
) -> Response {
    match evaluate(check, during_setup, req).await {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

async fn evaluate(
    check: &'static Check,
    during_setup: DuringSetup,
    req: Request,
) -> Result<Request, ApiError> {
    if matches!(check, Check::Public) {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    let user = parts.extensions.get::<AuthUser>().cloned();
    let Some(user) = user else {
        return Err(ApiError::Unauthenticated);
    };
    let mut params: HashMap<String, String> = HashMap::new();
    if let Ok(raw) = RawPathParams::from_request_parts(&mut parts, &()).await {
        for (k, v) in &raw {
            params.insert(k.to_owned(), v.to_owned());
        }
    }
    // Parameters come from where the handler reads them: the query string of GET and DELETE,
    // the body of POST and PUT. (Reading both would let a query parameter pass the check
    // while the handler acts on a different body parameter.)
    let from_body = !matches!(parts.method, Method::GET | Method::HEAD | Method::DELETE);
    if let (false, Some(q)) = (from_body, parts.uri.query()) {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q) {
            for (k, v) in pairs {
                params.entry(k).or_insert(v);
            }
        }
    }
    let needs_body = from_body && check.params().iter().any(|p| !params.contains_key(*p));
    let body = if needs_body {
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_BODY / 1024))?;
        let ctype = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        for (k, v) in body_params(ctype, &bytes) {
            params.entry(k).or_insert(v);
        }
        Body::from(bytes)
    } else {
        body
    };
    if let Some(PendingSetup(step)) = parts.extensions.get::<PendingSetup>().copied() {
        let allowed = match during_setup {
            DuringSetup::Refused => false,
            DuringSetup::Allowed => true,
            DuringSetup::OwnAccount => params.get("userid") == Some(&user.userid),
        };
        if !allowed {
            return Err(ApiError::NotPermitted(setup::refusal(step, &user.userid)));
        }
    }
    let caller = Caller {
        userid: &user.userid,
        token: user.token.as_deref(),
    };
    check.evaluate(&user.access, Some(caller), &|name| {
        params.get(name).cloned()
    })?;
    Ok(Request::from_parts(parts, body))
}

/// The scalar fields of a JSON object or form body, as strings (the handler reports a
/// malformed body; here it just yields nothing).
fn body_params(content_type: &str, bytes: &[u8]) -> Vec<(String, String)> {
    if content_type.starts_with("application/json") {
        let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(bytes) else {
            return vec![];
        };
        map.into_iter()
            .filter_map(|(k, v)| {
                let s = match v {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Bool(b) => u8::from(b).to_string(),
                    _ => return None,
                };
                Some((k, s))
            })
            .collect()
    } else {
        serde_urlencoded::from_bytes(bytes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parameters_come_from_json_or_forms() {
        let json = body_params(
            "application/json",
            br#"{"vmid": 105, "pool": "lab", "x": [1]}"#,
        );
        assert!(json.contains(&("vmid".into(), "105".into())));
        assert!(json.contains(&("pool".into(), "lab".into())));
        assert_eq!(json.len(), 2);
        let form = body_params("application/x-www-form-urlencoded", b"vmid=105&pool=lab");
        assert_eq!(form.len(), 2);
        assert!(body_params("application/json", b"not json").is_empty());
    }
}
