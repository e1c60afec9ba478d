//! Tearing a lab down (task `labdestroy`): every student VM is stopped and removed, every
//! student pool removed, then the lab itself. Its pool, its roster group and the accounts
//! stay (they may serve the next lab; remove them through the access API). A VM that cannot
//! be removed now (its node offline, another operation running) keeps its student's record
//! and pool and the lab, and the task says so: run it again later.

use super::pools::remove_student_pool;
use crate::db::LabStudentRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::{lifecycle, observe, Observed};

/// The task's work.
pub async fn run(app: AppState, labid: String, log: TaskLogger) -> Result<(), String> {
    let students = app
        .db
        .lab_students(&labid)
        .await
        .map_err(|e| e.to_string())?;
    let total = students.len().max(1);
    let mut failed = Vec::new();
    for (i, s) in students.iter().enumerate() {
        if let Err(e) = remove_student(&app, &labid, s, &log).await {
            log.log(format!("{}: {e}", s.userid)).await;
            failed.push(format!("{}: {e}", s.userid));
        }
        log.progress((i + 1) as f64 / total as f64);
    }
    app.changes.notify();
    if !failed.is_empty() {
        return Err(format!(
            "lab {labid} is not removed yet ({}); run the teardown again once that is fixed",
            failed.join("; ")
        ));
    }
    app.db.delete_lab(&labid).await.map_err(|e| e.to_string())?;
    app.changes.notify();
    log.log(format!(
        "lab {labid} removed; its pool, roster group and accounts stay"
    ))
    .await;
    Ok(())
}

async fn remove_student(
    app: &AppState,
    labid: &str,
    s: &LabStudentRecord,
    log: &TaskLogger,
) -> Result<(), String> {
    let vm = match s.vmid {
        Some(vmid) => app.db.vm(vmid).await.map_err(|e| e.to_string())?,
        None => None,
    };
    if let Some(vm) = vm {
        let _guard = app
            .vm_locks
            .lock(vm.vmid, "qmdestroy")
            .map_err(|e| e.to_string())?;
        match observe(app, &vm) {
            Observed::Unknown => {
                return Err(format!(
                    "node {} is offline, so VM {} may still run there",
                    vm.node, vm.vmid
                ))
            }
            seen if seen.is_active() => {
                lifecycle::stop(app.clone(), vm.clone(), log.clone()).await?
            }
            _ => {}
        }
        lifecycle::destroy(app.clone(), vm, log.clone()).await?;
    }
    remove_student_pool(app, &s.poolid).await?;
    app.db
        .delete_lab_student(labid, &s.userid)
        .await
        .map_err(|e| e.to_string())
}
