//! Settling live-migration handovers that their task could not finish (a node agent died, a
//! call's answer was lost, the server restarted).
//!
//! The owner record in the database is the only truth. A target runs a VM only when the
//! server commits it, and the server commits only the node it has recorded; a source that
//! handed its VM over resumes it only when the server takes it back. So from the record and
//! what each node reports, each waiting copy's fate follows:
//!
//! - a target copy waiting for its commit on the recorded node: commit it (it owns the VM);
//! - one waiting anywhere else: discard it (it can never be committed);
//! - a handed-over source on the recorded node (the record never moved): take it back;
//! - a handed-over source elsewhere while the recorded node runs the VM: finish it;
//! - a handed-over source elsewhere while the recorded node has no copy (its target lost the
//!   VM before running it): record that node again and take the VM back there.
//!
//! A node that is offline is waited for; nothing is guessed about it.

use kiln_node_client::wire::{Handover, VmPowerState, VmRuntime};

use crate::db::VmRecord;
use crate::state::AppState;

/// What one node's last report says of a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The node is not online: nothing known.
    Offline,
    /// Online, without this VM.
    Absent,
    /// Online, with a copy in this state.
    Copy(CopyState),
}

/// A copy's state, as far as a handover cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyState {
    /// Running or paused, not at a handover point.
    Active,
    /// Stopped; `never_ran` when it was an incoming copy that failed before its commit.
    Stopped {
        /// It never ran there.
        never_ran: bool,
    },
    /// Waiting at a handover point.
    Waiting(Handover),
}

impl Seen {
    /// From a node's report (`None`: the node is not online; `Some(None)`: no such VM).
    pub fn of(report: Option<Option<&VmRuntime>>) -> Seen {
        match report {
            None => Seen::Offline,
            Some(None) => Seen::Absent,
            Some(Some(rt)) => Seen::Copy(match (rt.handover, rt.state) {
                (Some(h), _) => CopyState::Waiting(h),
                (None, VmPowerState::Stopped) => CopyState::Stopped {
                    never_ran: rt
                        .stop_reason
                        .as_deref()
                        .is_some_and(|r| r.contains("incoming migration failed")),
                },
                (None, _) => CopyState::Active,
            }),
        }
    }
}

/// One action on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `migrate/commit`: the recorded target runs the VM.
    Commit(String),
    /// `migrate/cancel`: a waiting target copy that can never be committed is discarded.
    Discard(String),
    /// `migrate/finish`: a handed-over source copy ends (the VM runs on the recorded node).
    Finish(String),
    /// `migrate/takeback` on the recorded node.
    TakeBack(String),
    /// Record this node as the owner, then `migrate/takeback` there.
    RecordAndTakeBack(String),
}

/// The steps that settle `recorded`'s VM given what every node reports (pure).
pub fn settle(recorded: &str, seen: &[(String, Seen)]) -> Vec<Step> {
    let mut steps = Vec::new();
    let waiting = |want: Handover| {
        seen.iter()
            .filter(move |(n, s)| n != recorded && *s == Seen::Copy(CopyState::Waiting(want)))
            .map(|(n, _)| n.clone())
    };
    steps.extend(waiting(Handover::AwaitingCommit).map(Step::Discard));
    let handed_over: Vec<String> = waiting(Handover::HandedOver).collect();
    let on_recorded = seen
        .iter()
        .find(|(n, _)| n == recorded)
        .map_or(Seen::Absent, |(_, s)| s.clone());
    match on_recorded {
        Seen::Copy(CopyState::Waiting(Handover::AwaitingCommit)) => {
            steps.push(Step::Commit(recorded.to_owned()));
        }
        Seen::Copy(CopyState::Waiting(Handover::HandedOver)) => {
            steps.push(Step::TakeBack(recorded.to_owned()));
        }
        Seen::Copy(CopyState::Active) => {
            steps.extend(handed_over.into_iter().map(Step::Finish));
        }
        Seen::Absent | Seen::Copy(CopyState::Stopped { never_ran: true }) => {
            // Only a single candidate is unambiguous.
            if let [only] = handed_over.as_slice() {
                steps.push(Step::RecordAndTakeBack(only.clone()));
            }
        }
        // Offline (wait for it), stopped after it ran (the admin decides; the paused source
        // copy stays), or a source still deciding by itself.
        Seen::Offline
        | Seen::Copy(CopyState::Stopped { never_ran: false })
        | Seen::Copy(CopyState::Waiting(Handover::AwaitingHandover)) => {}
    }
    steps
}

/// Settle `vm`'s handover, if any copy of it waits at one. Returns whether it did anything
/// (the caller then leaves the VM alone for this pass).
pub async fn run_once(app: &AppState, vm: &mut VmRecord) -> bool {
    if !app.nodes.handover_pending(vm.vmid) {
        return false;
    }
    let reports = app.nodes.reports_of(vm.vmid);
    let seen: Vec<(String, Seen)> = reports
        .iter()
        .map(|(n, r)| (n.clone(), Seen::of(r.as_ref().map(Option::as_ref))))
        .collect();
    let steps = settle(&vm.node, &seen);
    for step in &steps {
        if let Err(e) = apply(app, vm, step).await {
            tracing::warn!(
                vmid = vm.vmid,
                "settling the handover of VM {}: {e}",
                vm.vmid
            );
            break;
        }
    }
    if !steps.is_empty() {
        app.changes.notify();
    }
    !steps.is_empty()
}

async fn apply(app: &AppState, vm: &mut VmRecord, step: &Step) -> Result<(), String> {
    let vmid = vm.vmid;
    let client = |node: &str| {
        let node = node.to_owned();
        async move { app.node_client(&node).await }
    };
    match step {
        Step::Commit(node) => {
            client(node)
                .await?
                .migrate_commit(vmid)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                vmid,
                "VM {vmid}: committed on node {node}, its recorded owner"
            );
        }
        Step::Discard(node) => {
            client(node)
                .await?
                .migrate_cancel(vmid)
                .await
                .map_err(|e| e.to_string())?;
            tracing::info!(
                vmid,
                "VM {vmid}: discarded the uncommitted copy on node {node}"
            );
        }
        Step::Finish(node) => {
            let c = client(node).await?;
            c.migrate_finish(vmid).await.map_err(|e| e.to_string())?;
            let _ = c.delete_vm(vmid).await;
            tracing::info!(vmid, "VM {vmid}: ended the handed-over copy on node {node}");
        }
        Step::TakeBack(node) => {
            client(node)
                .await?
                .migrate_takeback(vmid)
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(
                vmid,
                "VM {vmid}: taken back on node {node}; it runs there again"
            );
        }
        Step::RecordAndTakeBack(node) => {
            app.db
                .set_vm_node(vmid, node)
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(
                vmid,
                "VM {vmid}: node {} lost it before running it; recording node {node} again",
                vm.node
            );
            vm.node = node.clone();
            client(node)
                .await?
                .migrate_takeback(vmid)
                .await
                .map_err(|e| e.to_string())?;
            tracing::warn!(
                vmid,
                "VM {vmid}: taken back on node {node}; it runs there again"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(h: Handover) -> Seen {
        Seen::Copy(CopyState::Waiting(h))
    }

    fn nodes(states: &[(&str, Seen)]) -> Vec<(String, Seen)> {
        states
            .iter()
            .map(|(n, s)| (n.to_string(), s.clone()))
            .collect()
    }

    #[test]
    fn every_combination_settles_as_the_record_says() {
        use Handover::*;
        let active = Seen::Copy(CopyState::Active);
        let ran_and_stopped = Seen::Copy(CopyState::Stopped { never_ran: false });
        let failed_incoming = Seen::Copy(CopyState::Stopped { never_ran: true });
        let s = |n: &str| n.to_string();
        // (recorded, what n1 and n2 report, steps)
        let table: Vec<(&str, Seen, Seen, Vec<Step>)> = vec![
            // Recorded on the target that waits for its commit: commit it, then (next pass,
            // once it runs) finish the source.
            (
                "n2",
                waiting(HandedOver),
                waiting(AwaitingCommit),
                vec![Step::Commit(s("n2"))],
            ),
            (
                "n2",
                waiting(HandedOver),
                active.clone(),
                vec![Step::Finish(s("n1"))],
            ),
            // The record never moved: discard the target, take the source back.
            (
                "n1",
                waiting(HandedOver),
                waiting(AwaitingCommit),
                vec![Step::Discard(s("n2")), Step::TakeBack(s("n1"))],
            ),
            (
                "n1",
                waiting(HandedOver),
                Seen::Offline,
                vec![Step::TakeBack(s("n1"))],
            ),
            // A source that has not handed over decides by itself; its target is discarded
            // only when the record does not name it.
            (
                "n1",
                waiting(AwaitingHandover),
                waiting(AwaitingCommit),
                vec![Step::Discard(s("n2"))],
            ),
            (
                "n1",
                active.clone(),
                waiting(AwaitingCommit),
                vec![Step::Discard(s("n2"))],
            ),
            // The recorded target lost the VM before running it: back to the source.
            (
                "n2",
                waiting(HandedOver),
                Seen::Absent,
                vec![Step::RecordAndTakeBack(s("n1"))],
            ),
            (
                "n2",
                waiting(HandedOver),
                failed_incoming,
                vec![Step::RecordAndTakeBack(s("n1"))],
            ),
            // Unknown or ambiguous: wait, never guess.
            ("n2", waiting(HandedOver), Seen::Offline, vec![]),
            ("n2", waiting(HandedOver), ran_and_stopped, vec![]),
            (
                "n2",
                Seen::Offline,
                waiting(AwaitingCommit),
                vec![Step::Commit(s("n2"))],
            ),
            // Nothing waits: nothing to do.
            ("n1", active.clone(), Seen::Absent, vec![]),
        ];
        for (recorded, n1, n2, want) in table {
            let got = settle(recorded, &nodes(&[("n1", n1.clone()), ("n2", n2.clone())]));
            assert_eq!(got, want, "recorded {recorded}, n1 {n1:?}, n2 {n2:?}");
        }
    }

    #[test]
    fn two_handed_over_sources_for_a_lost_target_are_left_to_the_admin() {
        let seen = nodes(&[
            ("n1", waiting(Handover::HandedOver)),
            ("n2", Seen::Absent),
            ("n3", waiting(Handover::HandedOver)),
        ]);
        assert_eq!(settle("n2", &seen), vec![]);
    }
}
