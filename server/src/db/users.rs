//! Users of the `kiln` realm.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// A user row.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    /// `name@realm`.
    pub userid: String,
    /// argon2id PHC string.
    pub password_hash: String,
    /// Whether the user may log in.
    pub enabled: bool,
    /// Account expiry, Unix seconds; 0 = never.
    pub expire: i64,
}

impl Db {
    /// Look a user up by id.
    pub async fn user(&self, userid: &str) -> Result<Option<UserRecord>, DbError> {
        let row = sqlx::query(
            "SELECT userid, password_hash, enabled, expire FROM users WHERE userid = ?",
        )
        .bind(userid)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up a user")?;
        Ok(row.map(|r| UserRecord {
            userid: r.get("userid"),
            password_hash: r.get("password_hash"),
            enabled: r.get::<i64, _>("enabled") != 0,
            expire: r.get("expire"),
        }))
    }

    /// Create a user; returns `false` if the id is taken (nothing is changed then).
    pub async fn create_user(&self, userid: &str, password_hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO users (userid, password_hash, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (userid) DO NOTHING",
        )
        .bind(userid)
        .bind(password_hash)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("creating a user")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace a user's password hash; returns `false` if there is no such user.
    pub async fn set_password_hash(&self, userid: &str, hash: &str) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE users SET password_hash = ? WHERE userid = ?")
            .bind(hash)
            .bind(userid)
            .execute(&self.pool)
            .await
            .ctx("changing a password")?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
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
}
