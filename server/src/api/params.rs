//! Extractors that turn malformed input into [`ApiError`]s in Proxmox's shape.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::ApiError;

/// Largest request body the API accepts.
pub const MAX_BODY: usize = 64 * 1024;

/// Query parameters, deserialised into `T`; failures become 400 parameter errors.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(Query)
            .map_err(|e| param_error(&e.to_string()))
    }
}

/// A request body given as JSON or as a form (Proxmox clients send both).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ctype = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::TooLarge(MAX_BODY / 1024))?;
        if bytes.len() > MAX_BODY {
            return Err(ApiError::TooLarge(MAX_BODY / 1024));
        }
        let parsed = match ctype.as_str() {
            "application/json" => {
                serde_json::from_slice(&bytes).map_err(|e| param_error(&e.to_string()))
            }
            "application/x-www-form-urlencoded" | "" => {
                serde_urlencoded::from_bytes(&bytes).map_err(|e| param_error(&e.to_string()))
            }
            _ => Err(ApiError::UnsupportedMediaType),
        };
        parsed.map(Body)
    }
}

/// Turn a serde message such as "missing field `password`" into a per-parameter error.
fn param_error(msg: &str) -> ApiError {
    let field = msg
        .split('`')
        .nth(1)
        .filter(|f| !f.is_empty() && f.len() < 64)
        .unwrap_or("body");
    let text = if msg.starts_with("missing field") {
        "property is missing and it is not optional".to_owned()
    } else {
        msg.to_owned()
    };
    ApiError::param(field, text)
}

/// Deserialise a Proxmox boolean: `0`, `1`, `true`, `false`, `yes`, `no`, `on`, `off`, as a
/// string (forms) or as a JSON number or boolean.
pub fn pve_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Number(i64),
        Text(String),
    }
    let text = match Option::<Raw>::deserialize(d)? {
        None => return Ok(None),
        Some(Raw::Bool(b)) => return Ok(Some(b)),
        Some(Raw::Number(n)) => n.to_string(),
        Some(Raw::Text(t)) => t,
    };
    match text.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        other => Err(serde::de::Error::custom(format!(
            "value '{other}' is not a boolean (use 0 or 1)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct P {
        #[serde(default, deserialize_with = "pve_bool")]
        errors: Option<bool>,
        limit: Option<u32>,
    }

    #[test]
    fn proxmox_booleans_parse() {
        let p: P = serde_urlencoded::from_str("errors=1&limit=5").unwrap();
        assert_eq!((p.errors, p.limit), (Some(true), Some(5)));
        let p: P = serde_urlencoded::from_str("").unwrap();
        assert_eq!(p.errors, None);
        assert!(serde_urlencoded::from_str::<P>("errors=maybe").is_err());
    }

    #[test]
    fn serde_messages_name_the_parameter() {
        let e = param_error("missing field `password`");
        let ApiError::Params(map) = e else { panic!() };
        assert_eq!(
            map["password"],
            "property is missing and it is not optional"
        );
    }
}
