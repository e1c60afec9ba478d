//! The handover of a live migration on this node, as the server drives it (its
//! `vms::migrate` task, and `vms::handover` for handovers a task could not finish): the source
//! hands its paused VM over (`migrate/handover`), the target is committed (`migrate/commit`),
//! the source's copy ends (`migrate/finish`) — or is taken back (`migrate/takeback`); a
//! cancel stops an outgoing migration before its handover or discards a waiting target.

use kiln_node_client::wire::{Handover, MigrationPhase, MigrationStatus, VmPowerState};

use super::migration::{to_wire, wait_settled, OutcomeRx};
use super::{control, control_error, Run, Supervisor, CONTROL_TIMEOUT};
use crate::vms::VmError;

impl Supervisor {
    /// `migrate/handover` (source): the VM, paused with the target holding all of it, is
    /// handed over: kiln-vmm will not resume it by itself any more.
    pub async fn migrate_handover(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let socket = self.socket_of(vmid)?;
        let status = control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_handover())
            .await
            .map_err(|e| control_error(vmid, &e))?;
        self.set_handover(vmid, Some(Handover::HandedOver));
        to_wire(&status).map_err(|detail| VmError::Control { vmid, detail })
    }

    /// `migrate/commit` (target): runs the VM that waits here for its commit; answers once
    /// it runs.
    pub async fn migrate_commit(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let socket = self.socket_of(vmid)?;
        control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_commit())
            .await
            .map_err(|e| control_error(vmid, &e))?;
        let status = wait_settled(vmid, &socket, true).await?;
        self.incoming_ended(vmid).await;
        if status.phase == MigrationPhase::Completed {
            self.set_handover(vmid, None);
            return Ok(status);
        }
        Err(VmError::Migration {
            status: 502,
            message: format!(
                "VM {vmid} did not start on node {} after its commit: {}",
                self.node(),
                status
                    .error
                    .unwrap_or_else(|| format!("{:?}", status.phase))
            ),
        })
    }

    /// `migrate/finish` (source, handed over): the target runs the VM; this copy ends.
    /// Answers the migration's final status (rounds, downtime).
    pub async fn migrate_finish(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let outcome = self.outgoing_map().get(&vmid).cloned();
        // kiln-vmm may have ended already: the target's `Resumed` frame finishes it too.
        let sent = match self.socket_of(vmid) {
            Ok(socket) => control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_finish())
                .await
                .map(|_| socket)
                .map_err(|e| control_error(vmid, &e)),
            Err(e) => Err(e),
        };
        let settled = match (outcome, sent) {
            (Some(outcome), _) => self.outcome_of(vmid, outcome).await,
            // Started by an earlier agent: follow kiln-vmm itself.
            (None, Ok(socket)) => match wait_settled(vmid, &socket, true).await {
                Ok(status) => Ok(status),
                Err(e) => self
                    .settled_by_exit(vmid, "the target".into(), Err(e))
                    .await
                    .map_err(|e| e.to_string()),
            },
            (None, Err(e)) => self
                .settled_by_exit(vmid, "the target".into(), Err(e))
                .await
                .map_err(|e| e.to_string()),
        };
        match settled {
            Ok(status) if status.phase == MigrationPhase::Completed => Ok(status),
            Ok(status) => Err(self.not_finished(
                vmid,
                status
                    .error
                    .unwrap_or_else(|| format!("{:?}", status.phase)),
            )),
            Err(why) => Err(self.not_finished(vmid, why)),
        }
    }

    /// `migrate/takeback` (source, handed over): the target never ran the VM and has lost
    /// it; resume it here. Answers the migration's final status.
    pub async fn migrate_takeback(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let socket = self.socket_of(vmid)?;
        let outcome = self.outgoing_map().get(&vmid).cloned();
        control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_takeback())
            .await
            .map_err(|e| control_error(vmid, &e))?;
        if let Some(outcome) = outcome {
            // Its bookkeeping (the bridge, the migration mark) ends with it; the VM runs.
            let _ = self.outcome_of(vmid, outcome).await;
        }
        let status = wait_settled(vmid, &socket, true).await?;
        self.set_migration(vmid, None);
        self.set_handover(vmid, None);
        self.update(vmid, |slot| {
            if let Run::Running(live) = &mut slot.run {
                live.power = VmPowerState::Running;
            }
        });
        tracing::info!("VM {vmid}: taken back after its handover; it runs here again");
        Ok(status)
    }

    /// The outcome of an outgoing migration this agent supervises, once known.
    async fn outcome_of(
        &self,
        vmid: u32,
        mut outcome: OutcomeRx,
    ) -> Result<MigrationStatus, String> {
        let settled = outcome
            .wait_for(Option::is_some)
            .await
            .map(|o| o.clone())
            .ok()
            .flatten()
            .unwrap_or_else(|| Err("the migration's supervision ended".into()));
        self.outgoing_map().remove(&vmid);
        settled
    }

    fn not_finished(&self, vmid: u32, why: String) -> VmError {
        VmError::Migration {
            status: 502,
            message: format!(
                "VM {vmid} was handed over, but its copy on node {} did not end ({why})",
                self.node()
            ),
        }
    }

    /// The control socket of `vmid`'s running kiln-vmm.
    fn socket_of(&self, vmid: u32) -> Result<std::path::PathBuf, VmError> {
        let table = self.table();
        let slot = table.get(&vmid).ok_or_else(|| self.not_found(vmid))?;
        match &slot.run {
            Run::Running(_) => Ok(slot.dir.socket()),
            _ => Err(VmError::WrongState(format!(
                "VM {vmid} does not run on node {}; it has no migration to act on",
                self.node()
            ))),
        }
    }

    fn set_handover(&self, vmid: u32, handover: Option<Handover>) {
        self.update(vmid, |slot| {
            if let Run::Running(live) = &mut slot.run {
                live.handover = handover;
            }
        });
    }

    /// After the wait for a committed migration lost its connection: if kiln-vmm exited
    /// with the reason "migrated", the migration completed; otherwise keep `lost`.
    pub(super) async fn settled_by_exit(
        &self,
        vmid: u32,
        peer: String,
        lost: Result<MigrationStatus, VmError>,
    ) -> Result<MigrationStatus, VmError> {
        self.wait_gone(vmid, &peer).await;
        let migrated = self.table().get(&vmid).is_some_and(|slot| {
            matches!(&slot.run, Run::Stopped { reason, .. } if reason.starts_with("migrated to"))
        });
        if !migrated {
            return lost;
        }
        let mut status = to_wire(&kiln_vmm::protocol::MigrationStatus {
            role: kiln_vmm::protocol::MigrationRole::Outgoing,
            phase: kiln_vmm::protocol::MigrationPhase::Completed,
            peer,
            downtime_budget_ms: 0,
            bwlimit_mib_s: None,
            guest_memory_bytes: 0,
            rounds: Vec::new(),
            bytes_transferred: 0,
            throttle_percent: 0,
            elapsed_ms: 0,
            total_ms: None,
            downtime_us: None,
            restore_us: None,
            error: None,
        })
        .map_err(|detail| VmError::Control { vmid, detail })?;
        status.error = Some("kiln-vmm exited before it reported its figures".into());
        Ok(status)
    }

    /// `migrate_cancel`: cancels the outgoing migration of `vmid` before its handover (not
    /// serialised with the migration itself, which holds the VM's action lock), or discards
    /// an incoming VM waiting here for its commit.
    pub async fn migrate_cancel(&self, vmid: u32) -> Result<MigrationStatus, VmError> {
        let socket = self.socket_of(vmid)?;
        let status = control::request(&socket, CONTROL_TIMEOUT, |c| c.migrate_cancel())
            .await
            .map_err(|e| control_error(vmid, &e))?;
        to_wire(&status).map_err(|detail| VmError::Control { vmid, detail })
    }
}
