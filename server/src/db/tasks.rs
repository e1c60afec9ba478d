//! Tasks and their logs.

use sqlx::Row;

use super::{Db, DbError, QueryContext};

/// A task row.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    /// The UPID text.
    pub upid: String,
    /// Node the task concerns.
    pub node: String,
    /// Pid field of the UPID.
    pub pid: u32,
    /// Pstart field of the UPID.
    pub pstart: u64,
    /// Start, Unix seconds.
    pub starttime: i64,
    /// Task type.
    pub kind: String,
    /// Object id.
    pub id: String,
    /// User.
    pub user: String,
    /// `running` or `stopped`.
    pub status: String,
    /// `OK` or the error once stopped.
    pub exitstatus: Option<String>,
    /// End, Unix seconds, once stopped.
    pub endtime: Option<i64>,
}

/// Which tasks a listing wants.
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only tasks of this node.
    pub node: Option<String>,
    /// Only failed tasks.
    pub errors_only: bool,
    /// Only this task type.
    pub kind: Option<String>,
    /// Only tasks of this user.
    pub user: Option<String>,
    /// Skip this many (newest first).
    pub start: u32,
    /// Return at most this many.
    pub limit: u32,
}

const COLUMNS: &str =
    "upid, node, pid, pstart, starttime, type, id, userid, status, exitstatus, endtime";

fn from_row(r: sqlx::sqlite::SqliteRow) -> TaskRecord {
    TaskRecord {
        upid: r.get("upid"),
        node: r.get("node"),
        pid: r.get::<i64, _>("pid") as u32,
        pstart: r.get::<i64, _>("pstart") as u64,
        starttime: r.get("starttime"),
        kind: r.get("type"),
        id: r.get("id"),
        user: r.get("userid"),
        status: r.get("status"),
        exitstatus: r.get("exitstatus"),
        endtime: r.get("endtime"),
    }
}

impl Db {
    /// Record a task that just started.
    pub async fn insert_task(&self, t: &TaskRecord) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO tasks (upid, node, pid, pstart, starttime, type, id, userid, status) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running')",
        )
        .bind(&t.upid)
        .bind(&t.node)
        .bind(i64::from(t.pid))
        .bind(t.pstart as i64)
        .bind(t.starttime)
        .bind(&t.kind)
        .bind(&t.id)
        .bind(&t.user)
        .execute(&self.pool)
        .await
        .ctx("recording a task")?;
        Ok(())
    }

    /// Append line `n` to a task's log.
    pub async fn append_task_log(&self, upid: &str, n: u64, text: &str) -> Result<(), DbError> {
        sqlx::query("INSERT INTO task_log (upid, n, t) VALUES (?, ?, ?)")
            .bind(upid)
            .bind(n as i64)
            .bind(text)
            .execute(&self.pool)
            .await
            .ctx("writing a task log")?;
        Ok(())
    }

    /// Mark a task stopped with its exit status.
    pub async fn finish_task(
        &self,
        upid: &str,
        exitstatus: &str,
        endtime: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE tasks SET status = 'stopped', exitstatus = ?, endtime = ? WHERE upid = ?",
        )
        .bind(exitstatus)
        .bind(endtime)
        .bind(upid)
        .execute(&self.pool)
        .await
        .ctx("finishing a task")?;
        Ok(())
    }

    /// Tasks still marked running that belong to no live worker (after a server restart):
    /// mark them stopped with `reason`. Returns how many.
    pub async fn abort_running_tasks(&self, reason: &str, endtime: i64) -> Result<u64, DbError> {
        let done = sqlx::query(
            "UPDATE tasks SET status = 'stopped', exitstatus = ?, endtime = ? WHERE status = 'running'",
        )
        .bind(reason)
        .bind(endtime)
        .execute(&self.pool)
        .await
        .ctx("cleaning up interrupted tasks")?;
        Ok(done.rows_affected())
    }

    /// One task.
    pub async fn task(&self, upid: &str) -> Result<Option<TaskRecord>, DbError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tasks WHERE upid = ?"))
            .bind(upid)
            .fetch_optional(&self.pool)
            .await
            .ctx("looking up a task")?;
        Ok(row.map(from_row))
    }

    /// Tasks matching `f`, newest first.
    pub async fn tasks(&self, f: &TaskFilter) -> Result<Vec<TaskRecord>, DbError> {
        let mut sql = format!("SELECT {COLUMNS} FROM tasks WHERE 1 = 1");
        if f.node.is_some() {
            sql.push_str(" AND node = ?");
        }
        if f.errors_only {
            sql.push_str(" AND status = 'stopped' AND exitstatus <> 'OK'");
        }
        if f.kind.is_some() {
            sql.push_str(" AND type = ?");
        }
        if f.user.is_some() {
            sql.push_str(" AND userid = ?");
        }
        sql.push_str(" ORDER BY starttime DESC, pstart DESC LIMIT ? OFFSET ?");
        let mut q = sqlx::query(&sql);
        for v in [&f.node, &f.kind, &f.user].into_iter().flatten() {
            q = q.bind(v);
        }
        let rows = q
            .bind(i64::from(f.limit))
            .bind(i64::from(f.start))
            .fetch_all(&self.pool)
            .await
            .ctx("listing tasks")?;
        Ok(rows.into_iter().map(from_row).collect())
    }

    /// Lines of a task's log: `limit` lines from line `start` (0-based).
    pub async fn task_log(
        &self,
        upid: &str,
        start: u64,
        limit: u64,
    ) -> Result<Vec<(u64, String)>, DbError> {
        let rows =
            sqlx::query("SELECT n, t FROM task_log WHERE upid = ? AND n > ? ORDER BY n LIMIT ?")
                .bind(upid)
                .bind(start as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await
                .ctx("reading a task log")?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get::<i64, _>("n") as u64, r.get("t")))
            .collect())
    }
}
