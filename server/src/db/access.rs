//! Groups, custom roles, ACL entries and API tokens, and reading the whole access
//! configuration at once (for the in-memory snapshot).

use sqlx::Row;

use super::pools::PoolRecord;
use super::users::UserRecord;
use super::{unix_now, Db, DbError, QueryContext};

/// An ACL row.
#[derive(Debug, Clone, PartialEq)]
pub struct AclRecord {
    /// ACL path.
    pub path: String,
    /// `user`, `group` or `token`.
    pub ugid_type: String,
    /// User id, group id or full token id.
    pub ugid: String,
    /// Role.
    pub roleid: String,
    /// Applies below `path` too.
    pub propagate: bool,
}

/// An API token row.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRecord {
    /// Owner.
    pub userid: String,
    /// Token name.
    pub tokenid: String,
    /// Hex SHA-256 of the secret.
    pub secret_sha256: String,
    /// Privilege separation.
    pub privsep: bool,
    /// Expiry (Unix seconds); 0 = never.
    pub expire: i64,
    /// Free text.
    pub comment: String,
}

/// The whole access configuration.
#[derive(Debug, Clone, Default)]
pub struct AccessRows {
    /// Users.
    pub users: Vec<UserRecord>,
    /// Groups: id and comment.
    pub groups: Vec<(String, String)>,
    /// Memberships: group id and user id.
    pub members: Vec<(String, String)>,
    /// Custom roles: id and comma-separated privileges.
    pub roles: Vec<(String, String)>,
    /// ACL entries.
    pub acl: Vec<AclRecord>,
    /// API tokens.
    pub tokens: Vec<TokenRecord>,
    /// Pools.
    pub pools: Vec<PoolRecord>,
    /// Pool memberships: pool id and VM id.
    pub pool_members: Vec<(String, u32)>,
    /// Users who have a TOTP second factor.
    pub totp_users: Vec<String>,
}

fn pairs(rows: Vec<sqlx::sqlite::SqliteRow>) -> Vec<(String, String)> {
    rows.into_iter().map(|r| (r.get(0), r.get(1))).collect()
}

impl Db {
    /// Read the whole access configuration.
    pub async fn access_rows(&self) -> Result<AccessRows, DbError> {
        const CTX: &str = "reading the access configuration";
        let p = &self.pool;
        let groups = sqlx::query("SELECT groupid, comment FROM user_groups ORDER BY groupid")
            .fetch_all(p)
            .await
            .ctx(CTX)?;
        let members = sqlx::query("SELECT groupid, userid FROM group_members")
            .fetch_all(p)
            .await
            .ctx(CTX)?;
        let roles = sqlx::query("SELECT roleid, privs FROM roles ORDER BY roleid")
            .fetch_all(p)
            .await
            .ctx(CTX)?;
        let acl =
            sqlx::query("SELECT path, ugid_type, ugid, roleid, propagate FROM acl ORDER BY path")
                .fetch_all(p)
                .await
                .ctx(CTX)?
                .into_iter()
                .map(|r| AclRecord {
                    path: r.get("path"),
                    ugid_type: r.get("ugid_type"),
                    ugid: r.get("ugid"),
                    roleid: r.get("roleid"),
                    propagate: r.get::<i64, _>("propagate") != 0,
                })
                .collect();
        let tokens = sqlx::query(
            "SELECT userid, tokenid, secret_sha256, privsep, expire, comment FROM api_tokens",
        )
        .fetch_all(p)
        .await
        .ctx(CTX)?
        .into_iter()
        .map(|r| TokenRecord {
            userid: r.get("userid"),
            tokenid: r.get("tokenid"),
            secret_sha256: r.get("secret_sha256"),
            privsep: r.get::<i64, _>("privsep") != 0,
            expire: r.get("expire"),
            comment: r.get("comment"),
        })
        .collect();
        let pool_members = sqlx::query("SELECT poolid, vmid FROM pool_members")
            .fetch_all(p)
            .await
            .ctx(CTX)?
            .into_iter()
            .map(|r| (r.get("poolid"), r.get::<i64, _>("vmid") as u32))
            .collect();
        let totp_users =
            sqlx::query("SELECT userid FROM user_tfa WHERE id = 'totp' AND data != ''")
                .fetch_all(p)
                .await
                .ctx(CTX)?
                .into_iter()
                .map(|r| r.get("userid"))
                .collect();
        Ok(AccessRows {
            users: self.users().await?,
            totp_users,
            groups: pairs(groups),
            members: pairs(members),
            roles: pairs(roles),
            acl,
            tokens,
            pools: self.pools().await?,
            pool_members,
        })
    }

    /// Create a group; `false` if the id is taken.
    pub async fn insert_group(&self, groupid: &str, comment: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO user_groups (groupid, comment, created_at) VALUES (?, ?, ?) ON CONFLICT (groupid) DO NOTHING",
        )
        .bind(groupid)
        .bind(comment)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("creating a group")?;
        Ok(done.rows_affected() == 1)
    }

    /// Change a group's comment.
    pub async fn update_group(&self, groupid: &str, comment: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE user_groups SET comment = ? WHERE groupid = ?")
            .bind(comment)
            .bind(groupid)
            .execute(&self.pool)
            .await
            .ctx("changing a group")?;
        Ok(())
    }

    /// Remove a group, its memberships and its ACL entries; `false` if there was none.
    pub async fn delete_group(&self, groupid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a group")?;
        sqlx::query("DELETE FROM acl WHERE ugid_type = 'group' AND ugid = ?")
            .bind(groupid)
            .execute(&mut *tx)
            .await
            .ctx("removing a group's ACL entries")?;
        let done = sqlx::query("DELETE FROM user_groups WHERE groupid = ?")
            .bind(groupid)
            .execute(&mut *tx)
            .await
            .ctx("removing a group")?;
        tx.commit().await.ctx("removing a group")?;
        Ok(done.rows_affected() == 1)
    }

    /// Create a custom role; `false` if the id is taken.
    pub async fn insert_role(&self, roleid: &str, privs: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO roles (roleid, privs) VALUES (?, ?) ON CONFLICT (roleid) DO NOTHING",
        )
        .bind(roleid)
        .bind(privs)
        .execute(&self.pool)
        .await
        .ctx("creating a role")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a custom role's privileges.
    pub async fn update_role(&self, roleid: &str, privs: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE roles SET privs = ? WHERE roleid = ?")
            .bind(privs)
            .bind(roleid)
            .execute(&self.pool)
            .await
            .ctx("changing a role")?;
        Ok(())
    }

    /// Remove a custom role and the ACL entries that grant it; `false` if there was none.
    pub async fn delete_role(&self, roleid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a role")?;
        sqlx::query("DELETE FROM acl WHERE roleid = ?")
            .bind(roleid)
            .execute(&mut *tx)
            .await
            .ctx("removing a role's ACL entries")?;
        let done = sqlx::query("DELETE FROM roles WHERE roleid = ?")
            .bind(roleid)
            .execute(&mut *tx)
            .await
            .ctx("removing a role")?;
        tx.commit().await.ctx("removing a role")?;
        Ok(done.rows_affected() == 1)
    }

    /// Grant (or re-grant with a new propagate flag) a role on a path.
    pub async fn set_acl(
        &self,
        path: &str,
        ugid_type: &str,
        ugid: &str,
        roleid: &str,
        propagate: bool,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO acl (path, ugid_type, ugid, roleid, propagate) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (path, ugid_type, ugid, roleid) DO UPDATE SET propagate = excluded.propagate",
        )
        .bind(path)
        .bind(ugid_type)
        .bind(ugid)
        .bind(roleid)
        .bind(i64::from(propagate))
        .execute(&self.pool)
        .await
        .ctx("changing the ACL")?;
        Ok(())
    }

    /// Remove an ACL entry (nothing happens if there is none).
    pub async fn delete_acl(
        &self,
        path: &str,
        ugid_type: &str,
        ugid: &str,
        roleid: &str,
    ) -> Result<(), DbError> {
        sqlx::query("DELETE FROM acl WHERE path = ? AND ugid_type = ? AND ugid = ? AND roleid = ?")
            .bind(path)
            .bind(ugid_type)
            .bind(ugid)
            .bind(roleid)
            .execute(&self.pool)
            .await
            .ctx("changing the ACL")?;
        Ok(())
    }

    /// Store a new API token; `false` if the user already has one of that name.
    pub async fn insert_token(&self, t: &TokenRecord) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO api_tokens (userid, tokenid, secret_sha256, privsep, expire, comment, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (userid, tokenid) DO NOTHING",
        )
        .bind(&t.userid)
        .bind(&t.tokenid)
        .bind(&t.secret_sha256)
        .bind(i64::from(t.privsep))
        .bind(t.expire)
        .bind(&t.comment)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("creating an API token")?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove an API token and its ACL entries; `false` if there was none.
    pub async fn delete_token(&self, userid: &str, tokenid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing an API token")?;
        sqlx::query("DELETE FROM acl WHERE ugid_type = 'token' AND ugid = ?")
            .bind(format!("{userid}!{tokenid}"))
            .execute(&mut *tx)
            .await
            .ctx("removing an API token's ACL entries")?;
        let done = sqlx::query("DELETE FROM api_tokens WHERE userid = ? AND tokenid = ?")
            .bind(userid)
            .bind(tokenid)
            .execute(&mut *tx)
            .await
            .ctx("removing an API token")?;
        tx.commit().await.ctx("removing an API token")?;
        Ok(done.rows_affected() == 1)
    }

    /// Forget a removed VM's ACL entries and pool membership (as Proxmox does).
    pub async fn remove_vm_access(&self, vmid: u32) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a VM's permissions")?;
        sqlx::query("DELETE FROM acl WHERE path = ?")
            .bind(format!("/vms/{vmid}"))
            .execute(&mut *tx)
            .await
            .ctx("removing a VM's ACL entries")?;
        sqlx::query("DELETE FROM pool_members WHERE vmid = ?")
            .bind(i64::from(vmid))
            .execute(&mut *tx)
            .await
            .ctx("removing a VM from its pool")?;
        tx.commit().await.ctx("removing a VM's permissions")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn groups_roles_acl_and_tokens_round_trip() {
        let (db, _dir) = temp_db().await;
        db.create_user("al@kiln", "").await.unwrap();
        assert!(db.insert_group("students", "class 1").await.unwrap());
        assert!(!db.insert_group("students", "again").await.unwrap());
        db.update_user(
            &UserRecord {
                userid: "al@kiln".into(),
                enabled: true,
                ..Default::default()
            },
            Some(&["students".to_owned()]),
        )
        .await
        .unwrap();
        assert!(db.insert_role("Watcher", "VM.Audit").await.unwrap());
        db.set_acl("/vms/100", "group", "students", "Watcher", true)
            .await
            .unwrap();
        db.set_acl("/vms/100", "group", "students", "Watcher", false)
            .await
            .unwrap();
        let token = TokenRecord {
            userid: "al@kiln".into(),
            tokenid: "ci".into(),
            secret_sha256: "ab".into(),
            privsep: true,
            expire: 0,
            comment: String::new(),
        };
        assert!(db.insert_token(&token).await.unwrap());
        assert!(!db.insert_token(&token).await.unwrap());
        let rows = db.access_rows().await.unwrap();
        assert_eq!(rows.members, vec![("students".into(), "al@kiln".into())]);
        assert_eq!(rows.acl.len(), 1);
        assert!(!rows.acl[0].propagate);
        assert_eq!(rows.tokens, vec![token]);
        // Removing the role removes what granted it; removing the group its memberships.
        assert!(db.delete_role("Watcher").await.unwrap());
        assert!(db.delete_group("students").await.unwrap());
        assert!(db.delete_token("al@kiln", "ci").await.unwrap());
        let rows = db.access_rows().await.unwrap();
        assert!(rows.acl.is_empty() && rows.members.is_empty() && rows.tokens.is_empty());
    }
}
