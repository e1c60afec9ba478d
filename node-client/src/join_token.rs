//! [`JoinToken`]: the one-time token a node joins the cluster with.
//!
//! Format: `kiln1.<id>.<secret>.<ca-fingerprint>` — a 16-hex-digit id (the database key), a
//! 32-hex-digit secret (stored only as a SHA-256 hash on the server) and the 64-hex-digit
//! SHA-256 fingerprint of the cluster CA certificate (DER). The fingerprint lets a new node
//! trust the server before it has any certificate, as kubeadm's discovery hash does.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed join token: expected kiln1.<16 hex>.<32 hex>.<64 hex>, as printed by `kiln-server join-token` or the web UI")]
pub struct MalformedJoinToken;

/// A parsed join token.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Public id of the token (16 lowercase hex digits).
    pub id: String,
    /// Secret part (32 lowercase hex digits).
    pub secret: String,
    /// SHA-256 fingerprint of the cluster CA certificate (DER).
    pub ca_fingerprint: [u8; 32],
}

impl fmt::Debug for JoinToken {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "kiln1.{}.{}.{}",
            self.id,
            self.secret,
            hex::encode(self.ca_fingerprint)
        )
    }
}

fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FromStr for JoinToken {
    type Err = MalformedJoinToken;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split('.');
        let (Some("kiln1"), Some(id), Some(secret), Some(fp), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(MalformedJoinToken);
        };
        if !is_lower_hex(id, 16) || !is_lower_hex(secret, 32) || !is_lower_hex(fp, 64) {
            return Err(MalformedJoinToken);
        }
        let mut ca_fingerprint = [0u8; 32];
        hex::decode_to_slice(fp, &mut ca_fingerprint).map_err(|_| MalformedJoinToken)?;
        Ok(JoinToken {
            id: id.to_owned(),
            secret: secret.to_owned(),
            ca_fingerprint,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JoinToken {
        JoinToken {
            id: "0123456789abcdef".into(),
            secret: "00112233445566778899aabbccddeeff".into(),
            ca_fingerprint: [0xab; 32],
        }
    }

    #[test]
    fn round_trips_through_its_text_form() {
        let t = sample();
        assert_eq!(t.to_string().parse::<JoinToken>(), Ok(t));
    }

    #[test]
    fn refuses_malformed_tokens() {
        let good = sample().to_string();
        let bad = [
            String::new(),
            good.replacen("kiln1", "kiln2", 1),
            good[..good.len() - 1].to_owned(),
            format!("{good}.x"),
            good.to_uppercase(),
        ];
        for b in bad {
            assert_eq!(b.parse::<JoinToken>(), Err(MalformedJoinToken), "{b}");
        }
    }

    #[test]
    fn debug_output_hides_the_secret() {
        let dbg = format!("{:?}", sample());
        assert!(!dbg.contains("00112233"), "{dbg}");
    }
}
