//! The one authorization check every handler calls: [`authorize`].
//!
//! The decision comes from the request's access snapshot (see [`crate::access`]): users,
//! groups, roles and ACL entries with Proxmox VE's resolution, pools, and API tokens with
//! privilege separation. `root@kiln` holds every privilege.

pub use crate::access::acl::ROOT;
pub use crate::access::Privilege;

use super::AuthUser;

/// Does the caller hold `privilege` on ACL path `path`?
pub fn authorize(user: &AuthUser, path: &str, privilege: Privilege) -> Result<(), Denied> {
    if user
        .access
        .allows(&user.userid, user.token.as_deref(), path, privilege)
    {
        Ok(())
    } else {
        Err(Denied {
            path: path.to_owned(),
            privilege,
        })
    }
}

/// A failed permission check, worded as Proxmox words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Permission check failed ({path}, {privilege})")]
pub struct Denied {
    /// The ACL path.
    pub path: String,
    /// The missing privilege.
    pub privilege: Privilege,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::access::{AccessControl, AclEntry, Ugid, UserInfo};

    fn caller(userid: &str, ac: &Arc<AccessControl>) -> AuthUser {
        AuthUser {
            userid: userid.into(),
            token: None,
            access: ac.clone(),
        }
    }

    #[test]
    fn root_holds_every_privilege_and_others_what_the_acl_grants() {
        let mut ac = AccessControl::default();
        ac.add_user(UserInfo {
            userid: "alice@kiln".into(),
            enabled: true,
            ..Default::default()
        });
        ac.add_acl(AclEntry {
            path: "/nodes".into(),
            ugid: Ugid::User("alice@kiln".into()),
            roleid: "PVEAuditor".into(),
            propagate: true,
        });
        let ac = Arc::new(ac);
        assert_eq!(
            authorize(&caller(ROOT, &ac), "/", Privilege::SysModify),
            Ok(())
        );
        let alice = caller("alice@kiln", &ac);
        assert_eq!(authorize(&alice, "/nodes/n1", Privilege::SysAudit), Ok(()));
        let denied = authorize(&alice, "/nodes/n1", Privilege::SysModify).unwrap_err();
        assert_eq!(
            denied.to_string(),
            "Permission check failed (/nodes/n1, Sys.Modify)"
        );
    }
}
