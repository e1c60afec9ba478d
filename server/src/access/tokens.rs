//! API tokens: secrets (shown once, stored as SHA-256), the `PVEAPIToken` header, and the
//! check of a presented token against the current snapshot.

use sha2::{Digest, Sha256};

use super::acl::AccessControl;
use super::ids::parse_full_tokenid;

/// The scheme of the `Authorization` header (Proxmox's).
pub const SCHEME: &str = "PVEAPIToken";

/// Why a presented token is refused. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The header is not `PVEAPIToken=user@realm!tokenid=secret`.
    #[error("malformed Authorization header: expected PVEAPIToken=<user>@kiln!<tokenid>=<secret>")]
    Malformed,
    /// No such token, a wrong secret, or the owner cannot log in (one message, so a caller
    /// cannot probe which).
    #[error("API token {0} is not valid (unknown, revoked, wrong secret, or its user is disabled or expired)")]
    Invalid(String),
    /// The token has expired.
    #[error("API token {0} has expired")]
    Expired(String),
}

/// A new random secret, UUID-shaped like Proxmox's.
pub fn new_secret() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// How a secret is stored. Secrets are 128 random bits, so a fast hash is enough (nothing to
/// brute-force) and keeps the per-request check cheap.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Parse the value of an `Authorization` header: `Some` if it uses the `PVEAPIToken` scheme.
pub fn parse_header(value: &str) -> Option<Result<(String, String), TokenError>> {
    let rest = value.strip_prefix(SCHEME)?;
    let parsed = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(' '))
        .and_then(|r| r.trim().split_once('='))
        .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
        .map(|(id, secret)| (id.to_owned(), secret.to_owned()))
        .ok_or(TokenError::Malformed);
    Some(parsed)
}

/// Check a presented token id and secret at `now`; on success the owner and the token name.
pub fn verify(
    ac: &AccessControl,
    full_id: &str,
    secret: &str,
    now: i64,
) -> Result<(String, String), TokenError> {
    let invalid = || TokenError::Invalid(full_id.to_owned());
    let (owner, name) = parse_full_tokenid(full_id).map_err(|_| TokenError::Malformed)?;
    let info = ac.token(full_id).ok_or_else(invalid)?;
    let presented = hash_secret(secret);
    if !crate::auth::session::tokens_match(&presented, &info.secret_sha256) {
        return Err(invalid());
    }
    if !ac.user(owner.as_str()).is_some_and(|u| u.usable(now)) {
        return Err(invalid());
    }
    if info.expire != 0 && info.expire <= now {
        return Err(TokenError::Expired(full_id.to_owned()));
    }
    Ok((owner.as_str().to_owned(), name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::acl::{TokenInfo, UserInfo};

    fn control(secret: &str, expire: i64, enabled: bool) -> AccessControl {
        let mut ac = AccessControl::default();
        ac.add_user(UserInfo {
            userid: "alice@kiln".into(),
            enabled,
            ..Default::default()
        });
        ac.add_token(TokenInfo {
            userid: "alice@kiln".into(),
            name: "ci".into(),
            secret_sha256: hash_secret(secret),
            privsep: true,
            expire,
            comment: String::new(),
        });
        ac
    }

    #[test]
    fn secrets_are_uuid_shaped_and_distinct() {
        let s = new_secret();
        assert_eq!(s.len(), 36);
        assert_eq!(s.matches('-').count(), 4);
        assert_ne!(s, new_secret());
    }

    #[test]
    fn the_header_has_proxmox_shape() {
        assert_eq!(
            parse_header("PVEAPIToken=alice@kiln!ci=abc-def"),
            Some(Ok(("alice@kiln!ci".into(), "abc-def".into())))
        );
        assert_eq!(parse_header("Bearer x"), None);
        assert_eq!(
            parse_header("PVEAPIToken=alice@kiln!ci"),
            Some(Err(TokenError::Malformed))
        );
    }

    #[test]
    fn only_the_right_secret_of_a_live_token_of_a_usable_user_passes() {
        let ac = control("s3cret", 0, true);
        assert_eq!(
            verify(&ac, "alice@kiln!ci", "s3cret", 100),
            Ok(("alice@kiln".into(), "ci".into()))
        );
        assert!(matches!(
            verify(&ac, "alice@kiln!ci", "wrong", 100),
            Err(TokenError::Invalid(_))
        ));
        assert!(matches!(
            verify(&ac, "alice@kiln!other", "s3cret", 100),
            Err(TokenError::Invalid(_))
        ));
        let expired = control("s3cret", 50, true);
        assert!(matches!(
            verify(&expired, "alice@kiln!ci", "s3cret", 100),
            Err(TokenError::Expired(_))
        ));
        let disabled = control("s3cret", 0, false);
        assert!(verify(&disabled, "alice@kiln!ci", "s3cret", 100).is_err());
        let msg = verify(&ac, "alice@kiln!ci", "guess-7f3a", 100)
            .unwrap_err()
            .to_string();
        assert!(
            !msg.contains("guess-7f3a"),
            "the secret must not be echoed: {msg}"
        );
    }
}
