//! Nodes that joined the cluster.

use sqlx::Row;

use super::{unix_now, Db, DbError, QueryContext};

/// A joined node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// Numeric id (Proxmox's `nodeid`).
    pub nodeid: i64,
    /// Node name.
    pub name: String,
    /// URL of its node API.
    pub api_url: String,
    /// SHA-256 of its certificate (hex).
    pub cert_fingerprint: String,
    /// Join time, Unix seconds.
    pub joined_at: i64,
}

fn from_row(r: sqlx::sqlite::SqliteRow) -> NodeRecord {
    NodeRecord {
        nodeid: r.get("nodeid"),
        name: r.get("name"),
        api_url: r.get("api_url"),
        cert_fingerprint: r.get("cert_fingerprint"),
        joined_at: r.get("joined_at"),
    }
}

impl Db {
    /// All nodes, by name.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>, DbError> {
        let rows = sqlx::query(
            "SELECT nodeid, name, api_url, cert_fingerprint, joined_at FROM nodes ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("listing nodes")?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// One node by name.
    pub async fn node(&self, name: &str) -> Result<Option<NodeRecord>, DbError> {
        let row = sqlx::query(
            "SELECT nodeid, name, api_url, cert_fingerprint, joined_at FROM nodes WHERE name = ?",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx("looking up a node")?;
        Ok(row.map(from_row))
    }
}

impl Db {
    /// The boot id node `name` last reported (`None` before its first report).
    pub async fn node_boot_id(&self, name: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT boot_id FROM nodes WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .ctx("reading a node's boot id")?;
        Ok(row.and_then(|r| r.get::<Option<String>, _>("boot_id")))
    }

    /// Record the boot id node `name` reports.
    pub async fn set_node_boot_id(&self, name: &str, boot_id: &str) -> Result<(), DbError> {
        sqlx::query("UPDATE nodes SET boot_id = ? WHERE name = ?")
            .bind(boot_id)
            .bind(name)
            .execute(&self.pool)
            .await
            .ctx("recording a node's boot id")?;
        Ok(())
    }
}

/// Insert a node inside a transaction (the join redeems its token in the same one).
pub(super) async fn insert_node(
    tx: &mut sqlx::SqliteConnection,
    name: &str,
    api_url: &str,
    cert_fingerprint: &str,
) -> Result<Option<NodeRecord>, DbError> {
    let done = sqlx::query(
        "INSERT INTO nodes (name, api_url, cert_fingerprint, joined_at) VALUES (?, ?, ?, ?) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(api_url)
    .bind(cert_fingerprint)
    .bind(unix_now())
    .execute(&mut *tx)
    .await
    .ctx("adding a node")?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT nodeid, name, api_url, cert_fingerprint, joined_at FROM nodes WHERE name = ?",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .ctx("reading a new node")?;
    Ok(Some(from_row(row)))
}
