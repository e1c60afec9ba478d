//! Migration of a VM to another node, as a task (`qmigrate`).
//!
//! Online (a running VM): the source node live-migrates it straight to the target over
//! mutual TLS; the server never sees a byte of memory. The server is the arbiter of where
//! the VM is, so the handover goes: the target has the whole VM and the source has paused it
//! (`awaiting_commit`) → the server records the target as the VM's node → the source sends
//! the commit, the target resumes it, the source's kiln-vmm exits. Any failure before the
//! record leaves the VM running on the source; after it, the target owns it.
//!
//! Offline (a stopped VM): its configuration moves to the target (disks come later).

use std::collections::BTreeMap;
use std::time::Duration;

use kiln_api_types::NodeState;
use kiln_node_client::wire::{
    MigrateSendRequest, MigrationPhase, MigrationRound, MigrationStatus, DEFAULT_COMMIT_TIMEOUT_MS,
};
use kiln_node_client::NodeClient;

use super::{observe, placement};
use crate::db::VmRecord;
use crate::state::AppState;
use crate::tasks::TaskLogger;

/// Downtime budget when the request names none (Proxmox: 100 ms, QEMU: 300 ms).
pub const DEFAULT_DOWNTIME_MS: u64 = 50;
/// How often the task log hears about the rounds.
const PROGRESS_PERIOD: Duration = Duration::from_millis(250);
const MIB: f64 = (1u64 << 20) as f64;

/// What a migration task is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    /// Target node.
    pub target: String,
    /// Live (the VM runs) or offline (the VM is stopped).
    pub online: bool,
    /// Bandwidth cap, MiB/s.
    pub bwlimit_mib_s: Option<u64>,
    /// Downtime budget, ms.
    pub downtime_ms: u64,
}

/// Why `target` cannot take `vm` now (running: a live migration), or `None` if it can.
pub fn target_problem(
    app: &AppState,
    vm: &VmRecord,
    running: bool,
    target: &str,
) -> Option<String> {
    if target == vm.node {
        return Some(format!("VM {} already is on node {target}", vm.vmid));
    }
    let rt = app.nodes.get(target);
    let facts = match (&rt.facts, rt.state(app.nodes.timeout())) {
        (Some(f), NodeState::Online) => f,
        _ => {
            let seen = rt.last_seen.map_or_else(
                || "never seen".to_string(),
                |t| format!("last heartbeat {} s ago", t.elapsed().as_secs()),
            );
            return Some(format!(
                "node {target} is offline ({seen}); start kiln-node there or choose another target"
            ));
        }
    };
    if !facts.kvm {
        return Some(format!("node {target} cannot open /dev/kvm"));
    }
    if running {
        if let Err(e) = placement::check_capacity(app, target, vm.vmid, vm.memory_mib) {
            return Some(e.to_string());
        }
        let source = app.nodes.get(&vm.node);
        if let Some(src) = &source.facts {
            let missing: Vec<&str> = src
                .cpu_flags
                .iter()
                .filter(|f| facts.cpu_flags.binary_search(f).is_err())
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Some(format!(
                    "CPU features of node {} missing on node {target}: {}; a running guest may use them, so stop it to move it there",
                    vm.node,
                    missing.join(" ")
                ));
            }
        }
    }
    None
}

/// Every other node of the cluster, split into those that can take `vm` and those that
/// cannot (with the reason).
pub fn candidates(
    app: &AppState,
    vm: &VmRecord,
    running: bool,
    nodes: &[String],
) -> (Vec<String>, BTreeMap<String, String>) {
    let mut allowed = Vec::new();
    let mut not_allowed = BTreeMap::new();
    for node in nodes.iter().filter(|n| **n != vm.node) {
        match target_problem(app, vm, running, node) {
            None => allowed.push(node.clone()),
            Some(reason) => {
                not_allowed.insert(node.clone(), reason);
            }
        }
    }
    (allowed, not_allowed)
}

/// The task's work: migrate `vm` per `plan`.
pub async fn run(
    app: AppState,
    vm: VmRecord,
    plan: MigrationPlan,
    log: TaskLogger,
) -> Result<(), String> {
    if plan.online {
        online(&app, &vm, &plan, &log).await
    } else {
        offline(&app, &vm, &plan, &log).await
    }
}

async fn offline(
    app: &AppState,
    vm: &VmRecord,
    plan: &MigrationPlan,
    log: &TaskLogger,
) -> Result<(), String> {
    log.log(format!(
        "moving the configuration of stopped VM {} from node {} to node {}",
        vm.vmid, vm.node, plan.target
    ))
    .await;
    if observe(app, vm).is_active() {
        return Err(format!(
            "VM {} started meanwhile; migrate it online",
            vm.vmid
        ));
    }
    app.db
        .set_vm_node(vm.vmid, &plan.target)
        .await
        .map_err(|e| e.to_string())?;
    app.nodes.record_vm(&vm.node, vm.vmid, None);
    app.changes.notify();
    // What the source kept of the VM (its stop reason, logs) is no longer needed there.
    if let Ok(source) = app.node_client(&vm.node).await {
        if let Err(e) = source.delete_vm(vm.vmid).await {
            log.log(format!("note: node {} did not clean up: {e}", vm.node))
                .await;
        }
    }
    log.log(format!("VM {} is now on node {}", vm.vmid, plan.target))
        .await;
    Ok(())
}

/// Writes new rounds to the task log and the progress bar.
struct Progress<'a> {
    log: &'a TaskLogger,
    rounds_logged: usize,
}

impl Progress<'_> {
    async fn show(&mut self, status: &MigrationStatus) {
        for r in status.rounds.iter().skip(self.rounds_logged) {
            self.log.log(round_line(r)).await;
        }
        self.rounds_logged = status.rounds.len().max(self.rounds_logged);
        self.log.progress(fraction(status));
    }
}

fn round_line(r: &MigrationRound) -> String {
    let secs = (r.duration_us as f64 / 1e6).max(1e-6);
    format!(
        "round {}: {} pages ({} zero), {:.1} MiB in {:.1} ms = {:.0} MiB/s; dirtied meanwhile {} pages ({:.1} MiB/s); expected downtime {:.1} ms{}",
        r.round,
        r.pages_sent + r.zero_pages,
        r.zero_pages,
        r.bytes_sent as f64 / MIB,
        r.duration_us as f64 / 1e3,
        r.bytes_sent as f64 / MIB / secs,
        r.dirtied_pages,
        r.dirty_rate_bytes_s as f64 / MIB,
        r.expected_downtime_us as f64 / 1e3,
        if r.throttle_percent > 0 && r.throttle_percent < 100 {
            format!(", vCPUs throttled {}%", r.throttle_percent)
        } else {
            String::new()
        }
    )
}

/// A progress estimate: the full pass is most of the work.
fn fraction(s: &MigrationStatus) -> f64 {
    let memory = s.guest_memory_bytes.max(1) as f64;
    match s.phase {
        MigrationPhase::Connecting => 0.0,
        MigrationPhase::FullPass => 0.85 * (s.bytes_transferred as f64 / memory).min(1.0),
        MigrationPhase::DirtyRounds => 0.9,
        MigrationPhase::StopAndCopy | MigrationPhase::AwaitingCommit => 0.95,
        MigrationPhase::HandedOver | MigrationPhase::Committing => 0.98,
        MigrationPhase::Completed => 1.0,
        MigrationPhase::Failed | MigrationPhase::Cancelled => 0.0,
    }
}

async fn online(
    app: &AppState,
    vm: &VmRecord,
    plan: &MigrationPlan,
    log: &TaskLogger,
) -> Result<(), String> {
    let source = app.node_client(&vm.node).await?;
    let target = app.node_client(&plan.target).await?;
    let target_url = target.api_url().to_owned();
    log.log(format!(
        "live-migrating VM {} ({} MiB, {} vCPU) from node {} to node {}: downtime budget {} ms, bandwidth {}",
        vm.vmid,
        vm.memory_mib,
        vm.cores,
        vm.node,
        plan.target,
        plan.downtime_ms,
        plan.bwlimit_mib_s
            .map_or_else(|| "not capped".to_string(), |b| format!("capped at {b} MiB/s"))
    ))
    .await;
    let request = MigrateSendRequest {
        target_node: plan.target.clone(),
        target_api_url: target_url,
        downtime_ms: plan.downtime_ms,
        bwlimit_mib_s: plan.bwlimit_mib_s,
        await_commit: true,
        commit_timeout_ms: DEFAULT_COMMIT_TIMEOUT_MS,
    };
    let mut stop = log.stop_requested();
    let mut progress = Progress {
        log,
        rounds_logged: 0,
    };
    let send = source.migrate_send(vm.vmid, &request);
    tokio::pin!(send);
    let mut ticker = tokio::time::interval(PROGRESS_PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cancelled = false;
    let sent = loop {
        tokio::select! {
            r = &mut send => break r,
            _ = ticker.tick() => {
                if let Ok(status) = source.migrate_status(vm.vmid).await {
                    progress.show(&status).await;
                }
                if !cancelled {
                    if let Some(why) = target_gone(app, &plan.target) {
                        cancelled = true;
                        log.log(format!("{why}: cancelling the migration")).await;
                        if let Err(e) = source.migrate_cancel(vm.vmid).await {
                            log.log(format!("cannot cancel on node {}: {e}", vm.node)).await;
                        }
                    }
                }
            }
            changed = stop.changed(), if !cancelled => {
                if changed.is_ok() && *stop.borrow() {
                    cancelled = true;
                    log.log("stop requested: cancelling the migration").await;
                    if let Err(e) = source.migrate_cancel(vm.vmid).await {
                        log.log(format!("cannot cancel on node {}: {e}", vm.node)).await;
                    }
                }
            }
        }
    };
    let status = match sent {
        Ok(status) => status,
        Err(e) => {
            if let Ok(status) = source.migrate_status(vm.vmid).await {
                progress.show(&status).await;
            }
            return Err(format!("{e}"));
        }
    };
    // The VM is paused from here to the commit: the log lines wait until it runs again.
    if status.phase != MigrationPhase::AwaitingCommit {
        progress.show(&status).await;
        return Err(format!(
            "node {} answered the migration with phase {:?} instead of waiting for the commit; VM {} stays where that node says",
            vm.node, status.phase, vm.vmid
        ));
    }
    // A stop that arrived while the last pages went is still honoured here, and a target
    // the cluster cannot reach is not handed the VM (it could not be told to run it).
    let gone = target_gone(app, &plan.target);
    if let Some(why) = &gone {
        log.log(format!("{why}: cancelling the migration")).await;
    }
    if cancelled || gone.is_some() || *stop.borrow() {
        let _ = source.migrate_cancel(vm.vmid).await;
        progress.show(&status).await;
        return Err(format!(
            "cancelled; VM {} keeps running on node {}",
            vm.vmid, vm.node
        ));
    }
    let handed = handover(app, vm, plan, &source, &target).await;
    progress.show(&status).await;
    match handed {
        Ok(()) => {
            log.log(format!(
                "node {} had the whole VM; node {} handed it over, the cluster recorded node {} as its owner and started it there",
                plan.target, vm.node, plan.target
            ))
            .await;
            finish(app, vm, plan, &source, &target, log).await
        }
        Err(e) => Err(e),
    }
}

/// Why the target node can no longer take the VM: its agent stopped answering (the cluster
/// marks it offline), so nobody could commit the VM there.
fn target_gone(app: &AppState, target: &str) -> Option<String> {
    let state = app.nodes.get(target).state(app.nodes.timeout());
    (state != NodeState::Online).then(|| {
        format!(
            "node {target} is {} now (its agent stopped answering)",
            state.as_str()
        )
    })
}

/// The target has the whole VM and the source holds it paused. The handover, in the order
/// that keeps exactly one runnable copy: the source hands the VM over (it will not resume it
/// by itself any more) → the server records the target as the owner → the target runs it →
/// the source's copy ends. Whatever breaks in between, `vms::handover` settles from the
/// record: before it, the VM goes back to the source; after it, it belongs to the target.
async fn handover(
    app: &AppState,
    vm: &VmRecord,
    plan: &MigrationPlan,
    source: &NodeClient,
    target: &NodeClient,
) -> Result<(), String> {
    if let Err(e) = source.migrate_handover(vm.vmid).await {
        // Not handed over (its commit timeout or a cancel came first, or its agent is
        // gone): the VM is still the source's. The target's copy can never run.
        let _ = target.migrate_cancel(vm.vmid).await;
        return Err(format!(
            "node {} did not hand VM {} over ({e}); the VM stays on node {}",
            vm.node, vm.vmid, vm.node
        ));
    }
    crate::failpoint::pause(crate::failpoint::MIGRATE_HANDED_OVER).await;
    if let Err(e) = app.db.set_vm_node(vm.vmid, &plan.target).await {
        let _ = target.migrate_cancel(vm.vmid).await;
        let _ = source.migrate_takeback(vm.vmid).await;
        return Err(format!(
            "cannot record the new owner ({e}); the migration was undone and VM {} keeps running on node {}",
            vm.vmid, vm.node
        ));
    }
    app.changes.notify();
    crate::failpoint::pause(crate::failpoint::MIGRATE_RECORDED).await;
    if let Err(e) = target.migrate_commit(vm.vmid).await {
        return Err(format!(
            "VM {} is recorded on node {}, but starting it there failed ({e}); the cluster settles the handover: it runs on node {} once committed there, or goes back to node {} if that node lost it",
            vm.vmid, plan.target, plan.target, vm.node
        ));
    }
    Ok(())
}

/// The VM runs on the target: end the source's paused copy and report the figures.
async fn finish(
    app: &AppState,
    vm: &VmRecord,
    plan: &MigrationPlan,
    source: &NodeClient,
    target: &NodeClient,
    log: &TaskLogger,
) -> Result<(), String> {
    if let Ok(rt) = target.vm(vm.vmid).await {
        app.nodes.record_vm(&plan.target, vm.vmid, Some(rt));
    }
    app.changes.notify();
    match source.migrate_finish(vm.vmid).await {
        Ok(done) => {
            app.nodes.record_vm(&vm.node, vm.vmid, None);
            app.changes.notify();
            log.log(format!(
                "migration finished: downtime {:.1} ms (target restore {:.1} ms), total {} ms, {:.1} MiB sent = {:.2} x guest memory, {} rounds",
                done.downtime_us.unwrap_or(0) as f64 / 1e3,
                done.restore_us.unwrap_or(0) as f64 / 1e3,
                done.total_ms.unwrap_or(done.elapsed_ms),
                done.bytes_transferred as f64 / MIB,
                done.bytes_transferred as f64 / done.guest_memory_bytes.max(1) as f64,
                done.rounds.len()
            ))
            .await;
            if let Some(warning) = &done.error {
                log.log(format!("warning: {warning}")).await;
            }
            // The source keeps a stopped entry ("migrated to …"); it is no longer needed.
            if let Err(e) = source.delete_vm(vm.vmid).await {
                log.log(format!("note: node {} did not clean up: {e}", vm.node))
                    .await;
            }
            log.log(format!("VM {} now runs on node {}", vm.vmid, plan.target))
                .await;
            Ok(())
        }
        Err(e) => {
            log.log(format!(
                "warning: node {} did not confirm that its paused copy ended ({e}); the cluster ends it once it can",
                vm.node
            ))
            .await;
            log.log(format!("VM {} now runs on node {}", vm.vmid, plan.target))
                .await;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: MigrationPhase, bytes: u64) -> MigrationStatus {
        serde_json::from_value(serde_json::json!({
            "role": "outgoing", "phase": phase, "peer": "n2", "downtime_budget_ms": 50,
            "guest_memory_bytes": 1000, "rounds": [], "bytes_transferred": bytes,
            "throttle_percent": 0, "elapsed_ms": 1
        }))
        .expect("status")
    }

    #[test]
    fn progress_follows_the_full_pass_then_the_phases() {
        assert_eq!(fraction(&status(MigrationPhase::Connecting, 0)), 0.0);
        let half = fraction(&status(MigrationPhase::FullPass, 500));
        assert!((0.4..0.45).contains(&half), "{half}");
        assert!(fraction(&status(MigrationPhase::DirtyRounds, 2000)) > half);
        assert_eq!(fraction(&status(MigrationPhase::Completed, 1000)), 1.0);
    }

    #[test]
    fn a_round_line_says_pages_rates_and_expected_downtime() {
        let line = round_line(&MigrationRound {
            round: 2,
            pages_sent: 256,
            zero_pages: 0,
            bytes_sent: 1 << 20,
            duration_us: 1000,
            dirtied_pages: 10,
            dirty_rate_bytes_s: 20 << 20,
            throughput_bytes_s: 1 << 30,
            expected_downtime_us: 2500,
            throttle_percent: 30,
        });
        assert_eq!(
            line,
            "round 2: 256 pages (0 zero), 1.0 MiB in 1.0 ms = 1000 MiB/s; dirtied meanwhile 10 pages (20.0 MiB/s); expected downtime 2.5 ms, vCPUs throttled 30%"
        );
    }
}
