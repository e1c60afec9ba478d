//! Deploying a lab (task `labdeploy`): one clone of the template for every student on the
//! roster who has no VM yet, several at a time, with the task's progress and one log line per
//! student. A second deployment adds only the students still missing (new on the roster, or
//! whose VM failed or was removed).
//!
//! Each student's part is all or nothing: the student pool (created if missing), the clone
//! and the student's role on it. If a step fails, what this deployment made for the student is
//! removed again and the reason is recorded, for the lab's dashboard and the task's result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

use super::pools::{ensure_student_pool, grant_student, remove_student_pool};
use super::{roster, student_pool_id, student_vm_name};
use crate::access::pools::remove_vm;
use crate::db::{LabRecord, LabStudentRecord, VmRecord};
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::clone::{self, CloneError, Reserved};
use crate::vms::MIN_VMID;

/// Clones made at once.
const PARALLEL: usize = 4;
/// Tries to find a free VM id while other clones and creations take ids too.
const ID_ATTEMPTS: usize = 50;

/// The template of `lab`, which must still be one.
pub async fn template_of(app: &AppState, lab: &LabRecord) -> Result<VmRecord, String> {
    app.db
        .vm(lab.template)
        .await
        .map_err(|e| e.to_string())?
        .filter(|vm| vm.template)
        .ok_or_else(|| {
            format!(
                "VM {} (the template of lab {}) no longer exists or is no template",
                lab.template, lab.labid
            )
        })
}

/// The node of `lab`'s VMs: its own choice, or the template's node.
pub fn node_of(lab: &LabRecord, template: &VmRecord) -> String {
    if lab.node.is_empty() {
        template.node.clone()
    } else {
        lab.node.clone()
    }
}

/// The students of `lab` without a VM, with what an earlier deployment recorded of them.
async fn missing(
    app: &AppState,
    lab: &LabRecord,
) -> Result<(usize, Vec<(String, Option<LabStudentRecord>)>), String> {
    let students = roster(&app.access.current(), lab);
    let mut records: HashMap<String, LabStudentRecord> = app
        .db
        .lab_students(&lab.labid)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| (r.userid.clone(), r))
        .collect();
    let mut todo = Vec::new();
    for userid in &students {
        let prev = records.remove(userid);
        if let Some(vmid) = prev.as_ref().and_then(|p| p.vmid) {
            if app.db.vm(vmid).await.map_err(|e| e.to_string())?.is_some() {
                continue;
            }
        }
        todo.push((userid.clone(), prev));
    }
    Ok((students.len(), todo))
}

/// The task's work.
pub async fn run(app: AppState, lab: LabRecord, log: TaskLogger) -> Result<(), String> {
    let template = template_of(&app, &lab).await?;
    let node = node_of(&lab, &template);
    let (enrolled, todo) = missing(&app, &lab).await?;
    if todo.is_empty() {
        log.log(format!(
            "all {enrolled} student(s) of lab {} have a VM; nothing to do",
            lab.labid
        ))
        .await;
        log.progress(1.0);
        return Ok(());
    }
    let total = todo.len();
    log.log(format!(
        "lab {}: cloning template VM {} ({}) for {total} student(s) on node {node}, {PARALLEL} at a time ({} of {enrolled} have a VM already)",
        lab.labid,
        template.vmid,
        template.name,
        enrolled - total
    ))
    .await;
    log.progress(0.0);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<(), String>> = futures::stream::iter(todo)
        .map(|(userid, prev)| {
            let (app, lab, template, node, log, done) = (&app, &lab, &template, &node, &log, &done);
            async move {
                let result = deploy_one(app, lab, template, node, &userid, prev, log).await;
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                log.progress(n as f64 / total as f64);
                result
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    app.changes.notify();
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() {
        log.log(format!("deployed {total} VM(s)")).await;
        Ok(())
    } else {
        Err(format!(
            "{} of {total} student VM(s) deployed; {}",
            total - failed.len(),
            failed.join("; ")
        ))
    }
}

/// One student: make the pool, clone, grant; record the outcome.
async fn deploy_one(
    app: &AppState,
    lab: &LabRecord,
    template: &VmRecord,
    node: &str,
    userid: &str,
    prev: Option<LabStudentRecord>,
    log: &TaskLogger,
) -> Result<(), String> {
    let poolid = prev
        .map(|p| p.poolid)
        .unwrap_or_else(|| student_pool_id(&lab.labid, userid));
    let outcome = make(app, lab, template, node, userid, &poolid, log).await;
    let record = LabStudentRecord {
        userid: userid.to_owned(),
        poolid: poolid.clone(),
        vmid: outcome.as_ref().ok().copied(),
        error: outcome.as_ref().err().cloned(),
    };
    if let Err(e) = app.db.set_lab_student(&lab.labid, &record).await {
        // A VM the lab does not know of would be cloned again: take it back.
        if let Ok(vmid) = outcome {
            let _ = remove_vm(app, vmid).await;
        }
        return Err(format!("{userid}: cannot record the deployment: {e}"));
    }
    match outcome {
        Ok(vmid) => {
            log.log(format!("{userid}: VM {vmid} in pool {poolid}: OK"))
                .await;
            Ok(())
        }
        Err(e) => {
            log.log(format!("{userid}: failed: {e}")).await;
            Err(format!("{userid}: {e}"))
        }
    }
}

/// Pool, clone and grant for one student; undone on failure.
async fn make(
    app: &AppState,
    lab: &LabRecord,
    template: &VmRecord,
    node: &str,
    userid: &str,
    poolid: &str,
    log: &TaskLogger,
) -> Result<u32, String> {
    let created_pool = ensure_student_pool(app, lab, poolid, userid).await?;
    let made = async {
        let name = student_vm_name(&lab.labid, userid);
        let description = format!("lab {}: {userid}", lab.labid);
        let reserved = reserve(app, template, name, node, poolid, description).await?;
        let vm = reserved.complete(app, log).await?;
        if let Err(e) = grant_student(app, vm.vmid, userid).await {
            let _ = remove_vm(app, vm.vmid).await;
            return Err(format!("cannot give {userid} its VM: {e}"));
        }
        Ok(vm.vmid)
    }
    .await;
    if made.is_err() && created_pool {
        if let Err(e) = remove_student_pool(app, poolid).await {
            log.log(format!("note: {e}")).await;
        }
    }
    made
}

/// Reserve a clone of `template` under the next free VM id in `pool`.
async fn reserve(
    app: &AppState,
    template: &VmRecord,
    name: String,
    node: &str,
    pool: &str,
    description: String,
) -> Result<Reserved, String> {
    for _ in 0..ID_ATTEMPTS {
        let id = app
            .db
            .next_free_vmid(MIN_VMID)
            .await
            .map_err(|e| e.to_string())?;
        let vm = clone::config_of(
            template,
            id,
            name.clone(),
            node.to_owned(),
            Some(description.clone()),
        );
        match clone::reserve(app, template.clone(), vm, Some(pool)).await {
            Ok(r) => return Ok(r),
            // Someone else took the id (or holds it): try the next free one.
            Err(CloneError::Taken(_)) => {}
            Err(CloneError::Locked(m))
                if app
                    .vm_locks
                    .holder(template.vmid)
                    .is_some_and(|h| h != "clone") =>
            {
                return Err(m)
            }
            Err(CloneError::Locked(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err("no free VM id found; try again".into())
}
