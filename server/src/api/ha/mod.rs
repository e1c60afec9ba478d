//! `/cluster/ha/...`: HA resources, rules and status, as Proxmox VE 9, and node maintenance.
//!
//! Reading needs `Sys.Audit` on `/`, changing needs `Sys.Modify` on `/`; the CSRF token of
//! changes is checked by the auth middleware.

mod maintenance;
mod resources;
mod rules;
mod status;

pub use maintenance::{maintenance, maintenance_state};
pub use resources::{
    create_resource, delete_resource, get_resource, list_resources, migrate, relocate,
    update_resource,
};
pub use rules::{create_rule, delete_rule, get_rule, list_rules, update_rule};
pub use status::{annotate, manager_status, status_current};

use super::error::ApiError;
use crate::auth::{authorize, AuthUser, Privilege};
use crate::ha::rules::parse_sid;

const MAX_COMMENT: usize = 4096;

fn can_read(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(user, "/", Privilege::SysAudit)?)
}

fn can_change(user: &AuthUser) -> Result<(), ApiError> {
    Ok(authorize(user, "/", Privilege::SysModify)?)
}

fn sid_param(raw: &str) -> Result<(String, u32), ApiError> {
    let vmid = parse_sid(raw).map_err(|m| ApiError::param("sid", m))?;
    Ok((format!("vm:{vmid}"), vmid))
}

fn check_comment(c: Option<String>) -> Result<Option<String>, ApiError> {
    match c {
        Some(c) if c.len() > MAX_COMMENT => Err(ApiError::param(
            "comment",
            format!("at most {MAX_COMMENT} characters"),
        )),
        other => Ok(other),
    }
}
