//! The database: every SQL statement of the server lives below this module.
//!
//! Callers see typed methods on [`Db`], never SQL, so that a PostgreSQL backend can be added
//! behind the same methods later. Queries use only portable SQL and `?` placeholders.

mod access;
mod audit;
mod cluster_config;
mod ha;
mod join_tokens;
mod labs;
mod nodes;
mod pools;
mod tasks;
mod tfa;
mod users;
mod vms;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use access::{AccessRows, TokenRecord};
pub use audit::AuditRecord;
pub use ha::{HaResourceRecord, HaRuleRecord, HaServiceRecord};
pub use join_tokens::RedeemError;
pub use labs::{LabRecord, LabStudentRecord, NewLab};
pub use nodes::NodeRecord;
pub use pools::PoolRecord;
pub use tasks::{TaskFilter, TaskRecord};
pub use users::UserRecord;
pub use vms::VmRecord;

/// A database failure, with what the server was doing when it happened.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// Opening or migrating the database failed.
    #[error("cannot open the database at {path}: {source}")]
    Open {
        /// Database file.
        path: String,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// Applying the schema migrations failed.
    #[error("cannot apply database migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("database error while {context}: {source}")]
    Query {
        /// What the server was doing.
        context: &'static str,
        /// Cause.
        #[source]
        source: sqlx::Error,
    },
    /// A row held a value the code cannot interpret.
    #[error("corrupt database row while {context}: {detail}")]
    Corrupt {
        /// What the server was doing.
        context: &'static str,
        /// What was wrong.
        detail: String,
    },
}

/// Attach a context to a sqlx error.
pub(crate) trait QueryContext<T> {
    /// Map the error to [`DbError::Query`] with `context`.
    fn ctx(self, context: &'static str) -> Result<T, DbError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, context: &'static str) -> Result<T, DbError> {
        self.map_err(|source| DbError::Query { context, source })
    }
}

/// Handle to the server's database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Open (creating if needed) the SQLite database at `path` in WAL mode and apply the
    /// migrations in `migrations/`.
    pub async fn open(path: &Path) -> Result<Self, DbError> {
        let url = format!("sqlite://{}", path.display());
        let open_err = |source| DbError::Open {
            path: path.display().to_string(),
            source,
        };
        let options = SqliteConnectOptions::from_str(&url)
            .map_err(open_err)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(open_err)?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Db { pool })
    }

    /// The connection pool (for the session store, which brings its own queries).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Current time in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::Db;

    /// A fresh database in a temporary directory (kept alive by the returned guard).
    pub async fn temp_db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("kiln.db"))
            .await
            .expect("open db");
        (db, dir)
    }
}
