//! The VM power-state machine: every legal transition is in [`transition`].

use serde::{Deserialize, Serialize};

/// Power state of the VM as the control socket reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// vCPUs are running guest code (or halted waiting for interrupts).
    Running,
    /// vCPUs are held outside KVM_RUN; guest time (its tick counter) stands still.
    Paused,
    /// The VM has ended; the process exits right after.
    Stopped,
}

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StopReason {
    /// The guest powered itself off (power port, `poweroff` in the test guest).
    GuestPoweroff,
    /// The guest asked for a reset (i8042 reset line or power port); the supervisor decides
    /// whether to start it again.
    GuestReset,
    /// A `stop` request on the control socket.
    StopRequested,
    /// A `shutdown` request: the guest did not power off within the timeout, so it was stopped.
    ShutdownTimedOut {
        /// The timeout that passed, in milliseconds.
        timeout_ms: u64,
    },
    /// The process got SIGTERM or SIGINT.
    Signal {
        /// Signal number.
        signal: i32,
    },
    /// The guest triple-faulted (KVM_EXIT_SHUTDOWN).
    GuestCrashed {
        /// What KVM reported.
        detail: String,
    },
    /// The VMM itself failed while running the VM.
    VmmError {
        /// The error.
        detail: String,
    },
    /// The VM was live-migrated away and runs on the target now.
    Migrated {
        /// Where it went.
        to: String,
    },
    /// The HA lease ran out without renewal: the node lost contact with the cluster (or its
    /// agent froze), so the VMM fenced the guest itself before the cluster recovers it
    /// elsewhere.
    LeaseExpired {
        /// How late the watchdog noticed, in milliseconds.
        overdue_ms: u64,
    },
    /// This was the target of a migration that did not complete; the VM never ran here
    /// (it runs on the source).
    IncomingMigrationFailed {
        /// Why.
        detail: String,
    },
}

/// Exit status of a kiln-vmm whose HA lease expired (see [`StopReason::LeaseExpired`]).
pub const LEASE_EXPIRED_EXIT_CODE: i32 = 4;

/// Start of the display text of [`StopReason::LeaseExpired`]; the node agent recognises a
/// fenced VM by it in `vmm.log`.
pub const LEASE_EXPIRED_TEXT: &str = "the HA lease expired";

impl StopReason {
    /// Process exit code for this reason: 0 for an orderly end, 2 for a guest reset request,
    /// 3 for a crash (guest or VMM), 4 when the HA lease expired. Startup errors exit with 1 before any VM runs, and so
    /// does a migration target whose incoming migration failed (the VM never ran there).
    pub fn exit_code(&self) -> i32 {
        match self {
            StopReason::GuestPoweroff
            | StopReason::StopRequested
            | StopReason::ShutdownTimedOut { .. }
            | StopReason::Signal { .. }
            | StopReason::Migrated { .. } => 0,
            StopReason::IncomingMigrationFailed { .. } => 1,
            StopReason::GuestReset => 2,
            StopReason::GuestCrashed { .. } | StopReason::VmmError { .. } => 3,
            StopReason::LeaseExpired { .. } => LEASE_EXPIRED_EXIT_CODE,
        }
    }
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopReason::GuestPoweroff => write!(f, "the guest powered off"),
            StopReason::GuestReset => write!(f, "the guest requested a reset"),
            StopReason::StopRequested => write!(f, "stopped on request"),
            StopReason::ShutdownTimedOut { timeout_ms } => write!(
                f,
                "the guest did not shut down within {timeout_ms} ms and was stopped"
            ),
            StopReason::Signal { signal } => write!(f, "kiln-vmm received signal {signal}"),
            StopReason::GuestCrashed { detail } => write!(f, "the guest crashed: {detail}"),
            StopReason::VmmError { detail } => write!(f, "VMM error: {detail}"),
            StopReason::Migrated { to } => write!(f, "the VM was migrated to {to}"),
            StopReason::LeaseExpired { overdue_ms } => write!(
                f,
                "{LEASE_EXPIRED_TEXT} (noticed {overdue_ms} ms after the deadline): the node lost contact with the cluster, so the VM was fenced"
            ),
            StopReason::IncomingMigrationFailed { detail } => {
                write!(f, "the incoming migration failed: {detail}")
            }
        }
    }
}

/// What is asked of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateEvent {
    /// Hold the vCPUs.
    Pause,
    /// Let the vCPUs run again.
    Resume,
    /// End the VM for this reason.
    Stop(StopReason),
}

/// Why a transition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The VM has already stopped.
    #[error("the VM has already stopped ({0}); start a new kiln-vmm to run it again")]
    AlreadyStopped(StopReason),
}

/// The legal transitions. Pausing a paused VM and resuming a running one are no-ops (so a
/// supervisor can repeat a request safely); nothing leaves `Stopped`.
pub fn transition(
    from: VmState,
    stopped_because: Option<&StopReason>,
    event: &StateEvent,
) -> Result<VmState, TransitionError> {
    match (from, event) {
        (VmState::Stopped, _) => Err(TransitionError::AlreadyStopped(
            stopped_because
                .cloned()
                .unwrap_or(StopReason::StopRequested),
        )),
        (VmState::Running | VmState::Paused, StateEvent::Pause) => Ok(VmState::Paused),
        (VmState::Running | VmState::Paused, StateEvent::Resume) => Ok(VmState::Running),
        (VmState::Running | VmState::Paused, StateEvent::Stop(_)) => Ok(VmState::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_follow_the_table() {
        let stop = StateEvent::Stop(StopReason::StopRequested);
        let table: &[(VmState, StateEvent, Option<VmState>)] = &[
            (VmState::Running, StateEvent::Pause, Some(VmState::Paused)),
            (VmState::Running, StateEvent::Resume, Some(VmState::Running)),
            (VmState::Running, stop.clone(), Some(VmState::Stopped)),
            (VmState::Paused, StateEvent::Pause, Some(VmState::Paused)),
            (VmState::Paused, StateEvent::Resume, Some(VmState::Running)),
            (VmState::Paused, stop.clone(), Some(VmState::Stopped)),
            (VmState::Stopped, StateEvent::Pause, None),
            (VmState::Stopped, StateEvent::Resume, None),
            (VmState::Stopped, stop, None),
        ];
        for (from, event, to) in table {
            let got = transition(*from, Some(&StopReason::GuestPoweroff), event).ok();
            assert_eq!(got, *to, "{from:?} --{event:?}-->");
        }
    }

    #[test]
    fn exit_codes_separate_clean_reset_and_crash() {
        assert_eq!(StopReason::GuestPoweroff.exit_code(), 0);
        assert_eq!(StopReason::StopRequested.exit_code(), 0);
        assert_eq!(StopReason::GuestReset.exit_code(), 2);
        let crash = StopReason::GuestCrashed {
            detail: "triple fault".into(),
        };
        assert_eq!(crash.exit_code(), 3);
        assert_eq!(StopReason::LeaseExpired { overdue_ms: 1 }.exit_code(), 4);
    }

    #[test]
    fn stop_reason_is_tagged_on_the_wire() {
        let json = serde_json::to_string(&StopReason::ShutdownTimedOut { timeout_ms: 5 })
            .expect("serializes");
        assert_eq!(json, r#"{"kind":"shutdown_timed_out","timeout_ms":5}"#);
    }
}
