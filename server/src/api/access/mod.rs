//! `/access/...`: login, users, groups, roles, the ACL, effective permissions, passwords and
//! API tokens, with Proxmox VE's shapes.

pub mod acl;
pub mod groups;
pub mod password;
pub mod permissions;
pub mod roles;
pub mod tfa;
pub mod ticket;
pub mod tokens;
pub mod users;

use super::error::ApiError;

/// Parse a Proxmox 0/1 flag.
pub(crate) fn flag(v: Option<u8>, name: &str, default: bool) -> Result<bool, ApiError> {
    match v {
        None => Ok(default),
        Some(0) => Ok(false),
        Some(1) => Ok(true),
        Some(_) => Err(ApiError::param(name, "must be 0 or 1")),
    }
}

/// Split a comma-, semicolon- or space-separated list (Proxmox's list parameters).
pub(crate) fn split_list(s: &str) -> Vec<String> {
    s.split([',', ';', ' '])
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Check a free-text field.
pub(crate) fn text(v: Option<String>, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match v {
        Some(s) if s.len() > max || s.chars().any(|c| c.is_control() && c != '\n') => {
            Err(ApiError::param(
                name,
                format!("at most {max} characters, no control characters"),
            ))
        }
        other => Ok(other),
    }
}
