//! Identifiers of the access model, checked once at the edge: user ids (`name@kiln`), API
//! token ids (`name@kiln!token`), group, role and pool ids, and ACL paths.

use std::fmt;

/// The only realm: Kiln's own user database (argon2id passwords).
pub const REALM: &str = "kiln";

/// An identifier was refused; the message says what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// A user id.
    #[error("invalid user id '{0}': expected name@kiln, the name 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit")]
    User(String),
    /// An API token id.
    #[error("invalid token id '{0}': expected 1 to 64 letters, digits, '.', '-' or '_', starting with a letter")]
    Token(String),
    /// A group, role or pool id.
    #[error("invalid {kind} id '{id}': expected 1 to 64 letters, digits, '.', '-' or '_', starting with a letter or digit")]
    Name {
        /// `group`, `role` or `pool`.
        kind: &'static str,
        /// What was given.
        id: String,
    },
    /// An ACL path.
    #[error("invalid ACL path '{0}': use /, /access, /access/groups[/<group>], /nodes[/<node>], /vms[/<vmid>], /pool[/<pool>], /storage[/<storage>] or /sdn")]
    Path(String),
}

fn name_ok(s: &str, first_letter_only: bool) -> bool {
    let first_ok = s.chars().next().is_some_and(|c| {
        if first_letter_only {
            c.is_ascii_alphabetic()
        } else {
            c.is_ascii_alphanumeric()
        }
    });
    first_ok
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A user id `name@kiln`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Userid(String);

impl Userid {
    /// Parse and check a user id; a missing realm is refused (Proxmox needs it too).
    pub fn parse(s: &str) -> Result<Self, InvalidId> {
        match s.split_once('@') {
            Some((name, REALM)) if name_ok(name, false) => Ok(Userid(s.to_owned())),
            _ => Err(InvalidId::User(s.to_owned())),
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Userid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of an API token of a user (the part after `!`).
pub fn check_token_name(s: &str) -> Result<(), InvalidId> {
    if name_ok(s, true) {
        Ok(())
    } else {
        Err(InvalidId::Token(s.to_owned()))
    }
}

/// A full API token id `name@kiln!token`: the owner and the token name.
pub fn parse_full_tokenid(s: &str) -> Result<(Userid, String), InvalidId> {
    let (user, token) = s
        .split_once('!')
        .ok_or_else(|| InvalidId::Token(s.to_owned()))?;
    let user = Userid::parse(user)?;
    check_token_name(token)?;
    Ok((user, token.to_owned()))
}

/// Check a group (`kind` = "group"), role or pool id.
pub fn check_name(kind: &'static str, s: &str) -> Result<(), InvalidId> {
    if name_ok(s, false) {
        Ok(())
    } else {
        Err(InvalidId::Name {
            kind,
            id: s.to_owned(),
        })
    }
}

/// Check an ACL path: one of the shapes Kiln grants on. A trailing slash is removed.
pub fn normalize_acl_path(s: &str) -> Result<String, InvalidId> {
    let bad = || InvalidId::Path(s.to_owned());
    if s == "/" {
        return Ok("/".into());
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    let parts: Vec<&str> = trimmed
        .strip_prefix('/')
        .ok_or_else(bad)?
        .split('/')
        .collect();
    let name = |p: &str| name_ok(p, false);
    let ok = match parts.as_slice() {
        ["access"]
        | ["access", "groups"]
        | ["nodes"]
        | ["vms"]
        | ["pool"]
        | ["storage"]
        | ["sdn"]
        | ["access", "realm"] => true,
        ["access", "groups", g] | ["access", "realm", g] => name(g),
        ["nodes", n] | ["storage", n] | ["pool", n] => name(n),
        ["vms", id] => id.parse::<u32>().is_ok_and(|v| v >= 100) && !id.starts_with('0'),
        _ => false,
    };
    if ok {
        Ok(trimmed.to_owned())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_need_the_kiln_realm_and_a_plain_name() {
        for good in ["root@kiln", "alice.b@kiln", "s-01_x@kiln", "7@kiln"] {
            assert!(Userid::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "root", "root@pam", "@kiln", "a b@kiln", "a/b@kiln", "-a@kiln", "a:b@kiln",
        ] {
            assert!(Userid::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_ids_split_into_owner_and_name() {
        let (u, t) = parse_full_tokenid("alice@kiln!ci-1").unwrap();
        assert_eq!((u.as_str(), t.as_str()), ("alice@kiln", "ci-1"));
        assert!(parse_full_tokenid("alice@kiln").is_err());
        assert!(parse_full_tokenid("alice@kiln!1abc").is_err());
        assert!(parse_full_tokenid("alice@kiln!a=b").is_err());
    }

    #[test]
    fn acl_paths_have_known_shapes() {
        for (given, want) in [
            ("/", "/"),
            ("/vms/100", "/vms/100"),
            ("/vms/", "/vms"),
            ("/pool/lab1", "/pool/lab1"),
            ("/access/groups/students", "/access/groups/students"),
            ("/nodes/n1", "/nodes/n1"),
        ] {
            assert_eq!(normalize_acl_path(given).unwrap(), want);
        }
        for bad in [
            "",
            "vms",
            "/vms/abc",
            "/vms/99",
            "/vms/0100",
            "/foo",
            "/pool/a/b",
            "//",
        ] {
            assert!(normalize_acl_path(bad).is_err(), "{bad}");
        }
    }
}
