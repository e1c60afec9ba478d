//! Wire types of the control socket, version [`PROTOCOL_VERSION`].
//!
//! Each request is one JSON object on one line, tagged by `"request"`; each reply is one
//! line, either `{"ok": {"reply": ...}}` or `{"error": {"kind": ..., "message": ...}}`.
//! After a successful `console_attach` reply the connection carries raw console bytes both
//! ways (guest output to the client, client bytes to the guest's serial input) until either
//! side closes or the VM stops.
//!
//! ```text
//! → {"request":"status"}
//! ← {"ok":{"reply":"status","state":"running","stop_reason":null,...}}
//! → {"request":"shutdown","timeout_ms":5000}
//! ← {"ok":{"reply":"stopped","reason":{"kind":"guest_poweroff"}}}
//! ```

use serde::{Deserialize, Serialize};

pub use crate::state::{StopReason, VmState};

/// Version of this protocol; reported in [`VmStatus`].
pub const PROTOCOL_VERSION: u32 = 1;

/// A request on the control socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Current state.
    Status,
    /// Hold every vCPU outside KVM_RUN. Pausing a paused VM is a no-op.
    Pause,
    /// Let the vCPUs run again. Resuming a running VM is a no-op.
    Resume,
    /// Ask the guest to power off (power button); stop it if it has not after `timeout_ms`.
    Shutdown {
        /// How long the guest gets.
        timeout_ms: u64,
    },
    /// Stop the VM now.
    Stop,
    /// Switch this connection to the console byte stream.
    ConsoleAttach {
        /// Send the scroll-back first.
        #[serde(default = "yes")]
        replay: bool,
    },
    /// Counters: vCPU time, exits, memory.
    Stats,
}

fn yes() -> bool {
    true
}

/// A reply line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The request succeeded.
    Ok(Reply),
    /// It did not.
    Error(ApiError),
}

/// What a successful request returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// For `status`, `pause` and `resume`: the state afterwards.
    Status(VmStatus),
    /// For `shutdown` and `stop`: the VM has stopped (the process exits right after).
    Stopped {
        /// Why.
        reason: StopReason,
    },
    /// For `console_attach`: raw console bytes follow on this connection.
    ConsoleAttached {
        /// Bytes of scroll-back that come first.
        replay_bytes: usize,
    },
    /// For `stats`.
    Stats(VmStats),
}

/// Kinds of errors, for programs; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line was not a valid request.
    BadRequest,
    /// The request does not fit the VM's state (e.g. shutdown while paused).
    InvalidState,
    /// The VMM failed to carry it out.
    Internal,
}

/// An error reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Kind.
    pub kind: ErrorKind,
    /// What went wrong and what to do.
    pub message: String,
}

/// The VM's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStatus {
    /// [`PROTOCOL_VERSION`] of the VMM answering.
    pub protocol_version: u32,
    /// Power state.
    pub state: VmState,
    /// Set once stopped.
    pub stop_reason: Option<StopReason>,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory.
    pub memory_mib: u64,
    /// Since the vCPUs were first started.
    pub uptime_ms: u64,
    /// Process id of this kiln-vmm.
    pub pid: u32,
}

/// Per-kind exit counters (VM exits to user space, plus kicks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitCounts {
    /// Port I/O exits.
    pub io: u64,
    /// MMIO exits (no MMIO devices yet: all unclaimed).
    pub mmio: u64,
    /// KVM_RUN interrupted by a kick (pause, stop).
    pub interrupted: u64,
    /// Anything else.
    pub other: u64,
}

impl ExitCounts {
    /// Sum of two counters.
    pub fn add(&self, other: &ExitCounts) -> ExitCounts {
        ExitCounts {
            io: self.io + other.io,
            mmio: self.mmio + other.mmio,
            interrupted: self.interrupted + other.interrupted,
            other: self.other + other.other,
        }
    }
}

/// One vCPU's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VcpuStats {
    /// vCPU index (= APIC ID).
    pub id: u8,
    /// Host CPU time of its thread (guest time included), in nanoseconds.
    pub cpu_time_ns: u64,
    /// Its exits.
    pub exits: ExitCounts,
}

/// Counters of the whole VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmStats {
    /// Power state.
    pub state: VmState,
    /// Since the vCPUs were first started.
    pub uptime_ms: u64,
    /// Per vCPU.
    pub vcpus: Vec<VcpuStats>,
    /// All vCPUs together.
    pub exits: ExitCounts,
    /// Resident set of this process.
    pub rss_bytes: u64,
    /// Guest memory size.
    pub guest_memory_bytes: u64,
    /// Guest memory resident in host RAM (touched by the guest or the VMM).
    pub guest_resident_bytes: u64,
    /// `rss_bytes - guest_resident_bytes`: what the VMM itself costs.
    pub vmm_overhead_bytes: u64,
    /// How long the last `pause` took to get every vCPU out of KVM_RUN, in microseconds.
    pub last_pause_us: Option<u64>,
    /// Console readers attached now.
    pub console_readers: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_snake_case() {
        let r: Request = serde_json::from_str(r#"{"request":"shutdown","timeout_ms":250}"#)
            .expect("valid request");
        assert_eq!(r, Request::Shutdown { timeout_ms: 250 });
        let r: Request =
            serde_json::from_str(r#"{"request":"console_attach"}"#).expect("valid request");
        assert_eq!(r, Request::ConsoleAttach { replay: true });
    }

    #[test]
    fn replies_wrap_ok_and_error() {
        let ok = Response::Ok(Reply::ConsoleAttached { replay_bytes: 3 });
        assert_eq!(
            serde_json::to_string(&ok).expect("serializes"),
            r#"{"ok":{"reply":"console_attached","replay_bytes":3}}"#
        );
        let err = Response::Error(ApiError {
            kind: ErrorKind::InvalidState,
            message: "paused".into(),
        });
        assert_eq!(
            serde_json::to_string(&err).expect("serializes"),
            r#"{"error":{"kind":"invalid_state","message":"paused"}}"#
        );
    }
}
