//! [`Upid`]: Proxmox's unique task id, `UPID:node:PID:PSTART:STARTTIME:type:id:user:`.

use std::fmt;
use std::str::FromStr;

/// Why a string is not a UPID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid UPID {0:?}: expected UPID:<node>:<pid hex8>:<pstart hex8>:<starttime hex8>:<type>:<id>:<user>:")]
pub struct InvalidUpid(pub String);

/// A task id in Proxmox's format; its text form is what the API returns and accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Upid {
    /// Node the task concerns.
    pub node: String,
    /// Process id of the server that ran it.
    pub pid: u32,
    /// Per-process counter that makes ids unique within one second.
    pub pstart: u64,
    /// Start time, Unix seconds.
    pub starttime: i64,
    /// Task type, e.g. `nodejoin`.
    pub kind: String,
    /// Object the task acts on (may be empty).
    pub id: String,
    /// User who started it.
    pub user: String,
}

impl fmt::Display for Upid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "UPID:{}:{:08X}:{:08X}:{:08X}:{}:{}:{}:",
            self.node, self.pid, self.pstart, self.starttime, self.kind, self.id, self.user
        )
    }
}

impl FromStr for Upid {
    type Err = InvalidUpid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidUpid(s.to_owned());
        let fields: Vec<&str> = s.split(':').collect();
        // "UPID", 7 fields, and the empty string after the trailing ':'.
        let ["UPID", node, pid, pstart, starttime, kind, id, user, ""] = fields.as_slice() else {
            return Err(bad());
        };
        let hex = |v: &str, min: usize, max: usize| {
            (v.len() >= min && v.len() <= max && v.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some(())
                .ok_or_else(bad)
        };
        hex(pid, 8, 8)?;
        hex(pstart, 8, 9)?;
        hex(starttime, 8, 8)?;
        if node.is_empty()
            || kind.is_empty()
            || user.is_empty()
            || s.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        Ok(Upid {
            node: (*node).to_owned(),
            pid: u32::from_str_radix(pid, 16).map_err(|_| bad())?,
            pstart: u64::from_str_radix(pstart, 16).map_err(|_| bad())?,
            starttime: i64::from_str_radix(starttime, 16).map_err(|_| bad())?,
            kind: (*kind).to_owned(),
            id: (*id).to_owned(),
            user: (*user).to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_proxmox_and_parses_back() {
        let u = Upid {
            node: "n1".into(),
            pid: 0x1a2b,
            pstart: 7,
            starttime: 0x6553_f100,
            kind: "nodejoin".into(),
            id: "n1".into(),
            user: "root@kiln".into(),
        };
        let s = u.to_string();
        assert_eq!(
            s,
            "UPID:n1:00001A2B:00000007:6553F100:nodejoin:n1:root@kiln:"
        );
        assert_eq!(s.parse::<Upid>(), Ok(u));
    }

    #[test]
    fn parses_a_real_proxmox_upid() {
        let s = "UPID:pve1:000A1B2C:0123ABCD:65A0B1C2:qmstart:100:root@pam:";
        let u: Upid = s.parse().unwrap();
        assert_eq!(
            (u.node.as_str(), u.kind.as_str(), u.id.as_str()),
            ("pve1", "qmstart", "100")
        );
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn refuses_malformed_upids() {
        for bad in [
            "",
            "UPID:n1:1:2:3:t:i:u:",
            "UPID:n1:00001A2B:00000007:6553F100:nodejoin:n1:root@kiln",
            "UPID::00001A2B:00000007:6553F100:nodejoin:n1:root@kiln:",
            "UPID:n1:0000XA2B:00000007:6553F100:nodejoin:n1:root@kiln:",
            "UPID:n1:00001A2B:00000007:6553F100:node join:n1:root@kiln:",
            "XPID:n1:00001A2B:00000007:6553F100:nodejoin:n1:root@kiln:",
        ] {
            assert!(bad.parse::<Upid>().is_err(), "{bad:?}");
        }
    }
}
