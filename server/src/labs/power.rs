//! Starting or stopping every VM of a lab at once (tasks `labstart` and `labstop`, and
//! `labend` when the schedule stops a lab at its end). A VM already in the wanted state is
//! left alone; one that is locked by another operation, or whose node is offline, is reported
//! and the others go on. Starts obey the nodes' memory and the pools' quotas as single starts do.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;

use crate::access::pools;
use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::{lifecycle, observe, placement, Observed, VmLockGuard};

/// VMs changed at once.
const PARALLEL: usize = 4;

/// The VMs deployed for `labid`'s students, with their students.
pub async fn vms_of(app: &AppState, labid: &str) -> Result<Vec<(String, VmRecord)>, String> {
    let mut out = Vec::new();
    for s in app
        .db
        .lab_students(labid)
        .await
        .map_err(|e| e.to_string())?
    {
        let Some(vmid) = s.vmid else { continue };
        if let Some(vm) = app.db.vm(vmid).await.map_err(|e| e.to_string())? {
            out.push((s.userid, vm));
        }
    }
    Ok(out)
}

/// The task's work: start (`start`) or stop every VM of lab `labid`.
pub async fn run(app: AppState, labid: String, start: bool, log: TaskLogger) -> Result<(), String> {
    let vms = vms_of(&app, &labid).await?;
    let verb = if start { "start" } else { "stop" };
    if vms.is_empty() {
        log.log(format!("lab {labid} has no VMs to {verb}")).await;
        return Ok(());
    }
    let total = vms.len();
    log.progress(0.0);
    let done = AtomicUsize::new(0);
    let results: Vec<Result<(), String>> = futures::stream::iter(vms)
        .map(|(userid, vm)| {
            let (app, log, done) = (&app, &log, &done);
            async move {
                let vmid = vm.vmid;
                let result = match one(app, vm, start, log).await {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        log.log(format!(
                            "{userid}: VM {vmid} is already {}",
                            if start { "running" } else { "stopped" }
                        ))
                        .await;
                        Ok(())
                    }
                    Err(e) => {
                        log.log(format!("{userid}: VM {vmid}: {e}")).await;
                        Err(format!("VM {vmid} ({userid}): {e}"))
                    }
                };
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                log.progress(n as f64 / total as f64);
                result
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let failed: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "could not {verb} {} of {total} VM(s): {}",
            failed.len(),
            failed.join("; ")
        ))
    }
}

/// Tries to take a VM's lock before giving up (a single start or stop holds it briefly).
const LOCK_ATTEMPTS: u32 = 5;

/// Take VM `vmid`'s lock, waiting a little for another short operation to end.
async fn lock(app: &AppState, vmid: u32, kind: &'static str) -> Result<VmLockGuard, String> {
    let mut attempt = 1;
    loop {
        match app.vm_locks.lock(vmid, kind) {
            Ok(guard) => return Ok(guard),
            Err(e) if attempt == LOCK_ATTEMPTS => return Err(e.to_string()),
            Err(_) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Start or stop one VM; `Ok(false)` when it was in that state already.
async fn one(app: &AppState, vm: VmRecord, start: bool, log: &TaskLogger) -> Result<bool, String> {
    let kind = if start { "qmstart" } else { "qmstop" };
    let _guard = lock(app, vm.vmid, kind).await?;
    let seen = observe(app, &vm);
    if seen == Observed::Unknown {
        return Err(format!(
            "node {} is offline, so the VM's state is unknown",
            vm.node
        ));
    }
    if start == seen.is_active() {
        return Ok(false);
    }
    if start {
        let _placing = app.placement.lock().await;
        placement::check_capacity(app, &vm.node, vm.vmid, vm.memory_mib)
            .map_err(|e| e.to_string())?;
        pools::check_vm_start(app, &vm)
            .await
            .map_err(|e| e.to_string())?;
        lifecycle::start(app.clone(), vm, log.clone()).await?;
    } else {
        lifecycle::stop(app.clone(), vm, log.clone()).await?;
    }
    Ok(true)
}
