//! Wire types of the node API (version [`API_VERSION`]) and of the join protocol.
//!
//! The server and every node agent use these same structs, so a field changed here changes on
//! both sides at once.

use serde::{Deserialize, Serialize};

/// Version of the node API; sent by nodes in [`NodeFacts::api_version`].
pub const API_VERSION: u32 = 1;

/// Facts a node reports with every heartbeat (`GET /v1/status` on the node API).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeFacts {
    /// The node's name (the CN and DNS SAN of its certificate).
    pub name: String,
    /// Node API version the agent speaks.
    pub api_version: u32,
    /// Version of the `kiln-node` binary.
    pub agent_version: String,
    /// Host uptime in seconds.
    pub uptime_secs: u64,
    /// Logical CPUs.
    pub cpus: u32,
    /// CPU model name.
    pub cpu_model: String,
    /// CPU sockets.
    pub cpu_sockets: u32,
    /// CPU usage since the previous sample, 0.0..=1.0.
    pub cpu_usage: f64,
    /// Load averages over 1, 5 and 15 minutes.
    pub loadavg: [f64; 3],
    /// Total memory in bytes.
    pub mem_total: u64,
    /// Memory in use (total minus available), in bytes.
    pub mem_used: u64,
    /// Whether `/dev/kvm` can be opened for reading and writing.
    pub kvm: bool,
    /// Kernel release and version (`uname -rv`).
    pub kernel: String,
}

/// Body of `POST /api2/kiln/join` on the server: a node asks to join with a one-time token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinRequest {
    /// The join token exactly as the administrator got it (its secret part is checked).
    pub token: String,
    /// The name the node wants (validated as a [`crate::NodeName`]).
    pub node_name: String,
    /// Where the server reaches the node agent, e.g. `https://10.0.0.5:8007`.
    pub api_url: String,
    /// PEM certificate signing request for the node's key; the CN must be the node name.
    pub csr_pem: String,
}

/// Answer of a successful join.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JoinResponse {
    /// The node's certificate, signed by the cluster CA (PEM).
    pub cert_pem: String,
    /// The cluster CA certificate (PEM); the node trusts only certificates it signed.
    pub ca_pem: String,
    /// UPID of the server's `nodejoin` task, for the log.
    pub upid: String,
}

/// Body of every error answer of the node API (any non-2xx status).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    /// What went wrong, for a human.
    pub message: String,
}

impl ErrorBody {
    /// The message of an error answer: the `message` field if the body is an [`ErrorBody`],
    /// otherwise the body itself as text (shortened), or the word "no details".
    pub fn message_from(body: &[u8]) -> String {
        if let Ok(parsed) = serde_json::from_slice::<ErrorBody>(body) {
            return parsed.message;
        }
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            return "no details".to_owned();
        }
        match text.char_indices().nth(300) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_comes_from_the_json_body_or_the_raw_text() {
        assert_eq!(
            ErrorBody::message_from(br#"{"message":"no such VM"}"#),
            "no such VM"
        );
        assert_eq!(ErrorBody::message_from(b"  plain text \n"), "plain text");
        assert_eq!(ErrorBody::message_from(b""), "no details");
        let long = "x".repeat(1000);
        assert_eq!(
            ErrorBody::message_from(long.as_bytes()).chars().count(),
            301
        );
    }
}
