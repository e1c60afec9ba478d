//! `/nodes/{node}/tasks...` and `/cluster/tasks`.

use axum::extract::{Path, State};
use kiln_api_types::{TaskLogLine, TaskSummary};
use serde::Deserialize;

use super::error::{ok, ApiError, ApiResult};
use super::nodes::known_node;
use super::params::{pve_bool, Query};
use crate::auth::{authorize, AuthUser, Privilege};
use crate::db::{TaskFilter, TaskRecord};
use crate::state::AppState;
use crate::tasks::Upid;
use kiln_api_types::access::NoParams;

/// Convert a row to its API form (with the progress of a running task).
pub fn summary(app: &AppState, t: TaskRecord) -> TaskSummary {
    let progress = if t.status == "running" {
        app.tasks.progress(&t.upid)
    } else {
        None
    };
    TaskSummary {
        progress,
        upid: t.upid,
        node: t.node,
        pid: t.pid,
        pstart: t.pstart,
        starttime: t.starttime,
        kind: t.kind,
        id: t.id,
        user: t.user,
        status: t.status,
        exitstatus: t.exitstatus,
        endtime: t.endtime,
    }
}

/// Whether the caller may see task `t`: its own tasks (a user also those of its tokens), and
/// every task of a node where it holds `Sys.Audit` (as Proxmox).
fn visible(user: &AuthUser, t: &TaskRecord) -> bool {
    let me = user.auth_id();
    t.user == me
        || (user.token.is_none() && t.user.starts_with(&format!("{me}!")))
        || authorize(user, &format!("/nodes/{}", t.node), Privilege::SysAudit).is_ok()
}

/// Query of `GET /nodes/{node}/tasks`.
#[derive(Debug, Deserialize)]
pub struct TaskListQuery {
    /// Skip this many.
    #[serde(default)]
    pub start: u32,
    /// At most this many (default 50).
    pub limit: Option<u32>,
    /// Only failed tasks.
    #[serde(default, deserialize_with = "pve_bool")]
    pub errors: Option<bool>,
    /// Only this task type.
    pub typefilter: Option<String>,
    /// Only this user's tasks.
    pub userfilter: Option<String>,
}

/// `GET /api2/json/nodes/{node}/tasks`.
pub async fn list_node(
    State(app): State<AppState>,
    user: AuthUser,
    Path(node): Path<String>,
    Query(q): Query<TaskListQuery>,
) -> ApiResult<Vec<TaskSummary>> {
    known_node(&app, &node).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::param("limit", "must be between 1 and 1000"));
    }
    let filter = TaskFilter {
        node: Some(node),
        errors_only: q.errors.unwrap_or(false),
        kind: q.typefilter.filter(|s| !s.is_empty()),
        user: q.userfilter.filter(|s| !s.is_empty()),
        start: q.start,
        limit,
    };
    // Unless the caller sees the whole node, only its own tasks (filtered in SQL, so that
    // paging works).
    let node_path = format!("/nodes/{}", filter.node.as_deref().unwrap_or_default());
    let sees_node = authorize(&user, &node_path, Privilege::SysAudit).is_ok();
    let filter = if sees_node {
        filter
    } else {
        TaskFilter {
            user: Some(user.auth_id()),
            ..filter
        }
    };
    let tasks = app.db.tasks(&filter).await?;
    Ok(ok(tasks
        .into_iter()
        .filter(|t| visible(&user, t))
        .map(|t| summary(&app, t))
        .collect()))
}

/// The newest tasks of the whole cluster (for the task panel).
pub async fn recent(
    app: &AppState,
    user: &AuthUser,
    limit: u32,
) -> Result<Vec<TaskSummary>, ApiError> {
    let filter = TaskFilter {
        limit,
        ..Default::default()
    };
    Ok(app
        .db
        .tasks(&filter)
        .await?
        .into_iter()
        .filter(|t| visible(user, t))
        .map(|t| summary(app, t))
        .collect())
}

/// `GET /api2/json/cluster/tasks`: the newest tasks of all nodes.
pub async fn list_cluster(
    State(app): State<AppState>,
    user: AuthUser,
) -> ApiResult<Vec<TaskSummary>> {
    Ok(ok(recent(&app, &user, 50).await?))
}

async fn find_task(app: &AppState, node: &str, upid: &str) -> Result<TaskRecord, ApiError> {
    // The route checked: the caller's own task, or Sys.Audit on the node.
    known_node(app, node).await?;
    let parsed: Upid = upid
        .parse()
        .map_err(|e: crate::tasks::InvalidUpid| ApiError::param("upid", e.to_string()))?;
    if parsed.node != node {
        return Err(ApiError::param(
            "upid",
            format!("task belongs to node '{}', not '{node}'", parsed.node),
        ));
    }
    app.db
        .task(upid)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no such task '{upid}'")))
}

/// `GET /api2/json/nodes/{node}/tasks/{upid}/status`.
pub async fn status(
    State(app): State<AppState>,
    _user: AuthUser,
    Path((node, upid)): Path<(String, String)>,
) -> ApiResult<TaskSummary> {
    Ok(ok(summary(&app, find_task(&app, &node, &upid).await?)))
}

/// Query of the task log.
#[derive(Debug, Deserialize)]
pub struct LogQuery {
    /// First line (0-based).
    #[serde(default)]
    pub start: u64,
    /// At most this many lines (default 50).
    pub limit: Option<u64>,
}

/// `GET /api2/json/nodes/{node}/tasks/{upid}/log`.
pub async fn log(
    State(app): State<AppState>,
    _user: AuthUser,
    Path((node, upid)): Path<(String, String)>,
    Query(q): Query<LogQuery>,
) -> ApiResult<Vec<TaskLogLine>> {
    let task = find_task(&app, &node, &upid).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::param("limit", "must be between 1 and 10000"));
    }
    let lines = app.db.task_log(&task.upid, q.start, limit).await?;
    Ok(ok(lines
        .into_iter()
        .map(|(n, t)| TaskLogLine { n, t })
        .collect()))
}

/// `DELETE /api2/json/nodes/{node}/tasks/{upid}`: ask a running task to stop (the route lets
/// its owner, or `Sys.Modify` on the node). A stopped live migration leaves the VM where it was.
pub async fn stop(
    State(app): State<AppState>,
    _user: AuthUser,
    Path((node, upid)): Path<(String, String)>,
    Query(_): Query<NoParams>,
) -> ApiResult<()> {
    // The route checked: the caller's own task, or Sys.Modify on the node.
    let task = find_task(&app, &node, &upid).await?;
    if task.status != "running" {
        return Err(ApiError::Conflict(format!(
            "task {upid} has already ended ({})",
            task.exitstatus.unwrap_or_default()
        )));
    }
    app.tasks
        .request_stop(&task.upid)
        .map_err(|e| ApiError::Conflict(format!("cannot stop task {upid}: {e}")))?;
    Ok(ok(()))
}
