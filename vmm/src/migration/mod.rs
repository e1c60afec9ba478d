//! Live migration between two kiln-vmm processes over one byte stream.
//!
//! - [`protocol`]: the versioned, framed, checksummed stream and its commit handshake.
//! - [`state`]: machine state (vCPUs, irqchip, PIT, kvmclock, serial), serde-serialisable.
//! - [`send`]: the source: dirty logging, full pass, dirty rounds until the rest fits the
//!   downtime budget (auto-converge throttling when rounds stop shrinking), stop-and-copy,
//!   commit.
//! - [`receive`]: the target (`kiln-vmm --migrate-receive`): a paused VM without a guest
//!   image that takes memory and state and resumes on commit.
//! - [`transport`]: Unix socket or TCP streams (mutual TLS between nodes comes later and
//!   carries the same bytes).
//!
//! Safety rule: before the source has sent `Commit` the VM belongs to the source (any
//! failure resumes it there and the target discards); once `Commit` is on the wire the
//! source never resumes it.

pub mod dirty;
pub mod protocol;
pub mod receive;
pub mod send;
pub mod state;
pub mod transport;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::control::protocol::{MigrationPhase, MigrationStatus};

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
    #[error("no commit arrived within {0:?} of the target having the whole VM; it keeps running on the source")]
    CommitTimeout(Duration),
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

#[derive(Default)]
struct SlotInner {
    status: Option<MigrationStatus>,
    started: Option<Instant>,
}

/// The VM's current or last migration: progress for `status`/`stats`, the cancel flag, and
/// a condvar for `migrate_status wait`.
#[derive(Default)]
pub struct MigrationSlot {
    inner: Mutex<SlotInner>,
    changed: Condvar,
    cancel: AtomicBool,
    commit: AtomicBool,
}

/// What ended a source's wait in [`MigrationPhase::AwaitingCommit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CommitDecision {
    /// `migrate_commit` arrived.
    Commit,
    /// `migrate_cancel` arrived.
    Cancel,
    /// Neither, in time.
    TimedOut,
}

impl MigrationSlot {
    fn lock(&self) -> MutexGuard<'_, SlotInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The status now (elapsed time filled in).
    pub fn snapshot(&self) -> Option<MigrationStatus> {
        let inner = self.lock();
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
        self.commit.store(false, Ordering::SeqCst);
        inner.status = Some(status);
        inner.started = Some(Instant::now());
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

    /// Ask the running migration to stop; returns its status (None: nothing to cancel).
    /// A migration past its commit cannot be cancelled any more: the status says so.
    pub fn request_cancel(&self) -> Option<MigrationStatus> {
        {
            let inner = self.lock();
            let running = inner.status.as_ref().is_some_and(|s| !s.phase.is_final());
            if !running {
                return None;
            }
            // Under the lock, so a waiting commit sees either the commit or the cancel first.
            if !self.commit.load(Ordering::SeqCst) {
                self.cancel.store(true, Ordering::SeqCst);
            }
            self.changed.notify_all();
        }
        self.snapshot()
    }

    /// Let a migration waiting in [`MigrationPhase::AwaitingCommit`] commit.
    pub fn request_commit(&self) -> Result<MigrationStatus, String> {
        {
            let inner = self.lock();
            let phase = inner.status.as_ref().map(|s| s.phase);
            if phase != Some(MigrationPhase::AwaitingCommit) {
                return Err(match phase {
                    None => "no migration of this VM to commit".to_string(),
                    Some(p) => format!("the migration is {p:?}, not waiting for its commit"),
                });
            }
            if self.cancel.load(Ordering::SeqCst) {
                return Err("the migration was cancelled; it cannot be committed".into());
            }
            self.commit.store(true, Ordering::SeqCst);
            self.changed.notify_all();
        }
        self.snapshot()
            .ok_or_else(|| "the migration vanished".to_string())
    }

    /// Source side: wait in `AwaitingCommit` for a commit or a cancel, at most `timeout`.
    pub(crate) fn wait_commit(&self, timeout: Duration) -> CommitDecision {
        let inner = self.lock();
        let (_inner, _) = self
            .changed
            .wait_timeout_while(inner, timeout, |_| {
                !self.commit.load(Ordering::SeqCst) && !self.cancel.load(Ordering::SeqCst)
            })
            .unwrap_or_else(|e| e.into_inner());
        if self.commit.load(Ordering::SeqCst) {
            CommitDecision::Commit
        } else if self.cancel.load(Ordering::SeqCst) {
            CommitDecision::Cancel
        } else {
            CommitDecision::TimedOut
        }
    }

    /// Cancel requested?
    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::SeqCst)
    }

    /// Block until the migration has ended (or `timeout` passed); its status.
    pub fn wait_final(&self, timeout: Duration) -> Option<MigrationStatus> {
        let inner = self.lock();
        let _inner = self
            .changed
            .wait_timeout_while(inner, timeout, |i| {
                i.status.as_ref().is_some_and(|s| !s.phase.is_final())
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        drop(_inner);
        self.snapshot()
    }

    /// Block until the migration has ended or waits for a commit nobody has given yet (or
    /// `timeout` passed); its status.
    pub fn wait_settled(&self, timeout: Duration) -> Option<MigrationStatus> {
        let inner = self.lock();
        let _inner = self
            .changed
            .wait_timeout_while(inner, timeout, |i| {
                i.status.as_ref().is_some_and(|s| {
                    let needs_commit = s.phase == MigrationPhase::AwaitingCommit
                        && !self.commit.load(Ordering::SeqCst)
                        && !self.cancel.load(Ordering::SeqCst);
                    !(s.phase.is_final() || needs_commit)
                })
            })
            .unwrap_or_else(|e| e.into_inner())
            .0;
        drop(_inner);
        self.snapshot()
    }
}

/// Phase helper for the final states.
pub(crate) fn final_phase(err: &MigrationError) -> MigrationPhase {
    match err {
        MigrationError::Cancelled => MigrationPhase::Cancelled,
        _ => MigrationPhase::Failed,
    }
}
