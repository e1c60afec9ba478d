//! "Start at boot" (Proxmox's `onboot`): when a node reports a new host boot id, the server
//! starts that node's on-boot VMs in one `startall` task, as Proxmox's `pve-guests` service
//! does when a host comes up. A node's first report only records its boot id (joining a node
//! is not a boot), and HA-managed VMs are left to the HA manager.

use std::collections::HashSet;

use crate::state::AppState;
use crate::tasks::TaskLogger;

/// After each heartbeat round: notice nodes whose host booted since their previous report.
pub async fn run_once(app: &AppState) {
    for (node, boot_id) in app.nodes.boot_ids() {
        if boot_id.is_empty() {
            continue;
        }
        let known = match app.db.node_boot_id(&node).await {
            Ok(known) => known,
            Err(e) => {
                tracing::error!("on-boot: {e}");
                continue;
            }
        };
        if known.as_deref() == Some(boot_id.as_str()) {
            continue;
        }
        if let Err(e) = app.db.set_node_boot_id(&node, &boot_id).await {
            tracing::error!("on-boot: {e}");
            continue;
        }
        if known.is_none() {
            continue;
        }
        tracing::info!(node = %node, "node {node} booted (new boot id): starting its on-boot VMs");
        let task_app = app.clone();
        let task_node = node.clone();
        let spawned = app
            .tasks
            .spawn(
                &node,
                "startall",
                "",
                crate::auth::privilege::ROOT,
                (),
                move |log| async move { start_all(task_app, task_node, log).await },
            )
            .await;
        if let Err(e) = spawned {
            tracing::error!("on-boot: cannot start the startall task for node {node}: {e}");
        }
    }
}

/// The `startall` task: start every on-boot VM of `node` that does not run, one after the
/// other (placement and pool quotas checked as for a manual start).
async fn start_all(app: AppState, node: String, log: TaskLogger) -> Result<(), String> {
    let vms = app.db.vms().await.map_err(|e| e.to_string())?;
    let ha: HashSet<String> = app
        .db
        .ha_resources()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|r| r.sid)
        .collect();
    let candidates: Vec<_> = vms
        .into_iter()
        .filter(|vm| vm.node == node && vm.onboot)
        .collect();
    if candidates.is_empty() {
        log.log(format!("node {node} booted; it has no on-boot VMs"))
            .await;
        return Ok(());
    }
    let mut failed = Vec::new();
    let mut started = 0;
    for vm in candidates {
        let id = vm.vmid;
        if ha.contains(&format!("vm:{id}")) {
            log.log(format!("VM {id}: HA-managed, left to the HA manager"))
                .await;
            continue;
        }
        if super::observe(&app, &vm).is_active() {
            log.log(format!("VM {id}: already running")).await;
            continue;
        }
        let Ok(_guard) = app.vm_locks.lock(id, "qmstart") else {
            log.log(format!("VM {id}: another task holds it; skipped"))
                .await;
            continue;
        };
        let result = async {
            let _placing = app.placement.lock().await;
            super::placement::check_capacity(&app, &vm.node, id, vm.memory_mib)
                .map_err(|e| e.to_string())?;
            crate::access::pools::check_vm_start(&app, &vm)
                .await
                .map_err(|e| e.to_string())?;
            super::lifecycle::start(app.clone(), vm, log.clone()).await
        }
        .await;
        match result {
            Ok(()) => started += 1,
            Err(e) => {
                log.log(format!("VM {id}: cannot start: {e}")).await;
                failed.push(id);
            }
        }
    }
    if failed.is_empty() {
        log.log(format!("started {started} on-boot VM(s) on node {node}"))
            .await;
        Ok(())
    } else {
        Err(format!(
            "started {started} on-boot VM(s) on node {node}; {} could not start: {failed:?} (see the log)",
            failed.len()
        ))
    }
}
