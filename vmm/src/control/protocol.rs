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

pub use crate::migration::tls::{MigrateTls, TlsFiles};

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
    /// Live-migrate this VM to a `kiln-vmm --migrate-receive` listening at `to` (a Unix
    /// socket path, or `host:port` for TCP). Replies at once with the migration's status;
    /// follow it with `migrate_status` (or `status`/`stats`). On success the VM stops here
    /// with the reason `migrated`; on any failure before the commit it keeps running here.
    MigrateSend {
        /// Where the target listens.
        to: String,
        /// Downtime budget for the stop-and-copy, in milliseconds.
        #[serde(default = "default_downtime_ms")]
        downtime_ms: u64,
        /// Bandwidth cap in MiB/s (none: as fast as the stream goes).
        #[serde(default)]
        bwlimit_mib_s: Option<u64>,
        /// Hold the paused VM in [`MigrationPhase::AwaitingCommit`] once the target has all
        /// of its state, until `migrate_commit` (or a cancel) arrives: this is where the
        /// cluster records the new owner. Without it the commit follows at once.
        #[serde(default)]
        await_commit: bool,
        /// With `await_commit`: give up (and resume the VM here) when no commit arrived
        /// within this many milliseconds.
        #[serde(default = "default_commit_timeout_ms")]
        commit_timeout_ms: u64,
        /// Between nodes: connect over mutual TLS (`to` is the target's host:port).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tls: Option<MigrateTls>,
    },
    /// Source, in [`MigrationPhase::AwaitingCommit`]: hand the VM over. From the reply on
    /// this VMM never resumes the VM by itself ([`MigrationPhase::HandedOver`]); the cluster
    /// records the new owner, commits the target, then sends `migrate_finish` (or, if the
    /// target lost the VM, `migrate_takeback`). Refused once the commit timeout or a cancel
    /// has decided the other way.
    MigrateHandover,
    /// Target, in [`MigrationPhase::AwaitingCommit`] (it has the whole VM): run it here.
    /// Without `await_commit` the source sends this through the stream instead.
    MigrateCommit,
    /// Source, [`MigrationPhase::HandedOver`]: the target runs the VM; exit (reason
    /// `migrated`). Replies at once; follow with `migrate_status` `wait`/`final_only`.
    MigrateFinish,
    /// Source, [`MigrationPhase::HandedOver`]: the target never ran the VM and is gone;
    /// resume it here.
    MigrateTakeback,
    /// Source, before the handover: cancel; the VM keeps running here, the target discards.
    /// Target, waiting for its commit: discard the VM (it never ran here).
    MigrateCancel,
    /// Renew the HA lease: the VM stops itself (reason `lease_expired`) once
    /// `deadline_monotonic_ns` (absolute `CLOCK_MONOTONIC` of this host) passes without a
    /// newer one. `null` disarms the watchdog (the VM is no longer HA-managed).
    Lease {
        /// The new deadline, or none.
        deadline_monotonic_ns: Option<u64>,
    },
    /// The current (or last) migration; with `wait`, reply only once it has ended or waits
    /// for its commit.
    MigrateStatus {
        /// Block until the migration completed, failed, was cancelled or awaits the commit.
        #[serde(default)]
        wait: bool,
        /// With `wait`: only once it has ended (not when it awaits the commit).
        #[serde(default)]
        final_only: bool,
    },
}

/// Default downtime budget of `migrate_send`.
pub const DEFAULT_DOWNTIME_MS: u64 = 50;

fn default_downtime_ms() -> u64 {
    DEFAULT_DOWNTIME_MS
}

/// Default time a source holds a paused VM waiting for `migrate_commit`.
pub const DEFAULT_COMMIT_TIMEOUT_MS: u64 = 10_000;

fn default_commit_timeout_ms() -> u64 {
    DEFAULT_COMMIT_TIMEOUT_MS
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
    /// For `lease`: the deadline now in force and how far away it is.
    Lease {
        /// The deadline (absolute `CLOCK_MONOTONIC`), if armed.
        deadline_monotonic_ns: Option<u64>,
        /// Milliseconds left until it, if armed (0 once passed).
        remaining_ms: Option<u64>,
    },
    /// For `migrate_send`, `migrate_cancel` and `migrate_status`.
    Migration(Box<MigrationStatus>),
}

/// Which side of a migration this VMM is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationRole {
    /// Sending the VM away.
    Outgoing,
    /// Receiving it.
    Incoming,
}

/// Where a migration is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationPhase {
    /// Connecting, exchanging the header and config.
    Connecting,
    /// The first pass over all of guest memory.
    FullPass,
    /// Resending pages dirtied since the previous round.
    DirtyRounds,
    /// vCPUs paused: last pages and machine state.
    StopAndCopy,
    /// Source: the target has all state and the VM is paused here, waiting for
    /// `migrate_handover` (or its commit timeout). Target: it has the whole VM, paused,
    /// waiting for `migrate_commit` (or the source's `Commit` frame).
    AwaitingCommit,
    /// Source: the VM was handed over; paused here, waiting for the target to run it (then
    /// `migrate_finish`) or for `migrate_takeback`. Never resumed here by itself.
    HandedOver,
    /// Target has all state; sending the commit.
    Committing,
    /// The VM runs on the target.
    Completed,
    /// Failed before the commit: the VM runs on the source.
    Failed,
    /// Cancelled: the VM runs on the source.
    Cancelled,
}

impl MigrationPhase {
    /// The migration has ended one way or another.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            MigrationPhase::Completed | MigrationPhase::Failed | MigrationPhase::Cancelled
        )
    }
}

/// One pre-copy round (round 0 is the full pass; the last is the stop-and-copy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationRound {
    /// Round number.
    pub round: u32,
    /// Pages sent with their contents.
    pub pages_sent: u64,
    /// Pages sent as zero markers.
    pub zero_pages: u64,
    /// Bytes put on the stream (frames included).
    pub bytes_sent: u64,
    /// How long the round took, in microseconds.
    pub duration_us: u64,
    /// Pages the guest dirtied during the round (what the next round must send).
    pub dirtied_pages: u64,
    /// Guest dirty rate during the round, bytes/s.
    pub dirty_rate_bytes_s: u64,
    /// Stream throughput during the round, bytes/s.
    pub throughput_bytes_s: u64,
    /// Downtime expected if the stop-and-copy started after this round, microseconds.
    pub expected_downtime_us: u64,
    /// Share of each interval the vCPUs were held (auto-converge), percent.
    pub throttle_percent: u8,
}

/// Progress and result of a migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigrationStatus {
    /// Sending or receiving.
    pub role: MigrationRole,
    /// Where it is.
    pub phase: MigrationPhase,
    /// The other side (target address, or the source's peer address).
    pub peer: String,
    /// Downtime budget, ms.
    pub downtime_budget_ms: u64,
    /// Bandwidth cap, MiB/s.
    pub bwlimit_mib_s: Option<u64>,
    /// Guest memory size, bytes.
    pub guest_memory_bytes: u64,
    /// Rounds so far.
    pub rounds: Vec<MigrationRound>,
    /// Bytes sent (source) or received (target) so far.
    pub bytes_transferred: u64,
    /// Current auto-converge throttle, percent.
    pub throttle_percent: u8,
    /// Since the migration started, ms.
    pub elapsed_ms: u64,
    /// Total time of a completed migration, ms.
    pub total_ms: Option<u64>,
    /// Final downtime: vCPUs paused on the source → running on the target, microseconds.
    pub downtime_us: Option<u64>,
    /// Machine-state restore on the target, microseconds.
    pub restore_us: Option<u64>,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
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
    /// The current or last migration, if any.
    #[serde(default)]
    pub migration: Option<Box<MigrationStatus>>,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest memory.
    pub memory_mib: u64,
    /// Since the vCPUs were first started.
    pub uptime_ms: u64,
    /// Process id of this kiln-vmm.
    pub pid: u32,
    /// A migration target: the TCP address it listens on for its source (`host:port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_listen: Option<String>,
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
    /// The current or last migration, if any.
    #[serde(default)]
    pub migration: Option<Box<MigrationStatus>>,
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
