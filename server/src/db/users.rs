//! Users of the `kiln` realm.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// A user row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UserRecord {
    /// `name@realm`.
    pub userid: String,
    /// argon2id PHC string; empty = no password (cannot log in).
    pub password_hash: String,
    /// Whether the user may log in.
    pub enabled: bool,
    /// Account expiry, Unix seconds; 0 = never.
    pub expire: i64,
    /// First name.
    pub firstname: String,
    /// Last name.
    pub lastname: String,
    /// E-mail address.
    pub email: String,
    /// Free text.
    pub comment: String,
    /// The user must have a TOTP second factor before its session may do anything else.
    pub tfa_required: bool,
    /// The user must replace its password (a one-time or administrator-set one) first.
    pub must_change_password: bool,
}

const COLUMNS: &str =
    "userid, password_hash, enabled, expire, firstname, lastname, email, comment, \
                       tfa_required, must_change_password";

fn from_row(r: sqlx::sqlite::SqliteRow) -> UserRecord {
    UserRecord {
        userid: r.get("userid"),
        password_hash: r.get("password_hash"),
        enabled: r.get::<i64, _>("enabled") != 0,
        expire: r.get("expire"),
        firstname: r.get("firstname"),
        lastname: r.get("lastname"),
        email: r.get("email"),
        comment: r.get("comment"),
        tfa_required: r.get::<i64, _>("tfa_required") != 0,
        must_change_password: r.get::<i64, _>("must_change_password") != 0,
    }
}

impl Db {
    /// Look a user up by id.
    pub async fn user(&self, userid: &str) -> Result<Option<UserRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM users WHERE userid = ?"))
            .bind(userid)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a user")?;
        Ok(row.map(from_row))
    }

    /// All users, by id.
    pub async fn users(&self) -> Result<Vec<UserRecord>, DbError> {
        let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM users ORDER BY userid"))
            .fetch_all(&self.pool)
            .await
            .ctx("listing users")?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Create a user; returns `false` if the id is taken (nothing is changed then).
    pub async fn create_user(&self, userid: &str, password_hash: &str) -> Result<bool, DbError> {
        let record = UserRecord {
            userid: userid.to_owned(),
            password_hash: password_hash.to_owned(),
            enabled: true,
            ..Default::default()
        };
        self.insert_user(&record, &[]).await
    }

    /// Create a user with all its fields and group memberships, in one transaction; returns
    /// `false` if the id is taken (nothing is changed then).
    pub async fn insert_user(&self, u: &UserRecord, groups: &[String]) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("creating a user")?;
        let done = sqlx::query(
            "INSERT INTO users (userid, password_hash, enabled, expire, firstname, lastname, email, comment, \
             tfa_required, must_change_password, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (userid) DO NOTHING",
        )
        .bind(&u.userid)
        .bind(&u.password_hash)
        .bind(i64::from(u.enabled))
        .bind(u.expire)
        .bind(&u.firstname)
        .bind(&u.lastname)
        .bind(&u.email)
        .bind(&u.comment)
        .bind(i64::from(u.tfa_required))
        .bind(i64::from(u.must_change_password))
        .bind(unix_now())
        .execute(&mut *tx)
        .await
        .ctx("creating a user")?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for g in groups {
            sqlx::query(
                "INSERT INTO group_members (groupid, userid) VALUES (?, ?) ON CONFLICT DO NOTHING",
            )
            .bind(g)
            .bind(&u.userid)
            .execute(&mut *tx)
            .await
            .ctx("adding a user to a group")?;
        }
        tx.commit().await.ctx("creating a user")?;
        Ok(true)
    }

    /// Change a user's fields (not its password); with `groups`, replace its memberships.
    pub async fn update_user(
        &self,
        u: &UserRecord,
        groups: Option<&[String]>,
    ) -> Result<(), DbError> {
        let mut tx = self.pool.begin().await.ctx("changing a user")?;
        sqlx::query(
            "UPDATE users SET enabled = ?, expire = ?, firstname = ?, lastname = ?, email = ?, comment = ?, \
             tfa_required = ? WHERE userid = ?",
        )
        .bind(i64::from(u.enabled))
        .bind(u.expire)
        .bind(&u.firstname)
        .bind(&u.lastname)
        .bind(&u.email)
        .bind(&u.comment)
        .bind(i64::from(u.tfa_required))
        .bind(&u.userid)
        .execute(&mut *tx)
        .await
        .ctx("changing a user")?;
        if let Some(groups) = groups {
            sqlx::query("DELETE FROM group_members WHERE userid = ?")
                .bind(&u.userid)
                .execute(&mut *tx)
                .await
                .ctx("changing a user's groups")?;
            for g in groups {
                sqlx::query("INSERT INTO group_members (groupid, userid) VALUES (?, ?) ON CONFLICT DO NOTHING")
                    .bind(g)
                    .bind(&u.userid)
                    .execute(&mut *tx)
                    .await
                    .ctx("changing a user's groups")?;
            }
        }
        tx.commit().await.ctx("changing a user")
    }

    /// Remove a user with its memberships, tokens and ACL entries (its own and its tokens');
    /// `false` if there was no such user.
    pub async fn delete_user(&self, userid: &str) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await.ctx("removing a user")?;
        sqlx::query(
            "DELETE FROM acl WHERE (ugid_type = 'user' AND ugid = ?) \
             OR (ugid_type = 'token' AND substr(ugid, 1, ?) = ?)",
        )
        .bind(userid)
        .bind(userid.len() as i64 + 1)
        .bind(format!("{userid}!"))
        .execute(&mut *tx)
        .await
        .ctx("removing a user's ACL entries")?;
        let done = sqlx::query("DELETE FROM users WHERE userid = ?")
            .bind(userid)
            .execute(&mut *tx)
            .await
            .ctx("removing a user")?;
        tx.commit().await.ctx("removing a user")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a user's password hash, and whether the user must replace it in turn (a
    /// password set by someone else); returns `false` if there is no such user.
    pub async fn set_password_hash(
        &self,
        userid: &str,
        hash: &str,
        must_change: bool,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = ?, must_change_password = ? WHERE userid = ?",
        )
        .bind(hash)
        .bind(i64::from(must_change))
        .bind(userid)
        .execute(&self.pool)
        .await
        .ctx("changing a password")?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn creating_a_user_twice_keeps_the_first() {
        let (db, _dir) = temp_db().await;
        assert!(db.create_user("alice@kiln", "h1").await.unwrap());
        assert!(!db.create_user("alice@kiln", "h2").await.unwrap());
        let u = db.user("alice@kiln").await.unwrap().unwrap();
        assert_eq!(u.password_hash, "h1");
        assert!(u.enabled);
        assert_eq!(u.expire, 0);
        assert!(db.user("bob@kiln").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn removing_a_user_removes_its_acl_entries_and_tokens_entries() {
        let (db, _dir) = temp_db().await;
        db.insert_user(
            &UserRecord {
                userid: "al@kiln".into(),
                enabled: true,
                ..Default::default()
            },
            &[],
        )
        .await
        .unwrap();
        db.set_acl("/", "user", "al@kiln", "PVEAuditor", true)
            .await
            .unwrap();
        db.set_acl("/", "token", "al@kiln!t", "PVEAuditor", true)
            .await
            .unwrap();
        db.set_acl("/", "token", "al@kiln2!t", "PVEAuditor", true)
            .await
            .unwrap();
        assert!(db.delete_user("al@kiln").await.unwrap());
        let rows = db.access_rows().await.unwrap();
        assert_eq!(rows.acl.len(), 1);
        assert_eq!(rows.acl[0].ugid, "al@kiln2!t");
        assert!(!db.delete_user("al@kiln").await.unwrap());
    }
}
