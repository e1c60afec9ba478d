//! Resetting a student's VM (task `labreset`): back to a fresh clone of the lab's template,
//! keeping its id, name, node, pool and the student's role on it. The VM is stopped, its node
//! forgets what it kept of it (console scroll-back, logs), and the template's configuration is
//! stored in one step; disks, once VMs have some, are copied by the clone's disk copy before
//! that step. Until then the VM keeps its old configuration, so a failed reset changes
//! nothing but having stopped the VM.

use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::{clone, lifecycle, observe};

/// The task's work (the caller holds the VM's lock and the template's shared clone lock).
pub async fn run(
    app: AppState,
    vm: VmRecord,
    template: VmRecord,
    log: TaskLogger,
) -> Result<(), String> {
    log.log(format!(
        "resetting VM {} ({}) to a fresh clone of template VM {} ({})",
        vm.vmid, vm.name, template.vmid, template.name
    ))
    .await;
    if observe(&app, &vm).is_active() {
        lifecycle::stop(app.clone(), vm.clone(), log.clone()).await?;
    }
    lifecycle::forget_on_node(&app, &vm, &log).await;
    let fresh = clone::config_of(
        &template,
        vm.vmid,
        vm.name.clone(),
        vm.node.clone(),
        Some(vm.description.clone()),
    );
    clone::copy_disks(&template, &fresh, &log).await?;
    app.db.update_vm(&fresh).await.map_err(|e| e.to_string())?;
    app.changes.notify();
    log.log(format!(
        "VM {} is a fresh clone of VM {} again",
        vm.vmid, template.vmid
    ))
    .await;
    Ok(())
}
