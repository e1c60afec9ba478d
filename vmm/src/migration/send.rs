//! The source side: pre-copy with dirty rounds, auto-converge, stop-and-copy, commit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::dirty::{DirtyLog, PageSet};
use super::pace::{RateLimiter, Throttle};
use super::pages::{FrameBuilder, Untouched};
use super::protocol::{
    self as wire, AbortReason, FrameKind, MigrationConfig, ResumeReport, PAGE_SIZE,
};
use super::tls::MigrateTls;
use super::transport::{self, MigrationStream};
use super::{final_phase, state, Decision, MigrationError};
use crate::control::protocol::{MigrationPhase, MigrationRole, MigrationRound, MigrationStatus};
use crate::state::StopReason;
use crate::vm::VmShared;

/// What `migrate_send` asks for.
#[derive(Debug, Clone)]
pub struct SendOptions {
    /// Target address (Unix socket path or host:port).
    pub to: String,
    /// Downtime budget.
    pub downtime_ms: u64,
    /// Bandwidth cap, MiB/s.
    pub bwlimit_mib_s: Option<u64>,
    /// Wait (at most this long) for `migrate_commit` before committing.
    pub await_commit: Option<Duration>,
    /// Between nodes: mutual TLS to the target (`to` is then its host:port).
    pub tls: Option<MigrateTls>,
}

/// Pages per Memory frame (1 MiB of data).
const PAGES_PER_FRAME: usize = 256;
/// Fixed cost of the stop-and-copy besides the pages: pause, state, handshake, resume.
const FIXED_DOWNTIME: Duration = Duration::from_millis(2);
/// A round after which the guest has dirtied more than this share of what the round sent
/// does not converge (QEMU's auto-converge uses the same 50 %).
const CONVERGENCE: f64 = 0.5;
/// Non-converging rounds before the throttle steps up.
const ROUNDS_BEFORE_THROTTLE: u32 = 1;
/// Auto-converge: first step, increment and ceiling of the throttle (percent).
const THROTTLE_INITIAL: u8 = 20;
const THROTTLE_STEP: u8 = 10;
const THROTTLE_MAX: u8 = 99;
/// Rounds at the maximum throttle before the stop-and-copy is forced (over budget).
const MAX_ROUNDS_AT_MAX_THROTTLE: u32 = 5;
/// Link speed assumed before a round has measured one (bytes/s).
const ASSUMED_THROUGHPUT: f64 = (1u64 << 30) as f64;
/// Hard cap on rounds.
const MAX_ROUNDS: u32 = 500;

/// Rest (pages) small enough to send in the pause without another round: 1 MiB.
const SMALL_REST_PAGES: u64 = 256;
/// Rounds after which a rest that fits the budget is sent, shrinking or not.
const MAX_SHRINK_ROUNDS: u32 = 10;

/// The rest fits the downtime budget, but another round (while the guest runs) still pays
/// off when the rest is not small yet and the last round shrank it by more than half: the
/// pause then holds only what the guest dirties during one short round.
fn worth_another_round(
    sent: u64,
    rest: u64,
    expected: Duration,
    budget: Duration,
    round: u32,
) -> bool {
    let shrinking = (rest as f64) < sent as f64 * CONVERGENCE;
    rest > SMALL_REST_PAGES && shrinking && expected > budget / 8 && round < MAX_SHRINK_ROUNDS
}

/// Start an outgoing migration on its own thread; returns its first status.
pub fn start(vm: Arc<VmShared>, opts: SendOptions) -> Result<MigrationStatus, MigrationError> {
    if !vm.is_running() {
        return Err(MigrationError::NotRunning(
            "paused or stopped (resume it first)",
        ));
    }
    let status = MigrationStatus {
        role: MigrationRole::Outgoing,
        phase: MigrationPhase::Connecting,
        peer: opts.to.clone(),
        downtime_budget_ms: opts.downtime_ms,
        bwlimit_mib_s: opts.bwlimit_mib_s,
        guest_memory_bytes: crate::memory::size(vm.memory()),
        rounds: Vec::new(),
        bytes_transferred: 0,
        throttle_percent: 0,
        elapsed_ms: 0,
        total_ms: None,
        downtime_us: None,
        restore_us: None,
        error: None,
    };
    vm.migration().begin(status.clone())?;
    let thread_vm = vm.clone();
    std::thread::Builder::new()
        .name("migrate-send".into())
        .spawn(move || run(&thread_vm, &opts))
        .map_err(|e| {
            vm.migration().update(|s| {
                s.phase = MigrationPhase::Failed;
                s.error = Some("cannot start the migration thread".into());
            });
            MigrationError::Spawn(e)
        })?;
    Ok(status)
}

/// The migration thread: run, then settle the VM's fate.
fn run(vm: &Arc<VmShared>, opts: &SendOptions) {
    let t0 = Instant::now();
    let mut source = Source {
        vm,
        opts,
        paused_by_us: false,
        committed: false,
        bytes: 0,
        limiter: RateLimiter::new(opts.bwlimit_mib_s),
    };
    let throttle = Throttle::start(vm.clone());
    let result = source.migrate(&throttle);
    throttle.stop();
    match result {
        Ok(downtime) => {
            vm.migration().update(|s| {
                s.phase = MigrationPhase::Completed;
                s.total_ms = Some(t0.elapsed().as_millis() as u64);
                s.downtime_us = Some(downtime.downtime.as_micros() as u64);
                s.restore_us = downtime.report.as_ref().map(|r| r.restore_us);
                s.throttle_percent = 0;
                s.error = downtime.warning.clone();
            });
            eprintln!(
                "kiln-vmm: migrated to {} in {} ms, downtime {} us",
                opts.to,
                t0.elapsed().as_millis(),
                downtime.downtime.as_micros()
            );
            vm.request_stop(StopReason::Migrated {
                to: opts.to.clone(),
            });
        }
        Err(e) => {
            // Before the commit (or after a takeback) the VM is ours: make sure it runs here.
            let ours = !source.committed || matches!(e, MigrationError::TakenBack);
            if source.paused_by_us && ours {
                if let Err(resume) = vm.resume() {
                    eprintln!("kiln-vmm: cannot resume the VM after a failed migration: {resume}");
                }
            }
            let message = error_chain(&e);
            eprintln!("kiln-vmm: migration to {} failed: {message}", opts.to);
            vm.migration().update(|s| {
                s.phase = final_phase(&e);
                s.throttle_percent = 0;
                s.error = Some(message);
            });
        }
    }
}

/// The error and its sources, joined.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

struct Completed {
    downtime: Duration,
    report: Option<ResumeReport>,
    warning: Option<String>,
}

struct Source<'a> {
    vm: &'a Arc<VmShared>,
    opts: &'a SendOptions,
    paused_by_us: bool,
    committed: bool,
    bytes: u64,
    limiter: RateLimiter,
}

/// Result of sending a set of pages.
#[derive(Default)]
struct Sent {
    pages: u64,
    zero: u64,
    bytes: u64,
}

impl Source<'_> {
    fn migrate(&mut self, throttle: &Throttle) -> Result<Completed, MigrationError> {
        let to = self.opts.to.clone();
        let mut stream = transport::connect(&to, self.opts.tls.as_ref()).map_err(|source| {
            let refused = source
                .get_ref()
                .and_then(|e| e.downcast_ref::<super::upgrade::UpgradeError>());
            if let Some(super::upgrade::UpgradeError::Refused { reason, .. }) = refused {
                MigrationError::Refused(reason.clone())
            } else if super::tls::is_tls_error(&source) {
                MigrationError::Tls { to, source }
            } else {
                MigrationError::Connect { to, source }
            }
        })?;
        let result = self.migrate_on(&mut stream, throttle);
        if let Err(e) = &result {
            if !self.committed {
                // Tell the target to discard (best effort: it may be what failed).
                let _ = wire::write_json(
                    &mut stream,
                    FrameKind::Abort,
                    &AbortReason {
                        message: e.to_string(),
                    },
                );
            }
        }
        result
    }

    fn migrate_on(
        &mut self,
        stream: &mut Box<dyn MigrationStream>,
        throttle: &Throttle,
    ) -> Result<Completed, MigrationError> {
        let vm = self.vm;
        let config = vm.config();
        let mig_config = MigrationConfig {
            memory_mib: config.memory_mib,
            ram_ranges: crate::memory::ram_ranges(config.memory_mib << 20)
                .into_iter()
                .map(|(a, l)| (a.0, l))
                .collect(),
            vcpus: config.vcpus,
            boot_image: config
                .boot
                .as_ref()
                .map(|b| b.kernel().display().to_string()),
            vmm_version: env!("CARGO_PKG_VERSION").to_string(),
        };
        wire::write_header(stream).map_err(MigrationError::stream("the header"))?;
        self.bytes += wire::write_json(stream, FrameKind::Config, &mig_config)
            .map_err(MigrationError::stream("the config"))?;
        let reply = wire::read_frame(stream).map_err(MigrationError::stream("the config reply"))?;
        match reply.kind {
            FrameKind::Accept => {}
            FrameKind::Refuse | FrameKind::Abort => {
                let r: AbortReason = reply
                    .json("refusal")
                    .map_err(MigrationError::stream("the config reply"))?;
                return Err(MigrationError::Refused(r.message));
            }
            got => {
                return Err(MigrationError::Unexpected {
                    expected: "Accept",
                    got,
                })
            }
        }

        let log = DirtyLog::start(vm)?;
        // Round 0: everything.
        vm.migration()
            .update(|s| s.phase = MigrationPhase::FullPass);
        let budget = Duration::from_millis(self.opts.downtime_ms);
        let mut pending = PageSet::all(vm);
        let mut round = 0u32;
        // bytes/s; until a round has moved enough data to measure, assume a local link.
        let mut throughput = ASSUMED_THROUGHPUT;
        let mut non_converging = 0u32;
        let mut rounds_at_max = 0u32;
        let mut forced = None;
        loop {
            let n = pending.count();
            let started = Instant::now();
            // Only the full pass meets pages the guest never touched; a dirty page was
            // written. (Reading pagemap for all of memory costs milliseconds per GiB: never
            // during the stop-and-copy.)
            let untouched = (round == 0).then(|| Untouched::new(vm.memory()));
            let sent = self.send_pages(stream, &pending, "a pre-copy round", untouched.as_ref())?;
            let took = started.elapsed();
            let dirtied = log.fetch()?;
            let dirtied_n = dirtied.count();
            if sent.bytes >= 4 << 20 {
                throughput = sent.bytes as f64 / took.as_secs_f64().max(1e-6);
            }
            let link = match self.opts.bwlimit_mib_s {
                Some(l) => throughput.min((l << 20) as f64),
                None => throughput,
            }
            .max(1.0);
            let expected = FIXED_DOWNTIME
                + Duration::from_secs_f64(dirtied_n as f64 * PAGE_SIZE as f64 / link);
            let stats = MigrationRound {
                round,
                pages_sent: sent.pages,
                zero_pages: sent.zero,
                bytes_sent: sent.bytes,
                duration_us: took.as_micros() as u64,
                dirtied_pages: dirtied_n,
                dirty_rate_bytes_s: (dirtied_n as f64 * PAGE_SIZE as f64
                    / took.as_secs_f64().max(1e-6)) as u64,
                throughput_bytes_s: (sent.bytes as f64 / took.as_secs_f64().max(1e-6)) as u64,
                expected_downtime_us: expected.as_micros() as u64,
                throttle_percent: throttle.percent(),
            };
            let total = self.bytes;
            vm.migration().update(|s| {
                s.rounds.push(stats);
                s.bytes_transferred = total;
                s.phase = MigrationPhase::DirtyRounds;
            });
            pending = dirtied;
            round += 1;
            if expected <= budget && !worth_another_round(n, dirtied_n, expected, budget, round) {
                break;
            }
            // Convergence: each round should leave clearly less behind than it sent.
            if round > 1 && dirtied_n as f64 > n as f64 * CONVERGENCE {
                non_converging += 1;
            } else {
                non_converging = 0;
            }
            if throttle.percent() >= THROTTLE_MAX {
                rounds_at_max += 1;
            }
            if rounds_at_max >= MAX_ROUNDS_AT_MAX_THROTTLE || round >= MAX_ROUNDS {
                forced = Some(format!(
                    "pre-copy did not converge after {round} rounds (throttle {}%); the \
                     stop-and-copy exceeded the {} ms downtime budget",
                    throttle.percent(),
                    self.opts.downtime_ms
                ));
                break;
            }
            if non_converging >= ROUNDS_BEFORE_THROTTLE {
                non_converging = 0;
                let next = match throttle.percent() {
                    0 => THROTTLE_INITIAL,
                    p => p.saturating_add(THROTTLE_STEP).min(THROTTLE_MAX),
                };
                throttle.set(next);
                vm.migration().update(|s| s.throttle_percent = next);
            }
        }

        // Stop-and-copy. The target first finishes pre-faulting its memory, so the last
        // pages land in populated memory.
        self.bytes += wire::write_frame(stream, FrameKind::PrecopyDone, &[])
            .map_err(MigrationError::stream("the end of pre-copy"))?;
        self.expect(stream, FrameKind::Prefaulted, "Prefaulted")?;
        self.check_cancel()?;
        vm.migration()
            .update(|s| s.phase = MigrationPhase::StopAndCopy);
        let paused_at = Instant::now();
        self.paused_by_us = true;
        vm.pause().map_err(|e| MigrationError::Vm {
            what: "pause",
            source: Box::new(e),
        })?;
        // Only now release the throttle: released first, a throttled guest would catch up
        // on its timer and dirty a burst of pages just before the pause.
        throttle.stop_now();
        let started = Instant::now();
        let mut last = log.fetch()?;
        last.union(&pending);
        let sent = self.send_pages(stream, &last, "the stop-and-copy", None)?;
        let t_pages = started.elapsed();
        let machine = state::capture(vm, vm.migratable_msrs())?;
        let state_bytes = wire::write_json(stream, FrameKind::State, &machine)
            .map_err(MigrationError::stream("the machine state"))?;
        self.bytes += state_bytes;
        let t_state = started.elapsed();
        self.expect(stream, FrameKind::StateReceived, "StateReceived")?;
        let took = started.elapsed();
        if std::env::var_os("KILN_MIGRATION_TRACE").is_some() {
            eprintln!(
                "kiln-vmm: stop-and-copy: pause {} us, pages {} us, state {} us, ack {} us",
                (started - paused_at).as_micros(),
                t_pages.as_micros(),
                (t_state - t_pages).as_micros(),
                (took - t_state).as_micros()
            );
        }
        let total = self.bytes;
        vm.migration().update(|s| {
            s.rounds.push(MigrationRound {
                round,
                pages_sent: sent.pages,
                zero_pages: sent.zero,
                bytes_sent: sent.bytes + state_bytes,
                duration_us: took.as_micros() as u64,
                dirtied_pages: 0,
                dirty_rate_bytes_s: 0,
                throughput_bytes_s: ((sent.bytes + state_bytes) as f64
                    / took.as_secs_f64().max(1e-6)) as u64,
                expected_downtime_us: 0,
                throttle_percent: 100,
            });
            s.bytes_transferred = total;
            s.phase = MigrationPhase::Committing;
        });
        // The target has everything and the VM is paused here. In a cluster this is where
        // the server takes the VM over: until `migrate_handover` a cancel (or silence) still
        // wins, after it only the cluster decides.
        if let Some(timeout) = self.opts.await_commit {
            vm.migration()
                .update(|s| s.phase = MigrationPhase::AwaitingCommit);
            match vm.migration().wait_handover(timeout) {
                Decision::Go => {}
                Decision::Back => return Err(MigrationError::Cancelled),
                Decision::TimedOut => return Err(MigrationError::CommitTimeout(timeout)),
            }
            self.committed = true;
            return self.after_handover(stream, paused_at, forced);
        }
        self.check_cancel()?;
        self.bytes += wire::write_frame(stream, FrameKind::Commit, &[])
            .map_err(MigrationError::stream("the commit"))?;
        // From here on the VM belongs to the target: never resume it here.
        self.committed = true;
        let (report, warning) = match wire::read_frame(stream) {
            Ok(f) if f.kind == FrameKind::Resumed => {
                (f.json::<ResumeReport>("resume report").ok(), None)
            }
            Ok(f) => (
                None,
                Some(format!(
                    "the target answered the commit with {:?} instead of Resumed",
                    f.kind
                )),
            ),
            Err(e) => (
                None,
                Some(format!(
                    "the target did not confirm the resume ({e}); the VM is committed to it"
                )),
            ),
        };
        let downtime = paused_at.elapsed();
        Ok(Completed {
            downtime,
            report,
            warning: warning.or(forced),
        })
    }

    /// Handed over: wait for the target's `Resumed` frame (read on a thread of its own) or
    /// `migrate_finish`, or take the VM back on `migrate_takeback`.
    fn after_handover(
        &mut self,
        stream: &mut Box<dyn MigrationStream>,
        paused_at: Instant,
        forced: Option<String>,
    ) -> Result<Completed, MigrationError> {
        let vm = self.vm;
        let reader = stream.try_clone_stream().ok().and_then(|mut r| {
            let vm = vm.clone();
            std::thread::Builder::new()
                .name("migrate-resumed".into())
                .spawn(move || {
                    if let Ok(f) = wire::read_frame(&mut r) {
                        if f.kind == FrameKind::Resumed {
                            if let Ok(report) = f.json::<ResumeReport>("resume report") {
                                vm.migration().target_resumed(report);
                            }
                        }
                    }
                })
                .ok()
        });
        let decision = vm.migration().wait_verdict(None);
        stream.shutdown_stream();
        if let Some(reader) = reader {
            let _ = reader.join();
        }
        if decision != Decision::Go {
            return Err(MigrationError::TakenBack);
        }
        let report = vm.migration().resume_report();
        let warning = match report {
            Some(_) => forced,
            None => Some(
                "the target's confirmation did not arrive; finished on the cluster's word (downtime is an upper bound)"
                    .to_string(),
            ),
        };
        Ok(Completed {
            downtime: paused_at.elapsed(),
            report,
            warning,
        })
    }

    fn check_cancel(&self) -> Result<(), MigrationError> {
        if self.vm.migration().cancelled() {
            Err(MigrationError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn expect(
        &mut self,
        stream: &mut Box<dyn MigrationStream>,
        kind: FrameKind,
        name: &'static str,
    ) -> Result<(), MigrationError> {
        let f = wire::read_frame(stream).map_err(MigrationError::stream(name))?;
        if f.kind == kind {
            return Ok(());
        }
        if f.kind == FrameKind::Abort || f.kind == FrameKind::Refuse {
            let r: AbortReason = f.json("abort").map_err(MigrationError::stream(name))?;
            return Err(MigrationError::PeerAborted(r.message));
        }
        Err(MigrationError::Unexpected {
            expected: name,
            got: f.kind,
        })
    }

    /// Send a set of pages as Memory frames: zero pages as markers, runs of data pages as
    /// records; pages `untouched` knows were never touched go as markers unread. Checks for
    /// a cancel between frames.
    fn send_pages(
        &mut self,
        stream: &mut Box<dyn MigrationStream>,
        set: &PageSet,
        during: &'static str,
        untouched: Option<&Untouched>,
    ) -> Result<Sent, MigrationError> {
        let mem = self.vm.memory();
        let mut sent = Sent::default();
        let mut frame = FrameBuilder::default();
        let mut page = vec![0u8; PAGE_SIZE as usize];
        for gpa in set.addresses() {
            let known_zero = untouched.is_some_and(|u| u.is_untouched(gpa));
            if !known_zero {
                mem.read_slice(&mut page, GuestAddress(gpa)).map_err(|e| {
                    MigrationError::Memory(format!("cannot read guest page {gpa:#x}: {e}"))
                })?;
            }
            if frame.add(gpa, (!known_zero).then_some(&page[..])) {
                sent.zero += 1;
            } else {
                sent.pages += 1;
            }
            if frame.pages >= PAGES_PER_FRAME {
                sent.bytes += self.flush(stream, &mut frame, during)?;
            }
        }
        if frame.pages > 0 {
            sent.bytes += self.flush(stream, &mut frame, during)?;
        }
        Ok(sent)
    }

    fn flush(
        &mut self,
        stream: &mut Box<dyn MigrationStream>,
        frame: &mut FrameBuilder,
        during: &'static str,
    ) -> Result<u64, MigrationError> {
        self.check_cancel()?;
        let payload = frame.finish();
        let n = wire::write_frame(stream, FrameKind::Memory, payload)
            .map_err(MigrationError::stream(during))?;
        frame.clear();
        self.bytes += n;
        let total = self.bytes;
        self.vm.migration().update(|s| s.bytes_transferred = total);
        self.limiter.account(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fitting_rest_gets_another_round_only_while_it_shrinks_and_is_not_small() {
        let ms = Duration::from_millis;
        let budget = ms(50);
        // 30 ms of pages left after sending 100k: shrinking, big → one more round.
        assert!(worth_another_round(100_000, 5_000, ms(30), budget, 1));
        // Small rest, or a rest under an eighth of the budget → stop-and-copy now.
        assert!(!worth_another_round(100_000, 200, ms(30), budget, 1));
        assert!(!worth_another_round(100_000, 5_000, ms(5), budget, 1));
        // Not shrinking by half, or too many rounds → stop-and-copy now.
        assert!(!worth_another_round(8_000, 5_000, ms(30), budget, 1));
        assert!(!worth_another_round(
            100_000,
            5_000,
            ms(30),
            budget,
            MAX_SHRINK_ROUNDS
        ));
    }
}
