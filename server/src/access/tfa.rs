//! Second factors: TOTP (RFC 6238) with replay protection, single-use recovery keys, and the
//! short-lived challenges of Proxmox's `NeedTFA` login flow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use totp_rs::TOTP;

/// How many recovery keys a user gets.
pub const RECOVERY_KEYS: usize = 10;
/// How long a login may take between the password and the second factor.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(120);

/// A second factor was refused or could not be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TfaError {
    /// The otpauth URL cannot be used.
    #[error("invalid TOTP URL: {0}; expected otpauth://totp/<label>?secret=<base32, at least 128 bits>&algorithm=SHA1&digits=6&period=30")]
    BadUrl(String),
    /// The code is not the current one (or was used already).
    #[error("wrong or already used TOTP code")]
    WrongCode,
}

/// Parse an otpauth URL (as authenticator apps show them).
pub fn parse_totp(url: &str) -> Result<TOTP, TfaError> {
    TOTP::from_url(url).map_err(|e| TfaError::BadUrl(format!("{e:?}")))
}

/// Check `code` against the TOTP of `url` at `now` (Unix seconds), allowing one step of clock
/// skew either way. A code is accepted only for a time step after `last_step` (so it can be
/// used once); on success, the step it matched.
pub fn verify_totp(url: &str, code: &str, last_step: u64, now: u64) -> Result<u64, TfaError> {
    let totp = parse_totp(url)?;
    let step = totp.step.max(1);
    let current = now / step;
    for s in [current.saturating_sub(1), current, current + 1] {
        if s <= last_step {
            continue;
        }
        let expected = totp.generate(s * step);
        if crate::auth::session::tokens_match(&expected, code.trim()) {
            return Ok(s);
        }
    }
    Err(TfaError::WrongCode)
}

fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.trim().to_ascii_lowercase().as_bytes()))
}

/// New recovery keys: the keys to show once, and what to store (their hashes, comma-separated).
pub fn new_recovery_keys() -> (Vec<String>, String) {
    let keys: Vec<String> = (0..RECOVERY_KEYS)
        .map(|_| {
            let h = hex::encode(rand::random::<[u8; 6]>());
            format!("{}-{}-{}", &h[0..4], &h[4..8], &h[8..12])
        })
        .collect();
    let stored = keys
        .iter()
        .map(|k| hash_key(k))
        .collect::<Vec<_>>()
        .join(",");
    (keys, stored)
}

/// Use a recovery key: `Some(remaining)` (what to store now) if `key` is one of `stored`.
pub fn use_recovery_key(stored: &str, key: &str) -> Option<String> {
    let presented = hash_key(key);
    let keys: Vec<&str> = stored.split(',').filter(|k| !k.is_empty()).collect();
    let hit = keys
        .iter()
        .position(|k| crate::auth::session::tokens_match(k, &presented))?;
    Some(
        keys.iter()
            .enumerate()
            .filter(|(i, _)| *i != hit)
            .map(|(_, k)| *k)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Logins waiting for their second factor: challenge → (user, deadline). A challenge is used
/// once, right or wrong, so that guessing codes means re-entering the password each time.
#[derive(Debug, Default)]
pub struct Challenges(Mutex<HashMap<String, (String, Instant)>>);

impl Challenges {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new challenge for `userid`.
    pub fn issue(&self, userid: &str) -> String {
        let challenge = hex::encode(rand::random::<[u8; 16]>());
        let mut map = self.map();
        let now = Instant::now();
        map.retain(|_, (_, deadline)| *deadline > now);
        map.insert(challenge.clone(), (userid.to_owned(), now + CHALLENGE_TTL));
        challenge
    }

    /// Consume `challenge`: whether it was issued to `userid` and has not expired.
    pub fn take(&self, challenge: &str, userid: &str) -> bool {
        match self.map().remove(challenge) {
            Some((user, deadline)) => user == userid && deadline > Instant::now(),
            None => false,
        }
    }
}

/// The challenge inside a ticket answered with `NeedTFA` (`PVE:<user>:!tfa!<challenge>`), or
/// the bare challenge.
pub fn challenge_of(ticket: &str) -> &str {
    ticket.rsplit_once("!tfa!").map_or(ticket, |(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use totp_rs::{Algorithm, Secret};

    fn url() -> String {
        let secret = Secret::Raw(b"kiln-test-secret-0123".to_vec())
            .to_bytes()
            .unwrap();
        TOTP::new(
            Algorithm::SHA1,
            6,
            1,
            30,
            secret,
            Some("Kiln".into()),
            "a@kiln".into(),
        )
        .unwrap()
        .get_url()
    }

    #[test]
    fn a_totp_code_is_accepted_once_within_one_step_of_skew() {
        let url = url();
        let totp = parse_totp(&url).unwrap();
        let now = 1_800_000_015;
        let code = totp.generate(now);
        let step = verify_totp(&url, &code, 0, now).unwrap();
        assert_eq!(step, now / 30);
        assert_eq!(
            verify_totp(&url, &code, step, now),
            Err(TfaError::WrongCode),
            "replay"
        );
        let next = totp.generate(now + 30);
        assert_eq!(
            verify_totp(&url, &next, step, now),
            Ok(step + 1),
            "one step ahead"
        );
        let far = totp.generate(now + 90);
        assert_eq!(verify_totp(&url, &far, 0, now), Err(TfaError::WrongCode));
        assert!(matches!(
            parse_totp("otpauth://totp/x?secret=AA"),
            Err(TfaError::BadUrl(_))
        ));
    }

    #[test]
    fn recovery_keys_work_once_each() {
        let (keys, stored) = new_recovery_keys();
        assert_eq!(keys.len(), RECOVERY_KEYS);
        let left = use_recovery_key(&stored, &keys[3]).unwrap();
        assert_eq!(left.split(',').count(), RECOVERY_KEYS - 1);
        assert!(use_recovery_key(&left, &keys[3]).is_none(), "used already");
        assert!(use_recovery_key(&left, &keys[4].to_uppercase()).is_some());
        assert!(use_recovery_key(&stored, "0000-0000-0000").is_none());
    }

    #[test]
    fn challenges_are_single_use_and_bound_to_their_user() {
        let c = Challenges::default();
        let ch = c.issue("a@kiln");
        assert!(!c.take(&ch, "b@kiln"));
        let ch = c.issue("a@kiln");
        assert!(c.take(challenge_of(&format!("PVE:a@kiln:!tfa!{ch}")), "a@kiln"));
        assert!(!c.take(&ch, "a@kiln"), "used already");
    }
}
