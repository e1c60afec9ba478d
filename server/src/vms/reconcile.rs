//! The reconcile loop's VM part: after every heartbeat round, compare what each VM's node
//! reports with what the last action asked for, and record VMs that stopped on their own.

use std::collections::HashMap;
use std::sync::Mutex;

use kiln_node_client::wire::VmPowerState;

use super::{observe, Observed};
use crate::state::AppState;

/// What the reconciler saw of each VM: the last active state it had (for the log), and for how
/// many passes in a row it has been seen not running.
#[derive(Debug, Default)]
pub struct Reconciler {
    seen: Mutex<HashMap<u32, Seen>>,
}

#[derive(Debug, Default, Clone)]
struct Seen {
    last_active: Option<&'static str>,
    inactive_passes: u32,
}

/// A VM must be seen not running in this many passes in a row before the reconciler acts: a
/// heartbeat answer that was on its way while a start finished must not count as a crash.
const CONFIRMATIONS: u32 = 2;

impl Reconciler {
    fn observe(&self, vmid: u32, word: &'static str, active: bool) -> Seen {
        let mut map = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.entry(vmid).or_default();
        if active {
            *entry = Seen {
                last_active: Some(word),
                inactive_passes: 0,
            };
        } else {
            entry.inactive_passes += 1;
        }
        entry.clone()
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
    for mut vm in vms {
        // A handover its migration task could not finish comes first (and alone).
        if app.vm_locks.holder(vm.vmid).is_none() && super::handover::run_once(app, &mut vm).await {
            continue;
        }
        let mut seen = observe(app, &vm);
        if !seen.is_active() && app.vm_locks.holder(vm.vmid).is_none() {
            if let Some(node) = stray_node(app, &vm) {
                adopt(app, &mut vm, node).await;
                seen = observe(app, &vm);
            }
        }
        if seen == Observed::Unknown {
            continue; // node offline: nothing to conclude yet
        }
        let memory = app
            .reconciler
            .observe(vm.vmid, seen.state_word(), seen.is_active());
        if vm.desired != "running"
            || seen.is_active()
            || memory.inactive_passes < CONFIRMATIONS
            || app.vm_locks.holder(vm.vmid).is_some()
        {
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
        let was = memory.last_active.unwrap_or("unknown (server restarted)");
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

/// The one other online node that runs `vm` while its own node does not, if any (a copy
/// waiting at a handover point is `vms::handover`'s business, not a stray).
fn stray_node(app: &AppState, vm: &crate::db::VmRecord) -> Option<String> {
    let mut running_on: Vec<String> = app
        .nodes
        .reports_of(vm.vmid)
        .into_iter()
        .filter_map(|(node, report)| {
            let rt = report.flatten()?;
            (node != vm.node && rt.state != VmPowerState::Stopped && rt.handover.is_none())
                .then_some(node)
        })
        .collect();
    match running_on.len() {
        1 => running_on.pop(),
        0 => None,
        _ => {
            tracing::error!(
                vmid = vm.vmid,
                "VM {} runs on several nodes ({}); leaving the record on {}",
                vm.vmid,
                running_on.join(", "),
                vm.node
            );
            None
        }
    }
}

/// Record that `vm` runs on `node`.
async fn adopt(app: &AppState, vm: &mut crate::db::VmRecord, node: String) {
    tracing::warn!(
        vmid = vm.vmid,
        "VM {} is recorded on node {} but runs on node {node}; recording node {node}",
        vm.vmid,
        vm.node
    );
    if let Err(e) = app.db.set_vm_node(vm.vmid, &node).await {
        tracing::error!("reconcile: {e}");
        return;
    }
    vm.node = node;
    app.changes.notify();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_counts_as_stopped_only_after_consecutive_passes() {
        let r = Reconciler::default();
        assert_eq!(r.observe(100, "running", true).inactive_passes, 0);
        let once = r.observe(100, "stopped", false);
        assert_eq!(
            (once.inactive_passes, once.last_active),
            (1, Some("running"))
        );
        // A fresh heartbeat shows it running again: the count starts over.
        assert_eq!(r.observe(100, "running", true).inactive_passes, 0);
        r.observe(100, "stopped", false);
        assert_eq!(
            r.observe(100, "stopped", false).inactive_passes,
            CONFIRMATIONS
        );
    }
}
