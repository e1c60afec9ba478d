//! vCPUs: creation and boot state, the run loop on each vCPU thread, and the kick signal
//! that gets a thread out of KVM_RUN.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kvm_bindings::CpuId;
use kvm_ioctls::{VcpuExit, VcpuFd, VmFd};

use kvm_bindings::Msrs;

use crate::boot::{self, BootEntry};
use crate::cpuid;
use crate::devices::IoOutcome;
use crate::protocol::ExitCounts;
use crate::state::StopReason;
use crate::vm::{Gate, VmShared};

/// Errors of vCPU setup.
#[derive(Debug, thiserror::Error)]
pub enum VcpuError {
    /// A vCPU ioctl failed.
    #[error("cannot {what} for vCPU {id}")]
    Ioctl {
        /// vCPU index.
        id: u8,
        /// What was being done.
        what: &'static str,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// KVM refused a boot MSR.
    #[error("KVM refused boot MSR {index:#x} for vCPU {id}")]
    Msr {
        /// vCPU index.
        id: u8,
        /// The MSR.
        index: u32,
        /// KVM's error, when the ioctl itself failed.
        #[source]
        source: Option<kvm_ioctls::Error>,
    },
    /// The kick signal handler could not be installed.
    #[error("cannot install the vCPU kick signal handler")]
    Signal(#[source] kvm_ioctls::Error),
    /// The thread could not be started.
    #[error("cannot start the thread of vCPU {id}")]
    Spawn {
        /// vCPU index.
        id: u8,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The real-time signal (offset from SIGRTMIN) used to kick vCPU threads.
pub const KICK_SIGNAL_OFFSET: i32 = 0;

/// Kick signal number.
pub fn kick_signal() -> i32 {
    vmm_sys_util::signal::SIGRTMIN() + KICK_SIGNAL_OFFSET
}

extern "C" fn on_kick(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // Nothing to do: delivery alone makes KVM_RUN return EINTR.
}

/// Install the (empty) kick handler; without SA_RESTART, so KVM_RUN returns EINTR.
pub fn install_kick_handler() -> Result<(), VcpuError> {
    vmm_sys_util::signal::register_signal_handler(kick_signal(), on_kick).map_err(VcpuError::Signal)
}

/// Per-vCPU counters, shared with the stats reader.
#[derive(Default)]
pub struct VcpuCounters {
    /// Linux thread id of the vCPU thread (0 until it runs).
    pub tid: AtomicI32,
    io: AtomicU64,
    mmio: AtomicU64,
    interrupted: AtomicU64,
    other: AtomicU64,
}

impl VcpuCounters {
    /// A snapshot.
    pub fn exits(&self) -> ExitCounts {
        ExitCounts {
            io: self.io.load(Ordering::Relaxed),
            mmio: self.mmio.load(Ordering::Relaxed),
            interrupted: self.interrupted.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// LAPIC register offsets for LINT0/LINT1 and their delivery modes.
const APIC_LVT0: usize = 0x350;
const APIC_LVT1: usize = 0x360;
const APIC_MODE_EXTINT: u32 = 0x7;
const APIC_MODE_NMI: u32 = 0x4;

fn set_lvt_mode(regs: &mut [std::os::raw::c_char], offset: usize, mode: u32) {
    let mut bytes = [0u8; 4];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = regs[offset + i] as u8;
    }
    let value = (u32::from_le_bytes(bytes) & !0x700) | (mode << 8);
    for (i, b) in value.to_le_bytes().iter().enumerate() {
        regs[offset + i] = *b as std::os::raw::c_char;
    }
}

/// Create vCPU `id` and give it CPUID, LINT wiring and (for the boot vCPU) the entry state.
/// Secondary vCPUs stay in wait-for-SIPI, as on real hardware. Without `boot` (the target of
/// a migration) the registers are left as KVM made them: the migrated state replaces them.
pub fn create(
    vm: &VmFd,
    base_cpuid: &CpuId,
    id: u8,
    count: u8,
    boot: Option<&BootEntry>,
) -> Result<VcpuFd, VcpuError> {
    let err = |what| move |source| VcpuError::Ioctl { id, what, source };
    let vcpu = vm.create_vcpu(u64::from(id)).map_err(err("create"))?;
    vcpu.set_cpuid2(&cpuid::for_vcpu(base_cpuid, id, count))
        .map_err(err("set CPUID"))?;
    // LINT0 as ExtINT (the PIC) and LINT1 as NMI, as firmware leaves them for Linux.
    let mut lapic = vcpu.get_lapic().map_err(err("read the LAPIC"))?;
    set_lvt_mode(&mut lapic.regs, APIC_LVT0, APIC_MODE_EXTINT);
    set_lvt_mode(&mut lapic.regs, APIC_LVT1, APIC_MODE_NMI);
    vcpu.set_lapic(&lapic).map_err(err("set the LAPIC"))?;
    set_boot_msrs(&vcpu, id)?;
    let Some(boot) = boot else {
        return Ok(vcpu);
    };
    if id == 0 {
        vcpu.set_fpu(&boot::boot_fpu())
            .map_err(err("set FPU state"))?;
        let sregs = vcpu.get_sregs().map_err(err("read special registers"))?;
        vcpu.set_sregs(&boot.sregs(sregs))
            .map_err(err("set special registers"))?;
        vcpu.set_regs(&boot.regs()).map_err(err("set registers"))?;
    }
    Ok(vcpu)
}

/// Write [`boot::boot_msrs`]. KVM_SET_MSRS stops at the first MSR it refuses and returns
/// how many it wrote, so a short count names the culprit.
fn set_boot_msrs(vcpu: &VcpuFd, id: u8) -> Result<(), VcpuError> {
    let entries = boot::boot_msrs();
    let msrs = Msrs::from_entries(&entries).map_err(|_| VcpuError::Msr {
        id,
        index: entries.first().map_or(0, |e| e.index),
        source: None,
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(|source| VcpuError::Msr {
        id,
        index: entries.first().map_or(0, |e| e.index),
        source: Some(source),
    })?;
    match entries.get(written) {
        None => Ok(()),
        Some(refused) => Err(VcpuError::Msr {
            id,
            index: refused.index,
            source: None,
        }),
    }
}

/// The vCPU thread: run until the VM stops.
pub fn run(fd: Arc<Mutex<VcpuFd>>, id: u8, shared: Arc<VmShared>) {
    let counters = shared.counters(id);
    // SAFETY: gettid has no preconditions.
    counters
        .tid
        .store(unsafe { libc::gettid() }, Ordering::Relaxed);
    let devices = shared.devices();
    while shared.gate() == Gate::Run {
        // Held only around KVM_RUN and the exit's handling: a paused vCPU's state is free
        // for migration to read and write.
        let mut vcpu = fd.lock().unwrap_or_else(|e| e.into_inner());
        let stop = match vcpu.run() {
            Ok(VcpuExit::IoIn(port, data)) => {
                bump(&counters.io);
                devices.io_in(port, data);
                None
            }
            Ok(VcpuExit::IoOut(port, data)) => {
                bump(&counters.io);
                match devices.io_out(port, data) {
                    IoOutcome::Continue => None,
                    IoOutcome::Stop(reason) => Some(reason),
                }
            }
            Ok(VcpuExit::MmioRead(_, data)) => {
                bump(&counters.mmio);
                data.fill(0xff);
                None
            }
            Ok(VcpuExit::MmioWrite(..)) => {
                bump(&counters.mmio);
                None
            }
            Ok(VcpuExit::Intr) => {
                bump(&counters.interrupted);
                None
            }
            Ok(VcpuExit::Shutdown) => Some(StopReason::GuestCrashed {
                detail: format!("vCPU {id} triple-faulted (KVM_EXIT_SHUTDOWN)"),
            }),
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(StopReason::GuestCrashed {
                detail: format!(
                    "vCPU {id} failed to enter the guest (hardware reason {reason:#x}, host CPU {cpu})"
                ),
            }),
            Ok(VcpuExit::InternalError) => Some(StopReason::GuestCrashed {
                detail: format!("KVM internal error on vCPU {id} (instruction emulation failed?)"),
            }),
            Ok(_) => {
                bump(&counters.other);
                None
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                bump(&counters.interrupted);
                None
            }
            Err(e) => Some(StopReason::VmmError {
                detail: format!("KVM_RUN failed on vCPU {id}: {e}"),
            }),
        };
        if let Some(reason) = stop {
            let reason = with_rip(&vcpu, reason);
            shared.request_stop(reason);
            break;
        }
    }
    fd.lock()
        .unwrap_or_else(|e| e.into_inner())
        .set_kvm_immediate_exit(0);
    shared.vcpu_exited();
}

/// Add the instruction pointer to a crash report.
fn with_rip(vcpu: &VcpuFd, reason: StopReason) -> StopReason {
    match reason {
        StopReason::GuestCrashed { detail } => {
            let rip = vcpu
                .get_regs()
                .map(|r| format!(" at rip {:#x}", r.rip))
                .unwrap_or_default();
            StopReason::GuestCrashed {
                detail: format!("{detail}{rip}"),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lvt_mode_replaces_only_the_delivery_mode() {
        let mut regs = [0 as std::os::raw::c_char; 1024];
        regs[APIC_LVT0] = 0x30;
        regs[APIC_LVT0 + 2] = 0x01; // masked
        set_lvt_mode(&mut regs, APIC_LVT0, APIC_MODE_EXTINT);
        assert_eq!(regs[APIC_LVT0] as u8, 0x30);
        assert_eq!(regs[APIC_LVT0 + 1] as u8, 0x07);
        assert_eq!(regs[APIC_LVT0 + 2] as u8, 0x01);
    }
}
