//! One-time join tokens, and the join that redeems one.

use sqlx::{Acquire, Row};

use super::nodes::{insert_node, NodeRecord};
use super::{unix_now, Db, DbError, QueryContext};

/// Why a join token cannot be redeemed.
#[derive(Debug, thiserror::Error)]
pub enum RedeemError {
    /// No such token, or the secret does not match.
    #[error("unknown join token; create a new one with `kiln-server join-token` or in the web UI")]
    Unknown,
    /// The token has expired.
    #[error(
        "the join token expired; create a new one with `kiln-server join-token` or in the web UI"
    )]
    Expired,
    /// The token was used already.
    #[error(
        "the join token was already used (by node {0}); tokens are single-use, create a new one"
    )]
    AlreadyUsed(String),
    /// A node of that name exists.
    #[error("a node named {0} is already part of the cluster; choose another name")]
    NameTaken(String),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl Db {
    /// Store a new join token.
    pub async fn create_join_token(
        &self,
        id: &str,
        secret_sha256: &str,
        created_by: &str,
        expires_at: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO join_tokens (id, secret_sha256, created_by, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(secret_sha256)
        .bind(created_by)
        .bind(unix_now())
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .ctx("creating a join token")?;
        Ok(())
    }

    /// Redeem token `id` (whose secret hashes to `secret_sha256`) for node `name` and record the
    /// node, atomically: either the token is spent and the node exists, or nothing changed.
    /// `secret_matches` compares the stored hash with the presented one in constant time.
    pub async fn redeem_join_token(
        &self,
        id: &str,
        secret_matches: impl FnOnce(&str) -> bool,
        name: &str,
        api_url: &str,
        cert_fingerprint: &str,
    ) -> Result<NodeRecord, RedeemError> {
        let mut conn = self.pool.acquire().await.ctx("joining a node")?;
        let mut tx = conn.begin().await.ctx("joining a node")?;
        let row = sqlx::query(
            "SELECT secret_sha256, expires_at, used_at, used_by_node FROM join_tokens WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .ctx("looking up a join token")?;
        let Some(row) = row else {
            return Err(RedeemError::Unknown);
        };
        let stored: String = row.get("secret_sha256");
        if !secret_matches(&stored) {
            return Err(RedeemError::Unknown);
        }
        if row.get::<Option<i64>, _>("used_at").is_some() {
            let by: Option<String> = row.get("used_by_node");
            return Err(RedeemError::AlreadyUsed(by.unwrap_or_default()));
        }
        let now = unix_now();
        if row.get::<i64, _>("expires_at") <= now {
            return Err(RedeemError::Expired);
        }
        // The `used_at IS NULL` guard makes a concurrent redeem of the same token lose.
        let spent = sqlx::query(
            "UPDATE join_tokens SET used_at = ?, used_by_node = ? WHERE id = ? AND used_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .bind(id)
        .execute(&mut *tx)
        .await
        .ctx("spending a join token")?;
        if spent.rows_affected() != 1 {
            return Err(RedeemError::AlreadyUsed(String::new()));
        }
        let Some(node) = insert_node(&mut tx, name, api_url, cert_fingerprint).await? else {
            return Err(RedeemError::NameTaken(name.to_owned()));
        };
        tx.commit().await.ctx("joining a node")?;
        Ok(node)
    }
}

impl Db {
    /// Who created token `id`, if it exists.
    pub async fn join_token_creator(&self, id: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT created_by FROM join_tokens WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a join token")?;
        Ok(row.map(|r| r.get("created_by")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn a_join_token_is_single_use() {
        let (db, _dir) = temp_db().await;
        db.create_join_token("t1", "hash", "root@kiln", unix_now() + 60)
            .await
            .unwrap();
        let node = db
            .redeem_join_token("t1", |h| h == "hash", "n1", "https://127.0.0.1:1", "fp")
            .await
            .unwrap();
        assert_eq!(node.name, "n1");
        let again = db
            .redeem_join_token("t1", |h| h == "hash", "n2", "https://127.0.0.1:2", "fp")
            .await;
        assert!(matches!(again, Err(RedeemError::AlreadyUsed(n)) if n == "n1"));
        assert!(db.node("n2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_expired_or_wrong_token_changes_nothing() {
        let (db, _dir) = temp_db().await;
        db.create_join_token("old", "hash", "root@kiln", unix_now() - 1)
            .await
            .unwrap();
        let expired = db
            .redeem_join_token("old", |h| h == "hash", "n1", "https://x:1", "fp")
            .await;
        assert!(matches!(expired, Err(RedeemError::Expired)));
        let wrong = db
            .redeem_join_token("old", |_| false, "n1", "https://x:1", "fp")
            .await;
        assert!(matches!(wrong, Err(RedeemError::Unknown)));
        assert!(db.nodes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_taken_node_name_does_not_spend_the_token() {
        let (db, _dir) = temp_db().await;
        for id in ["a", "b"] {
            db.create_join_token(id, "hash", "root@kiln", unix_now() + 60)
                .await
                .unwrap();
        }
        db.redeem_join_token("a", |_| true, "n1", "https://x:1", "fp")
            .await
            .unwrap();
        let dup = db
            .redeem_join_token("b", |_| true, "n1", "https://x:2", "fp")
            .await;
        assert!(matches!(dup, Err(RedeemError::NameTaken(_))));
        // Token b is still usable for another name.
        db.redeem_join_token("b", |_| true, "n2", "https://x:2", "fp")
            .await
            .unwrap();
    }
}
