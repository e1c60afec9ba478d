//! The target side (`kiln-vmm --migrate-receive`): a paused VM without a guest image takes
//! one source's memory and state, then waits in `AwaitingCommit` and runs the VM on a
//! commit: the source's `Commit` frame, or `migrate_commit` on the control socket (the
//! cluster's word). An `Abort`, a cancel, a bad frame or a stream that breaks before the state
//! arrived ends this process without the VM ever having run here; a stream that breaks while
//! it waits for the commit leaves it waiting for [`LOST_STREAM_COMMIT_WAIT`] first.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryBackend as _, GuestMemoryRegion};

use super::protocol::{
    self as wire, AbortReason, FrameKind, MigrationConfig, ResumeReport, StreamError, PAGE_SIZE,
};
use super::transport::{AcceptError, Listener, MigrationStream};
use super::{state, Decision, MigrationError};
use crate::control::protocol::{MigrationPhase, MigrationRole, MigrationStatus};
use crate::state::StopReason;
use crate::vm::VmShared;

/// How long a target whose stream broke while it waited for its commit keeps the VM for a
/// commit through the control socket (the cluster resolves the handover well before).
pub const LOST_STREAM_COMMIT_WAIT: Duration = Duration::from_secs(120);
/// How long a target waits for its source to connect.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(60);

/// Wait for one source on `listener` (on a thread) and receive the VM. On failure the VM
/// is stopped with [`StopReason::IncomingMigrationFailed`].
///
/// Connections that fail the TLS handshake or the upgrade (a wrong token) are refused and the
/// listener goes on waiting, until [`ACCEPT_WAIT`] has passed without a source.
pub fn serve(listener: Listener, vm: Arc<VmShared>) -> Result<(), MigrationError> {
    std::thread::Builder::new()
        .name("migrate-recv".into())
        .spawn(move || {
            let deadline = Instant::now() + ACCEPT_WAIT;
            let accepted = loop {
                match listener.accept(deadline) {
                    Err(e @ AcceptError::Handshake { .. }) => eprintln!("kiln-vmm: {e}"),
                    other => break other,
                }
            };
            let (mut stream, peer) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    vm.request_stop(StopReason::IncomingMigrationFailed {
                        detail: format!("no migration stream: {e}"),
                    });
                    return;
                }
            };
            drop(listener);
            let _ = vm.migration().begin(MigrationStatus {
                role: MigrationRole::Incoming,
                phase: MigrationPhase::Connecting,
                peer,
                downtime_budget_ms: 0,
                bwlimit_mib_s: None,
                guest_memory_bytes: crate::memory::size(vm.memory()),
                rounds: Vec::new(),
                bytes_transferred: 0,
                throttle_percent: 0,
                elapsed_ms: 0,
                total_ms: None,
                downtime_us: None,
                restore_us: None,
                error: None,
            });
            let t0 = Instant::now();
            match receive(&mut stream, &vm) {
                Ok(report) => {
                    vm.migration().update(|s| {
                        s.phase = MigrationPhase::Completed;
                        s.total_ms = Some(t0.elapsed().as_millis() as u64);
                        s.restore_us = Some(report.restore_us);
                        s.bytes_transferred = report.bytes_received;
                    });
                    eprintln!(
                        "kiln-vmm: incoming migration complete ({} bytes, restore {} us)",
                        report.bytes_received, report.restore_us
                    );
                }
                Err(e) => {
                    let detail = e.to_string();
                    eprintln!("kiln-vmm: incoming migration failed: {detail}");
                    vm.migration().update(|s| {
                        s.phase = MigrationPhase::Failed;
                        s.error = Some(detail.clone());
                    });
                    vm.request_stop(StopReason::IncomingMigrationFailed { detail });
                }
            }
        })
        .map_err(MigrationError::Spawn)?;
    Ok(())
}

fn refuse(stream: &mut Box<dyn MigrationStream>, message: String) -> MigrationError {
    let _ = wire::write_json(
        stream,
        FrameKind::Refuse,
        &AbortReason {
            message: message.clone(),
        },
    );
    MigrationError::Refused(message)
}

/// Check the source's VM against this one.
fn check_config(vm: &VmShared, c: &MigrationConfig) -> Result<(), String> {
    let mine = vm.config();
    if c.memory_mib != mine.memory_mib {
        return Err(format!(
            "the VM has {} MiB of memory, this target was started with --memory-mib {}",
            c.memory_mib, mine.memory_mib
        ));
    }
    if c.vcpus != mine.vcpus {
        return Err(format!(
            "the VM has {} vCPUs, this target was started with --vcpus {}",
            c.vcpus, mine.vcpus
        ));
    }
    let layout: Vec<(u64, u64)> = vm
        .memory()
        .iter()
        .map(|r| (r.start_addr().raw_value(), r.len()))
        .collect();
    if c.ram_ranges != layout {
        return Err(format!(
            "memory layout {:?} differs from this target's {:?}",
            c.ram_ranges, layout
        ));
    }
    Ok(())
}

/// Fault in all guest memory without changing it (MADV_POPULATE_WRITE), so that pages
/// copied in during the stop-and-copy do not pay for page faults. Safe to run while pages
/// are being written: it never alters contents. Best effort (older kernels lack it).
fn prefault(vm: Arc<VmShared>) -> std::thread::JoinHandle<()> {
    let spawned = std::thread::Builder::new()
        .name("migrate-prefault".into())
        .spawn(move || {
            for region in vm.memory().iter() {
                let Ok(host) = region.get_host_address(vm_memory::MemoryRegionAddress(0)) else {
                    continue;
                };
                // SAFETY: `host..host+len` is one anonymous mapping owned by the VM's guest
                // memory, alive as long as `vm`; MADV_POPULATE_WRITE only populates pages.
                let _ = unsafe {
                    libc::madvise(
                        host.cast(),
                        region.len() as usize,
                        libc::MADV_POPULATE_WRITE,
                    )
                };
            }
        });
    match spawned {
        Ok(h) => h,
        // Without the thread: nothing pre-faulted, pages fault on write as usual.
        Err(_) => std::thread::spawn(|| {}),
    }
}

/// Write a Memory frame's records into guest memory.
fn apply_memory(vm: &VmShared, payload: &[u8]) -> Result<(), MigrationError> {
    let mem = vm.memory();
    let records = wire::parse_records(payload).map_err(MigrationError::stream("memory"))?;
    let zero = [0u8; PAGE_SIZE as usize];
    let mut current = [0u8; PAGE_SIZE as usize];
    for r in records {
        let bad = |e: vm_memory::GuestMemoryError| {
            MigrationError::Memory(format!(
                "page record at {:#x} ({} pages) does not fit guest memory: {e}",
                r.gpa, r.pages
            ))
        };
        match r.data {
            Some(data) => mem.write_slice(data, GuestAddress(r.gpa)).map_err(bad)?,
            None => {
                for i in 0..u64::from(r.pages) {
                    let gpa = GuestAddress(r.gpa + i * PAGE_SIZE);
                    // Only pages that hold something need clearing.
                    mem.read_slice(&mut current, gpa).map_err(bad)?;
                    if current != zero {
                        mem.write_slice(&zero, gpa).map_err(bad)?;
                    }
                }
            }
        }
    }
    Ok(())
}

fn receive(
    stream: &mut Box<dyn MigrationStream>,
    vm: &Arc<VmShared>,
) -> Result<ResumeReport, MigrationError> {
    if let Err(e) = wire::read_header(stream) {
        return Err(match e {
            StreamError::Version(_) | StreamError::BadMagic => refuse(stream, e.to_string()),
            e => MigrationError::Stream {
                during: "the header",
                source: e,
            },
        });
    }
    let mut bytes = 12u64;
    let first = wire::read_frame(stream).map_err(MigrationError::stream("the config"))?;
    if first.kind != FrameKind::Config {
        return Err(MigrationError::Unexpected {
            expected: "Config",
            got: first.kind,
        });
    }
    bytes += first.payload.len() as u64;
    let config: MigrationConfig = first
        .json("config")
        .map_err(MigrationError::stream("the config"))?;
    if let Err(message) = check_config(vm, &config) {
        return Err(refuse(stream, message));
    }
    wire::write_frame(stream, FrameKind::Accept, &[])
        .map_err(MigrationError::stream("the config reply"))?;
    let mut prefaulting = Some(prefault(vm.clone()));
    vm.migration()
        .update(|s| s.phase = MigrationPhase::FullPass);
    loop {
        let frame = wire::read_frame(stream).map_err(|source| match source {
            StreamError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                MigrationError::PeerAborted("the source closed the stream before the commit".into())
            }
            source => MigrationError::Stream {
                during: "the transfer",
                source,
            },
        })?;
        bytes += frame.payload.len() as u64 + 12;
        if vm.migration().cancelled() {
            return Err(MigrationError::Cancelled);
        }
        match frame.kind {
            FrameKind::Memory => {
                apply_memory(vm, &frame.payload)?;
                vm.migration().update(|s| s.bytes_transferred = bytes);
            }
            FrameKind::PrecopyDone => {
                if let Some(h) = prefaulting.take() {
                    let _ = h.join();
                }
                vm.migration()
                    .update(|s| s.phase = MigrationPhase::StopAndCopy);
                wire::write_frame(stream, FrameKind::Prefaulted, &[])
                    .map_err(MigrationError::stream("the pre-fault reply"))?;
            }
            FrameKind::State => {
                let machine: state::MachineState = frame
                    .json("machine state")
                    .map_err(MigrationError::stream("the machine state"))?;
                let t = Instant::now();
                let refused = state::restore(vm, &machine)?;
                let restore_us = t.elapsed().as_micros() as u64;
                if !refused.is_empty() {
                    eprintln!("kiln-vmm: KVM refused migrated MSRs (vCPU, index): {refused:x?}");
                }
                vm.migration().update(|s| {
                    s.phase = MigrationPhase::AwaitingCommit;
                    s.restore_us = Some(restore_us);
                });
                wire::write_frame(stream, FrameKind::StateReceived, &[])
                    .map_err(MigrationError::stream("the state acknowledgement"))?;
                return await_commit(stream, vm, restore_us, bytes);
            }
            FrameKind::Abort => {
                let r: AbortReason = frame
                    .json("abort")
                    .map_err(MigrationError::stream("abort"))?;
                return Err(MigrationError::PeerAborted(r.message));
            }
            got => {
                return Err(MigrationError::Unexpected {
                    expected: "Memory, PrecopyDone, State or Abort",
                    got,
                })
            }
        }
    }
}

/// The whole VM is here, paused: wait for the commit (a `Commit` frame, read on a thread of
/// its own, or `migrate_commit`), then run it and tell the source.
fn await_commit(
    stream: &mut Box<dyn MigrationStream>,
    vm: &Arc<VmShared>,
    restore_us: u64,
    bytes: u64,
) -> Result<ResumeReport, MigrationError> {
    let reader = stream.try_clone_stream().ok().and_then(|mut r| {
        let vm = vm.clone();
        std::thread::Builder::new()
            .name("migrate-commit".into())
            .spawn(move || match wire::read_frame(&mut r) {
                Ok(f) if f.kind == FrameKind::Commit => {
                    let _ = vm.migration().request_commit();
                }
                Ok(f) if f.kind == FrameKind::Abort => {
                    let why = f
                        .json::<AbortReason>("abort")
                        .map(|r| r.message)
                        .unwrap_or_else(|_| "no reason given".into());
                    vm.migration()
                        .update(|s| s.error = Some(format!("the source aborted: {why}")));
                    let _ = vm.migration().request_cancel();
                }
                _ => vm.migration().stream_lost(),
            })
            .ok()
    });
    if reader.is_none() {
        // Nothing reads the stream: only the control socket can commit.
        vm.migration().stream_lost();
    }
    let decision = vm.migration().wait_verdict(Some(LOST_STREAM_COMMIT_WAIT));
    let result = match decision {
        Decision::Go => {
            let t = Instant::now();
            match vm.resume() {
                Ok(_) => {
                    let report = ResumeReport {
                        restore_us,
                        resume_us: t.elapsed().as_micros() as u64,
                        bytes_received: bytes,
                    };
                    // The VM runs here now whether or not the source hears about it.
                    let _ = wire::write_json(stream, FrameKind::Resumed, &report);
                    Ok(report)
                }
                Err(e) => Err(MigrationError::Vm {
                    what: "resume",
                    source: Box::new(e),
                }),
            }
        }
        Decision::Back => Err(MigrationError::PeerAborted(
            vm.migration()
                .snapshot()
                .and_then(|s| s.error)
                .unwrap_or_else(|| "the migration was cancelled before its commit".into()),
        )),
        Decision::TimedOut => Err(MigrationError::NoCommit(LOST_STREAM_COMMIT_WAIT)),
    };
    stream.shutdown_stream();
    if let Some(reader) = reader {
        let _ = reader.join();
    }
    result
}
