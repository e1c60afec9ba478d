//! Machine state for migration (and, later, snapshots): every vCPU, the in-kernel irqchip,
//! PIT and kvmclock, and the serial port. Captured while the VM is paused, restored into a
//! paused VM built with the same memory layout and vCPU count. Serialisable (serde) and
//! versioned by [`STATE_VERSION`].
//!
//! Order matters on restore: MP state first (KVM resets some state when it changes), then
//! registers, MSRs with `IA32_TSC_DEADLINE` after `IA32_TSC` (KVM interprets the deadline
//! against the TSC), LAPIC, and vCPU events last (pending interrupts and exceptions).

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid_entry2, kvm_debugregs, kvm_fpu, kvm_irqchip, kvm_lapic_state,
    kvm_mp_state, kvm_msr_entry, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave, CpuId, Msrs, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use serde::{Deserialize, Serialize};

use crate::vm::VmShared;

/// Version of [`MachineState`]; a receiver refuses another.
pub const STATE_VERSION: u32 = 1;
/// IA32_TSC.
const MSR_IA32_TSC: u32 = 0x10;
/// IA32_TSC_DEADLINE: restored after the TSC.
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// KVM_GET_MSRS takes at most this many entries at once (KVM's MAX_IO_MSRS).
const MSR_BATCH: usize = 256;

/// Errors of state capture and restore.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A KVM ioctl failed.
    #[error("cannot {what}")]
    Kvm {
        /// What was being done.
        what: String,
        /// KVM's error.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The state does not fit this VM.
    #[error("the migrated state does not fit this VM: {0}")]
    Mismatch(String),
}

fn kvm_err(what: impl Into<String>) -> impl FnOnce(kvm_ioctls::Error) -> StateError {
    let what = what.into();
    move |source| StateError::Kvm { what, source }
}

/// `kvm_fpu` (kvm-bindings has no serde for it; XSAVE carries the same state where the
/// host has it, this is the fallback and what KVM_SET_FPU wants).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FpuState {
    fpr: Vec<[u8; 16]>,
    fcw: u16,
    fsw: u16,
    ftwx: u8,
    last_opcode: u16,
    last_ip: u64,
    last_dp: u64,
    xmm: Vec<[u8; 16]>,
    mxcsr: u32,
}

impl From<&kvm_fpu> for FpuState {
    fn from(f: &kvm_fpu) -> Self {
        FpuState {
            fpr: f.fpr.to_vec(),
            fcw: f.fcw,
            fsw: f.fsw,
            ftwx: f.ftwx,
            last_opcode: f.last_opcode,
            last_ip: f.last_ip,
            last_dp: f.last_dp,
            xmm: f.xmm.to_vec(),
            mxcsr: f.mxcsr,
        }
    }
}

impl FpuState {
    fn to_kvm(&self) -> kvm_fpu {
        let mut f = kvm_fpu {
            fcw: self.fcw,
            fsw: self.fsw,
            ftwx: self.ftwx,
            last_opcode: self.last_opcode,
            last_ip: self.last_ip,
            last_dp: self.last_dp,
            mxcsr: self.mxcsr,
            ..Default::default()
        };
        for (dst, src) in f.fpr.iter_mut().zip(&self.fpr) {
            *dst = *src;
        }
        for (dst, src) in f.xmm.iter_mut().zip(&self.xmm) {
            *dst = *src;
        }
        f
    }
}

/// One MSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MsrValue {
    /// Index.
    pub index: u32,
    /// Value.
    pub data: u64,
}

/// Everything of one vCPU.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    /// vCPU index (= APIC ID).
    pub id: u8,
    /// Running, halted, waiting for SIPI…
    pub mp_state: kvm_mp_state,
    /// General-purpose registers.
    pub regs: kvm_regs,
    /// Segment and control registers.
    pub sregs: kvm_sregs,
    /// x87/SSE.
    pub fpu: FpuState,
    /// Extended state (None where KVM has no XSAVE).
    pub xsave: Option<kvm_xsave>,
    /// XCR0 and friends.
    pub xcrs: Option<kvm_xcrs>,
    /// DR0–DR7.
    pub debugregs: kvm_debugregs,
    /// Local APIC registers (timer included).
    pub lapic: kvm_lapic_state,
    /// Readable MSRs.
    pub msrs: Vec<MsrValue>,
    /// Pending exceptions, interrupts, NMIs, SMIs.
    pub events: kvm_vcpu_events,
    /// The CPUID the vCPU ran with.
    pub cpuid: Vec<kvm_cpuid_entry2>,
}

/// The 16550's registers and the input the guest has not read yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialState {
    /// Divisor latch low.
    pub baud_divisor_low: u8,
    /// Divisor latch high.
    pub baud_divisor_high: u8,
    /// IER.
    pub interrupt_enable: u8,
    /// IIR.
    pub interrupt_identification: u8,
    /// LCR.
    pub line_control: u8,
    /// LSR.
    pub line_status: u8,
    /// MCR.
    pub modem_control: u8,
    /// MSR (modem status).
    pub modem_status: u8,
    /// Scratch.
    pub scratch: u8,
    /// Receive FIFO.
    pub in_buffer: Vec<u8>,
    /// Console input queued in front of the FIFO.
    pub pending_input: Vec<u8>,
}

/// The in-kernel devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmDeviceState {
    /// 8259 master.
    pub pic_master: kvm_irqchip,
    /// 8259 slave.
    pub pic_slave: kvm_irqchip,
    /// IOAPIC.
    pub ioapic: kvm_irqchip,
    /// 8254 PIT.
    pub pit: kvm_pit_state2,
    /// kvmclock.
    pub clock: kvm_clock_data,
}

/// The whole machine except memory.
#[derive(Debug, Serialize, Deserialize)]
pub struct MachineState {
    /// [`STATE_VERSION`].
    pub version: u32,
    /// Per vCPU, by index.
    pub vcpus: Vec<VcpuState>,
    /// irqchip, PIT, clock.
    pub vm: VmDeviceState,
    /// COM1.
    pub serial: SerialState,
}

/// The MSRs worth migrating: KVM's index list, reduced to those this vCPU can read (some
/// listed MSRs fail KVM_GET_MSRS on a given host, and one failure stops the whole batch).
pub fn readable_msrs(kvm: &Kvm, vcpu: &VcpuFd) -> Result<Vec<u32>, StateError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(kvm_err("read KVM's MSR index list"))?;
    let mut readable = Vec::new();
    for &index in list.as_slice() {
        let Ok(mut msrs) = Msrs::from_entries(&[kvm_msr_entry {
            index,
            ..Default::default()
        }]) else {
            continue;
        };
        if matches!(vcpu.get_msrs(&mut msrs), Ok(1)) {
            readable.push(index);
        }
    }
    // The TSC deadline last: KVM interprets it against the TSC restored before it.
    readable.sort_by_key(|&i| (i == MSR_IA32_TSC_DEADLINE, i != MSR_IA32_TSC, i));
    Ok(readable)
}

fn get_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<MsrValue>, StateError> {
    let mut out = Vec::with_capacity(indices.len());
    for batch in indices.chunks(MSR_BATCH) {
        let entries: Vec<kvm_msr_entry> = batch
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| {
            StateError::Mismatch(format!("{} MSRs do not fit one request", entries.len()))
        })?;
        let read = vcpu.get_msrs(&mut msrs).map_err(kvm_err("read MSRs"))?;
        out.extend(msrs.as_slice()[..read].iter().map(|e| MsrValue {
            index: e.index,
            data: e.data,
        }));
    }
    Ok(out)
}

/// Write MSRs in order; returns the indices KVM refused (skipped, the rest still written).
fn set_msrs(vcpu: &VcpuFd, values: &[MsrValue]) -> Result<Vec<u32>, StateError> {
    let mut refused = Vec::new();
    let mut rest = values;
    while !rest.is_empty() {
        let n = rest.len().min(MSR_BATCH);
        let entries: Vec<kvm_msr_entry> = rest[..n]
            .iter()
            .map(|m| kvm_msr_entry {
                index: m.index,
                data: m.data,
                ..Default::default()
            })
            .collect();
        let msrs = Msrs::from_entries(&entries).map_err(|_| {
            StateError::Mismatch(format!("{} MSRs do not fit one request", entries.len()))
        })?;
        let written = vcpu.set_msrs(&msrs).map_err(kvm_err("write MSRs"))?;
        if written < n {
            refused.push(rest[written].index);
            rest = &rest[written + 1..];
        } else {
            rest = &rest[n..];
        }
    }
    Ok(refused)
}

/// Capture one vCPU (it must be parked: paused VM).
pub fn capture_vcpu(vcpu: &VcpuFd, id: u8, msr_indices: &[u32]) -> Result<VcpuState, StateError> {
    let e = |what: &str| kvm_err(format!("{what} of vCPU {id}"));
    let cpuid = vcpu
        .get_cpuid2(KVM_MAX_CPUID_ENTRIES)
        .map(|c| c.as_slice().to_vec())
        .map_err(e("read the CPUID"))?;
    Ok(VcpuState {
        id,
        mp_state: vcpu.get_mp_state().map_err(e("read the MP state"))?,
        regs: vcpu.get_regs().map_err(e("read the registers"))?,
        sregs: vcpu.get_sregs().map_err(e("read the special registers"))?,
        fpu: FpuState::from(&vcpu.get_fpu().map_err(e("read the FPU state"))?),
        xsave: vcpu.get_xsave().ok(),
        xcrs: vcpu.get_xcrs().ok(),
        debugregs: vcpu
            .get_debug_regs()
            .map_err(e("read the debug registers"))?,
        lapic: vcpu.get_lapic().map_err(e("read the LAPIC"))?,
        msrs: get_msrs(vcpu, msr_indices)?,
        events: vcpu.get_vcpu_events().map_err(e("read the vCPU events"))?,
        cpuid,
    })
}

/// Restore one vCPU that has not run yet. Returns the MSRs KVM refused.
pub fn restore_vcpu(vcpu: &VcpuFd, state: &VcpuState) -> Result<Vec<u32>, StateError> {
    let id = state.id;
    let e = |what: &str| kvm_err(format!("{what} of vCPU {id}"));
    if !state.cpuid.is_empty() {
        let cpuid = CpuId::from_entries(&state.cpuid)
            .map_err(|_| StateError::Mismatch(format!("vCPU {id}: too many CPUID entries")))?;
        vcpu.set_cpuid2(&cpuid).map_err(e("set the CPUID"))?;
    }
    vcpu.set_mp_state(state.mp_state)
        .map_err(e("set the MP state"))?;
    vcpu.set_sregs(&state.sregs)
        .map_err(e("set the special registers"))?;
    vcpu.set_regs(&state.regs).map_err(e("set the registers"))?;
    vcpu.set_fpu(&state.fpu.to_kvm())
        .map_err(e("set the FPU state"))?;
    if let Some(xsave) = &state.xsave {
        // SAFETY: `xsave` is a complete legacy 4 KiB `kvm_xsave` as KVM_GET_XSAVE returned it
        // on the source; the guest CPUID excludes AMX, so no state lives beyond 4 KiB and
        // KVM_SET_XSAVE reads nothing past the struct.
        unsafe { vcpu.set_xsave(xsave) }.map_err(e("set the XSAVE state"))?;
    }
    if let Some(xcrs) = &state.xcrs {
        vcpu.set_xcrs(xcrs).map_err(e("set the XCRs"))?;
    }
    vcpu.set_debug_regs(&state.debugregs)
        .map_err(e("set the debug registers"))?;
    let refused = set_msrs(vcpu, &state.msrs)?;
    vcpu.set_lapic(&state.lapic).map_err(e("set the LAPIC"))?;
    vcpu.set_vcpu_events(&state.events)
        .map_err(e("set the vCPU events"))?;
    Ok(refused)
}

fn get_irqchip(vm: &VmFd, chip_id: u32, what: &str) -> Result<kvm_irqchip, StateError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.get_irqchip(&mut chip)
        .map_err(kvm_err(format!("read the {what}")))?;
    Ok(chip)
}

/// Capture the in-kernel devices.
pub fn capture_vm(vm: &VmFd) -> Result<VmDeviceState, StateError> {
    Ok(VmDeviceState {
        pic_master: get_irqchip(vm, KVM_IRQCHIP_PIC_MASTER, "master PIC")?,
        pic_slave: get_irqchip(vm, KVM_IRQCHIP_PIC_SLAVE, "slave PIC")?,
        ioapic: get_irqchip(vm, KVM_IRQCHIP_IOAPIC, "IOAPIC")?,
        pit: vm.get_pit2().map_err(kvm_err("read the PIT"))?,
        clock: vm.get_clock().map_err(kvm_err("read kvmclock"))?,
    })
}

/// Restore the in-kernel devices. kvmclock continues from the source's value (only the
/// clock value, not its flags): the guest's clock stands still while the VM is in transit
/// and never goes back.
pub fn restore_vm(vm: &VmFd, state: &VmDeviceState) -> Result<(), StateError> {
    vm.set_irqchip(&state.pic_master)
        .map_err(kvm_err("set the master PIC"))?;
    vm.set_irqchip(&state.pic_slave)
        .map_err(kvm_err("set the slave PIC"))?;
    vm.set_irqchip(&state.ioapic)
        .map_err(kvm_err("set the IOAPIC"))?;
    vm.set_pit2(&state.pit).map_err(kvm_err("set the PIT"))?;
    let clock = kvm_clock_data {
        clock: state.clock.clock,
        ..Default::default()
    };
    vm.set_clock(&clock).map_err(kvm_err("set kvmclock"))?;
    Ok(())
}

/// Capture the whole machine. The VM must be paused.
pub fn capture(vm: &VmShared, msr_indices: &[u32]) -> Result<MachineState, StateError> {
    let mut vcpus = Vec::new();
    for (id, fd) in vm.vcpu_fds().iter().enumerate() {
        let fd = fd.lock().unwrap_or_else(|e| e.into_inner());
        vcpus.push(capture_vcpu(&fd, id as u8, msr_indices)?);
    }
    Ok(MachineState {
        version: STATE_VERSION,
        vcpus,
        vm: capture_vm(vm.vm_fd())?,
        serial: vm.devices().serial_state(),
    })
}

/// Restore the whole machine into a paused VM that has not run. Returns the MSRs refused
/// (per vCPU: index list), for the log.
pub fn restore(vm: &VmShared, state: &MachineState) -> Result<Vec<(u8, u32)>, StateError> {
    if state.version != STATE_VERSION {
        return Err(StateError::Mismatch(format!(
            "state version {} (this kiln-vmm reads {STATE_VERSION})",
            state.version
        )));
    }
    if state.vcpus.len() != vm.vcpu_fds().len() {
        return Err(StateError::Mismatch(format!(
            "{} vCPUs in the state, {} in this VM",
            state.vcpus.len(),
            vm.vcpu_fds().len()
        )));
    }
    // In-kernel irqchip first: LAPIC restore consults it.
    restore_vm(vm.vm_fd(), &state.vm)?;
    let mut refused = Vec::new();
    for (fd, vcpu) in vm.vcpu_fds().iter().zip(&state.vcpus) {
        let fd = fd.lock().unwrap_or_else(|e| e.into_inner());
        refused.extend(restore_vcpu(&fd, vcpu)?.into_iter().map(|i| (vcpu.id, i)));
    }
    vm.devices()
        .restore_serial(&state.serial)
        .map_err(|e| StateError::Mismatch(format!("serial port: {e}")))?;
    Ok(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fpu_state_round_trips() {
        let mut f = kvm_fpu {
            fcw: 0x37f,
            mxcsr: 0x1f80,
            ..Default::default()
        };
        f.xmm[3][5] = 9;
        f.fpr[7][0] = 1;
        let json = serde_json::to_string(&FpuState::from(&f)).expect("serializes");
        let back: FpuState = serde_json::from_str(&json).expect("parses");
        let g = back.to_kvm();
        assert_eq!(g.fcw, 0x37f);
        assert_eq!(g.mxcsr, 0x1f80);
        assert_eq!(g.xmm[3][5], 9);
        assert_eq!(g.fpr[7][0], 1);
    }
}
