//! The reconcile loop's VM part: after every heartbeat round, compare what each VM's node
//! reports with what the last action asked for, and record VMs that stopped on their own.

use std::collections::HashMap;
use std::sync::Mutex;

use kiln_node_client::wire::VmPowerState;

use super::{observe, Observed};
use crate::state::AppState;

/// What the reconciler saw of each VM last time.
#[derive(Debug, Default)]
pub struct Reconciler {
    last: Mutex<HashMap<u32, String>>,
}

impl Reconciler {
    fn swap(&self, vmid: u32, now: &str) -> Option<String> {
        self.last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vmid, now.to_owned())
    }
}

/// One reconcile pass.
pub async fn run_once(app: &AppState) {
    let vms = match app.db.vms().await {
        Ok(v) => v,
        Err(e) => {
            tracing::error!("reconcile: cannot list VMs: {e}");
            return;
        }
    };
    for vm in vms {
        let seen = observe(app, &vm);
        if seen == Observed::Unknown {
            continue; // node offline: nothing to conclude yet
        }
        let word = seen.state_word();
        let before = app.reconciler.swap(vm.vmid, word);
        if vm.desired != "running" || seen.is_active() || app.vm_locks.holder(vm.vmid).is_some() {
            continue;
        }
        // The VM should run but does not, and no operation of ours is in progress.
        let (crashed, reason) = match seen.runtime() {
            Some(rt) if rt.state == VmPowerState::Stopped => (
                rt.crashed,
                rt.stop_reason
                    .clone()
                    .unwrap_or_else(|| "no reason reported".into()),
            ),
            _ => (true, format!("node {} no longer runs it", vm.node)),
        };
        if let Err(e) = app.db.set_vm_desired(vm.vmid, "stopped").await {
            tracing::error!("reconcile: {e}");
            continue;
        }
        app.changes.notify();
        if !crashed {
            tracing::info!(vmid = vm.vmid, "VM stopped: {reason}");
            continue;
        }
        let was = before.unwrap_or_else(|| "unknown (server restarted)".into());
        let id = vm.vmid.to_string();
        let node = vm.node.clone();
        let result = app
            .tasks
            .spawn(
                &node,
                "vmcrash",
                &id,
                crate::auth::privilege::ROOT,
                (),
                move |log| async move {
                    log.log(format!(
                        "VM {} on node {} stopped unexpectedly (was {was}): {reason}",
                        vm.vmid, vm.node
                    ))
                    .await;
                    Err(format!("VM {} stopped unexpectedly: {reason}", vm.vmid))
                },
            )
            .await;
        if let Err(e) = result {
            tracing::error!("reconcile: cannot record a crash: {e}");
        }
    }
}
