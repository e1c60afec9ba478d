//! Live migration between two kiln-vmm processes over one byte stream.
//!
//! - [`protocol`]: the versioned, framed, checksummed stream and its commit handshake.
//! - [`state`]: machine state (vCPUs, irqchip, PIT, kvmclock, serial), serde-serialisable.
//! - [`send`]: the source: dirty logging, full pass, dirty rounds until the rest fits the
//!   downtime budget (auto-converge throttling when rounds stop shrinking), stop-and-copy,
//!   commit.
//! - `pace` (the `bwlimit` cap and auto-converge) and `pages` (untouched pages, building
//!   Memory frames): parts of the source.
//! - [`receive`]: the target (`kiln-vmm --migrate-receive`): a paused VM without a guest
//!   image that takes memory and state and resumes on commit.
//! - [`transport`]: Unix socket or TCP streams, and [`tls`]: mutual TLS between nodes,
//!   spoken by kiln-vmm itself (no agent relays the stream), opened by an HTTP/1.1 upgrade
//!   ([`upgrade`]) that carries the one-time token.
//!
//! Safety rules. The target runs the VM only on a commit: the source's `Commit` frame (two
//! VMMs alone) or `migrate_commit` (a cluster, whose server records the new owner first). The
//! source resumes the VM by itself only before it is handed over: on any failure, a cancel,
//! or when no `migrate_handover` arrived in time; it then tells the target to discard. Once
//! handed over (or once `Commit` is on the wire) the source resumes it only on
//! `migrate_takeback`, which the cluster sends when it knows the target never ran it. A
//! target whose stream broke while it waits for its commit keeps the VM (paused) for a
//! while, so a commit can still reach it through the control socket.

pub mod dirty;
mod pace;
mod pages;
pub mod protocol;
pub mod receive;
pub mod send;
pub mod state;
pub mod tls;
pub mod transport;
pub mod upgrade;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::control::protocol::{MigrationPhase, MigrationRole, MigrationStatus};

/// Errors of a migration (either side).
#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// A migration is already under way.
    #[error(
        "a migration of this VM is already in progress; cancel it first or wait for it to end"
    )]
    AlreadyRunning,
    /// The VM is not in a state that can be migrated.
    #[error("the VM is {0}; only a running VM can be live-migrated")]
    NotRunning(&'static str),
    /// The target could not be reached.
    #[error("cannot connect to the migration target {to}; is `kiln-vmm --migrate-receive` listening there?")]
    Connect {
        /// Target address.
        to: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The mutual-TLS handshake with the target failed (certificate, name, CA).
    #[error("mutual TLS with the migration target {to} failed")]
    Tls {
        /// Target address.
        to: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The stream failed (peer died, network broke, corrupt frame).
    #[error("the migration stream failed during {during}")]
    Stream {
        /// Which phase.
        during: &'static str,
        /// Why.
        #[source]
        source: protocol::StreamError,
    },
    /// The peer sent something the protocol does not allow here.
    #[error("the migration peer broke the protocol: expected {expected}, got {got:?}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// What came.
        got: protocol::FrameKind,
    },
    /// The target refused the VM.
    #[error("the migration target refused the VM: {0}")]
    Refused(String),
    /// The peer aborted.
    #[error("the migration peer aborted: {0}")]
    PeerAborted(String),
    /// Cancelled on request.
    #[error("the migration was cancelled; the VM keeps running on the source")]
    Cancelled,
    /// Nobody confirmed the new owner in time.
    #[error("no handover was asked for within {0:?} of the target having the whole VM; it keeps running on the source")]
    CommitTimeout(Duration),
    /// Handed over, then taken back: the target never ran the VM.
    #[error("the VM was taken back after its handover (the target never ran it); it runs on the source again")]
    TakenBack,
    /// Target: the stream broke while it waited for its commit, and no commit came.
    #[error("the migration stream broke while the target waited for its commit, and no commit arrived within {0:?}; the VM was discarded here")]
    NoCommit(Duration),
    /// Dirty logging or memory access failed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// Machine state.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// Pausing or resuming the VM failed.
    #[error("cannot {what} the VM")]
    Vm {
        /// pause / resume.
        what: &'static str,
        /// Why.
        #[source]
        source: Box<crate::vm::VmError>,
    },
    /// A thread could not be started.
    #[error("cannot start the migration thread")]
    Spawn(#[source] std::io::Error),
}

impl MigrationError {
    pub(crate) fn stream(during: &'static str) -> impl FnOnce(protocol::StreamError) -> Self {
        move |source| MigrationError::Stream { during, source }
    }
}

/// The decision taken at a handover point (see [`MigrationSlot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Verdict {
    /// Nobody decided yet.
    #[default]
    Pending,
    /// Forward: hand over (source), run it (target), finish (source after the handover).
    Go,
    /// Back: cancel, time out, discard (target) or take the VM back (source).
    Back,
}

#[derive(Default)]
struct SlotInner {
    status: Option<MigrationStatus>,
    started: Option<Instant>,
    verdict: Verdict,
    /// Target: when its migration stream ended while it waited for the commit.
    stream_lost: Option<Instant>,
    /// Source after the handover: the target's report that it runs the VM.
    resumed: Option<protocol::ResumeReport>,
}

/// The VM's current or last migration: progress for `status`/`stats`, the cancel flag, and
/// the decisions at its handover points, each taken exactly once under one lock:
///
/// - source in `AwaitingCommit`: `migrate_handover` (→ `HandedOver`) against a cancel or
///   the commit timeout (→ the VM resumes here);
/// - source in `HandedOver`: `migrate_finish` or the target's `Resumed` frame (→ exit)
///   against `migrate_takeback` (→ resume here);
/// - target in `AwaitingCommit`: `migrate_commit` or the source's `Commit` frame (→ run)
///   against a cancel, the source's `Abort` or a lost stream's timeout (→ discard).
#[derive(Default)]
pub struct MigrationSlot {
    inner: Mutex<SlotInner>,
    changed: Condvar,
    cancel: AtomicBool,
    /// A target's TCP listening address, once bound.
    listen: std::sync::OnceLock<String>,
}

/// What ended a wait at a handover point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Forward (handover, commit, finish).
    Go,
    /// Back (cancel, abort, takeback).
    Back,
    /// No decision in time: counts as back.
    TimedOut,
}

impl MigrationSlot {
    /// A target: remembers the TCP address it listens on (reported in `status`).
    pub fn set_listen(&self, addr: String) {
        let _ = self.listen.set(addr);
    }

    /// A target's TCP listening address.
    pub fn listen(&self) -> Option<String> {
        self.listen.get().cloned()
    }

    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status now (elapsed time filled in).
    pub fn snapshot(&self) -> Option<MigrationStatus> {
        Self::snapshot_of(&self.lock())
    }

    fn snapshot_of(inner: &SlotInner) -> Option<MigrationStatus> {
        let mut status = inner.status.clone()?;
        if !status.phase.is_final() {
            if let Some(started) = inner.started {
                status.elapsed_ms = started.elapsed().as_millis() as u64;
            }
        }
        Some(status)
    }

    /// Start tracking a new migration; refused while one is under way.
    pub(crate) fn begin(&self, status: MigrationStatus) -> Result<(), MigrationError> {
        let mut inner = self.lock();
        if inner.status.as_ref().is_some_and(|s| !s.phase.is_final()) {
            return Err(MigrationError::AlreadyRunning);
        }
        self.cancel.store(false, Ordering::SeqCst);
        *inner = SlotInner {
            status: Some(status),
            started: Some(Instant::now()),
            ..SlotInner::default()
        };
        self.changed.notify_all();
        Ok(())
    }

    /// Change the status.
    pub(crate) fn update(&self, f: impl FnOnce(&mut MigrationStatus)) {
        let mut inner = self.lock();
        let started = inner.started;
        if let Some(status) = inner.status.as_mut() {
            f(status);
            if let Some(started) = started {
                status.elapsed_ms = started.elapsed().as_millis() as u64;
            }
        }
        self.changed.notify_all();
    }

    /// Whether a migration is under way and has not ended.
    pub fn in_progress(&self) -> bool {
        self.lock()
            .status
            .as_ref()
            .is_some_and(|s| !s.phase.is_final())
    }

    /// Takes a decision if `allowed` says this request fits the current role and phase
    /// and nothing was decided yet; `apply` then changes the state under the same lock.
    fn decide(
        &self,
        what: &str,
        allowed: impl FnOnce(MigrationRole, MigrationPhase) -> bool,
        apply: impl FnOnce(&mut SlotInner),
    ) -> Result<MigrationStatus, String> {
        let mut inner = self.lock();
        let Some(status) = inner.status.as_ref() else {
            return Err(format!("no migration of this VM to {what}"));
        };
        let (role, phase) = (status.role, status.phase);
        if !allowed(role, phase) {
            return Err(format!(
                "cannot {what} an {} migration that is {phase:?}",
                match role {
                    MigrationRole::Outgoing => "outgoing",
                    MigrationRole::Incoming => "incoming",
                }
            ));
        }
        if inner.verdict != Verdict::Pending || self.cancel.load(Ordering::SeqCst) {
            return Err(format!(
                "cannot {what}: the migration was already decided the other way (cancelled, timed out or taken back)"
            ));
        }
        apply(&mut inner);
        self.changed.notify_all();
        Self::snapshot_of(&inner).ok_or_else(|| "the migration vanished".to_string())
    }

    /// Source: hand the paused VM over (`migrate_handover`).
    pub fn request_handover(&self) -> Result<MigrationStatus, String> {
        self.decide(
            "hand over",
            |role, phase| {
                role == MigrationRole::Outgoing && phase == MigrationPhase::AwaitingCommit
            },
            |inner| {
                if let Some(s) = inner.status.as_mut() {
                    s.phase = MigrationPhase::HandedOver;
                }
            },
        )
    }

    /// The status, if this decision (`role`, `verdict`) was already taken: asking again —
    /// a retried `migrate_commit`, a `migrate_finish` after the target's `Resumed` frame —
    /// is answered as done, not as a conflict.
    fn already(&self, role: MigrationRole, verdict: Verdict) -> Option<MigrationStatus> {
        let inner = self.lock();
        let s = inner.status.as_ref()?;
        let waiting = matches!(
            s.phase,
            MigrationPhase::AwaitingCommit | MigrationPhase::HandedOver
        );
        let done = s.role == role
            && !self.cancel.load(Ordering::SeqCst)
            && ((waiting && inner.verdict == verdict)
                || (verdict == Verdict::Go && s.phase == MigrationPhase::Completed));
        done.then(|| Self::snapshot_of(&inner)).flatten()
    }

    /// Target: run the VM here (`migrate_commit`, or the source's `Commit` frame).
    pub fn request_commit(&self) -> Result<MigrationStatus, String> {
        if let Some(done) = self.already(MigrationRole::Incoming, Verdict::Go) {
            return Ok(done);
        }
        self.decide(
            "commit",
            |role, phase| {
                role == MigrationRole::Incoming && phase == MigrationPhase::AwaitingCommit
            },
            |inner| inner.verdict = Verdict::Go,
        )
    }

    /// Source after the handover: exit, the target runs the VM (`migrate_finish`).
    pub fn request_finish(&self) -> Result<MigrationStatus, String> {
        if let Some(done) = self.already(MigrationRole::Outgoing, Verdict::Go) {
            return Ok(done);
        }
        self.decide(
            "finish",
            |role, phase| role == MigrationRole::Outgoing && phase == MigrationPhase::HandedOver,
            |inner| inner.verdict = Verdict::Go,
        )
    }

    /// Source after the handover: resume here, the target lost the VM (`migrate_takeback`).
    pub fn request_takeback(&self) -> Result<MigrationStatus, String> {
        if let Some(done) = self.already(MigrationRole::Outgoing, Verdict::Back) {
            return Ok(done);
        }
        self.decide(
            "take back",
            |role, phase| role == MigrationRole::Outgoing && phase == MigrationPhase::HandedOver,
            |inner| inner.verdict = Verdict::Back,
        )
    }

    /// Source after the handover: the target reported that it runs the VM.
    pub(crate) fn target_resumed(&self, report: protocol::ResumeReport) {
        let mut inner = self.lock();
        inner.resumed = Some(report);
        if inner.verdict == Verdict::Pending {
            inner.verdict = Verdict::Go;
        }
        self.changed.notify_all();
    }

    /// The target's report, if it arrived.
    pub(crate) fn resume_report(&self) -> Option<protocol::ResumeReport> {
        self.lock().resumed.clone()
    }

    /// Target: the stream ended while it waits for its commit.
    pub(crate) fn stream_lost(&self) {
        let mut inner = self.lock();
        inner.stream_lost.get_or_insert_with(Instant::now);
        self.changed.notify_all();
    }

    /// Ask the running migration to stop (`migrate_cancel`). Before a handover point the
    /// source stops sending and resumes the VM; a target waiting for its commit discards it.
    /// Refused once the VM was handed over (that is `migrate_takeback`'s business).
    pub fn request_cancel(&self) -> Result<MigrationStatus, String> {
        let mut inner = self.lock();
        let Some(status) = inner.status.as_ref() else {
            return Err("no migration is in progress on this VM".into());
        };
        let phase = status.phase;
        if phase.is_final() {
            return Err(format!("the migration has already ended ({phase:?})"));
        }
        if phase == MigrationPhase::HandedOver {
            return Err(
                "the VM was handed over to the target; only the cluster can take it back".into(),
            );
        }
        if inner.verdict == Verdict::Go {
            return Err("the migration was already committed; it cannot be cancelled".into());
        }
        self.cancel.store(true, Ordering::SeqCst);
        if phase == MigrationPhase::AwaitingCommit {
            inner.verdict = Verdict::Back;
        }
        self.changed.notify_all();
        Self::snapshot_of(&inner).ok_or_else(|| "the migration vanished".to_string())
    }

    /// Source: wait in `AwaitingCommit` for the handover, a cancel, or `timeout`. A timeout
    /// is decided under the lock, so a late `migrate_handover` is refused.
    pub(crate) fn wait_handover(&self, timeout: Duration) -> Decision {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            let phase = inner.status.as_ref().map(|s| s.phase);
            if phase == Some(MigrationPhase::HandedOver) {
                return Decision::Go;
            }
            if inner.verdict == Verdict::Back || self.cancel.load(Ordering::SeqCst) {
                return Decision::Back;
            }
            let now = Instant::now();
            if now >= deadline {
                inner.verdict = Verdict::Back;
                self.changed.notify_all();
                return Decision::TimedOut;
            }
            inner = self
                .changed
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wait for the verdict at the current handover point. `lost_timeout`: once the stream
    /// was reported lost, give up (decided as back) after this long; without it, wait for
    /// as long as it takes.
    pub(crate) fn wait_verdict(&self, lost_timeout: Option<Duration>) -> Decision {
        let mut inner = self.lock();
        loop {
            match inner.verdict {
                Verdict::Go => return Decision::Go,
                Verdict::Back => return Decision::Back,
                Verdict::Pending => {}
            }
            let wait = match (lost_timeout, inner.stream_lost) {
                (Some(limit), Some(lost)) => {
                    let waited = lost.elapsed();
                    if waited >= limit {
                        inner.verdict = Verdict::Back;
                        self.changed.notify_all();
                        return Decision::TimedOut;
                    }
                    limit - waited
                }
                _ => Duration::from_secs(3600),
            };
            inner = self
                .changed
                .wait_timeout(inner, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Cancel requested?
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Block until the migration has ended (or `timeout` passed); its status.
    pub fn wait_final(&self, timeout: Duration) -> Option<MigrationStatus> {
        let inner = self.lock();
        let inner = self
            .changed
            .wait_timeout_while(inner, timeout, |i| {
                i.status.as_ref().is_some_and(|s| !s.phase.is_final())
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        Self::snapshot_of(&inner)
    }

    /// Block until the migration has ended or waits at a handover point nobody has decided
    /// yet (or `timeout` passed); its status.
    pub fn wait_settled(&self, timeout: Duration) -> Option<MigrationStatus> {
        let inner = self.lock();
        let inner = self
            .changed
            .wait_timeout_while(inner, timeout, |i| {
                i.status.as_ref().is_some_and(|s| {
                    let waiting = matches!(
                        s.phase,
                        MigrationPhase::AwaitingCommit | MigrationPhase::HandedOver
                    ) && i.verdict == Verdict::Pending
                        && !self.cancel.load(Ordering::SeqCst);
                    !(s.phase.is_final() || waiting)
                })
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        Self::snapshot_of(&inner)
    }
}

/// Phase helper for the final states.
pub(crate) fn final_phase(err: &MigrationError) -> MigrationPhase {
    match err {
        MigrationError::Cancelled => MigrationPhase::Cancelled,
        _ => MigrationPhase::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(role: MigrationRole, phase: MigrationPhase) -> MigrationSlot {
        let slot = MigrationSlot::default();
        slot.begin(MigrationStatus {
            role,
            phase,
            peer: "test".into(),
            downtime_budget_ms: 50,
            bwlimit_mib_s: None,
            guest_memory_bytes: 1 << 20,
            rounds: Vec::new(),
            bytes_transferred: 0,
            throttle_percent: 0,
            elapsed_ms: 0,
            total_ms: None,
            downtime_us: None,
            restore_us: None,
            error: None,
        })
        .expect("begin");
        slot
    }

    #[test]
    fn a_finish_after_the_targets_resumed_frame_is_done_and_a_takeback_then_refused() {
        let s = slot(MigrationRole::Outgoing, MigrationPhase::HandedOver);
        s.target_resumed(protocol::ResumeReport::default());
        assert!(s.request_finish().is_ok());
        assert!(s.request_finish().is_ok(), "asked again");
        let e = s.request_takeback().expect_err("decided the other way");
        assert!(e.contains("other way"), "{e}");
        s.update(|st| st.phase = MigrationPhase::Completed);
        assert!(s.request_finish().is_ok(), "after completion");
    }

    #[test]
    fn a_commit_asked_twice_is_done_and_a_takeback_twice_too() {
        let t = slot(MigrationRole::Incoming, MigrationPhase::AwaitingCommit);
        assert!(t.request_commit().is_ok());
        assert!(t.request_commit().is_ok());
        let s = slot(MigrationRole::Outgoing, MigrationPhase::HandedOver);
        assert!(s.request_takeback().is_ok());
        assert!(s.request_takeback().is_ok());
        assert!(s.request_finish().is_err(), "taken back: no finish");
    }
}
