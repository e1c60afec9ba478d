//! Joining nodes: join tokens (`POST /cluster/join-tokens`, `kiln-server join-token`), the CA
//! download and the join itself (`/api2/kiln/ca`, `/api2/kiln/join`).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use kiln_api_types::JoinTokenCreated;
use kiln_node_client::wire::{JoinRequest, JoinResponse};
use kiln_node_client::{JoinToken, NodeName};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::error::{ok, ApiError, ApiResult};
use super::params::Body;
use crate::auth::session::tokens_match;
use crate::auth::{authorize, AuthUser, Privilege};
use crate::db::{unix_now, Db, DbError, RedeemError};
use crate::state::AppState;

/// Default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL_SECS: u64 = 3600;
/// Longest lifetime of a join token.
pub const MAX_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Create and store a join token; returns it (with its secret, shown once) and its expiry.
pub async fn create_join_token(
    db: &Db,
    ca_fingerprint: [u8; 32],
    created_by: &str,
    ttl_secs: u64,
) -> Result<(JoinToken, i64), DbError> {
    let token = JoinToken {
        id: hex::encode(rand::random::<[u8; 8]>()),
        secret: hex::encode(rand::random::<[u8; 16]>()),
        ca_fingerprint,
    };
    let expires = unix_now() + ttl_secs as i64;
    db.create_join_token(&token.id, &sha256_hex(&token.secret), created_by, expires)
        .await?;
    tracing::info!(id = %token.id, %created_by, "join token created");
    Ok((token, expires))
}

/// Body of `POST /cluster/join-tokens`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    /// Lifetime in seconds (default one hour, at most a week).
    pub ttl: Option<u64>,
}

/// `POST /api2/json/cluster/join-tokens` (Kiln extension).
pub async fn create_token(
    State(app): State<AppState>,
    user: AuthUser,
    Body(req): Body<NewTokenRequest>,
) -> ApiResult<JoinTokenCreated> {
    authorize(&user, "/", Privilege::SysModify)?;
    let ttl = req.ttl.unwrap_or(DEFAULT_TOKEN_TTL_SECS);
    if !(60..=MAX_TOKEN_TTL_SECS).contains(&ttl) {
        return Err(ApiError::param(
            "ttl",
            format!("must be between 60 and {MAX_TOKEN_TTL_SECS} seconds"),
        ));
    }
    let (token, expires) =
        create_join_token(&app.db, app.ca.fingerprint(), &user.auth_id(), ttl).await?;
    Ok(ok(JoinTokenCreated {
        token: token.to_string(),
        expires,
    }))
}

/// `GET /api2/kiln/ca`: the cluster CA certificate (public; joining nodes check it against
/// the fingerprint in their token).
pub async fn ca(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "application/x-pem-file")],
        app.ca.cert_pem().to_owned(),
    )
}

/// Validate the parts of a join request that need no database.
fn validate(app: &AppState, req: &JoinRequest) -> Result<(JoinToken, NodeName, String), ApiError> {
    let token: JoinToken =
        req.token
            .parse()
            .map_err(|e: kiln_node_client::MalformedJoinToken| {
                ApiError::param("token", e.to_string())
            })?;
    if token.ca_fingerprint != app.ca.fingerprint() {
        return Err(ApiError::Refused(
            "this join token belongs to another cluster (its CA fingerprint differs)".into(),
        ));
    }
    let name: NodeName =
        req.node_name
            .parse()
            .map_err(|e: kiln_node_client::InvalidNodeName| {
                ApiError::param("node_name", e.to_string())
            })?;
    let url = reqwest::Url::parse(&req.api_url)
        .map_err(|e| ApiError::param("api_url", format!("not a URL: {e}")))?;
    let host = match (url.scheme(), url.host_str(), url.port(), url.path()) {
        ("https", Some(h), Some(_), "/" | "") if url.query().is_none() => h.to_owned(),
        _ => {
            return Err(ApiError::param(
                "api_url",
                "expected https://<host>:<port> with nothing after the port",
            ))
        }
    };
    if req.csr_pem.len() > 16 * 1024 {
        return Err(ApiError::param("csr_pem", "certificate request too large"));
    }
    Ok((token, name, host))
}

/// `POST /api2/kiln/join`: a node redeems a join token and gets its certificate. Runs as a
/// `nodejoin` task; a refused join changes nothing.
pub async fn join(
    State(app): State<AppState>,
    Body(req): Body<JoinRequest>,
) -> ApiResult<JoinResponse> {
    let (token, name, host) = validate(&app, &req)?;
    let Some(creator) = app.db.join_token_creator(&token.id).await? else {
        tracing::warn!(node = %name, "join refused: unknown token id");
        return Err(ApiError::Refused(RedeemError::Unknown.to_string()));
    };
    let mut task = app
        .tasks
        .start(name.as_str(), "nodejoin", name.as_str(), &creator)
        .await?;
    task.log(format!("node {name} asks to join from {}", req.api_url))
        .await?;
    let result = async {
        let cert_pem = app
            .ca
            .sign_node_csr(&req.csr_pem, name.as_str(), &host)
            .map_err(|e| ApiError::param("csr_pem", e.to_string()))?;
        let fingerprint = crate::pki::pem_fingerprint(&cert_pem)
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        let presented = sha256_hex(&token.secret);
        app.db
            .redeem_join_token(
                &token.id,
                |stored| tokens_match(stored, &presented),
                name.as_str(),
                &req.api_url,
                &hex::encode(fingerprint),
            )
            .await
            .map_err(|e| match e {
                RedeemError::NameTaken(_) => ApiError::Conflict(e.to_string()),
                RedeemError::Db(db) => ApiError::from(db),
                other => ApiError::Refused(other.to_string()),
            })?;
        Ok::<_, ApiError>((cert_pem, fingerprint))
    }
    .await;
    match result {
        Ok((cert_pem, fingerprint)) => {
            task.log(format!(
                "issued certificate for {name} (sha256 {})",
                hex::encode(fingerprint)
            ))
            .await?;
            let upid = task.upid().to_owned();
            task.finish(Ok(())).await?;
            app.changes.notify();
            Ok(ok(JoinResponse {
                cert_pem,
                ca_pem: app.ca.cert_pem().to_owned(),
                upid,
            }))
        }
        Err(e) => {
            tracing::warn!(node = %name, "join refused: {e}");
            task.finish(Err(e.to_string())).await?;
            Err(e)
        }
    }
}
