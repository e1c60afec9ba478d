//! [`Check`]: the privilege a route requires, declared next to the route in the route table
//! and enforced before its handler runs (Proxmox's `permissions => { check => [...] }`).
//!
//! A check names privileges on a path template whose `{param}`s come from the request's path,
//! query or body. Handlers add finer checks (per-field privileges, filtering of listings).

use serde::Serialize;

use super::acl::AccessControl;
use super::ids::normalize_acl_path;
use super::privileges::Privilege;

/// What a route requires of its caller.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Check {
    /// No authentication (logging in, the cluster CA, a node joining with its token).
    Public,
    /// Any authenticated user or token; the handler shows only what the caller may see, or
    /// acts on the caller only.
    Authenticated,
    /// The privileges (all of them, or any when `any`) on the path template.
    Perm {
        /// ACL path template, e.g. `/vms/{vmid}`; `{path}` alone takes an ACL path parameter.
        path: &'static str,
        /// Required privileges.
        privs: &'static [Privilege],
        /// One of `privs` suffices.
        any: bool,
    },
    /// Proxmox's `userid-group`: any of `privs` on `/access/groups`, or on a group the user
    /// named by `param` belongs to.
    UserGroup {
        /// Parameter naming the user.
        param: &'static str,
        /// Any of these.
        privs: &'static [Privilege],
    },
    /// The caller is the user named by `param` (an absent parameter means the caller).
    IsUser {
        /// Parameter naming the user.
        param: &'static str,
    },
    /// The caller started the task named by the UPID in `param`.
    TaskOwner {
        /// Parameter holding the UPID.
        param: &'static str,
    },
    /// One of the checks.
    Or {
        /// Alternatives, tried in order.
        any_of: &'static [Check],
    },
    /// Every one of the checks (e.g. `VM.Clone` on the source and `VM.Allocate` on the new VM).
    All {
        /// Requirements, checked in order; the first refusal is reported.
        all_of: &'static [Check],
    },
    /// Only for a login session, never for an API token (passwords, token management).
    SessionOnly {
        /// The check for sessions.
        then: &'static Check,
    },
}

/// Who is calling.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The user (the owner, for a token).
    pub userid: &'a str,
    /// The token name, for an API token.
    pub token: Option<&'a str>,
}

/// Why a check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// No session or token.
    #[error("authentication required")]
    Unauthenticated,
    /// A privilege is missing.
    #[error("permission check failed ({path}, {privilege})")]
    Denied {
        /// The ACL path.
        path: String,
        /// The missing privilege (the first one, for "any of" checks).
        privilege: Privilege,
    },
    /// Only the user itself (or an administrator) may do this.
    #[error("permission check failed: {0}")]
    NotAllowed(String),
    /// A parameter the check needs is missing or malformed.
    #[error("{message}")]
    BadParam {
        /// The parameter.
        name: String,
        /// What is wrong.
        message: String,
    },
}

impl Check {
    /// Every parameter the check reads.
    pub fn params(&self) -> Vec<&'static str> {
        match self {
            Check::Public | Check::Authenticated => vec![],
            Check::Perm { path, .. } => template_params(path),
            Check::UserGroup { param, .. }
            | Check::IsUser { param }
            | Check::TaskOwner { param } => vec![param],
            Check::Or { any_of } => any_of.iter().flat_map(Check::params).collect(),
            Check::All { all_of } => all_of.iter().flat_map(Check::params).collect(),
            Check::SessionOnly { then } => then.params(),
        }
    }

    /// Evaluate the check for `caller` (None = anonymous) with request parameters `param`.
    pub fn evaluate(
        &self,
        ac: &AccessControl,
        caller: Option<Caller<'_>>,
        param: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), CheckError> {
        if matches!(self, Check::Public) {
            return Ok(());
        }
        let caller = caller.ok_or(CheckError::Unauthenticated)?;
        match self {
            Check::Public | Check::Authenticated => Ok(()),
            Check::Perm { path, privs, any } => {
                let path = fill(path, param)?;
                let held = ac.privileges(caller.userid, caller.token, &path).set;
                let missing = privs.iter().copied().find(|p| !held.contains(*p));
                let ok = if *any {
                    privs.iter().any(|p| held.contains(*p))
                } else {
                    missing.is_none()
                };
                match (ok, missing.or(privs.first().copied())) {
                    (true, _) => Ok(()),
                    (false, Some(privilege)) => Err(CheckError::Denied { path, privilege }),
                    (false, None) => Ok(()),
                }
            }
            Check::UserGroup { param: name, privs } => {
                let target = param(name).ok_or_else(|| missing(name))?;
                let groups = ac
                    .user(&target)
                    .map(|u| u.groups.iter().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                let paths = std::iter::once("/access/groups".to_owned())
                    .chain(groups.iter().map(|g| format!("/access/groups/{g}")));
                for path in paths {
                    let held = ac.privileges(caller.userid, caller.token, &path).set;
                    if privs.iter().any(|p| held.contains(*p)) {
                        return Ok(());
                    }
                }
                Err(CheckError::Denied {
                    path: "/access/groups".into(),
                    privilege: privs.first().copied().unwrap_or(Privilege::UserModify),
                })
            }
            Check::IsUser { param: name } => match param(name) {
                None => Ok(()),
                Some(u) if u == caller.userid && caller.token.is_none() => Ok(()),
                Some(u) => Err(CheckError::NotAllowed(format!(
                    "only {u} itself may do this"
                ))),
            },
            Check::TaskOwner { param: name } => {
                let upid = param(name).ok_or_else(|| missing(name))?;
                let owner = upid.split(':').nth(7).unwrap_or_default();
                let me = match caller.token {
                    Some(t) => format!("{}!{t}", caller.userid),
                    None => caller.userid.to_owned(),
                };
                // A user sees the tasks of its tokens too.
                if owner == me || (caller.token.is_none() && owner.starts_with(&format!("{me}!"))) {
                    Ok(())
                } else {
                    Err(CheckError::NotAllowed(format!(
                        "task {upid} belongs to {owner}"
                    )))
                }
            }
            Check::Or { any_of } => {
                let mut errors = Vec::new();
                for alt in *any_of {
                    match alt.evaluate(ac, Some(caller), param) {
                        Ok(()) => return Ok(()),
                        Err(e) => errors.push(e),
                    }
                }
                // Report the first refusal; a missing optional parameter (e.g. `pool`) only
                // if nothing else failed.
                let refusal = errors
                    .iter()
                    .find(|e| !matches!(e, CheckError::BadParam { .. }))
                    .or(errors.first())
                    .cloned();
                Err(refusal.unwrap_or(CheckError::NotAllowed("no alternative applies".into())))
            }
            Check::All { all_of } => all_of
                .iter()
                .try_for_each(|c| c.evaluate(ac, Some(caller), param)),
            Check::SessionOnly { then } => {
                if caller.token.is_some() {
                    Err(CheckError::NotAllowed(
                        "API tokens cannot do this; log in with a password".into(),
                    ))
                } else {
                    then.evaluate(ac, Some(caller), param)
                }
            }
        }
    }
}

fn missing(name: &str) -> CheckError {
    CheckError::BadParam {
        name: name.to_owned(),
        message: "property is missing and it is not optional".into(),
    }
}

fn template_params(template: &'static str) -> Vec<&'static str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|s| s.split_once('}').map(|(name, _)| name))
        .collect()
}

/// Fill a path template from the parameters. A parameter must be a single path segment,
/// except a template that is only `{path}`, which takes a whole ACL path.
fn fill(template: &str, param: &dyn Fn(&str) -> Option<String>) -> Result<String, CheckError> {
    if let Some(name) = template
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .filter(|n| !n.contains('{'))
    {
        let value = param(name).ok_or_else(|| missing(name))?;
        return normalize_acl_path(&value).map_err(|e| CheckError::BadParam {
            name: name.to_owned(),
            message: e.to_string(),
        });
    }
    let mut out = String::new();
    let mut rest = template;
    while let Some((before, after)) = rest.split_once('{') {
        out.push_str(before);
        let (name, tail) = after.split_once('}').unwrap_or((after, ""));
        let value = param(name).ok_or_else(|| missing(name))?;
        if value.is_empty() || value.contains('/') || value.len() > 128 {
            return Err(CheckError::BadParam {
                name: name.to_owned(),
                message: format!(
                    "'{value}' is not a valid {name}: expected one path segment (no '/')"
                ),
            });
        }
        out.push_str(&value);
        rest = tail;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::acl::{AclEntry, Ugid, UserInfo, ROOT};
    use std::collections::HashMap;
    use Privilege::*;

    fn control() -> AccessControl {
        let mut ac = AccessControl::default();
        for id in ["alice@kiln", "bob@kiln", "admin@kiln"] {
            ac.add_user(UserInfo {
                userid: id.into(),
                enabled: true,
                ..Default::default()
            });
        }
        ac.add_group("students", "");
        ac.add_member("students", "bob@kiln");
        let grant = |path: &str, who: &str, role: &str| AclEntry {
            path: path.into(),
            ugid: Ugid::User(who.into()),
            roleid: role.into(),
            propagate: true,
        };
        ac.add_acl(grant("/vms/100", "alice@kiln", "PVEVMUser"));
        ac.add_acl(grant(
            "/access/groups/students",
            "admin@kiln",
            "PVEUserAdmin",
        ));
        ac
    }

    fn params(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn caller(userid: &str) -> Option<Caller<'_>> {
        Some(Caller {
            userid,
            token: None,
        })
    }

    const POWER: Check = Check::Perm {
        path: "/vms/{vmid}",
        privs: &[VmPowerMgmt],
        any: false,
    };

    #[test]
    fn perm_checks_fill_the_path_from_parameters() {
        let ac = control();
        let p = params(&[("vmid", "100")]);
        assert_eq!(POWER.evaluate(&ac, caller("alice@kiln"), &p), Ok(()));
        assert_eq!(
            POWER.evaluate(&ac, caller("bob@kiln"), &p),
            Err(CheckError::Denied {
                path: "/vms/100".into(),
                privilege: VmPowerMgmt
            })
        );
        assert_eq!(
            POWER.evaluate(&ac, None, &p),
            Err(CheckError::Unauthenticated)
        );
        let sneaky = params(&[("vmid", "100/../101")]);
        assert!(matches!(
            POWER.evaluate(&ac, caller(ROOT), &sneaky),
            Err(CheckError::BadParam { .. })
        ));
        assert_eq!(POWER.params(), vec!["vmid"]);
    }

    #[test]
    fn or_takes_the_first_alternative_that_holds() {
        const CREATE: Check = Check::Or {
            any_of: &[
                Check::Perm {
                    path: "/vms/{vmid}",
                    privs: &[VmAllocate],
                    any: false,
                },
                Check::Perm {
                    path: "/pool/{pool}",
                    privs: &[VmAllocate],
                    any: false,
                },
            ],
        };
        let mut ac = control();
        ac.add_acl(AclEntry {
            path: "/pool/lab".into(),
            ugid: Ugid::User("bob@kiln".into()),
            roleid: "PVEVMAdmin".into(),
            propagate: true,
        });
        let with_pool = params(&[("vmid", "150"), ("pool", "lab")]);
        let without = params(&[("vmid", "150")]);
        assert_eq!(CREATE.evaluate(&ac, caller("bob@kiln"), &with_pool), Ok(()));
        assert!(matches!(
            CREATE.evaluate(&ac, caller("bob@kiln"), &without),
            Err(CheckError::Denied { .. })
        ));
    }

    #[test]
    fn all_needs_every_requirement() {
        const CLONE: Check = Check::All {
            all_of: &[
                Check::Perm {
                    path: "/vms/{vmid}",
                    privs: &[VmClone],
                    any: false,
                },
                Check::Perm {
                    path: "/vms/{newid}",
                    privs: &[VmAllocate],
                    any: false,
                },
            ],
        };
        let mut ac = control();
        let p = params(&[("vmid", "100"), ("newid", "150")]);
        assert_eq!(CLONE.params(), vec!["vmid", "newid"]);
        ac.add_acl(AclEntry {
            path: "/vms/100".into(),
            ugid: Ugid::User("bob@kiln".into()),
            roleid: "PVETemplateUser".into(),
            propagate: true,
        });
        assert_eq!(
            CLONE.evaluate(&ac, caller("bob@kiln"), &p),
            Err(CheckError::Denied {
                path: "/vms/150".into(),
                privilege: VmAllocate
            })
        );
        ac.add_acl(AclEntry {
            path: "/vms/150".into(),
            ugid: Ugid::User("bob@kiln".into()),
            roleid: "PVEVMAdmin".into(),
            propagate: true,
        });
        assert_eq!(CLONE.evaluate(&ac, caller("bob@kiln"), &p), Ok(()));
        assert!(CLONE.evaluate(&ac, caller("alice@kiln"), &p).is_err());
    }

    #[test]
    fn user_group_and_self_checks() {
        let ac = control();
        const EDIT: Check = Check::UserGroup {
            param: "userid",
            privs: &[UserModify],
        };
        let bob = params(&[("userid", "bob@kiln")]);
        let alice = params(&[("userid", "alice@kiln")]);
        assert_eq!(EDIT.evaluate(&ac, caller("admin@kiln"), &bob), Ok(()));
        assert!(EDIT.evaluate(&ac, caller("admin@kiln"), &alice).is_err());
        const ME: Check = Check::IsUser { param: "userid" };
        assert_eq!(ME.evaluate(&ac, caller("bob@kiln"), &bob), Ok(()));
        assert!(ME.evaluate(&ac, caller("alice@kiln"), &bob).is_err());
        assert_eq!(ME.evaluate(&ac, caller("alice@kiln"), &params(&[])), Ok(()));
        const NO_TOKENS: Check = Check::SessionOnly { then: &ME };
        let token = Some(Caller {
            userid: "bob@kiln",
            token: Some("t"),
        });
        assert!(NO_TOKENS.evaluate(&ac, token, &bob).is_err());
    }

    #[test]
    fn task_owner_comes_from_the_upid() {
        let ac = control();
        const OWNER: Check = Check::TaskOwner { param: "upid" };
        let upid = params(&[("upid", "UPID:n1:1:2:3:qmstart:100:alice@kiln!ci:")]);
        let token = Some(Caller {
            userid: "alice@kiln",
            token: Some("ci"),
        });
        assert_eq!(OWNER.evaluate(&ac, token, &upid), Ok(()));
        assert_eq!(OWNER.evaluate(&ac, caller("alice@kiln"), &upid), Ok(()));
        assert!(OWNER.evaluate(&ac, caller("bob@kiln"), &upid).is_err());
    }
}
