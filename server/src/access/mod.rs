//! The access model, with Proxmox VE's semantics: users of realm `kiln`, groups, privileges,
//! built-in and custom roles, ACL entries with propagation, API tokens, and pools of VMs
//! with quotas (a Kiln extension).
//!
//! The configuration lives in the database; [`AccessStore`] keeps an immutable
//! [`AccessControl`] snapshot of it in memory, rebuilt and swapped after every change, so
//! that `authorize` is a synchronous check of a few map lookups.

pub mod acl;
pub mod check;
pub mod ids;
pub mod pools;
pub mod privileges;
pub mod roles;
pub mod setup;
pub mod tfa;
pub mod tokens;

use std::sync::{Arc, RwLock};

pub use acl::{AccessControl, AclEntry, PoolInfo, Quota, TokenInfo, Ugid, UserInfo, ROOT};
pub use check::Check;
pub use privileges::{PrivSet, Privilege};

use crate::db::{AccessRows, Db, DbError};

/// The current access snapshot, and the lock that serializes changes to it.
#[derive(Debug)]
pub struct AccessStore {
    current: RwLock<Arc<AccessControl>>,
    writes: tokio::sync::Mutex<()>,
}

/// Proof that the caller holds the write lock of the [`AccessStore`].
#[derive(Debug)]
pub struct WriteLock<'a>(#[allow(dead_code)] tokio::sync::MutexGuard<'a, ()>);

impl AccessStore {
    /// Load the configuration from the database.
    pub async fn load(db: &Db) -> Result<Self, DbError> {
        Ok(AccessStore {
            current: RwLock::new(Arc::new(build(db.access_rows().await?))),
            writes: tokio::sync::Mutex::new(()),
        })
    }

    /// The current snapshot (cheap: one `Arc` clone).
    pub fn current(&self) -> Arc<AccessControl> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Take the write lock: every change to the access configuration (users, groups, roles,
    /// ACL, tokens, pools and their members) happens under it, followed by [`Self::reload`],
    /// so checks that count (quotas) see every earlier change.
    pub async fn lock(&self) -> WriteLock<'_> {
        WriteLock(self.writes.lock().await)
    }

    /// Rebuild the snapshot from the database and swap it in.
    pub async fn reload(&self, db: &Db, _held: &WriteLock<'_>) -> Result<(), DbError> {
        let fresh = Arc::new(build(db.access_rows().await?));
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// Build a snapshot from database rows. Rows the code cannot interpret (an unknown privilege
/// in a custom role after a downgrade, say) are skipped with a warning rather than locking
/// everybody out.
pub fn build(rows: AccessRows) -> AccessControl {
    let mut ac = AccessControl::default();
    let totp_users: std::collections::HashSet<&str> =
        rows.totp_users.iter().map(String::as_str).collect();
    for u in rows.users {
        let has_totp = totp_users.contains(u.userid.as_str());
        ac.add_user(UserInfo {
            userid: u.userid,
            enabled: u.enabled,
            expire: u.expire,
            firstname: u.firstname,
            lastname: u.lastname,
            email: u.email,
            comment: u.comment,
            groups: Default::default(),
            tfa_required: u.tfa_required,
            must_change_password: u.must_change_password,
            has_totp,
        });
    }
    for (id, comment) in &rows.groups {
        ac.add_group(id, comment);
    }
    for (group, user) in &rows.members {
        ac.add_member(group, user);
    }
    for (id, privs) in &rows.roles {
        let set = privs
            .split(',')
            .filter(|p| !p.is_empty())
            .filter_map(|p| match p.parse::<Privilege>() {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(role = %id, "ignoring a privilege of a custom role: {e}");
                    None
                }
            })
            .fold(PrivSet::EMPTY, |acc, p| acc.union(PrivSet::of(&[p])));
        ac.add_role(id, set);
    }
    for a in rows.acl {
        let ugid = match a.ugid_type.as_str() {
            "user" => Ugid::User(a.ugid),
            "group" => Ugid::Group(a.ugid),
            "token" => Ugid::Token(a.ugid),
            other => {
                tracing::warn!(path = %a.path, "ignoring an ACL entry of unknown type '{other}'");
                continue;
            }
        };
        ac.add_acl(AclEntry {
            path: a.path,
            ugid,
            roleid: a.roleid,
            propagate: a.propagate,
        });
    }
    for t in rows.tokens {
        ac.add_token(TokenInfo {
            userid: t.userid,
            name: t.tokenid,
            secret_sha256: t.secret_sha256,
            privsep: t.privsep,
            expire: t.expire,
            comment: t.comment,
        });
    }
    for p in rows.pools {
        let vms = rows
            .pool_members
            .iter()
            .filter(|(pool, _)| *pool == p.poolid)
            .map(|(_, vmid)| *vmid)
            .collect();
        ac.add_pool(
            &p.poolid,
            PoolInfo {
                comment: p.comment,
                quota: Quota {
                    max_vms: p.max_vms,
                    max_vcpus: p.max_vcpus,
                    max_memory_mib: p.max_memory_mib,
                },
                vms,
                parent: p.parent,
            },
        );
    }
    ac
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn a_reload_makes_a_change_visible() {
        let (db, _dir) = temp_db().await;
        db.create_user("al@kiln", "").await.unwrap();
        let store = AccessStore::load(&db).await.unwrap();
        let before = store.current();
        assert!(!before.allows("al@kiln", None, "/vms/100", Privilege::VmAudit));
        let lock = store.lock().await;
        db.set_acl("/vms", "user", "al@kiln", "PVEAuditor", true)
            .await
            .unwrap();
        store.reload(&db, &lock).await.unwrap();
        assert!(store
            .current()
            .allows("al@kiln", None, "/vms/100", Privilege::VmAudit));
        // A snapshot taken before stays as it was (one request sees one configuration).
        assert!(!before.allows("al@kiln", None, "/vms/100", Privilege::VmAudit));
    }
}
