//! What the HA manager does to VMs: start an HA-managed VM on a node, stop it, and mark a
//! running VM as HA-managed. Each runs inside a task and logs what it does. Starts refuse to
//! make a second copy: a VM any reachable node still runs is never started anywhere else.

use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;
use crate::vms::{lifecycle, placement};

/// The node that runs `vmid` (running or paused), from the latest heartbeats of online nodes.
/// An error if a node that stopped answering reported it running and that node's lease has
/// not surely expired yet: the VM may still run there, so nothing may start it elsewhere.
pub async fn active_on(app: &AppState, vmid: u32) -> Result<Option<String>, String> {
    let nodes = app.db.nodes().await.map_err(|e| e.to_string())?;
    let mut found = None;
    for name in nodes.into_iter().map(|n| n.name) {
        let rt = app.nodes.get(&name);
        let reports_it = rt.facts.as_ref().is_some_and(|f| {
            f.vms
                .iter()
                .any(|v| v.vmid == vmid && v.state != kiln_node_client::wire::VmPowerState::Stopped)
        });
        if !reports_it {
            continue;
        }
        if rt.state(app.nodes.timeout()) == kiln_api_types::NodeState::Online {
            found = Some(name);
        } else if !app.nodes.lease_surely_expired(&name) {
            return Err(format!(
                "VM {vmid} may still run on node {name}, which stopped answering; its HA lease has not surely expired yet"
            ));
        }
    }
    Ok(found)
}

/// Start `vm` as an HA-managed VM on `node` (moving its configuration there first).
pub async fn start_on(
    app: &AppState,
    vm: &VmRecord,
    node: &str,
    log: &TaskLogger,
) -> Result<(), String> {
    if let Some(running) = active_on(app, vm.vmid).await? {
        if running == node {
            log.log(format!(
                "VM {} already runs on node {node}; guarding it with the node's HA lease",
                vm.vmid
            ))
            .await;
            guard(app, vm.vmid, node).await?;
            log.log(format!(
                "VM {} on node {node} is guarded by the node's HA lease",
                vm.vmid
            ))
            .await;
            return Ok(());
        }
        return Err(format!(
            "VM {} still runs on node {running}; not starting a second copy on {node}",
            vm.vmid
        ));
    }
    if vm.node != node {
        app.db
            .set_vm_node(vm.vmid, node)
            .await
            .map_err(|e| e.to_string())?;
        log.log(format!(
            "VM {} moved from node {} to node {node}",
            vm.vmid, vm.node
        ))
        .await;
    }
    let mut spec = lifecycle::spec(vm);
    spec.ha = true;
    let rt = {
        let _placing = app.placement.lock().await;
        placement::check_capacity(app, node, vm.vmid, vm.memory_mib).map_err(|e| e.to_string())?;
        log.log(format!(
            "starting VM {} ({}) on node {node}: {} vCPU(s), {} MiB, guarded by the node's HA lease",
            vm.vmid, vm.name, vm.cores, vm.memory_mib
        ))
        .await;
        app.node_client(node)
            .await?
            .start_vm(&spec)
            .await
            .map_err(|e| e.to_string())?
    };
    app.nodes.record_vm(node, vm.vmid, Some(rt.clone()));
    if let Err(e) = app.db.set_vm_desired(vm.vmid, "running").await {
        log.log(format!("warning: cannot record the VM's state: {e}"))
            .await;
    }
    log.log(format!(
        "VM {} is {} on node {node} (kiln-vmm pid {})",
        vm.vmid,
        rt.state,
        rt.pid.map_or_else(|| "?".into(), |p| p.to_string())
    ))
    .await;
    app.changes.notify();
    Ok(())
}

/// Stop `vm` on `node` (if it runs there).
pub async fn stop_on(
    app: &AppState,
    vm: &VmRecord,
    node: &str,
    log: &TaskLogger,
) -> Result<(), String> {
    if active_on(app, vm.vmid).await?.as_deref() != Some(node) {
        log.log(format!("VM {} does not run on node {node}", vm.vmid))
            .await;
        return Ok(());
    }
    log.log(format!("stopping VM {} on node {node}", vm.vmid))
        .await;
    let rt = app
        .node_client(node)
        .await?
        .stop_vm(vm.vmid)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(node, vm.vmid, Some(rt));
    if let Err(e) = app.db.set_vm_desired(vm.vmid, "stopped").await {
        log.log(format!("warning: cannot record the VM's state: {e}"))
            .await;
    }
    app.changes.notify();
    Ok(())
}

/// Make the running VM `vmid` on `node` HA-managed: its kiln-vmm guards the node's lease.
pub async fn guard(app: &AppState, vmid: u32, node: &str) -> Result<(), String> {
    let rt = app
        .node_client(node)
        .await?
        .set_vm_ha(vmid, true)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(node, vmid, Some(rt));
    Ok(())
}

/// Stop guarding `vmid` on `node` (it left HA); best effort.
pub async fn unguard(app: &AppState, vmid: u32, node: &str) {
    match app.node_client(node).await {
        Ok(c) => match c.set_vm_ha(vmid, false).await {
            Ok(rt) => app.nodes.record_vm(node, vmid, Some(rt)),
            Err(e) => tracing::warn!("VM {vmid}: cannot release it from HA on {node}: {e}"),
        },
        Err(e) => tracing::warn!("VM {vmid}: {e}"),
    }
}
