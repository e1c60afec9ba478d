//! [`NodeName`]: a node's name, checked once at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name {name:?}: use 1-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'")]
pub struct InvalidNodeName {
    /// The rejected input.
    pub name: String,
}

/// A node name: a DNS label (1-63 of `a-z`, `0-9`, `-`, starting with a letter, not ending
/// with `-`). It is the CN and DNS SAN of the node's certificate, so it must be a valid host
/// name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = InvalidNodeName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= 63
            && bytes[0].is_ascii_lowercase()
            && bytes[bytes.len() - 1] != b'-'
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if ok {
            Ok(NodeName(s.to_owned()))
        } else {
            Err(InvalidNodeName { name: s.to_owned() })
        }
    }
}

impl TryFrom<String> for NodeName {
    type Error = InvalidNodeName;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels() {
        for good in ["n1", "pve", "node-a", "a", &"a".repeat(63)] {
            assert!(
                good.parse::<NodeName>().is_ok(),
                "{good} should be accepted"
            );
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1node",
            "Node",
            "node-",
            "no_de",
            "nö",
            "a.b",
            &"a".repeat(64),
        ] {
            assert!(
                bad.parse::<NodeName>().is_err(),
                "{bad:?} should be refused"
            );
        }
    }
}
