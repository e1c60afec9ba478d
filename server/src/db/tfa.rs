//! Users' second factors.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// A second factor of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct TfaRecord {
    /// `totp` or `recovery`.
    pub id: String,
    /// TOTP: the otpauth URL; recovery: the hashes of the unused keys.
    pub data: String,
    /// TOTP: the last accepted time step.
    pub last_step: u64,
    /// Unix seconds.
    pub created_at: i64,
}

impl Db {
    /// A user's second factors.
    pub async fn tfa(&self, userid: &str) -> Result<Vec<TfaRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT id, data, last_step, created_at FROM user_tfa WHERE userid = ? ORDER BY id DESC",
        )
        .bind(userid)
        .fetch_all(&self.pool)
        .await
        .ctx("reading second factors")?;
        Ok(rows
            .into_iter()
            .map(|r| TfaRecord {
                id: r.get("id"),
                data: r.get("data"),
                last_step: u64::try_from(r.get::<i64, _>("last_step")).unwrap_or(0),
                created_at: r.get("created_at"),
            })
            .collect())
    }

    /// Set (or replace) a user's second factor `id`.
    pub async fn set_tfa(
        &self,
        userid: &str,
        id: &str,
        data: &str,
        last_step: u64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO user_tfa (userid, id, data, last_step, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (userid, id) DO UPDATE SET data = excluded.data, last_step = excluded.last_step, \
             created_at = excluded.created_at",
        )
        .bind(userid)
        .bind(id)
        .bind(data)
        .bind(last_step as i64)
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .ctx("storing a second factor")?;
        Ok(())
    }

    /// Record that TOTP step `step` was used, if no later one was: `false` if another login
    /// got there first (the code was used already).
    pub async fn advance_totp_step(&self, userid: &str, step: u64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE user_tfa SET last_step = ? WHERE userid = ? AND id = 'totp' AND last_step < ?",
        )
        .bind(step as i64)
        .bind(userid)
        .bind(step as i64)
        .execute(&self.pool)
        .await
        .ctx("recording a TOTP login")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replace the stored recovery keys `old` with `new` (one key fewer); `false` if they
    /// changed meanwhile (the key was used by a concurrent login).
    pub async fn consume_recovery_key(
        &self,
        userid: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE user_tfa SET data = ? WHERE userid = ? AND id = 'recovery' AND data = ?",
        )
        .bind(new)
        .bind(userid)
        .bind(old)
        .execute(&self.pool)
        .await
        .ctx("using a recovery key")?;
        Ok(done.rows_affected() == 1)
    }

    /// Remove a user's second factor `id`; `false` if there was none.
    pub async fn delete_tfa(&self, userid: &str, id: &str) -> Result<bool, DbError> {
        let done = sqlx::query("DELETE FROM user_tfa WHERE userid = ? AND id = ?")
            .bind(userid)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("removing a second factor")?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn totp_steps_only_advance_and_recovery_keys_are_consumed_once() {
        let (db, _dir) = temp_db().await;
        db.create_user("a@kiln", "").await.unwrap();
        db.set_tfa("a@kiln", "totp", "otpauth://x", 10)
            .await
            .unwrap();
        assert!(!db.advance_totp_step("a@kiln", 10).await.unwrap());
        assert!(db.advance_totp_step("a@kiln", 11).await.unwrap());
        db.set_tfa("a@kiln", "recovery", "h1,h2", 0).await.unwrap();
        assert!(db
            .consume_recovery_key("a@kiln", "h1,h2", "h2")
            .await
            .unwrap());
        assert!(!db
            .consume_recovery_key("a@kiln", "h1,h2", "h2")
            .await
            .unwrap());
        assert_eq!(db.tfa("a@kiln").await.unwrap().len(), 2);
        assert!(db.delete_tfa("a@kiln", "totp").await.unwrap());
        assert!(!db.delete_tfa("a@kiln", "totp").await.unwrap());
    }
}
