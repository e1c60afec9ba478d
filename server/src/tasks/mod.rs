//! Tasks: every long action gets a UPID, a status, an exit status and a log in the database,
//! and the UI's task panel hears about every start and finish.

mod upid;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use upid::{InvalidUpid, Upid};

use crate::cluster::ChangeSignal;
use crate::db::{unix_now, Db, DbError, TaskRecord};

/// Exit status of a successful task.
pub const OK: &str = "OK";

/// Starts tasks.
#[derive(Debug)]
pub struct TaskManager {
    db: Db,
    changes: Arc<ChangeSignal>,
    pid: u32,
    counter: AtomicU64,
    live: LiveTasks,
}

/// What running tasks share with the API beyond the database: their progress and the stop
/// request (Proxmox's `DELETE /nodes/{node}/tasks/{upid}`).
#[derive(Debug, Clone, Default)]
struct LiveTasks(Arc<Mutex<HashMap<Arc<str>, Live>>>);

#[derive(Debug)]
struct Live {
    progress: Option<f64>,
    stop: watch::Sender<bool>,
}

impl LiveTasks {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Live>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Why [`TaskManager::request_stop`] did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// The task is not running (here).
    #[error("the task is not running")]
    NotRunning,
    /// The task's work cannot be interrupted.
    #[error("this task cannot be stopped; wait for it to end")]
    NotStoppable,
}

impl TaskManager {
    /// A task manager writing to `db` and announcing on `changes`.
    pub fn new(db: Db, changes: Arc<ChangeSignal>) -> Self {
        TaskManager {
            db,
            changes,
            pid: std::process::id(),
            // Seeded with the start time so UPIDs stay unique across restarts with the same pid.
            counter: AtomicU64::new((unix_now() as u64) & 0xFFFF_FFFF),
            live: LiveTasks::default(),
        }
    }

    /// Progress (0.0..=1.0) a running task reported, if any.
    pub fn progress(&self, upid: &str) -> Option<f64> {
        self.live.map().get(upid).and_then(|l| l.progress)
    }

    /// Ask a running task to stop. Only tasks whose work watches for it (see
    /// [`TaskLogger::stop_requested`]) can be stopped.
    pub fn request_stop(&self, upid: &str) -> Result<(), StopError> {
        let map = self.live.map();
        let live = map.get(upid).ok_or(StopError::NotRunning)?;
        if live.stop.receiver_count() == 0 {
            return Err(StopError::NotStoppable);
        }
        live.stop.send_replace(true);
        Ok(())
    }

    /// Start a task of type `kind` on object `id` for `user`, concerning `node`.
    pub async fn start(
        &self,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
    ) -> Result<TaskHandle, DbError> {
        let upid = Upid {
            node: node.to_owned(),
            pid: self.pid,
            pstart: self.counter.fetch_add(1, Ordering::Relaxed) & 0xFFFF_FFFF,
            starttime: unix_now(),
            kind: kind.to_owned(),
            id: id.to_owned(),
            user: user.to_owned(),
        };
        let text = upid.to_string();
        self.db
            .insert_task(&TaskRecord {
                upid: text.clone(),
                node: upid.node.clone(),
                pid: upid.pid,
                pstart: upid.pstart,
                starttime: upid.starttime,
                kind: upid.kind.clone(),
                id: upid.id.clone(),
                user: upid.user.clone(),
                status: "running".into(),
                exitstatus: None,
                endtime: None,
            })
            .await?;
        tracing::info!(upid = %text, "task started");
        let upid: Arc<str> = Arc::from(text.as_str());
        self.live.map().insert(
            upid.clone(),
            Live {
                progress: None,
                stop: watch::channel(false).0,
            },
        );
        self.changes.notify();
        Ok(TaskHandle {
            log: TaskLogger {
                upid,
                db: self.db.clone(),
                lines: Arc::new(AtomicU64::new(0)),
                live: self.live.clone(),
                changes: self.changes.clone(),
            },
            changes: self.changes.clone(),
            finished: false,
        })
    }

    /// Start a task and run `work` in the background; returns the UPID at once. `hold` (e.g.
    /// a VM lock) is released when the task has finished.
    pub async fn spawn<F, Fut>(
        &self,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        hold: impl Send + 'static,
        work: F,
    ) -> Result<String, DbError>
    where
        F: FnOnce(TaskLogger) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
    {
        let task = self.start(node, kind, id, user).await?;
        let upid = task.upid().to_owned();
        let logger = task.logger();
        tokio::spawn(async move {
            let result = work(logger).await;
            if let Err(e) = task.finish(result).await {
                tracing::error!("cannot record the end of a task: {e}");
            }
            drop(hold);
        });
        Ok(upid)
    }
}

/// Writes lines to a task's log; cheap to clone into the task's work.
#[derive(Debug, Clone)]
pub struct TaskLogger {
    upid: Arc<str>,
    db: Db,
    lines: Arc<AtomicU64>,
    live: LiveTasks,
    changes: Arc<ChangeSignal>,
}

impl TaskLogger {
    /// The task's UPID.
    pub fn upid(&self) -> &str {
        &self.upid
    }

    /// Append a line to the task log (a failure to write it is logged, not returned: the
    /// task's work goes on).
    pub async fn log(&self, line: impl Into<String>) {
        let line = line.into();
        let n = self.lines.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(upid = %self.upid, "{line}");
        if let Err(e) = self.db.append_task_log(&self.upid, n, &line).await {
            tracing::error!(upid = %self.upid, "cannot write task log: {e}");
        }
    }

    /// Report progress (0.0..=1.0); the UI shows it as a bar while the task runs.
    pub fn progress(&self, fraction: f64) {
        if let Some(live) = self.live.map().get_mut(&self.upid) {
            live.progress = Some(fraction.clamp(0.0, 1.0));
        }
        self.changes.notify();
    }

    /// Makes this task stoppable: the receiver turns `true` when someone asks it to stop.
    pub fn stop_requested(&self) -> watch::Receiver<bool> {
        match self.live.map().get(&self.upid) {
            Some(live) => live.stop.subscribe(),
            None => watch::channel(false).1,
        }
    }
}

/// A running task: write its log, then finish it. Dropping it unfinished marks it failed.
#[derive(Debug)]
pub struct TaskHandle {
    log: TaskLogger,
    changes: Arc<ChangeSignal>,
    finished: bool,
}

impl TaskHandle {
    /// The task's UPID.
    pub fn upid(&self) -> &str {
        self.log.upid()
    }

    /// A logger for this task's work.
    pub fn logger(&self) -> TaskLogger {
        self.log.clone()
    }

    /// Append a line to the task log.
    pub async fn log(&mut self, line: impl Into<String>) -> Result<(), DbError> {
        let line = line.into();
        let n = self.log.lines.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(upid = %self.log.upid, "{line}");
        self.log.db.append_task_log(&self.log.upid, n, &line).await
    }

    /// Finish the task: `Ok` gives exit status `OK`, `Err(reason)` gives the reason (also
    /// written as the last log line, as Proxmox does with `TASK ERROR: ...`).
    pub async fn finish(mut self, result: Result<(), String>) -> Result<(), DbError> {
        self.finished = true;
        self.log.live.map().remove(&self.log.upid);
        let status = match &result {
            Ok(()) => {
                self.log("TASK OK").await?;
                OK.to_owned()
            }
            Err(reason) => {
                self.log(format!("TASK ERROR: {reason}")).await?;
                reason.clone()
            }
        };
        self.log
            .db
            .finish_task(&self.log.upid, &status, unix_now())
            .await?;
        self.changes.notify();
        Ok(())
    }
}

impl Drop for TaskHandle {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.log.live.map().remove(&self.log.upid);
        let (db, upid, changes) = (
            self.log.db.clone(),
            self.log.upid.to_string(),
            self.changes.clone(),
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let reason = "task aborted (worker ended without a result)";
                if let Err(e) = db.finish_task(&upid, reason, unix_now()).await {
                    tracing::error!(%upid, "cannot mark aborted task: {e}");
                }
                changes.notify();
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::test_util::temp_db;
    use crate::db::TaskFilter;

    #[tokio::test]
    async fn a_task_records_its_log_and_exit_status() {
        let (db, _dir) = temp_db().await;
        let tm = TaskManager::new(db.clone(), Arc::default());
        let mut t = tm.start("n1", "nodejoin", "n1", "root@kiln").await.unwrap();
        let upid = t.upid().to_owned();
        assert_eq!(db.task(&upid).await.unwrap().unwrap().status, "running");
        t.log("signing certificate").await.unwrap();
        t.finish(Err("node name taken".into())).await.unwrap();
        let rec = db.task(&upid).await.unwrap().unwrap();
        assert_eq!(rec.status, "stopped");
        assert_eq!(rec.exitstatus.as_deref(), Some("node name taken"));
        let log = db.task_log(&upid, 0, 50).await.unwrap();
        assert_eq!(log[0], (1, "signing certificate".to_string()));
        assert_eq!(log[1].1, "TASK ERROR: node name taken");
        let errors = TaskFilter {
            errors_only: true,
            limit: 10,
            ..Default::default()
        };
        assert_eq!(db.tasks(&errors).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn upids_are_unique_and_parse() {
        let (db, _dir) = temp_db().await;
        let tm = TaskManager::new(db, Arc::default());
        let a = tm.start("n1", "t", "", "root@kiln").await.unwrap();
        let b = tm.start("n1", "t", "", "root@kiln").await.unwrap();
        assert_ne!(a.upid(), b.upid());
        assert!(a.upid().parse::<Upid>().is_ok());
        a.finish(Ok(())).await.unwrap();
        b.finish(Ok(())).await.unwrap();
    }

    #[tokio::test]
    async fn a_dropped_task_is_marked_aborted() {
        let (db, _dir) = temp_db().await;
        let tm = TaskManager::new(db.clone(), Arc::default());
        let upid = tm
            .start("n1", "t", "", "root@kiln")
            .await
            .unwrap()
            .upid()
            .to_owned();
        for _ in 0..50 {
            if db.task(&upid).await.unwrap().unwrap().status == "stopped" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("dropped task still running");
    }
}
