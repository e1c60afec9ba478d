//! Cluster-wide settings as key/value pairs.

use sqlx::Row;

use super::{Db, DbError, QueryContext};

impl Db {
    /// Read a setting.
    pub async fn config_get(&self, key: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT value FROM cluster_config WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading cluster config")?;
        Ok(row.map(|r| r.get("value")))
    }

    /// Write a setting.
    pub async fn config_set(&self, key: &str, value: &str) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO cluster_config (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .ctx("writing cluster config")?;
        Ok(())
    }
}
