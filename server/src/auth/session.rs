//! Browser and API sessions on top of tower-sessions (SQLite-backed store).
//!
//! The session id doubles as the Proxmox "ticket": it is the value of cookie `PVEAuthCookie`,
//! so Proxmox clients that copy the ticket into that cookie work unchanged.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_sessions::{Expiry, Session};

/// Name of the session cookie (Proxmox's).
pub const COOKIE_NAME: &str = "PVEAuthCookie";
/// Header that carries the CSRF token (Proxmox's).
pub const CSRF_HEADER: &str = "CSRFPreventionToken";
const KEY: &str = "kiln.auth";

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
}

/// What a logged-in session holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuthSession {
    /// The user.
    pub userid: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Login time, Unix milliseconds.
    pub created_ms: i64,
    /// Last time the idle expiry was pushed forward, Unix milliseconds.
    pub refreshed_ms: i64,
}

/// The session store failed.
#[derive(Debug, thiserror::Error)]
#[error("session store error: {0}")]
pub struct SessionError(#[from] tower_sessions::session::Error);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::thread_rng(), buf.as_mut_slice());
    hex::encode(buf)
}

/// Start an authenticated session for `userid` (a fresh id, against session fixation) and
/// return it with its ticket (the session id).
pub async fn establish(
    session: &Session,
    userid: &str,
    policy: &SessionPolicy,
) -> Result<(String, AuthSession), SessionError> {
    session.cycle_id().await?;
    let now = now_ms();
    let auth = AuthSession {
        userid: userid.to_owned(),
        csrf: random_hex(32),
        created_ms: now,
        refreshed_ms: now,
    };
    session.insert(KEY, &auth).await?;
    session.set_expiry(Some(idle_expiry(policy)));
    session.save().await?;
    let ticket = session.id().map(|id| id.to_string()).unwrap_or_default();
    Ok((ticket, auth))
}

fn idle_expiry(policy: &SessionPolicy) -> Expiry {
    Expiry::OnInactivity(time::Duration::seconds(policy.idle.as_secs() as i64))
}

/// The authenticated session behind this request, if any. Ends a session past its absolute
/// lifetime, and pushes the idle expiry forward (at most every `idle / 4`, to spare writes).
pub async fn current(
    session: &Session,
    policy: &SessionPolicy,
) -> Result<Option<AuthSession>, SessionError> {
    let Some(mut auth) = session.get::<AuthSession>(KEY).await? else {
        return Ok(None);
    };
    let now = now_ms();
    if now - auth.created_ms >= policy.absolute.as_millis() as i64 {
        session.flush().await?;
        return Ok(None);
    }
    let refresh_every = (policy.idle.as_millis() as i64 / 4).clamp(1000, 60_000);
    if now - auth.refreshed_ms >= refresh_every {
        auth.refreshed_ms = now;
        session.insert(KEY, &auth).await?;
        session.set_expiry(Some(idle_expiry(policy)));
    }
    Ok(Some(auth))
}

/// Whether the session with id `id` still exists in `store` and is within its absolute
/// lifetime (for long-lived responses such as event streams, which outlive a logout).
pub async fn still_valid(
    store: &impl tower_sessions::SessionStore,
    id: &tower_sessions::session::Id,
    policy: &SessionPolicy,
) -> bool {
    let Ok(Some(record)) = store.load(id).await else {
        return false;
    };
    record
        .data
        .get(KEY)
        .and_then(|v| serde_json::from_value::<AuthSession>(v.clone()).ok())
        .is_some_and(|a| now_ms() - a.created_ms < policy.absolute.as_millis() as i64)
}

/// Log out: delete the session from the store and clear the cookie.
pub async fn end(session: &Session) -> Result<(), SessionError> {
    session.flush().await?;
    Ok(())
}

/// Compare two tokens in constant time.
pub fn tokens_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(tokens_match("abc", "abc"));
        assert!(!tokens_match("abc", "abd"));
        assert!(!tokens_match("abc", "abcd"));
        assert!(!tokens_match("", "a"));
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let (a, b) = (random_hex(32), random_hex(32));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }
}
