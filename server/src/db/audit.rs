//! The audit log of state-changing API calls.

use sqlx::Row;

use super::{Db, DbError, QueryContext};

/// One audit record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AuditRecord {
    /// Sequence number (0 for a record not yet stored).
    pub id: i64,
    /// Unix seconds.
    pub time: i64,
    /// Auth id, or empty.
    pub userid: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// HTTP status.
    pub status: u16,
    /// Client address.
    pub client: String,
}

impl Db {
    /// Append a record.
    pub async fn append_audit(&self, r: &AuditRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit_log (time, userid, method, path, status, client) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(r.time)
        .bind(&r.userid)
        .bind(&r.method)
        .bind(&r.path)
        .bind(i64::from(r.status))
        .bind(&r.client)
        .execute(&self.pool)
        .await
        .ctx("writing the audit log")?;
        Ok(())
    }

    /// Records, newest first; only `userid`'s when given.
    pub async fn audit_log(
        &self,
        userid: Option<&str>,
        start: u32,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT id, time, userid, method, path, status, client FROM audit_log \
             WHERE (? IS NULL OR userid = ?) ORDER BY id DESC LIMIT ? OFFSET ?",
        )
        .bind(userid)
        .bind(userid)
        .bind(i64::from(limit))
        .bind(i64::from(start))
        .fetch_all(&self.pool)
        .await
        .ctx("reading the audit log")?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRecord {
                id: r.get("id"),
                time: r.get("time"),
                userid: r.get("userid"),
                method: r.get("method"),
                path: r.get("path"),
                status: u16::try_from(r.get::<i64, _>("status")).unwrap_or(0),
                client: r.get("client"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;

    #[tokio::test]
    async fn the_audit_log_lists_newest_first_and_filters_by_user() {
        let (db, _dir) = temp_db().await;
        for (i, user) in ["a@kiln", "b@kiln", "a@kiln"].into_iter().enumerate() {
            db.append_audit(&AuditRecord {
                time: i as i64,
                userid: user.into(),
                method: "POST".into(),
                path: format!("/p{i}"),
                status: 200,
                client: "127.0.0.1".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let all = db.audit_log(None, 0, 10).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.path.as_str()).collect::<Vec<_>>(),
            ["/p2", "/p1", "/p0"]
        );
        let a = db.audit_log(Some("a@kiln"), 0, 10).await.unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(db.audit_log(None, 1, 1).await.unwrap()[0].path, "/p1");
    }
}
