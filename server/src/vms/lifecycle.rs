//! The work of VM lifecycle tasks: each function runs inside a task, logs what it does, and
//! returns the reason on failure. The node agent does the work; the server records the outcome.

use kiln_node_client::wire::VmSpec;

use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;

/// The spec a node needs to run `vm`.
pub fn spec(vm: &VmRecord) -> VmSpec {
    VmSpec {
        vmid: vm.vmid,
        name: vm.name.clone(),
        memory_mib: vm.memory_mib,
        vcpus: vm.cores,
        image: vm.image.clone(),
        cmdline: vm.args.clone(),
        ha: false,
    }
}

async fn record_desired(app: &AppState, vmid: u32, desired: &str, log: &TaskLogger) {
    if let Err(e) = app.db.set_vm_desired(vmid, desired).await {
        log.log(format!("warning: cannot record the VM's state: {e}"))
            .await;
    }
    app.changes.notify();
}

/// Start `vm` on its node.
pub async fn start(app: AppState, vm: VmRecord, log: TaskLogger) -> Result<(), String> {
    if vm.template {
        return Err(format!(
            "VM {} is a template and cannot be started; clone it",
            vm.vmid
        ));
    }
    log.log(format!(
        "starting VM {} ({}) on node {}: {} vCPU(s), {} MiB, image {}",
        vm.vmid, vm.name, vm.node, vm.cores, vm.memory_mib, vm.image
    ))
    .await;
    let rt = app
        .node_client(&vm.node)
        .await?
        .start_vm(&spec(&vm))
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, Some(rt.clone()));
    log.log(format!(
        "VM {} is {:?} (kiln-vmm pid {})",
        vm.vmid,
        rt.state,
        rt.pid.map_or_else(|| "?".into(), |p| p.to_string())
    ))
    .await;
    record_desired(&app, vm.vmid, "running", &log).await;
    Ok(())
}

/// Stop `vm` at once (power off).
pub async fn stop(app: AppState, vm: VmRecord, log: TaskLogger) -> Result<(), String> {
    log.log(format!("stopping VM {} on node {}", vm.vmid, vm.node))
        .await;
    let rt = app
        .node_client(&vm.node)
        .await?
        .stop_vm(vm.vmid)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, Some(rt.clone()));
    log.log(format!("VM {} is {:?}", vm.vmid, rt.state)).await;
    record_desired(&app, vm.vmid, "stopped", &log).await;
    Ok(())
}

/// Ask the guest to power off; stop it after `timeout_secs`.
pub async fn shutdown(
    app: AppState,
    vm: VmRecord,
    timeout_secs: u32,
    log: TaskLogger,
) -> Result<(), String> {
    log.log(format!(
        "asking VM {} to shut down (stopped after {timeout_secs} s if it does not)",
        vm.vmid
    ))
    .await;
    let rt = app
        .node_client(&vm.node)
        .await?
        .shutdown_vm(vm.vmid, timeout_secs)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, Some(rt.clone()));
    if let Some(reason) = &rt.stop_reason {
        log.log(format!("VM {} stopped: {reason}", vm.vmid)).await;
    }
    record_desired(&app, vm.vmid, "stopped", &log).await;
    Ok(())
}

/// Reboot `vm`.
pub async fn reboot(app: AppState, vm: VmRecord, log: TaskLogger) -> Result<(), String> {
    log.log(format!("rebooting VM {} on node {}", vm.vmid, vm.node))
        .await;
    let rt = app
        .node_client(&vm.node)
        .await?
        .reboot_vm(vm.vmid, 60)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, Some(rt));
    record_desired(&app, vm.vmid, "running", &log).await;
    Ok(())
}

/// Pause (`suspend = true`) or resume `vm`.
pub async fn pause(
    app: AppState,
    vm: VmRecord,
    suspend: bool,
    log: TaskLogger,
) -> Result<(), String> {
    let c = app.node_client(&vm.node).await?;
    let rt = if suspend {
        log.log(format!("pausing VM {}", vm.vmid)).await;
        c.pause_vm(vm.vmid).await
    } else {
        log.log(format!("resuming VM {}", vm.vmid)).await;
        c.resume_vm(vm.vmid).await
    }
    .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, Some(rt.clone()));
    log.log(format!("VM {} is {:?}", vm.vmid, rt.state)).await;
    app.changes.notify();
    Ok(())
}

/// Have the node forget what it keeps of stopped VM `vm` (its directory: console scroll-back,
/// logs), keeping the VM itself; a node that cannot is noted in the log, not an error.
pub async fn forget_on_node(app: &AppState, vm: &VmRecord, log: &TaskLogger) {
    match app.node_client(&vm.node).await {
        Ok(c) => {
            app.nodes.record_vm(&vm.node, vm.vmid, None);
            if let Err(e) = c.delete_vm(vm.vmid).await {
                log.log(format!("note: node {} kept its copy: {e}", vm.node))
                    .await;
            }
        }
        Err(e) => log.log(format!("note: {e}")).await,
    }
}

/// Remove a stopped VM: its runtime leftovers on the node, then its configuration.
pub async fn destroy(app: AppState, vm: VmRecord, log: TaskLogger) -> Result<(), String> {
    log.log(format!("removing VM {} ({})", vm.vmid, vm.name))
        .await;
    match app.node_client(&vm.node).await {
        Ok(c) => {
            app.nodes.record_vm(&vm.node, vm.vmid, None);
            if let Err(e) = c.delete_vm(vm.vmid).await {
                log.log(format!("note: node {} did not clean up: {e}", vm.node))
                    .await;
            }
        }
        Err(e) => log.log(format!("note: {e}")).await,
    }
    app.db.delete_vm(vm.vmid).await.map_err(|e| e.to_string())?;
    // As Proxmox: a removed VM's ACL entries and pool membership go with it, so that a
    // new VM with the same id inherits nothing.
    let lock = app.access.lock().await;
    app.db
        .remove_vm_access(vm.vmid)
        .await
        .map_err(|e| e.to_string())?;
    app.access
        .reload(&app.db, &lock)
        .await
        .map_err(|e| e.to_string())?;
    drop(lock);
    app.changes.notify();
    log.log(format!("VM {} removed", vm.vmid)).await;
    Ok(())
}
